//! The steps the planner can ask for, and the hop each belongs to.
//!
//! Actions name what they do in AWS's words. Actions that create something do not carry the
//! ARNs of their dependencies: the executor resolves those as it goes, so one plan can build the
//! whole path from nothing in order.

use super::state::Record;

/// The hops of a route, in path order, each with its own condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hop {
    Targets,
    LoadBalancer,
    EndpointService,
    Endpoint,
    Dns,
}

impl Hop {
    pub const ALL: [Hop; 5] = [
        Hop::Targets,
        Hop::LoadBalancer,
        Hop::EndpointService,
        Hop::Endpoint,
        Hop::Dns,
    ];

    /// The condition type that reports this hop.
    pub fn condition(self) -> &'static str {
        match self {
            Hop::Targets => "TargetsReady",
            Hop::LoadBalancer => "LoadBalancerReady",
            Hop::EndpointService => "EndpointServiceReady",
            Hop::Endpoint => "EndpointReady",
            Hop::Dns => "DnsReady",
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteAction {
    CreateInstanceTargetGroup,
    ModifyHealthCheck {
        changes: Vec<String>,
    },
    RegisterTargets {
        instance_ids: Vec<String>,
    },
    DeregisterTargets {
        targets: Vec<(String, i32)>,
    },
    CreateAlb,
    CreateAlbListener,
    ModifyAlbListener {
        listener_arn: String,
        changes: Vec<String>,
    },
    CreateAlbTargetGroup,
    RegisterAlb,
    CreateNlb,
    CreateNlbListener,
    ModifyNlbListener {
        listener_arn: String,
        changes: Vec<String>,
    },
    CreateEndpointService,
    SetAcceptanceRequired {
        required: bool,
    },
    AddPrincipals {
        principals: Vec<String>,
    },
    RemovePrincipals {
        principals: Vec<String>,
    },
    CreateEndpoint,
    ModifyEndpoint {
        changes: EndpointChanges,
    },
    AcceptConnection,
    CreateHostedZone,
    /// Points the record at the endpoint; `replace` is a record of another type to remove in
    /// the same change batch.
    UpsertRecord {
        replace: Option<Record>,
    },
    DeleteRecord {
        record: Record,
    },
    DeleteHostedZone {
        zone_id: String,
    },
    DeleteEndpoint {
        endpoint_id: String,
    },
    /// Waits until the endpoint is gone: the service refuses deletion while it has one.
    WaitEndpointDeleted {
        endpoint_id: String,
    },
    DeleteEndpointService {
        service_id: String,
    },
    DeleteListener {
        listener_arn: String,
    },
    DeleteLoadBalancer {
        arn: String,
    },
    DeleteTargetGroup {
        arn: String,
    },
}

/// Subnet and security group changes of the interface endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointChanges {
    pub add_subnets: Vec<String>,
    pub remove_subnets: Vec<String>,
    pub add_security_groups: Vec<String>,
    pub remove_security_groups: Vec<String>,
}

impl RouteAction {
    /// The hop whose condition this action affects.
    pub fn hop(&self) -> Hop {
        use RouteAction::*;
        match self {
            CreateInstanceTargetGroup
            | ModifyHealthCheck { .. }
            | RegisterTargets { .. }
            | DeregisterTargets { .. } => Hop::Targets,
            CreateAlb
            | CreateAlbListener
            | ModifyAlbListener { .. }
            | CreateAlbTargetGroup
            | RegisterAlb
            | CreateNlb
            | CreateNlbListener
            | ModifyNlbListener { .. } => Hop::LoadBalancer,
            CreateEndpointService
            | SetAcceptanceRequired { .. }
            | AddPrincipals { .. }
            | RemovePrincipals { .. } => Hop::EndpointService,
            CreateEndpoint | ModifyEndpoint { .. } | AcceptConnection => Hop::Endpoint,
            CreateHostedZone | UpsertRecord { .. } => Hop::Dns,
            DeleteRecord { .. } | DeleteHostedZone { .. } => Hop::Dns,
            DeleteEndpoint { .. } | WaitEndpointDeleted { .. } => Hop::Endpoint,
            DeleteEndpointService { .. } => Hop::EndpointService,
            DeleteListener { .. } | DeleteLoadBalancer { .. } => Hop::LoadBalancer,
            DeleteTargetGroup { .. } => Hop::LoadBalancer,
        }
    }

