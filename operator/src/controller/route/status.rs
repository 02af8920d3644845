//! Builds a route's status from a plan and what was observed. Pure, like the planner.
//!
//! Conditions go through [`set_condition`], so a resync that changes nothing keeps every
//! `lastTransitionTime`; each carries the generation it describes.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{HopState, Plan};
use super::state::Observed;
use super::validate::Invalid;
use crate::crd::{
    set_condition, ConditionStatus, PrivateLinkRoute, PrivateLinkRouteStatus, RouteHops,
};

/// The condition for the whole path.
pub const READY: &str = "Ready";

/// IDs, names and states of each hop, as observed.
pub fn hops(spec: &crate::crd::PrivateLinkRouteSpec, observed: &Observed) -> RouteHops {
    let endpoint = observed.endpoint.as_ref();
    let service = observed.endpoint_service.as_ref();
    let alb_listener = observed.alb_listeners.iter().find(|l| l.port == spec.port);
    let nlb_listener = observed.nlb_listeners.iter().find(|l| l.port == spec.port);
    RouteHops {
        instance_target_group_arn: observed
            .instance_target_group
            .as_ref()
            .map(|g| g.arn.clone()),
        target_health: observed
            .instance_target_group
            .iter()
            .flat_map(|g| &g.targets)
            .map(|t| format!("{}={}", t.id, t.health))
            .collect(),
        alb_arn: observed.alb.as_ref().map(|lb| lb.arn.clone()),
        alb_listener_arn: alb_listener
            .or(observed.alb_listeners.first())
            .map(|l| l.arn.clone()),
        certificate_status: observed.certificate_status.clone(),
        alb_target_group_arn: observed.alb_target_group.as_ref().map(|g| g.arn.clone()),
        nlb_arn: observed.nlb.as_ref().map(|lb| lb.arn.clone()),
        nlb_listener_arn: nlb_listener
            .or(observed.nlb_listeners.first())
            .map(|l| l.arn.clone()),
        endpoint_service_id: service.map(|s| s.id.clone()),
        endpoint_service_name: service.map(|s| s.name.clone()),
        endpoint_id: endpoint.map(|e| e.id.clone()),
        endpoint_dns_name: endpoint.map(|e| e.dns_name.clone()),
        endpoint_state: endpoint.map(|e| e.state.clone()),
        hosted_zone_id: observed.hosted_zone.as_ref().map(|z| z.id.clone()),
        record: observed.record.as_ref().map(|r| r.describe()),
    }
}

/// Status after a reconcile that reached AWS.
pub fn from_plan(
    route: &PrivateLinkRoute,
    observed: &Observed,
    plan: &Plan,
    waiting: Option<&str>,
    now: Timestamp,
) -> PrivateLinkRouteStatus {
    let generation = route.metadata.generation;
    let mut status = route.status.clone().unwrap_or_default();
    status.hops = hops(&route.spec, observed);
    status.observed_generation = generation;
    status.last_drift_check = Some(Time(now));
    for hop in &plan.hops {
        let value = ConditionStatus::from_bool(hop.ready);
        let condition = hop.hop.condition();
        set_condition(
            &mut status.conditions,
            condition,
            value,
            &hop.reason,
            hop.message.clone(),
            generation,
            now,
        );
    }
    let ready = plan.ready() && waiting.is_none();
    status.url = ready.then(|| format!("https://{}:{}", route.spec.host_name, route.spec.port));
    // The hop with the blocking problem if there is one, else the first hop not ready for a
    // reason of its own, not one only blocked by another.
    let not_ready = |h: &&HopState| !h.ready;
    let problem_hop = plan.problem.as_ref().map(|p| p.hop);
    let broken = (plan.hops.iter().filter(not_ready))
        .find(|h| Some(h.hop) == problem_hop)
        .or_else(|| (plan.hops.iter().filter(not_ready)).find(|h| h.reason != "Blocked"))
        .or_else(|| plan.hops.iter().find(not_ready));
    let (reason, message) = match (ready, broken, waiting) {
        (true, _, _) => (
            "Ready".to_string(),
            format!("every hop is ready at {}", url(route)),
        ),
        (false, Some(hop), _) => (
            hop.reason.clone(),
            format!("{}: {}", hop.hop.condition(), hop.message),
        ),
        (false, None, Some(what)) => ("Waiting".to_string(), format!("waiting for {what}")),
        (false, None, None) => (
            "Reconciling".to_string(),
            "changes are being applied".to_string(),
        ),
    };
    let value = ConditionStatus::from_bool(ready);
    set_condition(
        &mut status.conditions,
        READY,
        value,
        &reason,
        message,
        generation,
        now,
    );
    status
}

fn url(route: &PrivateLinkRoute) -> String {
    format!("https://{}:{}", route.spec.host_name, route.spec.port)
}

/// Status of a route that cannot be reconciled until it or its accounts are edited.
pub fn invalid(
    route: &PrivateLinkRoute,
    invalid: &Invalid,
    now: Timestamp,
) -> PrivateLinkRouteStatus {
    let generation = route.metadata.generation;
    let mut status = route.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.url = None;
    let value = ConditionStatus::False;
    set_condition(
        &mut status.conditions,
        READY,
        value,
        invalid.reason,
        invalid.message.clone(),
        generation,
        now,
    );
    status
}

/// Status of a paused route: everything else is left as it was.
pub fn paused(route: &PrivateLinkRoute, now: Timestamp) -> PrivateLinkRouteStatus {
    let generation = route.metadata.generation;
    let mut status = route.status.clone().unwrap_or_default();
    let message = "reconciliation is paused by the prodaccess.io/paused annotation";
    let value = ConditionStatus::Unknown;
    set_condition(
        &mut status.conditions,
        READY,
        value,
        "Paused",
        message,
        generation,
        now,
    );
    status
}
