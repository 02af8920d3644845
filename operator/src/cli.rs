//! The `prodaccess-operator` command line: `run` starts the controllers, `crds` prints or
//! writes the CRDs. Start-up refuses, with one line and a non-zero exit, when the cluster is
//! unreachable, the CRDs are missing or AWS credentials cannot be resolved.

use clap::{Args, Parser, Subcommand};
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use kube::{Client, Config, CustomResourceExt, Resource};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::aws::{BudgetConfig, ClientFactory};
use crate::controller::watch::Cached;
use crate::controller::{self, Context, Settings};
use crate::crd::{self, AccessGroup, AwsAccount, PrivateLinkRoute, ProductionAccessGrant};
use crate::health::{self, Readiness};
use crate::leader::Election;
use crate::metrics::Metrics;
use crate::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "prodaccess-operator",
    version,
    about = "Approval-gated, time-bound \
    production AWS access and the private path into production, as Kubernetes resources"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers.
    Run(RunArgs),
    /// Print every CRD as YAML, or write one file per CRD with --dir.
    Crds {
        /// Directory to write `<plural>.prodaccess.io.yaml` files into.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Kubeconfig context to use (default: the current context, or in-cluster config).
    #[arg(long, env = "PRODACCESS_CONTEXT")]
    pub context: Option<String>,
    /// Address of the /metrics, /live and /ready endpoints.
    #[arg(long, env = "PRODACCESS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(
        long,
        env = "PRODACCESS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log level when RUST_LOG is not set.
    #[arg(long, env = "PRODACCESS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// How often active grants and access groups are re-read from AWS (e.g. 60s, 5m).
    #[arg(long, env = "PRODACCESS_GRANT_RESYNC", default_value = "60s", value_parser = duration)]
    pub grant_resync: Duration,
    /// Default drift-check period of routes.
    #[arg(long, env = "PRODACCESS_ROUTE_RESYNC", default_value = "5m", value_parser = duration)]
    pub route_resync: Duration,
    /// How often AwsAccount credentials are re-checked.
    #[arg(long, env = "PRODACCESS_ACCOUNT_RESYNC", default_value = "10m", value_parser = duration)]
    pub account_resync: Duration,
    /// Shortest interval between polls of a pending approval.
    #[arg(long, env = "PRODACCESS_APPROVAL_POLL_MIN", default_value = "2s", value_parser = duration)]
    pub approval_poll_min: Duration,
    /// Longest interval between polls of a pending approval.
    #[arg(long, env = "PRODACCESS_APPROVAL_POLL_MAX", default_value = "30s", value_parser = duration)]
    pub approval_poll_max: Duration,
    /// No membership request is sent in the last this-much of a grant's window: a request the
    /// client gave up on may still reach IAM for about this long, and must not land after the
    /// revocation. Shorter windows are not granted (reason WindowTooShort).
    #[arg(long, env = "PRODACCESS_ADD_MARGIN", default_value = "12s", value_parser = duration)]
    pub add_margin: Duration,
    /// Elect a leader through a Lease, so that only one replica acts.
    #[arg(long, env = "PRODACCESS_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease; give each scoped instance its own.
    #[arg(
        long,
        env = "PRODACCESS_LEASE_NAME",
        default_value = "prodaccess-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "PRODACCESS_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// Identity in the Lease (default: POD_NAME, else host name and process ID).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Only reconcile grants and routes in these namespaces (comma-separated; default all).
    #[arg(long, env = "PRODACCESS_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// AWS request budget overrides, like `iam:write=20/40,ec2:read=50` (rate a second and
    /// optional burst per service and read or write); AWS's published limits otherwise.
    #[arg(long, env = "PRODACCESS_AWS_BUDGET", default_value = "", value_parser = budget)]
    pub aws_budget: BudgetConfig,
    /// Only reconcile objects matching this label selector (all four kinds).
    #[arg(long, env = "PRODACCESS_SELECTOR")]
    pub selector: Option<String>,
}

fn duration(text: &str) -> Result<Duration, String> {
    crd::parse_duration(text).map_err(|err| err.to_string())
}

/// How long after the start-up list of grants it still counts as current. A standby that
/// waited longer for the Lease reads each grant again instead: its watch may lag behind what
/// the previous leader wrote.
const LIST_STILL_CURRENT: std::time::Duration = std::time::Duration::from_secs(5);

/// Parses `--aws-budget` with the rest of the arguments, so a bad one stops the operator at
/// once with a usage error, before it connects anywhere.
fn budget(text: &str) -> Result<BudgetConfig, String> {
    BudgetConfig::default().with_overrides(text)
}

