//! Shared, batched observation of routes: what AWS holds for every route of an account, read
//! at most once per drift-check period per account and handed to each route's reconcile,
//! instead of one describe per resource per reconcile.
//!
//! Per account and side (provider or consumer) the snapshot holds an inventory read with
//! multi-resource describes (every load balancer, target group and endpoint service of the
//! provider; every interface endpoint and hosted zone of the consumer) plus the reads AWS only
//! offers per resource or per set of IDs ("details": listeners, by ARN in batches of 20;
//! targets per target group; principals per endpoint service; the record per zone and host;
//! the certificate, subnets and instances a route names). A route asks for the details its
//! status names; they are remembered, and the next refresh reads all of them for every route
//! in one pass, so a period costs a few calls per account plus one per target group, endpoint
//! service and zone.
//!
//! A snapshot only ever vouches that a route is exactly as its status recorded: every
//! resource found under the route's deterministic name or UID tag must carry the ARN or ID
//! status recorded. Anything else (a hop not recorded yet, another ARN under our name, a
//! resource gone, a snapshot older than the operator's own last write to the route) yields
//! no answer, and the caller reads the route directly, with the ownership checks of
//! [`super::observe`], before it plans any write. So a crash between a create and the status
//! write still never leads to a second resource, and a route being built is always planned
//! from fresh reads.
//!
//! Endpoint connections are not in the snapshot: the consumer side's endpoint state already
//! says `pendingAcceptance`, and any pending state sends the route to a direct read anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use super::error::AwsCallError;
use super::names::{RouteNames, UID_TAG};
use super::observe::{self, bare_zone_id, Clients, ObserveError};
use super::state::{
    EndpointService, HostedZone, Instance, Listener, LoadBalancer, Observed, Record, Subnet,
    Target, TargetGroup,
};
use crate::aws::AwsClients;
use crate::crd::{PrivateLinkRouteSpec, RouteHops};

/// The most load balancers or target groups ELB returns per page (it would return fewer).
const ELB_PAGE: i32 = 400;

/// How many listener ARNs one `DescribeListeners` names.
const LISTENER_BATCH: usize = 20;

/// One read AWS offers per resource or per set of IDs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Detail {
    Listener(String),
    Targets(String),
    Principals(String),
    Certificate(String),
    Subnets(Vec<String>),
    Instances(Vec<String>),
    Zone(String),
    Record { zone_id: String, host: String },
}

/// The answer to a [`Detail`]; `None` where AWS said the resource is not there.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    /// The listener and the ARN of its load balancer.
    Listener(Option<(String, Listener)>),
    Targets(Option<Vec<Target>>),
    Principals(Option<Vec<String>>),
    Certificate(Option<String>),
    Subnets(Vec<Subnet>),
    Instances(Vec<Instance>),
    Zone(Option<HostedZone>),
    Record(Option<Record>),
}

/// Which of a route's two accounts an inventory describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Provider,
    Consumer,
}

/// A hosted zone as `ListHostedZones` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
struct ZoneSummary {
    id: String,
    name: String,
    caller_reference: String,
    record_count: Option<i64>,
}

/// Account-wide listings, each one paginated call (or a few).
#[derive(Clone, Debug, Default)]
struct Inventory {
    balancers: HashMap<String, LoadBalancer>,
    /// By name; targets are a detail.
    target_groups: HashMap<String, TargetGroup>,
    /// Services in use with their tags; principals are a detail.
    services: Vec<(EndpointService, Vec<(String, String)>)>,
    endpoints: Vec<(super::state::Endpoint, Vec<(String, String)>)>,
    zones: Vec<ZoneSummary>,
}

/// One account and side.
#[derive(Default)]
struct Account {
    inventory: Option<(Instant, Arc<Inventory>)>,
    details: HashMap<Detail, (Instant, Value)>,
    /// Details routes asked for, and when they last did: the next refresh reads these.
    wanted: HashMap<Detail, Instant>,
}

/// What one account's snapshot says about one route.
struct Part {
    taken: Instant,
    inventory: Arc<Inventory>,
    details: HashMap<Detail, Value>,
}

/// A route as the shared snapshot shows it.
#[derive(Debug)]
pub struct Seen {
    pub observed: Observed,
    /// When the oldest read behind it started: the next check is due one period later.
    pub taken: Instant,
}

type Slot = Arc<Mutex<Account>>;

/// The snapshots of one operator, per account and side.
#[derive(Default)]
pub struct Snapshots {
    accounts: std::sync::Mutex<HashMap<(Side, String), Slot>>,
    /// When the operator last changed each route (by UID) in AWS.
    writes: std::sync::Mutex<HashMap<String, Instant>>,
}

