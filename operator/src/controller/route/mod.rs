//! The `PrivateLinkRoute` controller: builds the two-account private path in dependency order,
//! keeps it in its desired state, and tears it down in reverse.
//!
//! The top-level reconcile only dispatches the finalizer's apply and cleanup. Apply is
//! validate (pure) → observe → plan (pure) → act → observe again if anything changed → report
//! (status by server-side apply, Events naming what changed). A ready route is observed from
//! the per-account snapshots ([`snapshot`]), read once per drift-check period for every route
//! of an account; a route the snapshot cannot vouch for, or with anything to do, is observed
//! directly (both accounts, by ownership tags) before any write. Cleanup is direct observe →
//! plan the reverse → act; it fails, and so keeps the finalizer, until everything is gone,
//! waiting where AWS requires it.

mod act;
pub mod action;
mod error;
pub mod names;
mod observe;
pub mod plan;
mod snapshot;
pub mod state;
pub mod status;
pub mod validate;

#[cfg(test)]
mod tests;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::{predicates, reflector, watcher, PredicateConfig, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::ErrorClass;
use crate::controller::Context;
use crate::crd::{
    ConditionExt, DeletionPolicy, PrivateLinkRoute, PrivateLinkRouteStatus, FINALIZER,
    PAUSED_ANNOTATION,
};
use act::{Executor, Outcome, Refs};
use names::RouteNames;
use observe::Clients;
use plan::Desired;
use validate::{Invalid, Resolved};

pub use snapshot::Snapshots;

/// Field manager of every status write.
pub const MANAGER: &str = "prodaccess-operator";

/// How soon a route that is still being built is checked again.
const PROGRESS_REQUEUE: Duration = Duration::from_secs(10);

/// The soonest a ready route is checked again, however old the snapshot it was checked from.
const MIN_REQUEUE: Duration = Duration::from_secs(1);

/// Why a route reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Observe(#[from] observe::ObserveError),
    #[error(transparent)]
    Act(#[from] act::ActError),
    #[error("failed to write the status of route {name}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to clean up: {}", .0.message)]
    CleanupBlocked(Invalid),
    #[error("waiting for {0}")]
    Waiting(String),
    #[error("finalizer failed: {0}")]
    Finalizer(String),
}

impl Error {
    /// The error's class decides the retry and names the Event reason.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Observe(observe::ObserveError::NameTaken(_)) => ErrorClass::InvalidRequest,
            Self::Act(act::ActError::AcceptRefused(_)) => ErrorClass::InvalidRequest,
            Self::Observe(_) | Self::Act(_) => {
                error::class_of(self).unwrap_or(ErrorClass::Conflict)
            }
            Self::CleanupBlocked(_) => ErrorClass::InvalidRequest,
            Self::WriteStatus { .. } | Self::Finalizer(_) | Self::Waiting(_) => {
                ErrorClass::Conflict
            }
        }
    }
}

