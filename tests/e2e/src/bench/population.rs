//! `steady_state`, `cold_start`, `rss_mib` and `cpu_seconds`: a population of grants in groups
//! of one Jump account and routes from a Production account into it, held by the operator.
//!
//! A first operator with a generous budget builds the population (every grant Active, every
//! group and route Ready) and is stopped. A fresh operator with the budget under test then
//! starts on it: the cold start lasts until it has finished a reconcile of every grant, group
//! and route, and the steady-state window follows. Calls come from the emulator's call log,
//! sorted by the role session that made them (`prodaccess-grant`, `-group`, `-route`).

use kube::runtime::reflector::Store;
use prodaccess::aws::{BudgetConfig, CallKind};
use prodaccess::crd::{ConditionExt, GrantPhase, PrivateLinkRoute, ProductionAccessGrant};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

use super::calllog::{self, counts, Call, CallLog};
use super::process::{
    budget_metrics, metric, metrics_at, now, BenchOperator, OperatorSettings, Usage,
};
use super::stats::round;
use super::world::{self, Account};
use crate::network::Network;
use crate::{seed, TestEnv};

/// Parameters of the phase.
#[derive(Clone, Debug)]
pub struct PopulationConfig {
    pub grants: usize,
    pub groups: usize,
    pub routes: usize,
    /// Every route's record in one private zone the harness creates (`BENCH_SHARED_ZONE=1`),
    /// as real deployments do, rather than a zone per route that the operator creates.
    pub shared_zone: bool,
    pub steady: Duration,
    /// `--aws-budget` of the operator that builds the population.
    pub setup_budget: String,
    /// Longest wait for the fresh operator's cold start.
    pub cold_timeout: Duration,
}

/// What the phase built.
struct Population {
    env: TestEnv,
    jump: Account,
    grants: Store<ProductionAccessGrant>,
    routes: Store<PrivateLinkRoute>,
    /// When the operator that built the population started and stopped.
    setup_window: (f64, f64),
}

/// Runs the phase and returns `(steady_state, cold_start, rss_mib, cpu_seconds, details)`.
pub async fn run(
    config: &PopulationConfig,
    settings: &OperatorSettings,
    log: &CallLog,
) -> crate::Result<Value> {
    let population = build(config, settings).await?;
    let budget = BudgetConfig::default()
        .with_overrides(&settings.budget)
        .map_err(anyhow::Error::msg)?;
    println!("==> cold start: a fresh operator on the population");
    let mut operator = BenchOperator::start(&population.env, "population", settings)?;
    let cold = cold_start(&mut operator, config, log).await?;
    let window = steady_window(config, settings)?;
    println!("==> steady state: {}s", window.as_secs());
    let window_start = now();
    let before = operator.metrics().await?;
    let peak = hold(&mut operator, window).await?;
    let window_end = now();
    let after = operator.metrics().await?;
    let usage = operator.usage()?;
    log.settle().await?;
    let steady_calls = log.between(window_start, window_end, Call::by_operator);
    let mut steady = steady_state(
        config,
        settings,
        &steady_calls,
        window.as_secs_f64(),
        &before,
        &after,
    )?;
    let steady_findings = calllog::budget_check(&steady_calls, &budget);
    steady["budget_exceeded"] = json!(calllog::any_exceeded(&steady_findings));
    let all_calls = log.between(operator.started, now(), Call::by_operator);
    let mut findings = calllog::budget_check(&all_calls, &budget);
    let (from, to) = population.setup_window;
    let setup_calls = log.between(from, to, Call::by_operator);
    let setup_budget = BudgetConfig::default()
        .with_overrides(&config.setup_budget)
        .map_err(anyhow::Error::msg)?;
    findings.extend(calllog::budget_check(&setup_calls, &setup_budget));
    let health = health(&population, config);
    let cold_cpu = cold["cpu_seconds"].as_f64().unwrap_or(0.0);
    operator.stop();
    Ok(json!({
        "steady_state": steady,
        "cold_start": cold,
        "rss_mib": round(usage.rss_mib, 1),
        "peak_rss_mib": round(usage.peak_rss_mib.max(peak.peak_rss_mib), 1),
        "cpu_seconds": round(usage.cpu_seconds, 2),
        "cpu_seconds_steady": round(usage.cpu_seconds - cold_cpu, 2),
        "budget": findings,
        "operator_budget_metrics": budget_metrics(&after),
        "population_after": health,
        "jump_account": population.jump.id,
    }))
}

