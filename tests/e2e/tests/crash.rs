//! `crash_consistency`: the operator is killed (SIGKILL) at random moments while grants are
//! being granted and revoked, and started again each time. Whatever it was doing when it died,
//! the grants must still all start and end on time, no one may be in a group without a grant
//! covering that moment, no change request may be opened twice, and nothing may be left
//! behind. Routes are built and deleted through the same kills: never a duplicate AWS resource,
//! and nothing left once a route's deletion completes.

use prodaccess_e2e::invariants::{env_number, CallLog, GrantLoad, LoadPlan};
use prodaccess_e2e::routes::{RouteLoad, RoutePlan};
use prodaccess_e2e::{Operator, TestEnv};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Lease identity of every incarnation. A SIGKILLed container is restarted by the kubelet
/// in the same pod, under the same name, and takes its Lease back at once; a new pod would wait
/// out the Lease (see docs/reliability.md).
// The default add margin: a random slow answer must not land an add after its grant ended.
const IDENTITY: &[&str] = &["--identity", "prodaccess-crash-test", "--add-margin", "12s"];

/// What the kills amounted to.
struct Kills {
    operator: Operator,
    done: usize,
    /// Kills made while the route load was still running.
    during_routes: usize,
    slowest: Duration,
}

/// Kills the operator `kills` times at random moments, 1.5 to 4 s after it was last ready,
/// until `until`; starts it again each time. Counts the kills made while the route load was
/// still running (`routes_done` not set). Returns the running operator, the kills made and the
/// longest restart (kill to ready).
async fn kill_and_restart(
    env: &TestEnv,
    mut operator: Operator,
    kills: usize,
    routes_done: &AtomicBool,
    until: Instant,
) -> anyhow::Result<Kills> {
    let mut done = 0;
    let mut during_routes = 0;
    let mut slowest = Duration::ZERO;
    while done < kills && Instant::now() < until {
        let wait = 1500 + rand::random::<u64>() % 2500;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if !operator.running() {
            anyhow::bail!("the operator exited by itself:\n{}", operator.log_tail(30));
        }
        let killed = Instant::now();
        operator.kill();
        done += 1;
        during_routes += usize::from(!routes_done.load(Ordering::SeqCst));
        operator = Operator::start(env, &format!("operator-{done}"), IDENTITY)?;
        operator.wait_ready().await?;
        slowest = slowest.max(killed.elapsed());
    }
    Ok(Kills {
        operator,
        done,
        during_routes,
        slowest,
    })
}

/// SIGKILL at random moments (`PRODACCESS_CRASH_KILLS`, default 12; the figure in
/// docs/reliability.md is from 60) during a load of short grants
/// (`PRODACCESS_CRASH_GRANTS`, default 40), some through change requests, and of routes
/// (`PRODACCESS_CRASH_ROUTES`, default 5, applied over `PRODACCESS_CRASH_ROUTE_SPREAD_SECS`)
/// from the first kill on, so that the kills fall on routes being built and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_consistency() -> anyhow::Result<()> {
    let grants = env_number("PRODACCESS_CRASH_GRANTS", 40);
    let kills = env_number("PRODACCESS_CRASH_KILLS", 12);
    let routes = env_number("PRODACCESS_CRASH_ROUTES", 5);
    let env = TestEnv::new("crash").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    let load = GrantLoad::setup(&env, grants).await?;
    let route_load = RouteLoad::setup(&env).await?;
    let mut accounts = vec![load.account.clone()];
    accounts.extend(route_load.account_ids());
    let log = CallLog::new(&endpoint, &accounts);
    let poller = log.spawn_poller(Duration::from_secs(1));
    let operator = Operator::start(&env, "operator-0", IDENTITY)?;
    let mut first = operator;
    first.wait_ready().await?;

    // Long enough that the kills fall while grants are being granted and revoked.
    let spread = env_number("PRODACCESS_CRASH_SPREAD_SECS", (kills * 4).max(grants / 4));
    let plan = LoadPlan {
        grants,
        spread: Duration::from_secs(spread as u64),
        min_duration_secs: 16,
        max_duration_secs: 24,
        change_request_every: 4,
    };
    let route_plan = RoutePlan::sized("PRODACCESS_CRASH_ROUTE_SPREAD_SECS", routes);
    let longest = route_plan.spread + route_plan.converge_within + route_plan.delete_within;
    let until = Instant::now() + plan.busy_for().max(longest);
    let routes_done = Arc::new(AtomicBool::new(false));
    let chaos = async {
        let routes_run = async {
            let report = route_load.run(&env, &route_plan).await;
            routes_done.store(true, Ordering::SeqCst);
            report
        };
        tokio::join!(
            kill_and_restart(&env, first, kills, &routes_done, until),
            routes_run
        )
    };
    let (report, (chaos, route_report)) = load
        .run(&env, &plan, Duration::from_secs(60), chaos)
        .await?;
    let route_report = route_report?;
    let Kills {
        mut operator,
        done: killed,
        during_routes,
        slowest,
    } = chaos?;

    let mut failures = report.failures();
    failures.extend(route_report.failures.iter().cloned());
    if routes > 0 && during_routes == 0 {
        failures.push("no kill fell while routes were built or deleted".into());
    }
    failures.extend(load.leftovers().await?);
    let ticketed = (0..grants).filter(|i| i.is_multiple_of(4)).count();
    let opened = load.change_requests().await?;
    if opened.len() != ticketed {
        failures.push(format!(
            "{} change requests were opened for {ticketed} grants that needed one",
            opened.len()
        ));
    }
    if killed < kills {
        failures.push(format!(
            "only {killed} of {kills} kills happened during the load"
        ));
    }
    if !operator.running() {
        failures.push("the last operator is not running".into());
    }
    log.poll().await?;
    poller.abort();
    let calls: usize = log.operator_counts().values().sum();
    let done = log.operator_successes();
    // Each user is added at most once, crashes or not. Fewer adds than grants is allowed: a
    // window that the restarts shortened below the add margin is not granted (grants never
    // seen in their group are limited by the report's own check).
    let adds = done.get("iam:AddUserToGroup").copied().unwrap_or(0);
    if adds > grants {
        failures.push(format!(
            "AddUserToGroup succeeded {adds} times for {grants} grants"
        ));
    }
    eprintln!(
        "crash_consistency: {killed} SIGKILLs ({during_routes} while routes were built or \
         deleted; slowest restart {:.1}s); {}; {calls} operator AWS calls; {} change requests",
        slowest.as_secs_f64(),
        report.figures(),
        opened.len()
    );
    eprintln!("crash_consistency: {}", route_report.figures());
    if let Err(err) = route_load.teardown(&env).await {
        failures.push(format!("route teardown: {err:#}"));
    }
    if let Err(err) = load.teardown(&env).await {
        failures.push(format!("teardown: {err:#}"));
    }
    env.cleanup().await;
    operator.kill();
    report.verdict(&env, &log, failures).await
}
