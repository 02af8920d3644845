//! Faults from outside the operator: AWS answering with throttles, server errors, resets and
//! answers slower than the client's timeout (`aws_faults_converge`), and the API server
//! restarting, refusing writes with 409 conflicts and expiring watches
//! (`apiserver_faults_recover`).
//!
//! The promises checked are the same throughout: every grant ends Expired, no one is in a
//! group without a grant whose window covers that moment, every revocation lands within 5 s of
//! its expiry, and nothing is left behind in AWS.

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use prodaccess::crd::{AccessGroup, ProductionAccessGrant};
use prodaccess_e2e::invariants::{
    add_faults, env_number, fault_hits, fault_rules, is_write, CallLog, GrantLoad, LoadPlan,
    LoadReport,
};
use prodaccess_e2e::operator::{free_port, http};
use prodaccess_e2e::platform::{eventually, install_crds};
use prodaccess_e2e::routes::{RouteLoad, RoutePlan, RouteReport};
use prodaccess_e2e::{Operator, Platform, TestEnv};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The plan for `n` grants: applied over `max(20 s, 0.6 n s)`, lasting 8 to 20 s each, every
/// fifth one through a change request.
fn plan(grants: usize) -> LoadPlan {
    let spread = env_number("PRODACCESS_FAULT_SPREAD_SECS", (grants * 6 / 10).max(20));
    LoadPlan {
        grants,
        spread: Duration::from_secs(spread as u64),
        min_duration_secs: 16,
        max_duration_secs: 26,
        change_request_every: 5,
    }
}

/// The failures every load test shares: broken invariants, leftovers, duplicate change
/// requests, an operator that died.
async fn common_failures(
    load: &GrantLoad,
    plan: &LoadPlan,
    report: &LoadReport,
    operator: &mut Operator,
) -> anyhow::Result<Vec<String>> {
    let mut failures = report.failures();
    if report.grants.len() != plan.grants {
        failures.push(format!(
            "{} grants exist, {} were applied",
            report.grants.len(),
            plan.grants
        ));
    }
    failures.extend(load.leftovers().await?);
    let ticketed = (0..plan.grants)
        .filter(|i| plan.change_request_every > 0 && i.is_multiple_of(plan.change_request_every))
        .count();
    let opened = load.change_requests().await?.len();
    if opened != ticketed {
        failures.push(format!(
            "{opened} change requests were opened for {ticketed} grants that needed one"
        ));
    }
    if !operator.running() {
        failures.push(format!("the operator exited:\n{}", operator.log_tail(30)));
    }
    let log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    if log.contains("panicked") {
        failures.push("the operator's log shows a panic".into());
    }
    Ok(failures)
}

fn print_figures(test: &str, report: &LoadReport, log: &CallLog) {
    let counts = log.operator_counts();
    let calls: usize = counts.values().sum();
    let writes: BTreeMap<&String, &usize> = counts
        .iter()
        .filter(|(op, _)| is_write(op.split(':').nth(1).unwrap_or("")))
        .collect();
    eprintln!(
        "{test}: {}; {calls} operator AWS calls; writes {writes:?}",
        report.figures()
    );
}

/// The faults the operator's own route calls met, from the call log: printed, and a failure
/// when none did (the routes were then not tested under faults at all).
fn route_faults(
    test: &str,
    log: &CallLog,
    route_load: &RouteLoad,
    report: &RouteReport,
) -> Vec<String> {
    let (calls, by_kind) = route_load.operator_calls(log);
    eprintln!(
        "{test}: {calls} operator AWS calls for {} routes; faults on them {by_kind:?}",
        report.lives.len()
    );
    if report.lives.is_empty() || !by_kind.is_empty() {
        return Vec::new();
    }
    vec!["no fault met the operator's route calls: the routes proved nothing".into()]
}