/// Builds the population with a setup operator and stops it.
async fn build(
    config: &PopulationConfig,
    settings: &OperatorSettings,
) -> crate::Result<Population> {
    let env = TestEnv::new("bench-population").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    println!(
        "==> population: {} grants in {} groups, {} routes",
        config.grants, config.groups, config.routes
    );
    let jump = Account::create(&endpoint).await?;
    let prod = Account::create(&endpoint).await?;
    let net = Network::create(&jump.admin, &prod.admin, &seed::NETWORK_LABELS).await?;
    let users_per_group = config.grants.div_ceil(config.groups.max(1));
    let users: Vec<String> = (0..users_per_group).map(|u| format!("u{u}")).collect();
    world::create_users(&jump.iam(), &users).await?;
    let names = (format!("{}-jump", env.id), format!("{}-prod", env.id));
    let mut objects = vec![
        world::aws_account(&names.0, &jump.id, &env.namespace),
        world::aws_account(&names.1, &prod.id, &env.namespace),
    ];
    objects.extend(world::numbered_groups(
        &env,
        &names.0,
        config.groups,
        "Bench",
    ));
    world::apply_all(&env, objects).await?;
    let setup = OperatorSettings {
        budget: config.setup_budget.clone(),
        ..settings.clone()
    };
    let mut operator = BenchOperator::start(&env, "population-setup", &setup)?;
    operator.wait_ready().await?;
    world::wait_groups_ready(&env, config.groups).await?;
    let zone = if config.shared_zone {
        let id = world::private_zone(&jump, SHARED_ZONE, &net.jump_vpc).await?;
        println!("==> shared private zone {SHARED_ZONE} ({id}) for every route");
        Some(id)
    } else {
        None
    };
    let routes: Vec<Value> = (0..config.routes)
        .map(|r| route(r, &names, &net, zone.as_deref(), &settings.route_resync))
        .collect();
    world::apply_all(&env, routes).await?;
    let grants: Vec<Value> = (0..config.grants)
        .map(|i| {
            let group = format!("{}-{}", env.id, i % config.groups);
            world::grant(
                &format!("grant-{i}"),
                &group,
                &users[i / config.groups],
                "8h",
                None,
            )
        })
        .collect();
    world::apply_all(&env, grants).await?;
    let grants = world::watch::<ProductionAccessGrant>(&env).await?;
    let routes = world::watch::<PrivateLinkRoute>(&env).await?;
    let mut population = Population {
        env,
        jump,
        grants,
        routes,
        setup_window: (operator.started, 0.0),
    };
    wait_built(&mut operator, &population, config).await?;
    operator.stop();
    population.setup_window.1 = now();
    Ok(population)
}

/// The private zone that holds every route's record with `BENCH_SHARED_ZONE=1`.
const SHARED_ZONE: &str = "prod.example.com";

/// Route `r` over the shared network: `console.r<r>.prod.example.com`, a record in the shared
/// zone `shared_zone` (named by ID, so the operator neither creates nor deletes it) or, without
/// one, in a private zone `r<r>.prod.example.com` of its own that the operator creates.
fn route(
    r: usize,
    accounts: &(String, String),
    net: &Network,
    shared_zone: Option<&str>,
    drift: &str,
) -> Value {
    let zone = match shared_zone {
        Some(id) => json!({"zoneId": id}),
        None => json!({"zoneName": format!("r{r}.prod.example.com")}),
    };
    json!({
        "apiVersion": "prodaccess.io/v1alpha1",
        "kind": "PrivateLinkRoute",
        "metadata": {"name": format!("route-{r}")},
        "spec": {
            "hostName": format!("console.r{r}.prod.example.com"),
            "port": 10443,
            "provider": {
                "accountRef": accounts.1,
                "vpcId": net.prod_vpc,
                "nlbSubnetIds": net.prod_subnets,
                "albSubnetIds": net.prod_subnets,
                "albSecurityGroupIds": [net.prod_sg],
                "certificateArn": net.certificate,
                "targets": {"protocol": "HTTPS", "port": 443, "instanceIds": net.instances,
                            "healthCheck": {"path": "/health"}},
                "acceptanceRequired": true,
            },
            "consumer": {
                "accountRef": accounts.0,
                "vpcId": net.jump_vpc,
                "subnetIds": [net.jump_subnet],
                "securityGroupIds": [net.jump_sg],
                "hostedZone": zone,
                "recordType": "CNAME",
            },
            "deletionPolicy": "Delete",
            "driftCheckInterval": drift,
        }
    })
}

fn ready_routes(routes: &Store<PrivateLinkRoute>) -> usize {
    routes
        .state()
        .iter()
        .filter(|r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.conditions.as_slice().is_true("Ready"))
        })
        .count()
}

