//! Reads what a grant's plan depends on: its group and account from the caches, the approval,
//! user and membership from AWS, and the other grants from the cache.

use aws_sdk_ssm::types::AutomationExecution;
use jiff::Timestamp;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::facts::{
    ApprovalFacts, ApprovalRecord, ApprovalState, Eligibility, GrantFacts, GroupTerms, UserFacts,
};
use crate::aws::{classify, error_message, AwsClients, ErrorClass};
use crate::controller::Context;
use crate::crd::{
    parse_duration, AccessGroup, ApprovalMode, AwsAccount, ConditionExt, GrantPhase,
    ProductionAccessGrant, ProductionAccessGrantSpec,
};

/// Failures while observing. Each names the call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("failed to get IAM user {user}: {message}")]
    GetUser {
        user: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to list groups of IAM user {user}: {message}")]
    ListGroupsForUser {
        user: String,
        message: String,
        class: ErrorClass,
    },
    #[error(transparent)]
    Shared(crate::controller::shared::ReadError),
    #[error("failed to get approval {id}: {message}")]
    GetAutomationExecution {
        id: String,
        message: String,
        class: ErrorClass,
    },
}

impl ObserveError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::GetUser { class, .. }
            | Self::ListGroupsForUser { class, .. }
            | Self::GetAutomationExecution { class, .. } => *class,
            Self::Shared(err) => err.class,
        }
    }
}

/// The admin objects a grant resolved to, with the clients of their account.
pub struct Resolved {
    pub group: Arc<AccessGroup>,
    /// The account the group lives in; its name keys the shared observations.
    pub account: Arc<AwsAccount>,
    pub clients: Arc<AwsClients>,
    pub terms: GroupTerms,
}

/// Why a grant may not use its group: the reason, and the group and account with their
/// clients when both exist, so that access already given can still be taken away.
pub struct Refused {
    pub eligibility: Eligibility,
    pub located: Option<Resolved>,
}

/// Resolves the grant's group and account and checks that the grant may use them.
pub async fn resolve(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    spec: &ProductionAccessGrantSpec,
) -> Result<Resolved, Refused> {
    let ineligible = |reason, message: String| Refused {
        eligibility: Eligibility::Ineligible { reason, message },
        located: None,
    };
    let group_key = kube::runtime::reflector::ObjectRef::<AccessGroup>::new(&spec.access_group);
    let Some(group) = ctx.groups.get(&group_key) else {
        let msg = format!("AccessGroup {:?} does not exist.", spec.access_group);
        return Err(ineligible("GroupNotFound", msg));
    };
    let account_key =
        kube::runtime::reflector::ObjectRef::<AwsAccount>::new(&group.spec.account_ref);
    let Some(account) = ctx.accounts.get(&account_key) else {
        let msg = format!(
            "AwsAccount {:?} of the group does not exist.",
            group.spec.account_ref
        );
        return Err(ineligible("AccountNotFound", msg));
    };
    let (terms, refusal) = match check_use(grant, spec, &group, &account) {
        Ok(terms) => (terms, None),
        // Revoking needs only the IAM group's name and the account's clients: a grant that
        // gave access is revoked whatever made it ineligible (its namespace no longer allowed,
        // the account not Ready, the group invalid or being deleted).
        Err(eligibility) => {
            let terms = GroupTerms {
                group_name: group.spec.group_name.clone(),
                account_id: account.status.as_ref().and_then(|s| s.account_id.clone()),
                max_duration: std::time::Duration::ZERO,
                default_duration: std::time::Duration::ZERO,
                mode: group.spec.approval.mode,
                change_templates: Vec::new(),
                automation_documents: Vec::new(),
            };
            (terms, Some(eligibility))
        }
    };
    let clients = ctx.aws.for_account(&account.spec, "grant").await;
    let resolved = Resolved {
        group,
        account,
        clients,
        terms,
    };
    match refusal {
        None => Ok(resolved),
        Some(eligibility) => Err(Refused {
            eligibility,
            located: Some(resolved),
        }),
    }
}

