//! The route planner: desired spec plus observed AWS state in, ordered actions and each hop's
//! readiness out. Pure: no client, no clock, so every drift case is a table test.
//!
//! The order is the path's dependency order, provider side first: instance target group, ALB,
//! its HTTPS listener, the `alb` target group with the ALB registered, NLB, its TCP listener,
//! endpoint service with principals, consumer endpoint, connection acceptance, hosted zone,
//! record. Cleanup runs the reverse. A problem AWS cannot fix (a certificate that is not
//! issued, subnets in one zone, a VPC mismatch) blocks every write, so that a bad route never
//! leaves half a path behind.

use std::collections::BTreeSet;

use super::action::{EndpointChanges, Hop, RouteAction};
use super::state::{Listener, Observed, Record};
use crate::crd::{PrivateLinkRouteSpec, RecordType, TargetProtocol};

/// What the route should look like, with references already resolved.
#[derive(Clone, Debug)]
pub struct Desired<'a> {
    pub spec: &'a PrivateLinkRouteSpec,
    /// Allowed principals: the spec's, or the consumer account's root.
    pub principals: Vec<String>,
}

/// Why a hop cannot become ready.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub hop: Hop,
    pub reason: &'static str,
    pub message: String,
}

/// Readiness of one hop.
#[derive(Clone, Debug, PartialEq)]
pub struct HopState {
    pub hop: Hop,
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub actions: Vec<RouteAction>,
    /// A problem that blocks every write; `actions` is then empty.
    pub problem: Option<Problem>,
    pub hops: Vec<HopState>,
}

impl Plan {
    /// Whether every hop is ready and nothing is left to do.
    pub fn ready(&self) -> bool {
        self.actions.is_empty() && self.hops.iter().all(|h| h.ready)
    }
}

/// Plans the apply half: what to create or correct, in order.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    if let Some(problem) = preflight(desired, observed) {
        let hops = hop_states(desired, observed, &[], Some(&problem));
        return Plan {
            actions: Vec::new(),
            problem: Some(problem),
            hops,
        };
    }
    let mut actions = Vec::new();
    plan_targets(desired, observed, &mut actions);
    plan_alb(desired, observed, &mut actions);
    plan_nlb(desired, observed, &mut actions);
    plan_endpoint_service(desired, observed, &mut actions);
    plan_endpoint(desired, observed, &mut actions);
    plan_dns(desired, observed, &mut actions);
    let hops = hop_states(desired, observed, &actions, None);
    Plan {
        actions,
        problem: None,
        hops,
    }
}

fn problem(hop: Hop, reason: &'static str, message: String) -> Option<Problem> {
    Some(Problem {
        hop,
        reason,
        message,
    })
}

/// Checks AWS facts the schema cannot: subnets, zones, VPCs, the certificate, the zone.
fn preflight(desired: &Desired, observed: &Observed) -> Option<Problem> {
    let provider = &desired.spec.provider;
    let consumer = &desired.spec.consumer;
    let wanted = provider
        .alb_subnet_ids
        .iter()
        .chain(&provider.nlb_subnet_ids);
    let lb_subnets = check_subnets(wanted, &observed.provider_subnets, &provider.vpc_id);
    if let Some((reason, message)) = lb_subnets {
        return problem(Hop::LoadBalancer, reason, message);
    }
    let zones: BTreeSet<&str> = observed
        .provider_subnets
        .iter()
        .filter(|s| provider.alb_subnet_ids.contains(&s.id))
        .map(|s| s.zone.as_str())
        .collect();
    if zones.len() < 2 {
        let message = format!(
            "ALB subnets are all in {}; an ALB needs two zones",
            join(zones)
        );
        return problem(Hop::LoadBalancer, "SubnetsInOneZone", message);
    }
    let ep_subnets = check_subnets(
        &consumer.subnet_ids,
        &observed.consumer_subnets,
        &consumer.vpc_id,
    );
    if let Some((reason, message)) = ep_subnets {
        return problem(Hop::Endpoint, reason, message);
    }
    if let Some(found) = preflight_certificate(observed) {
        return Some(found);
    }
    if let Some(other) = observed
        .instances
        .iter()
        .find(|i| i.vpc_id != provider.vpc_id)
    {
        let message = format!(
            "instance {} is in {}, not {}",
            other.id, other.vpc_id, provider.vpc_id
        );
        return problem(Hop::Targets, "VpcMismatch", message);
    }
    preflight_zone(desired, observed)
}

