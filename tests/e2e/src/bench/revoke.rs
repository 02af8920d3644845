//! `revoke_lag_ms`: grants with staggered expiries, each measured from its expiry to the
//! `RemoveUserFromGroup` call that took its user out of the group.
//!
//! The emulator's call log names the account of a call but not its parameters, so every grant
//! of this phase lives in an account of its own: the operator's one `RemoveUserFromGroup` in
//! that account is the removal of that grant's user. Each grant gets the same duration and a
//! `notBefore` a fixed step after the previous one, so expiries are exact and staggered. A
//! sampler reads the group (`GetGroup`) every 100 ms from just before each expiry until the
//! user is gone, which bounds the removal from both sides and cross-checks the log.

use jiff::{SignedDuration, Timestamp};
use kube::runtime::reflector::Store;
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use serde_json::{json, Value};
use std::time::Duration;

use super::calllog::{self, Call, CallLog};
use super::process::{budget_metrics, metric, now, BenchOperator, OperatorSettings};
use super::stats::summary;
use super::world::{self, Account};
use crate::TestEnv;

/// Parameters of the phase.
#[derive(Clone, Debug)]
pub struct RevokeConfig {
    pub grants: usize,
    /// Time between two consecutive expiries.
    pub stagger: Duration,
    /// Duration of every grant, in whole seconds.
    pub duration_secs: u64,
}

const GROUP: &str = "ProductionAccess";
const USER: &str = "alice";

/// What the sampler saw of one user's membership around its expiry.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    last_present: Option<f64>,
    first_absent: Option<f64>,
}

/// Runs the phase and returns its part of the report.
pub async fn run(
    config: &RevokeConfig,
    settings: &OperatorSettings,
    log: &CallLog,
) -> crate::Result<Value> {
    let env = TestEnv::new("bench-revoke").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    println!("==> revoke_lag: {} accounts, one grant each", config.grants);
    let accounts = world::accounts(&endpoint, config.grants).await?;
    for account in &accounts {
        world::create_users(&account.iam(), &[USER.to_string()]).await?;
    }
    let objects = world::group_per_account(&env, &accounts, GROUP, &world::no_approval());
    world::apply_all(&env, objects).await?;
    let mut operator = BenchOperator::start(&env, "revoke", settings)?;
    operator.wait_ready().await?;
    world::wait_groups_ready(&env, config.grants).await?;
    let grants = world::watch::<ProductionAccessGrant>(&env).await?;

    // Every grant's first reconcile must come before its notBefore, or its window would start
    // at that reconcile instead; the lead leaves room for applying and reconciling them all.
    let lead = Duration::from_secs(15) + Duration::from_millis(100) * config.grants as u32;
    let first = Timestamp::now() + SignedDuration::try_from(lead)?;
    let starts: Vec<Timestamp> = (0..config.grants)
        .map(|i| first + SignedDuration::try_from(config.stagger * i as u32).unwrap_or_default())
        .map(|t| Timestamp::from_millisecond(t.as_millisecond()).unwrap_or(t))
        .collect();
    let duration = format!("{}s", config.duration_secs);
    let objects = (0..config.grants)
        .map(|i| {
            let group = format!("{}-{i}", env.id);
            world::grant(
                &format!("grant-{i}"),
                &group,
                USER,
                &duration,
                Some(starts[i]),
            )
        })
        .collect();
    world::apply_all(&env, objects).await?;
    // Status times are whole seconds (metav1.Time), so a window starts and ends on the second
    // its notBefore falls in.
    let expiries: Vec<f64> = starts
        .iter()
        .map(|s| (s.as_second() + config.duration_secs as i64) as f64)
        .collect();
    let phase_start = now();
    let samples = sample_all(&accounts, &expiries);
    wait_expired(&grants, config, &expiries).await?;
    log.settle().await?;
    let samples = tokio::time::timeout(Duration::from_secs(60), samples)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let removals = log.between(phase_start, now(), |c| {
        c.by_operator() && c.operation == "RemoveUserFromGroup" && c.status < 300
    });
    let mut result = measure(&grants, &accounts, &starts, &samples, &removals);
    let metrics = operator.metrics().await.unwrap_or_default();
    let exited = operator.exit();
    let budget = prodaccess::aws::BudgetConfig::default()
        .with_overrides(&settings.budget)
        .map_err(anyhow::Error::msg)?;
    let operator_calls = log.between(operator.started, now(), Call::by_operator);
    let findings = calllog::budget_check(&operator_calls, &budget);
    operator.stop();
    result["operator_histogram"] = json!({
        "revoke_lag_seconds_sum": metric(&metrics, "prodaccess_revoke_lag_seconds_sum", &[]),
        "revoke_lag_seconds_count": metric(&metrics, "prodaccess_revoke_lag_seconds_count", &[]),
    });
    result["operator_budget_metrics"] = budget_metrics(&metrics);
    result["operator_exited"] = json!(exited);
    result["stagger_ms"] = json!(config.stagger.as_millis() as u64);
    result["grant_duration_s"] = json!(config.duration_secs);
    result["budget"] = json!(findings);
    Ok(result)
}