/// Whether the grant may use this group and account, and on what terms.
// The error is the planner's own input type; this runs once per reconcile, so its size is fine.
#[allow(clippy::result_large_err)]
fn check_use(
    grant: &ProductionAccessGrant,
    spec: &ProductionAccessGrantSpec,
    group: &AccessGroup,
    account: &AwsAccount,
) -> Result<GroupTerms, Eligibility> {
    let namespace = grant.namespace().unwrap_or_default();
    let ineligible = |reason, message: String| Eligibility::Ineligible { reason, message };
    if group.metadata.deletion_timestamp.is_some() {
        let msg = format!("AccessGroup {:?} is being deleted.", spec.access_group);
        return Err(ineligible("GroupDeleted", msg));
    }
    if account.metadata.deletion_timestamp.is_some() {
        let msg = format!("AwsAccount {:?} is being deleted.", group.spec.account_ref);
        return Err(ineligible("AccountDeleted", msg));
    }
    if !group.allows_namespace(&namespace) || !account.allows_namespace(&namespace) {
        let msg = format!(
            "Namespace {namespace:?} may not use AccessGroup {:?} (both the group and its \
             account must allow it).",
            spec.access_group
        );
        return Err(ineligible("NamespaceNotAllowed", msg));
    }
    let ready = |conditions: Option<&Vec<_>>| {
        conditions.is_some_and(|c: &Vec<_>| c.as_slice().is_true("Ready"))
    };
    if !ready(account.status.as_ref().map(|s| &s.conditions)) {
        let msg = format!("AwsAccount {:?} is not Ready.", group.spec.account_ref);
        return Err(ineligible("AccountNotReady", msg));
    }
    if !ready(group.status.as_ref().map(|s| &s.conditions)) {
        let msg = format!("AccessGroup {:?} is not Ready.", spec.access_group);
        return Err(ineligible("GroupNotReady", msg));
    }
    group_terms(group, account)
}

// The error is the planner's own input type; this runs once per reconcile, so its size is fine.
#[allow(clippy::result_large_err)]
fn group_terms(group: &AccessGroup, account: &AwsAccount) -> Result<GroupTerms, Eligibility> {
    let parse = |text: &str, field: &str| {
        parse_duration(text).map_err(|err| Eligibility::Ineligible {
            reason: "GroupInvalid",
            message: format!("AccessGroup {}: spec.{field}: {err}", group.name_any()),
        })
    };
    Ok(GroupTerms {
        group_name: group.spec.group_name.clone(),
        account_id: account.status.as_ref().and_then(|s| s.account_id.clone()),
        max_duration: parse(&group.spec.max_duration, "maxDuration")?,
        default_duration: parse(&group.spec.default_duration, "defaultDuration")?,
        mode: group.spec.approval.mode,
        change_templates: group.spec.approval.change_templates.clone(),
        automation_documents: group.spec.approval.automation_documents.clone(),
    })
}

/// Gathers every fact the planner needs.
pub async fn observe(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    spec: &ProductionAccessGrantSpec,
    now: Timestamp,
) -> Result<(GrantFacts, Option<Resolved>), ObserveError> {
    let status = grant.status.clone().unwrap_or_default();
    let mut facts = GrantFacts {
        now,
        namespace: grant.namespace().unwrap_or_default(),
        name: grant.name_any(),
        uid: grant.uid().unwrap_or_default(),
        generation: grant.metadata.generation,
        deleting: grant.metadata.deletion_timestamp.is_some(),
        eligibility: Eligibility::Ineligible {
            reason: "Unknown",
            message: String::new(),
        },
        approval: ApprovalFacts::NoneGiven,
        user: UserFacts::Unknown,
        member: false,
        approval_used_by: None,
        other_active_until: None,
        revoked_earlier: None,
    };
    // A finished grant needs no AWS read, except to confirm its revocation shortly after.
    if status.phase.is_terminal() {
        if super::plan::confirming_for(&status, now).is_none() {
            return Ok((facts, None));
        }
        return confirm(ctx, grant, spec, facts).await;
    }
    let resolved = match resolve(ctx, grant, spec).await {
        Ok(resolved) => resolved,
        Err(refused) => {
            facts.eligibility = refused.eligibility;
            // An ineligible grant that was active is revoked without reading (removal is
            // idempotent), with the clients of the account it was given in.
            if status.phase == GrantPhase::Active {
                facts.member = true;
            }
            return Ok((facts, refused.located));
        }
    };
    facts.eligibility = Eligibility::Eligible(resolved.terms.clone());
    // Not only Active: a window is recorded just before access is given.
    let overdue = status.window.as_ref().is_some_and(|w| w.expiry.0 <= now);
    if overdue {
        // Revoked whatever AWS would say (removal is idempotent): no read, slow or failing,
        // may hold up the end of access.
        facts.member = true;
        facts.approval = ApprovalFacts::NotNeeded;
        facts.other_active_until = other_active_until(ctx, grant, spec, now);
        return Ok((facts, Some(resolved)));
    }
    let account = resolved.account.name_any();
    let resync = ctx.settings.grant_resync;
    if status.approved.is_some() {
        // Approved terms were checked against IAM and the approval when they were accepted;
        // what can change since is read in batches shared by every grant of the account.
        let withdrawn = ctx
            .shared
            .withdrawn_approvals(&resolved.clients, &account, resync);
        let withdrawn = withdrawn.await.map_err(ObserveError::Shared)?;
        facts.approval = match status.approved.as_ref().map(|a| a.approval_id.as_str()) {
            Some(id) if withdrawn.contains(id) => ApprovalFacts::Found(withdrawn_record(id)),
            _ => ApprovalFacts::NotNeeded,
        };
    } else {
        facts.user = get_user(&resolved.clients, &spec.user).await?;
        facts.approval = approval(&resolved, spec, &status).await?;
    }
    if !matches!(facts.user, UserFacts::Missing) {
        let group = &resolved.terms.group_name;
        // The group's reconcile reads membership every resync; grants take that read and read
        // themselves only when it is late.
        let max_age = resync + resync / 2;
        let members = ctx
            .shared
            .members(&resolved.clients, &account, group, max_age)
            .await;
        facts.member = members.map_err(ObserveError::Shared)?.contains(&spec.user);
    }
    let id = match &facts.approval {
        ApprovalFacts::Found(record) => Some(record.id.clone()),
        _ => None,
    };
    facts.approval_used_by = id.and_then(|id| approval_used_by(&resolved.group, &id, &facts.uid));
    facts.other_active_until = other_active_until(ctx, grant, spec, now);
    Ok((facts, Some(resolved)))
}

