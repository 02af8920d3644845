//! The `AccessGroup` controller: keeps the IAM group and its session policy in their declared
//! state, reports members and active grants, and in exclusive groups removes members that no
//! active grant accounts for.

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::{classify, error_message, AwsClients, ErrorClass};
use crate::controller::grant::retry_after;
use crate::controller::Context;
use crate::controller::{in_use, peers};
use crate::crd::{
    parse_duration, partition_of_region, set_condition, AccessGroup, AccessGroupStatus, AwsAccount,
    ConditionExt, ConditionStatus as Cs, GrantPhase, ProductionAccessGrant, SessionPolicy,
};

/// IAM's limit on the inline policies of one group, in characters without whitespace.
pub const GROUP_POLICY_LIMIT: usize = 5120;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to get IAM group {group}: {message}")]
    GetGroup {
        group: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to create IAM group {group}: {message}")]
    CreateGroup {
        group: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to read the session policy of {group}: {message}")]
    GetGroupPolicy {
        group: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to write the session policy of {group}: {message}")]
    PutGroupPolicy {
        group: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to remove {user} from {group}: {message}")]
    RemoveUserFromGroup {
        user: String,
        group: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to write the status of access group {name}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update the finalizer of access group {name}")]
    Finalizer {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::GetGroup { class, .. }
            | Self::CreateGroup { class, .. }
            | Self::GetGroupPolicy { class, .. }
            | Self::PutGroupPolicy { class, .. }
            | Self::RemoveUserFromGroup { class, .. } => *class,
            Self::WriteStatus { .. } | Self::Finalizer { .. } => ErrorClass::Conflict,
        }
    }
}

/// Checks what the schema cannot say about the session policy: jump host tags as AWS allows
/// them, and a generated document within IAM's size limit. A group that fails here is not
/// Ready, and the operator makes no AWS call for it.
pub fn check_session_policy(
    policy: &SessionPolicy,
    region: &str,
    account: &str,
) -> Result<(), (&'static str, String)> {
    if !policy.managed {
        return Ok(());
    }
    for (key, value) in &policy.jump_host_tags {
        let key_len = key.chars().count();
        if !(1..=128).contains(&key_len) || !tag_text(key) || key.starts_with("aws:") {
            let message = format!(
                "jumpHostTags key {key:?} is not a tag key AWS allows (1 to 128 letters, digits, \
                 spaces and _.:/=+-@, not starting with aws:)."
            );
            return Err(("InvalidSessionPolicy", message));
        }
        if value.chars().count() > 256 || !tag_text(value) {
            let message = format!(
                "jumpHostTags value of {key:?} is not a tag value AWS allows (up to 256 letters, \
                 digits, spaces and _.:/=+-@)."
            );
            return Err(("InvalidSessionPolicy", message));
        }
    }
    let document = session_policy_document(policy, region, account).to_string();
    let size = document.chars().filter(|c| !c.is_whitespace()).count();
    if size > GROUP_POLICY_LIMIT {
        let message = format!(
            "The session policy would be {size} characters; IAM allows {GROUP_POLICY_LIMIT} per \
             group. List fewer jump hosts, or select them with jumpHostTags."
        );
        return Err(("SessionPolicyTooLarge", message));
    }
    Ok(())
}

fn tag_text(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// The session policy document generated from the structured fields.
pub fn session_policy_document(policy: &SessionPolicy, region: &str, account: &str) -> Value {
    let partition = partition_of_region(region);
    let instances: Vec<String> = if policy.jump_host_instance_ids.is_empty() {
        vec![format!("arn:{partition}:ec2:{region}:{account}:instance/*")]
    } else {
        let arn = |id: &String| format!("arn:{partition}:ec2:{region}:{account}:instance/{id}");
        policy.jump_host_instance_ids.iter().map(arn).collect()
    };
    let documents: Vec<String> = policy
        .documents
        .iter()
        .map(|d| format!("arn:{partition}:ssm:{region}::document/{d}"))
        .collect();
    let mut condition = serde_json::Map::new();
    if policy.require_mfa {
        condition.insert(
            "Bool".into(),
            json!({ "aws:MultiFactorAuthPresent": "true" }),
        );
    }
    let mut instance_condition = condition.clone();
    if !policy.jump_host_tags.is_empty() {
        let tags: serde_json::Map<String, Value> = policy
            .jump_host_tags
            .iter()
            .map(|(k, v)| (format!("ssm:resourceTag/{k}"), Value::String(v.clone())))
            .collect();
        instance_condition.insert("StringEquals".into(), Value::Object(tags));
    }
    let with_condition = |mut statement: Value, condition: &serde_json::Map<String, Value>| {
        if !condition.is_empty() {
            statement["Condition"] = Value::Object(condition.clone());
        }
        statement
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [
            with_condition(json!({
                "Sid": "StartSessionOnJumpHosts",
                "Effect": "Allow",
                "Action": ["ssm:StartSession"],
                "Resource": instances,
            }), &instance_condition),
            with_condition(json!({
                "Sid": "StartSessionWithDocuments",
                "Effect": "Allow",
                "Action": ["ssm:StartSession"],
                "Resource": documents,
            }), &condition),
            with_condition(json!({
                "Sid": "ManageSessions",
                "Effect": "Allow",
                "Action": ["ssm:ResumeSession", "ssm:DescribeSessions", "ssm:TerminateSession"],
                "Resource": "*",
            }), &condition),
        ]
    })
}

/// Decodes the URL-encoded policy document IAM returns.
pub fn decode_policy(encoded: &str) -> Option<Value> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).ok()?;
    serde_json::from_str(&text)
        .ok()
        .or_else(|| serde_json::from_str(encoded).ok())
}

struct Observed {
    arn: Option<String>,
    members: Vec<String>,
    policy: Option<Value>,
}

async fn observe(
    ctx: &Context,
    clients: &AwsClients,
    group: &AccessGroup,
) -> Result<Option<Observed>, Error> {
    let name = &group.spec.group_name;
    let read = ctx
        .shared
        .group(clients, &group.spec.account_ref, name)
        .await;
    let read = read.map_err(|err| Error::GetGroup {
        group: name.clone(),
        class: err.class,
        message: err.message,
    })?;
    let Some(read) = read else {
        return Ok(None);
    };
    let arn = Some(read.arn);
    let members = read.members.into_iter().collect();
    let policy_name = &group.spec.session_policy.policy_name;
    let policy = match clients
        .iam
        .get_group_policy()
        .group_name(name)
        .policy_name(policy_name)
        .send()
        .await
    {
        Ok(out) => decode_policy(out.policy_document()),
        Err(err) if classify(&err) == ErrorClass::NotFound => None,
        Err(err) => {
            return Err(Error::GetGroupPolicy {
                group: name.clone(),
                class: classify(&err),
                message: error_message(&err),
            })
        }
    };
    Ok(Some(Observed {
        arn,
        members,
        policy,
    }))
}

/// The grants live in a group right now, as their status says.
struct Granted {
    /// Users who should be members.
    users: BTreeSet<String>,
    /// `namespace/name` of each live grant, sorted, for the group's status.
    names: Vec<String>,
    /// Each live grant with its user.
    grants: Vec<(String, ObjectRef<ProductionAccessGrant>)>,
}

fn granted_users(ctx: &Context, group: &str, now: Timestamp) -> Granted {
    let mut granted = Granted {
        users: BTreeSet::new(),
        names: Vec::new(),
        grants: Vec::new(),
    };
    for grant in ctx.grants.state() {
        let Some(status) = grant.status.as_ref() else {
            continue;
        };
        let Some(approved) = status.approved.as_ref() else {
            continue;
        };
        let live = status.phase == GrantPhase::Active
            && status
                .window
                .as_ref()
                .is_some_and(|w| w.start.0 <= now && now < w.expiry.0);
        if live && approved.access_group == group {
            granted.users.insert(approved.user.clone());
            granted.names.push(format!(
                "{}/{}",
                grant.namespace().unwrap_or_default(),
                grant.name_any()
            ));
            let grant_ref = ObjectRef::from_obj(grant.as_ref());
            granted.grants.push((approved.user.clone(), grant_ref));
        }
    }
    granted.names.sort();
    granted
}

/// What a group's last full pass (the one that reads AWS and corrects it) was made for.
#[derive(Debug)]
pub struct FullPass {
    at: Instant,
    generation: Option<i64>,
    account_version: Option<String>,
}

/// The account's version, so that any change to the account makes the next pass a full one.
fn account_version(account: Option<&Arc<AwsAccount>>) -> Option<String> {
    account.and_then(|a| a.metadata.resource_version.clone())
}

/// Between full passes, a grant's phase change (see [`active_changes`]) only brings the
/// group's member list and active grants up to date, from the shared membership read (which
/// holds the operator's own changes since) and the grant cache, without an AWS call: `MEMBERS`
/// follows grants at once instead of a resync later. `None` when a full pass is due: the
/// resync period is up, the spec or the account changed, or the group is not Ready.
async fn refresh_members(
    ctx: &Context,
    group: &AccessGroup,
    account: Option<&Arc<AwsAccount>>,
) -> Result<Option<Action>, Error> {
    let uid = group.metadata.uid.clone().unwrap_or_default();
    let since = match ctx.group_passes.lock() {
        Ok(passes) => passes.get(&uid).and_then(|pass| {
            let same = pass.generation == group.metadata.generation
                && pass.account_version == account_version(account);
            same.then(|| pass.at.elapsed())
        }),
        Err(_) => None,
    };
    // Within a second of the full pass, it might as well be the full pass.
    let left = since.and_then(|since| ctx.settings.grant_resync.checked_sub(since));
    let Some(left) = left.filter(|left| *left > Duration::from_secs(1)) else {
        return Ok(None);
    };
    let Some(mut status) = group.status.clone() else {
        return Ok(None);
    };
    if status.observed_generation != group.metadata.generation
        || !status.conditions.as_slice().is_true("Ready")
    {
        return Ok(None);
    }
    let account_name = &group.spec.account_ref;
    let cached = ctx
        .shared
        .cached_members(account_name, &group.spec.group_name)
        .await;
    let Some(members) = cached else {
        return Ok(None);
    };
    let granted = granted_users(ctx, name_of(group), Timestamp::now());
    status.member_count = members.len() as i64;
    status.members = members.into_iter().collect();
    status.active_grants = granted.names;
    write_status(ctx, group, status).await?;
    Ok(Some(Action::requeue(left)))
}

/// Records a full pass of `group`, and forgets passes of groups long gone.
fn record_full_pass(ctx: &Context, group: &AccessGroup, account_version: Option<String>) {
    let Ok(mut passes) = ctx.group_passes.lock() else {
        return;
    };
    let stale = ctx.settings.grant_resync * 10;
    passes.retain(|_, pass| pass.at.elapsed() < stale);
    let pass = FullPass {
        at: Instant::now(),
        generation: group.metadata.generation,
        account_version,
    };
    passes.insert(group.metadata.uid.clone().unwrap_or_default(), pass);
}

pub async fn reconcile(group: Arc<AccessGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let labels = crate::metrics::KindLabels {
        kind: "AccessGroup",
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let api: Api<AccessGroup> = Api::all(ctx.client.clone());
    let finalizer_failed = |source| Error::Finalizer {
        name: group.name_any(),
        source,
    };
    if group.metadata.deletion_timestamp.is_some() {
        return release(&ctx, &api, &group).await.map_err(finalizer_failed);
    }
    in_use::set_finalizer(&api, group.as_ref(), true)
        .await
        .map_err(finalizer_failed)?;
    let now = Timestamp::now();
    let generation = group.metadata.generation;
    let mut status = group.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let account = ctx
        .accounts
        .get(&ObjectRef::<AwsAccount>::new(&group.spec.account_ref));
    if let Some(action) = refresh_members(&ctx, &group, account.as_ref()).await? {
        return Ok(action);
    }
    let version = account_version(account.as_ref());
    let ready_account = account.filter(|a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.conditions.as_slice().is_true("Ready"))
    });
    let durations = parse_duration(&group.spec.max_duration)
        .and_then(|max| parse_duration(&group.spec.default_duration).map(|d| (max, d)));
    let not_ready = |status: &mut AccessGroupStatus, reason: &str, message: String| {
        set_condition(
            &mut status.conditions,
            "Ready",
            Cs::False,
            reason,
            message,
            generation,
            now,
        );
    };
    let mut converged = false;
    match (&ready_account, durations) {
        (None, _) => {
            let msg = format!(
                "AwsAccount {:?} is missing or not Ready.",
                group.spec.account_ref
            );
            not_ready(&mut status, "AccountNotReady", msg);
        }
        (_, Err(err)) => not_ready(&mut status, "InvalidDuration", format!("{err}.")),
        (Some(_), Ok((max, default))) if default > max => {
            let msg = "defaultDuration is longer than maxDuration.".to_string();
            not_ready(&mut status, "InvalidDuration", msg);
        }
        (Some(account), Ok(_)) => {
            let id = account
                .status
                .as_ref()
                .and_then(|s| s.account_id.as_deref());
            let policy = &group.spec.session_policy;
            let owner = managed_by_another(&group, &ctx.groups.state(), &ctx.accounts.state());
            match (
                owner,
                check_session_policy(policy, &account.spec.region, id.unwrap_or_default()),
            ) {
                (Some(owner), _) => {
                    let msg = format!(
                        "IAM group {} in this account is already managed by AccessGroup {owner:?}; \
                         two groups managing one would undo each other's members.",
                        group.spec.group_name
                    );
                    not_ready(&mut status, "GroupConflict", msg);
                }
                (None, Err((reason, message))) => not_ready(&mut status, reason, message),
                (None, Ok(())) => {
                    converge(&ctx, &group, account, &mut status, now).await?;
                    converged = true;
                }
            }
        }
    }
    write_status(&ctx, &group, status).await?;
    if converged {
        record_full_pass(&ctx, &group, version);
    }
    Ok(Action::requeue(ctx.settings.grant_resync))
}