fn secs(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// Waits until every grant is Expired (or the last expiry is a minute past).
async fn wait_expired(
    grants: &Store<ProductionAccessGrant>,
    config: &RevokeConfig,
    expiries: &[f64],
) -> crate::Result<()> {
    let last = expiries.iter().copied().fold(0.0, f64::max);
    let timeout = Duration::from_secs_f64((last - now()).max(0.0) + 60.0);
    let (want, then) = (config.grants, "measuring what happened");
    world::wait_phase(grants, GrantPhase::Expired, want, timeout, then).await;
    Ok(())
}

/// Samples every account's group around its expiry, all at once.
fn sample_all(accounts: &[Account], expiries: &[f64]) -> tokio::task::JoinHandle<Vec<Sample>> {
    let jobs: Vec<(aws_sdk_iam::Client, f64)> = accounts
        .iter()
        .zip(expiries)
        .map(|(a, e)| (a.iam(), *e))
        .collect();
    let runs = jobs.into_iter().map(|(iam, expiry)| sample(iam, expiry));
    tokio::spawn(futures::future::join_all(runs))
}

/// Reads the group every 100 ms from half a second before `expiry` until the user is out,
/// for at most 30 seconds after it.
async fn sample(iam: aws_sdk_iam::Client, expiry: f64) -> Sample {
    let wait = (expiry - 0.5 - now()).max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    let mut sample = Sample::default();
    for _ in 0..400 {
        let asked = now();
        let out = iam.get_group().group_name(GROUP).send().await;
        let Ok(out) = out else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let present = out.users().iter().any(|u| u.user_name() == USER);
        if present {
            sample.last_present = Some(asked);
        } else if asked >= expiry {
            sample.first_absent = Some(now());
            break;
        }
        if now() > expiry + 30.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sample
}

/// Lags from the call log, the sampler's bounds, and the operator's own record.
fn measure(
    grants: &Store<ProductionAccessGrant>,
    accounts: &[Account],
    starts: &[Timestamp],
    samples: &[Sample],
    removals: &[Call],
) -> Value {
    let mut lags = Vec::new();
    let mut recorded = Vec::new();
    let mut first_seen = Vec::new();
    let (mut missing, mut misplaced, mut consistent) = (0, 0, 0);
    for (i, account) in accounts.iter().enumerate() {
        let name = format!("grant-{i}");
        let grant = grants
            .state()
            .into_iter()
            .find(|g| g.metadata.name.as_deref() == Some(name.as_str()));
        let status = grant.and_then(|g| g.status.clone()).unwrap_or_default();
        let Some(window) = status.window else {
            missing += 1;
            continue;
        };
        // Only a window that starts where the benchmark put it has the planned expiry.
        if starts.get(i).map(|s| s.as_second()) != Some(window.start.0.as_second()) {
            misplaced += 1;
        }
        let expiry = secs(window.expiry.0);
        if let Some(revoked) = status.revoked_at {
            recorded.push((secs(revoked.0) - expiry) * 1000.0);
        }
        let removal = removals
            .iter()
            .filter(|c| c.account == account.id && c.time >= expiry - 5.0)
            .map(|c| c.time)
            .min_by(f64::total_cmp);
        let Some(removal) = removal else {
            missing += 1;
            continue;
        };
        lags.push((removal - expiry) * 1000.0);
        let sample = samples.get(i).copied().unwrap_or_default();
        if let Some(absent) = sample.first_absent {
            first_seen.push((absent - expiry) * 1000.0);
            let after_present = sample.last_present.is_none_or(|p| removal >= p - 0.05);
            if after_present && removal <= absent + 0.05 {
                consistent += 1;
            }
        }
    }
    let mut result = summary(&lags);
    let mut sorted = lags.clone();
    sorted.sort_by(f64::total_cmp);
    result["lags_ms_sorted"] = json!(sorted.iter().map(|v| v.round()).collect::<Vec<_>>());
    result["missing"] = json!(missing);
    result["misplaced_windows"] = json!(misplaced);
    result["source"] =
        json!("emulator call log: RemoveUserFromGroup time minus status.window.expiry");
    result["cross_check_getgroup"] = json!({
        "sampled": first_seen.len(),
        "consistent_with_call_log": consistent,
        "first_seen_removed_ms": summary(&first_seen),
    });
    result["operator_recorded_ms_whole_seconds"] = summary(&recorded);
    result
}