impl Snapshots {
    fn slot(&self, side: Side, account: &str) -> Slot {
        match self.accounts.lock() {
            Ok(mut accounts) => accounts
                .entry((side, account.to_string()))
                .or_default()
                .clone(),
            // A poisoned map only means another thread panicked mid-insert; an empty slot is
            // a correct (if uncached) answer.
            Err(_) => Slot::default(),
        }
    }

    /// Records that the operator changed the route with UID `uid` in AWS just now, so no
    /// snapshot taken before stands for it.
    pub fn note_write(&self, uid: &str) {
        if let Ok(mut writes) = self.writes.lock() {
            writes.insert(uid.to_string(), Instant::now());
        }
    }

    /// Forgets a route that is gone.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut writes) = self.writes.lock() {
            writes.remove(uid);
        }
    }

    fn written_since(&self, uid: &str, taken: Instant) -> bool {
        self.writes
            .lock()
            .ok()
            .and_then(|writes| writes.get(uid).map(|at| *at >= taken))
            .unwrap_or(false)
    }

    /// The route as the snapshots of its two accounts (`AwsAccount` names) show it, each at
    /// most `max_age` old; `None` when the snapshot cannot vouch for it and the caller must
    /// read the route directly.
    pub async fn observe(
        &self,
        clients: &Clients,
        accounts: (&str, &str),
        spec: &PrivateLinkRouteSpec,
        names: &RouteNames,
        hops: Option<&RouteHops>,
        max_age: Duration,
    ) -> Result<Option<Seen>, ObserveError> {
        let Some(hops) = hops else {
            return Ok(None);
        };
        let Some((provider_wants, consumer_wants)) = wanted(spec, hops) else {
            return Ok(None);
        };
        let provider = self
            .read(
                Side::Provider,
                accounts.0,
                &clients.provider,
                &provider_wants,
                max_age,
            )
            .await?;
        let consumer = self
            .read(
                Side::Consumer,
                accounts.1,
                &clients.consumer,
                &consumer_wants,
                max_age,
            )
            .await?;
        let taken = provider.taken.min(consumer.taken);
        if self.written_since(&names.uid, taken) {
            return Ok(None);
        }
        let observed = assemble(spec, names, hops, &provider, &consumer);
        Ok(observed.map(|observed| Seen { observed, taken }))
    }

    /// Refreshes the account's snapshot if it is `max_age` old, then reads whatever of
    /// `wants` it lacks.
    async fn read(
        &self,
        side: Side,
        account: &str,
        aws: &AwsClients,
        wants: &[Detail],
        max_age: Duration,
    ) -> Result<Part, ObserveError> {
        let slot = self.slot(side, account);
        let mut entry = slot.lock().await;
        let inventory = match &entry.inventory {
            Some((at, inventory)) if at.elapsed() < max_age => inventory.clone(),
            previous => {
                let since = previous.as_ref().map(|(at, _)| *at);
                refresh(&mut entry, side, aws, since).await?
            }
        };
        let mut taken = entry
            .inventory
            .as_ref()
            .map_or_else(Instant::now, |(at, _)| *at);
        let now = Instant::now();
        let missing: Vec<Detail> = wants
            .iter()
            .filter(|want| {
                let cached = entry.details.get(*want);
                cached.is_none_or(|(at, _)| at.elapsed() >= max_age)
            })
            .cloned()
            .collect();
        // A route's two listeners are one call, like a refresh's.
        let fresh = read_listeners(aws, &missing).await?;
        for (want, value) in fresh {
            entry.details.insert(want, (now, value));
        }
        for want in missing.iter().filter(|w| !matches!(w, Detail::Listener(_))) {
            let started = Instant::now();
            let value = read_detail(aws, want).await?;
            entry.details.insert(want.clone(), (started, value));
        }
        let mut details = HashMap::new();
        for want in wants {
            entry.wanted.insert(want.clone(), now);
            if let Some((at, value)) = entry.details.get(want) {
                taken = taken.min(*at);
                details.insert(want.clone(), value.clone());
            }
        }
        Ok(Part {
            taken,
            inventory,
            details,
        })
    }
}

