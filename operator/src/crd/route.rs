//! `PrivateLinkRoute`: the private path from the Jump account to production consoles.
//!
//! Consumer side (Jump account): interface VPC endpoint, Route 53 private hosted zone record.
//! Provider side (Production account): endpoint service on an internal NLB whose TCP listener
//! forwards to a target group of type `alb`; that ALB listens on HTTPS with an ACM certificate
//! and forwards to a target group of production instances.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole two-account path to one production host name, built in dependency order, kept in
/// its desired state and torn down cleanly.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "prodaccess.io",
    version = "v1alpha1",
    kind = "PrivateLinkRoute",
    plural = "privatelinkroutes",
    shortname = "plr",
    category = "prodaccess",
    namespaced,
    status = "PrivateLinkRouteStatus",
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.hops.endpointState",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PrivateLinkRouteSpec {
    /// Production host name people type in the jump host's browser, for example
    /// `admin.prod.example.com`. The private hosted zone record carries this name.
    #[schemars(
        length(min = 3, max = 253),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
    )]
    pub host_name: String,

    /// TCP port of the whole path: the NLB listener, the ALB HTTPS listener and the URL.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// The Production account side.
    pub provider: ProviderSide,

    /// The Jump account side.
    pub consumer: ConsumerSide,

    /// `Delete` removes every AWS resource of the route when the object is deleted; `Retain`
    /// leaves them in place.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// How often the operator re-reads AWS to correct drift, like `5m`.
    #[serde(default = "default_drift_check")]
    #[schemars(
        regex(pattern = r"^([0-9]{1,5}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?$"),
        length(min = 2, max = 32)
    )]
    pub drift_check_interval: String,
}

fn default_drift_check() -> String {
    "5m".to_string()
}

/// Resources in the Production account.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSide {
    /// Name of the production `AwsAccount`.
    #[schemars(length(min = 1, max = 253))]
    pub account_ref: String,

    /// VPC of the load balancers and instances.
    #[schemars(regex(pattern = r"^vpc-[0-9a-f]{8,17}$"))]
    pub vpc_id: String,

    /// Subnets of the internal NLB (one per zone the endpoint service should serve).
    #[schemars(
        length(min = 1, max = 16),
        inner(regex(pattern = r"^subnet-[0-9a-f]{8,17}$"))
    )]
    pub nlb_subnet_ids: Vec<String>,

    /// Subnets of the internal ALB, in at least two availability zones.
    #[schemars(
        length(min = 2, max = 16),
        inner(regex(pattern = r"^subnet-[0-9a-f]{8,17}$"))
    )]
    pub alb_subnet_ids: Vec<String>,

    /// Security groups of the ALB.
    #[schemars(
        length(min = 1, max = 5),
        inner(regex(pattern = r"^sg-[0-9a-f]{8,17}$"))
    )]
    pub alb_security_group_ids: Vec<String>,

    /// ACM certificate of the ALB's HTTPS listener. It must be in the account's region and
    /// `ISSUED`.
    #[schemars(regex(
        pattern = r"^arn:aws(-cn|-us-gov)?:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]{36}$"
    ))]
    pub certificate_arn: String,

    /// TLS policy of the HTTPS listener; the ELB default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub ssl_policy: Option<String>,

    /// The production instances behind the ALB.
    pub targets: Targets,

    /// Whether each connection from an endpoint must be accepted. The operator accepts only
    /// the endpoint this route manages.
    #[serde(default = "default_true")]
    pub acceptance_required: bool,

    /// IAM principals allowed to connect to the endpoint service. Defaults to the consumer
    /// account's root (`arn:aws:iam::CONSUMER:root`).
    #[serde(default)]
    #[schemars(
        length(max = 50),
        inner(regex(
            pattern = r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)$"
        ))
    )]
    pub allowed_principals: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// The instance target group behind the ALB.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    /// Protocol from the ALB to the instances.
    #[serde(default)]
    pub protocol: TargetProtocol,

    /// Port on the instances.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Production instance IDs registered in the target group.
    #[schemars(
        length(min = 1, max = 100),
        inner(regex(pattern = r"^i-[0-9a-f]{8,17}$"))
    )]
    pub instance_ids: Vec<String>,

    /// Health check of the target group.
    #[serde(default)]
    pub health_check: HealthCheck,
}

/// Protocols between the ALB and the instances.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum TargetProtocol {
    #[default]
    Https,
    Http,
}

