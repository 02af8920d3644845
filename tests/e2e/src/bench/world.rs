//! What the benchmark builds before it measures: emulator accounts with an admin session, IAM
//! users, change templates, the manifests of accounts, groups and grants, and the waits that
//! watch them converge.

use anyhow::Context as _;
use aws_config::SdkConfig;
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use prodaccess::crd::{AccessGroup, ConditionExt, GrantPhase, ProductionAccessGrant};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::aws;
use crate::platform::{TestEnv, TEST_LABEL};

/// How many requests the benchmark keeps in flight while it builds things.
const CONCURRENCY: usize = 8;

/// One emulator account with an admin session in it.
pub struct Account {
    pub id: String,
    pub admin: SdkConfig,
}

impl Account {
    /// A fresh random account.
    pub async fn create(endpoint: &str) -> crate::Result<Account> {
        let id = TestEnv::account_id();
        let admin = aws::admin(endpoint, &id).await?;
        Ok(Account { id, admin })
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.admin)
    }

    /// Members of the IAM group `group`.
    pub async fn members(&self, group: &str) -> crate::Result<Vec<String>> {
        let out = self.iam().get_group().group_name(group).send().await?;
        Ok(out
            .users()
            .iter()
            .map(|u| u.user_name().to_string())
            .collect())
    }
}