/// Reads the inventory of one side, then every detail some route asked for since the
/// previous refresh (`since`). A detail whose resource the new inventory no longer has is
/// dropped; one that fails to read is left for its route to read (and report) itself.
async fn refresh(
    entry: &mut Account,
    side: Side,
    aws: &AwsClients,
    since: Option<Instant>,
) -> Result<Arc<Inventory>, ObserveError> {
    let started = Instant::now();
    let inventory = Arc::new(match side {
        Side::Provider => provider_inventory(aws).await?,
        Side::Consumer => consumer_inventory(aws).await?,
    });
    entry
        .wanted
        .retain(|want, last| since.is_none_or(|at| *last >= at) && exists(&inventory, want));
    let wanted: Vec<Detail> = entry.wanted.keys().cloned().collect();
    let mut details = read_listeners(aws, &wanted).await.unwrap_or_default();
    details.extend(read_shared_zones(aws, &inventory, &wanted).await);
    let single = wanted
        .iter()
        .filter(|w| !matches!(w, Detail::Listener(_)) && !details.contains_key(*w));
    for want in single.collect::<Vec<_>>() {
        if let Ok(value) = read_detail(aws, want).await {
            details.insert(want.clone(), value);
        }
    }
    entry.details = details
        .into_iter()
        .map(|(want, value)| (want, (started, value)))
        .collect();
    entry.inventory = Some((started, inventory.clone()));
    Ok(inventory)
}

/// Record sets per page of `ListResourceRecordSets`.
const RECORDS_PER_PAGE: u64 = 300;

/// Whether listing a whole zone of `record_count` record sets takes fewer calls than one read
/// per host name, as when many routes share one zone.
fn whole_zone(hosts: usize, record_count: Option<i64>) -> bool {
    let Some(count) = record_count.and_then(|c| u64::try_from(c).ok()) else {
        return false;
    };
    count.max(1).div_ceil(RECORDS_PER_PAGE) < hosts as u64
}

/// The records of zones that several routes share, one listing per zone where that is
/// cheaper; a zone that fails to list is left to the per-host reads.
async fn read_shared_zones(
    aws: &AwsClients,
    inventory: &Inventory,
    wanted: &[Detail],
) -> HashMap<Detail, Value> {
    let mut hosts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for want in wanted {
        if let Detail::Record { zone_id, host } = want {
            hosts.entry(zone_id).or_default().push(host);
        }
    }
    let mut found = HashMap::new();
    for (zone_id, hosts) in hosts {
        let zone = inventory.zones.iter().find(|z| z.id == zone_id);
        if !whole_zone(hosts.len(), zone.and_then(|z| z.record_count)) {
            continue;
        }
        let Ok(sets) = list_zone(aws, zone_id).await else {
            continue;
        };
        for host in hosts {
            let want = Detail::Record {
                zone_id: zone_id.to_string(),
                host: host.to_string(),
            };
            found.insert(want, Value::Record(observe::record_in(&sets, host)));
        }
    }
    found
}

/// Every record set of a zone.
async fn list_zone(
    aws: &AwsClients,
    zone_id: &str,
) -> Result<Vec<aws_sdk_route53::types::ResourceRecordSet>, AwsCallError> {
    let mut sets = Vec::new();
    let mut start = None;
    loop {
        let mut call = aws
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id);
        if let Some((name, kind, identifier)) = start.take() {
            call = call
                .start_record_name(name)
                .start_record_type(kind)
                .set_start_record_identifier(identifier);
        }
        let out = call.send().await?;
        sets.extend(out.resource_record_sets().iter().cloned());
        match (out.next_record_name(), out.next_record_type()) {
            (Some(name), Some(kind)) if out.is_truncated() => {
                let identifier = out.next_record_identifier().map(str::to_string);
                start = Some((name.to_string(), kind.clone(), identifier));
            }
            _ => return Ok(sets),
        }
    }
}

/// Whether a detail's resource is still in the inventory, where the inventory lists it.
fn exists(inventory: &Inventory, want: &Detail) -> bool {
    match want {
        Detail::Targets(arn) => inventory.target_groups.values().any(|g| &g.arn == arn),
        Detail::Principals(id) => inventory.services.iter().any(|(s, _)| &s.id == id),
        _ => true,
    }
}

/// The details a route's snapshot view needs, per side; `None` when status has not recorded
/// every hop yet.
fn wanted(spec: &PrivateLinkRouteSpec, hops: &RouteHops) -> Option<(Vec<Detail>, Vec<Detail>)> {
    let provider = &spec.provider;
    let sorted = |ids: Vec<&String>| {
        let set: BTreeSet<String> = ids.into_iter().cloned().collect();
        set.into_iter().collect::<Vec<_>>()
    };
    let lb_subnets = sorted(
        provider
            .alb_subnet_ids
            .iter()
            .chain(&provider.nlb_subnet_ids)
            .collect(),
    );
    let provider_wants = vec![
        Detail::Certificate(provider.certificate_arn.clone()),
        Detail::Subnets(lb_subnets),
        Detail::Instances(sorted(provider.targets.instance_ids.iter().collect())),
        Detail::Listener(hops.alb_listener_arn.clone()?),
        Detail::Listener(hops.nlb_listener_arn.clone()?),
        Detail::Targets(hops.instance_target_group_arn.clone()?),
        Detail::Targets(hops.alb_target_group_arn.clone()?),
        Detail::Principals(hops.endpoint_service_id.clone()?),
    ];
    let zone_id = hops.hosted_zone_id.clone()?;
    let mut consumer_wants = vec![
        Detail::Subnets(sorted(spec.consumer.subnet_ids.iter().collect())),
        Detail::Record {
            zone_id: zone_id.clone(),
            host: spec.host_name.clone(),
        },
    ];
    if spec.consumer.hosted_zone.zone_id.is_some() {
        consumer_wants.push(Detail::Zone(zone_id));
    }
    Some((provider_wants, consumer_wants))
}

