//! `kubectl prodaccess`: the command line for the people who need production access, so that
//! nobody writes YAML at 3 a.m.
//!
//! `request` creates a `ProductionAccessGrant`, follows it and, once it is active, prints the
//! exact `aws ssm start-session` port-forwarding command; `status` lists grants with their phase
//! and time left; `revoke` ends a grant now; `routes` lists each route's URL and readiness.
//! The binary `kubectl-prodaccess` only calls [`main`]. The wording of tables, instructions and
//! errors lives in pure submodules ([`table`], [`session`], [`request`], [`error`]); this module
//! does the talking to the API server and turns every failure into one line.

pub mod error;
pub mod request;
pub mod session;
pub mod table;

use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::crd::{
    parse_duration, AccessGroup, AwsAccount, GrantPhase, PrivateLinkRoute, ProductionAccessGrant,
    GROUP,
};
use error::{classify, Action, Class, PluginError, Scope};
use request::{Progress, Request, Step};
use session::Ports;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-prodaccess",
    bin_name = "kubectl prodaccess",
    version,
    about = "Ask for time-bound production access, follow it, end it; list private routes"
)]
pub struct Cli {
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of grants and routes (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ask for access: create a grant, wait for it, print the session command.
    Request(RequestArgs),
    /// List grants with their phase and time left.
    Status(ListArgs),
    /// End a grant now (sets spec.revoked).
    Revoke(RevokeArgs),
    /// List private routes with their URL and readiness.
    Routes(ListArgs),
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// Name of the AccessGroup to join (`kubectl get accessgroups`).
    #[arg(long)]
    pub group: String,
    /// Your IAM user name in the Jump account.
    #[arg(long)]
    pub user: String,
    /// How long access lasts once it starts, like 30m or 1h (default: the group's).
    #[arg(long)]
    pub duration: Option<String>,
    /// Why you need access; it goes into the change request and the audit log.
    #[arg(long)]
    pub reason: String,
    /// An already approved change request to use instead of having one opened.
    #[arg(long)]
    pub change_request: Option<String>,
    /// An SSM Automation execution with an approval step (groups in `automation` mode).
    #[arg(long)]
    pub automation_execution: Option<String>,
    /// Label for the grant, KEY=VALUE; may be repeated.
    #[arg(long = "label", short = 'l')]
    pub labels: Vec<String>,
    /// Wait until access starts and print the session command (--wait=false to return).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Give up waiting after this long (the grant stays).
    #[arg(long, default_value = "1h")]
    pub timeout: String,
    /// Local port of the forwarded RDP connection.
    #[arg(long, default_value_t = 11111)]
    pub local_port: u16,
    /// Port on the jump host.
    #[arg(long, default_value_t = 3389)]
    pub remote_port: u16,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only grants of this IAM user (status only).
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// Name of the grant.
    pub name: String,
    /// Wait until the operator has removed the user from the group.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub wait: bool,
}

/// Entry point of `kubectl-prodaccess`.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one line to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn say(line: impl std::fmt::Display) {
    emit(&format!("{line}\n"));
}

fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

async fn run(cli: Cli) -> Result<(), PluginError> {
    let cluster = Cluster::connect(cli.context.as_deref()).await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.client.default_namespace().to_string());
    match cli.command {
        Command::Request(args) => cluster.request(&namespace, args).await,
        Command::Status(args) => cluster.status(&namespace, args).await,
        Command::Revoke(args) => cluster.revoke(&namespace, args).await,
        Command::Routes(args) => cluster.routes(&namespace, args).await,
    }
}

/// A connected client and the API server's address, for messages.
struct Cluster {
    client: Client,
    url: String,
}

impl Cluster {
    /// Loads the kubeconfig and makes one request, so that an unreachable cluster is
    /// reported as such before anything else.
    async fn connect(context: Option<&str>) -> Result<Cluster, PluginError> {
        let config = match context {
            Some(context) => {
                let options = kube::config::KubeConfigOptions {
                    context: Some(context.to_string()),
                    ..Default::default()
                };
                Config::from_kubeconfig(&options)
                    .await
                    .map_err(|err| PluginError::NoConfig(error::chain(&err)))?
            }
            None => Config::infer()
                .await
                .map_err(|err| PluginError::NoConfig(error::chain(&err)))?,
        };
        let url = config.cluster_url.to_string();
        let url = url.trim_end_matches('/').to_string();
        let client = Client::try_from(config).map_err(|err| PluginError::Unreachable {
            url: url.clone(),
            reason: error::chain(&err),
        })?;
        let cluster = Cluster { client, url };
        match cluster.client.apiserver_version().await {
            Ok(_) => Ok(cluster),
            // Some clusters hide /version from anonymous or narrow users; they answered.
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(cluster),
            Err(err) => Err(cluster.fail(&err, &Action::new("reach", "the API", Scope::Cluster))),
        }
    }

    /// Words a failure that is not a 404 (or a 404 of a list, which means the API is missing).
    fn fail(&self, err: &kube::Error, action: &Action) -> PluginError {
        PluginError::from_class(classify(err), action, None, &self.url)
    }