fn active_grants(grants: &Store<ProductionAccessGrant>) -> usize {
    world::phases(grants)
        .get(GrantPhase::Active.as_str())
        .copied()
        .unwrap_or(0)
}

/// Waits until every grant is Active and every route Ready.
async fn wait_built(
    operator: &mut BenchOperator,
    population: &Population,
    config: &PopulationConfig,
) -> crate::Result<()> {
    let timeout = Duration::from_secs(180 + config.grants as u64 / 5 + 10 * config.routes as u64);
    let want = (config.grants, config.routes);
    world::wait_for("population built", timeout, Duration::from_secs(1), || {
        let running = operator.check_running();
        async move {
            running?;
            let active = active_grants(&population.grants);
            let ready = ready_routes(&population.routes);
            let done = (active >= want.0 && ready >= want.1).then_some(());
            Ok((
                done,
                format!(
                    "{active}/{} grants Active, {ready}/{} routes Ready",
                    want.0, want.1
                ),
            ))
        }
    })
    .await
}

/// Completed reconciles by kind, from the operator's metrics (`AccessGroup` and `AwsAccount`
/// record no duration, so their started reconciles stand in).
fn reconciled(metrics: &str) -> (f64, f64, f64) {
    let done = |kind: &str| {
        metric(
            metrics,
            "prodaccess_reconcile_duration_seconds_count",
            &[("kind", kind)],
        )
    };
    let started = |kind: &str| metric(metrics, "prodaccess_reconciles_total", &[("kind", kind)]);
    (
        done("ProductionAccessGrant"),
        started("AccessGroup"),
        done("PrivateLinkRoute"),
    )
}

/// From the process start until every grant, group and route has been reconciled once.
async fn cold_start(
    operator: &mut BenchOperator,
    config: &PopulationConfig,
    log: &CallLog,
) -> crate::Result<Value> {
    let want = (
        config.grants as f64,
        config.groups as f64,
        config.routes as f64,
    );
    let started = operator.started;
    let waited = world::wait_for(
        "cold start",
        config.cold_timeout,
        Duration::from_millis(250),
        || {
            let running = operator.check_running();
            let port = operator.metrics_port;
            async move {
                running?;
                let text = metrics_at(port).await.unwrap_or_default();
                let (grants, groups, routes) = reconciled(&text);
                let done = grants >= want.0 && groups >= want.1 && routes >= want.2;
                Ok((
                    done.then(now),
                    format!("reconciled {grants} grants, {groups} groups, {routes} routes"),
                ))
            }
        },
    )
    .await;
    let (converged, ended) = match waited {
        Ok(at) => (true, at),
        Err(err) => {
            println!("    {err:#}; the steady-state window starts anyway");
            (false, now())
        }
    };
    let usage = operator.usage().unwrap_or_default();
    let errors = metric(
        &operator.metrics().await.unwrap_or_default(),
        "prodaccess_reconcile_errors_total",
        &[],
    );
    log.settle().await?;
    let calls = log.between(started, ended, Call::by_operator);
    Ok(json!({
        "seconds": converged.then(|| round(ended - started, 2)),
        "converged": converged,
        "calls": calls.len(),
        "calls_by_operation": counts(&calls),
        "reconcile_errors": errors,
        "cpu_seconds": round(usage.cpu_seconds, 2),
        "rss_mib": round(usage.rss_mib, 1),
    }))
}

/// Keeps the operator running for `window`, watching that it stays up; returns the peak usage.
async fn hold(operator: &mut BenchOperator, window: Duration) -> crate::Result<Usage> {
    let end = tokio::time::Instant::now() + window;
    let mut peak = Usage::default();
    while tokio::time::Instant::now() < end {
        operator.check_running()?;
        let usage = operator.usage()?;
        peak.peak_rss_mib = peak.peak_rss_mib.max(usage.rss_mib);
        tokio::time::sleep(Duration::from_secs(5).min(end - tokio::time::Instant::now())).await;
    }
    Ok(peak)
}

/// The steady-state window: `BENCH_STEADY_SECONDS` rounded down to whole periods of the longer
/// resync (at least one), so that every object is re-read a whole number of times in it.
fn steady_window(
    config: &PopulationConfig,
    settings: &OperatorSettings,
) -> crate::Result<Duration> {
    let grant = prodaccess::crd::parse_duration(&settings.grant_resync)?;
    let route = prodaccess::crd::parse_duration(&settings.route_resync)?;
    let period = grant.max(route).as_secs().max(1);
    let periods = (config.steady.as_secs() / period).max(1);
    Ok(Duration::from_secs(periods * period))
}