/// Entry point of the binary.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { dir } => print_crds(dir.as_deref()),
        Command::Run(args) => run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The CRDs as YAML documents, in a stable order.
pub fn crds_yaml() -> anyhow::Result<Vec<(String, String)>> {
    crd::all_crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok((name, serde_yaml::to_string(&crd)?))
        })
        .collect()
}

fn print_crds(dir: Option<&Path>) -> anyhow::Result<()> {
    let crds = crds_yaml()?;
    match dir {
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for (_, yaml) in crds {
                match write!(out, "---\n{yaml}") {
                    Ok(()) => {}
                    // `crds | head` closes the pipe early; that is not an error.
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (name, yaml) in crds {
                std::fs::write(dir.join(format!("{name}.yaml")), yaml)?;
            }
        }
    }
    Ok(())
}

async fn kube_client(context: Option<&str>) -> anyhow::Result<Client> {
    let config = match context {
        Some(context) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(context.to_string()),
                ..Default::default()
            };
            Config::from_kubeconfig(&options).await?
        }
        None => {
            if let Some(path) = std::env::var_os("KUBECONFIG") {
                let missing = std::env::split_paths(&path).all(|p| !p.exists());
                anyhow::ensure!(
                    !missing,
                    "KUBECONFIG points at {}, which does not exist",
                    path.to_string_lossy()
                );
            }
            Config::infer().await.map_err(|err| {
                anyhow::anyhow!("no Kubernetes configuration found (set KUBECONFIG): {err}")
            })?
        }
    };
    let url = config.cluster_url.clone();
    let client = Client::try_from(config)?;
    client
        .apiserver_version()
        .await
        .map_err(|err| anyhow::anyhow!("cannot reach the Kubernetes API at {url}: {err}"))?;
    Ok(client)
}

/// Fails with install instructions when a CRD is missing.
pub async fn check_crds(client: &Client) -> anyhow::Result<()> {
    async fn probe<K>(client: &Client) -> anyhow::Result<()>
    where
        K: Resource<DynamicType = ()> + CustomResourceExt + Clone + serde::de::DeserializeOwned,
        K: std::fmt::Debug,
    {
        let api: Api<K> = Api::all(client.clone());
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(anyhow::anyhow!(
                "the CRD {} is not installed; install the CRDs with \
                 `prodaccess-operator crds | kubectl apply -f -` (or `kubectl apply -f crds/`)",
                K::crd_name()
            )),
            Err(err) => Err(anyhow::anyhow!("cannot list {}: {err}", K::crd_name())),
        }
    }
    probe::<AwsAccount>(client).await?;
    probe::<AccessGroup>(client).await?;
    probe::<ProductionAccessGrant>(client).await?;
    probe::<PrivateLinkRoute>(client).await
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, &args.log_level);
    let client = kube_client(args.context.as_deref()).await?;
    check_crds(&client).await?;
    let metrics = Metrics::new();
    let budget = args.aws_budget.clone();
    let aws = Arc::new(ClientFactory::from_env(metrics.clone(), budget).await);
    aws.check_credentials().await?;
    let ready = Readiness::default();
    let bound = health::serve(args.metrics_addr, metrics.clone(), ready.clone())
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", args.metrics_addr))?;
    tracing::info!(metrics = %bound, "Serving metrics and health");

    let scope = watch_config(&args);
    // The selector scoping the instance applies here too, so a scoped instance caches only
    // its own objects.
    let accounts = Cached::watch(Api::<AwsAccount>::all(client.clone()), &scope);
    let groups = Cached::watch(Api::<AccessGroup>::all(client.clone()), &scope);
    let grants = Cached::watch(Api::<ProductionAccessGrant>::all(client.clone()), &scope);
    let routes = Cached::watch(Api::<PrivateLinkRoute>::all(client.clone()), &scope);
    for ready in [
        accounts.wait_until_ready().await,
        groups.wait_until_ready().await,
        routes.wait_until_ready().await,
    ] {
        ready.map_err(|err| anyhow::anyhow!("watch cache did not sync: {err}"))?;
    }
    grants
        .wait_until_ready()
        .await
        .map_err(|err| anyhow::anyhow!("watch cache: {err}"))?;
    let listed_at = std::time::Instant::now();
    ready.set_ready();

    if args.leader_election {
        elect(&args, &client, &metrics).await;
    } else {
        // The one instance acts, so "nobody leads" alerts must not fire for it.
        metrics.leader.set(1);
    }
    let settings = Settings {
        grant_resync: args.grant_resync,
        route_resync: args.route_resync,
        account_resync: args.account_resync,
        approval_poll_min: args.approval_poll_min,
        approval_poll_max: args.approval_poll_max.max(args.approval_poll_min),
        add_margin: args.add_margin,
        namespaces: args.namespaces.clone(),
        ..Settings::default()
    };
    let ctx = Arc::new(Context {
        recorder: Context::recorder(client.clone(), &settings.reporter),
        client: client.clone(),
        aws,
        metrics,
        settings,
        accounts,
        groups,
        grants,
        routes,
        ledger_lock: tokio::sync::Mutex::new(()),
        shared: Default::default(),
        route_snapshots: Default::default(),
        revocations: Default::default(),
        grant_versions: Default::default(),
        grant_nudges: Default::default(),
        group_passes: Default::default(),
    });
    if listed_at.elapsed() < LIST_STILL_CURRENT {
        // Leading at once (a restart in the same pod): the grants were just listed, which is
        // as current as reading each again, so the first reconciles skip those reads.
        crate::controller::grant::trust_listed(&ctx);
    }
    tokio::spawn(phase_gauges(ctx.clone()));
    run_controllers(ctx).await;
    Ok(())
}