/// A deleted group stays while a grant may hold access through it: those grants follow the
/// group's deletion and are revoked, then it goes.
async fn release(
    ctx: &Context,
    api: &Api<AccessGroup>,
    group: &AccessGroup,
) -> Result<Action, kube::Error> {
    if !in_use::held(group) {
        return Ok(Action::await_change());
    }
    let name = group.name_any();
    let grants = ctx.grants.state();
    let holding = grants
        .iter()
        .filter(|g| g.spec.access_group == name && in_use::holds_access(g))
        .count();
    if holding == 0 {
        in_use::set_finalizer(api, group, false).await?;
        return Ok(Action::await_change());
    }
    tracing::info!(group = %name, grants = holding, "Deleted group waits for its grants");
    Ok(Action::requeue(Duration::from_secs(2)))
}

/// The older `AccessGroup` that manages the same IAM group as `group` (IAM group names are
/// case-insensitive) in the same AWS account, whether through the same `AwsAccount` or another
/// one for the same account ID. Only the oldest (then first by name) acts; the others would
/// fight it, each removing the members the other grants when either is `exclusive`.
fn managed_by_another(
    group: &AccessGroup,
    groups: &[Arc<AccessGroup>],
    accounts: &[Arc<AwsAccount>],
) -> Option<String> {
    let ours = iam_group(group, accounts);
    let owner = peers::older_claimant(group, groups, |other| iam_group(other, accounts) == ours);
    owner.map(|other| other.name_any())
}