    /// Words a failure on the named object: a 404 is the object, unless discovery says the
    /// whole prodaccess API is missing.
    async fn fail_named(
        &self,
        err: &kube::Error,
        action: &Action,
        plural: &str,
        name: &str,
    ) -> PluginError {
        let class = classify(err);
        if class == Class::NotFound && !self.api_installed(plural).await {
            return PluginError::CrdsMissing;
        }
        PluginError::from_class(class, action, Some(name), &self.url)
    }

    /// Whether discovery lists `plural` in the prodaccess API group. Discovery is open to
    /// every authenticated user, so this works for people with narrow RBAC; if it cannot be
    /// read, assume installed and let the original error speak.
    async fn api_installed(&self, plural: &str) -> bool {
        let version = format!("{GROUP}/v1alpha1");
        match self.client.list_api_group_resources(&version).await {
            Ok(list) => list.resources.iter().any(|r| r.name == plural),
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(_) => true,
        }
    }

    async fn request(&self, namespace: &str, args: RequestArgs) -> Result<(), PluginError> {
        let timeout = parse_duration(&args.timeout)
            .map_err(|err| PluginError::Usage(format!("--timeout: {err}")))?;
        let grant = request::grant_for(&Request {
            group: args.group.clone(),
            user: args.user.clone(),
            duration: args.duration.clone(),
            reason: args.reason.clone(),
            change_request: args.change_request.clone(),
            automation_execution: args.automation_execution.clone(),
            labels: args.labels.clone(),
        })?;
        let group = self.access_group(&args.group).await?;
        let api: Api<ProductionAccessGrant> = Api::namespaced(self.client.clone(), namespace);
        let action = Action::new("create", "grants", Scope::Namespace(namespace.into()));
        let created = match api.create(&PostParams::default(), &grant).await {
            Ok(created) => created,
            Err(err) if classify(&err) != Class::NotFound => return Err(self.fail(&err, &action)),
            // The grant is not there yet, so a 404 is the API or the namespace.
            Err(_) if !self.api_installed("productionaccessgrants").await => {
                return Err(PluginError::CrdsMissing)
            }
            Err(_) => {
                return Err(PluginError::NotFound {
                    what: "namespace",
                    name: namespace.into(),
                    scope: Scope::Cluster,
                })
            }
        };
        let name = created.metadata.name.clone().unwrap_or_default();
        say(format!(
            "Created grant {name} in namespace {namespace}: {} in {} for {}.",
            args.user,
            args.group,
            args.duration
                .as_deref()
                .unwrap_or("the group's default duration")
        ));
        if !args.wait {
            say(format!(
                "Follow it with: kubectl prodaccess status -n {namespace}"
            ));
            return Ok(());
        }
        let active = self.wait_active(&api, namespace, &name, timeout).await?;
        let ports = Ports {
            remote: args.remote_port,
            local: args.local_port,
        };
        let region = match &group {
            Some(group) => self.account_region(&group.spec.account_ref).await,
            None => None,
        };
        self.print_active(&active, group.as_ref(), region.as_deref(), ports);
        Ok(())
    }

    /// The region of an `AwsAccount`, for the session command. Reading accounts is an admin's
    /// right that a requester may lack; the command then leaves the region to their profile.
    async fn account_region(&self, name: &str) -> Option<String> {
        let api: Api<AwsAccount> = Api::all(self.client.clone());
        api.get(name).await.ok().map(|account| account.spec.region)
    }

    /// The access group, for its session policy; `None` when the user may not read it. A
    /// group that does not exist is an error: the grant could never start.
    async fn access_group(&self, name: &str) -> Result<Option<AccessGroup>, PluginError> {
        let api: Api<AccessGroup> = Api::all(self.client.clone());
        let action = Action::new("get", "access groups", Scope::Cluster);
        match api.get(name).await {
            Ok(group) => Ok(Some(group)),
            Err(err) => match classify(&err) {
                Class::Forbidden => Ok(None),
                Class::NotFound => match self.fail_named(&err, &action, "accessgroups", name).await
                {
                    PluginError::NotFound { .. } => Err(PluginError::Usage(format!(
                        "access group {name} does not exist (kubectl get accessgroups lists them)"
                    ))),
                    other => Err(other),
                },
                _ => Err(self.fail(&err, &action)),
            },
        }
    }

