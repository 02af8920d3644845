//! What the reliability tests hold the operator to, and the tools to see it: the emulator's
//! call log collected per account, fault rules scoped to a test's accounts, IAM membership
//! sampled over time and judged against the grants' recorded windows.
//!
//! The emulator keeps only the last 20,000 calls of every test together, so [`CallLog`] polls
//! it in the background and keeps its own copy of the calls made in the accounts it watches.

use anyhow::{bail, Context as _};
use aws_config::SdkConfig;
use jiff::Timestamp;
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::operator::http;

/// Seconds a revocation may take after its expiry.
pub const REVOKE_BUDGET_SECS: f64 = 5.0;

/// One call the emulator served (or refused, or faulted).
#[derive(Clone, Debug, Deserialize)]
pub struct Call {
    pub time: f64,
    pub service: String,
    pub operation: String,
    pub account: String,
    #[serde(default)]
    pub caller: Option<String>,
    #[serde(default)]
    pub status: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub fault: Option<String>,
}

impl Call {
    /// Whether the operator made the call: it acts through role sessions named
    /// `<prefix>-<controller>`, with the default prefix `prodaccess`.
    pub fn by_operator(&self) -> bool {
        self.caller
            .as_deref()
            .is_some_and(|c| c.contains(":assumed-role/") && c.contains("/prodaccess-"))
    }

    /// Whether the call changes something in AWS.
    pub fn is_write(&self) -> bool {
        is_write(&self.operation)
    }

