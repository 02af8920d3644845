//! A route load for the reliability tests: many `PrivateLinkRoute`s in two fresh accounts,
//! created on a schedule, some deleted while they are still being built, some once they are
//! Ready, the rest at the end, while an inventory of both accounts is taken over and over.
//!
//! The promises judged from the inventory (every resource carrying a route-UID tag, counted by
//! kind per UID): never more than one of a kind for one route (no duplicate), exactly one of
//! each once the routes are Ready, and nothing of a route's UID in any inventory taken after
//! its deletion completed (the finalizer released the object). The hosted zone has no
//! required tag in Route 53's create call, so zones are counted by the route's caller
//! reference, and a zone without the UID tag is reported at convergence.

use anyhow::Context as _;
use aws_config::SdkConfig;
use jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use prodaccess::controller::route::action::Hop;
use prodaccess::controller::route::names::UID_TAG;
use prodaccess::crd::{ConditionExt, PrivateLinkRoute};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::invariants::{apply_retrying, env_number, quantile, retry, CallLog};
use crate::network::{Labels, Network};

/// What is counted per route: every resource a route makes in AWS.
pub const KINDS: [&str; 9] = [
    "instance-target-group",
    "alb",
    "alb-listener",
    "alb-target-group",
    "nlb",
    "nlb-listener",
    "endpoint-service",
    "endpoint",
    "hosted-zone",
];

/// When each route is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// A few seconds after it was applied, whether Ready or not.
    WhileBuilding,
    /// As soon as it is seen Ready.
    OnceReady,
    /// After every route was Ready, with all the others.
    AtTheEnd,
}

/// How many routes, how fast they arrive, how long they may take.
#[derive(Clone, Debug)]
pub struct RoutePlan {
    pub routes: usize,
    /// Routes are applied evenly over this time.
    pub spread: Duration,
    /// How long after the last apply every surviving route must be Ready.
    pub converge_within: Duration,
    /// How long every deletion may take.
    pub delete_within: Duration,
}

impl RoutePlan {
    /// `routes` applied over `max(5 s, 0.5 s each)` (or the seconds in the environment
    /// variable `spread_var`), Ready within 120 s plus 3 s a route after the last apply, every
    /// deletion done within 120 s plus 1 s a route (or `PRODACCESS_ROUTE_CONVERGE_SECS` and
    /// `PRODACCESS_ROUTE_DELETE_SECS`). The operator's AWS budget (10 ELB reads a second per
    /// account) sets the pace of a large load: about 80 ELB reads build and delete one route.
    pub fn sized(spread_var: &str, routes: usize) -> RoutePlan {
        let secs = |var: &str, default: usize| Duration::from_secs(env_number(var, default) as u64);
        RoutePlan {
            routes,
            spread: secs(spread_var, (routes / 2).max(5)),
            converge_within: secs("PRODACCESS_ROUTE_CONVERGE_SECS", 120 + routes * 3),
            delete_within: secs("PRODACCESS_ROUTE_DELETE_SECS", 120 + routes),
        }
    }

    /// Route `i`'s fate: one in three of each, starting with one kept to the end.
    pub fn fate(index: usize) -> Fate {
        match index % 3 {
            0 => Fate::AtTheEnd,
            1 => Fate::OnceReady,
            _ => Fate::WhileBuilding,
        }
    }
}

/// Two fresh accounts, their network and the `AwsAccount` objects for them.
pub struct RouteLoad {
    pub provider_account: String,
    pub consumer_account: String,
    provider: SdkConfig,
    consumer: SdkConfig,
    /// The network every route of the load shares.
    net: Network,
    accounts: [String; 2],
}

/// One look at both accounts: `uid -> kind -> count`, and zones of a route without its tag.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Inventory {
    pub t0: Option<Timestamp>,
    pub t1: Option<Timestamp>,
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    pub untagged_zones: Vec<String>,
    /// Whether listeners were counted.
    pub listeners_counted: bool,
}

impl Inventory {
    fn add(&mut self, uid: &str, kind: &str) {
        *self
            .counts
            .entry(uid.to_string())
            .or_default()
            .entry(kind.to_string())
            .or_default() += 1;
    }
}

/// What the driver saw: each route's life, the inventory taken when all kept routes were
/// Ready, and what was not done by the deadline.
struct Driven {
    lives: Vec<RouteLife>,
    checkpoint: Option<Inventory>,
    late: Option<String>,
}

