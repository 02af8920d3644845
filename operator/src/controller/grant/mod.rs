//! The `ProductionAccessGrant` controller.
//!
//! A reconcile is observe → plan (pure) → act → report. The top level only dispatches the
//! finalizer's apply and cleanup halves; cleanup runs the same pipeline with the grant marked
//! as deleting, so revocation has one implementation. Expiries are timers: an active grant is
//! requeued at the exact instant it ends.

mod act;
pub mod facts;
mod observe;
pub mod plan;

pub use act::{guard_policy_document, guard_policy_name};
pub use observe::{approval_record, approval_state};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::{PredicateConfig, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::ErrorClass;
use crate::controller::Context;
use crate::crd::{ProductionAccessGrant, ProductionAccessGrantStatus, PAUSED_ANNOTATION};
use plan::{effective_spec, Audit, GrantPlan, PollSettings};

/// Why a grant reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Observe(#[from] observe::ObserveError),
    #[error(transparent)]
    Act(#[from] act::ActError),
    #[error("failed to write the status of grant {name}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read grant {name}: {message}")]
    ReadGrant { name: String, message: String },
    #[error("finalizer failed: {0}")]
    Finalizer(String),
    #[error("the reconcile of grant {0} panicked")]
    Panicked(String),
}

impl Error {
    /// The error's class decides the retry and names the Event reason.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Observe(err) => err.class(),
            Self::Act(err) => err.class(),
            Self::WriteStatus { .. } | Self::ReadGrant { .. } | Self::Finalizer(_) => {
                ErrorClass::Conflict
            }
            Self::Panicked(_) => ErrorClass::InvalidRequest,
        }
    }
}

/// How long a reconcile waits for the grant as stored before it gives up (or, for an overdue
/// revocation, goes ahead from the cache).
const FRESH_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a grant not yet finished is past the expiry of its recorded window: its user must
/// be removed now. Not only Active grants: a window is recorded just before access is given,
/// so an operator stopped before it wrote Active may have given it.
fn is_overdue(grant: &ProductionAccessGrant, now: Timestamp) -> bool {
    let Some(status) = grant.status.as_ref() else {
        return false;
    };
    !status.phase.is_terminal() && status.window.as_ref().is_some_and(|w| w.expiry.0 <= now)
}

/// What a paused grant waits for, or `None` when it must be reconciled anyway. Pausing holds
/// back granting and other changes, never the end of access: an overdue, revoked or deleted
/// grant is still revoked (and a deleted one released), so a paused grant is woken at its
/// expiry.
fn paused_wait(grant: &ProductionAccessGrant, now: Timestamp) -> Option<Action> {
    let ending = grant.spec.revoked || grant.metadata.deletion_timestamp.is_some();
    // The checks after a revocation (an add still in flight may land after it) run too.
    let confirming = grant
        .status
        .as_ref()
        .is_some_and(|s| plan::confirming_for(s, now).is_some());
    if ending || confirming || is_overdue(grant, now) {
        return None;
    }
    let expiry = grant
        .status
        .as_ref()
        .and_then(|s| s.window.as_ref())
        .map(|w| w.expiry.0);
    Some(match expiry {
        Some(expiry) if !grant.status.as_ref().is_some_and(|s| s.phase.is_terminal()) => {
            let left = expiry.duration_since(now).unsigned_abs();
            Action::requeue(left + Duration::from_millis(100))
        }
        _ => Action::await_change(),
    })
}

/// Field manager of every status write.
pub const MANAGER: &str = "prodaccess-operator";