    /// Whether the emulator answered it normally (not a fault, not an error).
    pub fn succeeded(&self) -> bool {
        self.fault.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn key(&self) -> String {
        format!(
            "{:.6}|{}|{}|{}|{:?}|{:?}|{:?}",
            self.time,
            self.account,
            self.service,
            self.operation,
            self.caller,
            self.status,
            self.fault
        )
    }
}

/// Operations that change state in AWS, by the verbs AWS names them with.
pub fn is_write(operation: &str) -> bool {
    const VERBS: &[&str] = &[
        "Create",
        "Put",
        "Add",
        "Register",
        "Deregister",
        "Modify",
        "Delete",
        "Change",
        "Start",
        "Stop",
        "Remove",
        "Attach",
        "Detach",
        "Accept",
        "Reject",
        "Associate",
        "Disassociate",
        "Set",
        "Terminate",
        "Send",
        "Import",
        "Request",
        "Update",
        "Tag",
        "Untag",
        "Enable",
    ];
    VERBS.iter().any(|verb| {
        operation
            .strip_prefix(verb)
            .is_some_and(|rest| rest.chars().next().is_none_or(|c| c.is_ascii_uppercase()))
    })
}

/// The calls made in some accounts, gathered from the emulator's log as the test runs.
pub struct CallLog {
    endpoint: String,
    accounts: Vec<String>,
    seen: Mutex<HashSet<String>>,
    calls: Mutex<Vec<Call>>,
}

#[derive(Deserialize)]
struct CallsAnswer {
    calls: Vec<Call>,
}

impl CallLog {
    pub fn new(endpoint: &str, accounts: &[String]) -> Arc<CallLog> {
        Arc::new(CallLog {
            endpoint: endpoint.to_string(),
            accounts: accounts.to_vec(),
            seen: Mutex::new(HashSet::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Reads the emulator's log once and keeps what is new.
    pub async fn poll(&self) -> crate::Result<()> {
        for account in &self.accounts {
            let url = format!("{}/_prodemu/calls?account={account}", self.endpoint);
            let (code, body) = http("GET", &url, "").await?;
            anyhow::ensure!(code == 200, "GET {url}: {code}");
            let answer: CallsAnswer = serde_json::from_str(&body).context("call log JSON")?;
            let mut seen = self.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let mut calls = self.calls.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for call in answer.calls {
                if seen.insert(call.key()) {
                    calls.push(call);
                }
            }
        }
        Ok(())
    }

    /// Polls every `every` until the returned handle is aborted (or dropped with the test).
    pub fn spawn_poller(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(err) = log.poll().await {
                    tracing::warn!(error = %err, "call log poll failed");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Every call collected so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        let mut calls = self.calls.lock().map(|c| c.clone()).unwrap_or_default();
        calls.sort_by(|a, b| a.time.total_cmp(&b.time));
        calls
    }

    /// Counts of the operator's calls by `service:operation`.
    pub fn operator_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in self.calls().iter().filter(|c| c.by_operator()) {
            *counts
                .entry(format!("{}:{}", call.service, call.operation))
                .or_default() += 1;
        }
        counts
    }

    /// Counts of injected faults by kind, in the watched accounts.
    pub fn fault_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in self.calls() {
            if let Some(kind) = &call.fault {
                *counts.entry(kind.clone()).or_default() += 1;
            }
        }
        counts
    }
}

/// Seconds since the Unix epoch, as the emulator's call log writes time.
pub fn epoch(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// Fault injection: each operation in `account` fails about 10% of the time, spread over the
/// kinds of failure the service really returns, plus `delay_probability` of answers slower
/// than the operator's 10 s attempt timeout.
pub fn fault_rules(account: &str, delay_probability: f64) -> Vec<serde_json::Value> {
    let mut rules = Vec::new();
    for service in [
        "iam",
        "ssm",
        "sts",
        "ec2",
        "elasticloadbalancing",
        "route53",
        "acm",
    ] {
        let mut kinds = vec![("throttle", 0.04), ("http500", 0.02), ("http503", 0.02)];
        if service == "route53" {
            kinds = vec![
                ("throttle", 0.02),
                ("prior_request_not_complete", 0.02),
                ("http500", 0.02),
                ("http503", 0.02),
            ];
        }
        kinds.push(("reset", 0.015));
        for (kind, probability) in kinds {
            rules.push(serde_json::json!({
                "service": service, "operation": "*", "kind": kind,
                "probability": probability, "count": 1_000_000, "account": account,
            }));
        }
        if delay_probability > 0.0 {
            rules.push(serde_json::json!({
                "service": service, "operation": "*", "kind": "delay", "delay_ms": 11_000,
                "probability": delay_probability, "count": 1_000_000, "account": account,
            }));
        }
    }
    rules
}

/// Adds fault rules to the emulator.
pub async fn add_faults(endpoint: &str, rules: &[serde_json::Value]) -> crate::Result<()> {
    let url = format!("{endpoint}/_prodemu/faults");
    let body = serde_json::json!({ "rules": rules }).to_string();
    let (code, answer) = http("POST", &url, &body).await?;
    anyhow::ensure!(code == 200, "adding fault rules failed: {code} {answer}");
    Ok(())
}

/// Runs a test-side AWS call until it succeeds: the test's own calls go through the same
/// fault rules as the operator's.
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::Result<T>>,
{
    let mut last = None;
    for _ in 0..30 {
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    match last {
        Some(err) => Err(err.context(format!("{what} kept failing"))),
        None => bail!("{what} never ran"),
    }
}

/// Members of an IAM group, read with an admin of its account.
pub async fn group_members(admin: &SdkConfig, group: &str) -> crate::Result<Vec<String>> {
    let iam = aws_sdk_iam::Client::new(admin);
    let mut members = Vec::new();
    let mut marker = None;
    loop {
        let out = iam
            .get_group()
            .group_name(group)
            .set_marker(marker)
            .max_items(1000)
            .send()
            .await
            .context("GetGroup")?;
        members.extend(out.users().iter().map(|u| u.user_name().to_string()));
        match out.marker() {
            Some(next) if out.is_truncated() => marker = Some(next.to_string()),
            _ => return Ok(members),
        }
    }
}

/// The IAM group's members at one moment: the read started at `t0` and answered at `t1`.
#[derive(Clone, Debug)]
pub struct Sample {
    pub t0: Timestamp,
    pub t1: Timestamp,
    pub members: Vec<String>,
}

/// Samples a group's members until the returned handle is aborted. Failed reads (faults are
/// on) are skipped; the count of good samples says how dense the sampling was.
pub fn spawn_sampler(
    admin: SdkConfig,
    group: String,
    every: Duration,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let t0 = Timestamp::now();
            if let Ok(members) = group_members(&admin, &group).await {
                let sample = Sample {
                    t0,
                    t1: Timestamp::now(),
                    members,
                };
                if let Ok(mut all) = samples.lock() {
                    all.push(sample);
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// A grant's life as it ended up recorded: whose it was and the window it was given.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub name: String,
    pub user: String,
    pub phase: GrantPhase,
    pub start: Option<Timestamp>,
    pub expiry: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl Recorded {
    pub fn of(grant: &ProductionAccessGrant) -> Recorded {
        let status = grant.status.clone().unwrap_or_default();
        let user = status
            .approved
            .as_ref()
            .map_or(grant.spec.user.clone(), |a| a.user.clone());
        Recorded {
            name: grant.metadata.name.clone().unwrap_or_default(),
            user,
            phase: status.phase,
            start: status.window.as_ref().map(|w| w.start.0),
            expiry: status.window.as_ref().map(|w| w.expiry.0),
            revoked_at: status.revoked_at.map(|t| t.0),
        }
    }

    /// Whether this grant accounts for `user` being a member during `[t0, t1]`: its window
    /// had started by `t1` and had not ended more than the revocation budget before `t0`.
    fn covers(&self, user: &str, t0: Timestamp, t1: Timestamp) -> bool {
        let (Some(start), Some(expiry)) = (self.start, self.expiry) else {
            return false;
        };
        let budget = jiff::SignedDuration::from_millis((REVOKE_BUDGET_SECS * 1000.0) as i64);
        self.user == user && start <= t1 && t0 <= expiry + budget
    }
}

/// Membership that no recorded grant accounts for: `(sample time, user)` for every sample
/// where a member had no grant whose window (plus the revocation budget) covered it.
pub fn unbacked_members(samples: &[Sample], grants: &[Recorded]) -> Vec<(Timestamp, String)> {
    let mut found = Vec::new();
    for sample in samples {
        for user in &sample.members {
            if !grants.iter().any(|g| g.covers(user, sample.t0, sample.t1)) {
                found.push((sample.t0, user.clone()));
            }
        }
    }
    found
}

/// For each user, the start of the last sample that saw them in the group.
pub fn last_seen(samples: &[Sample]) -> BTreeMap<String, Timestamp> {
    let mut seen = BTreeMap::new();
    for sample in samples {
        for user in &sample.members {
            let entry = seen.entry(user.clone()).or_insert(sample.t0);
            if sample.t0 > *entry {
                *entry = sample.t0;
            }
        }
    }
    seen
}

/// Revocation lags (seconds from expiry to `status.revokedAt`) of finished grants.
pub fn revoke_lags(grants: &[Recorded]) -> Vec<(String, f64)> {
    grants
        .iter()
        .filter_map(|g| {
            let lag = g.revoked_at?.duration_since(g.expiry?).as_secs_f64();
            Some((g.name.clone(), lag))
        })
        .collect()
}

/// The value at quantile `q` (0..=1) of `values`.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn writes_are_told_apart_from_reads() {
        for op in [
            "AddUserToGroup",
            "PutUserPolicy",
            "StartChangeRequestExecution",
            "Delete",
        ] {
            assert!(is_write(op), "{op}");
        }
        for op in [
            "GetUser",
            "ListGroupsForUser",
            "DescribeSessions",
            "Settings",
            "Tagging",
        ] {
            assert!(!is_write(op), "{op}");
        }
    }

    #[test]
    fn membership_outside_every_window_is_reported() {
        let grant = Recorded {
            name: "g".into(),
            user: "u1".into(),
            phase: GrantPhase::Expired,
            start: Some(at(10)),
            expiry: Some(at(20)),
            revoked_at: Some(at(21)),
        };
        let sample = |t: i64, users: &[&str]| Sample {
            t0: at(t),
            t1: at(t),
            members: users.iter().map(|u| u.to_string()).collect(),
        };
        let samples = vec![
            sample(9, &["u1"]),
            sample(12, &["u1", "u2"]),
            sample(24, &["u1"]),
            sample(26, &["u1"]),
        ];
        let found = unbacked_members(&samples, &[grant]);
        let users: Vec<(i64, &str)> = found
            .iter()
            .map(|(t, u)| (t.as_second() - 1_800_000_000, u.as_str()))
            .collect();
        assert_eq!(users, vec![(9, "u1"), (12, "u2"), (26, "u1")]);
        assert_eq!(last_seen(&samples).get("u1"), Some(&at(26)));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 1.0), 3.0);
    }
}
