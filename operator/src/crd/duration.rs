//! Grant durations as people write them: `90m`, `1h30m`, `8h`, `45s`.
//!
//! The CRD schema already rejects most malformed values with a pattern; this parser is the
//! operator's second line for what a pattern cannot say (zero, overflow).

use std::time::Duration;

/// Pattern the CRD schema applies to every duration field.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$";

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("duration is empty; write it like 30m, 1h30m or 8h")]
    Empty,
    #[error("duration {0:?} is not of the form 1h30m (hours, minutes, seconds, in that order)")]
    Malformed(String),
    #[error("duration {0:?} is zero; it must be positive")]
    Zero(String),
    #[error("duration {0:?} is too long")]
    TooLong(String),
}

/// Parses `XhYmZs` (each part optional, in that order) into a [`Duration`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(text.to_string());
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = 0u8;
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let (rank, factor) = match ch {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(malformed()),
        };
        if digits.is_empty() || rank <= last_unit {
            return Err(malformed());
        }
        let value: u64 = digits
            .parse()
            .map_err(|_| DurationError::TooLong(text.to_string()))?;
        total = value
            .checked_mul(factor)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| DurationError::TooLong(text.to_string()))?;
        digits.clear();
        last_unit = rank;
    }
    if !digits.is_empty() {
        return Err(malformed());
    }
    if total == 0 {
        return Err(DurationError::Zero(text.to_string()));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration back into the shortest `XhYmZs` form.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_forms_people_write() {
        for (text, secs) in [("90m", 5400), ("1h30m", 5400), ("8h", 28800), ("45s", 45)] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("1h0m5s"), Ok(Duration::from_secs(3605)));
    }

    #[test]
    fn refuses_malformed_zero_and_out_of_order() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        for bad in ["1d", "h", "30", "1m1h", "1h1h", "-5m", "1.5h", " 1h", "１h"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("0h0m"),
            Err(DurationError::Zero(_))
        ));
        let huge = "99999999999999999999h";
        assert!(matches!(
            parse_duration(huge),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn schema_pattern_agrees_on_simple_cases() {
        assert!(DURATION_PATTERN.starts_with('^') && DURATION_PATTERN.ends_with('$'));
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
    }
}
