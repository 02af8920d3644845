//! Small statistics the benchmark reports: nearest-rank percentiles and the busiest window of
//! a series of call times.

use serde_json::{json, Value};

/// The `p`th percentile (0 to 100) of `values` by nearest rank, or `None` when there are none.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// `{p50, p99, max, samples}` of `values`, rounded to whole units; `null` where there are none.
pub fn summary(values: &[f64]) -> Value {
    let round = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
    json!({
        "p50": round(percentile(values, 50.0)),
        "p99": round(percentile(values, 99.0)),
        "max": round(percentile(values, 100.0)),
        "samples": values.len(),
    })
}

/// The largest number of `times` (seconds) that fall in any half-open window `[t, t + width)`.
pub fn busiest_window(times: &[f64], width: f64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut start = 0;
    let mut best = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Rounds to `digits` decimal places, for readable JSON.
pub fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_busiest_window_counts_calls_within_one_width() {
        let times = [0.0, 0.2, 0.9, 1.0, 1.1, 5.0];
        assert_eq!(busiest_window(&times, 1.0), 4);
        assert_eq!(busiest_window(&[], 1.0), 0);
        assert_eq!(busiest_window(&[3.0, 3.0, 3.0], 1.0), 3);
    }
}