/// Builds the route's observation from the snapshots, if every resource found is the one
/// status recorded.
fn assemble(
    spec: &PrivateLinkRouteSpec,
    names: &RouteNames,
    hops: &RouteHops,
    provider: &Part,
    consumer: &Part,
) -> Option<Observed> {
    let mut observed = Observed {
        certificate_status: match provider
            .detail(&Detail::Certificate(spec.provider.certificate_arn.clone()))?
        {
            Value::Certificate(status) => status.clone(),
            _ => return None,
        },
        ..Observed::default()
    };
    assemble_provider(spec, names, hops, provider, &mut observed)?;
    assemble_consumer(spec, names, hops, consumer, &mut observed)?;
    observed.recorded_alb_listener = hops.alb_listener_arn.clone();
    observed.recorded_nlb_listener = hops.nlb_listener_arn.clone();
    observed.recorded_endpoint_dns = hops.endpoint_dns_name.clone();
    Some(observed)
}

impl Part {
    fn detail(&self, want: &Detail) -> Option<&Value> {
        self.details.get(want)
    }

    fn subnets(&self, ids: Vec<String>) -> Option<Vec<Subnet>> {
        let set: BTreeSet<String> = ids.into_iter().collect();
        match self.detail(&Detail::Subnets(set.into_iter().collect()))? {
            Value::Subnets(found) => Some(found.clone()),
            _ => None,
        }
    }

    fn balancer(&self, name: &str, recorded: Option<&String>) -> Option<LoadBalancer> {
        let found = self.inventory.balancers.get(name)?;
        (Some(&found.arn) == recorded).then(|| found.clone())
    }

    /// The recorded listener, if it is still on the load balancer `lb_arn`.
    fn listener(&self, recorded: Option<&String>, lb_arn: &str) -> Option<Listener> {
        match self.detail(&Detail::Listener(recorded?.clone()))? {
            Value::Listener(Some((on, listener))) if on == lb_arn => Some(listener.clone()),
            _ => None,
        }
    }

    fn target_group(&self, name: &str, recorded: Option<&String>) -> Option<TargetGroup> {
        let found = self.inventory.target_groups.get(name)?;
        if Some(&found.arn) != recorded {
            return None;
        }
        match self.detail(&Detail::Targets(found.arn.clone()))? {
            Value::Targets(Some(targets)) => Some(TargetGroup {
                targets: targets.clone(),
                ..found.clone()
            }),
            _ => None,
        }
    }
}