async fn get_user(clients: &AwsClients, user: &str) -> Result<UserFacts, ObserveError> {
    match clients.iam.get_user().user_name(user).send().await {
        Ok(out) => Ok(UserFacts::Exists {
            arn: out.user().map(|u| u.arn().to_string()).unwrap_or_default(),
        }),
        Err(err) if classify(&err) == ErrorClass::NotFound => Ok(UserFacts::Missing),
        Err(err) => Err(ObserveError::GetUser {
            user: user.to_string(),
            class: classify(&err),
            message: error_message(&err),
        }),
    }
}

async fn approval(
    resolved: &Resolved,
    spec: &ProductionAccessGrantSpec,
    status: &crate::crd::ProductionAccessGrantStatus,
) -> Result<ApprovalFacts, ObserveError> {
    if resolved.terms.mode == ApprovalMode::None {
        return Ok(ApprovalFacts::NotNeeded);
    }
    let approved_id = status.approved.as_ref().map(|a| a.approval_id.clone());
    let id = approved_id
        .or_else(|| {
            spec.approval
                .as_ref()
                .and_then(|a| a.id())
                .map(str::to_string)
        })
        .or_else(|| status.approval_id.clone());
    let Some(id) = id else {
        return Ok(ApprovalFacts::NoneGiven);
    };
    let out = resolved
        .clients
        .ssm
        .get_automation_execution()
        .automation_execution_id(&id)
        .send();
    match out.await {
        Ok(out) => match out.automation_execution() {
            Some(execution) => Ok(ApprovalFacts::Found(approval_record(&id, execution))),
            None => Ok(ApprovalFacts::NotFound(id)),
        },
        Err(err) if classify(&err) == ErrorClass::NotFound => Ok(ApprovalFacts::NotFound(id)),
        Err(err) => Err(ObserveError::GetAutomationExecution {
            id,
            class: classify(&err),
            message: error_message(&err),
        }),
    }
}

/// The record of an approval found among the withdrawn ones: enough for the planner to revoke.
fn withdrawn_record(id: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.to_string(),
        state: ApprovalState::Withdrawn,
        aws_status: "withdrawn (rejected, cancelled, failed or timed out)".to_string(),
        document: String::new(),
        is_change_request: false,
        requested_by: None,
        approvers: Vec::new(),
        decided_at: None,
        scheduled_start: None,
        scheduled_end: None,
        parameters: BTreeMap::new(),
    }
}