/// The IAM group an `AccessGroup` manages: its account (see [`peers::account_key`]) and its
/// name in lower case, as IAM compares names.
pub fn iam_group(group: &AccessGroup, accounts: &[Arc<AwsAccount>]) -> (String, String) {
    let account = peers::account_key(&group.spec.account_ref, accounts);
    (account, group.spec.group_name.to_ascii_lowercase())
}

async fn converge(
    ctx: &Context,
    group: &AccessGroup,
    account: &AwsAccount,
    status: &mut AccessGroupStatus,
    now: Timestamp,
) -> Result<(), Error> {
    let clients = ctx.aws.for_account(&account.spec, "group").await;
    let name = &group.spec.group_name;
    let generation = group.metadata.generation;
    let mut observed = observe(ctx, &clients, group).await?;
    if observed.is_none() && group.spec.create_group {
        let created = clients.iam.create_group().group_name(name).send().await;
        match created {
            Ok(_) => {}
            Err(err) if classify(&err) == ErrorClass::Conflict => {}
            Err(err) => {
                return Err(Error::CreateGroup {
                    group: name.clone(),
                    class: classify(&err),
                    message: error_message(&err),
                })
            }
        }
        let note = format!("Created IAM group {name}.");
        ctx.event(group, EventType::Normal, "GroupCreated", "Reconcile", note)
            .await;
        observed = observe(ctx, &clients, group).await?;
    }
    let Some(observed) = observed else {
        let msg = format!("IAM group {name} does not exist and createGroup is false.");
        set_condition(
            &mut status.conditions,
            "Ready",
            Cs::False,
            "GroupNotFound",
            msg,
            generation,
            now,
        );
        return Ok(());
    };
    let account_id = account
        .status
        .as_ref()
        .and_then(|s| s.account_id.clone())
        .unwrap_or_default();
    let policy = &group.spec.session_policy;
    if policy.managed {
        let desired = session_policy_document(policy, &account.spec.region, &account_id);
        if observed.policy.as_ref() != Some(&desired) {
            let put = clients
                .iam
                .put_group_policy()
                .group_name(name)
                .policy_name(&policy.policy_name)
                .policy_document(desired.to_string());
            put.send().await.map_err(|err| Error::PutGroupPolicy {
                group: name.clone(),
                class: classify(&err),
                message: error_message(&err),
            })?;
            let (reason, note) = match observed.policy {
                Some(_) => (
                    "SessionPolicyRestored",
                    format!("Restored session policy of {name}."),
                ),
                None => (
                    "SessionPolicyCreated",
                    format!("Wrote session policy of {name}."),
                ),
            };
            let type_ = if observed.policy.is_some() {
                EventType::Warning
            } else {
                EventType::Normal
            };
            ctx.event(group, type_, reason, "Reconcile", note).await;
        }
    }
    let Granted {
        users: granted,
        names: active,
        grants,
    } = granted_users(ctx, name_of(group), now);
    // A live grant whose user this fresh read misses lost its member outside the operator:
    // its reconcile restores it now rather than at its own next resync, up to a resync later.
    for (user, grant) in grants {
        if !observed.members.contains(&user) {
            tracing::info!(group = %name, %user, grant = %grant, "Member missing; nudging grant");
            ctx.grant_nudges.send(grant);
        }
    }
    let mut members = observed.members.clone();
    if group.spec.exclusive {
        let strays: Vec<String> = members
            .iter()
            .filter(|m| !granted.contains(*m))
            .filter(|m| !ctx.shared.just_added(&group.spec.account_ref, name, m))
            .cloned()
            .collect();
        for user in &strays {
            let result = clients
                .iam
                .remove_user_from_group()
                .group_name(name)
                .user_name(user);
            match result.send().await {
                Ok(_) => {}
                Err(err) if classify(&err) == ErrorClass::NotFound => {}
                Err(err) => {
                    return Err(Error::RemoveUserFromGroup {
                        user: user.clone(),
                        group: name.clone(),
                        class: classify(&err),
                        message: error_message(&err),
                    })
                }
            }
        }
        if !strays.is_empty() {
            let note = format!(
                "Removed members without an active grant: {}.",
                strays.join(", ")
            );
            tracing::warn!(group = %name, users = ?strays, "Removed members without a grant");
            ctx.event(
                group,
                EventType::Warning,
                "UngrantedMembersRemoved",
                "Reconcile",
                note,
            )
            .await;
            members.retain(|m| !strays.contains(m));
            for user in &strays {
                ctx.shared
                    .set_member(&group.spec.account_ref, name, user, false)
                    .await;
            }
        }
    }
    members.sort();
    status.group_arn = observed.arn;
    status.member_count = members.len() as i64;
    status.members = members;
    status.active_grants = active;
    let msg = format!("IAM group {name} and its session policy are in place.");
    set_condition(
        &mut status.conditions,
        "Ready",
        Cs::True,
        "Ready",
        msg,
        generation,
        now,
    );
    Ok(())
}

