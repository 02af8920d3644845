//! `mass_expiry`: many grants in one account whose windows end in the same instant, and how
//! fast the operator removes them all within the configured IAM write budget.
//!
//! Every grant gets the same `notBefore` and duration, so every window ends at the same
//! millisecond. A first operator with a generous budget brings them all in; it is stopped before
//! the expiry and a second one, with the budget under test, does the expiry. The removals and
//! IAM writes come from the emulator's call log (one account, so every write there is this
//! phase's); a sampler reads the groups every two seconds until they are empty.

use jiff::{SignedDuration, Timestamp};
use kube::runtime::reflector::Store;
use prodaccess::aws::{BudgetConfig, CallKind};
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use serde_json::{json, Value};
use std::time::Duration;

use super::calllog::{self, Call, CallLog};
use super::process::{budget_metrics, now, BenchOperator, OperatorSettings};
use super::stats::{busiest_window, round};
use super::world::{self, Account};
use crate::TestEnv;

/// Parameters of the phase.
#[derive(Clone, Debug)]
pub struct MassConfig {
    pub grants: usize,
    pub groups: usize,
    /// `--aws-budget` of the operator that does the expiry.
    pub budget: String,
    /// `--aws-budget` of the operator that brings the grants in.
    pub setup_budget: String,
}

/// Runs the phase and returns its part of the report.
pub async fn run(
    config: &MassConfig,
    settings: &OperatorSettings,
    log: &CallLog,
) -> crate::Result<Value> {
    let env = TestEnv::new("bench-mass").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    println!(
        "==> mass_expiry: {} grants in {} groups of one account",
        config.grants, config.groups
    );
    let account = Account::create(&endpoint).await?;
    let users_per_group = config.grants.div_ceil(config.groups.max(1));
    let users: Vec<String> = (0..users_per_group).map(|u| format!("u{u}")).collect();
    world::create_users(&account.iam(), &users).await?;
    let account_name = format!("{}-jump", env.id);
    let mut objects = vec![world::aws_account(
        &account_name,
        &account.id,
        &env.namespace,
    )];
    objects.extend(world::numbered_groups(
        &env,
        &account_name,
        config.groups,
        "Mass",
    ));
    world::apply_all(&env, objects).await?;
    let setup = OperatorSettings {
        budget: config.setup_budget.clone(),
        ..settings.clone()
    };
    let mut operator = BenchOperator::start(&env, "mass-setup", &setup)?;
    operator.wait_ready().await?;
    world::wait_groups_ready(&env, config.groups).await?;
    let grants = world::watch::<ProductionAccessGrant>(&env).await?;

    // Every grant must be reconciled once before the common start, and all must be in before
    // the common expiry; both margins grow with the number of grants.
    let per_grant = Duration::from_millis(60) * config.grants as u32;
    let start = at(Duration::from_secs(20) + per_grant);
    let duration_secs = 60 + per_grant.as_secs();
    // Status times are whole seconds, so every window ends on the second `start` falls in.
    let expiry = (start.as_second() + duration_secs as i64) as f64;
    let objects = (0..config.grants)
        .map(|i| {
            let group = format!("{}-{}", env.id, i % config.groups);
            let user = &users[i / config.groups];
            world::grant(
                &format!("grant-{i}"),
                &group,
                user,
                &format!("{duration_secs}s"),
                Some(start),
            )
        })
        .collect();
    world::apply_all(&env, objects).await?;
    let active = wait_all_active(&grants, config.grants, expiry).await;
    let setup_exited = operator.exit();
    operator.stop();
    let budget = parse_budget(&config.budget)?;
    let mut measuring = BenchOperator::start(
        &env,
        "mass",
        &OperatorSettings {
            budget: config.budget.clone(),
            ..settings.clone()
        },
    )?;
    measuring.wait_ready().await?;
    let groups: Vec<String> = (0..config.groups).map(|g| format!("Mass{g}")).collect();
    let emptied = tokio::spawn(sample_until_empty(account.iam(), groups, expiry));
    let write_rate = budget
        .limit("iam", CallKind::Write)
        .map_or(10.0, |l| l.rate);
    wait_all_expired(&grants, config.grants, expiry, write_rate).await;
    log.settle().await?;
    let emptied = tokio::time::timeout(Duration::from_secs(30), emptied)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let calls = log.between(measuring.started, now(), |c| {
        c.by_operator() && c.account == account.id
    });
    let mut result = measure(&calls, expiry, config.grants, &budget);
    result["all_removed_seen_by_getgroup_s"] = json!(emptied.map(|t| round(t - expiry, 3)));
    result["grants_active_before_expiry"] = json!(active);
    result["setup_operator_exited"] = json!(setup_exited);
    result["windows_at_planned_start"] = json!(planned_windows(&grants, start));
    result["operator_started_before_expiry_s"] = json!(round(expiry - measuring.started, 1));
    result["budget_config"] = json!(if config.budget.is_empty() {
        "operator defaults"
    } else {
        config.budget.as_str()
    });
    let setup_budget = parse_budget(&config.setup_budget)?;
    let setup_calls = log.between(operator.started, measuring.started, Call::by_operator);
    let measured_calls = log.between(measuring.started, now(), Call::by_operator);
    let mut findings = calllog::budget_check(&setup_calls, &setup_budget);
    findings.extend(calllog::budget_check(&measured_calls, &budget));
    result["budget"] = json!(findings);
    let metrics = measuring.metrics().await.unwrap_or_default();
    result["operator_budget_metrics"] = budget_metrics(&metrics);
    result["operator_exited"] = json!(measuring.exit());
    measuring.stop();
    Ok(result)
}

