//! `approval_to_grant_ms`: from an approver's `SendAutomationSignal` to the operator's
//! `AddUserToGroup` for that grant, both as the emulator logged them.
//!
//! Each grant lives in an account of its own (the call log names accounts, not users), with a
//! change template whose approver is that account's `carol`. The operator opens a change request
//! for each grant; carol approves them spread over a period longer than twice the longest poll
//! interval, so that some approvals meet a fresh poll and others a grant that has backed off to
//! the longest interval, as approvals do in practice.

use kube::runtime::reflector::Store;
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use serde_json::{json, Value};
use std::time::Duration;

use super::calllog::{self, Call, CallLog};
use super::process::{budget_metrics, now, BenchOperator, OperatorSettings};
use super::stats::summary;
use super::world::{self, Account, Approver};
use crate::TestEnv;

/// Parameters of the phase.
#[derive(Clone, Debug)]
pub struct ApprovalConfig {
    pub grants: usize,
    /// Approvals are spread evenly over this long after the change requests open.
    pub spread: Duration,
}

const GROUP: &str = "ProductionAccess";
const TEMPLATE: &str = "ProdAccess-ChangeTemplate";

/// Runs the phase and returns its part of the report.
pub async fn run(
    config: &ApprovalConfig,
    settings: &OperatorSettings,
    log: &CallLog,
) -> crate::Result<Value> {
    let env = TestEnv::new("bench-approval").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    println!(
        "==> approval_to_grant: {} accounts, one change request each",
        config.grants
    );
    let accounts = world::accounts(&endpoint, config.grants).await?;
    let mut approvers = Vec::new();
    for account in &accounts {
        world::create_users(&account.iam(), &["alice".to_string()]).await?;
        let carol = world::approver(&endpoint, account, "carol").await?;
        world::change_template(account, TEMPLATE, &carol.arn).await?;
        approvers.push(carol);
    }
    world::apply_all(&env, manifests(&env, &accounts)).await?;
    let mut operator = BenchOperator::start(&env, "approval", settings)?;
    operator.wait_ready().await?;
    world::wait_groups_ready(&env, config.grants).await?;
    let grants = world::watch::<ProductionAccessGrant>(&env).await?;
    let objects = (0..config.grants)
        .map(|i| {
            world::grant(
                &format!("grant-{i}"),
                &format!("{}-{i}", env.id),
                "alice",
                "1h",
                None,
            )
        })
        .collect();
    let phase_start = now();
    world::apply_all(&env, objects).await?;
    let ids = wait_change_requests(&grants, config.grants).await?;
    approve_spread(&approvers, &ids, config.spread).await;
    let poll_max = prodaccess::crd::parse_duration(&settings.approval_poll_max)?;
    wait_active(&grants, config.grants, poll_max).await;
    log.settle().await?;
    let calls = log.between(phase_start, now(), |_| true);
    let mut result = measure(&accounts, &calls);
    let poll_ms = poll_max.as_millis() as f64;
    result["approval_poll_max_ms"] = json!(poll_ms);
    result["target_p99_ms"] = json!(poll_ms + 1000.0);
    result["spread_s"] = json!(config.spread.as_secs());
    let budget = prodaccess::aws::BudgetConfig::default()
        .with_overrides(&settings.budget)
        .map_err(anyhow::Error::msg)?;
    let operator_calls = log.between(operator.started, now(), Call::by_operator);
    result["budget"] = json!(calllog::budget_check(&operator_calls, &budget));
    let metrics = operator.metrics().await.unwrap_or_default();
    result["operator_budget_metrics"] = budget_metrics(&metrics);
    result["operator_exited"] = json!(operator.exit());
    operator.stop();
    Ok(result)
}

fn manifests(env: &TestEnv, accounts: &[Account]) -> Vec<Value> {
    let approval = json!({"mode": "changeRequest", "changeTemplates": [TEMPLATE]});
    world::group_per_account(env, accounts, GROUP, &approval)
}

/// Waits until every grant has opened its change request; returns their IDs in grant order.
async fn wait_change_requests(
    grants: &Store<ProductionAccessGrant>,
    count: usize,
) -> crate::Result<Vec<String>> {
    let timeout = Duration::from_secs(60 + count as u64);
    world::wait_for(
        "change requests opened",
        timeout,
        Duration::from_millis(500),
        || async {
            let ids: Vec<Option<String>> = (0..count)
                .map(|i| {
                    let name = format!("grant-{i}");
                    grants
                        .state()
                        .into_iter()
                        .find(|g| g.metadata.name.as_deref() == Some(name.as_str()))
                        .and_then(|g| g.status.clone())
                        .filter(|s| s.phase == GrantPhase::AwaitingApproval)
                        .and_then(|s| s.approval_id)
                })
                .collect();
            let opened = ids.iter().flatten().count();
            let done = (opened == count).then(|| ids.into_iter().flatten().collect());
            Ok((done, format!("{opened}/{count} opened")))
        },
    )
    .await
}

/// Approves change request `i` at `i / (n - 1)` of the spread from now.
async fn approve_spread(approvers: &[Approver], ids: &[String], spread: Duration) {
    let start = tokio::time::Instant::now();
    let steps = ids.len().saturating_sub(1).max(1) as u32;
    let runs = approvers
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (carol, id))| {
            let at = start + spread * i as u32 / steps;
            async move {
                tokio::time::sleep_until(at).await;
                if let Err(err) = approve(carol, id).await {
                    println!("    approving {id} failed: {err:#}");
                }
            }
        });
    futures::future::join_all(runs).await;
}

async fn approve(carol: &Approver, id: &str) -> crate::Result<()> {
    aws_sdk_ssm::Client::new(&carol.config)
        .send_automation_signal()
        .automation_execution_id(id)
        .signal_type(aws_sdk_ssm::types::SignalType::Approve)
        .payload("Comment", vec!["benchmark approval".to_string()])
        .send()
        .await?;
    Ok(())
}

/// Waits until every grant is Active, or until the longest poll interval and a margin passed.
async fn wait_active(grants: &Store<ProductionAccessGrant>, count: usize, poll_max: Duration) {
    let timeout = poll_max * 2 + Duration::from_secs(30);
    let then = "measuring what happened";
    world::wait_phase(grants, GrantPhase::Active, count, timeout, then).await;
}

/// Per account: the approval signal and the first `AddUserToGroup` by the operator after it.
fn measure(accounts: &[Account], calls: &[Call]) -> Value {
    let mut lags = Vec::new();
    let mut missing = 0;
    for account in accounts {
        let in_account = calls
            .iter()
            .filter(|c| c.account == account.id && c.status < 300);
        let signal = in_account
            .clone()
            .filter(|c| c.operation == "SendAutomationSignal" && c.by_bench())
            .map(|c| c.time)
            .min_by(f64::total_cmp);
        let Some(signal) = signal else {
            missing += 1;
            continue;
        };
        let added = in_account
            .filter(|c| c.operation == "AddUserToGroup" && c.by_operator() && c.time >= signal)
            .map(|c| c.time)
            .min_by(f64::total_cmp);
        match added {
            Some(added) => lags.push((added - signal) * 1000.0),
            None => missing += 1,
        }
    }
    let mut result = summary(&lags);
    result["missing"] = json!(missing);
    result["source"] =
        json!("emulator call log: AddUserToGroup time minus SendAutomationSignal time");
    result
}
