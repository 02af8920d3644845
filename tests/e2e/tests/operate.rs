//! Operating prodaccess: the `kubectl prodaccess` plugin as a person uses it, two operator
//! replicas with one dying mid-reconcile, the health and metrics endpoints, and the IAM
//! policies in `docs/iam/` checked against every AWS call the operator really makes.
//!
//! Everything runs against the local platform (a real kube-apiserver and the AWS emulator)
//! with the seed scenario of the article: alice asks for production access, carol approves the
//! change request, and the route to the production admin console is built next to it.

#[path = "operate/emulator.rs"]
mod emulator;
#[path = "operate/plugin.rs"]
mod plugin;
#[path = "operate/policy.rs"]
mod policy;
#[path = "operate/resources.rs"]
mod resources;

use anyhow::{ensure, Context as _};
use kube::api::{Api, DeleteParams};
use prodaccess::crd::{ConditionExt, GrantPhase, PrivateLinkRoute, ProductionAccessGrant};
use prodaccess_e2e::operator::{free_port, http_get};
use prodaccess_e2e::platform::{eventually, TEST_LABEL};
use prodaccess_e2e::scenario::{self, grant_lifecycle, GRANT, GROUP, ROUTE};
use prodaccess_e2e::seed::{self, Fixtures};
use prodaccess_e2e::{Operator, TestEnv};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use emulator::{count, operator_calls};
use plugin::Running;
use policy::PolicyFile;
use resources::RouteResources;

/// The seed world for one test: namespace, AWS fixtures, enforcement on.
async fn seed_world(test: &str) -> anyhow::Result<(TestEnv, Fixtures)> {
    let env = TestEnv::new(test).await?;
    seed::enable_enforcement(&env.platform.aws_endpoint).await?;
    let fx = Fixtures::create(&env.platform.aws_endpoint).await?;
    Ok((env, fx))
}

/// Applies the seed manifests whose file names start with one of `only`.
async fn apply_seed(
    env: &TestEnv,
    fx: &Fixtures,
    duration: &str,
    only: &[&str],
) -> anyhow::Result<()> {
    let vars = fx.variables(&env.namespace, &format!("-{}", env.id), duration);
    env.apply_yaml(&seed::manifests(&env.platform.repo, &vars, only)?)
        .await
}

fn phase(grant: &ProductionAccessGrant) -> GrantPhase {
    grant.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

async fn grant_in(
    env: &TestEnv,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&ProductionAccessGrant) -> bool,
) -> anyhow::Result<ProductionAccessGrant> {
    let api: Api<ProductionAccessGrant> = env.api();
    eventually(what, timeout, || async {
        let grant = api.get(name).await?;
        Ok(check(&grant).then_some(grant))
    })
    .await
}

async fn route_ready(env: &TestEnv, timeout: Duration) -> anyhow::Result<PrivateLinkRoute> {
    let api: Api<PrivateLinkRoute> = env.api();
    eventually("the route to be Ready", timeout, || async {
        let route = api.get(ROUTE).await?;
        let ready = route
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.is_true("Ready"));
        Ok(ready.then_some(route))
    })
    .await
}

async fn delete_and_wait<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.delete(name, &DeleteParams::default()).await?;
    eventually(
        &format!("{name} deleted"),
        Duration::from_secs(90),
        || async { Ok(api.get_opt(name).await?.is_none().then_some(())) },
    )
    .await
}

/// The sum of every series of metric `name` whose labels include all of `labels`; `None`
/// when there is no such series.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let pairs: Vec<&str> = label_text.split(',').collect();
        let matches = labels
            .iter()
            .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()));
        if metric == name && matches {
            let value: f64 = value.parse().unwrap_or(f64::NAN);
            found = Some(found.unwrap_or(0.0) + value);
        }
    }
    found
}