/// Reconciles of `kind` completed (or, for groups, started) between two metrics texts.
fn reconciles_between(before: &str, after: &str, kind: &str) -> f64 {
    let name = if kind == "AccessGroup" {
        "prodaccess_reconciles_total"
    } else {
        "prodaccess_reconcile_duration_seconds_count"
    };
    metric(after, name, &[("kind", kind)]) - metric(before, name, &[("kind", kind)])
}

/// The grant controller's one read per account and period: approvals withdrawn since.
const ACCOUNT_WIDE_GRANT_READ: &str = "DescribeAutomationExecutions";

/// The steady-state figures of calls made in a window of `seconds`.
fn steady_state(
    config: &PopulationConfig,
    settings: &OperatorSettings,
    calls: &[Call],
    seconds: f64,
    before: &str,
    after: &str,
) -> crate::Result<Value> {
    let grant_resync = prodaccess::crd::parse_duration(&settings.grant_resync)?.as_secs_f64();
    let route_resync = prodaccess::crd::parse_duration(&settings.route_resync)?.as_secs_f64();
    let grant_resyncs = seconds / grant_resync;
    let route_resyncs = seconds / route_resync;
    let writes: Vec<&Call> = calls
        .iter()
        .filter(|c| c.kind() == CallKind::Write && c.operation != "AssumeRole")
        .collect();
    let reads_of = |controller: &'static str| {
        calls
            .iter()
            .filter(move |c| c.kind() == CallKind::Read && c.controller() == Some(controller))
    };
    // Reads that observe grants, per group: the grant controller's, plus the group
    // controller's membership read that grants share. The group's own session-policy read is
    // not one, and neither is the check for withdrawn approvals, which is one read per
    // account whatever its groups (reported on its own below).
    let per_account = |c: &&Call| c.operation == ACCOUNT_WIDE_GRANT_READ;
    let grant_reads: Vec<Call> = reads_of("grant")
        .filter(|c| !per_account(c))
        .chain(reads_of("group").filter(|c| c.operation == "GetGroup"))
        .cloned()
        .collect();
    let account_reads = reads_of("grant").filter(per_account).count();
    let group_reads: Vec<Call> = reads_of("group")
        .filter(|c| c.operation != "GetGroup")
        .cloned()
        .collect();
    let route_reads: Vec<Call> = reads_of("route").cloned().collect();
    let per = |n: usize, objects: usize, resyncs: f64| {
        round(n as f64 / (objects.max(1) as f64 * resyncs), 2)
    };
    let grant_reconciles = reconciles_between(before, after, "ProductionAccessGrant");
    let rounds = |kind: &str, objects: usize| {
        round(
            reconciles_between(before, after, kind) / objects.max(1) as f64,
            2,
        )
    };
    let waited = |text: &str| metric(text, "prodaccess_aws_budget_wait_seconds_sum", &[]);
    let mut by_controller: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls {
        *by_controller
            .entry(call.controller().unwrap_or("base identity").to_string())
            .or_insert(0) += 1;
    }
    Ok(json!({
        "calls": counts(calls),
        "writes": writes.len(),
        "write_operations": counts(&writes.into_iter().cloned().collect::<Vec<_>>()),
        "grant_reads_per_group_per_resync": per(grant_reads.len(), config.groups, grant_resyncs),
        // Every group of the population is in the one Jump account.
        "grant_reads_per_account_per_resync": per(account_reads, 1, grant_resyncs),
        "route_reads_per_route_per_resync": per(route_reads.len(), config.routes, route_resyncs),
        "group_policy_reads_per_group_per_resync":
            per(group_reads.len(), config.groups, grant_resyncs),
        "grant_reads_by_operation": counts(&grant_reads),
        "route_reads_by_operation": counts(&route_reads),
        "calls_by_controller": by_controller,
        "seconds": round(seconds, 1),
        "grant_resyncs_in_window": round(grant_resyncs, 2),
        "route_resyncs_in_window": round(route_resyncs, 2),
        "grant_reconciles_in_window": grant_reconciles,
        "observed_rounds": {
            "grants": rounds("ProductionAccessGrant", config.grants),
            "groups": rounds("AccessGroup", config.groups),
            "routes": rounds("PrivateLinkRoute", config.routes),
        },
        "requested_seconds": config.steady.as_secs(),
        "grant_reconciles_expected": round(config.grants as f64 * grant_resyncs, 0),
        "budget_wait_seconds_in_window": round(waited(after) - waited(before), 1),
    }))
}

/// Whether the population was still whole at the end.
fn health(population: &Population, config: &PopulationConfig) -> Value {
    json!({
        "grants_active": active_grants(&population.grants),
        "grants": config.grants,
        "routes_ready": ready_routes(&population.routes),
        "routes": config.routes,
    })
}