/// Health check settings of the instance target group.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// HTTP path probed on each instance.
    #[serde(default = "default_health_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[\x21-\x7e]*$"))]
    pub path: String,

    /// Seconds between probes.
    #[serde(default = "default_interval")]
    #[schemars(range(min = 5, max = 300))]
    pub interval_seconds: i32,

    /// Consecutive successes before an instance is healthy.
    #[serde(default = "default_healthy")]
    #[schemars(range(min = 2, max = 10))]
    pub healthy_threshold: i32,

    /// Consecutive failures before an instance is unhealthy.
    #[serde(default = "default_unhealthy")]
    #[schemars(range(min = 2, max = 10))]
    pub unhealthy_threshold: i32,

    /// HTTP codes that count as healthy, like `200` or `200-399`.
    #[serde(default = "default_matcher")]
    #[schemars(regex(pattern = r"^[0-9]{3}([-,][0-9]{3})*$"))]
    pub matcher: String,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: default_health_path(),
            interval_seconds: default_interval(),
            healthy_threshold: default_healthy(),
            unhealthy_threshold: default_unhealthy(),
            matcher: default_matcher(),
        }
    }
}

fn default_health_path() -> String {
    "/".to_string()
}
fn default_interval() -> i32 {
    30
}
fn default_healthy() -> i32 {
    5
}
fn default_unhealthy() -> i32 {
    2
}
fn default_matcher() -> String {
    "200-399".to_string()
}

/// Resources in the Jump account.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSide {
    /// Name of the Jump `AwsAccount`.
    #[schemars(length(min = 1, max = 253))]
    pub account_ref: String,

    /// VPC of the jump host, where the interface endpoint and the private zone live.
    #[schemars(regex(pattern = r"^vpc-[0-9a-f]{8,17}$"))]
    pub vpc_id: String,

    /// Subnets of the interface endpoint.
    #[schemars(
        length(min = 1, max = 16),
        inner(regex(pattern = r"^subnet-[0-9a-f]{8,17}$"))
    )]
    pub subnet_ids: Vec<String>,

    /// Security groups of the interface endpoint.
    #[serde(default)]
    #[schemars(length(max = 5), inner(regex(pattern = r"^sg-[0-9a-f]{8,17}$")))]
    pub security_group_ids: Vec<String>,

    /// The private hosted zone that holds the host name's record.
    pub hosted_zone: HostedZone,

    /// `CNAME` or `Alias` record pointing at the endpoint's DNS name.
    #[serde(default)]
    pub record_type: RecordType,

    /// TTL of a CNAME record, in seconds.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 0, max = 172800))]
    pub ttl: i64,
}

fn default_ttl() -> i64 {
    60
}

/// Either an existing private zone, or the name of one the operator creates.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostedZone {
    /// ID of an existing private hosted zone associated with the consumer VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(/hostedzone/)?Z[0-9A-Z]{1,32}$"))]
    pub zone_id: Option<String>,

    /// Name of a private hosted zone the operator creates (and deletes with the route) and
    /// associates with the consumer VPC, like `prod.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 253),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\.?$")
    )]
    pub zone_name: Option<String>,
}

/// Kinds of DNS record for the host name.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum RecordType {
    #[default]
    #[serde(rename = "CNAME")]
    Cname,
    Alias,
}

/// What happens to AWS resources when the route is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// IDs, names and states of each hop, as last observed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteHops {
    /// Instance target group ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_target_group_arn: Option<String>,
    /// Health of each registered instance (`i-...=healthy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_health: Vec<String>,
    /// ALB ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb_arn: Option<String>,
    /// ALB HTTPS listener ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb_listener_arn: Option<String>,
    /// Status of the ACM certificate (`ISSUED` when usable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_status: Option<String>,
    /// Target group of type `alb` ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb_target_group_arn: Option<String>,
    /// NLB ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlb_arn: Option<String>,
    /// NLB TCP listener ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlb_listener_arn: Option<String>,
    /// VPC endpoint service ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_service_id: Option<String>,
    /// VPC endpoint service name (`com.amazonaws.vpce....`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_service_name: Option<String>,
    /// Interface VPC endpoint ID in the consumer account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// The endpoint's regional DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_dns_name: Option<String>,
    /// The endpoint's state (`pendingAcceptance`, `available`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_state: Option<String>,
    /// Private hosted zone ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_id: Option<String>,
    /// The record as `NAME TYPE VALUE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// What the operator built and saw for this route.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrivateLinkRouteStatus {
    /// `https://HOST:PORT` once every hop is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Each hop's IDs and states.
    #[serde(default)]
    pub hops: RouteHops,

    /// When AWS was last read to check for drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift_check: Option<Time>,

    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// One condition per hop (`TargetsReady`, `LoadBalancerReady`, `EndpointServiceReady`,
    /// `EndpointReady`, `DnsReady`) and `Ready` for the whole path.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