/// Reduces an execution to what decides a grant. Approvers come from the outputs of the
/// `aws:approve` step (`ApproverDecisions` / `ApprovalStatus`), as AWS reports them.
pub fn approval_record(id: &str, execution: &AutomationExecution) -> ApprovalRecord {
    let aws_status = execution
        .automation_execution_status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "Unknown".to_string());
    let approve_step = execution.step_executions().iter().find(|s| {
        s.action()
            .is_some_and(|a| a.eq_ignore_ascii_case("aws:approve"))
    });
    let outputs = approve_step
        .and_then(|s| s.outputs())
        .cloned()
        .unwrap_or_default();
    let step_approval = outputs
        .get("ApprovalStatus")
        .and_then(|v| v.first())
        .cloned();
    let decisions = approvals_from_outputs(&outputs);
    let approvers = decisions.iter().map(|(who, _)| who.clone()).collect();
    // When AWS names no decision time, the approval step's end or the request's start bound
    // it from below, so an approval never looks younger than it is.
    let decided_at = decisions
        .iter()
        .filter_map(|(_, at)| *at)
        .max()
        .or_else(|| {
            approve_step
                .and_then(|s| s.execution_end_time())
                .and_then(to_timestamp)
        })
        .or_else(|| execution.execution_start_time().and_then(to_timestamp));
    let parameters: BTreeMap<String, Vec<String>> = execution
        .parameters()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let scheduled_end = parameters
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ScheduledEndTime"))
        .and_then(|(_, v)| v.first())
        .and_then(|text| text.parse::<Timestamp>().ok());
    ApprovalRecord {
        id: id.to_string(),
        state: approval_state(&aws_status, step_approval.as_deref()),
        aws_status,
        document: execution.document_name().unwrap_or_default().to_string(),
        is_change_request: execution.change_request_name().is_some()
            || execution
                .automation_subtype()
                .is_some_and(|s| s.as_str() == "ChangeRequest"),
        requested_by: execution.executed_by().map(str::to_string),
        approvers,
        decided_at,
        scheduled_start: execution.scheduled_time().and_then(to_timestamp),
        scheduled_end,
        parameters,
    }
}

fn to_timestamp(time: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    Timestamp::new(time.secs(), time.subsec_nanos() as i32).ok()
}

/// Approver ARNs from an approve step's outputs.
#[cfg(test)]
fn approvers_from_outputs(outputs: &std::collections::HashMap<String, Vec<String>>) -> Vec<String> {
    let decisions = approvals_from_outputs(outputs);
    decisions.into_iter().map(|(who, _)| who).collect()
}

/// Approving decisions from an approve step's outputs: who and when. `ApproverDecisions` holds
/// a JSON list of `{"Approver": ARN, "Decision": "Approve", "ApprovalDecisionTime": T}` per
/// approver (keys matched case-insensitively).
fn approvals_from_outputs(
    outputs: &std::collections::HashMap<String, Vec<String>>,
) -> Vec<(String, Option<Timestamp>)> {
    let mut approvers = Vec::new();
    for text in outputs.get("ApproverDecisions").into_iter().flatten() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
            continue;
        };
        let entries = match value {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        for entry in entries {
            let Some(map) = entry.as_object() else {
                continue;
            };
            let field = |name: &str| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_str())
            };
            let approved =
                |d: &str| d.eq_ignore_ascii_case("approve") || d.eq_ignore_ascii_case("approved");
            if field("decision").is_some_and(approved) {
                if let Some(approver) = field("approver") {
                    let at = field("approvalDecisionTime").and_then(|t| t.parse().ok());
                    approvers.push((approver.to_string(), at));
                }
            }
        }
    }
    approvers
}

/// Maps AWS's execution status (and the approve step's own status) to an approval state.
pub fn approval_state(aws_status: &str, step_approval: Option<&str>) -> ApprovalState {
    match aws_status {
        "Rejected" | "ChangeCalendarOverrideRejected" => ApprovalState::Rejected,
        "Cancelled" | "Cancelling" | "Failed" | "TimedOut" | "CompletedWithFailure" | "Exited" => {
            ApprovalState::Withdrawn
        }
        _ => match step_approval {
            Some(s) if s.eq_ignore_ascii_case("Approved") => ApprovalState::Approved,
            Some(s) if s.eq_ignore_ascii_case("Rejected") => ApprovalState::Rejected,
            _ => match aws_status {
                "Approved"
                | "Scheduled"
                | "RunbookInProgress"
                | "Success"
                | "CompletedWithSuccess" => ApprovalState::Approved,
                _ => ApprovalState::Pending,
            },
        },
    }
}

fn approval_used_by(group: &AccessGroup, id: &str, uid: &str) -> Option<String> {
    let ledger = &group.status.as_ref()?.consumed_approvals;
    ledger
        .iter()
        .find(|c| c.approval_id == id && c.grant_uid != uid)
        .map(|c| c.grant.clone())
}

/// What confirming a revocation needs: whether the user is in the group now, read from IAM
/// itself (a shared read may predate a late add), and whether another grant keeps them in.
async fn confirm(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    spec: &ProductionAccessGrantSpec,
    mut facts: GrantFacts,
) -> Result<(GrantFacts, Option<Resolved>), ObserveError> {
    // Confirming a revocation needs only where it was made, eligible or not.
    let resolved = match resolve(ctx, grant, spec).await {
        Ok(resolved) => resolved,
        Err(Refused {
            located: Some(located),
            ..
        }) => located,
        Err(_) => return Ok((facts, None)),
    };
    let group = &resolved.terms.group_name;
    facts.member = is_member(&resolved.clients, &spec.user, group).await?;
    facts.other_active_until = other_active_until(ctx, grant, spec, facts.now);
    Ok((facts, Some(resolved)))
}