fn is_paused(route: &PrivateLinkRoute) -> bool {
    route
        .annotations()
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// Reconciles one route.
pub async fn reconcile(route: Arc<PrivateLinkRoute>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let labels = crate::metrics::KindLabels {
        kind: "PrivateLinkRoute",
    };
    // Account changes map to routes in every namespace of the shared cache; another instance
    // owns those outside this one's scope.
    if !ctx.settings.in_scope(route.metadata.namespace.as_deref()) {
        return Ok(Action::await_change());
    }
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    if is_paused(&route) && route.metadata.deletion_timestamp.is_none() {
        write_status(&ctx, &route, &status::paused(&route, Timestamp::now())).await?;
        return Ok(Action::await_change());
    }
    let ns = route.namespace().unwrap_or_default();
    let api: Api<PrivateLinkRoute> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, route, |event| async {
        match event {
            Finalizer::Apply(route) => apply(route, ctx.clone()).await,
            Finalizer::Cleanup(route) => cleanup(route, ctx.clone()).await,
        }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(elapsed);
    result.map_err(|err| match err {
        kube::runtime::finalizer::Error::ApplyFailed(err)
        | kube::runtime::finalizer::Error::CleanupFailed(err) => err,
        other => Error::Finalizer(other.to_string()),
    })
}

fn names_of(route: &PrivateLinkRoute) -> RouteNames {
    let uid = route.metadata.uid.clone().unwrap_or_default();
    RouteNames::new(
        &route.namespace().unwrap_or_default(),
        &route.name_any(),
        &uid,
    )
}

fn resolve(route: &PrivateLinkRoute, ctx: &Context) -> Result<Resolved, Invalid> {
    let namespace = route.namespace().unwrap_or_default();
    let find = |name: &str| ctx.accounts.find(|account| account.name_any() == name);
    let resolved = validate::validate(route, &namespace, find)?;
    validate::check_host_name(route, &ctx.routes.state(), &ctx.accounts.state())?;
    Ok(resolved)
}

async fn clients(ctx: &Context, resolved: &Resolved) -> Clients {
    Clients {
        provider: ctx.aws.for_account(&resolved.provider.spec, "route").await,
        consumer: ctx.aws.for_account(&resolved.consumer.spec, "route").await,
    }
}

fn executor<'a>(
    clients: &'a Clients,
    route: &'a PrivateLinkRoute,
    names: &'a RouteNames,
    refs: Refs,
) -> Executor<'a> {
    Executor {
        clients,
        spec: &route.spec,
        names,
        refs,
        wait_attempts: 10,
        wait_pause: Duration::from_secs(3),
    }
}

/// Builds or corrects the path, then reports.
async fn apply(route: Arc<PrivateLinkRoute>, ctx: Arc<Context>) -> Result<Action, Error> {
    let resolved = match resolve(&route, &ctx) {
        Ok(resolved) => resolved,
        Err(invalid) => return report_invalid(&ctx, &route, &invalid).await,
    };
    let clients = clients(&ctx, &resolved).await;
    let names = names_of(&route);
    let desired = Desired {
        spec: &route.spec,
        principals: resolved.principals.clone(),
    };
    let status = route.status.as_ref();
    let (mut observed, checked_at) = match shared_view(&ctx, &resolved, &clients, &route).await? {
        // The snapshot answers only for a route with nothing to do; anything else is planned
        // from direct reads, so every write rests on fresh, ownership-checked state.
        Some(seen) if plan::plan(&desired, &seen.observed).ready() => {
            (seen.observed, Some(seen.taken))
        }
        _ => (
            observe::observe(&clients, &route.spec, &names, status).await?,
            None,
        ),
    };
    let mut plan = plan::plan(&desired, &observed);
    let mut outcome = Outcome::default();
    if !plan.actions.is_empty() {
        let refs = Refs::from_observed(&observed);
        ctx.route_snapshots.note_write(&names.uid);
        let run = executor(&clients, &route, &names, refs)
            .run(&plan.actions)
            .await;
        ctx.route_snapshots.note_write(&names.uid);
        outcome = run?;
        observed = observe::observe(&clients, &route.spec, &names, status).await?;
        plan = plan::plan(&desired, &observed);
    }
    let waiting = outcome.waiting.as_deref();
    let new_status = status::from_plan(&route, &observed, &plan, waiting, Timestamp::now());
    report(&ctx, &route, &new_status, &outcome).await?;
    Ok(Action::requeue(if plan.ready() && waiting.is_none() {
        next_check(resolved.drift_check, checked_at)
    } else if plan.problem.is_some() {
        resolved.drift_check.min(Duration::from_secs(60))
    } else {
        PROGRESS_REQUEUE
    }))
}

