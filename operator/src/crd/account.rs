//! `AwsAccount`: which AWS account the operator acts in, and how it gets there.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An AWS account the operator may act in, and the role it assumes to do so. Admin-owned:
/// namespaced objects may refer to it only from the namespaces it allows.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "prodaccess.io",
    version = "v1alpha1",
    kind = "AwsAccount",
    plural = "awsaccounts",
    category = "prodaccess",
    status = "AwsAccountStatus",
    printcolumn(name = "Account", type_ = "string", json_path = ".status.accountId"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
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
pub struct AwsAccountSpec {
    /// ARN of the IAM role the operator assumes to act in this account. Absent means the
    /// operator's own identity (for example its IRSA or Pod Identity role) is used directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$"
    ))]
    pub role_arn: Option<String>,

    /// External ID passed to `sts:AssumeRole`; the role's trust policy should require it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), regex(pattern = r"^[\w+=,.@:/-]+$"))]
    pub external_id: Option<String>,

    /// AWS region the operator uses in this account, for example `ap-northeast-1`.
    #[schemars(regex(pattern = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$"))]
    pub region: String,

    /// Prefix of the role session name, so that CloudTrail shows which operator acted.
    /// The operator appends the reconciled object's kind. At most 32 characters.
    #[serde(default = "default_session_name_prefix")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[\w+=,.@-]+$"))]
    pub session_name_prefix: String,

    /// The 12-digit account ID this object must resolve to. When set, the account becomes Ready
    /// only if `sts:GetCallerIdentity` reports this ID, which guards against a role ARN typo
    /// pointing production changes at the wrong account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{12}$"))]
    pub expected_account_id: Option<String>,

    /// Namespaces whose grants and routes may use this account. Entries are names or
    /// patterns with a trailing `*` (`team-*`); `*` alone allows every namespace. Empty
    /// allows none.
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

fn default_session_name_prefix() -> String {
    "prodaccess".to_string()
}

/// What the operator last saw of the account.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AwsAccountStatus {
    /// Account ID reported by `sts:GetCallerIdentity` with the configured credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,

    /// ARN of the identity the operator acts as in this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_arn: Option<String>,

    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` is True when the credentials work and the account ID matches.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The AWS partition a region belongs to (`aws`, `aws-cn`, `aws-us-gov`, ...), which every ARN
/// used in that region must name.
pub fn partition_of_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// The partition an ARN names (its second field), if it is an ARN.
pub fn arn_partition(arn: &str) -> Option<&str> {
    let mut fields = arn.split(':');
    (fields.next() == Some("arn")).then_some(())?;
    fields.next()
}

/// Whether `namespace` matches one of the allow-list entries.
pub fn namespace_allowed(allowed: &[String], namespace: &str) -> bool {
    allowed.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => namespace.starts_with(prefix),
        None => entry == namespace,
    })
}

impl AwsAccount {
    /// The partition of the account's region.
    pub fn partition(&self) -> &'static str {
        partition_of_region(&self.spec.region)
    }

    /// Whether objects in `namespace` may use this account.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        namespace_allowed(&self.spec.allowed_namespaces, namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_allow_list_matches_names_and_prefixes() {
        let allowed = vec!["ops".to_string(), "team-*".to_string()];
        assert!(namespace_allowed(&allowed, "ops"));
        assert!(namespace_allowed(&allowed, "team-a"));
        assert!(!namespace_allowed(&allowed, "opsx"));
        assert!(!namespace_allowed(&allowed, "default"));
        assert!(namespace_allowed(&["*".to_string()], "anything"));
        assert!(!namespace_allowed(&[], "ops"));
    }

    #[test]
    fn regions_and_arns_name_their_partition() {
        assert_eq!(partition_of_region("ap-northeast-1"), "aws");
        assert_eq!(partition_of_region("cn-north-1"), "aws-cn");
        assert_eq!(partition_of_region("us-gov-west-1"), "aws-us-gov");
        assert_eq!(
            arn_partition("arn:aws-cn:iam::111111111111:root"),
            Some("aws-cn")
        );
        assert_eq!(arn_partition("not-an-arn"), None);
    }
}
