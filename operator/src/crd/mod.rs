//! The custom resources of prodaccess, API group `prodaccess.io`, version `v1alpha1`.
//!
//! Admins own the cluster-scoped [`AwsAccount`] and [`AccessGroup`]; teams own the namespaced
//! [`ProductionAccessGrant`] and [`PrivateLinkRoute`]. Every field carries a doc comment because
//! those comments become the schema descriptions that `kubectl explain` shows. Validation that
//! Kubernetes 1.20's OpenAPI schemas can express (types, enums, patterns, bounds) lives here as
//! schema attributes; the rest is checked by the operator and reported as a condition.

// kube's derive takes one `printcolumn(...)` attribute per column; clippy reads the repeated
// attribute name as a duplicate.
#![allow(clippy::duplicated_attributes)]

mod account;
mod conditions;
mod duration;
mod grant;
mod group;
mod route;

pub use account::{
    arn_partition, partition_of_region, AwsAccount, AwsAccountSpec, AwsAccountStatus,
};
pub use conditions::{set_condition, ConditionExt, ConditionStatus};
pub use duration::{format_duration, parse_duration, DurationError, DURATION_PATTERN};
pub use grant::{
    ApprovalRef, ApprovedTerms, GrantPhase, GrantWindow, ProductionAccessGrant,
    ProductionAccessGrantSpec, ProductionAccessGrantStatus,
};
pub use group::{
    AccessGroup, AccessGroupSpec, AccessGroupStatus, ApprovalMode, ApprovalPolicy,
    ConsumedApproval, SessionPolicy,
};
pub use route::{
    ConsumerSide, DeletionPolicy, HealthCheck, HostedZone, PrivateLinkRoute, PrivateLinkRouteSpec,
    PrivateLinkRouteStatus, ProviderSide, RecordType, RouteHops, TargetProtocol, Targets,
};

use kube::CustomResourceExt;

/// API group of every prodaccess kind.
pub const GROUP: &str = "prodaccess.io";

/// Finalizer that the operator puts on grants and routes so that it can revoke access and tear
/// down AWS resources before the object disappears.
pub const FINALIZER: &str = "prodaccess.io/cleanup";

/// Annotation that stops reconciliation of one object while set to `"true"`.
pub const PAUSED_ANNOTATION: &str = "prodaccess.io/paused";

/// Annotation whose every new value asks for an immediate re-check of one object.
pub const RECONCILE_ANNOTATION: &str = "prodaccess.io/reconcile-requested-at";

/// Every CRD of the project, in the order `crds` prints them.
pub fn all_crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![
        AwsAccount::crd(),
        AccessGroup::crd(),
        ProductionAccessGrant::crd(),
        PrivateLinkRoute::crd(),
    ]
}