    async fn wait_active(
        &self,
        api: &Api<ProductionAccessGrant>,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<ProductionAccessGrant, PluginError> {
        let started = tokio::time::Instant::now();
        let action = Action::new("get", "grants", Scope::Namespace(namespace.into()));
        let mut progress = Progress::default();
        let mut phase = GrantPhase::Pending;
        loop {
            let grant = match api.get(name).await {
                Ok(grant) => grant,
                Err(err) => {
                    return Err(self
                        .fail_named(&err, &action, "productionaccessgrants", name)
                        .await)
                }
            };
            phase = grant.status.as_ref().map_or(phase, |s| s.phase);
            match progress.observe(&grant) {
                Step::Active => return Ok(grant),
                Step::Ended(err) => return Err(err),
                Step::Wait(Some(line)) => say(line),
                Step::Wait(None) => {}
            }
            if started.elapsed() >= timeout {
                return Err(PluginError::Timeout {
                    name: name.into(),
                    phase: phase.as_str(),
                    waited: crate::crd::format_duration(timeout),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn print_active(
        &self,
        grant: &ProductionAccessGrant,
        group: Option<&AccessGroup>,
        region: Option<&str>,
        ports: Ports,
    ) {
        let status = grant.status.clone().unwrap_or_default();
        let name = grant.metadata.name.clone().unwrap_or_default();
        match &status.window {
            Some(window) => {
                let left = window.expiry.0.as_second() - Timestamp::now().as_second();
                say(format!(
                    "Active           {} is in the group until {} ({} left).",
                    grant.spec.user,
                    window.expiry.0,
                    table::human(left)
                ));
            }
            None => say(format!(
                "Active           {} is in the group.",
                grant.spec.user
            )),
        }
        let instructions =
            session::instructions(group.map(|g| &g.spec.session_policy), region, ports);
        for line in instructions.lines(ports) {
            say(line);
        }
        say(format!(
            "End access early with: kubectl prodaccess revoke {name} -n {}",
            grant.metadata.namespace.as_deref().unwrap_or("default")
        ));
    }

    async fn status(&self, namespace: &str, args: ListArgs) -> Result<(), PluginError> {
        let (api, scope) = self.list_api::<ProductionAccessGrant>(namespace, args.all_namespaces);
        let action = Action::new("list", "grants", scope);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|err| self.fail(&err, &action))?;
        let grants: Vec<ProductionAccessGrant> = list
            .items
            .into_iter()
            .filter(|g| args.user.as_ref().is_none_or(|u| &g.spec.user == u))
            .collect();
        if grants.is_empty() {
            say(format!("No grants {}.", action.scope));
            return Ok(());
        }
        let rows = table::grant_rows(&grants, Timestamp::now(), args.all_namespaces);
        let header = table::header(&table::GRANT_HEADER, args.all_namespaces);
        emit(&table::render(&header, &rows));
        Ok(())
    }

    async fn revoke(&self, namespace: &str, args: RevokeArgs) -> Result<(), PluginError> {
        let api: Api<ProductionAccessGrant> = Api::namespaced(self.client.clone(), namespace);
        let action = Action::new("update", "grants", Scope::Namespace(namespace.into()));
        let patch = serde_json::json!({"spec": {"revoked": true}});
        let grant = match api
            .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(grant) => grant,
            Err(err) => {
                return Err(self
                    .fail_named(&err, &action, "productionaccessgrants", &args.name)
                    .await)
            }
        };
        let phase = grant.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if phase.is_terminal() {
            // Marked revoked all the same, so that re-applying the manifest cannot grant again.
            say(format!(
                "Grant {} had already ended ({}); nothing more to revoke.",
                args.name,
                phase.as_str()
            ));
            return Ok(());
        }
        say(format!(
            "Revoked grant {}: the operator removes {} from {} and ends their sessions.",
            args.name, grant.spec.user, grant.spec.access_group
        ));
        if args.wait {
            self.wait_final(&api, namespace, &args.name).await?;
        }
        Ok(())
    }

    /// Waits until the operator has recorded the end of the grant.
    async fn wait_final(
        &self,
        api: &Api<ProductionAccessGrant>,
        namespace: &str,
        name: &str,
    ) -> Result<(), PluginError> {
        let action = Action::new("get", "grants", Scope::Namespace(namespace.into()));
        for _ in 0..120 {
            let grant = api
                .get(name)
                .await
                .map_err(|err| self.fail(&err, &action))?;
            let status = grant.status.unwrap_or_default();
            if status.phase.is_terminal() {
                say(format!(
                    "{:<17}{}",
                    status.phase.as_str(),
                    status.message.unwrap_or_default()
                ));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(PluginError::Timeout {
            name: name.into(),
            phase: "being revoked",
            waited: "2m".into(),
        })
    }

    async fn routes(&self, namespace: &str, args: ListArgs) -> Result<(), PluginError> {
        let (api, scope) = self.list_api::<PrivateLinkRoute>(namespace, args.all_namespaces);
        let action = Action::new("list", "routes", scope);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|err| self.fail(&err, &action))?;
        if list.items.is_empty() {
            say(format!("No routes {}.", action.scope));
            return Ok(());
        }
        let rows = table::route_rows(&list.items, args.all_namespaces);
        let header = table::header(&table::ROUTE_HEADER, args.all_namespaces);
        emit(&table::render(&header, &rows));
        Ok(())
    }

    fn list_api<K>(&self, namespace: &str, all: bool) -> (Api<K>, Scope)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        if all {
            (Api::all(self.client.clone()), Scope::AllNamespaces)
        } else {
            (
                Api::namespaced(self.client.clone(), namespace),
                Scope::Namespace(namespace.into()),
            )
        }
    }
}