/// The route as the shared snapshots of its accounts show it, at most one drift-check period
/// old, if they can vouch for it.
async fn shared_view(
    ctx: &Context,
    resolved: &Resolved,
    clients: &Clients,
    route: &PrivateLinkRoute,
) -> Result<Option<snapshot::Seen>, Error> {
    let accounts = (resolved.provider.name_any(), resolved.consumer.name_any());
    let hops = route.status.as_ref().map(|s| &s.hops);
    let seen = ctx
        .route_snapshots
        .observe(
            clients,
            (&accounts.0, &accounts.1),
            &route.spec,
            &names_of(route),
            hops,
            resolved.drift_check,
        )
        .await?;
    Ok(seen)
}

/// When a ready route is checked next: one period after the snapshot it was checked from was
/// taken, so that the check finds it due for a refresh and drift is seen within one period;
/// one period from now after a direct read.
fn next_check(period: Duration, checked_at: Option<Instant>) -> Duration {
    match checked_at {
        Some(taken) => period.saturating_sub(taken.elapsed()).max(MIN_REQUEUE),
        None => period,
    }
}

/// Writes status and says in Events what changed.
async fn report(
    ctx: &Context,
    route: &PrivateLinkRoute,
    new_status: &PrivateLinkRouteStatus,
    outcome: &Outcome,
) -> Result<(), Error> {
    let was_ready = route
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.is_true(status::READY));
    if !outcome.done.is_empty() {
        // Changes to a route that was Ready put back what drifted; before, they build it.
        let reason = if was_ready {
            "DriftCorrected"
        } else {
            "Created"
        };
        let note = truncate(outcome.done.join("; "));
        tracing::info!(route = %route.name_any(), reason, changes = %note, "Route changed in AWS");
        ctx.event(route, EventType::Normal, reason, "Reconcile", note)
            .await;
    }
    let ready = new_status.conditions.is_true(status::READY);
    if ready && !was_ready {
        let note = format!(
            "every hop is ready: {}",
            new_status.url.clone().unwrap_or_default()
        );
        ctx.event(route, EventType::Normal, "Ready", "Reconcile", note)
            .await;
    }
    let old_reason = ready_reason(route.status.as_ref());
    let new_reason = ready_reason(Some(new_status));
    if !ready && old_reason != new_reason {
        let note = new_status
            .conditions
            .condition(status::READY)
            .map(|c| c.message.clone());
        let reason = new_reason.unwrap_or_default();
        // A route being built or waiting for AWS is progress, not a problem.
        let kind = if PROGRESS_REASONS.contains(&reason.as_str()) {
            EventType::Normal
        } else {
            EventType::Warning
        };
        ctx.event(
            route,
            kind,
            &reason,
            "Reconcile",
            truncate(note.unwrap_or_default()),
        )
        .await;
    }
    write_status(ctx, route, new_status).await?;
    count_ready(ctx, Some((route, ready)));
    Ok(())
}

/// Sets `prodaccess_routes_ready` from the route cache, with `route` as just written (the cache
/// has not seen that write yet). Counting from the cache every time, and again every few
/// seconds (`cli::phase_gauges`), the gauge mends itself whatever happened in between.
pub fn count_ready(ctx: &Context, route: Option<(&PrivateLinkRoute, bool)>) {
    let written = route.and_then(|(r, _)| r.uid());
    let counted = |r: &PrivateLinkRoute| {
        r.uid() != written
            && r.metadata.deletion_timestamp.is_none()
            && ctx.settings.in_scope(r.metadata.namespace.as_deref())
            && r.status
                .as_ref()
                .is_some_and(|s| s.conditions.is_true(status::READY))
    };
    let others = ctx.routes.state().iter().filter(|r| counted(r)).count();
    let this = route.is_some_and(|(_, ready)| ready);
    ctx.metrics
        .routes_ready
        .set((others + usize::from(this)) as i64);
}

/// Ready reasons of a route on its way to Ready: AWS is building or a change is being applied.
const PROGRESS_REASONS: [&str; 4] = [
    "Reconciling",
    "Waiting",
    "LoadBalancerProvisioning",
    "EndpointServicePending",
];

fn ready_reason(status: Option<&PrivateLinkRouteStatus>) -> Option<String> {
    status
        .and_then(|s| s.conditions.condition(status::READY))
        .map(|c| c.reason.clone())
}