/// One route's life as the driver saw it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RouteLife {
    pub name: String,
    pub uid: String,
    pub fate: String,
    pub applied: Timestamp,
    pub ready: Option<Timestamp>,
    pub delete_requested: Option<Timestamp>,
    pub gone: Option<Timestamp>,
}

/// What a route load saw.
#[derive(Debug, Default)]
pub struct RouteReport {
    pub lives: Vec<RouteLife>,
    pub samples: usize,
    pub elapsed: Duration,
    /// Broken promises, one line each.
    pub failures: Vec<String>,
    /// Routes found with two or more of a kind, in any sample.
    pub duplicates: usize,
    /// Resources seen after their route's deletion completed.
    pub leftovers: usize,
}

impl RouteReport {
    /// One line of figures for the test output and docs/reliability.md.
    pub fn figures(&self) -> String {
        let secs = |from: Timestamp, to: Option<Timestamp>| {
            to.map(|t| t.duration_since(from).as_secs_f64())
        };
        let ready: Vec<f64> = self
            .lives
            .iter()
            .filter_map(|l| secs(l.applied, l.ready))
            .collect();
        let delete: Vec<f64> = self
            .lives
            .iter()
            .filter_map(|l| secs(l.delete_requested?, l.gone))
            .collect();
        format!(
            "{} routes in {:.0}s; apply to Ready p50 {:.1}s p99 {:.1}s max {:.1}s ({} Ready); \
             delete to gone p50 {:.1}s max {:.1}s ({} deleted); {} inventories, \
             {} duplicates, {} leftovers",
            self.lives.len(),
            self.elapsed.as_secs_f64(),
            quantile(&ready, 0.5),
            quantile(&ready, 0.99),
            quantile(&ready, 1.0),
            ready.len(),
            quantile(&delete, 0.5),
            quantile(&delete, 1.0),
            delete.len(),
            self.samples,
            self.duplicates,
            self.leftovers,
        )
    }
}

const ZONE_SUFFIX: &str = "routes.example.com";

impl RouteLoad {
    /// Creates both accounts' network and applies their `AwsAccount` objects.
    pub async fn setup(env: &crate::TestEnv) -> crate::Result<RouteLoad> {
        let endpoint = &env.platform.aws_endpoint;
        let provider_account = crate::TestEnv::account_id();
        let consumer_account = crate::TestEnv::account_id();
        let provider = crate::aws::admin(endpoint, &provider_account).await?;
        let consumer = crate::aws::admin(endpoint, &consumer_account).await?;
        let labels = Labels {
            security_groups: "routes-",
            instances: "routes",
            certificate_domain: &format!("*.{ZONE_SUFFIX}"),
        };
        let net = Network::create(&consumer, &provider, &labels).await?;
        let load = RouteLoad {
            accounts: [
                format!("routes-provider-{}", env.id),
                format!("routes-consumer-{}", env.id),
            ],
            provider_account,
            consumer_account,
            provider,
            consumer,
            net,
        };
        for (name, id) in load.accounts.iter().zip(load.account_ids()) {
            let doc = serde_json::json!({
                "apiVersion": "prodaccess.io/v1alpha1",
                "kind": "AwsAccount",
                "metadata": {"name": name},
                "spec": {
                    "roleArn": format!("arn:aws:iam::{id}:role/prodaccess-operator"),
                    "region": crate::aws::REGION,
                    "expectedAccountId": id,
                    "allowedNamespaces": [env.namespace],
                },
            });
            apply_retrying(env, &doc).await?;
        }
        Ok(load)
    }

    /// The operator's calls in the route accounts, and the faults they met by
    /// `service:kind`.
    pub fn operator_calls(&self, log: &CallLog) -> (usize, BTreeMap<String, usize>) {
        let accounts = self.account_ids();
        let mut faults: BTreeMap<String, usize> = BTreeMap::new();
        let mut calls = 0;
        for call in log.calls() {
            if !call.by_operator() || !accounts.contains(&call.account) {
                continue;
            }
            calls += 1;
            if let Some(kind) = &call.fault {
                *faults
                    .entry(format!("{}:{kind}", call.service))
                    .or_default() += 1;
            }
        }
        (calls, faults)
    }

    /// Both account IDs, provider first.
    pub fn account_ids(&self) -> [String; 2] {
        [self.provider_account.clone(), self.consumer_account.clone()]
    }