fn owned(names: &RouteNames, tags: &[(String, String)]) -> bool {
    names.owns(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn assemble_provider(
    spec: &PrivateLinkRouteSpec,
    names: &RouteNames,
    hops: &RouteHops,
    part: &Part,
    observed: &mut Observed,
) -> Option<()> {
    let provider = &spec.provider;
    let lb_subnets = provider
        .alb_subnet_ids
        .iter()
        .chain(&provider.nlb_subnet_ids);
    observed.provider_subnets = part.subnets(lb_subnets.cloned().collect())?;
    let mut instance_ids = provider.targets.instance_ids.clone();
    instance_ids.sort();
    instance_ids.dedup();
    observed.instances = match part.detail(&Detail::Instances(instance_ids))? {
        Value::Instances(found) => found.clone(),
        _ => return None,
    };
    let alb = part.balancer(&names.alb(), hops.alb_arn.as_ref())?;
    let nlb = part.balancer(&names.nlb(), hops.nlb_arn.as_ref())?;
    observed.alb_listeners = vec![part.listener(hops.alb_listener_arn.as_ref(), &alb.arn)?];
    observed.nlb_listeners = vec![part.listener(hops.nlb_listener_arn.as_ref(), &nlb.arn)?];
    observed.alb = Some(alb);
    observed.nlb = Some(nlb);
    let itg = names.instance_target_group();
    observed.instance_target_group =
        Some(part.target_group(&itg, hops.instance_target_group_arn.as_ref())?);
    let atg = names.alb_target_group();
    observed.alb_target_group = Some(part.target_group(&atg, hops.alb_target_group_arn.as_ref())?);
    let (service, _) = part
        .inventory
        .services
        .iter()
        .find(|(_, tags)| owned(names, tags))?;
    if Some(&service.id) != hops.endpoint_service_id.as_ref() {
        return None;
    }
    let Value::Principals(Some(principals)) =
        part.detail(&Detail::Principals(service.id.clone()))?
    else {
        return None;
    };
    observed.endpoint_service = Some(EndpointService {
        principals: principals.clone(),
        ..service.clone()
    });
    Some(())
}

fn assemble_consumer(
    spec: &PrivateLinkRouteSpec,
    names: &RouteNames,
    hops: &RouteHops,
    part: &Part,
    observed: &mut Observed,
) -> Option<()> {
    let consumer = &spec.consumer;
    observed.consumer_subnets = part.subnets(consumer.subnet_ids.clone())?;
    let (endpoint, _) = part
        .inventory
        .endpoints
        .iter()
        .find(|(_, tags)| owned(names, tags))?;
    if Some(&endpoint.id) != hops.endpoint_id.as_ref() {
        return None;
    }
    observed.endpoint = Some(endpoint.clone());
    let recorded_zone = hops.hosted_zone_id.clone()?;
    let zone = if consumer.hosted_zone.zone_id.is_some() {
        match part.detail(&Detail::Zone(recorded_zone.clone()))? {
            Value::Zone(Some(zone)) => zone.clone(),
            _ => return None,
        }
    } else {
        let reference = names.zone_caller_reference();
        let found = part
            .inventory
            .zones
            .iter()
            .find(|z| z.caller_reference == reference)?;
        HostedZone {
            id: found.id.clone(),
            name: found.name.clone(),
            owned: true,
            vpc_ids: vec![consumer.vpc_id.clone()],
        }
    };
    if zone.id != recorded_zone {
        return None;
    }
    let record = Detail::Record {
        zone_id: zone.id.clone(),
        host: spec.host_name.clone(),
    };
    observed.record = match part.detail(&record)? {
        Value::Record(record) => record.clone(),
        _ => return None,
    };
    observed.hosted_zone = Some(zone);
    Some(())
}

/// Every load balancer, target group and endpoint service of a provider account.
async fn provider_inventory(aws: &AwsClients) -> Result<Inventory, ObserveError> {
    let mut inventory = Inventory::default();
    let balancers = aws
        .elbv2
        .describe_load_balancers()
        .page_size(ELB_PAGE)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ObserveError::DescribeLoadBalancers("(all)".into(), e.into()))?;
    for lb in &balancers {
        let name = lb.load_balancer_name().unwrap_or_default().to_string();
        inventory
            .balancers
            .insert(name, observe::load_balancer_of(lb));
    }
    let groups = aws
        .elbv2
        .describe_target_groups()
        .page_size(ELB_PAGE)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ObserveError::DescribeTargetGroups("(all)".into(), e.into()))?;
    for group in &groups {
        let name = group.target_group_name().unwrap_or_default().to_string();
        inventory
            .target_groups
            .insert(name, observe::target_group_of(group));
    }
    inventory.services = endpoint_services(aws).await?;
    Ok(inventory)
}

/// Only resources some route owns, where EC2 filters by tag key (AWS does for endpoints and
/// endpoint services; the emulator only for endpoints). Ownership by UID is still checked per
/// route, so a listing the filter does not narrow is only longer.
fn owned_by_a_route() -> aws_sdk_ec2::types::Filter {
    observe::filter("tag-key", &[UID_TAG.to_string()])
}

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            let key = t.key().unwrap_or_default().to_string();
            (key, t.value().unwrap_or_default().to_string())
        })
        .collect()
}

async fn endpoint_services(
    aws: &AwsClients,
) -> Result<Vec<(EndpointService, Vec<(String, String)>)>, ObserveError> {
    let services = aws
        .ec2
        .describe_vpc_endpoint_service_configurations()
        .filters(owned_by_a_route())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ObserveError::DescribeEndpointServices(e.into()))?;
    let in_use = services.iter().filter(|s| observe::service_in_use(s));
    Ok(in_use
        .map(|s| (observe::endpoint_service_of(s), ec2_tags(s.tags())))
        .collect())
}

/// Every interface endpoint and hosted zone of a consumer account.
async fn consumer_inventory(aws: &AwsClients) -> Result<Inventory, ObserveError> {
    let endpoints = aws
        .ec2
        .describe_vpc_endpoints()
        .filters(owned_by_a_route())
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ObserveError::DescribeEndpoints(e.into()))?;
    let zones = aws
        .route53
        .list_hosted_zones()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ObserveError::ListHostedZones(e.into()))?;
    let in_use = endpoints.iter().filter(|e| observe::endpoint_in_use(e));
    let zones = zones.iter().map(|z| ZoneSummary {
        id: bare_zone_id(z.id()),
        name: z.name().to_string(),
        caller_reference: z.caller_reference().to_string(),
        record_count: z.resource_record_set_count(),
    });
    Ok(Inventory {
        endpoints: in_use
            .map(|e| (observe::endpoint_of(e), ec2_tags(e.tags())))
            .collect(),
        zones: zones.collect(),
        ..Inventory::default()
    })
}

