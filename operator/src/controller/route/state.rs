//! What observe found in AWS, as plain data: the input of the planner.
//!
//! Nothing here holds an SDK type, so planner tests build these by hand.

/// One subnet, as EC2 describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub zone: String,
}

/// One EC2 instance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Instance {
    pub id: String,
    pub vpc_id: String,
    pub state: String,
}

/// The target group's health check as ELB reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthCheckSettings {
    pub protocol: String,
    pub path: String,
    pub interval_seconds: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    pub matcher: String,
}

/// A registered target: an instance ID or an ALB ARN, with its port and health.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    pub id: String,
    pub port: i32,
    pub health: String,
}

/// A target group the route owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetGroup {
    pub arn: String,
    pub protocol: String,
    pub port: i32,
    pub health_check: HealthCheckSettings,
    pub targets: Vec<Target>,
}

/// A load balancer the route owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadBalancer {
    pub arn: String,
    pub state: String,
    pub vpc_id: String,
    pub dns_name: String,
}

impl LoadBalancer {
    pub fn is_active(&self) -> bool {
        self.state == "active"
    }
}

/// A listener on one of the route's load balancers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listener {
    pub arn: String,
    pub port: i32,
    pub protocol: String,
    pub certificate_arns: Vec<String>,
    pub ssl_policy: Option<String>,
    /// Target groups the default action forwards to; empty for any other kind of action.
    pub forward_to: Vec<String>,
}

/// A connection from an endpoint to the endpoint service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Connection {
    pub endpoint_id: String,
    pub state: String,
}

/// The endpoint service on the NLB.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointService {
    pub id: String,
    pub name: String,
    pub state: String,
    pub acceptance_required: bool,
    pub principals: Vec<String>,
    pub connections: Vec<Connection>,
}

/// The interface endpoint in the consumer account.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub state: String,
    pub service_name: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub dns_name: String,
    pub dns_zone_id: String,
}

/// The private hosted zone holding the record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostedZone {
    pub id: String,
    pub name: String,
    /// True when the route created the zone (and so deletes it).
    pub owned: bool,
    pub vpc_ids: Vec<String>,
}

/// The record of the host name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub name: String,
    pub type_: String,
    /// CNAME values, or the alias target's DNS name.
    pub values: Vec<String>,
    pub alias_zone_id: Option<String>,
    /// TTL of a CNAME; Route 53 deletes a record only when it is named exactly.
    pub ttl: Option<i64>,
}

impl Record {
    /// `NAME TYPE VALUE`, as status shows it.
    pub fn describe(&self) -> String {
        format!("{} {} {}", self.name, self.type_, self.values.join(","))
    }
}

/// Everything observe found. `None` or empty means absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// `ISSUED`, `PENDING_VALIDATION`, ...; `None` when ACM does not know the ARN.
    pub certificate_status: Option<String>,
    /// Provider subnets named in the spec that exist (ALB and NLB).
    pub provider_subnets: Vec<Subnet>,
    /// Consumer subnets named in the spec that exist.
    pub consumer_subnets: Vec<Subnet>,
    /// Instances named in the spec that exist.
    pub instances: Vec<Instance>,
    pub instance_target_group: Option<TargetGroup>,
    pub alb: Option<LoadBalancer>,
    pub alb_listeners: Vec<Listener>,
    pub alb_target_group: Option<TargetGroup>,
    pub nlb: Option<LoadBalancer>,
    pub nlb_listeners: Vec<Listener>,
    pub endpoint_service: Option<EndpointService>,
    pub endpoint: Option<Endpoint>,
    pub hosted_zone: Option<HostedZone>,
    pub record: Option<Record>,
    /// Listener ARNs status recorded, so a listener moved to another port is still ours.
    pub recorded_alb_listener: Option<String>,
    pub recorded_nlb_listener: Option<String>,
    /// The endpoint DNS name status recorded, to recognise our record once the endpoint is gone.
    pub recorded_endpoint_dns: Option<String>,
}