fn parse_budget(text: &str) -> crate::Result<BudgetConfig> {
    BudgetConfig::default()
        .with_overrides(text)
        .map_err(anyhow::Error::msg)
}

/// The instant `after` from now, on a whole millisecond.
fn at(after: Duration) -> Timestamp {
    let t = Timestamp::now() + SignedDuration::try_from(after).unwrap_or_default();
    Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t)
}

/// Waits until every grant is Active, giving up 15 seconds before the expiry; returns how many
/// were Active.
async fn wait_all_active(
    grants: &Store<ProductionAccessGrant>,
    count: usize,
    expiry: f64,
) -> usize {
    let timeout = Duration::from_secs_f64((expiry - 15.0 - now()).max(1.0));
    let then = "the expiry goes ahead with what is Active";
    world::wait_phase(grants, GrantPhase::Active, count, timeout, then).await
}

/// Waits until every grant is Expired, for at most twice the time the write budget needs.
async fn wait_all_expired(
    grants: &Store<ProductionAccessGrant>,
    count: usize,
    expiry: f64,
    rate: f64,
) {
    let needed = 2.0 * count as f64 / rate.max(0.1);
    let timeout = Duration::from_secs_f64((expiry - now()).max(0.0) + 2.0 * needed + 60.0);
    let then = "measuring what happened";
    world::wait_phase(grants, GrantPhase::Expired, count, timeout, then).await;
}

/// Grants whose window starts exactly where the benchmark put it.
fn planned_windows(grants: &Store<ProductionAccessGrant>, start: Timestamp) -> usize {
    grants
        .state()
        .iter()
        .filter_map(|g| g.status.as_ref()?.window.as_ref())
        .filter(|w| w.start.0.as_second() == start.as_second())
        .count()
}

/// Reads every group every two seconds from just before `expiry` until all are empty (at most
/// ten minutes after it); returns when they were first all seen empty.
async fn sample_until_empty(
    iam: aws_sdk_iam::Client,
    groups: Vec<String>,
    expiry: f64,
) -> Option<f64> {
    tokio::time::sleep(Duration::from_secs_f64((expiry - 1.0 - now()).max(0.0))).await;
    while now() < expiry + 600.0 {
        let mut members = 0;
        for group in &groups {
            let out = iam.get_group().group_name(group).send().await.ok()?;
            members += out.users().len();
        }
        if members == 0 {
            return Some(now());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    None
}

/// Removals and IAM writes of the expiry wave: everything the operator wrote from the expiry on.
fn measure(calls: &[Call], expiry: f64, grants: usize, budget: &BudgetConfig) -> Value {
    let wave: Vec<&Call> = calls.iter().filter(|c| c.time >= expiry - 1.0).collect();
    let removals: Vec<f64> = wave
        .iter()
        .filter(|c| c.operation == "RemoveUserFromGroup" && c.status < 300)
        .map(|c| c.time)
        .collect();
    let writes: Vec<f64> = wave
        .iter()
        .filter(|c| c.service == "iam" && c.kind() == CallKind::Write)
        .map(|c| c.time)
        .collect();
    let last = |v: &[f64]| v.iter().copied().max_by(f64::total_cmp);
    let all_removed = (removals.len() >= grants)
        .then(|| last(&removals))
        .flatten();
    let wave_end = last(&writes).unwrap_or(expiry);
    let achieved = if wave_end > expiry {
        writes.len() as f64 / (wave_end - expiry)
    } else {
        0.0
    };
    let limit = budget.limit("iam", CallKind::Write);
    let rate = limit.map_or(0.0, |l| l.rate);
    let burst = limit.map_or(0.0, |l| l.burst);
    let busiest = busiest_window(&writes, 1.0);
    // A token bucket lets through at most burst + rate x T calls in any T seconds: over the
    // busiest second, and over the whole wave.
    let wave_allowance = burst + rate * (wave_end - expiry).max(0.0) + 1.0;
    let exceeded = busiest as f64 > rate + burst || writes.len() as f64 > wave_allowance;
    json!({
        "seconds_to_all_removed": all_removed.map(|t| round(t - expiry, 3)),
        "iam_write_rate_per_s": round(achieved, 2),
        "iam_write_budget_per_s": rate,
        "iam_write_burst": burst,
        "budget_used_fraction": if rate > 0.0 { round(achieved / rate, 3) } else { 0.0 },
        "max_iam_writes_in_1s": busiest,
        "exceeded_budget": exceeded,
        "removals": removals.len(),
        "iam_writes": writes.len(),
        "wave_seconds": round(wave_end - expiry, 3),
        "grants": grants,
    })
}