/// Reads one detail.
async fn read_detail(aws: &AwsClients, want: &Detail) -> Result<Value, ObserveError> {
    Ok(match want {
        Detail::Listener(_) => {
            let mut found = read_listeners(aws, std::slice::from_ref(want)).await?;
            found.remove(want).unwrap_or(Value::Listener(None))
        }
        Detail::Targets(arn) => Value::Targets(none_if_gone(observe::targets(aws, arn).await)?),
        Detail::Principals(id) => {
            Value::Principals(none_if_gone(observe::principals(aws, id).await)?)
        }
        Detail::Certificate(arn) => {
            Value::Certificate(observe::certificate_status(aws, arn).await?)
        }
        Detail::Subnets(ids) => Value::Subnets(observe::subnets(aws, ids).await?),
        Detail::Instances(ids) => Value::Instances(observe::instances(aws, ids).await?),
        Detail::Zone(id) => Value::Zone(observe::existing_zone(aws, id).await?),
        Detail::Record { zone_id, host } => {
            let record = observe::record(aws, zone_id, host).await;
            Value::Record(none_if_gone(record)?.flatten())
        }
    })
}

/// Turns "not found" from a per-resource read into `None`: the resource went away after the
/// inventory was read.
fn none_if_gone<T>(result: Result<T, ObserveError>) -> Result<Option<T>, ObserveError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(
            ObserveError::DescribeTargetHealth(call)
            | ObserveError::DescribeServicePermissions(call)
            | ObserveError::ListRecords(call),
        ) if call.is_not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

/// Reads every listener among `wanted`, `LISTENER_BATCH` ARNs per call. AWS fails a whole
/// call when one ARN is gone (the emulator leaves it out instead), so a failed batch is read
/// again one ARN at a time.
async fn read_listeners(
    aws: &AwsClients,
    wanted: &[Detail],
) -> Result<HashMap<Detail, Value>, ObserveError> {
    let arns: Vec<&String> = wanted
        .iter()
        .filter_map(|w| match w {
            Detail::Listener(arn) => Some(arn),
            _ => None,
        })
        .collect();
    let mut found: BTreeMap<String, (String, Listener)> = BTreeMap::new();
    for batch in arns.chunks(LISTENER_BATCH) {
        match describe_listeners(aws, batch).await {
            Ok(listeners) => found.extend(listeners),
            Err(err) if err.is_not_found() && batch.len() > 1 => {
                for arn in batch {
                    match describe_listeners(aws, &[*arn]).await {
                        Ok(listeners) => found.extend(listeners),
                        Err(err) if err.is_not_found() => {}
                        Err(err) => return Err(ObserveError::DescribeListeners(err)),
                    }
                }
            }
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(ObserveError::DescribeListeners(err)),
        }
    }
    Ok(arns
        .into_iter()
        .map(|arn| {
            let value = Value::Listener(found.get(arn).cloned());
            (Detail::Listener(arn.clone()), value)
        })
        .collect())
}