async fn report_invalid(
    ctx: &Context,
    route: &PrivateLinkRoute,
    invalid: &Invalid,
) -> Result<Action, Error> {
    tracing::warn!(route = %route.name_any(), reason = invalid.reason,
        message = %invalid.message, "Route cannot be reconciled");
    let new_status = status::invalid(route, invalid, Timestamp::now());
    report(ctx, route, &new_status, &Outcome::default()).await?;
    let retry = match invalid.reason {
        // Both end without a change to this route: another object becomes ready or goes.
        "AccountNotReady" | "HostNameConflict" => Duration::from_secs(30),
        _ => validate::drift_check(route, ctx.settings.route_resync),
    };
    Ok(Action::requeue(retry))
}

async fn write_status(
    ctx: &Context,
    route: &PrivateLinkRoute,
    status: &PrivateLinkRouteStatus,
) -> Result<(), Error> {
    let api: Api<PrivateLinkRoute> =
        Api::namespaced(ctx.client.clone(), &route.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "prodaccess.io/v1alpha1",
        "kind": "PrivateLinkRoute",
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    api.patch_status(&route.name_any(), &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::WriteStatus {
            name: route.name_any(),
            source,
        })?;
    Ok(())
}

/// Deletes everything the route owns, in reverse order; `Retain` keeps it all.
async fn cleanup(route: Arc<PrivateLinkRoute>, ctx: Arc<Context>) -> Result<Action, Error> {
    count_ready(&ctx, Some((&route, false)));
    if route.spec.deletion_policy == DeletionPolicy::Retain {
        let note = "deletion policy Retain: AWS resources left in place".to_string();
        ctx.event(
            route.as_ref(),
            EventType::Normal,
            "Retained",
            "Delete",
            note,
        )
        .await;
        return Ok(Action::await_change());
    }
    let namespace = route.namespace().unwrap_or_default();
    let find = |name: &str| ctx.accounts.find(|account| account.name_any() == name);
    let resolved = match validate::accounts(&route, &namespace, find, ctx.settings.route_resync) {
        Ok(resolved) => resolved,
        Err(invalid) if nothing_recorded(&route) => {
            // Without its accounts nothing can have been built: let the route go.
            let note = format!("no AWS resource was ever recorded ({})", invalid.message);
            ctx.event(
                route.as_ref(),
                EventType::Normal,
                "Released",
                "Delete",
                note,
            )
            .await;
            return Ok(Action::await_change());
        }
        Err(invalid) => return Err(Error::CleanupBlocked(invalid)),
    };
    let clients = clients(&ctx, &resolved).await;
    let names = names_of(&route);
    let status = route.status.as_ref();
    let observed = observe::observe(&clients, &route.spec, &names, status).await?;
    let actions = plan::plan_cleanup(&route.spec, &observed);
    let refs = Refs::from_observed(&observed);
    ctx.route_snapshots.note_write(&names.uid);
    let outcome = executor(&clients, &route, &names, refs)
        .run(&actions)
        .await?;
    if !outcome.done.is_empty() {
        let note = truncate(outcome.done.join("; "));
        ctx.event(route.as_ref(), EventType::Normal, "Deleted", "Delete", note)
            .await;
    }
    if let Some(waiting) = outcome.waiting {
        return Err(Error::Waiting(waiting));
    }
    let left = observe::observe(&clients, &route.spec, &names, status).await?;
    let remaining = plan::plan_cleanup(&route.spec, &left);
    if let Some(first) = remaining.first() {
        return Err(Error::Waiting(format!(
            "AWS to finish: {}",
            first.describe()
        )));
    }
    ctx.route_snapshots.forget(&names.uid);
    Ok(Action::await_change())
}

/// Whether the route's status has never named an AWS resource.
fn nothing_recorded(route: &PrivateLinkRoute) -> bool {
    route
        .status
        .as_ref()
        .is_none_or(|s| s.hops == crate::crd::RouteHops::default())
}

/// Retry policy from the error class: a bad request waits for an edit, transient failures
/// retry soon with jitter, auth failures retry slowly; every failure but a wait raises a
/// Warning Event.
pub fn error_policy(route: Arc<PrivateLinkRoute>, err: &Error, ctx: Arc<Context>) -> Action {
    if let Error::Waiting(what) = err {
        tracing::info!(route = %route.name_any(), waiting = %what, "Route waits for AWS");
        return Action::requeue(Duration::from_secs(5));
    }
    let class = err.class();
    let labels = crate::metrics::ErrorLabels {
        kind: "PrivateLinkRoute",
        category: class.as_str(),
    };
    ctx.metrics.reconcile_errors.get_or_create(&labels).inc();
    tracing::warn!(route = %route.name_any(), error = %error_chain(err), category = class.as_str(),
        "Reconcile failed");
    let note = truncate(error_chain(err));
    tokio::spawn(async move {
        ctx.event(
            route.as_ref(),
            EventType::Warning,
            class.as_str(),
            "Reconcile",
            note,
        )
        .await;
    });
    retry_after(class)
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Event notes are limited to 1024 bytes; the start of an error chain says the most.
fn truncate(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// Requeue delay for a failure class, jittered so that many routes do not retry at once.
fn retry_after(class: ErrorClass) -> Action {
    let base_ms: u64 = match class {
        ErrorClass::Throttling | ErrorClass::Service | ErrorClass::Connectivity => 2_000,
        ErrorClass::Conflict => 1_000,
        ErrorClass::Auth => 60_000,
        ErrorClass::NotFound | ErrorClass::InvalidRequest => 300_000,
    };
    let jitter = rand::random::<u64>() % (base_ms / 2 + 1);
    Action::requeue(Duration::from_millis(base_ms + jitter))
}

/// What in a route is worth a reconcile: the spec (generation), annotations (pause and
/// re-check requests), finalizers and deletion. Status writes are not, or every status write
/// would start another reconcile.
fn trigger_hash(route: &PrivateLinkRoute) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(route).hash(&mut hasher);
    predicates::annotations(route).hash(&mut hasher);
    predicates::finalizers(route).hash(&mut hasher);
    route.meta().deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// Routes reconciled at once.
const ROUTE_CONCURRENCY: u16 = 4;

/// Runs the route controller until the process stops, for the routes in the namespaces in
/// scope, from the shared route cache.
pub async fn run(ctx: Arc<Context>) {
    let scope = ctx.clone();
    let in_scope =
        move |r: &PrivateLinkRoute| scope.settings.in_scope(r.metadata.namespace.as_deref());
    // Only changes worth a reconcile pass (see `trigger_hash`); the copy made for the filter
    // lives only until the controller has taken the route's reference.
    let triggers = ctx
        .routes
        .subscribe()
        .filter(move |r| futures::future::ready(in_scope(r)))
        .map(|r| Ok::<_, watcher::Error>(r.as_ref().clone()))
        .predicate_filter(trigger_hash, PredicateConfig::default())
        .filter_map(|r| futures::future::ready(r.ok().map(Arc::new)));
    let routes = ctx.routes.clone();
    Controller::for_shared_stream(triggers, ctx.routes.clone())
        // A route being built reads a dozen ELB resources per observe. Unbounded, a hundred
        // routes at once queue more reads behind the request budget than an attempt timeout
        // allows, every reconcile times out and retries, and none converges.
        .with_config(kube::runtime::controller::Config::default().concurrency(ROUTE_CONCURRENCY))
        .watches_stream(ctx.accounts.subscribe_owned(), move |account| {
            // An account that becomes ready (or changes) re-checks the routes that use it.
            let name = account.name_any();
            let uses = |r: &PrivateLinkRoute| {
                r.spec.provider.account_ref == name || r.spec.consumer.account_ref == name
            };
            let state = routes.state();
            let users = state.iter().filter(|r| uses(r));
            users
                .map(|r| reflector::ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