fn name_of(group: &AccessGroup) -> &str {
    // Grants name the AccessGroup object, not the IAM group.
    group.metadata.name.as_deref().unwrap_or_default()
}

async fn write_status(
    ctx: &Context,
    group: &AccessGroup,
    status: AccessGroupStatus,
) -> Result<(), Error> {
    if group.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // The approval ledger is written by grant reconciles under optimistic locking; leave it out
    // of this apply so the two writers never fight over it.
    let mut value = serde_json::to_value(&status).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("consumedApprovals");
    }
    let api: Api<AccessGroup> = Api::all(ctx.client.clone());
    let patch =
        json!({ "apiVersion": "prodaccess.io/v1alpha1", "kind": "AccessGroup", "status": value });
    let params = PatchParams::apply(super::grant::MANAGER).force();
    api.patch_status(&group.name_any(), &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::WriteStatus {
            name: group.name_any(),
            source,
        })?;
    Ok(())
}

fn error_policy(group: Arc<AccessGroup>, err: &Error, ctx: Arc<Context>) -> Action {
    let class = err.class();
    let labels = crate::metrics::ErrorLabels {
        kind: "AccessGroup",
        category: class.as_str(),
    };
    ctx.metrics.reconcile_errors.get_or_create(&labels).inc();
    tracing::warn!(group = %group.name_any(), error = %err, "Reconcile failed");
    retry_after(class)
}