/// `count` fresh accounts.
pub async fn accounts(endpoint: &str, count: usize) -> crate::Result<Vec<Account>> {
    futures::stream::iter(0..count)
        .map(|_| Account::create(endpoint))
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// Creates IAM users; returns their ARNs in order.
pub async fn create_users(
    iam: &aws_sdk_iam::Client,
    names: &[String],
) -> crate::Result<Vec<String>> {
    futures::stream::iter(names)
        .map(|name| async move {
            let out = iam.create_user().user_name(name).send().await;
            let out = out.with_context(|| format!("create user {name}"))?;
            Ok::<_, anyhow::Error>(out.user().map(|u| u.arn().to_string()).unwrap_or_default())
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// An approver: an IAM user with an access key, and an SDK config signed with it.
pub struct Approver {
    pub arn: String,
    pub config: SdkConfig,
}

/// Creates the approver `name` in `account`.
pub async fn approver(endpoint: &str, account: &Account, name: &str) -> crate::Result<Approver> {
    let iam = account.iam();
    let arn = create_users(&iam, &[name.to_string()]).await?.concat();
    let key = iam.create_access_key().user_name(name).send().await?;
    let key = key.access_key().context("no access key")?;
    let credentials = aws_credential_types::Credentials::new(
        key.access_key_id(),
        key.secret_access_key(),
        None,
        None,
        "bench-approver",
    );
    let config = aws::config(endpoint, credentials).await;
    Ok(Approver { arn, config })
}

/// Creates the change template `name` whose approval step names `approver`.
pub async fn change_template(account: &Account, name: &str, approver: &str) -> crate::Result<()> {
    let content = json!({
        "schemaVersion": "0.3",
        "emergencyChange": false,
        "autoApprovable": false,
        "executableRunBooks": [{"name": "AWS-HelloWorld", "version": "$DEFAULT"}],
        "templateInformation": "# Production access (benchmark)",
        "mainSteps": [{
            "name": "ApproveProductionAccess",
            "action": "aws:approve",
            "timeoutSeconds": 3600,
            "inputs": {"Message": "Production access", "MinRequiredApprovals": 1,
                       "Approvers": [approver]}
        }]
    });
    aws_sdk_ssm::Client::new(&account.admin)
        .create_document()
        .name(name)
        .content(content.to_string())
        .document_type(aws_sdk_ssm::types::DocumentType::from(
            "Automation.ChangeTemplate",
        ))
        .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
        .send()
        .await
        .context("create the change template")?;
    Ok(())
}

/// Creates the private hosted zone `name` in `account`, associated with `vpc`, and returns its
/// bare ID (`Z...`), the form a route's `hostedZone.zoneId` takes.
pub async fn private_zone(account: &Account, name: &str, vpc: &str) -> crate::Result<String> {
    use aws_sdk_route53::types::{HostedZoneConfig, Vpc, VpcRegion};
    let out = aws_sdk_route53::Client::new(&account.admin)
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("bench-{name}"))
        .hosted_zone_config(HostedZoneConfig::builder().private_zone(true).build())
        .vpc(
            Vpc::builder()
                .vpc_id(vpc)
                .vpc_region(VpcRegion::from(aws::REGION))
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("CreateHostedZone {name}"))?;
    let id = out
        .hosted_zone()
        .map(|z| z.id().trim_start_matches("/hostedzone/").to_string())
        .context("CreateHostedZone returned no zone")?;
    Ok(id)
}

/// The `AwsAccount` of emulator account `id`, usable from `namespace`.
pub fn aws_account(name: &str, id: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "prodaccess.io/v1alpha1",
        "kind": "AwsAccount",
        "metadata": {"name": name},
        "spec": {
            "roleArn": format!("arn:aws:iam::{id}:role/prodaccess-operator"),
            "externalId": "prodaccess-bench",
            "region": aws::REGION,
            "expectedAccountId": id,
            "allowedNamespaces": [namespace],
        }
    })
}

/// An `AccessGroup` for IAM group `group_name` with the given `approval` block.
pub fn access_group(
    name: &str,
    account: &str,
    group_name: &str,
    ns: &str,
    approval: Value,
) -> Value {
    json!({
        "apiVersion": "prodaccess.io/v1alpha1",
        "kind": "AccessGroup",
        "metadata": {"name": name},
        "spec": {
            "accountRef": account,
            "groupName": group_name,
            "createGroup": true,
            "sessionPolicy": {
                "policyName": "SessionManagerPortForwardPolicy",
                "documents": ["AWS-StartPortForwardingSession"],
                "requireMfa": true,
            },
            "maxDuration": "8h",
            "defaultDuration": "1h",
            "approval": approval,
            "exclusive": false,
            "allowedNamespaces": [ns],
        }
    })
}

/// The approval block of groups whose grants start as soon as they are applied.
pub fn no_approval() -> Value {
    json!({"mode": "none"})
}

/// `count` access groups without approval in the `AwsAccount` named `account`, named
/// `<test id>-<g>`, for the IAM groups `<iam_prefix><g>`.
pub fn numbered_groups(env: &TestEnv, account: &str, count: usize, iam_prefix: &str) -> Vec<Value> {
    let group = |g: usize| {
        let (name, iam_group) = (format!("{}-{g}", env.id), format!("{iam_prefix}{g}"));
        access_group(&name, account, &iam_group, &env.namespace, no_approval())
    };
    (0..count).map(group).collect()
}

/// For each of `accounts` an `AwsAccount` and one access group in it for the IAM group
/// `group`, both named `<test id>-<index>`, so that each grant can be placed in an account of
/// its own.
pub fn group_per_account(
    env: &TestEnv,
    accounts: &[Account],
    group: &str,
    approval: &Value,
) -> Vec<Value> {
    let mut objects = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        let name = format!("{}-{i}", env.id);
        objects.push(aws_account(&name, &account.id, &env.namespace));
        let access = access_group(&name, &name, group, &env.namespace, approval.clone());
        objects.push(access);
    }
    objects
}

/// A grant of `user` in `group` for `duration`, starting no earlier than `not_before`.
pub fn grant(
    name: &str,
    group: &str,
    user: &str,
    duration: &str,
    not_before: Option<Timestamp>,
) -> Value {
    let mut value = json!({
        "apiVersion": "prodaccess.io/v1alpha1",
        "kind": "ProductionAccessGrant",
        "metadata": {"name": name},
        "spec": {
            "accessGroup": group,
            "user": user,
            "duration": duration,
            "reason": "prodaccess benchmark",
        }
    });
    if let Some(at) = not_before {
        value["spec"]["notBefore"] = json!(at.to_string());
    }
    value
}