/// Reconciles one grant.
pub async fn reconcile(
    grant: Arc<ProductionAccessGrant>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let labels = crate::metrics::KindLabels {
        kind: "ProductionAccessGrant",
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let ns = grant.namespace().unwrap_or_default();
    let api: Api<ProductionAccessGrant> = Api::namespaced(ctx.client.clone(), &ns);
    // The watch cache can lag the API server by a whole outage (a watch reconnecting with
    // backoff, or relisting after 410 Gone). Deciding from a status that old would revoke
    // again and rewrite revokedAt, or grant again and move the window, so decide from the
    // grant as it is stored now, unless the cache already shows the version this operator
    // last read or wrote (the usual case, which then costs the API server nothing).
    let name = grant.name_any();
    let uid = grant.uid().unwrap_or_default();
    let read = async {
        if cache_is_current(&ctx, &grant) {
            return Ok(Some(grant.as_ref().clone()));
        }
        api.get_opt(&name).await
    };
    let grant = match tokio::time::timeout(FRESH_READ_TIMEOUT, read).await {
        Ok(Ok(Some(fresh))) => {
            note_version(&ctx, &fresh);
            Arc::new(fresh)
        }
        Ok(Ok(None)) => {
            forget_version(&ctx, &uid);
            return Ok(Action::await_change());
        }
        // Without the API server, an overdue revocation still goes ahead from the cache:
        // removing a member twice is harmless, leaving one in is not. Nothing else does.
        _ if is_overdue(&grant, Timestamp::now()) => return revoke_from_cache(grant, ctx).await,
        Ok(Err(err)) => {
            let message = err.to_string();
            return Err(Error::ReadGrant { name, message });
        }
        Err(_) => {
            let message = format!("no answer within {FRESH_READ_TIMEOUT:?}");
            return Err(Error::ReadGrant { name, message });
        }
    };
    let paused = grant
        .annotations()
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true");
    if paused {
        if let Some(wait) = paused_wait(&grant, Timestamp::now()) {
            return Ok(wait);
        }
    }
    let deleting = grant.metadata.deletion_timestamp.is_some();
    let result = finalizer(&api, crate::crd::FINALIZER, grant, |event| async {
        match event {
            Finalizer::Apply(grant) => apply(grant, ctx.clone()).await,
            Finalizer::Cleanup(grant) => apply(grant, ctx.clone())
                .await
                .map(|_| Action::await_change()),
        }
    })
    .await;
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if result.is_err() || deleting {
        // A failed reconcile may have written without learning the new version.
        forget_version(&ctx, &uid);
    }
    result.map_err(|err| match err {
        kube::runtime::finalizer::Error::ApplyFailed(err)
        | kube::runtime::finalizer::Error::CleanupFailed(err) => err,
        other => Error::Finalizer(other.to_string()),
    })
}

/// Reconciles one grant; a panic becomes that grant's error. The same controller revokes
/// everyone's expired access, so one grant must never be able to stop it.
pub async fn reconcile_isolated(
    grant: Arc<ProductionAccessGrant>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    use futures::FutureExt;
    let name = grant.name_any();
    // Group and account changes map to grants in every namespace of the shared cache; another
    // instance owns those outside this one's scope.
    if !ctx.settings.in_scope(grant.metadata.namespace.as_deref()) {
        return Ok(Action::await_change());
    }
    std::panic::AssertUnwindSafe(reconcile(grant, ctx))
        .catch_unwind()
        .await
        .unwrap_or(Err(Error::Panicked(name)))
}

/// The API server does not answer and the cached grant is past its expiry: revokes in AWS now
/// and remembers when, for the reconcile that can read and write the grant again to record.
/// Nothing is written from the cache, which may be older than the stored grant.
async fn revoke_from_cache(
    grant: Arc<ProductionAccessGrant>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = grant.name_any();
    let uid = grant.uid().unwrap_or_default();
    if revocation(&ctx, &uid).is_none() {
        let old = grant.status.clone().unwrap_or_default();
        let spec = effective_spec(&grant.spec, Some(&old));
        let (facts, resolved) = observe::observe(&ctx, &grant, &spec, Timestamp::now()).await?;
        let plan = plan::plan(&grant.spec, &old, &facts, &poll_settings(&ctx));
        if let Some(resolved) = &resolved {
            act::act(&ctx, &grant, &spec, resolved, &plan.actions).await?;
            if let Some(at) = plan.status.revoked_at.as_ref() {
                remember_revocation(&ctx, &uid, at.0);
            }
        }
    }
    let message = "the API server does not answer; revoked in AWS, to be recorded".to_string();
    Err(Error::ReadGrant { name, message })
}

fn poll_settings(ctx: &Context) -> PollSettings {
    PollSettings {
        min: ctx.settings.approval_poll_min,
        max: ctx.settings.approval_poll_max,
        resync: ctx.settings.grant_resync,
        add_margin: ctx.settings.add_margin,
    }
}

/// Observe, plan, act, report. Used for both apply and cleanup (when deleting).
async fn apply(grant: Arc<ProductionAccessGrant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let now = Timestamp::now();
    let old = grant.status.clone().unwrap_or_default();
    let spec = effective_spec(&grant.spec, Some(&old));
    let (mut facts, resolved) = observe_in_time(&ctx, &grant, &spec, now).await?;
    facts.revoked_earlier = revocation(&ctx, &facts.uid);
    let poll = poll_settings(&ctx);
    let mut plan = plan::plan(&grant.spec, &old, &facts, &poll);
    if let Some(resolved) = &resolved {
        let outcome = match decision_first(&old, &plan) {
            // The approval is claimed, then the decision recorded, then membership given.
            Some(decided) => {
                let (claim, give) = before_membership(&plan.actions);
                act::act(&ctx, &grant, &spec, resolved, claim).await?;
                write_status(&ctx, &grant, &decided).await?;
                act::act(&ctx, &grant, &spec, resolved, give).await?
            }
            None => act::act(&ctx, &grant, &spec, resolved, &plan.actions).await?,
        };
        if let Some(id) = outcome.opened_change_request {
            plan.status.message = Some(format!(
                "Change request {id} opened; waiting for approvers."
            ));
            plan.status.approval_id = Some(id);
            plan.requeue = Some(poll.min);
        }
        if outcome.sessions_terminated > 0 {
            tracing::info!(grant = %grant.name_any(), sessions = outcome.sessions_terminated,
                "Terminated open sessions");
        }
    } else if plan
        .actions
        .iter()
        .any(|a| *a != plan::GrantAction::TerminateSessions)
    {
        // Revocation with an unresolvable group or account: nothing can be done in AWS. The
        // expiry guard policy still ends session rights at the approved expiry.
        tracing::warn!(grant = %grant.name_any(), "Cannot reach the group's account to revoke");
    }
    let revoked_now = old.revoked_at.is_none() && facts.revoked_earlier.is_none();
    if let (true, Some(at)) = (revoked_now, plan.status.revoked_at.as_ref()) {
        remember_revocation(&ctx, &facts.uid, at.0);
    }
    report(&ctx, &grant, &plan, resolved.as_ref()).await?;
    Ok(match plan.requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Whether the cached grant is at the version this operator last read or wrote.
fn cache_is_current(ctx: &Context, grant: &ProductionAccessGrant) -> bool {
    let (Some(uid), Some(version)) = (grant.uid(), grant.resource_version()) else {
        return false;
    };
    let Ok(versions) = ctx.grant_versions.lock() else {
        return false;
    };
    versions.get(&uid) == Some(&version)
}

/// Takes the grants of the start-up list as read from the API server (see `cli::run`).
pub fn trust_listed(ctx: &Context) {
    for grant in ctx.grants.state() {
        note_version(ctx, &grant);
    }
}

fn note_version(ctx: &Context, grant: &ProductionAccessGrant) {
    if let (Some(uid), Some(version), Ok(mut versions)) = (
        grant.uid(),
        grant.resource_version(),
        ctx.grant_versions.lock(),
    ) {
        versions.insert(uid, version);
    }
}

fn forget_version(ctx: &Context, uid: &str) {
    if let Ok(mut versions) = ctx.grant_versions.lock() {
        versions.remove(uid);
    }
}

/// Observes the grant, but never past the end of its window: the reads of a grant with access
/// (a shared membership read queued behind the budget, or retrying a throttle) may take
/// seconds, and the revocation must not wait for them. When the window ends first, observes
/// again from that moment, which for an overdue grant reads nothing.
async fn observe_in_time(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    spec: &crate::crd::ProductionAccessGrantSpec,
    now: Timestamp,
) -> Result<(facts::GrantFacts, Option<observe::Resolved>), Error> {
    let status = grant.status.as_ref();
    let expiry = status
        .filter(|s| !s.phase.is_terminal())
        .and_then(|s| s.window.as_ref())
        .map(|w| w.expiry.0)
        .filter(|expiry| *expiry > now);
    let Some(expiry) = expiry else {
        return Ok(observe::observe(ctx, grant, spec, now).await?);
    };
    let left = Duration::try_from(expiry.duration_since(now)).unwrap_or_default();
    match tokio::time::timeout(left, observe::observe(ctx, grant, spec, now)).await {
        Ok(observed) => Ok(observed?),
        Err(_) => Ok(observe::observe(ctx, grant, spec, Timestamp::now()).await?),
    }
}

/// When access of grant `uid` was already revoked in AWS by a reconcile that could not record
/// it (the status write failed, the API server being away).
fn revocation(ctx: &Context, uid: &str) -> Option<Timestamp> {
    let revocations = ctx.revocations.lock().ok()?;
    revocations.get(uid).copied()
}

/// How long a revocation is remembered: far longer than any outage a grant waits out.
const REMEMBER_REVOCATIONS: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// Remembers when a grant's access was revoked in AWS, so that a stale copy of the grant (the
/// cache during an outage) neither revokes it again nor records a later time.
fn remember_revocation(ctx: &Context, uid: &str, at: Timestamp) {
    if let Ok(mut revocations) = ctx.revocations.lock() {
        let oldest = Timestamp::now() - REMEMBER_REVOCATIONS;
        revocations.retain(|_, when| *when > oldest);
        revocations.insert(uid.to_string(), at);
    }
}

/// The status to record before a first membership is given or a change request is opened: the
/// old status with the approval, the window and the request time decided now. If the status
/// written after acting is lost (the API server is down, the operator crashes), the next
/// reconcile finds the window the membership was given instead of choosing a later one, which
/// would lengthen the access, and sends the same change request as before.
fn decision_first(
    old: &ProductionAccessGrantStatus,
    plan: &GrantPlan,
) -> Option<ProductionAccessGrantStatus> {
    let adds = plan
        .actions
        .iter()
        .any(|a| matches!(a, plan::GrantAction::AddToGroup { .. }));
    let first_window = adds && old.window.is_none() && plan.status.window.is_some();
    let opens = plan
        .actions
        .iter()
        .any(|a| matches!(a, plan::GrantAction::OpenChangeRequest { .. }));
    let first_request = opens && old.change_request_asked_at.is_none();
    if !first_window && !first_request {
        return None;
    }
    let decided = &plan.status;
    Some(ProductionAccessGrantStatus {
        change_request_asked_at: decided.change_request_asked_at.clone(),
        approval_id: decided.approval_id.clone(),
        requested_by: decided.requested_by.clone(),
        approved_by: decided.approved_by.clone(),
        approved_at: decided.approved_at.clone(),
        approved: decided.approved.clone(),
        window: decided.window.clone(),
        ..old.clone()
    })
}

/// Splits the actions before the first one whose effect the recorded decision must precede:
/// opening the change request, the guard, the membership.
fn before_membership(
    actions: &[plan::GrantAction],
) -> (&[plan::GrantAction], &[plan::GrantAction]) {
    use plan::GrantAction::{AddToGroup, OpenChangeRequest, PutExpiryGuard};
    let at = actions
        .iter()
        .position(|a| {
            matches!(
                a,
                AddToGroup { .. } | PutExpiryGuard { .. } | OpenChangeRequest { .. }
            )
        })
        .unwrap_or(actions.len());
    actions.split_at(at)
}

/// Writes status, Events, the audit log line and metrics.
async fn report(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    plan: &GrantPlan,
    resolved: Option<&observe::Resolved>,
) -> Result<(), Error> {
    if grant.status.as_ref() != Some(&plan.status) && grant.metadata.deletion_timestamp.is_none() {
        write_status(ctx, grant, &plan.status).await?;
    }
    for event in &plan.events {
        let type_ = if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(grant, type_, event.reason, "Reconcile", event.note.clone())
            .await;
    }
    if let Some(lag) = plan.revoke_lag {
        ctx.metrics.revoke_lag.observe(lag);
    }
    if let Some(audit) = plan.audit {
        audit_line(grant, &plan.status, audit, resolved);
    }
    Ok(())
}

async fn write_status(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    status: &ProductionAccessGrantStatus,
) -> Result<(), Error> {
    let api: Api<ProductionAccessGrant> =
        Api::namespaced(ctx.client.clone(), &grant.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "prodaccess.io/v1alpha1",
        "kind": "ProductionAccessGrant",
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    let name = grant.name_any();
    let patch = Patch::Apply(&patch);
    match api.patch_status(&name, &params, &patch).await {
        Ok(written) => {
            note_version(ctx, &written);
            Ok(())
        }
        Err(source) => {
            forget_version(ctx, &grant.uid().unwrap_or_default());
            Err(Error::WriteStatus { name, source })
        }
    }
}

/// One structured line per grant and revocation, for the audit trail.
fn audit_line(
    grant: &ProductionAccessGrant,
    status: &ProductionAccessGrantStatus,
    audit: Audit,
    resolved: Option<&observe::Resolved>,
) {
    let window = status.window.as_ref();
    let approved = status.approved.as_ref();
    tracing::info!(
        target: "prodaccess::audit",
        audit = match audit { Audit::Granted => "granted", Audit::Revoked => "revoked" },
        grant = %format!("{}/{}", grant.namespace().unwrap_or_default(), grant.name_any()),
        user = approved.map_or(grant.spec.user.as_str(), |a| a.user.as_str()),
        group = resolved.map_or("", |r| r.terms.group_name.as_str()),
        account = resolved.and_then(|r| r.terms.account_id.as_deref()).unwrap_or(""),
        change_request = status.approval_id.as_deref().unwrap_or(""),
        approver = status.approved_by.as_deref().unwrap_or(""),
        requester = status.requested_by.as_deref().unwrap_or(""),
        start = %window.map(|w| w.start.0.to_string()).unwrap_or_default(),
        expiry = %window.map(|w| w.expiry.0.to_string()).unwrap_or_default(),
        phase = status.phase.as_str(),
        reason = %grant.spec.reason,
        "Access audit"
    );
}

/// Retry policy from the error class: a bad request waits for an edit, transient failures
/// retry soon with jitter, auth failures retry slowly.
pub fn error_policy(grant: Arc<ProductionAccessGrant>, err: &Error, ctx: Arc<Context>) -> Action {
    let class = err.class();
    let labels = crate::metrics::ErrorLabels {
        kind: "ProductionAccessGrant",
        category: class.as_str(),
    };
    ctx.metrics.reconcile_errors.get_or_create(&labels).inc();
    tracing::warn!(grant = %grant.name_any(), error = %err, category = class.as_str(),
        "Reconcile failed");
    let note = err.to_string();
    let ctx2 = ctx.clone();
    tokio::spawn(async move {
        ctx2.event(
            grant.as_ref(),
            EventType::Warning,
            class.as_str(),
            "Reconcile",
            note,
        )
        .await;
    });
    retry_after(class)
}

/// Requeue delay for a failure class, with jitter so that many objects do not retry at once.
pub fn retry_after(class: ErrorClass) -> Action {
    let base = match class {
        ErrorClass::Throttling | ErrorClass::Service | ErrorClass::Connectivity => 2,
        ErrorClass::Conflict => 1,
        ErrorClass::Auth => 60,
        ErrorClass::NotFound | ErrorClass::InvalidRequest => 300,
    };
    let jitter = rand::random::<u64>() % (base * 500 + 1);
    Action::requeue(Duration::from_millis(base * 1000 + jitter))
}

/// After an outage, revokes every grant whose window has passed before anything else runs.
/// Only grants matching `selector` (the controller's own label selector) are this operator's.
pub async fn revoke_overdue(
    ctx: Arc<Context>,
    in_scope: &(dyn Fn(&ProductionAccessGrant) -> bool + Sync),
) -> usize {
    let now = Timestamp::now();
    // From the cache, just listed at start-up or kept current by the watch since: listing all
    // grants again would double the operator's memory at the moment it starts.
    let overdue: Vec<_> = ctx
        .grants
        .state()
        .into_iter()
        .filter(|g| in_scope(g) && is_overdue(g, now))
        .collect();
    let count = overdue.len();
    let runs = overdue
        .into_iter()
        .map(|g| reconcile_isolated(g, ctx.clone()));
    let results = futures::stream::iter(runs)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for err in results.into_iter().filter_map(Result::err) {
        tracing::warn!(error = %err, "Overdue revocation failed; the controller will retry");
    }
    count
}

/// The grants whose access group lives in `account`.
fn grants_of_account(
    grants: &[Arc<ProductionAccessGrant>],
    groups: &[Arc<crate::crd::AccessGroup>],
    account: &str,
) -> Vec<kube::runtime::reflector::ObjectRef<ProductionAccessGrant>> {
    let in_account: Vec<String> = groups
        .iter()
        .filter(|g| g.spec.account_ref == account)
        .map(|g| g.name_any())
        .collect();
    grants
        .iter()
        .filter(|g| in_account.contains(&g.spec.access_group))
        .map(|g| kube::runtime::reflector::ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// What of an `AccessGroup` or `AwsAccount` decides whether its grants may be given: its spec
/// (by generation) and its readiness.
fn eligibility_terms<K>(object: &K) -> Option<u64>
where
    K: kube::Resource + HasReadyCondition,
{
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.meta().generation.hash(&mut hasher);
    object.ready().hash(&mut hasher);
    // Being deleted makes a group's or account's grants ineligible (and revoked).
    object.meta().deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// The Ready condition's status and reason, if the object has one.
trait HasReadyCondition {
    fn ready(&self) -> Option<(String, String)>;
}

fn ready_of(conditions: &[Condition]) -> Option<(String, String)> {
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((ready.status.clone(), ready.reason.clone()))
}

impl HasReadyCondition for crate::crd::AccessGroup {
    fn ready(&self) -> Option<(String, String)> {
        ready_of(&self.status.as_ref()?.conditions)
    }
}

impl HasReadyCondition for crate::crd::AwsAccount {
    fn ready(&self) -> Option<(String, String)> {
        ready_of(&self.status.as_ref()?.conditions)
    }
}

/// Grants reconciled at once.
const GRANT_CONCURRENCY: u16 = 64;

/// Runs the grant controller until the process stops, for the grants in the namespaces in
/// scope. It reconciles from the shared grant cache, which it does not copy.
pub async fn run(ctx: Arc<Context>) {
    let scope = ctx.clone();
    let in_scope =
        move |g: &ProductionAccessGrant| scope.settings.in_scope(g.metadata.namespace.as_deref());
    let overdue = revoke_overdue(ctx.clone(), &in_scope).await;
    if overdue > 0 {
        tracing::info!(count = overdue, "Revoked overdue grants before starting");
    }
    let store = ctx.grants.clone();
    let (grant_store, group_store) = (ctx.grants.clone(), ctx.groups.clone());
    // Only changes that can change a grant's eligibility reach the grants: a group's status
    // also lists its members, which every grant and revocation changes, and re-evaluating
    // every grant of the group on each of those would swamp the controller.
    let groups = ctx
        .groups
        .subscribe_owned()
        .predicate_filter(eligibility_terms, PredicateConfig::default());
    let accounts = ctx
        .accounts
        .subscribe_owned()
        .predicate_filter(eligibility_terms, PredicateConfig::default());
    let grants = ctx
        .grants
        .subscribe()
        .filter(move |g| futures::future::ready(in_scope(g)));
    // Grants the group controller found missing their member (see `group::reconcile`).
    let nudges = futures::stream::iter(ctx.grant_nudges.take()).flatten();
    Controller::for_shared_stream(grants, (*ctx.grants).clone())
        // Each reconcile talks to the API server (status, Events) over its own connection
        // while it runs; unbounded, 10,000 grants at once exhausted the API server's file
        // descriptors. Reconciles that wait for the AWS budget hold a slot, which is why the
        // limit is well above the number of grants that expire together in practice.
        .with_config(kube::runtime::controller::Config::default().concurrency(GRANT_CONCURRENCY))
        .watches_stream(groups, move |group| {
            // A group change (readiness, rules) re-evaluates the grants that use it.
            let name = group.name_any();
            store
                .state()
                .iter()
                .filter(|g| g.spec.access_group == name)
                .map(|g| kube::runtime::reflector::ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(accounts, move |account| {
            // So does an account change (readiness, namespace allow-list): a grant that failed
            // on the account's allow-list goes through once the admin allows its namespace.
            grants_of_account(
                &grant_store.state(),
                &group_store.state(),
                &account.name_any(),
            )
        })
        .reconcile_on(nudges)
        .shutdown_on_signal()
        .run(reconcile_isolated, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AccessGroup, AccessGroupSpec, GrantPhase, ProductionAccessGrantSpec};

    fn group(name: &str, account: &str) -> Option<Arc<AccessGroup>> {
        let spec: AccessGroupSpec = serde_json::from_value(json!({
            "accountRef": account, "groupName": "ProductionAccess"
        }))
        .ok()?;
        Some(Arc::new(AccessGroup::new(name, spec)))
    }

    fn grant(name: &str, group: &str) -> Option<Arc<ProductionAccessGrant>> {
        let spec: ProductionAccessGrantSpec = serde_json::from_value(json!({
            "accessGroup": group, "user": "alice", "reason": "check"
        }))
        .ok()?;
        let mut grant = ProductionAccessGrant::new(name, spec);
        grant.metadata.namespace = Some("ops".into());
        Some(Arc::new(grant))
    }

    /// `grant` in `phase` with a recorded window that ends (and, for brevity, starts) at
    /// `expiry`.
    fn windowed(
        grant: &ProductionAccessGrant,
        phase: GrantPhase,
        expiry: Timestamp,
    ) -> ProductionAccessGrant {
        let mut g = grant.clone();
        let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(expiry);
        g.status = Some(ProductionAccessGrantStatus {
            phase,
            window: Some(crate::crd::GrantWindow {
                start: at.clone(),
                expiry: at,
            }),
            ..Default::default()
        });
        g
    }

    #[test]
    fn a_recorded_window_past_its_expiry_is_overdue_until_the_grant_is_finished() {
        let mut grant = grant("a", "prod").unwrap_or_else(|| unreachable!());
        let expiry = Timestamp::UNIX_EPOCH;
        let now = expiry + jiff::SignedDuration::from_secs(1);
        let with = |phase| windowed(&grant, phase, expiry);
        // Stopped after the window was recorded but before Active was written.
        assert!(is_overdue(&with(GrantPhase::Pending), now));
        assert!(is_overdue(&with(GrantPhase::Active), now));
        assert!(!is_overdue(&with(GrantPhase::Expired), now));
        assert!(!is_overdue(
            &with(GrantPhase::Active),
            expiry - jiff::SignedDuration::from_secs(1)
        ));
        Arc::make_mut(&mut grant).status = None;
        assert!(!is_overdue(&grant, now), "no window, nothing given");
    }

    #[test]
    fn pausing_holds_back_changes_but_never_the_end_of_access() {
        let base = grant("a", "prod").unwrap_or_else(|| unreachable!());
        let expiry = Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(100);
        let with = |phase, revoked| {
            let mut g = windowed(&base, phase, expiry);
            g.spec.revoked = revoked;
            g
        };
        let before = expiry - jiff::SignedDuration::from_secs(10);
        let after = expiry + jiff::SignedDuration::from_secs(1);
        // Active and paused: left alone, but woken just after its expiry.
        let wait = paused_wait(&with(GrantPhase::Active, false), before);
        assert_eq!(wait, Some(Action::requeue(Duration::from_millis(10_100))));
        // Expired while paused, revoked while paused: revoked as usual.
        assert_eq!(paused_wait(&with(GrantPhase::Active, false), after), None);
        assert_eq!(paused_wait(&with(GrantPhase::Active, true), before), None);
        // Finished: nothing to wake for.
        let done = paused_wait(&with(GrantPhase::Expired, false), after);
        assert_eq!(done, Some(Action::await_change()));
        let mut deleting = with(GrantPhase::Active, false);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(before));
        assert_eq!(paused_wait(&deleting, before), None);
    }

    #[test]
    fn only_spec_and_readiness_changes_of_a_group_reach_its_grants() {
        let base = group("prod", "jump").unwrap_or_else(|| unreachable!());
        let mut group = base.as_ref().clone();
        group.metadata.generation = Some(1);
        let terms = |g: &AccessGroup| eligibility_terms(g);
        let before = terms(&group);
        let mut status = crate::crd::AccessGroupStatus {
            members: vec!["alice".into()],
            ..Default::default()
        };
        group.status = Some(status.clone());
        assert_eq!(
            terms(&group),
            before,
            "a new member changes nothing for grants"
        );
        status.conditions.push(Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Ready".into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        });
        group.status = Some(status);
        let ready = terms(&group);
        assert_ne!(ready, before, "readiness does");
        group.metadata.generation = Some(2);
        assert_ne!(terms(&group), ready, "and so does the spec");
    }

    #[test]
    fn an_account_change_reaches_the_grants_of_its_groups() {
        let groups: Vec<_> = [group("prod", "jump"), group("stage", "other")]
            .into_iter()
            .flatten()
            .collect();
        let grants: Vec<_> = [grant("a", "prod"), grant("b", "stage"), grant("c", "prod")]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!((groups.len(), grants.len()), (2, 3));
        let names: Vec<String> = grants_of_account(&grants, &groups, "jump")
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["a", "c"]);
        assert!(grants_of_account(&grants, &groups, "gone").is_empty());
    }

    mod decision_first {
        use super::super::*;
        use crate::crd::{ApprovedTerms, GrantPhase, GrantWindow};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        use plan::GrantAction;

        fn planned(actions: Vec<GrantAction>, window: bool) -> GrantPlan {
            let at = Time(Timestamp::UNIX_EPOCH);
            let status = ProductionAccessGrantStatus {
                phase: GrantPhase::Active,
                approved_at: Some(at.clone()),
                approved: Some(ApprovedTerms {
                    user: "alice".into(),
                    access_group: "production".into(),
                    approval_id: String::new(),
                    duration_seconds: 60,
                }),
                window: window.then(|| GrantWindow {
                    start: at.clone(),
                    expiry: at,
                }),
                ..Default::default()
            };
            GrantPlan {
                actions,
                status,
                requeue: None,
                events: Vec::new(),
                audit: None,
                revoke_lag: None,
            }
        }

        #[test]
        fn the_first_membership_is_preceded_by_its_recorded_window() {
            let old = ProductionAccessGrantStatus::default();
            let expiry = Timestamp::UNIX_EPOCH;
            let actions = vec![
                GrantAction::ClaimApproval {
                    approval_id: "cr".into(),
                    until: expiry,
                },
                GrantAction::PutExpiryGuard {
                    expiry,
                    send_by: expiry,
                },
                GrantAction::AddToGroup { send_by: expiry },
            ];
            let plan = planned(actions.clone(), true);
            let decided = decision_first(&old, &plan);
            let decided = decided.unwrap_or_default();
            assert_eq!(decided.phase, GrantPhase::Pending);
            assert_eq!(decided.window, plan.status.window);
            assert_eq!(decided.approved, plan.status.approved);
            let (claim, give) = before_membership(&actions);
            assert_eq!(claim, &actions[..1]);
            assert_eq!(give, &actions[1..]);
        }

        #[test]
        fn nothing_is_written_first_when_the_window_is_known_or_nothing_is_given() {
            let plan = planned(
                vec![GrantAction::AddToGroup {
                    send_by: Timestamp::UNIX_EPOCH,
                }],
                true,
            );
            let known = plan.status.clone();
            assert_eq!(decision_first(&known, &plan), None);
            let revoke = planned(vec![GrantAction::RemoveFromGroup], true);
            assert_eq!(
                decision_first(&ProductionAccessGrantStatus::default(), &revoke),
                None
            );
        }
    }
}