fn check_subnets<'a>(
    wanted: impl IntoIterator<Item = &'a String>,
    found: &[super::state::Subnet],
    vpc_id: &str,
) -> Option<(&'static str, String)> {
    for id in wanted {
        match found.iter().find(|s| &s.id == id) {
            None => return Some(("SubnetNotFound", format!("subnet {id} does not exist"))),
            Some(s) if s.vpc_id != vpc_id => {
                let message = format!("subnet {id} is in {}, not {vpc_id}", s.vpc_id);
                return Some(("VpcMismatch", message));
            }
            Some(_) => {}
        }
    }
    None
}

fn preflight_certificate(observed: &Observed) -> Option<Problem> {
    match observed.certificate_status.as_deref() {
        None => problem(
            Hop::LoadBalancer,
            "CertificateNotFound",
            "the certificate does not exist in the provider account's region".into(),
        ),
        Some("ISSUED") => None,
        Some(other) => problem(
            Hop::LoadBalancer,
            "CertificateNotIssued",
            format!("the certificate is {other}; the HTTPS listener needs an ISSUED one"),
        ),
    }
}

fn preflight_zone(desired: &Desired, observed: &Observed) -> Option<Problem> {
    let consumer = &desired.spec.consumer;
    let zone_id = consumer.hosted_zone.zone_id.as_ref()?;
    match &observed.hosted_zone {
        None => problem(
            Hop::Dns,
            "HostedZoneNotFound",
            format!("hosted zone {zone_id} not found"),
        ),
        Some(zone) if !zone.vpc_ids.contains(&consumer.vpc_id) => problem(
            Hop::Dns,
            "VpcMismatch",
            format!(
                "hosted zone {zone_id} is not associated with {}",
                consumer.vpc_id
            ),
        ),
        Some(_) => None,
    }
}

fn plan_targets(desired: &Desired, observed: &Observed, actions: &mut Vec<RouteAction>) {
    let targets = &desired.spec.provider.targets;
    let existing: Vec<String> = targets
        .instance_ids
        .iter()
        .filter(|id| observed.instances.iter().any(|i| &i.id == *id))
        .cloned()
        .collect();
    let Some(group) = &observed.instance_target_group else {
        actions.push(RouteAction::CreateInstanceTargetGroup);
        if !existing.is_empty() {
            actions.push(RouteAction::RegisterTargets {
                instance_ids: existing,
            });
        }
        return;
    };
    let changes = health_check_changes(desired, &group.health_check);
    if !changes.is_empty() {
        actions.push(RouteAction::ModifyHealthCheck { changes });
    }
    let registered = |id: &String| {
        group
            .targets
            .iter()
            .any(|t| &t.id == id && t.port == targets.port)
    };
    let missing: Vec<String> = existing
        .iter()
        .filter(|id| !registered(id))
        .cloned()
        .collect();
    if !missing.is_empty() {
        actions.push(RouteAction::RegisterTargets {
            instance_ids: missing,
        });
    }
    let unknown: Vec<(String, i32)> = group
        .targets
        .iter()
        .filter(|t| !existing.contains(&t.id) || t.port != targets.port)
        .map(|t| (t.id.clone(), t.port))
        .collect();
    if !unknown.is_empty() {
        actions.push(RouteAction::DeregisterTargets { targets: unknown });
    }
}

/// The protocol ELB spells for a target protocol.
pub fn target_protocol(protocol: TargetProtocol) -> &'static str {
    match protocol {
        TargetProtocol::Https => "HTTPS",
        TargetProtocol::Http => "HTTP",
    }
}