/// With about 10% of every AWS call the operator makes failing (throttles with each service's
/// own code, Route 53's PriorRequestNotComplete, HTTP 500 and 503, connection resets, and a
/// few answers slower than the 10 s attempt timeout), many short staggered grants all still
/// start, end on time and leave nothing behind; at the same time routes are built, some deleted
/// while being built or once Ready and the rest at the end, with never a duplicate AWS resource
/// and nothing left after a deletion completes. `PRODACCESS_FAULT_GRANTS` sets how many grants
/// (default 50; the figure in docs/reliability.md is from 1,000), `PRODACCESS_FAULT_ROUTES` how
/// many routes (default 5; by hand 100) and `PRODACCESS_FAULT_ROUTE_SPREAD_SECS` over how long
/// they are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_faults_converge() -> anyhow::Result<()> {
    let grants = env_number("PRODACCESS_FAULT_GRANTS", 50);
    let routes = env_number("PRODACCESS_FAULT_ROUTES", 5);
    let env = TestEnv::new("aws-faults").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    let load = GrantLoad::setup(&env, grants).await?;
    let route_load = RouteLoad::setup(&env).await?;
    let mut accounts = vec![load.account.clone()];
    accounts.extend(route_load.account_ids());
    let log = CallLog::new(&endpoint, &accounts);
    let poller = log.spawn_poller(Duration::from_secs(1));
    for account in &accounts {
        add_faults(&endpoint, &fault_rules(account, 0.004)).await?;
    }
    let mut operator = Operator::start(&env, "operator", &["--add-margin", "12s"])?;
    operator.wait_ready().await?;

    let plan = plan(grants);
    let route_plan = RoutePlan::sized("PRODACCESS_FAULT_ROUTE_SPREAD_SECS", routes);
    let routes_run = route_load.run(&env, &route_plan);
    let (report, route_report) = load
        .run(&env, &plan, Duration::from_secs(60), routes_run)
        .await?;
    let route_report = route_report?;
    let mut failures = common_failures(&load, &plan, &report, &mut operator).await?;
    failures.extend(route_report.failures.iter().cloned());
    log.poll().await?;
    poller.abort();
    print_figures("aws_faults_converge", &report, &log);
    eprintln!("aws_faults_converge: {}", route_report.figures());
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for account in &accounts {
        for (kind, hits) in fault_hits(&endpoint, account).await? {
            *faults.entry(kind).or_default() += hits;
        }
    }
    eprintln!("aws_faults_converge: faults fired {faults:?}");
    for kind in ["throttle", "http500", "http503", "reset"] {
        if faults.get(kind).copied().unwrap_or(0) == 0 {
            failures.push(format!(
                "no {kind} fault was injected: the test proved nothing"
            ));
        }
    }
    failures.extend(route_faults(
        "aws_faults_converge",
        &log,
        &route_load,
        &route_report,
    ));
    if let Err(err) = route_load.teardown(&env).await {
        failures.push(format!("route teardown: {err:#}"));
    }
    if let Err(err) = load.teardown(&env).await {
        failures.push(format!("teardown: {err:#}"));
    }
    env.cleanup().await;
    report.verdict(&env, &log, failures).await
}

/// A kube-apiserver and etcd of this test's own, started from the platform's binaries on
/// free ports, so that restarting it, compacting its history and expiring its watches
/// disturbs no other test. Both processes are killed when it is dropped.
struct PrivateApiServer {
    dir: PathBuf,
    etcd: Child,
    etcd_url: String,
    apiserver: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    kubeconfig: PathBuf,
}

fn spawn_logged(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("start {}", program.display()))
}

fn openssl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "openssl {args:?} failed");
    Ok(())
}

