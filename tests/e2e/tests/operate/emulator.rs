//! The emulator's control API as the operate tests use it: the call log (who called what, in
//! which account), fault rules, and the change requests it holds.

use anyhow::Context as _;
use prodaccess_e2e::operator::http;
use serde::Deserialize;

/// One AWS call the emulator served.
#[derive(Clone, Debug, Deserialize)]
pub struct Call {
    /// Seconds since the epoch.
    pub time: f64,
    pub service: String,
    pub operation: String,
    #[serde(default)]
    pub caller: Option<String>,
}

impl Call {
    /// `service:Operation`, the IAM action the call needs.
    pub fn action(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }
}

/// Part of the caller ARN of every call the operator makes in an `AwsAccount`: it assumes
/// `role/prodaccess-operator` there (`arn:aws:sts::ACCT:assumed-role/prodaccess-operator/...`).
/// The tests' own admin assumes `role/prodaccess`, so it never matches.
pub const OPERATOR_ROLE: &str = ":assumed-role/prodaccess-operator/";

/// Every call made in `account` with the operator's assumed-role credentials, oldest first.
pub async fn operator_calls(endpoint: &str, account: &str) -> anyhow::Result<Vec<Call>> {
    #[derive(Deserialize)]
    struct Log {
        calls: Vec<Call>,
    }
    let url = format!("{endpoint}/_prodemu/calls?account={account}");
    let (code, body) = http("GET", &url, "").await?;
    anyhow::ensure!(code == 200, "call log: HTTP {code}: {body}");
    let log: Log = serde_json::from_str(&body).context("call log JSON")?;
    Ok(log
        .calls
        .into_iter()
        .filter(|c| {
            c.caller
                .as_deref()
                .is_some_and(|a| a.contains(OPERATOR_ROLE))
        })
        .collect())
}

/// The calls of one service as `seconds-since-first  Operation  session`, to show in a failure.
pub fn timeline(calls: &[Call], service: &str) -> String {
    let start = calls.first().map(|c| c.time).unwrap_or_default();
    calls
        .iter()
        .filter(|c| c.service == service)
        .map(|c| {
            let session = c.caller.as_deref().and_then(|a| a.rsplit('/').next());
            format!(
                "  {:>8.3}s  {:<28} {}",
                c.time - start,
                c.operation,
                session.unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many of `calls` are `operation`.
pub fn count(calls: &[Call], operation: &str) -> usize {
    calls.iter().filter(|c| c.operation == operation).count()
}

/// Adds one fault rule and returns its id.
pub async fn add_fault(endpoint: &str, rule: serde_json::Value) -> anyhow::Result<u64> {
    let url = format!("{endpoint}/_prodemu/faults");
    let (code, body) = http("POST", &url, &rule.to_string()).await?;
    anyhow::ensure!(code == 201, "add fault: HTTP {code}: {body}");
    let created: serde_json::Value = serde_json::from_str(&body)?;
    created["rules"][0]["id"]
        .as_u64()
        .context("fault rule without id")
}

/// How often the fault rule `id` has fired.
pub async fn fault_hits(endpoint: &str, id: u64) -> anyhow::Result<u64> {
    let (code, body) = http("GET", &format!("{endpoint}/_prodemu/faults"), "").await?;
    anyhow::ensure!(code == 200, "faults: HTTP {code}: {body}");
    let rules: serde_json::Value = serde_json::from_str(&body)?;
    let rule = rules["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["id"].as_u64() == Some(id)))
        .context("fault rule is gone (did something clear the rules?)")?;
    Ok(rule["hits"].as_u64().unwrap_or_default())
}

/// IDs of the change requests and automations started by the operator in `account`.
pub async fn executions_by_operator(endpoint: &str, account: &str) -> anyhow::Result<Vec<String>> {
    let (code, body) = http("GET", &format!("{endpoint}/_prodemu/executions"), "").await?;
    anyhow::ensure!(code == 200, "executions: HTTP {code}: {body}");
    let all: serde_json::Value = serde_json::from_str(&body)?;
    let prefix = format!("arn:aws:sts::{account}{OPERATOR_ROLE}");
    Ok(all["executions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e["executed_by"]
                .as_str()
                .is_some_and(|by| by.starts_with(&prefix))
        })
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect())
}
