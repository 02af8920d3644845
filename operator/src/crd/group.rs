//! `AccessGroup`: the IAM group that carries production access, its session policy and rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::account::namespace_allowed;

/// An IAM group in one `AwsAccount` whose membership prodaccess controls: who may be in it,
/// for how long, with which approval, and what its members may do (the session policy).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "prodaccess.io",
    version = "v1alpha1",
    kind = "AccessGroup",
    plural = "accessgroups",
    category = "prodaccess",
    status = "AccessGroupStatus",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountRef"),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.groupName"),
    printcolumn(name = "Approval", type_ = "string", json_path = ".spec.approval.mode"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessGroupSpec {
    /// Name of the `AwsAccount` the IAM group lives in.
    #[schemars(length(min = 1, max = 253))]
    pub account_ref: String,

    /// Name of the IAM group, for example `ProductionAccess`.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub group_name: String,

    /// Whether the operator creates the IAM group when it is missing. When false, a missing
    /// group keeps the AccessGroup not Ready with reason `GroupNotFound`.
    #[serde(default)]
    pub create_group: bool,

    /// The inline policy that gives members their session rights. The operator writes it and
    /// puts it back if someone edits it by hand.
    #[serde(default)]
    pub session_policy: SessionPolicy,

    /// Longest duration a grant may ask for, like `8h`.
    #[serde(default = "default_max_duration")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$"),
        length(min = 2)
    )]
    pub max_duration: String,

    /// Duration of a grant that does not say, like `1h`.
    #[serde(default = "default_duration")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$"),
        length(min = 2)
    )]
    pub default_duration: String,

    /// The approval a grant needs before its user joins the group.
    #[serde(default)]
    pub approval: ApprovalPolicy,

    /// When true, members that no active grant accounts for are removed at every resync,
    /// with a Warning Event naming them.
    #[serde(default)]
    pub exclusive: bool,

    /// Namespaces whose grants may request this group: names or `prefix-*` patterns, `*` for
    /// all. The account's own allow-list applies as well. Empty allows none.
    #[serde(default)]
    #[schemars(
        length(max = 256),
        inner(
            length(min = 1, max = 64),
            regex(pattern = r"^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$")
        )
    )]
    pub allowed_namespaces: Vec<String>,
}

fn default_max_duration() -> String {
    "8h".to_string()
}

fn default_duration() -> String {
    "1h".to_string()
}

/// The session rights members get, expressed as structured fields from which the operator
/// generates the IAM policy document.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionPolicy {
    /// Whether the operator manages the group's session policy. Turn off to manage it
    /// yourself; membership is still controlled.
    #[serde(default = "default_true")]
    pub managed: bool,

    /// Name of the inline group policy the operator writes.
    #[serde(default = "default_policy_name")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub policy_name: String,

    /// Jump host instance IDs members may start sessions on. Empty together with
    /// `jumpHostTags` means any instance.
    #[serde(default)]
    #[schemars(length(max = 100), inner(regex(pattern = r"^i-[0-9a-f]{8,17}$")))]
    pub jump_host_instance_ids: Vec<String>,

    /// Tags that identify jump hosts (`ssm:resourceTag/KEY` conditions).
    #[serde(default)]
    pub jump_host_tags: BTreeMap<String, String>,

    /// Session documents members may use; defaults to `AWS-StartPortForwardingSession`.
    #[serde(default = "default_documents")]
    #[schemars(
        length(min = 1, max = 20),
        inner(length(min = 3, max = 128), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))
    )]
    pub documents: Vec<String>,

    /// Whether sessions require MFA (`aws:MultiFactorAuthPresent`), as with credentials from
    /// `aws sts get-session-token --serial-number ... --token-code ...`.
    #[serde(default = "default_true")]
    pub require_mfa: bool,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            managed: true,
            policy_name: default_policy_name(),
            jump_host_instance_ids: Vec::new(),
            jump_host_tags: BTreeMap::new(),
            documents: default_documents(),
            require_mfa: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_policy_name() -> String {
    "ProdaccessSessionPolicy".to_string()
}

fn default_documents() -> Vec<String> {
    vec!["AWS-StartPortForwardingSession".to_string()]
}

/// How grants for this group are approved.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalPolicy {
    /// `changeRequest`: an approved Change Manager change request; `automation`: an SSM
    /// Automation execution whose approval step was approved; `none`: Git review and RBAC are
    /// the approval, and a grant starts as soon as it is applied.
    #[serde(default)]
    pub mode: ApprovalMode,

    /// Change templates a change request must come from. The first one is used when the
    /// operator opens the change request itself (a grant with no change request ID).
    /// Empty accepts any template and never opens one.
    #[serde(default)]
    #[schemars(
        length(max = 20),
        inner(length(min = 3, max = 128), regex(pattern = r"^[a-zA-Z0-9_.:/-]+$"))
    )]
    pub change_templates: Vec<String>,

    /// Automation documents an approval execution must run (for `automation`). Empty accepts
    /// any document.
    #[serde(default)]
    #[schemars(
        length(max = 20),
        inner(length(min = 3, max = 128), regex(pattern = r"^[a-zA-Z0-9_.:/-]+$"))
    )]
    pub automation_documents: Vec<String>,
}

/// Approval modes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalMode {
    /// An approved AWS Change Manager change request.
    #[default]
    ChangeRequest,
    /// An SSM Automation execution with an approved `aws:approve` step.
    Automation,
    /// No AWS-side approval.
    None,
}

/// What the operator last saw of the group.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessGroupStatus {
    /// ARN of the IAM group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_arn: Option<String>,

    /// IAM users currently in the group.
    #[serde(default)]
    pub members: Vec<String>,

    /// Number of members, for the printer column.
    #[serde(default)]
    pub member_count: i64,

    /// Grants (`namespace/name`) currently active for this group.
    #[serde(default)]
    pub active_grants: Vec<String>,

    /// Approvals already used by a grant. One approval backs at most one grant, even after
    /// that grant is deleted; entries are dropped once their approval can no longer grant.
    #[serde(default)]
    pub consumed_approvals: Vec<ConsumedApproval>,

    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` is True when the account is ready, the group exists and its policy is in place.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One approval that has backed a grant.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumedApproval {
    /// The change request or automation execution ID.
    pub approval_id: String,
    /// UID of the grant it backs.
    pub grant_uid: String,
    /// `namespace/name` of the grant it backs.
    pub grant: String,
    /// After this time the approval cannot grant anything, so the entry may be dropped.
    pub until: Time,
}

impl AccessGroup {
    /// Whether grants in `namespace` may request this group (the group's own list only).
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        namespace_allowed(&self.spec.allowed_namespaces, namespace)
    }
}