async fn is_member(clients: &AwsClients, user: &str, group: &str) -> Result<bool, ObserveError> {
    let mut marker = None;
    loop {
        let out = clients
            .iam
            .list_groups_for_user()
            .user_name(user)
            .set_marker(marker)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(err) if classify(&err) == ErrorClass::NotFound => return Ok(false),
            Err(err) => {
                return Err(ObserveError::ListGroupsForUser {
                    user: user.to_string(),
                    class: classify(&err),
                    message: error_message(&err),
                })
            }
        };
        if out.groups().iter().any(|g| g.group_name() == group) {
            return Ok(true);
        }
        match out.marker() {
            Some(next) if out.is_truncated() => marker = Some(next.to_string()),
            _ => return Ok(false),
        }
    }
}

/// The latest expiry among other active grants for the same user and group.
fn other_active_until(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    spec: &ProductionAccessGrantSpec,
    now: Timestamp,
) -> Option<Timestamp> {
    let uid = grant.uid();
    let ours = iam_group_of(ctx, &spec.access_group);
    // Another AccessGroup for the same IAM group (refused as GroupConflict, or its owner) gives
    // the same membership, so its grants count too.
    let same_group =
        |name: &str| name == spec.access_group || ours.is_some() && iam_group_of(ctx, name) == ours;
    ctx.grants
        .state()
        .iter()
        .filter(|other| other.uid() != uid)
        .filter_map(|other| {
            let status = other.status.as_ref()?;
            let approved = status.approved.as_ref()?;
            let expiry = status.window.as_ref()?.expiry.0;
            let same = approved.user == spec.user && same_group(&approved.access_group);
            (same && status.phase == GrantPhase::Active && expiry > now).then_some(expiry)
        })
        .max()
}

/// The IAM group an `AccessGroup` (by name) manages, if it exists.
fn iam_group_of(ctx: &Context, access_group: &str) -> Option<(String, String)> {
    let group = ctx
        .groups
        .get(&kube::runtime::reflector::ObjectRef::new(access_group))?;
    Some(crate::controller::group::iam_group(
        &group,
        &ctx.accounts.state(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_states_follow_aws_statuses() {
        assert_eq!(
            approval_state("PendingApproval", None),
            ApprovalState::Pending
        );
        assert_eq!(approval_state("Scheduled", None), ApprovalState::Approved);
        assert_eq!(approval_state("Success", None), ApprovalState::Approved);
        assert_eq!(approval_state("Rejected", None), ApprovalState::Rejected);
        assert_eq!(approval_state("TimedOut", None), ApprovalState::Withdrawn);
        assert_eq!(
            approval_state("Cancelled", Some("Approved")),
            ApprovalState::Withdrawn
        );
        assert_eq!(
            approval_state("InProgress", Some("Approved")),
            ApprovalState::Approved
        );
        assert_eq!(
            approval_state("Waiting", Some("Pending")),
            ApprovalState::Pending
        );
    }

    #[test]
    fn approvers_read_from_approve_step_outputs() {
        let mut outputs = std::collections::HashMap::new();
        outputs.insert(
            "ApproverDecisions".to_string(),
            vec![
                r#"[{"Approver":"arn:aws:iam::1:user/carol","Decision":"Approved"},
                     {"Approver":"arn:aws:iam::1:user/dave","Decision":"Rejected"}]"#
                    .to_string(),
            ],
        );
        assert_eq!(
            approvers_from_outputs(&outputs),
            vec!["arn:aws:iam::1:user/carol"]
        );
    }

    #[test]
    fn decision_times_read_from_approve_step_outputs() {
        let mut outputs = std::collections::HashMap::new();
        outputs.insert(
            "ApproverDecisions".to_string(),
            vec![
                r#"{"Approver":"arn:aws:iam::1:user/carol","Decision":"Approve",
                    "ApprovalDecisionTime":"2026-01-01T12:00:00.123456Z"}"#
                    .to_string(),
            ],
        );
        let at = "2026-01-01T12:00:00.123456Z".parse::<Timestamp>().ok();
        assert_eq!(
            approvals_from_outputs(&outputs),
            vec![("arn:aws:iam::1:user/carol".to_string(), at)]
        );
    }
}