/// Listeners by ARN, with the ARN of each one's load balancer.
async fn describe_listeners(
    aws: &AwsClients,
    arns: &[&String],
) -> Result<Vec<(String, (String, Listener))>, AwsCallError> {
    let out = aws
        .elbv2
        .describe_listeners()
        .set_listener_arns(Some(arns.iter().map(|a| a.to_string()).collect()))
        .send()
        .await?;
    Ok(out
        .listeners()
        .iter()
        .map(|l| {
            let listener = observe::listener_of(l);
            let lb_arn = l.load_balancer_arn().unwrap_or_default().to_string();
            (listener.arn.clone(), (lb_arn, listener))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::plan::plan;
    use super::super::tests::{converged, desired, spec};
    use super::*;
    use crate::crd::PrivateLinkRouteSpec;

    fn names() -> RouteNames {
        RouteNames::new("prod", "admin-console", "uid-1")
    }

    fn tags(uid: &str) -> Vec<(String, String)> {
        vec![(UID_TAG.to_string(), uid.to_string())]
    }

    /// Hops as status records them for `observed`.
    fn hops_of(spec: &PrivateLinkRouteSpec, observed: &Observed) -> RouteHops {
        super::super::status::hops(spec, observed)
    }

    /// The two snapshots an account pair would hold for a route that is as `observed` says.
    fn snapshots_of(spec: &PrivateLinkRouteSpec, observed: &Observed) -> (Part, Part) {
        let names = names();
        let (provider_wants, consumer_wants) =
            wanted(spec, &hops_of(spec, observed)).unwrap_or_default();
        let at = Instant::now();
        let mut inventory = Inventory::default();
        for (name, lb) in [(names.alb(), &observed.alb), (names.nlb(), &observed.nlb)] {
            if let Some(lb) = lb {
                inventory.balancers.insert(name, lb.clone());
            }
        }
        let groups = [
            (
                names.instance_target_group(),
                &observed.instance_target_group,
            ),
            (names.alb_target_group(), &observed.alb_target_group),
        ];
        for (name, group) in groups {
            if let Some(group) = group {
                let bare = TargetGroup {
                    targets: Vec::new(),
                    ..group.clone()
                };
                inventory.target_groups.insert(name, bare);
            }
        }
        if let Some(service) = &observed.endpoint_service {
            let bare = EndpointService {
                principals: Vec::new(),
                connections: Vec::new(),
                ..service.clone()
            };
            inventory.services.push((bare, tags(&names.uid)));
        }
        let mut details = HashMap::new();
        for want in &provider_wants {
            let value = match want {
                Detail::Certificate(_) => Value::Certificate(observed.certificate_status.clone()),
                Detail::Subnets(_) => Value::Subnets(observed.provider_subnets.clone()),
                Detail::Instances(_) => Value::Instances(observed.instances.clone()),
                Detail::Listener(arn) => {
                    let on = |lb: &Option<LoadBalancer>, listeners: &[Listener]| {
                        let lb_arn = lb.as_ref().map(|l| l.arn.clone()).unwrap_or_default();
                        let found = listeners.iter().find(|l| &l.arn == arn);
                        found.map(|l| (lb_arn, l.clone()))
                    };
                    let found = on(&observed.alb, &observed.alb_listeners)
                        .or_else(|| on(&observed.nlb, &observed.nlb_listeners));
                    Value::Listener(found)
                }
                Detail::Targets(arn) => {
                    let groups = [&observed.instance_target_group, &observed.alb_target_group];
                    let found = groups.into_iter().flatten().find(|g| &g.arn == arn);
                    Value::Targets(found.map(|g| g.targets.clone()))
                }
                Detail::Principals(_) => Value::Principals(
                    observed
                        .endpoint_service
                        .as_ref()
                        .map(|s| s.principals.clone()),
                ),
                _ => continue,
            };
            details.insert(want.clone(), value);
        }
        let provider = Part {
            taken: at,
            inventory: Arc::new(inventory),
            details,
        };
        let mut inventory = Inventory::default();
        if let Some(endpoint) = &observed.endpoint {
            inventory
                .endpoints
                .push((endpoint.clone(), tags(&names.uid)));
        }
        if let Some(zone) = &observed.hosted_zone {
            inventory.zones.push(ZoneSummary {
                id: zone.id.clone(),
                name: zone.name.clone(),
                caller_reference: names.zone_caller_reference(),
                record_count: Some(3),
            });
        }
        let mut details = HashMap::new();
        for want in &consumer_wants {
            let value = match want {
                Detail::Subnets(_) => Value::Subnets(observed.consumer_subnets.clone()),
                Detail::Record { .. } => Value::Record(observed.record.clone()),
                Detail::Zone(_) => Value::Zone(observed.hosted_zone.clone()),
                _ => continue,
            };
            details.insert(want.clone(), value);
        }
        let consumer = Part {
            taken: at,
            inventory: Arc::new(inventory),
            details,
        };
        (provider, consumer)
    }

    fn view(spec: &PrivateLinkRouteSpec, recorded: &Observed, now: &Observed) -> Option<Observed> {
        let hops = hops_of(spec, recorded);
        let (provider, consumer) = snapshots_of(spec, now);
        assemble(spec, &names(), &hops, &provider, &consumer)
    }

    /// What a direct read would give, less what the snapshot leaves out (connections).
    fn without_connections(mut observed: Observed) -> Observed {
        if let Some(service) = observed.endpoint_service.as_mut() {
            service.connections.clear();
        }
        observed
    }

    fn recorded(spec: &PrivateLinkRouteSpec) -> Observed {
        let hops = hops_of(spec, &converged());
        Observed {
            recorded_alb_listener: hops.alb_listener_arn,
            recorded_nlb_listener: hops.nlb_listener_arn,
            recorded_endpoint_dns: hops.endpoint_dns_name,
            ..converged()
        }
    }

    #[test]
    fn a_route_as_recorded_is_seen_as_a_direct_read_sees_it_and_is_ready() {
        let spec = spec();
        let seen = view(&spec, &converged(), &converged());
        assert_eq!(seen, Some(without_connections(recorded(&spec))));
        let plan = plan(&desired(&spec), &seen.unwrap_or_default());
        assert!(plan.ready(), "{plan:?}");
    }

    #[test]
    fn drift_in_per_resource_details_reaches_the_planner() {
        let spec = spec();
        let mut drifted = converged();
        if let Some(group) = drifted.instance_target_group.as_mut() {
            group.targets.remove(0);
        }
        if let Some(service) = drifted.endpoint_service.as_mut() {
            service.principals = vec!["arn:aws:iam::123456789012:root".into()];
        }
        if let Some(record) = drifted.record.as_mut() {
            record.values = vec!["elsewhere.example.com".into()];
        }
        let seen = view(&spec, &converged(), &drifted).unwrap_or_default();
        let plan = plan(&desired(&spec), &seen);
        let hops: BTreeSet<_> = plan.actions.iter().map(|a| a.hop()).collect();
        assert_eq!(
            hops.len(),
            3,
            "targets, principals and record: {:?}",
            plan.actions
        );
        assert!(!plan.ready());
    }

    #[test]
    fn anything_but_the_recorded_resources_sends_the_route_to_a_direct_read() {
        let spec = spec();
        let cases: Vec<(&str, Change)> = vec![
            ("ALB gone", Box::new(|o| o.alb = None)),
            (
                "another ALB under our name",
                Box::new(|o| {
                    o.alb = Some(LoadBalancer {
                        arn: "arn:other-alb".into(),
                        ..o.alb.clone().unwrap_or_default()
                    })
                }),
            ),
            (
                "ALB listener deleted",
                Box::new(|o| o.alb_listeners.clear()),
            ),
            (
                "NLB listener recorded but on another balancer",
                Box::new(|o| {
                    o.nlb = Some(LoadBalancer {
                        arn: "arn:other-nlb".into(),
                        ..o.nlb.clone().unwrap_or_default()
                    })
                }),
            ),
            (
                "target group gone",
                Box::new(|o| o.instance_target_group = None),
            ),
            (
                "endpoint service gone",
                Box::new(|o| o.endpoint_service = None),
            ),
            ("endpoint gone", Box::new(|o| o.endpoint = None)),
            ("zone gone", Box::new(|o| o.hosted_zone = None)),
        ];
        for (case, change) in cases {
            let mut now = converged();
            change(&mut now);
            assert_eq!(view(&spec, &converged(), &now), None, "{case}");
        }
    }

    #[test]
    fn a_route_without_every_hop_recorded_is_not_taken_from_the_snapshot() {
        let spec = spec();
        let mut hops = hops_of(&spec, &converged());
        assert!(wanted(&spec, &hops).is_some());
        hops.endpoint_service_id = None;
        assert!(wanted(&spec, &hops).is_none());
        assert!(wanted(&spec, &RouteHops::default()).is_none());
    }

    #[test]
    fn a_snapshot_older_than_the_operators_own_write_does_not_stand() {
        let snapshots = Snapshots::default();
        let before = Instant::now();
        assert!(!snapshots.written_since("uid-1", before));
        snapshots.note_write("uid-1");
        assert!(snapshots.written_since("uid-1", before));
        assert!(!snapshots.written_since("uid-2", before));
        snapshots.forget("uid-1");
        assert!(!snapshots.written_since("uid-1", before));
    }

    #[test]
    fn details_of_resources_gone_from_the_inventory_are_no_longer_read() {
        let spec = spec();
        let (provider, _) = snapshots_of(&spec, &converged());
        assert!(exists(
            &provider.inventory,
            &Detail::Targets(ITG_ARN.into())
        ));
        assert!(!exists(
            &provider.inventory,
            &Detail::Targets("arn:gone".into())
        ));
        assert!(exists(
            &provider.inventory,
            &Detail::Principals("vpce-svc-1".into())
        ));
        assert!(!exists(
            &provider.inventory,
            &Detail::Principals("vpce-svc-gone".into())
        ));
    }

    #[test]
    fn a_zone_is_listed_whole_only_when_that_takes_fewer_calls_than_its_hosts() {
        assert!(!whole_zone(1, Some(3)), "one host: one read of its own");
        assert!(
            whole_zone(2, Some(3)),
            "two hosts in a small zone: one listing"
        );
        assert!(
            !whole_zone(3, Some(900)),
            "three pages for three hosts: no gain"
        );
        assert!(whole_zone(4, Some(900)));
        assert!(!whole_zone(50, None), "unknown size: per host");
    }

    const ITG_ARN: &str = "arn:itg";

    /// A change to what AWS holds, for a table of cases.
    type Change = Box<dyn Fn(&mut Observed)>;
}