fn health_check_changes(
    desired: &Desired,
    seen: &super::state::HealthCheckSettings,
) -> Vec<String> {
    let targets = &desired.spec.provider.targets;
    let want = &targets.health_check;
    let mut changes = Vec::new();
    let protocol = target_protocol(targets.protocol);
    diff(&mut changes, "protocol", seen.protocol.as_str(), protocol);
    diff(&mut changes, "path", &seen.path, &want.path);
    diff(
        &mut changes,
        "interval",
        &seen.interval_seconds,
        &want.interval_seconds,
    );
    diff(
        &mut changes,
        "healthy threshold",
        &seen.healthy_threshold,
        &want.healthy_threshold,
    );
    let unhealthy = &want.unhealthy_threshold;
    diff(
        &mut changes,
        "unhealthy threshold",
        &seen.unhealthy_threshold,
        unhealthy,
    );
    diff(&mut changes, "matcher", &seen.matcher, &want.matcher);
    changes
}

fn diff<T: PartialEq + std::fmt::Display + ?Sized>(
    changes: &mut Vec<String>,
    what: &str,
    seen: &T,
    want: &T,
) {
    if seen != want {
        changes.push(format!("{what} {seen} -> {want}"));
    }
}

/// The listener this route manages on a load balancer: the one status recorded, else the one
/// on the route's port, else the only one there is.
fn our_listener<'a>(
    listeners: &'a [Listener],
    recorded: Option<&String>,
    port: i32,
) -> Option<&'a Listener> {
    listeners
        .iter()
        .find(|l| Some(&l.arn) == recorded)
        .or_else(|| listeners.iter().find(|l| l.port == port))
        .or_else(|| listeners.first())
}

fn plan_alb(desired: &Desired, observed: &Observed, actions: &mut Vec<RouteAction>) {
    let spec = desired.spec;
    if observed.alb.is_none() {
        actions.push(RouteAction::CreateAlb);
    }
    let recorded = observed.recorded_alb_listener.as_ref();
    match our_listener(&observed.alb_listeners, recorded, spec.port) {
        None => actions.push(RouteAction::CreateAlbListener),
        Some(listener) => {
            let forward = observed
                .instance_target_group
                .as_ref()
                .map(|g| g.arn.as_str());
            let changes = alb_listener_changes(desired, listener, forward);
            if !changes.is_empty() {
                let listener_arn = listener.arn.clone();
                actions.push(RouteAction::ModifyAlbListener {
                    listener_arn,
                    changes,
                });
            }
        }
    }
    let Some(group) = &observed.alb_target_group else {
        actions.push(RouteAction::CreateAlbTargetGroup);
        actions.push(RouteAction::RegisterAlb);
        return;
    };
    let alb_arn = observed.alb.as_ref().map(|a| a.arn.as_str());
    let registered = group.targets.iter().any(|t| Some(t.id.as_str()) == alb_arn);
    if !registered {
        actions.push(RouteAction::RegisterAlb);
    }
}

fn alb_listener_changes(desired: &Desired, seen: &Listener, forward: Option<&str>) -> Vec<String> {
    let provider = &desired.spec.provider;
    let mut changes = Vec::new();
    diff(&mut changes, "port", &seen.port, &desired.spec.port);
    diff(&mut changes, "protocol", seen.protocol.as_str(), "HTTPS");
    if seen.certificate_arns != [provider.certificate_arn.clone()] {
        let seen_certs = seen.certificate_arns.join(",");
        changes.push(format!(
            "certificate {seen_certs} -> {}",
            provider.certificate_arn
        ));
    }
    if let Some(policy) = &provider.ssl_policy {
        diff(
            &mut changes,
            "ssl policy",
            seen.ssl_policy.as_deref().unwrap_or("none"),
            policy,
        );
    }
    forward_change(&mut changes, seen, forward);
    changes
}

fn forward_change(changes: &mut Vec<String>, seen: &Listener, forward: Option<&str>) {
    let Some(group) = forward else {
        return;
    };
    if seen.forward_to != [group.to_string()] {
        let seen_groups = seen.forward_to.join(",");
        changes.push(format!(
            "default action forwards to [{seen_groups}] -> [{group}]"
        ));
    }
}