/// Runs the controller until the process stops, from the shared cache (already scoped by the
/// instance's label selector).
pub async fn run(ctx: Arc<Context>) {
    let store = ctx.groups.clone();
    Controller::for_shared_stream(ctx.groups.subscribe(), store.clone())
        // Bounded like the other controllers, so that many groups cannot flood the API server.
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .watches_stream(ctx.accounts.subscribe_owned(), move |account| {
            let name = account.name_any();
            store
                .state()
                .iter()
                .filter(|g| g.spec.account_ref == name)
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_on(active_changes(ctx.grants.subscribe()))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The group of every grant that becomes Active or stops being Active, so that the group's
/// member list follows (see [`refresh_members`]). Remembers only the grants Active now.
fn active_changes(
    grants: impl Stream<Item = Arc<ProductionAccessGrant>> + Send + 'static,
) -> impl Stream<Item = ObjectRef<AccessGroup>> + Send + 'static {
    let mut active = HashSet::new();
    grants.filter_map(move |grant| {
        let uid = grant.metadata.uid.clone().unwrap_or_default();
        let is_active = grant
            .status
            .as_ref()
            .is_some_and(|s| s.phase == GrantPhase::Active);
        let changed = if is_active {
            active.insert(uid)
        } else {
            active.remove(&uid)
        };
        let group = ObjectRef::new(&grant.spec.access_group);
        futures::future::ready(changed.then_some(group))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access_group(name: &str, account: &str, iam_group: &str, second: i64) -> Arc<AccessGroup> {
        let spec = serde_json::from_value(serde_json::json!({
            "accountRef": account, "groupName": iam_group
        }));
        let mut group = AccessGroup::new(name, spec.unwrap_or_else(|_| unreachable!()));
        let created = Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH);
        group.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created),
        );
        Arc::new(group)
    }

    fn aws_account(name: &str, id: &str) -> Arc<AwsAccount> {
        let spec = serde_json::from_value(serde_json::json!({
            "roleArn": format!("arn:aws:iam::{id}:role/prodaccess"),
            "externalId": "ext-id", "region": "ap-northeast-1"
        }));
        let mut account = AwsAccount::new(name, spec.unwrap_or_else(|_| unreachable!()));
        account.status = Some(crate::crd::AwsAccountStatus {
            account_id: Some(id.to_string()),
            ..Default::default()
        });
        Arc::new(account)
    }

    #[test]
    fn only_the_oldest_group_manages_an_iam_group_in_an_account() {
        let accounts = [
            aws_account("jump", "111111111111"),
            aws_account("jump-2", "111111111111"),
        ];
        let groups = [
            access_group("newer", "jump", "productionaccess", 20),
            access_group("oldest", "jump", "ProductionAccess", 10),
            access_group("same-id", "jump-2", "ProductionAccess", 30),
            access_group("other-group", "jump", "Readers", 5),
        ];
        let owner = |name: &str| {
            let group = groups.iter().find(|g| g.name_any() == name)?;
            managed_by_another(group, &groups, &accounts)
        };
        assert_eq!(owner("oldest"), None);
        assert_eq!(owner("newer").as_deref(), Some("oldest"));
        assert_eq!(owner("same-id").as_deref(), Some("oldest"));
        assert_eq!(owner("other-group"), None);
    }
    use std::collections::BTreeMap;

    #[test]
    fn session_policy_scopes_instances_documents_and_mfa() {
        let policy = SessionPolicy {
            jump_host_instance_ids: vec!["i-0123456789abcdef0".into()],
            ..SessionPolicy::default()
        };
        let doc = session_policy_document(&policy, "ap-northeast-1", "111111111111");
        let text = doc.to_string();
        assert!(
            text.contains("arn:aws:ec2:ap-northeast-1:111111111111:instance/i-0123456789abcdef0")
        );
        assert!(
            text.contains("arn:aws:ssm:ap-northeast-1::document/AWS-StartPortForwardingSession")
        );
        assert!(text.contains("aws:MultiFactorAuthPresent"));
        let no_mfa = SessionPolicy {
            require_mfa: false,
            ..SessionPolicy::default()
        };
        let text = session_policy_document(&no_mfa, "r", "1").to_string();
        assert!(!text.contains("MultiFactor"));
        assert!(text.contains("ssm:DescribeSessions"));
    }

    #[test]
    fn session_policy_checks_tags_and_size_before_aws() {
        let region = "ap-northeast-1";
        let ok = SessionPolicy {
            jump_host_tags: BTreeMap::from([("Rôle".into(), "jump host".into())]),
            ..SessionPolicy::default()
        };
        assert_eq!(check_session_policy(&ok, region, "111111111111"), Ok(()));
        let tags = |key: &str, value: &str| SessionPolicy {
            jump_host_tags: BTreeMap::from([(key.to_string(), value.to_string())]),
            ..SessionPolicy::default()
        };
        let reason = |p: &SessionPolicy| check_session_policy(p, region, "1").map_err(|e| e.0);
        assert_eq!(reason(&tags("", "x")), Err("InvalidSessionPolicy"));
        assert_eq!(reason(&tags("role*", "x")), Err("InvalidSessionPolicy"));
        assert_eq!(reason(&tags("aws:role", "x")), Err("InvalidSessionPolicy"));
        assert_eq!(
            reason(&tags("Role", &"j".repeat(257))),
            Err("InvalidSessionPolicy")
        );
        let many = SessionPolicy {
            jump_host_instance_ids: (0..100)
                .map(|n| format!("i-0a1b2c3d4e5f6{n:04x}"))
                .collect(),
            ..SessionPolicy::default()
        };
        assert_eq!(reason(&many), Err("SessionPolicyTooLarge"));
        let unmanaged = SessionPolicy {
            managed: false,
            ..many
        };
        assert_eq!(reason(&unmanaged), Ok(()));
    }

    #[test]
    fn session_policy_arns_name_the_regions_partition() {
        let text =
            session_policy_document(&SessionPolicy::default(), "cn-north-1", "1").to_string();
        assert!(text.contains("arn:aws-cn:ec2:cn-north-1:1:instance/*"));
        assert!(text.contains("arn:aws-cn:ssm:cn-north-1::document/"));
    }

    #[test]
    fn iam_url_encoded_policies_decode() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(
            decode_policy(encoded),
            Some(json!({"Version": "2012-10-17"}))
        );
        assert_eq!(decode_policy("{\"a\":1}"), Some(json!({"a": 1})));
        assert_eq!(decode_policy("%ZZ"), None);
    }
}