/// Waits for leadership, then watches the Lease in the background and stops the process the
/// moment leadership is lost.
async fn elect(args: &RunArgs, client: &Client, metrics: &Arc<Metrics>) {
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "prodaccess".to_string());
        format!("{host}-{}", std::process::id())
    });
    let election = Election {
        api: Api::namespaced(client.clone(), &args.lease_namespace),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        // Every 2 s for the default 15 s Lease, as Kubernetes' own components do: a holder
        // then rides out an API server outage of about 10 s (the Lease, less the time since
        // the last renewal, less the margin it stops at), not only the 7 s a renewal every
        // 5 s allowed, which a restart on a loaded machine exceeded.
        renew_every: (args.lease_duration / 7).max(Duration::from_millis(500)),
    };
    tracing::info!(lease = %args.lease_name, identity = %identity, "Waiting for leadership");
    election.acquire().await;
    metrics.leader.set(1);
    tracing::info!(lease = %args.lease_name, identity = %identity, "Leading");
    tokio::spawn(async move {
        election.keep().await;
        tracing::error!(lease = %election.name, "Lost leadership; stopping");
        std::process::exit(2);
    });
}

fn watch_config(args: &RunArgs) -> watcher::Config {
    match &args.selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    }
}

async fn run_controllers(ctx: Arc<Context>) {
    // Every controller works from the shared caches, which the instance's label selector
    // already scopes; grants and routes are further limited to the namespaces in scope
    // (`Settings::in_scope`, checked by each reconcile).
    let tasks = vec![
        tokio::spawn(controller::account::run(ctx.clone())),
        tokio::spawn(controller::group::run(ctx.clone())),
        tokio::spawn(controller::grant::run(ctx.clone())),
        tokio::spawn(controller::route::run(ctx.clone())),
    ];
    futures::future::join_all(tasks).await;
}

/// Keeps the grants-by-phase and routes-ready gauges current from the caches.
async fn phase_gauges(ctx: Arc<Context>) {
    use crate::crd::GrantPhase;
    use crate::metrics::PhaseLabels;
    let phases = [
        GrantPhase::Pending,
        GrantPhase::AwaitingApproval,
        GrantPhase::Scheduled,
        GrantPhase::Active,
        GrantPhase::Expired,
        GrantPhase::Revoked,
        GrantPhase::Denied,
        GrantPhase::Failed,
    ];
    loop {
        let grants = ctx.grants.state();
        for phase in phases {
            let count = grants
                .iter()
                .filter(|g| g.status.as_ref().map(|s| s.phase).unwrap_or_default() == phase)
                .count();
            ctx.metrics
                .grants
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(count as i64);
        }
        controller::route::count_ready(&ctx, None);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_budget_is_a_usage_error() {
        let parse = |budget: &str| {
            Cli::try_parse_from(["prodaccess-operator", "run", "--aws-budget", budget])
                .map(|_| ())
                .map_err(|err| err.kind())
        };
        assert_eq!(parse("iam:write=20/40,ec2:read=50"), Ok(()));
        assert_eq!(
            parse("iam:wrte=3"),
            Err(clap::error::ErrorKind::ValueValidation)
        );
    }
}