fn plan_nlb(desired: &Desired, observed: &Observed, actions: &mut Vec<RouteAction>) {
    let port = desired.spec.port;
    if observed.nlb.is_none() {
        actions.push(RouteAction::CreateNlb);
    }
    let recorded = observed.recorded_nlb_listener.as_ref();
    let Some(listener) = our_listener(&observed.nlb_listeners, recorded, port) else {
        actions.push(RouteAction::CreateNlbListener);
        return;
    };
    let mut changes = Vec::new();
    diff(&mut changes, "port", &listener.port, &port);
    diff(&mut changes, "protocol", listener.protocol.as_str(), "TCP");
    let forward = observed.alb_target_group.as_ref().map(|g| g.arn.as_str());
    forward_change(&mut changes, listener, forward);
    if !changes.is_empty() {
        let listener_arn = listener.arn.clone();
        actions.push(RouteAction::ModifyNlbListener {
            listener_arn,
            changes,
        });
    }
}

fn plan_endpoint_service(desired: &Desired, observed: &Observed, actions: &mut Vec<RouteAction>) {
    let required = desired.spec.provider.acceptance_required;
    let Some(service) = &observed.endpoint_service else {
        actions.push(RouteAction::CreateEndpointService);
        let principals = desired.principals.clone();
        if !principals.is_empty() {
            actions.push(RouteAction::AddPrincipals { principals });
        }
        return;
    };
    if service.acceptance_required != required {
        actions.push(RouteAction::SetAcceptanceRequired { required });
    }
    let add = missing(&desired.principals, &service.principals);
    if !add.is_empty() {
        actions.push(RouteAction::AddPrincipals { principals: add });
    }
    let remove = missing(&service.principals, &desired.principals);
    if !remove.is_empty() {
        actions.push(RouteAction::RemovePrincipals { principals: remove });
    }
}

/// Items of `want` that `have` lacks, in `want`'s order.
fn missing(want: &[String], have: &[String]) -> Vec<String> {
    want.iter()
        .filter(|item| !have.contains(item))
        .cloned()
        .collect()
}

fn plan_endpoint(desired: &Desired, observed: &Observed, actions: &mut Vec<RouteAction>) {
    let consumer = &desired.spec.consumer;
    let required = desired.spec.provider.acceptance_required;
    let Some(endpoint) = &observed.endpoint else {
        actions.push(RouteAction::CreateEndpoint);
        if required {
            actions.push(RouteAction::AcceptConnection);
        }
        return;
    };
    let changes = EndpointChanges {
        add_subnets: missing(&consumer.subnet_ids, &endpoint.subnet_ids),
        remove_subnets: missing(&endpoint.subnet_ids, &consumer.subnet_ids),
        add_security_groups: missing(&consumer.security_group_ids, &endpoint.security_group_ids),
        remove_security_groups: if consumer.security_group_ids.is_empty() {
            Vec::new()
        } else {
            missing(&endpoint.security_group_ids, &consumer.security_group_ids)
        },
    };
    if !changes.is_empty() {
        actions.push(RouteAction::ModifyEndpoint { changes });
    }
    if connection_pending(observed) {
        actions.push(RouteAction::AcceptConnection);
    }
}

/// Whether our endpoint's connection waits for acceptance. Connections of other endpoints are
/// never looked at.
fn connection_pending(observed: &Observed) -> bool {
    let Some(endpoint) = &observed.endpoint else {
        return false;
    };
    let from_service = observed.endpoint_service.as_ref().and_then(|service| {
        service
            .connections
            .iter()
            .find(|c| c.endpoint_id == endpoint.id)
    });
    match from_service {
        Some(connection) => connection.state == "pendingAcceptance",
        None => endpoint.state == "pendingAcceptance",
    }
}