/// The newest kube-apiserver the platform installed.
fn apiserver_binary() -> anyhow::Result<PathBuf> {
    let cache = std::env::var("PRODACCESS_CACHE").unwrap_or("/var/cache/prodaccess".into());
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("kube-apiserver"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .context("no kube-apiserver in the platform cache")
}

impl PrivateApiServer {
    async fn start(name: &str) -> anyhow::Result<PrivateApiServer> {
        let dir = std::env::temp_dir().join(format!("prodaccess-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("certs"))?;
        let path = |p: &str| dir.join(p).to_string_lossy().to_string();
        let token = format!("{:032x}", rand::random::<u128>());
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{token},admin,admin-uid,\"system:masters\"\n"),
        )?;
        openssl(&["genrsa", "-out", &path("sa.key"), "2048"])?;
        openssl(&[
            "rsa",
            "-in",
            &path("sa.key"),
            "-pubout",
            "-out",
            &path("sa.pub"),
        ])?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let etcd_args: Vec<String> = [
            "--name",
            "private",
            "--data-dir",
            &path("etcd"),
            "--listen-client-urls",
            &etcd_url,
            "--advertise-client-urls",
            &etcd_url,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("private={peer}"),
            "--initial-cluster-state",
            "new",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let etcd = spawn_logged(Path::new("etcd"), &etcd_args, &dir.join("etcd.log"))?;
        let port = free_port()?;
        let args: Vec<String> = [
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            "--insecure-port=0".into(),
            format!("--etcd-servers={etcd_url}"),
            format!("--token-auth-file={}", path("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--endpoint-reconciler-type=none".into(),
            format!("--cert-dir={}", path("certs")),
            "--profiling=false".into(),
            // Watches end every 8 to 16 s and resume from their last resourceVersion, read
            // from etcd itself: once that revision is compacted, the answer is 410 Gone.
            "--min-request-timeout=8".into(),
            "--watch-cache=false".into(),
        ]
        .to_vec();
        let mut server = PrivateApiServer {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            etcd,
            etcd_url,
            apiserver: None,
            binary: apiserver_binary()?,
            args,
        };
        server.wait_etcd().await?;
        server.start_apiserver().await?;
        let certs = std::fs::read_to_string(server.dir.join("certs/apiserver.crt"))?;
        let ca = certs
            .rfind("-----BEGIN CERTIFICATE-----")
            .map(|at| &certs[at..])
            .context("no certificate in apiserver.crt")?;
        std::fs::write(server.dir.join("ca.crt"), ca)?;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: private\n  cluster:\n    \
             server: https://127.0.0.1:{port}\n    certificate-authority: {}\n\
             users:\n- name: admin\n  user:\n    token: {token}\n\
             contexts:\n- name: private\n  context: {{cluster: private, user: admin}}\n\
             current-context: private\n",
            server.dir.join("ca.crt").display()
        );
        std::fs::write(&server.kubeconfig, kubeconfig)?;
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_etcd(&self) -> anyhow::Result<()> {
        let url = format!("{}/health", self.etcd_url);
        eventually("etcd to answer", Duration::from_secs(30), || async {
            let (_, body) = http("GET", &url, "").await?;
            Ok(body.contains("true").then_some(()))
        })
        .await
    }

    async fn start_apiserver(&mut self) -> anyhow::Result<()> {
        let log = self.dir.join("kube-apiserver.log");
        self.apiserver = Some(spawn_logged(&self.binary, &self.args, &log)?);
        let cert = self.dir.join("certs/apiserver.crt");
        eventually(
            "the API server's certificate",
            Duration::from_secs(60),
            || async { Ok(cert.exists().then_some(())) },
        )
        .await
    }

    async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let options = KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Waits until the API server serves requests, including the `default` namespace.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        eventually(
            "the API server to serve",
            Duration::from_secs(90),
            || async {
                let client = self.client().await?;
                let namespaces: Api<Namespace> = Api::all(client);
                Ok(namespaces.get_opt("default").await?.map(|_| ()))
            },
        )
        .await
    }

    /// Kills the API server and starts it again on the same port; returns how long it was
    /// unavailable.
    async fn restart(&mut self) -> anyhow::Result<Duration> {
        let down = Instant::now();
        if let Some(mut old) = self.apiserver.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        self.start_apiserver().await?;
        self.wait_ready().await?;
        Ok(down.elapsed())
    }

    /// Compacts etcd's history up to its current revision: any watch resuming from an older
    /// resourceVersion now gets 410 Gone.
    async fn compact(&self) -> anyhow::Result<i64> {
        let range = format!("{}/v3/kv/range", self.etcd_url);
        let (_, body) = http("POST", &range, r#"{"key":"AA==","keys_only":true}"#).await?;
        let answer: serde_json::Value = serde_json::from_str(&body)?;
        let revision: i64 = answer["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .context("no etcd revision")?;
        let compaction = format!("{}/v3/kv/compaction", self.etcd_url);
        let body = serde_json::json!({ "revision": revision }).to_string();
        http("POST", &compaction, &body).await?;
        Ok(revision)
    }
}

impl Drop for PrivateApiServer {
    fn drop(&mut self) {
        if let Some(mut apiserver) = self.apiserver.take() {
            let _ = apiserver.kill();
            let _ = apiserver.wait();
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

/// A test world on the private API server: the shared emulator, this API server.
async fn private_env(server: &PrivateApiServer) -> anyhow::Result<TestEnv> {
    let shared = Platform::get()?;
    let platform = Platform {
        kubeconfig: server.kubeconfig.clone(),
        ..shared
    };
    let client = server.client().await?;
    install_crds(&client).await?;
    let id = format!("apiserver-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let namespace = format!("t-{id}");
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": namespace}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(TestEnv {
        platform,
        client,
        namespace,
        id,
    })
}

/// What the API server's disturbances amounted to.
#[derive(Debug, Default)]
struct Disturbed {
    restarts: Vec<Duration>,
    compactions: usize,
    writes: usize,
    gone_seen: bool,
}

/// Writes to the objects the operator writes, as another client would: annotations on both
/// access groups (whose approval ledger the operator updates under optimistic locking) and the
/// grants. Every write bumps the resourceVersion the operator holds.
async fn poke(env: &TestEnv, load: &GrantLoad, round: usize) -> usize {
    let patch = poke_patch(round);
    let params = PatchParams::default();
    let groups: Api<AccessGroup> = Api::all(env.client.clone());
    let grants: Api<ProductionAccessGrant> = env.api();
    let mut done = 0;
    for group in [&load.open.name, &load.ticketed.name] {
        done += usize::from(groups.patch(group, &params, &patch).await.is_ok());
    }
    let name = format!("g-{:04}", round % 40);
    done += usize::from(grants.patch(&name, &params, &patch).await.is_ok());
    done
}

fn poke_patch(round: usize) -> Patch<serde_json::Value> {
    Patch::Merge(serde_json::json!({
        "metadata": {"annotations": {"reliability.prodaccess.io/poke": round.to_string()}}
    }))
}

/// Annotates the operator's leader Lease every 10 ms until `until`, so that its
/// renewals (read, then replace with that resourceVersion) meet 409 Conflict.
async fn poke_lease(env: &TestEnv, until: Instant) -> usize {
    let lease: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let name = format!("prodaccess-{}", env.id);
    let mut done = 0;
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        let (params, patch) = (PatchParams::default(), poke_patch(round));
        done += usize::from(lease.patch(&name, &params, &patch).await.is_ok());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done
}

/// Restarts the API server twice, compacts etcd every 3 s and writes to the operator's
/// objects every 100 ms (its Lease every 10 ms), until `until`.
async fn disturb(
    server: &mut PrivateApiServer,
    env: &TestEnv,
    load: &GrantLoad,
    until: Instant,
) -> anyhow::Result<Disturbed> {
    let (seen, lease_writes) = tokio::join!(
        restart_compact_and_poke(server, env, load, until),
        poke_lease(env, until)
    );
    let mut seen = seen?;
    seen.writes += lease_writes;
    Ok(seen)
}

async fn restart_compact_and_poke(
    server: &mut PrivateApiServer,
    env: &TestEnv,
    load: &GrantLoad,
    until: Instant,
) -> anyhow::Result<Disturbed> {
    let started = Instant::now();
    let mut seen = Disturbed::default();
    let restarts_at = [Duration::from_secs(10), Duration::from_secs(28)];
    let mut last_compaction = Instant::now();
    let mut round = 0;
    while Instant::now() < until {
        if seen.restarts.len() < restarts_at.len()
            && started.elapsed() > restarts_at[seen.restarts.len()]
        {
            seen.restarts.push(server.restart().await?);
        }
        if last_compaction.elapsed() > Duration::from_secs(3) {
            server.compact().await?;
            seen.compactions += 1;
            last_compaction = Instant::now();
            if !seen.gone_seen {
                seen.gone_seen = watch_is_gone(env).await;
            }
        }
        round += 1;
        seen.writes += poke(env, load, round).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(seen)
}

/// Whether a watch of the grants from the oldest resourceVersion is refused with 410 Gone,
/// as the operator's own watches are when they resume after a compaction.
async fn watch_is_gone(env: &TestEnv) -> bool {
    use futures::StreamExt;
    let grants: Api<ProductionAccessGrant> = env.api();
    let Ok(stream) = grants.watch(&WatchParams::default().timeout(5), "1").await else {
        return false;
    };
    let mut stream = Box::pin(stream);
    match stream.next().await {
        Some(Ok(kube::api::WatchEvent::Error(status))) => status.code == 410,
        Some(Err(kube::Error::Api(status))) => status.code == 410,
        _ => false,
    }
}

/// The API server restarted twice (the operator's watches and requests break mid-run), its
/// history compacted every 3 s so that resumed watches get 410 Gone, and another client writing
/// to the access groups and the grants every 100 ms and to the leader Lease every 10 ms, so
/// that the operator's optimistic writes meet 409 Conflict. The operator must ride it out
/// without restarting, and do the AWS work of each grant once. Runs on a private API server,
/// so no other test is disturbed. `PRODACCESS_APISERVER_GRANTS` sets the number of grants
/// (default 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_faults_recover() -> anyhow::Result<()> {
    let grants = env_number("PRODACCESS_APISERVER_GRANTS", 30);
    let mut server = PrivateApiServer::start(&format!("apiserver-{}", std::process::id())).await?;
    let env = private_env(&server).await?;
    let endpoint = env.platform.aws_endpoint.clone();
    let load = GrantLoad::setup(&env, grants).await?;
    let log = CallLog::new(&endpoint, std::slice::from_ref(&load.account));
    let poller = log.spawn_poller(Duration::from_secs(1));
    let mut operator = Operator::start(
        &env,
        "operator",
        &["--lease-duration", "15s", "--add-margin", "12s"],
    )?;
    operator.wait_ready().await?;

    let plan = LoadPlan {
        grants,
        spread: Duration::from_secs(30),
        min_duration_secs: 20,
        max_duration_secs: 30,
        change_request_every: 3,
    };
    let until = Instant::now() + plan.busy_for();
    let chaos = disturb(&mut server, &env, &load, until);
    let (report, disturbed) = load
        .run(&env, &plan, Duration::from_secs(60), chaos)
        .await?;
    let disturbed = disturbed?;
    let mut failures = common_failures(&load, &plan, &report, &mut operator).await?;
    if disturbed.restarts.len() < 2 {
        failures.push(format!("only {} restarts", disturbed.restarts.len()));
    }
    if !disturbed.gone_seen {
        failures.push("no watch was ever answered 410 Gone: the test proved nothing".into());
    }
    log.poll().await?;
    poller.abort();
    let done = log.operator_successes();
    // Each granted grant is added (with its guard) exactly once. A grant whose window the
    // restarts shortened below the add margin is never granted, by design, and needs neither;
    // how many may end that way is limited by the report's own never-a-member check.
    let granted = report
        .grants
        .iter()
        .filter(|g| g.granted_at.is_some())
        .count();
    for op in ["iam:AddUserToGroup", "iam:PutUserPolicy"] {
        let count = done.get(op).copied().unwrap_or(0);
        if count != granted {
            failures.push(format!(
                "{op} succeeded {count} times for {granted} granted of {grants} grants"
            ));
        }
    }
    let operator_log = std::fs::read_to_string(&operator.log).unwrap_or_default();
    let conflicts = operator_log.matches("failed to record approval").count();
    let lease_conflicts = operator_log.matches("Lease renewal").count();
    print_figures("apiserver_faults_recover", &report, &log);
    eprintln!(
        "apiserver_faults_recover: restarts {:?}, {} compactions, {} writes by another client, \
         {conflicts} ledger conflicts retried, {lease_conflicts} lease renewals retried, \
         {granted} of {grants} grants granted",
        disturbed.restarts, disturbed.compactions, disturbed.writes
    );
    if let Err(err) = load.teardown(&env).await {
        failures.push(format!("teardown: {err:#}"));
    }
    report.verdict(&env, &log, failures).await
}