    fn route_manifest(&self, index: usize) -> serde_json::Value {
        let zone = format!("r{index:04}.{ZONE_SUFFIX}");
        let net = &self.net;
        serde_json::json!({
            "apiVersion": "prodaccess.io/v1alpha1",
            "kind": "PrivateLinkRoute",
            "metadata": {"name": route_name(index)},
            "spec": {
                "hostName": format!("admin.{zone}"),
                "port": 10443,
                "deletionPolicy": "Delete",
                "driftCheckInterval": "2m",
                "provider": net.route_provider(&self.accounts[0]),
                "consumer": net.route_consumer(&self.accounts[1], &zone),
            },
        })
    }

    /// Every resource of both accounts that belongs to a route, by route UID and kind;
    /// listeners only `with_listeners` (they take one read per load balancer).
    pub async fn inventory(&self, with_listeners: bool) -> crate::Result<Inventory> {
        let mut found = Inventory {
            t0: Some(Timestamp::now()),
            listeners_counted: with_listeners,
            ..Inventory::default()
        };
        self.count_balancers(&mut found, with_listeners).await?;
        self.count_endpoints(&mut found).await?;
        self.count_zones(&mut found).await?;
        found.t1 = Some(Timestamp::now());
        Ok(found)
    }

    async fn count_balancers(&self, found: &mut Inventory, listeners: bool) -> crate::Result<()> {
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&self.provider);
        let mut kinds: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut pages = elb.describe_load_balancers().into_paginator().send();
        while let Some(page) = pages.next().await {
            for lb in page.context("DescribeLoadBalancers")?.load_balancers() {
                let network = lb.r#type().is_some_and(|t| t.as_str() == "network");
                let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
                kinds.insert(arn, if network { "nlb" } else { "alb" });
            }
        }
        let mut pages = elb.describe_target_groups().into_paginator().send();
        while let Some(page) = pages.next().await {
            for group in page.context("DescribeTargetGroups")?.target_groups() {
                let alb = group.target_type().is_some_and(|t| t.as_str() == "alb");
                let kind = if alb {
                    "alb-target-group"
                } else {
                    "instance-target-group"
                };
                kinds.insert(group.target_group_arn().unwrap_or_default().into(), kind);
            }
        }
        let arns: Vec<String> = kinds.keys().cloned().collect();
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for chunk in arns.chunks(20) {
            let out = elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
                .context("DescribeTags")?;
            for description in out.tag_descriptions() {
                let uid = description
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(UID_TAG))
                    .and_then(|t| t.value());
                if let (Some(arn), Some(uid)) = (description.resource_arn(), uid) {
                    owners.insert(arn.to_string(), uid.to_string());
                }
            }
        }
        for (arn, uid) in &owners {
            found.add(uid, kinds[arn]);
        }
        if !listeners {
            return Ok(());
        }
        let mut balancers: Vec<(String, String, &'static str)> = Vec::new();
        for (arn, uid) in &owners {
            let kind: &'static str = kinds[arn];
            if matches!(kind, "alb" | "nlb") {
                balancers.push((arn.clone(), uid.clone(), kind));
            }
        }
        // Eight reads at a time: the emulator serves every test of the machine.
        let mut results = Vec::new();
        for chunk in balancers.chunks(8) {
            let mut reads = tokio::task::JoinSet::new();
            for (arn, uid, kind) in chunk.iter().cloned() {
                let elb = elb.clone();
                reads.spawn(async move {
                    let out = elb
                        .describe_listeners()
                        .load_balancer_arn(&arn)
                        .send()
                        .await;
                    (uid, kind, out.map(|o| o.listeners().len()))
                });
            }
            while let Some(result) = reads.join_next().await {
                results.push(result?);
            }
        }
        for (uid, kind, listeners) in results {
            // A load balancer deleted between the two reads has no listeners to count.
            let listeners = match listeners {
                Ok(n) => n,
                Err(err) if format!("{err:?}").contains("LoadBalancerNotFound") => 0,
                Err(err) => return Err(anyhow::Error::from(err).context("DescribeListeners")),
            };
            for _ in 0..listeners {
                found.add(&uid, &format!("{kind}-listener"));
            }
        }
        Ok(())
    }

    async fn count_endpoints(&self, found: &mut Inventory) -> crate::Result<()> {
        let uid_of = |tags: &[aws_sdk_ec2::types::Tag]| {
            tags.iter()
                .find(|t| t.key() == Some(UID_TAG))
                .and_then(|t| t.value())
                .map(str::to_string)
        };
        let ec2 = aws_sdk_ec2::Client::new(&self.provider);
        let services = ec2
            .describe_vpc_endpoint_service_configurations()
            .send()
            .await
            .context("DescribeVpcEndpointServiceConfigurations")?;
        for service in services.service_configurations() {
            let state = service.service_state().map(|s| s.as_str()).unwrap_or("");
            if let Some(uid) = uid_of(service.tags()) {
                if !matches!(state, "Deleted" | "Deleting" | "Failed") {
                    found.add(&uid, "endpoint-service");
                }
            }
        }
        let ec2 = aws_sdk_ec2::Client::new(&self.consumer);
        let mut pages = ec2.describe_vpc_endpoints().into_paginator().send();
        while let Some(page) = pages.next().await {
            for endpoint in page.context("DescribeVpcEndpoints")?.vpc_endpoints() {
                let state = endpoint.state().map(|s| s.as_str().to_ascii_lowercase());
                if let Some(uid) = uid_of(endpoint.tags()) {
                    if state.as_deref() != Some("deleted") {
                        found.add(&uid, "endpoint");
                    }
                }
            }
        }
        Ok(())
    }

    /// Zones by the caller reference the operator gives them (`<uid>-zone`), and whether
    /// each carries its UID tag.
    async fn count_zones(&self, found: &mut Inventory) -> crate::Result<()> {
        let r53 = aws_sdk_route53::Client::new(&self.consumer);
        let mut zones: Vec<(String, String)> = Vec::new();
        let mut pages = r53.list_hosted_zones().into_paginator().send();
        while let Some(page) = pages.next().await {
            for zone in page.context("ListHostedZones")?.hosted_zones() {
                if let Some(uid) = zone.caller_reference().strip_suffix("-zone") {
                    let id = zone.id().trim_start_matches("/hostedzone/").to_string();
                    zones.push((id, uid.to_string()));
                }
            }
        }
        for chunk in zones.chunks(10) {
            let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
            let out = r53
                .list_tags_for_resources()
                .resource_type(aws_sdk_route53::types::TagResourceType::Hostedzone)
                .set_resource_ids(Some(ids))
                .send()
                .await
                .context("ListTagsForResources")?;
            for (id, uid) in chunk {
                found.add(uid, "hosted-zone");
                let tagged = out.resource_tag_sets().iter().any(|set| {
                    set.resource_id() == Some(id.as_str())
                        && set
                            .tags()
                            .iter()
                            .any(|t| t.key() == Some(UID_TAG) && t.value() == Some(uid))
                });
                if !tagged {
                    found.untagged_zones.push(format!("{uid}: zone {id}"));
                }
            }
        }
        Ok(())
    }

    /// Applies the routes on schedule, deletes each according to its fate, deletes the rest
    /// once every route was Ready, and takes inventories all along. Returns what it saw.
    pub async fn run(&self, env: &crate::TestEnv, plan: &RoutePlan) -> crate::Result<RouteReport> {
        let started = std::time::Instant::now();
        let samples: Arc<Mutex<Vec<Inventory>>> = Arc::default();
        let sampler = self.spawn_sampler(samples.clone());
        let driven = self.drive(env, plan).await;
        sampler.abort();
        let mut report = RouteReport {
            elapsed: started.elapsed(),
            ..RouteReport::default()
        };
        let (lives, checkpoint) = match driven {
            Ok(Driven {
                lives,
                checkpoint,
                late,
            }) => {
                report.failures.extend(late);
                (lives, checkpoint)
            }
            Err(err) => {
                report.failures.push(format!("route load: {err:#}"));
                return Ok(report);
            }
        };
        // One more inventory after everything is gone, so a leftover is always seen.
        let last = retry("a last inventory", || self.inventory(true)).await?;
        let mut samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
        samples.push(last);
        report.samples = samples.len();
        report.lives = lives;
        judge(&mut report, &samples, checkpoint.as_ref());
        Ok(report)
    }

    fn spawn_sampler(&self, samples: Arc<Mutex<Vec<Inventory>>>) -> tokio::task::JoinHandle<()> {
        let load = RouteLoad {
            provider_account: self.provider_account.clone(),
            consumer_account: self.consumer_account.clone(),
            provider: self.provider.clone(),
            consumer: self.consumer.clone(),
            net: self.net.clone(),
            accounts: self.accounts.clone(),
        };
        tokio::spawn(async move {
            for round in 0usize.. {
                // Failed reads (faults are on) are skipped; the count says how dense it was.
                // Listeners are counted every fourth round: one read per load balancer.
                if let Ok(inventory) = load.inventory(round.is_multiple_of(4)).await {
                    if let Ok(mut all) = samples.lock() {
                        all.push(inventory);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    /// The schedule: apply, delete by fate, wait for Ready and for gone, until every route is
    /// gone or the plan's time is up.
    async fn drive(&self, env: &crate::TestEnv, plan: &RoutePlan) -> crate::Result<Driven> {
        let api: Api<PrivateLinkRoute> = env.api();
        let start = tokio::time::Instant::now();
        let mut lives: BTreeMap<String, RouteLife> = BTreeMap::new();
        let mut next = 0;
        let converge_by = start + plan.spread + plan.converge_within;
        let mut checkpoint = None;
        loop {
            while next < plan.routes {
                let at = start + plan.spread.mul_f64(next as f64 / plan.routes.max(1) as f64);
                if tokio::time::Instant::now() < at {
                    break;
                }
                apply_retrying(env, &self.route_manifest(next)).await?;
                lives.insert(
                    route_name(next),
                    RouteLife {
                        name: route_name(next),
                        uid: String::new(),
                        fate: format!("{:?}", RoutePlan::fate(next)),
                        applied: Timestamp::now(),
                        ready: None,
                        delete_requested: None,
                        gone: None,
                    },
                );
                next += 1;
            }
            let listed = api.list(&Default::default()).await;
            let Ok(listed) = listed else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let now = Timestamp::now();
            let present: BTreeMap<String, &PrivateLinkRoute> = listed
                .items
                .iter()
                .map(|r| (r.metadata.name.clone().unwrap_or_default(), r))
                .collect();
            for life in lives.values_mut() {
                observe_life(life, present.get(&life.name).copied(), now);
            }
            let all_applied = next == plan.routes;
            let kept_ready = lives
                .iter()
                .filter(|(name, _)| fate_of(name) == Fate::AtTheEnd)
                .all(|(_, l)| l.ready.is_some());
            let early_done = lives
                .iter()
                .filter(|(name, _)| fate_of(name) != Fate::AtTheEnd)
                .all(|(_, l)| l.gone.is_some());
            if all_applied && kept_ready && early_done && checkpoint.is_none() {
                checkpoint = Some(retry("the converged inventory", || self.inventory(true)).await?);
            }
            let mut to_delete = Vec::new();
            for (name, life) in &lives {
                if life.delete_requested.is_some() {
                    continue;
                }
                let due = match fate_of(name) {
                    Fate::WhileBuilding => now.duration_since(life.applied).as_secs_f64() > 3.0,
                    Fate::OnceReady => life.ready.is_some(),
                    Fate::AtTheEnd => checkpoint.is_some(),
                };
                if due {
                    to_delete.push(name.clone());
                }
            }
            for name in to_delete {
                let deleted = api.delete(&name, &DeleteParams::default()).await;
                let gone = matches!(&deleted, Err(kube::Error::Api(s)) if s.code == 404);
                if deleted.is_ok() || gone {
                    if let Some(life) = lives.get_mut(&name) {
                        life.delete_requested = Some(Timestamp::now());
                    }
                }
            }
            if all_applied && lives.values().all(|l| l.gone.is_some()) {
                return Ok(Driven {
                    lives: lives.into_values().collect(),
                    checkpoint,
                    late: None,
                });
            }
            let deadline = if checkpoint.is_some() {
                converge_by + plan.delete_within
            } else {
                converge_by
            };
            if tokio::time::Instant::now() > deadline {
                let stuck: Vec<String> = lives
                    .values()
                    .filter(|l| l.gone.is_none())
                    .map(|l| {
                        let status = present.get(&l.name).map(|r| ready_message(r));
                        format!("{} ({}): {}", l.name, l.fate, status.unwrap_or_default())
                    })
                    .collect();
                let late = format!(
                    "{} routes not done in time (converged inventory taken: {}): {}",
                    stuck.len(),
                    checkpoint.is_some(),
                    stuck.join("; ")
                );
                return Ok(Driven {
                    lives: lives.into_values().collect(),
                    checkpoint,
                    late: Some(late),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deletes every route of the test and the accounts, waiting for the routes to go.
    pub async fn teardown(&self, env: &crate::TestEnv) -> crate::Result<()> {
        let gone = "the routes to be gone";
        env.delete_all::<PrivateLinkRoute>(gone, Duration::from_secs(90))
            .await?;
        for name in &self.accounts {
            env.delete_cluster_object("AwsAccount", name).await;
        }
        Ok(())
    }
}

fn route_name(index: usize) -> String {
    format!("r-{index:04}")
}

fn fate_of(name: &str) -> Fate {
    let index = name
        .trim_start_matches("r-")
        .parse::<usize>()
        .unwrap_or_default();
    RoutePlan::fate(index)
}

/// Whether the route and every hop of it report Ready.
fn all_hops_ready(route: &PrivateLinkRoute) -> bool {
    let Some(status) = &route.status else {
        return false;
    };
    status.conditions.is_true("Ready")
        && Hop::ALL
            .iter()
            .all(|hop| status.conditions.is_true(hop.condition()))
}

fn ready_message(route: &PrivateLinkRoute) -> String {
    let status = route.status.clone().unwrap_or_default();
    let ready = status.conditions.condition("Ready");
    ready.map_or("no Ready condition".into(), |c| {
        format!("{}: {}", c.reason, c.message)
    })
}

/// Updates a route's life from one listing: its UID, when it was first seen Ready, when it
/// was first seen gone after its deletion was asked for.
fn observe_life(life: &mut RouteLife, route: Option<&PrivateLinkRoute>, now: Timestamp) {
    match route {
        Some(route) => {
            if life.uid.is_empty() {
                life.uid = route.metadata.uid.clone().unwrap_or_default();
            }
            if life.ready.is_none() && all_hops_ready(route) {
                life.ready = Some(now);
            }
        }
        None if life.delete_requested.is_some() && life.gone.is_none() => life.gone = Some(now),
        None => {}
    }
}

/// Judges the inventories: no duplicate ever, exactly one of each kind per route at
/// convergence, nothing of a route after it was gone.
fn judge(report: &mut RouteReport, samples: &[Inventory], checkpoint: Option<&Inventory>) {
    let mut duplicated: BTreeSet<(String, String)> = BTreeSet::new();
    let mut left: BTreeSet<(String, String)> = BTreeSet::new();
    let gone: BTreeMap<&str, (&str, Timestamp)> = report
        .lives
        .iter()
        .filter_map(|l| Some((l.uid.as_str(), (l.name.as_str(), l.gone?))))
        .collect();
    let names: BTreeMap<&str, &str> = report
        .lives
        .iter()
        .map(|l| (l.uid.as_str(), l.name.as_str()))
        .collect();
    for sample in samples {
        let Some(t0) = sample.t0 else { continue };
        for (uid, kinds) in &sample.counts {
            let name = names
                .get(uid.as_str())
                .copied()
                .unwrap_or("an unknown route");
            for (kind, count) in kinds {
                if *count > 1 && duplicated.insert((uid.clone(), kind.clone())) {
                    report
                        .failures
                        .push(format!("{name} ({uid}) had {count} of {kind} at {t0}"));
                }
            }
            if let Some((name, at)) = gone.get(uid.as_str()) {
                if t0 > *at && left.insert((uid.clone(), String::new())) {
                    report.failures.push(format!(
                        "{name} ({uid}) was gone at {at}, and at {t0} still had {kinds:?}"
                    ));
                }
            } else if !names.contains_key(uid.as_str()) && left.insert((uid.clone(), "?".into())) {
                report.failures.push(format!(
                    "resources of no route of this run: {uid} {kinds:?}"
                ));
            }
        }
    }
    report.duplicates = duplicated.len();
    report.leftovers = left.len();
    match checkpoint {
        None => report
            .failures
            .push("the routes never all converged at once".into()),
        Some(inventory) => judge_converged(report, inventory),
    }
}

/// At convergence every route kept to the end has exactly one of each kind, and its zone
/// carries its UID tag.
fn judge_converged(report: &mut RouteReport, inventory: &Inventory) {
    for life in &report.lives {
        if fate_of(&life.name) != Fate::AtTheEnd {
            continue;
        }
        let counts = inventory.counts.get(&life.uid).cloned().unwrap_or_default();
        for kind in KINDS {
            let count = counts.get(kind).copied().unwrap_or(0);
            if count != 1 {
                report.failures.push(format!(
                    "{} ({}) was Ready with {count} of {kind}",
                    life.name, life.uid
                ));
            }
        }
    }
    for zone in &inventory.untagged_zones {
        report.failures.push(format!(
            "a Ready route's hosted zone lacks its UID tag: {zone}"
        ));
    }
}