    /// Whether the action creates a resource (as opposed to correcting one).
    pub fn is_create(&self) -> bool {
        use RouteAction::*;
        matches!(
            self,
            CreateInstanceTargetGroup
                | CreateAlb
                | CreateAlbListener
                | CreateAlbTargetGroup
                | CreateNlb
                | CreateNlbListener
                | CreateEndpointService
                | CreateEndpoint
                | CreateHostedZone
        )
    }

    /// One line for Events and logs saying what the action does and, for drift, what changed.
    pub fn describe(&self) -> String {
        use RouteAction::*;
        match self {
            CreateInstanceTargetGroup => "created the instance target group".into(),
            ModifyHealthCheck { changes } => format!("health check: {}", changes.join(", ")),
            RegisterTargets { instance_ids } => {
                format!("registered targets {}", instance_ids.join(","))
            }
            DeregisterTargets { targets } => {
                let ids: Vec<String> = targets
                    .iter()
                    .map(|(id, port)| format!("{id}:{port}"))
                    .collect();
                format!("deregistered unknown targets {}", ids.join(","))
            }
            CreateAlb => "created the ALB".into(),
            CreateAlbListener => "created the ALB HTTPS listener".into(),
            ModifyAlbListener { changes, .. } => format!("ALB listener: {}", changes.join(", ")),
            CreateAlbTargetGroup => "created the target group of type alb".into(),
            RegisterAlb => "registered the ALB in the NLB's target group".into(),
            CreateNlb => "created the NLB".into(),
            CreateNlbListener => "created the NLB TCP listener".into(),
            ModifyNlbListener { changes, .. } => format!("NLB listener: {}", changes.join(", ")),
            CreateEndpointService => "created the endpoint service".into(),
            SetAcceptanceRequired { required } => {
                format!("endpoint service acceptance required set to {required}")
            }
            AddPrincipals { principals } => format!("allowed principals {}", principals.join(",")),
            RemovePrincipals { principals } => {
                format!("removed unknown principals {}", principals.join(","))
            }
            CreateEndpoint => "created the interface endpoint".into(),
            ModifyEndpoint { changes } => format!("endpoint: {}", changes.describe()),
            AcceptConnection => "accepted the endpoint's connection".into(),
            CreateHostedZone => "created the private hosted zone".into(),
            UpsertRecord { .. } => "pointed the record at the endpoint".into(),
            DeleteRecord { record } => format!("deleted record {}", record.describe()),
            DeleteHostedZone { zone_id } => format!("deleted hosted zone {zone_id}"),
            DeleteEndpoint { endpoint_id } => format!("deleted endpoint {endpoint_id}"),
            WaitEndpointDeleted { endpoint_id } => format!("waited for {endpoint_id} to go"),
            DeleteEndpointService { service_id } => {
                format!("deleted endpoint service {service_id}")
            }
            DeleteListener { listener_arn } => format!("deleted listener {listener_arn}"),
            DeleteLoadBalancer { arn } => format!("deleted load balancer {arn}"),
            DeleteTargetGroup { arn } => format!("deleted target group {arn}"),
        }
    }
}

impl EndpointChanges {
    pub fn is_empty(&self) -> bool {
        self.add_subnets.is_empty()
            && self.remove_subnets.is_empty()
            && self.add_security_groups.is_empty()
            && self.remove_security_groups.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let lists = [
            ("added subnets", &self.add_subnets),
            ("removed subnets", &self.remove_subnets),
            ("added security groups", &self.add_security_groups),
            ("removed security groups", &self.remove_security_groups),
        ];
        for (label, ids) in lists {
            if !ids.is_empty() {
                parts.push(format!("{label} {}", ids.join(",")));
            }
        }
        parts.join(", ")
    }
}
