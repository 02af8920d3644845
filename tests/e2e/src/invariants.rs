//! What the reliability tests hold the operator to, and the tools to see it: the emulator's
//! call log collected per account, fault rules scoped to a test's accounts, IAM membership
//! sampled over time and judged against the grants' recorded windows.
//!
//! The emulator keeps only the last 20,000 calls of every test together, so [`CallLog`] polls
//! it in the background and keeps its own copy of the calls made in the accounts it watches.

use anyhow::{bail, Context as _};
use aws_config::SdkConfig;
use futures::StreamExt;
use jiff::Timestamp;
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::operator::http;

/// Seconds a revocation may take after its expiry.
pub const REVOKE_BUDGET_SECS: f64 = 5.0;

/// One call the emulator served (or refused, or faulted).
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct Call {
    pub time: f64,
    pub service: String,
    pub operation: String,
    pub account: String,
    #[serde(default)]
    pub caller: Option<String>,
    #[serde(default)]
    pub status: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub fault: Option<String>,
}

impl Call {
    /// Whether the operator made the call: it acts through role sessions named
    /// `<prefix>-<controller>`, with the default prefix `prodaccess`.
    pub fn by_operator(&self) -> bool {
        self.caller
            .as_deref()
            .is_some_and(|c| c.contains(":assumed-role/") && c.contains("/prodaccess-"))
    }

    /// Whether the call changes something in AWS.
    pub fn is_write(&self) -> bool {
        is_write(&self.operation)
    }

