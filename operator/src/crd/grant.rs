//! `ProductionAccessGrant`: one person's approval-gated, time-bound membership of an access
//! group.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request that an IAM user be a member of an `AccessGroup` for a bounded time, once an
/// approval read from AWS allows it. Terminal phases (`Expired`, `Revoked`, `Denied`) never
/// grant again.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "prodaccess.io",
    version = "v1alpha1",
    kind = "ProductionAccessGrant",
    plural = "productionaccessgrants",
    shortname = "pag",
    category = "prodaccess",
    namespaced,
    status = "ProductionAccessGrantStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.user"),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.accessGroup"),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.window.expiry"
    ),
    printcolumn(
        name = "Approval",
        type_ = "string",
        json_path = ".status.approvalId",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ProductionAccessGrantSpec {
    /// Name of the `AccessGroup` to join.
    #[schemars(length(min = 1, max = 253))]
    pub access_group: String,

    /// IAM user name that joins the group, for example `alice`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub user: String,

    /// How long access lasts once it starts, like `1h` or `90m`. Defaults to the group's
    /// default duration and may not exceed its maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$"),
        length(min = 2, max = 32)
    )]
    pub duration: Option<String>,

    /// Earliest moment access may start, in RFC 3339 (`2026-12-24T09:00:00Z`). Access starts
    /// at the later of this, the approval and the change request's scheduled time.
    // A string, not a `Time`: one object whose date the client library cannot represent would
    // otherwise fail every list of grants and stop the whole operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 40),
        regex(
            pattern = r"^[12][0-9]{3}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\.[0-9]{1,9})?(Z|[+-][0-2][0-9]:[0-5][0-9])$"
        )
    )]
    pub not_before: Option<String>,

    /// Why access is needed. Recorded in the change request the operator opens, the audit log
    /// and Events.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,

    /// The AWS approval backing this grant. Leave empty to have the operator open a change
    /// request from the group's first change template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRef>,

    /// Set to true to end access now. A revoked grant never grants again.
    #[serde(default)]
    pub revoked: bool,
}

/// Reference to the AWS object that approves a grant. Set the one that matches the group's
/// approval mode.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRef {
    /// ID of a Change Manager change request (its automation execution ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub change_request_id: Option<String>,

    /// ID of an SSM Automation execution with an approval step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub automation_execution_id: Option<String>,
}

impl ApprovalRef {
    /// The one ID set, if exactly one is.
    pub fn id(&self) -> Option<&str> {
        match (&self.change_request_id, &self.automation_execution_id) {
            (Some(id), None) | (None, Some(id)) => Some(id),
            _ => None,
        }
    }
}

/// Where a grant is in its life. `Expired`, `Revoked` and `Denied` are final.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum GrantPhase {
    /// Accepted, not yet evaluated.
    #[default]
    Pending,
    /// Waiting for the approval in AWS.
    AwaitingApproval,
    /// Approved; access starts at `status.window.start`.
    Scheduled,
    /// The user is in the group until `status.window.expiry`.
    Active,
    /// The window ended and access was removed.
    Expired,
    /// Access was ended early (deleted, `spec.revoked`, or approval withdrawn).
    Revoked,
    /// The approval was rejected, cancelled, failed, timed out or is not acceptable.
    Denied,
    /// The grant cannot proceed until its spec or its environment is fixed; see `message`.
    Failed,
}

impl GrantPhase {
    /// Final phases never grant again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Expired | Self::Revoked | Self::Denied)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::AwaitingApproval => "AwaitingApproval",
            Self::Scheduled => "Scheduled",
            Self::Active => "Active",
            Self::Expired => "Expired",
            Self::Revoked => "Revoked",
            Self::Denied => "Denied",
            Self::Failed => "Failed",
        }
    }
}

/// The time during which the user may be a member.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrantWindow {
    /// When access starts.
    pub start: Time,
    /// When access ends.
    pub expiry: Time,
}

/// The terms that were approved, fixed at approval so that later edits cannot widen them.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovedTerms {
    /// IAM user that was approved.
    pub user: String,
    /// Access group that was approved.
    pub access_group: String,
    /// Approval ID, or empty for groups that need none.
    // Left out when empty: the API server's server-side apply turns an empty string into a
    // null, which the schema then refuses, and the whole status write with it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub approval_id: String,
    /// Approved duration in seconds.
    pub duration_seconds: i64,
}

/// What the operator did and saw for this grant.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProductionAccessGrantStatus {
    /// Where the grant is in its life.
    #[serde(default)]
    pub phase: GrantPhase,

    /// A sentence for people: what is happening and what to do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// The change request or automation execution backing this grant, including one the
    /// operator opened itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,

    /// When the operator asked for the change request it opens: the scheduled start it sends.
    /// Recorded before the request, so that a retry after a crash sends the same request and
    /// gets the same change request back instead of an IdempotentParameterMismatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_request_asked_at: Option<Time>,

    /// IAM identity that started the change request, as AWS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,

    /// IAM identity that approved, as AWS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,

    /// When the approval was first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,

    /// The terms fixed at approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<ApprovedTerms>,

    /// When access starts and ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<GrantWindow>,

    /// When the user was added to the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<Time>,

    /// When the user was removed from the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Time>,

    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Approved`, `Granted` and `Ready`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