fn plan_dns(desired: &Desired, observed: &Observed, actions: &mut Vec<RouteAction>) {
    if observed.hosted_zone.is_none() {
        actions.push(RouteAction::CreateHostedZone);
    }
    let consumer = &desired.spec.consumer;
    let want_type = match consumer.record_type {
        RecordType::Cname => "CNAME",
        RecordType::Alias => "A",
    };
    let Some(record) = &observed.record else {
        actions.push(RouteAction::UpsertRecord { replace: None });
        return;
    };
    let Some(endpoint) = &observed.endpoint else {
        actions.push(RouteAction::UpsertRecord { replace: None });
        return;
    };
    if record.type_ != want_type {
        actions.push(RouteAction::UpsertRecord {
            replace: Some(record.clone()),
        });
        return;
    }
    let alias_ok = match consumer.record_type {
        RecordType::Cname => true,
        RecordType::Alias => record.alias_zone_id.as_deref() == Some(&endpoint.dns_zone_id),
    };
    if !alias_ok || !dns_matches(&record.values, &endpoint.dns_name) {
        actions.push(RouteAction::UpsertRecord { replace: None });
    }
}

/// Route 53 may return names with or without the trailing dot, and in any case.
fn dns_matches(values: &[String], want: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    values.len() == 1 && values.iter().all(|v| norm(v) == norm(want))
}

fn join<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.into_iter().collect();
    if items.is_empty() {
        "no zone".to_string()
    } else {
        items.join(",")
    }
}

/// Each hop's condition, from what exists, what is still to do, and a blocking problem.
fn hop_states(
    desired: &Desired,
    observed: &Observed,
    actions: &[RouteAction],
    problem: Option<&Problem>,
) -> Vec<HopState> {
    Hop::ALL
        .iter()
        .map(|&hop| {
            if let Some(p) = problem.filter(|p| p.hop == hop) {
                return not_ready(hop, p.reason, p.message.clone());
            }
            let pending: Vec<String> = actions
                .iter()
                .filter(|a| a.hop() == hop)
                .map(RouteAction::describe)
                .collect();
            if !pending.is_empty() {
                let message = format!("applied, not yet confirmed: {}", pending.join("; "));
                return not_ready(hop, "Reconciling", message);
            }
            match waiting(hop, desired, observed) {
                Some((reason, message)) => not_ready(hop, reason, message),
                None if problem.is_some() => {
                    not_ready(hop, "Blocked", "another hop has a problem".into())
                }
                None => HopState {
                    hop,
                    ready: true,
                    reason: "Ready".into(),
                    message: format!("{}: in place", hop.condition().trim_end_matches("Ready")),
                },
            }
        })
        .collect()
}

fn not_ready(hop: Hop, reason: &str, message: String) -> HopState {
    HopState {
        hop,
        ready: false,
        reason: reason.to_string(),
        message,
    }
}

/// States AWS is still moving through, per hop, and instances the spec names that are not
/// there: the rest of the path is built, but it does not serve them.
fn waiting(hop: Hop, desired: &Desired, observed: &Observed) -> Option<(&'static str, String)> {
    match hop {
        Hop::Targets => {
            let gone: Vec<&str> = desired
                .spec
                .provider
                .targets
                .instance_ids
                .iter()
                .filter(|id| !observed.instances.iter().any(|i| &i.id == *id))
                .map(String::as_str)
                .collect();
            if !gone.is_empty() {
                let message = format!(
                    "no such running instance in the provider account: {}",
                    gone.join(",")
                );
                return Some(("InstanceNotFound", message));
            }
            unused_targets(observed)
        }
        Hop::LoadBalancer => [&observed.alb, &observed.nlb]
            .into_iter()
            .flatten()
            .find(|lb| !lb.is_active())
            .map(|lb| {
                (
                    "LoadBalancerProvisioning",
                    format!("{} is {}", lb.arn, lb.state),
                )
            }),
        Hop::EndpointService => observed
            .endpoint_service
            .as_ref()
            .filter(|s| !s.state.eq_ignore_ascii_case("available"))
            .map(|s| ("EndpointServicePending", format!("{} is {}", s.id, s.state))),
        Hop::Endpoint => observed
            .endpoint
            .as_ref()
            .filter(|e| e.state != "available")
            .map(|e| ("EndpointNotAvailable", format!("{} is {}", e.id, e.state))),
        Hop::Dns => None,
    }
}