    /// Whether the emulator answered it normally (not a fault, not an error).
    pub fn succeeded(&self) -> bool {
        self.fault.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn key(&self) -> String {
        format!(
            "{:.6}|{}|{}|{}|{:?}|{:?}|{:?}",
            self.time,
            self.account,
            self.service,
            self.operation,
            self.caller,
            self.status,
            self.fault
        )
    }
}

/// Operations that change state in AWS, by the verbs AWS names them with.
pub fn is_write(operation: &str) -> bool {
    const VERBS: &[&str] = &[
        "Create",
        "Put",
        "Add",
        "Register",
        "Deregister",
        "Modify",
        "Delete",
        "Change",
        "Start",
        "Stop",
        "Remove",
        "Attach",
        "Detach",
        "Accept",
        "Reject",
        "Associate",
        "Disassociate",
        "Set",
        "Terminate",
        "Send",
        "Import",
        "Request",
        "Update",
        "Tag",
        "Untag",
        "Enable",
    ];
    VERBS.iter().any(|verb| {
        operation
            .strip_prefix(verb)
            .is_some_and(|rest| rest.chars().next().is_none_or(|c| c.is_ascii_uppercase()))
    })
}

/// The calls made in some accounts, gathered from the emulator's log as the test runs.
pub struct CallLog {
    endpoint: String,
    accounts: Vec<String>,
    seen: Mutex<HashSet<String>>,
    calls: Mutex<Vec<Call>>,
}

#[derive(Deserialize)]
struct CallsAnswer {
    calls: Vec<Call>,
}

impl CallLog {
    pub fn new(endpoint: &str, accounts: &[String]) -> Arc<CallLog> {
        Arc::new(CallLog {
            endpoint: endpoint.to_string(),
            accounts: accounts.to_vec(),
            seen: Mutex::new(HashSet::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Reads the emulator's log once and keeps what is new.
    pub async fn poll(&self) -> crate::Result<()> {
        for account in &self.accounts {
            let url = format!("{}/_prodemu/calls?account={account}", self.endpoint);
            let (code, body) = http("GET", &url, "").await?;
            anyhow::ensure!(code == 200, "GET {url}: {code}");
            let answer: CallsAnswer = serde_json::from_str(&body).context("call log JSON")?;
            let mut seen = self.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let mut calls = self.calls.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for call in answer.calls {
                if seen.insert(call.key()) {
                    calls.push(call);
                }
            }
        }
        Ok(())
    }

    /// Polls every `every` until the returned handle is aborted (or dropped with the test).
    pub fn spawn_poller(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(err) = log.poll().await {
                    tracing::warn!(error = %err, "call log poll failed");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Every call collected so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        let mut calls = self.calls.lock().map(|c| c.clone()).unwrap_or_default();
        calls.sort_by(|a, b| a.time.total_cmp(&b.time));
        calls
    }

    /// Counts of the operator's calls by `service:operation`.
    pub fn operator_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in self.calls().iter().filter(|c| c.by_operator()) {
            *counts
                .entry(format!("{}:{}", call.service, call.operation))
                .or_default() += 1;
        }
        counts
    }

    /// Counts of the operator's calls that AWS answered normally, by `service:operation`.
    pub fn operator_successes(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in self
            .calls()
            .iter()
            .filter(|c| c.by_operator() && c.succeeded())
        {
            *counts
                .entry(format!("{}:{}", call.service, call.operation))
                .or_default() += 1;
        }
        counts
    }

    /// Counts of injected faults by kind, in the watched accounts.
    pub fn fault_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in self.calls() {
            if let Some(kind) = &call.fault {
                *counts.entry(kind.clone()).or_default() += 1;
            }
        }
        counts
    }
}

/// Seconds since the Unix epoch, as the emulator's call log writes time.
pub fn epoch(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// Fault injection: each operation in `account` fails about 10% of the time, spread over the
/// kinds of failure the service really returns, plus `delay_probability` of answers slower
/// than the operator's 10 s attempt timeout, and one such slow answer each for the first
/// `AddUserToGroup` and `RemoveUserFromGroup`.
pub fn fault_rules(account: &str, delay_probability: f64) -> Vec<serde_json::Value> {
    let mut rules = Vec::new();
    for service in [
        "iam",
        "ssm",
        "sts",
        "ec2",
        "elasticloadbalancing",
        "route53",
        "acm",
    ] {
        let mut kinds = vec![("throttle", 0.04), ("http500", 0.02), ("http503", 0.02)];
        if service == "route53" {
            kinds = vec![
                ("throttle", 0.02),
                ("prior_request_not_complete", 0.02),
                ("http500", 0.02),
                ("http503", 0.02),
            ];
        }
        kinds.push(("reset", 0.015));
        for (kind, probability) in kinds {
            rules.push(serde_json::json!({
                "service": service, "operation": "*", "kind": kind,
                "probability": probability, "count": 1_000_000, "account": account,
            }));
        }
        if service == "iam" {
            // One answer slower than the attempt timeout on the revocation call itself, and
            // one on the call that grants, whatever the probabilities do.
            for operation in ["RemoveUserFromGroup", "AddUserToGroup"] {
                rules.insert(
                    0,
                    serde_json::json!({
                        "service": service, "operation": operation, "kind": "delay",
                        "delay_ms": 11_000, "count": 1, "account": account,
                    }),
                );
            }
        }
        if delay_probability > 0.0 {
            for operation in delayed_operations(service) {
                rules.push(serde_json::json!({
                    "service": service, "operation": operation, "kind": "delay",
                    "delay_ms": 11_000, "probability": delay_probability, "count": 1_000_000,
                    "account": account,
                }));
            }
        }
    }
    rules
}

/// Operations that may answer late at random: all of a service's, except IAM's `GetGroup`,
/// which the membership samples read (an 11 s gap would blind them).
fn delayed_operations(service: &str) -> Vec<&'static str> {
    if service != "iam" {
        return vec!["*"];
    }
    vec![
        "GetUser",
        "ListGroupsForUser",
        "AddUserToGroup",
        "RemoveUserFromGroup",
        "PutUserPolicy",
        "DeleteUserPolicy",
        "CreateGroup",
        "GetGroupPolicy",
        "PutGroupPolicy",
    ]
}

/// The longest the membership samples may be apart for a run to be judged: a late revocation
/// of 5 s or more must fall between two samples.
pub const MAX_SAMPLE_GAP_SECS: f64 = 4.0;

/// Adds fault rules to the emulator.
pub async fn add_faults(endpoint: &str, rules: &[serde_json::Value]) -> crate::Result<()> {
    let url = format!("{endpoint}/_prodemu/faults");
    let body = serde_json::json!({ "rules": rules }).to_string();
    let (code, answer) = http("POST", &url, &body).await?;
    anyhow::ensure!(
        (200..300).contains(&code),
        "adding fault rules failed: {code} {answer}"
    );
    Ok(())
}

/// How often the fault rules scoped to `account` fired, by kind (delays included, which the
/// call log does not mark because the call is then served normally).
pub async fn fault_hits(endpoint: &str, account: &str) -> crate::Result<BTreeMap<String, u64>> {
    let url = format!("{endpoint}/_prodemu/faults");
    let (code, body) = http("GET", &url, "").await?;
    anyhow::ensure!(code == 200, "GET {url}: {code}");
    let answer: serde_json::Value = serde_json::from_str(&body)?;
    let rules = answer["rules"]
        .as_array()
        .or(answer.as_array())
        .cloned()
        .unwrap_or_default();
    let mut hits = BTreeMap::new();
    for rule in rules.iter().filter(|r| r["account"] == account) {
        let kind = rule["kind"].as_str().unwrap_or("?").to_string();
        *hits.entry(kind).or_default() += rule["hits"].as_u64().unwrap_or(0);
    }
    Ok(hits)
}

/// Runs a test-side AWS call until it succeeds: the test's own calls go through the same
/// fault rules as the operator's.
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::Result<T>>,
{
    let mut last = None;
    for _ in 0..30 {
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    match last {
        Some(err) => Err(err.context(format!("{what} kept failing"))),
        None => bail!("{what} never ran"),
    }
}

/// Members of an IAM group, read with an admin of its account.
pub async fn group_members(admin: &SdkConfig, group: &str) -> crate::Result<Vec<String>> {
    let iam = aws_sdk_iam::Client::new(admin);
    let mut members = Vec::new();
    let mut marker = None;
    loop {
        let out = iam
            .get_group()
            .group_name(group)
            .set_marker(marker)
            .max_items(1000)
            .send()
            .await
            .context("GetGroup")?;
        members.extend(out.users().iter().map(|u| u.user_name().to_string()));
        match out.marker() {
            Some(next) if out.is_truncated() => marker = Some(next.to_string()),
            _ => return Ok(members),
        }
    }
}

/// The IAM group's members at one moment: the read started at `t0` and answered at `t1`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sample {
    /// The `AccessGroup` whose IAM group was read.
    pub group: String,
    pub t0: Timestamp,
    pub t1: Timestamp,
    pub members: Vec<String>,
}

/// Samples a group's members until the returned handle is aborted. Failed reads (faults are
/// on) are skipped; the count of good samples says how dense the sampling was.
pub fn spawn_sampler(
    admin: SdkConfig,
    iam_group: String,
    access_group: String,
    every: Duration,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let t0 = Timestamp::now();
            if let Ok(members) = group_members(&admin, &iam_group).await {
                let sample = Sample {
                    group: access_group.clone(),
                    t0,
                    t1: Timestamp::now(),
                    members,
                };
                if let Ok(mut all) = samples.lock() {
                    all.push(sample);
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// A grant's life as it ended up recorded: whose it was and the window it was given.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recorded {
    pub name: String,
    pub user: String,
    /// The `AccessGroup` it was for.
    pub group: String,
    pub phase: GrantPhase,
    pub start: Option<Timestamp>,
    pub expiry: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// When the operator gave access; `None` for a grant never granted (for example a window
    /// too short for `--add-margin`).
    pub granted_at: Option<Timestamp>,
    /// What the status says, for failure reports.
    pub message: String,
}

impl Recorded {
    pub fn of(grant: &ProductionAccessGrant) -> Recorded {
        let status = grant.status.clone().unwrap_or_default();
        let (user, group) = status.approved.as_ref().map_or(
            (grant.spec.user.clone(), grant.spec.access_group.clone()),
            |a| (a.user.clone(), a.access_group.clone()),
        );
        Recorded {
            name: grant.metadata.name.clone().unwrap_or_default(),
            user,
            group,
            phase: status.phase,
            start: status.window.as_ref().map(|w| w.start.0),
            expiry: status.window.as_ref().map(|w| w.expiry.0),
            revoked_at: status.revoked_at.map(|t| t.0),
            granted_at: status.granted_at.map(|t| t.0),
            message: status.message.clone().unwrap_or_default(),
        }
    }

    /// Whether this grant accounts for `user` being a member during `[t0, t1]`: its window
    /// had started by `t1` and had not ended more than the revocation budget before `t0`.
    fn covers(&self, sample: &Sample, user: &str) -> bool {
        let (t0, t1) = (sample.t0, sample.t1);
        let (Some(start), Some(expiry)) = (self.start, self.expiry) else {
            return false;
        };
        let budget = jiff::SignedDuration::from_millis((REVOKE_BUDGET_SECS * 1000.0) as i64);
        self.user == user && self.group == sample.group && start <= t1 && t0 <= expiry + budget
    }
}

/// Membership that no recorded grant accounts for: `(sample time, user)` for every sample
/// where a member had no grant whose window (plus the revocation budget) covered it.
pub fn unbacked_members(samples: &[Sample], grants: &[Recorded]) -> Vec<(Timestamp, String)> {
    let mut found = Vec::new();
    for sample in samples {
        for user in &sample.members {
            if !grants.iter().any(|g| g.covers(sample, user)) {
                found.push((sample.t0, user.clone()));
            }
        }
    }
    found
}

/// For each user, the start of the last sample that saw them in the group.
pub fn last_seen(samples: &[Sample]) -> BTreeMap<String, Timestamp> {
    let mut seen = BTreeMap::new();
    for sample in samples {
        for user in &sample.members {
            let entry = seen.entry(user.clone()).or_insert(sample.t0);
            if sample.t0 > *entry {
                *entry = sample.t0;
            }
        }
    }
    seen
}

/// Revocation lags (seconds from expiry to `status.revokedAt`) of finished grants.
pub fn revoke_lags(grants: &[Recorded]) -> Vec<(String, f64)> {
    grants
        .iter()
        .filter_map(|g| {
            let lag = g.revoked_at?.duration_since(g.expiry?).as_secs_f64();
            Some((g.name.clone(), lag))
        })
        .collect()
}

/// The value at quantile `q` (0..=1) of `values`.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One access group of a grant load: the `AccessGroup` object and its IAM group.
#[derive(Clone, Debug)]
pub struct LoadGroup {
    pub name: String,
    pub iam_group: String,
    pub change_requests: bool,
}

/// A world for many grants in one fresh account: one IAM user per grant, an access group
/// that needs no approval and one that needs a change request, and an approver.
pub struct GrantLoad {
    pub endpoint: String,
    pub account: String,
    pub admin: SdkConfig,
    pub users: Vec<String>,
    pub open: LoadGroup,
    pub ticketed: LoadGroup,
    approver: SdkConfig,
}

/// Change template of the ticketed group; its approval step names no approvers.
pub const LOAD_TEMPLATE: &str = "Reliability-ChangeTemplate";

/// How many grants, how fast they arrive, how long each lasts.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub grants: usize,
    /// Grants are applied evenly over this time.
    pub spread: Duration,
    pub min_duration_secs: u64,
    pub max_duration_secs: u64,
    /// Every n-th grant needs a change request (0: none does).
    pub change_request_every: usize,
}

impl LoadPlan {
    /// A grant's duration. Grants through a change request last at least 30 s: the change
    /// request the operator opens ends at request time + duration, and the approval, which
    /// takes a few seconds when everything is being disturbed, comes out of that; what is
    /// left must still be more than the 12 s within which the operator sends no add.
    fn duration_secs(&self, index: usize) -> u64 {
        let range = self
            .max_duration_secs
            .saturating_sub(self.min_duration_secs)
            + 1;
        let secs = self.min_duration_secs + (index as u64 * 7) % range;
        if self.ticketed(index) {
            secs.max(30)
        } else {
            secs
        }
    }

    fn ticketed(&self, index: usize) -> bool {
        self.change_request_every > 0 && index.is_multiple_of(self.change_request_every)
    }

    /// When the last grant should have ended, from the start of the run.
    pub fn busy_for(&self) -> Duration {
        self.spread + Duration::from_secs(self.max_duration_secs.max(30) + 5)
    }
}

/// What a load run saw.
pub struct LoadReport {
    pub grants: Vec<Recorded>,
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
    pub unfinished: Vec<String>,
}

impl GrantLoad {
    /// Creates the AWS side (users, approver, template) and applies the account and groups.
    pub async fn setup(env: &crate::TestEnv, users: usize) -> crate::Result<GrantLoad> {
        let endpoint = env.platform.aws_endpoint.clone();
        let account = crate::TestEnv::account_id();
        let admin = crate::aws::admin(&endpoint, &account).await?;
        let names: Vec<String> = (0..users).map(|i| format!("user-{i:04}")).collect();
        let iam = aws_sdk_iam::Client::new(&admin);
        let creations = names.iter().map(|name| {
            let iam = iam.clone();
            async move { iam.create_user().user_name(name).send().await }
        });
        let results: Vec<_> = futures::stream::iter(creations)
            .buffer_unordered(8)
            .collect()
            .await;
        for result in results {
            result.context("create a load user")?;
        }
        let approver = create_approver(&endpoint, &admin).await?;
        create_template(&admin).await?;
        let load = GrantLoad {
            endpoint,
            account,
            admin,
            users: names,
            open: LoadGroup {
                name: format!("open-{}", env.id),
                iam_group: "ReliabilityOpen".into(),
                change_requests: false,
            },
            ticketed: LoadGroup {
                name: format!("ticketed-{}", env.id),
                iam_group: "ReliabilityTicketed".into(),
                change_requests: true,
            },
            approver,
        };
        for doc in load.admin_manifests(env) {
            apply_retrying(env, &doc).await?;
        }
        Ok(load)
    }

    fn admin_manifests(&self, env: &crate::TestEnv) -> Vec<serde_json::Value> {
        let account = format!("load-{}", env.id);
        let mut docs = vec![serde_json::json!({
            "apiVersion": "prodaccess.io/v1alpha1",
            "kind": "AwsAccount",
            "metadata": {"name": account},
            "spec": {
                "roleArn": format!("arn:aws:iam::{}:role/prodaccess-operator", self.account),
                "region": crate::aws::REGION,
                "expectedAccountId": self.account,
                "allowedNamespaces": [env.namespace],
            },
        })];
        for group in [&self.open, &self.ticketed] {
            let approval = if group.change_requests {
                serde_json::json!({"mode": "changeRequest", "changeTemplates": [LOAD_TEMPLATE]})
            } else {
                serde_json::json!({"mode": "none"})
            };
            docs.push(serde_json::json!({
                "apiVersion": "prodaccess.io/v1alpha1",
                "kind": "AccessGroup",
                "metadata": {"name": group.name},
                "spec": {
                    "accountRef": account,
                    "groupName": group.iam_group,
                    "createGroup": true,
                    "maxDuration": "1h",
                    "defaultDuration": "10m",
                    "approval": approval,
                    "allowedNamespaces": [env.namespace],
                },
            }));
        }
        docs
    }

    fn grant_manifest(&self, plan: &LoadPlan, index: usize) -> serde_json::Value {
        let group = if plan.ticketed(index) {
            &self.ticketed
        } else {
            &self.open
        };
        serde_json::json!({
            "apiVersion": "prodaccess.io/v1alpha1",
            "kind": "ProductionAccessGrant",
            "metadata": {"name": format!("g-{index:04}")},
            "spec": {
                "accessGroup": group.name,
                "user": self.users[index],
                "duration": format!("{}s", plan.duration_secs(index)),
                "reason": format!("reliability load, grant {index}"),
            },
        })
    }

    /// Applies the grants on schedule, approves the change requests they open, samples
    /// membership, and waits until every grant is finished (or `settle` after the busy time).
    /// `chaos` runs alongside, from the start.
    pub async fn run<C, R>(
        &self,
        env: &crate::TestEnv,
        plan: &LoadPlan,
        settle: Duration,
        chaos: C,
    ) -> crate::Result<(LoadReport, R)>
    where
        C: Future<Output = R>,
    {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for group in [&self.open, &self.ticketed] {
            tasks.push(spawn_sampler(
                self.admin.clone(),
                group.iam_group.clone(),
                group.name.clone(),
                Duration::from_millis(400),
                samples.clone(),
            ));
        }
        tasks.push(self.spawn_approver(env));
        let started = std::time::Instant::now();
        let (load, chaos) = tokio::join!(self.apply_and_wait(env, plan, settle), chaos);
        for task in tasks {
            task.abort();
        }
        let unfinished = load?;
        let grants = retry("list the grants", || list_grants(env)).await?;
        let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
        let report = LoadReport {
            grants,
            samples,
            elapsed: started.elapsed(),
            unfinished,
        };
        Ok((report, chaos))
    }

    async fn apply_and_wait(
        &self,
        env: &crate::TestEnv,
        plan: &LoadPlan,
        settle: Duration,
    ) -> crate::Result<Vec<String>> {
        let start = tokio::time::Instant::now();
        for index in 0..plan.grants {
            let at = start
                + plan
                    .spread
                    .mul_f64(index as f64 / plan.grants.max(1) as f64);
            tokio::time::sleep_until(at).await;
            apply_retrying(env, &self.grant_manifest(plan, index)).await?;
        }
        let deadline = start + plan.busy_for() + settle;
        loop {
            let grants = list_grants(env).await.unwrap_or_default();
            let unfinished: Vec<String> = grants
                .iter()
                .filter(|g| !g.phase.is_terminal())
                .map(|g| format!("{} is {:?}", g.name, g.phase))
                .collect();
            let all_there = grants.len() >= plan.grants;
            if all_there && unfinished.is_empty() {
                return Ok(Vec::new());
            }
            if tokio::time::Instant::now() > deadline {
                return Ok(unfinished);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Approves each change request the operator opens, once (a signal that lands twice is
    /// refused by AWS as not waiting, which counts as done).
    fn spawn_approver(&self, env: &crate::TestEnv) -> tokio::task::JoinHandle<()> {
        let ssm = aws_sdk_ssm::Client::new(&self.approver);
        let api: kube::Api<ProductionAccessGrant> = env.api();
        tokio::spawn(async move {
            let mut done = HashSet::new();
            loop {
                let grants = api.list(&Default::default()).await.map(|l| l.items);
                for grant in grants.unwrap_or_default() {
                    let status = grant.status.clone().unwrap_or_default();
                    let Some(id) = status.approval_id.clone() else {
                        continue;
                    };
                    if status.phase != GrantPhase::AwaitingApproval || done.contains(&id) {
                        continue;
                    }
                    if approve(&ssm, &id).await {
                        done.insert(id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    }

    /// Checks that the run left nothing behind in AWS: no member in either group and no
    /// expiry guard on any user. Returns what was found.
    pub async fn leftovers(&self) -> crate::Result<Vec<String>> {
        let mut found = Vec::new();
        for group in [&self.open, &self.ticketed] {
            let members = retry("read members", || {
                group_members(&self.admin, &group.iam_group)
            });
            for user in members.await? {
                found.push(format!("{user} is still in {}", group.iam_group));
            }
        }
        let iam = aws_sdk_iam::Client::new(&self.admin);
        let checks = self.users.iter().map(|user| {
            let iam = iam.clone();
            async move {
                let policies = retry("list user policies", || async {
                    let out = iam.list_user_policies().user_name(user).send().await?;
                    Ok(out.policy_names().to_vec())
                })
                .await;
                (user.clone(), policies)
            }
        });
        let results: Vec<_> = futures::stream::iter(checks)
            .buffer_unordered(8)
            .collect()
            .await;
        for (user, policies) in results {
            for policy in policies? {
                if policy.starts_with("prodaccess-expiry-") {
                    found.push(format!("{user} still has {policy}"));
                }
            }
        }
        Ok(found)
    }

    /// Deletes the grants (the operator must be running to release them) and the admin
    /// objects, so the shared API server keeps nothing of the run.
    pub async fn teardown(&self, env: &crate::TestEnv) -> crate::Result<()> {
        let gone = "the grants to be gone";
        env.delete_all::<ProductionAccessGrant>(gone, Duration::from_secs(90))
            .await?;
        for doc in self.admin_manifests(env) {
            let (Some(kind), Some(name)) = (doc["kind"].as_str(), doc["metadata"]["name"].as_str())
            else {
                continue;
            };
            env.delete_cluster_object(kind, name).await;
        }
        Ok(())
    }

    /// Change requests opened in the account from the load's template.
    pub async fn change_requests(&self) -> crate::Result<Vec<String>> {
        let url = format!("{}/_prodemu/executions", self.endpoint);
        let (code, body) = http("GET", &url, "").await?;
        anyhow::ensure!(code == 200, "GET {url}: {code}");
        let answer: serde_json::Value = serde_json::from_str(&body)?;
        let rows = answer["executions"].as_array().cloned().unwrap_or_default();
        Ok(rows
            .iter()
            .filter(|r| r["account"] == self.account.as_str() && r["document"] == LOAD_TEMPLATE)
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect())
    }
}

impl LoadReport {
    /// Every broken promise: grants that did not expire, late revocations, membership that no
    /// grant accounts for.
    pub fn failures(&self) -> Vec<String> {
        self.failures_with(REVOKE_BUDGET_SECS)
    }

    /// As [`failures`](Self::failures), with `status_budget` seconds allowed between expiry
    /// and the `revokedAt` the status records. While the API server is down the revocation in
    /// AWS still happens on time (the membership samples hold it to 5 s), but it can only be
    /// recorded once the API server is back.
    pub fn failures_with(&self, status_budget: f64) -> Vec<String> {
        let mut failures: Vec<String> = self
            .unfinished
            .iter()
            .map(|u| format!("not finished: {u}"))
            .collect();
        for grant in &self.grants {
            if grant.phase != GrantPhase::Expired {
                failures.push(format!(
                    "{} ended {:?}, not Expired",
                    grant.name, grant.phase
                ));
            }
        }
        for (name, lag) in revoke_lags(&self.grants) {
            if !(-0.05..=status_budget).contains(&lag) {
                failures.push(format!("{name} was revoked {lag:.2}s after its expiry"));
            }
        }
        let never = self.never_members();
        if never.len() * 10 > self.grants.len() {
            failures.push(format!(
                "{} of {} grants were never seen in their group: the load proved little ({})",
                never.len(),
                self.grants.len(),
                never.join(", ")
            ));
        }
        let gap = self.largest_sample_gap();
        if gap > MAX_SAMPLE_GAP_SECS {
            failures.push(format!(
                "membership samples were {gap:.1}s apart: too sparse to judge revocations"
            ));
        }
        let unbacked = unbacked_members(&self.samples, &self.grants);
        let mut by_user: BTreeMap<String, (Timestamp, usize)> = BTreeMap::new();
        for (at, user) in unbacked {
            let entry = by_user.entry(user).or_insert((at, 0));
            entry.1 += 1;
        }
        for (user, (first, count)) in by_user {
            let grant = self.grants.iter().find(|g| g.user == user);
            failures.push(format!(
                "{user} was a member without a grant covering it in {count} samples from {first} \
                 (grant: {grant:?})"
            ));
        }
        failures
    }

    /// Seconds from each grant's expiry to the first sample that no longer saw its user in
    /// the group: an upper bound of when IAM really lost the member.
    pub fn iam_lags(&self) -> Vec<f64> {
        let mut lags = Vec::new();
        for grant in &self.grants {
            let Some(expiry) = grant.expiry else { continue };
            let gone = self.samples.iter().find(|s| {
                s.group == grant.group && s.t0 >= expiry && !s.members.contains(&grant.user)
            });
            if let Some(sample) = gone {
                lags.push(sample.t1.duration_since(expiry).as_secs_f64());
            }
        }
        lags
    }

    /// Grants whose user no membership sample ever saw in the group during the window. A
    /// window too short to add the user safely (`--add-margin`) ends this way by design.
    pub fn never_members(&self) -> Vec<String> {
        self.grants
            .iter()
            .filter(|g| {
                !self.samples.iter().any(|s| {
                    s.group == g.group
                        && s.members.contains(&g.user)
                        && g.start.is_some_and(|start| start <= s.t1)
                        && g.expiry.is_some_and(|expiry| s.t0 <= expiry)
                })
            })
            .map(|g| g.name.clone())
            .collect()
    }

    /// The longest time between two samples of the same group, in seconds.
    pub fn largest_sample_gap(&self) -> f64 {
        let mut last: BTreeMap<&str, Timestamp> = BTreeMap::new();
        let mut gap: f64 = 0.0;
        for sample in &self.samples {
            if let Some(previous) = last.insert(&sample.group, sample.t0) {
                gap = gap.max(sample.t0.duration_since(previous).as_secs_f64());
            }
        }
        gap
    }

    /// Writes the grants, samples and calls of the run as JSON next to the operator logs, for
    /// a look after a failure.
    pub async fn dump(&self, env: &crate::TestEnv, calls: &[Call]) -> std::path::PathBuf {
        let path = env.platform.log_dir.join(format!("{}-report.json", env.id));
        let events: kube::Api<k8s_openapi::api::events::v1::Event> = env.api();
        let events: Vec<serde_json::Value> = events
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                serde_json::json!({
                    "time": e.event_time, "reason": e.reason, "note": e.note,
                    "object": e.regarding.as_ref().and_then(|r| r.name.clone()),
                })
            })
            .collect();
        let value = serde_json::json!({
            "grants": self.grants, "samples": self.samples, "calls": calls, "events": events,
        });
        let _ = std::fs::write(&path, value.to_string());
        path
    }

    /// A load test's verdict on its `failures`: none passes; otherwise the run and the calls
    /// in `log` are dumped for a look afterwards (the last failure names the file) and the
    /// test fails with every failure on a line of its own.
    pub async fn verdict(
        &self,
        env: &crate::TestEnv,
        log: &CallLog,
        mut failures: Vec<String>,
    ) -> crate::Result<()> {
        if !failures.is_empty() {
            let path = self.dump(env, &log.calls()).await;
            failures.push(format!(
                "grants, samples and calls are in {}",
                path.display()
            ));
        }
        anyhow::ensure!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        Ok(())
    }

    /// One line of figures for the test output and docs/reliability.md.
    pub fn figures(&self) -> String {
        let (p50, p99, max) = self.lag_summary();
        let iam = self.iam_lags();
        let (most, samples) = self.sampling();
        format!(
            "{} grants in {:.0}s; revokedAt - expiry p50 {p50:.2}s p99 {p99:.2}s max {max:.2}s; \
             IAM saw the member gone within p50 {:.2}s p99 {:.2}s max {:.2}s of expiry \
             ({samples} samples, largest gap {:.1}s, up to {most} members at once)",
            self.grants.len(),
            self.elapsed.as_secs_f64(),
            quantile(&iam, 0.5),
            quantile(&iam, 0.99),
            quantile(&iam, 1.0),
            self.largest_sample_gap(),
        )
    }

    /// Quantiles of the revocation lag, in seconds: (p50, p99, max).
    pub fn lag_summary(&self) -> (f64, f64, f64) {
        let lags: Vec<f64> = revoke_lags(&self.grants).iter().map(|(_, l)| *l).collect();
        (
            quantile(&lags, 0.5),
            quantile(&lags, 0.99),
            quantile(&lags, 1.0),
        )
    }

    /// The most members seen in one sample, and how many samples there were.
    pub fn sampling(&self) -> (usize, usize) {
        let most = self.samples.iter().map(|s| s.members.len()).max();
        (most.unwrap_or(0), self.samples.len())
    }
}

/// Applies an object, retrying while the API server does not answer (it may be restarting).
pub async fn apply_retrying(env: &crate::TestEnv, doc: &serde_json::Value) -> crate::Result<()> {
    let mut last = None;
    for _ in 0..60 {
        match env.apply_value(&mut doc.clone()).await {
            Ok(()) => return Ok(()),
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("never applied")))
}

/// The grants of a test, as recorded.
pub async fn list_grants(env: &crate::TestEnv) -> crate::Result<Vec<Recorded>> {
    let api: kube::Api<ProductionAccessGrant> = env.api();
    let list = api.list(&Default::default()).await?;
    Ok(list.items.iter().map(Recorded::of).collect())
}

async fn approve(ssm: &aws_sdk_ssm::Client, id: &str) -> bool {
    use aws_sdk_ssm::error::ProvideErrorMetadata;
    let result = ssm
        .send_automation_signal()
        .automation_execution_id(id)
        .signal_type(aws_sdk_ssm::types::SignalType::Approve)
        .send()
        .await;
    match result {
        Ok(_) => true,
        Err(err) => err.code() == Some("InvalidAutomationSignalException"),
    }
}

/// An IAM user with keys and the right to approve change requests.
async fn create_approver(endpoint: &str, admin: &SdkConfig) -> crate::Result<SdkConfig> {
    let iam = aws_sdk_iam::Client::new(admin);
    iam.create_user().user_name("approver").send().await?;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["ssm:SendAutomationSignal", "ssm:GetAutomationExecution"],
            "Resource": "*"
        }]
    });
    iam.put_user_policy()
        .user_name("approver")
        .policy_name("Approver")
        .policy_document(policy.to_string())
        .send()
        .await?;
    let key = iam.create_access_key().user_name("approver").send().await?;
    let key = key.access_key().context("no access key")?;
    let credentials = aws_credential_types::Credentials::new(
        key.access_key_id(),
        key.secret_access_key(),
        None,
        None,
        "approver",
    );
    Ok(crate::aws::config(endpoint, credentials).await)
}

async fn create_template(admin: &SdkConfig) -> crate::Result<()> {
    let content = serde_json::json!({
        "schemaVersion": "0.3",
        "emergencyChange": false,
        "autoApprovable": false,
        "executableRunBooks": [{"name": "AWS-HelloWorld", "version": "$DEFAULT"}],
        "templateInformation": "# Reliability load\nAny approver.",
        "mainSteps": [{
            "name": "Approve",
            "action": "aws:approve",
            "timeoutSeconds": 3600,
            "inputs": {"Message": "Production access", "MinRequiredApprovals": 1}
        }]
    });
    aws_sdk_ssm::Client::new(admin)
        .create_document()
        .name(LOAD_TEMPLATE)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn writes_are_told_apart_from_reads() {
        for op in [
            "AddUserToGroup",
            "PutUserPolicy",
            "StartChangeRequestExecution",
            "Delete",
        ] {
            assert!(is_write(op), "{op}");
        }
        for op in [
            "GetUser",
            "ListGroupsForUser",
            "DescribeSessions",
            "Settings",
            "Tagging",
        ] {
            assert!(!is_write(op), "{op}");
        }
    }

    #[test]
    fn membership_outside_every_window_is_reported() {
        let grant = Recorded {
            name: "g".into(),
            user: "u1".into(),
            group: "open".into(),
            phase: GrantPhase::Expired,
            start: Some(at(10)),
            expiry: Some(at(20)),
            revoked_at: Some(at(21)),
            granted_at: Some(at(10)),
            message: String::new(),
        };
        let sample = |t: i64, users: &[&str]| Sample {
            group: "open".into(),
            t0: at(t),
            t1: at(t),
            members: users.iter().map(|u| u.to_string()).collect(),
        };
        let samples = vec![
            sample(9, &["u1"]),
            sample(12, &["u1", "u2"]),
            sample(24, &["u1"]),
            sample(26, &["u1"]),
        ];
        let found = unbacked_members(&samples, &[grant]);
        let users: Vec<(i64, &str)> = found
            .iter()
            .map(|(t, u)| (t.as_second() - 1_800_000_000, u.as_str()))
            .collect();
        assert_eq!(users, vec![(9, "u1"), (12, "u2"), (26, "u1")]);
        assert_eq!(last_seen(&samples).get("u1"), Some(&at(26)));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 1.0), 3.0);
    }
}
