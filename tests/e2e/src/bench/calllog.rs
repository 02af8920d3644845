//! The emulator's call log, read the way the benchmark needs it: every AWS call the operator
//! made, with the time the emulator received it, kept whole across the emulator's ring buffer.
//!
//! `GET /_prodemu/calls` returns the last 20,000 calls in the order they finished and the
//! running `total`. The collector remembers the total it has seen, so the new calls are the last
//! `total - seen` entries of each answer; it polls often enough that the ring never wraps
//! between two polls, and counts what it lost if it ever does. Who made a call comes from the
//! caller ARN: the operator's role sessions are named `prodaccess-<controller>`.

use anyhow::Context as _;
use prodaccess::aws::{BudgetConfig, CallKind};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::stats;
use crate::operator::http;

/// One AWS call as the emulator logged it.
#[derive(Clone, Debug, Deserialize)]
pub struct Call {
    /// Seconds since the Unix epoch when the emulator received the call.
    pub time: f64,
    pub service: String,
    pub operation: String,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub caller: Option<String>,
    #[serde(default)]
    pub status: u16,
}

impl Call {
    /// `service:Operation`, the key of the emulator's own counts.
    pub fn key(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }

    /// Read or write, by the rule the operator's request budget uses: operations named `Get`,
    /// `List`, `Describe`, `Lookup` or `Search` read; everything else writes.
    pub fn kind(&self) -> CallKind {
        const READS: &[&str] = &["Get", "List", "Describe", "Lookup", "Search"];
        if READS.iter().any(|p| self.operation.starts_with(p)) {
            CallKind::Read
        } else {
            CallKind::Write
        }
    }

    /// The operator controller whose role session made the call (`grant`, `group`, `route`,
    /// `account`), if an operator session made it.
    pub fn controller(&self) -> Option<&str> {
        let caller = self.caller.as_deref()?;
        if !caller.contains(":assumed-role/") {
            return None;
        }
        caller.rsplit('/').next()?.strip_prefix("prodaccess-")
    }

    /// Whether the benchmark itself made the call: its admin sessions and the IAM users it
    /// signs approvals with.
    pub fn by_bench(&self) -> bool {
        let caller = self.caller.as_deref().unwrap_or_default();
        caller.ends_with("/e2e-admin") || caller.contains(":user/")
    }

    /// Whether the operator made the call: its role sessions, plus the `AssumeRole` calls its
    /// base identity makes to open them (the benchmark opens its own sessions only while it
    /// builds the population, never inside a measured window).
    pub fn by_operator(&self) -> bool {
        self.controller().is_some() || (!self.by_bench() && self.operation == "AssumeRole")
    }
}

#[derive(Deserialize)]
struct Answer {
    total: u64,
    #[serde(default)]
    calls: Vec<Call>,
}

#[derive(Default)]
struct Collected {
    calls: Vec<Call>,
    seen_total: u64,
    lost: u64,
}

/// Collects the emulator's call log in the background.
#[derive(Clone)]
pub struct CallLog {
    url: String,
    collected: Arc<Mutex<Collected>>,
}

impl CallLog {
    /// Starts collecting from now: calls made before are not kept.
    pub async fn start(endpoint: &str) -> crate::Result<CallLog> {
        let log = CallLog {
            url: format!("{endpoint}/_prodemu/calls"),
            collected: Arc::default(),
        };
        let answer = log.fetch().await?;
        if let Ok(mut collected) = log.collected.lock() {
            collected.seen_total = answer.total;
        }
        let background = log.clone();
        tokio::spawn(async move { background.poll_forever().await });
        Ok(log)
    }

    async fn fetch(&self) -> crate::Result<Answer> {
        let (code, body) = http("GET", &self.url, "").await?;
        anyhow::ensure!(code == 200, "GET {} answered {code}", self.url);
        serde_json::from_str(&body).context("parse the emulator's call log")
    }

    /// Polls until the process ends, faster when calls arrive faster, so the ring buffer never
    /// wraps between two polls (it holds 20,000 calls; the emulator serves a few hundred a
    /// second at most).
    async fn poll_forever(&self) {
        let mut interval = Duration::from_secs(2);
        loop {
            tokio::time::sleep(interval).await;
            let fresh = self.sync().await.unwrap_or(0);
            interval = match fresh {
                0..=2_000 => (interval * 2).min(Duration::from_secs(8)),
                2_001..=6_000 => interval,
                _ => (interval / 2).max(Duration::from_millis(500)),
            };
        }
    }

    /// Reads the calls made since the last read; returns how many there were.
    pub async fn sync(&self) -> crate::Result<u64> {
        let answer = self.fetch().await?;
        let Ok(mut collected) = self.collected.lock() else {
            anyhow::bail!("call log lock poisoned");
        };
        let fresh = answer.total.saturating_sub(collected.seen_total);
        let available = (answer.calls.len() as u64).min(fresh);
        collected.lost += fresh - available;
        let skip = answer.calls.len() - available as usize;
        collected.calls.extend(answer.calls.into_iter().skip(skip));
        collected.seen_total = answer.total;
        Ok(fresh)
    }