/// Applies every object, a few at a time.
pub async fn apply_all(env: &TestEnv, objects: Vec<Value>) -> crate::Result<()> {
    futures::stream::iter(objects)
        .map(|object| apply_retrying(env, object))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Applies one object, retrying what a busy API server answers (a 5xx, a 429, a timeout) up
/// to five times with a doubling pause; anything else fails at once.
async fn apply_retrying(env: &TestEnv, object: Value) -> crate::Result<()> {
    let mut pause = Duration::from_secs(1);
    for _ in 0..5 {
        let mut attempt = object.clone();
        match env.apply_value(&mut attempt).await {
            Ok(()) => return Ok(()),
            Err(err) if busy(&err) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(err) => return Err(err),
        }
    }
    let mut last = object;
    env.apply_value(&mut last).await
}

/// Whether an API error says the server was too busy, not that the object is wrong.
fn busy(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => status.code == 429 || status.code >= 500,
        Some(_) => true,
        None => false,
    }
}

/// The label selector of `env`'s objects.
pub fn selector(env: &TestEnv) -> String {
    format!("{TEST_LABEL}={}", env.id)
}

/// Number of `env`'s access groups that are Ready.
pub async fn ready_groups(env: &TestEnv) -> crate::Result<usize> {
    let api: Api<AccessGroup> = Api::all(env.client.clone());
    let list = api
        .list(&ListParams::default().labels(&selector(env)))
        .await?;
    let ready = |g: &AccessGroup| {
        g.status
            .as_ref()
            .is_some_and(|s| s.conditions.as_slice().is_true("Ready"))
    };
    Ok(list.items.iter().filter(|g| ready(g)).count())
}

/// A watch cache of the objects of kind `K` in `env`'s namespace.
pub async fn watch<K>(env: &TestEnv) -> crate::Result<Store<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let api: Api<K> = env.api();
    let config = watcher::Config::default().labels(&selector(env));
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        stream.for_each(|_| futures::future::ready(())).await;
    });
    reader
        .wait_until_ready()
        .await
        .context("watch cache did not sync")?;
    Ok(reader)
}

/// Grants of a watch cache counted by phase.
pub fn phases(store: &Store<ProductionAccessGrant>) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for grant in store.state() {
        let phase = grant.status.as_ref().map(|s| s.phase).unwrap_or_default();
        *counts.entry(phase.as_str()).or_insert(0) += 1;
    }
    counts
}

/// Waits until at least `count` grants are in `phase`, for at most `timeout`, and returns how
/// many are in it then. Running out of time is only printed, followed by `then`: the benchmark
/// goes on and measures what did happen.
pub async fn wait_phase(
    grants: &Store<ProductionAccessGrant>,
    phase: GrantPhase,
    count: usize,
    timeout: Duration,
    then: &str,
) -> usize {
    let in_phase = |all: &BTreeMap<&str, usize>| all.get(phase.as_str()).copied().unwrap_or(0);
    let what = format!("grants {}", phase.as_str());
    let waited = wait_for(&what, timeout, Duration::from_millis(500), || async {
        let all = phases(grants);
        Ok(((in_phase(&all) >= count).then_some(()), format!("{all:?}")))
    });
    if let Err(err) = waited.await {
        println!("    {err:#}; {then}");
    }
    in_phase(&phases(grants))
}

/// Polls `check` every `every` until it returns `Some`, printing its progress text at most every
/// ten seconds; fails after `timeout`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::Result<(Option<T>, String)>>,
{
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let (done, progress) = check().await?;
        if let Some(value) = done {
            return Ok(value);
        }
        if started.elapsed() > timeout {
            anyhow::bail!("timed out after {timeout:?} waiting for {what} ({progress})");
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            println!(
                "    ... {what}: {progress} ({}s)",
                started.elapsed().as_secs()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until `count` access groups of `env` are Ready.
pub async fn wait_groups_ready(env: &TestEnv, count: usize) -> crate::Result<()> {
    let timeout = Duration::from_secs(120 + count as u64);
    wait_for(
        "access groups Ready",
        timeout,
        Duration::from_secs(1),
        || async {
            let ready = ready_groups(env).await?;
            Ok((
                (ready >= count).then_some(()),
                format!("{ready}/{count} Ready"),
            ))
        },
    )
    .await
}
