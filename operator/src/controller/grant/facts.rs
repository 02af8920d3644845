//! What the grant planner is told: everything observed about one grant, as plain data.

use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::crd::ApprovalMode;

/// The access group's rules that apply to a grant.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupTerms {
    pub group_name: String,
    pub account_id: Option<String>,
    pub max_duration: Duration,
    pub default_duration: Duration,
    pub mode: ApprovalMode,
    pub change_templates: Vec<String>,
    pub automation_documents: Vec<String>,
}

/// Whether the grant may use its group and account at all.
#[derive(Clone, Debug, PartialEq)]
pub enum Eligibility {
    Eligible(GroupTerms),
    /// Not eligible: a condition reason and a message a person can act on.
    Ineligible {
        reason: &'static str,
        message: String,
    },
}

/// The state of an approval as AWS reports it, reduced to what decides a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    /// Cancelled, failed or timed out: the approval no longer stands.
    Withdrawn,
}

/// One change request or automation execution, as read from `GetAutomationExecution`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRecord {
    pub id: String,
    pub state: ApprovalState,
    /// The raw AWS status, for messages.
    pub aws_status: String,
    /// Change template or automation document name.
    pub document: String,
    /// Whether this is a change request (as opposed to a plain automation execution).
    pub is_change_request: bool,
    /// `ExecutedBy`: the identity that started the request.
    pub requested_by: Option<String>,
    /// Identities that approved.
    pub approvers: Vec<String>,
    /// When it was approved (the last approving decision), as AWS reports it.
    pub decided_at: Option<Timestamp>,
    pub scheduled_start: Option<Timestamp>,
    pub scheduled_end: Option<Timestamp>,
    pub parameters: BTreeMap<String, Vec<String>>,
}

/// What the operator knows about the approval a grant names.
#[derive(Clone, Debug, PartialEq)]
pub enum ApprovalFacts {
    /// The group needs no AWS-side approval.
    NotNeeded,
    /// No ID in spec or status.
    NoneGiven,
    /// An ID was given but AWS has no such execution.
    NotFound(String),
    Found(ApprovalRecord),
}

/// The IAM user, as read from IAM.
#[derive(Clone, Debug, PartialEq)]
pub enum UserFacts {
    Exists {
        arn: String,
    },
    Missing,
    /// Not looked up (for example because the grant is not eligible).
    Unknown,
}

/// Everything the planner needs about one grant besides its own spec and status.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantFacts {
    pub now: Timestamp,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    pub deleting: bool,
    pub eligibility: Eligibility,
    pub approval: ApprovalFacts,
    pub user: UserFacts,
    /// Whether the user is in the IAM group now.
    pub member: bool,
    /// Another grant that already consumed the same approval (`namespace/name`).
    pub approval_used_by: Option<String>,
    /// Expiry of another active grant for the same user and group, which keeps the user in.
    pub other_active_until: Option<Timestamp>,
    /// When an earlier reconcile already revoked access in AWS but could not record it.
    pub revoked_earlier: Option<Timestamp>,
}