/// Registered targets the load balancer does not use (yet).
fn unused_targets(observed: &Observed) -> Option<(&'static str, String)> {
    let group = observed.instance_target_group.as_ref()?;
    let unused: Vec<&str> = group
        .targets
        .iter()
        .filter(|t| t.health == "unused")
        .map(|t| t.id.as_str())
        .collect();
    (!unused.is_empty()).then(|| ("TargetsUnused", format!("unused: {}", unused.join(","))))
}

/// The record a route wants, for comparison and status.
pub fn record_of(spec: &PrivateLinkRouteSpec, dns_name: &str) -> Record {
    let type_ = match spec.consumer.record_type {
        RecordType::Cname => "CNAME",
        RecordType::Alias => "A",
    };
    Record {
        name: spec.host_name.clone(),
        type_: type_.to_string(),
        values: vec![dns_name.to_string()],
        alias_zone_id: None,
        ttl: Some(spec.consumer.ttl),
    }
}

/// Plans the cleanup half: everything the route owns, in reverse path order. `Retain` keeps
/// it all. The record is deleted only when it still points at our endpoint, and the zone only
/// when the route created it.
pub fn plan_cleanup(spec: &PrivateLinkRouteSpec, observed: &Observed) -> Vec<RouteAction> {
    if spec.deletion_policy == crate::crd::DeletionPolicy::Retain {
        return Vec::new();
    }
    let mut actions = Vec::new();
    cleanup_dns(observed, &mut actions);
    if let Some(endpoint) = &observed.endpoint {
        let endpoint_id = endpoint.id.clone();
        if endpoint.state != "deleting" {
            actions.push(RouteAction::DeleteEndpoint {
                endpoint_id: endpoint_id.clone(),
            });
        }
        actions.push(RouteAction::WaitEndpointDeleted { endpoint_id });
    }
    if let Some(service) = &observed.endpoint_service {
        actions.push(RouteAction::DeleteEndpointService {
            service_id: service.id.clone(),
        });
    }
    cleanup_balancer(observed.nlb.as_ref(), &observed.nlb_listeners, &mut actions);
    if let Some(group) = &observed.alb_target_group {
        actions.push(RouteAction::DeleteTargetGroup {
            arn: group.arn.clone(),
        });
    }
    cleanup_balancer(observed.alb.as_ref(), &observed.alb_listeners, &mut actions);
    if let Some(group) = &observed.instance_target_group {
        actions.push(RouteAction::DeleteTargetGroup {
            arn: group.arn.clone(),
        });
    }
    actions
}

fn cleanup_dns(observed: &Observed, actions: &mut Vec<RouteAction>) {
    let zone = observed.hosted_zone.as_ref();
    if let Some(record) = &observed.record {
        let endpoint_dns = observed
            .endpoint
            .as_ref()
            .map(|e| e.dns_name.clone())
            .or_else(|| observed.recorded_endpoint_dns.clone());
        let points_at_us = endpoint_dns.is_some_and(|dns| dns_matches(&record.values, &dns));
        if points_at_us || zone.is_some_and(|z| z.owned) {
            actions.push(RouteAction::DeleteRecord {
                record: record.clone(),
            });
        }
    }
    if let Some(zone) = zone.filter(|z| z.owned) {
        actions.push(RouteAction::DeleteHostedZone {
            zone_id: zone.id.clone(),
        });
    }
}

fn cleanup_balancer(
    balancer: Option<&super::state::LoadBalancer>,
    listeners: &[Listener],
    actions: &mut Vec<RouteAction>,
) {
    let Some(balancer) = balancer else {
        return;
    };
    for listener in listeners {
        actions.push(RouteAction::DeleteListener {
            listener_arn: listener.arn.clone(),
        });
    }
    actions.push(RouteAction::DeleteLoadBalancer {
        arn: balancer.arn.clone(),
    });
}