    /// Waits a moment for calls still in flight, then reads the log up to now.
    pub async fn settle(&self) -> crate::Result<()> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.sync().await.map(|_| ())
    }

    /// Calls received in `[from, to)` (seconds since the epoch) that `keep` accepts.
    pub fn between(&self, from: f64, to: f64, keep: impl Fn(&Call) -> bool) -> Vec<Call> {
        let Ok(collected) = self.collected.lock() else {
            return Vec::new();
        };
        collected
            .calls
            .iter()
            .filter(|c| c.time >= from && c.time < to && keep(c))
            .cloned()
            .collect()
    }

    /// Calls the collector could not read because the ring buffer wrapped between two polls.
    pub fn lost(&self) -> u64 {
        self.collected.lock().map(|c| c.lost).unwrap_or(0)
    }
}

/// Calls counted by `service:Operation`.
pub fn counts(calls: &[Call]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for call in calls {
        *counts.entry(call.key()).or_insert(0) += 1;
    }
    counts
}

/// How much later than its neighbour a request may reach the emulator than it left the
/// operator. The bucket bounds departures; the log records arrivals, and a request delayed by
/// `d` moves up to `rate × d` more of them into one window (the setup operator's 201 IAM writes
/// in a second against 100 + 100 were exactly that).
const ARRIVAL_JITTER_S: f64 = 0.1;

/// For each account, service and kind the operator used, the most calls in any one-second
/// window against what its token bucket allows in one second (rate + burst), with
/// [`ARRIVAL_JITTER_S`] of arrival jitter. Calls of services without a budget are left out.
pub fn budget_check(calls: &[Call], config: &BudgetConfig) -> Vec<Value> {
    let mut series: BTreeMap<(String, String, &'static str), Vec<f64>> = BTreeMap::new();
    for call in calls.iter().filter(|c| c.controller().is_some()) {
        let key = (
            call.account.clone(),
            call.service.clone(),
            call.kind().as_str(),
        );
        series.entry(key).or_default().push(call.time);
    }
    let mut findings = Vec::new();
    for ((account, service, kind), times) in series {
        let call_kind = if kind == "read" {
            CallKind::Read
        } else {
            CallKind::Write
        };
        let Some(limit) = config.limit(&service, call_kind) else {
            continue;
        };
        let busiest = stats::busiest_window(&times, 1.0);
        let allowed = limit.rate + limit.burst;
        let tolerated = limit.rate * (1.0 + ARRIVAL_JITTER_S) + limit.burst;
        findings.push(json!({
            "account": account,
            "service": service,
            "kind": kind,
            "calls": times.len(),
            "rate": limit.rate,
            "burst": limit.burst,
            "max_in_1s": busiest,
            "allowed_in_1s": allowed,
            "tolerated_in_1s": tolerated,
            "exceeded": busiest as f64 > tolerated,
        }));
    }
    findings
}

/// Whether any finding of [`budget_check`] exceeded its budget.
pub fn any_exceeded(findings: &[Value]) -> bool {
    findings.iter().any(|f| f["exceeded"] == json!(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(time: f64, operation: &str, caller: &str) -> Call {
        Call {
            time,
            service: "iam".into(),
            operation: operation.into(),
            account: "111111111111".into(),
            caller: Some(caller.into()),
            status: 200,
        }
    }

    const GRANT: &str =
        "arn:aws:sts::111111111111:assumed-role/prodaccess-operator/prodaccess-grant";

    #[test]
    fn callers_are_sorted_into_operator_and_bench() {
        let op = call(0.0, "GetUser", GRANT);
        assert_eq!(op.controller(), Some("grant"));
        assert!(op.by_operator() && !op.by_bench());
        let admin = call(
            0.0,
            "GetGroup",
            "arn:aws:sts::1:assumed-role/prodaccess/e2e-admin",
        );
        assert!(admin.by_bench() && !admin.by_operator());
        let carol = call(0.0, "SendAutomationSignal", "arn:aws:iam::1:user/carol");
        assert!(carol.by_bench());
        let assume = call(0.0, "AssumeRole", "arn:aws:iam::123456789012:root");
        assert!(assume.by_operator() && assume.controller().is_none());
        assert_eq!(op.kind(), CallKind::Read);
        assert_eq!(call(0.0, "AddUserToGroup", GRANT).kind(), CallKind::Write);
    }

    #[test]
    fn budget_check_compares_the_busiest_second_with_rate_plus_burst() {
        let config = BudgetConfig::default()
            .with_overrides("iam:write=2/1")
            .unwrap_or_default();
        let ok: Vec<Call> = (0..6)
            .map(|i| call(f64::from(i) * 0.5, "AddUserToGroup", GRANT))
            .collect();
        let findings = budget_check(&ok, &config);
        assert_eq!(findings.len(), 1);
        assert!(!any_exceeded(&findings), "{findings:?}");
        let burst: Vec<Call> = (0..4)
            .map(|i| call(f64::from(i) * 0.1, "AddUserToGroup", GRANT))
            .collect();
        assert!(any_exceeded(&budget_check(&burst, &config)));
        // 100 a second with a burst of 100: one more in a second is arrival jitter, eleven
        // more are not.
        let config = BudgetConfig::default()
            .with_overrides("iam:write=100/100")
            .unwrap_or_default();
        let second = |n: u32| -> Vec<Call> {
            (0..n)
                .map(|i| call(f64::from(i) / f64::from(n), "AddUserToGroup", GRANT))
                .collect()
        };
        assert!(!any_exceeded(&budget_check(&second(201), &config)));
        assert!(any_exceeded(&budget_check(&second(211), &config)));
    }
}