async fn is_leader(operator: &Operator) -> anyhow::Result<bool> {
    let text = operator.metrics().await?;
    Ok(metric(&text, "prodaccess_leader", &[]) == Some(1.0))
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// alice asks for access with the plugin; it prints the change request to approve; carol
/// approves; the plugin prints the exact port-forwarding command (after the MFA step) and
/// exits 0; that command's session really starts. `status` shows the grant Active with its
/// time left, `revoke` ends it (alice out of the group, her session refused), `status` then
/// shows it Revoked, and revoking a grant that does not exist is a one-line error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_request_flow() -> anyhow::Result<()> {
    let started = Instant::now();
    let (env, fx) = seed_world("cli-request").await?;
    let mut operator = Operator::start(&env, "operator", &[])?;
    operator.wait_ready().await?;
    apply_seed(&env, &fx, "1h", &["01", "02"]).await?;
    let group = format!("production-access-{}", env.id);
    let kubeconfig = env.platform.kubeconfig.clone();
    let ns = env.namespace.clone();
    let label = format!("{TEST_LABEL}={}", env.id);

    let mut request = Running::start(
        &kubeconfig,
        &[
            "request",
            "--group",
            &group,
            "--user",
            "alice",
            "--duration",
            "1h",
            "--reason",
            "Check the production admin console after the release",
            "--namespace",
            &ns,
            "--label",
            &label,
        ],
    )?;
    let created = request
        .until("the created grant", Duration::from_secs(30), |l| {
            l.starts_with("Created grant ")
        })
        .await?;
    let name = words(&created).get(2).context("no grant name")?.to_string();
    ensure!(
        name.starts_with("alice-production-access-"),
        "generated name {name}"
    );
    let waiting = request
        .until("the change request", Duration::from_secs(60), |l| {
            l.contains("waiting for approval of change request ")
        })
        .await
        .with_context(|| operator.log_tail(30))?;
    let change_request = waiting
        .split("change request ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .context("no change request id")?
        .to_string();
    let grant = grant_in(&env, &name, "the grant", Duration::from_secs(5), |_| true).await?;
    let recorded = grant.status.and_then(|s| s.approval_id);
    ensure!(
        recorded.as_deref() == Some(change_request.as_str()),
        "printed {change_request}, grant has {recorded:?}"
    );
    ensure!(
        fx.start_port_forwarding(&fx.alice).await?.is_err(),
        "alice has a session before approval"
    );

    fx.approve(&fx.carol, &change_request).await?;
    let (success, lines, stderr) = request.finish(Duration::from_secs(60)).await?;
    ensure!(success, "request failed: {stderr}\n{lines:#?}");
    ensure!(stderr.trim().is_empty(), "stderr: {stderr}");
    let command = format!(
        "aws ssm start-session --target {} --document-name AWS-StartPortForwardingSession \
         --parameters portNumber=3389,localPortNumber=11111 --region ap-northeast-1",
        fx.jump_host
    );
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let session_at = lines.iter().position(|l| l.trim() == command);
    let mfa_at = at("aws sts get-session-token --serial-number ");
    ensure!(
        session_at.is_some(),
        "no line is exactly `{command}`:\n{lines:#?}"
    );
    ensure!(
        mfa_at.is_some() && mfa_at < session_at,
        "the MFA step must come first:\n{lines:#?}"
    );
    ensure!(lines.iter().any(|l| l.starts_with("Active ")), "{lines:#?}");
    let session = fx.start_port_forwarding(&fx.alice).await?;
    ensure!(
        session.is_ok(),
        "the printed command is refused: {session:?}"
    );
    eprintln!("cli_request_flow: plugin output\n{}", lines.join("\n"));

    let long = Duration::from_secs(30);
    let status = plugin::run(&kubeconfig, &["status", "-n", &ns], long).await?;
    ensure!(status.success, "status failed: {}", status.stderr);
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .with_context(|| format!("no row for {name}:\n{}", status.stdout))?;
    let cols = words(row);
    ensure!(
        cols.get(1..5) == Some(&["Active", "alice", group.as_str(), "59m"][..])
            || cols.get(4) == Some(&"1h00m"),
        "row: {row}"
    );
    let all = plugin::run(
        &kubeconfig,
        &["status", "--all-namespaces", "--user", "alice"],
        long,
    )
    .await?;
    ensure!(
        all.stdout.starts_with("NAMESPACE ")
            && all
                .stdout
                .lines()
                .any(|l| words(l).get(..2) == Some(&[ns.as_str(), name.as_str()][..])),
        "status -A:\n{}{}",
        all.stdout,
        all.stderr
    );

    let revoke = plugin::run(&kubeconfig, &["revoke", &name, "-n", &ns, "--wait"], long).await?;
    ensure!(
        revoke.success,
        "revoke failed: {}{}",
        revoke.stdout,
        revoke.stderr
    );
    ensure!(
        revoke.stdout.lines().any(|l| l.starts_with("Revoked ")),
        "{}",
        revoke.stdout
    );
    let revoked = grant_in(&env, &name, "Revoked", Duration::from_secs(5), |g| {
        phase(g) == GrantPhase::Revoked
    })
    .await?;
    ensure!(revoked.spec.revoked, "spec.revoked was not set");
    ensure!(
        fx.group_members(GROUP).await?.is_empty(),
        "alice still in the group"
    );
    ensure!(
        fx.start_port_forwarding(&fx.alice).await?.is_err(),
        "alice still gets a session after revoke"
    );
    let status = plugin::run(&kubeconfig, &["status", "-n", &ns], long).await?;
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_default();
    ensure!(
        words(row).get(1..5) == Some(&["Revoked", "alice", group.as_str(), "-"][..]),
        "row: {row}"
    );
    let missing = plugin::run(&kubeconfig, &["revoke", "no-such-grant", "-n", &ns], long).await?;
    ensure!(!missing.success, "revoking a missing grant succeeded");
    ensure!(
        missing.stderr == format!("error: grant no-such-grant not found in namespace {ns}\n"),
        "stderr: {:?}",
        missing.stderr
    );

    let api: Api<ProductionAccessGrant> = env.api();
    delete_and_wait(&api, &name).await?;
    env.cleanup().await;
    eprintln!("cli_request_flow: {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A kubeconfig like the platform's, with `edit` applied to its one user.
fn kubeconfig_variant(
    env: &TestEnv,
    file: &str,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(&env.platform.kubeconfig)?;
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text)?;
    edit(&mut config);
    let path = env.platform.log_dir.join(format!("{}-{file}", env.id));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

/// A plain-HTTP stand-in for an API server without the prodaccess CRDs: `/version` answers,
/// every other path is `404 page not found`, as kube-apiserver answers for an unknown group.
async fn api_server_without_crds() -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = if path == "/version" {
                    let info = serde_json::json!({
                        "major": "1", "minor": "20", "gitVersion": "v1.20.2",
                        "gitCommit": "", "gitTreeState": "", "buildDate": "",
                        "goVersion": "", "compiler": "gc", "platform": "linux/amd64"
                    });
                    ("200 OK", info.to_string())
                } else {
                    ("404 Not Found", "404 page not found\n".to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// Each failure a person can meet is one `error:` line that says what to do: a cluster that
/// does not answer, no kubeconfig, RBAC that forbids (impersonating a user without rights),
/// and a cluster without the CRDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_one_line() -> anyhow::Result<()> {
    let env = TestEnv::new("cli-errors").await?;
    let ns = env.namespace.clone();
    let short = Duration::from_secs(30);
    let request = |group: &str| -> Vec<String> {
        ["request", "--group", group, "--user", "alice"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--reason", "r", "-n", &ns].iter().map(|s| s.to_string()))
            .collect()
    };
    let check = |out: plugin::Output, want: &str| -> anyhow::Result<()> {
        ensure!(!out.success, "expected a failure, got:\n{}", out.stdout);
        ensure!(
            out.stderr.lines().count() == 1 && out.stderr.starts_with(&format!("error: {want}")),
            "expected one line `error: {want}...`, got {:?}",
            out.stderr
        );
        Ok(())
    };

    let closed = free_port()?;
    let unreachable = kubeconfig_variant(&env, "unreachable.kubeconfig", |c| {
        c["clusters"][0]["cluster"]["server"] = format!("https://127.0.0.1:{closed}").into();
    })?;
    let out = plugin::run(&unreachable, &["status", "-n", &ns], short).await?;
    check(
        out,
        &format!("cannot reach the Kubernetes API at https://127.0.0.1:{closed}: "),
    )?;

    let nowhere = env.platform.log_dir.join("no-such-kubeconfig");
    let out = plugin::run(&nowhere, &["status"], short).await?;
    check(out, "no Kubernetes configuration found")?;

    let nobody = kubeconfig_variant(&env, "nobody.kubeconfig", |c| {
        c["users"][0]["user"]["as"] = "prodaccess-e2e-nobody".into();
    })?;
    let args = request("production-access");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = plugin::run(&nobody, &args, short).await?;
    check(out, &format!("you may not create grants in namespace {ns}"))?;
    let out = plugin::run(&nobody, &["status", "-n", &ns], short).await?;
    check(out, &format!("you may not list grants in namespace {ns}"))?;
    let out = plugin::run(&nobody, &["revoke", "g", "-n", &ns], short).await?;
    check(out, &format!("you may not update grants in namespace {ns}"))?;

    let port = api_server_without_crds().await?;
    let bare = kubeconfig_variant(&env, "no-crds.kubeconfig", |c| {
        c["clusters"][0]["cluster"] =
            serde_yaml::from_str(&format!("server: http://127.0.0.1:{port}")).unwrap_or_default();
    })?;
    let missing = "the prodaccess CRDs are not installed in this cluster";
    check(
        plugin::run(&bare, &["status", "-n", &ns], short).await?,
        missing,
    )?;
    check(plugin::run(&bare, &args, short).await?, missing)?;
    check(
        plugin::run(&bare, &["revoke", "g", "-n", &ns], short).await?,
        missing,
    )?;

    let out = plugin::run(
        &env.platform.kubeconfig,
        &request("no-such-group")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        short,
    )
    .await?;
    check(out, "access group no-such-group does not exist")?;
    env.cleanup().await;
    Ok(())
}

/// Two operators for the same test share one Lease. The grant and the route are applied; while
/// the leader is inside a slow `CreateListener` (the emulator delays it) it is killed. The
/// standby takes over within the lease duration, finishes the route, and the grant goes
/// through approval, Active and expiry. Afterwards AWS holds exactly one route's resources,
/// one change request, and the user was added to the group once and removed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_no_duplicates() -> anyhow::Result<()> {
    let started = Instant::now();
    let (env, fx) = seed_world("failover").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    let mut a = Operator::start(&env, "replica-a", &[])?;
    let mut b = Operator::start(&env, "replica-b", &[])?;
    a.wait_ready().await?;
    b.wait_ready().await?;
    let a_leads = eventually("exactly one leader", Duration::from_secs(30), || async {
        let (la, lb) = (is_leader(&a).await?, is_leader(&b).await?);
        Ok((la != lb).then_some(la))
    })
    .await?;
    let (mut leader, standby) = if a_leads { (a, b) } else { (b, a) };
    let (code, _) = http_get(&format!("http://127.0.0.1:{}/ready", standby.metrics_port)).await?;
    ensure!(code == 200, "the standby is not Ready ({code})");
    ensure!(!is_leader(&standby).await?, "two leaders");

    let slow_listener = emulator::add_fault(
        &endpoint,
        serde_json::json!({
            "service": "elasticloadbalancing", "operation": "CreateListener",
            "kind": "delay", "delay_ms": 2500, "count": 1, "account": fx.prod_account,
        }),
    )
    .await?;
    apply_seed(&env, &fx, "20s", &["01", "02", "03", "04"]).await?;
    eventually(
        "the leader inside CreateListener",
        Duration::from_secs(90),
        || async { Ok((emulator::fault_hits(&endpoint, slow_listener).await? > 0).then_some(())) },
    )
    .await
    .with_context(|| leader.log_tail(30))?;
    leader.kill();
    let killed = Instant::now();
    // Until now only the leader acted: the standby has not reconciled anything, and its only
    // AWS calls are the credential check at start (STS GetCallerIdentity).
    let idle = standby.metrics().await?;
    let reconciles = metric(&idle, "prodaccess_reconciles_total", &[]).unwrap_or_default();
    let calls = metric(&idle, "prodaccess_aws_calls_total", &[]).unwrap_or_default();
    let identity = metric(
        &idle,
        "prodaccess_aws_calls_total",
        &[("operation", "GetCallerIdentity")],
    );
    ensure!(
        reconciles == 0.0 && Some(calls) == identity.or(Some(0.0)),
        "the standby acted before it led: {reconciles} reconciles, {calls} AWS calls"
    );
    let api: Api<PrivateLinkRoute> = env.api();
    let route = api.get(ROUTE).await?;
    ensure!(
        !route.status.is_some_and(|s| s.conditions.is_true("Ready")),
        "the route was Ready before the kill"
    );

    eventually("the standby to lead", Duration::from_secs(20), || async {
        Ok(is_leader(&standby).await?.then_some(()))
    })
    .await?;
    let takeover = killed.elapsed();
    // Lease 6s, renewed and retried every 2s: the Lease lapses at most 6s after the last
    // renewal and the standby tries again at most 2s later; 2s more for a loaded machine.
    ensure!(
        takeover <= Duration::from_secs(10),
        "took over after {takeover:?}"
    );

    let waiting = grant_in(
        &env,
        GRANT,
        "a change request",
        Duration::from_secs(60),
        |g| g.status.as_ref().is_some_and(|s| s.approval_id.is_some()),
    )
    .await?;
    let change_request = waiting
        .status
        .and_then(|s| s.approval_id)
        .unwrap_or_default();
    fx.approve(&fx.carol, &change_request).await?;
    grant_in(&env, GRANT, "Active", Duration::from_secs(30), |g| {
        phase(g) == GrantPhase::Active
    })
    .await
    .with_context(|| standby.log_tail(30))?;
    ensure!(
        fx.group_members(GROUP).await? == vec!["alice".to_string()],
        "alice is not in the group"
    );
    let route = route_ready(&env, Duration::from_secs(120))
        .await
        .with_context(|| standby.log_tail(40))?;
    let routes = plugin::run(
        &env.platform.kubeconfig,
        &["routes", "-n", &env.namespace],
        Duration::from_secs(30),
    )
    .await?;
    let url = route.status.and_then(|s| s.url).unwrap_or_default();
    ensure!(
        routes
            .stdout
            .lines()
            .any(|l| words(l).get(..3) == Some(&[ROUTE, url.as_str(), "True"][..])),
        "routes printed:\n{}{}",
        routes.stdout,
        routes.stderr
    );

    let expired = grant_in(&env, GRANT, "Expired", Duration::from_secs(90), |g| {
        phase(g) == GrantPhase::Expired
    })
    .await?;
    let status = expired.status.unwrap_or_default();
    let expiry = status.window.map(|w| w.expiry.0).context("no window")?;
    let revoked = status.revoked_at.map(|t| t.0).context("no revokedAt")?;
    let lag = revoked.duration_since(expiry).as_secs_f64();
    ensure!((0.0..2.0).contains(&lag), "revoked {lag}s after expiry");
    ensure!(
        fx.group_members(GROUP).await?.is_empty(),
        "alice still in the group"
    );

    let jump = operator_calls(&endpoint, &fx.jump_account).await?;
    let prod = operator_calls(&endpoint, &fx.prod_account).await?;
    let changes = emulator::executions_by_operator(&endpoint, &fx.jump_account).await?;
    ensure!(changes.len() == 1, "change requests opened: {changes:?}");
    for operation in ["AddUserToGroup", "RemoveUserFromGroup"] {
        ensure!(
            count(&jump, operation) == 1,
            "{operation} called {} times; the operator's IAM calls:\n{}",
            count(&jump, operation),
            emulator::timeline(&jump, "iam")
        );
    }
    for (calls, operation, want) in [
        (&prod, "CreateLoadBalancer", 2),
        (&prod, "CreateTargetGroup", 2),
        (&prod, "CreateVpcEndpointServiceConfiguration", 1),
        (&jump, "CreateVpcEndpoint", 1),
        (&jump, "CreateHostedZone", 1),
    ] {
        ensure!(
            count(calls, operation) == want,
            "{operation} called {} times, want {want}",
            count(calls, operation)
        );
    }
    let resources = RouteResources::count(&fx.prod, &fx.jump).await?;
    ensure!(
        resources == RouteResources::one_route(),
        "AWS holds {resources:?}"
    );
    eprintln!(
        "leader_failover_no_duplicates: takeover {:.1}s after the kill, revoke lag {lag:.3}s, \
         CreateListener calls {}",
        takeover.as_secs_f64(),
        count(&prod, "CreateListener")
    );

    delete_and_wait(&api, ROUTE).await?;
    let left = RouteResources::count(&fx.prod, &fx.jump).await?;
    ensure!(left == RouteResources::default(), "left behind: {left:?}");
    let grants: Api<ProductionAccessGrant> = env.api();
    delete_and_wait(&grants, GRANT).await?;
    env.cleanup().await;
    drop(standby);
    eprintln!(
        "leader_failover_no_duplicates: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `/live` answers as soon as the process serves, `/ready` once the caches are synced, and
/// after a grant's whole life `/metrics` shows reconciles by kind, AWS calls by service,
/// operation and outcome, leadership, the revoke lag and grants by phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints() -> anyhow::Result<()> {
    let started = Instant::now();
    let (env, fx) = seed_world("metrics").await?;
    let mut operator = Operator::start(&env, "operator", &[])?;
    let base = format!("http://127.0.0.1:{}", operator.metrics_port);
    let live = eventually("/live", Duration::from_secs(30), || async {
        Ok(http_get(&format!("{base}/live")).await.ok())
    })
    .await?;
    ensure!(live == (200, "ok".to_string()), "/live answered {live:?}");
    operator.wait_ready().await?;
    let ready = http_get(&format!("{base}/ready")).await?;
    ensure!(
        ready == (200, "ready".to_string()),
        "/ready answered {ready:?}"
    );
    let (code, _) = http_get(&format!("{base}/nothing-here")).await?;
    ensure!(code == 404, "unknown path answered {code}");
    eventually("prodaccess_leader 1", Duration::from_secs(20), || async {
        Ok(is_leader(&operator).await?.then_some(()))
    })
    .await?;

    let outcome = grant_lifecycle(&env, &fx, "10s", &|_| {}).await?;
    let text = operator.metrics().await?;
    let value = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    for kind in ["AwsAccount", "AccessGroup", "ProductionAccessGrant"] {
        let reconciles = value("prodaccess_reconciles_total", &[("kind", kind)]);
        ensure!(
            reconciles >= Some(1.0),
            "reconciles of {kind}: {reconciles:?}"
        );
    }
    let durations = value(
        "prodaccess_reconcile_duration_seconds_count",
        &[("kind", "ProductionAccessGrant")],
    );
    ensure!(durations >= Some(1.0), "reconcile durations: {durations:?}");
    for (service, operation) in [
        ("IAM", "AddUserToGroup"),
        ("IAM", "RemoveUserFromGroup"),
        ("SSM", "StartChangeRequestExecution"),
        ("SSM", "GetAutomationExecution"),
        ("STS", "GetCallerIdentity"),
    ] {
        let calls = value(
            "prodaccess_aws_calls_total",
            &[
                ("service", service),
                ("operation", operation),
                ("outcome", "ok"),
            ],
        );
        ensure!(
            calls >= Some(1.0),
            "aws calls {service} {operation}: {calls:?}\n{text}"
        );
    }
    // Every request passes the per-account budget (it wraps the SDK's HTTP client).
    for (service, kind) in [("iam", "write"), ("iam", "read"), ("ssm", "write")] {
        let passed = value(
            "prodaccess_aws_budget_requests_total",
            &[("service", service), ("kind", kind)],
        );
        ensure!(
            passed >= Some(1.0),
            "budget requests {service} {kind}: {passed:?}\n{text}"
        );
    }
    ensure!(
        value("prodaccess_leader", &[]) == Some(1.0),
        "leader gauge\n{text}"
    );
    let lags = value("prodaccess_revoke_lag_seconds_count", &[]).unwrap_or_default();
    let lag_sum = value("prodaccess_revoke_lag_seconds_sum", &[]).unwrap_or(f64::MAX);
    ensure!(lags >= 1.0, "no revoke lag observed\n{text}");
    ensure!(
        lag_sum <= 2.0 * lags,
        "revoke lag sum {lag_sum} for {lags} revocations"
    );
    // The phase gauges are refreshed from the cache every 10 s.
    eventually(
        "prodaccess_grants{phase=\"Expired\"}",
        Duration::from_secs(25),
        || async {
            let text = operator.metrics().await?;
            // The caches hold only this instance's grants (its selector): just this one.
            let expired = metric(&text, "prodaccess_grants", &[("phase", "Expired")]);
            Ok((expired == Some(1.0)).then_some(()))
        },
    )
    .await?;
    eprintln!(
        "health_and_metrics_endpoints: revoke lag {:.3}s, {:.1}s",
        outcome.revoke_lag,
        started.elapsed().as_secs_f64()
    );
    let api: Api<ProductionAccessGrant> = env.api();
    delete_and_wait(&api, GRANT).await?;
    env.cleanup().await;
    Ok(())
}

/// Which policy files allow `action`.
fn covering<'a>(files: &'a [PolicyFile], action: &str) -> Vec<&'a str> {
    files
        .iter()
        .filter(|f| f.allows(action))
        .map(|f| f.name.as_str())
        .collect()
}

/// The policy file attached where calls are made: the role in each `AwsAccount` carries its
/// account's policy, the operator's own role (which calls AssumeRole) the role policy.
fn policy_for(account: &str) -> &'static str {
    match account {
        "Jump" => "operator-jump-account-policy.json",
        "Production" => "operator-production-account-policy.json",
        _ => "operator-role-policy.json",
    }
}

/// Each (action, account) in `calls` that the policy of that account does not allow.
fn uncovered(
    files: &[PolicyFile],
    calls: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for (action, accounts) in calls {
        for account in accounts {
            let file = files.iter().find(|f| f.name == policy_for(account));
            if !file.is_some_and(|f| f.allows(action)) {
                missing.push((action.clone(), account.clone()));
            }
        }
    }
    missing
}

/// Runs the seed grant lifecycle and a route's whole life (build, then delete) with the
/// operator, reads every call it made in both accounts from the emulator's call log, and fails
/// if an action is missing from the policy in `docs/iam/` for the account it was called in
/// (Jump: `operator-jump-account-policy.json`, Production:
/// `operator-production-account-policy.json`, AssumeRole: `operator-role-policy.json`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policy_covers_all_calls() -> anyhow::Result<()> {
    let started = Instant::now();
    let (env, fx) = seed_world("iam-policy").await?;
    let endpoint = env.platform.aws_endpoint.clone();
    let mut operator = Operator::start(&env, "operator", &[])?;
    operator.wait_ready().await?;

    let route_life = async {
        scenario::route_ready(&env, &fx, &|_| {}).await?;
        let api: Api<PrivateLinkRoute> = env.api();
        delete_and_wait(&api, ROUTE).await
    };
    let (grant, route) = tokio::join!(grant_lifecycle(&env, &fx, "15s", &|_| {}), route_life);
    grant.context("grant lifecycle")?;
    route
        .context("route lifecycle")
        .with_context(|| operator.log_tail(30))?;
    let api: Api<ProductionAccessGrant> = env.api();
    delete_and_wait(&api, GRANT).await?;

    let mut called: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (label, account) in [("Jump", &fx.jump_account), ("Production", &fx.prod_account)] {
        for call in operator_calls(&endpoint, account).await? {
            called
                .entry(call.action())
                .or_default()
                .insert(label.to_string());
        }
    }
    // The operator reached the accounts with assumed-role credentials, so it called
    // AssumeRole with its own identity, which the operator-account policy must allow.
    if !called.is_empty() {
        called
            .entry("sts:AssumeRole".into())
            .or_default()
            .insert("operator".into());
    }
    for expected in [
        "iam:AddUserToGroup",
        "iam:RemoveUserFromGroup",
        "ssm:StartChangeRequestExecution",
        "ssm:TerminateSession",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer",
        "ec2:CreateVpcEndpoint",
        "route53:ChangeResourceRecordSets",
    ] {
        ensure!(
            called.contains_key(expected),
            "the call log lacks {expected}: the scenario did not run as expected \
             (called: {:?})",
            called.keys().collect::<Vec<_>>()
        );
    }

    let files = policy::permission_policies(&env.platform.repo.join("docs/iam"))?;
    let mut report = String::new();
    for (action, accounts) in &called {
        let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
        report.push_str(&format!(
            "  {action:<60} {:<18} {}\n",
            accounts.join(","),
            covering(&files, action).join(", ")
        ));
    }
    eprintln!(
        "iam_policy_covers_all_calls: {} actions, {:.1}s\n{report}",
        called.len(),
        started.elapsed().as_secs_f64()
    );
    let missing = uncovered(&files, &called);
    ensure!(
        missing.is_empty(),
        "actions the operator called that the account's policy in docs/iam/ does not allow \
         (action, account): {missing:?}"
    );
    env.cleanup().await;
    Ok(())
}

/// The policy check itself: wildcards match as IAM matches them, trust policies are not
/// permissions, and an action the account's policy does not allow is reported (also when
/// another account's policy allows it), so the end-to-end check can fail.
#[test]
fn policy_check_finds_what_the_accounts_policy_does_not_allow() -> anyhow::Result<()> {
    assert!(policy::action_matches("ec2:Describe*", "ec2:DescribeVpcs"));
    assert!(policy::action_matches(
        "IAM:addusertogroup",
        "iam:AddUserToGroup"
    ));
    assert!(policy::action_matches(
        "ssm:?etAutomationExecution",
        "ssm:GetAutomationExecution"
    ));
    assert!(!policy::action_matches(
        "ec2:Describe*",
        "ec2:CreateVpcEndpoint"
    ));
    assert!(!policy::action_matches("iam:AddUser", "iam:AddUserToGroup"));

    let dir = std::env::temp_dir().join(format!("prodaccess-policy-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    let write = |name: &str, doc: serde_json::Value| -> anyhow::Result<()> {
        std::fs::write(dir.join(name), doc.to_string())?;
        Ok(())
    };
    write(
        "operator-jump-account-policy.json",
        serde_json::json!({"Statement": [
            {"Effect": "Allow", "Action": ["iam:AddUserToGroup", "ec2:Describe*"],
             "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:RemoveUserFromGroup", "Resource": "*"}
        ]}),
    )?;
    write(
        "operator-production-account-policy.json",
        serde_json::json!({"Statement": {"Effect": "Allow",
            "Action": "elasticloadbalancing:*", "Resource": "*"}}),
    )?;
    write(
        "operator-trust-policy.json",
        serde_json::json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": "arn:aws:iam::333333333333:role/prodaccess-operator"}}]}),
    )?;
    let files = policy::permission_policies(Path::new(&dir))?;
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "operator-jump-account-policy.json",
            "operator-production-account-policy.json"
        ],
        "the trust policy is not a permission policy"
    );
    let mut called: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (action, account) in [
        ("iam:AddUserToGroup", "Jump"),
        ("ec2:DescribeVpcs", "Jump"),
        ("iam:RemoveUserFromGroup", "Jump"),
        ("elasticloadbalancing:CreateListener", "Production"),
        ("ec2:DescribeVpcs", "Production"),
        ("sts:AssumeRole", "operator"),
    ] {
        called
            .entry(action.to_string())
            .or_default()
            .insert(account.to_string());
    }
    let missing = uncovered(&files, &called);
    let want = [
        ("ec2:DescribeVpcs", "Production"),
        ("iam:RemoveUserFromGroup", "Jump"),
        ("sts:AssumeRole", "operator"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(missing, want);
    Ok(())
}
