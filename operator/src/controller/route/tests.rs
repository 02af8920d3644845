//! Planner, validation and status tests: spec and observed state in, actions and conditions
//! out. No client anywhere.

use std::sync::Arc;

use super::action::{EndpointChanges, Hop, RouteAction};
use super::plan::{plan, plan_cleanup, Desired};
use super::state::*;
use super::validate::validate;
use crate::crd::{AwsAccount, PrivateLinkRoute, PrivateLinkRouteSpec};

const CERT: &str =
    "arn:aws:acm:eu-west-1:111111111111:certificate/0b6b4c1e-7d1a-4b7e-9b53-8c1f4f2b9c11";
const OTHER_CERT: &str =
    "arn:aws:acm:eu-west-1:111111111111:certificate/aaaaaaaa-7d1a-4b7e-9b53-8c1f4f2b9c11";
const PRINCIPAL: &str = "arn:aws:iam::222222222222:root";
const ITG: &str = "arn:itg";
const ATG: &str = "arn:atg";
const ALB: &str = "arn:alb";
const NLB: &str = "arn:nlb";
const ENDPOINT_DNS: &str = "vpce-1-abc.vpce-svc-1.eu-west-1.vpce.amazonaws.com";

pub(super) fn spec() -> PrivateLinkRouteSpec {
    let value = serde_json::json!({
        "hostName": "admin.prod.example.com",
        "port": 10443,
        "provider": {
            "accountRef": "production",
            "vpcId": "vpc-0000000a",
            "nlbSubnetIds": ["subnet-0000000a"],
            "albSubnetIds": ["subnet-0000000a", "subnet-0000000b"],
            "albSecurityGroupIds": ["sg-0000000a"],
            "certificateArn": CERT,
            "targets": {"port": 443, "instanceIds": ["i-0000000a", "i-0000000b"]},
        },
        "consumer": {
            "accountRef": "jump",
            "vpcId": "vpc-0000000c",
            "subnetIds": ["subnet-0000000c"],
            "securityGroupIds": ["sg-0000000c"],
            "hostedZone": {"zoneName": "prod.example.com"},
        },
    });
    serde_json::from_value(value).unwrap_or_else(|err| unreachable!("test spec: {err}"))
}

fn listener(arn: &str, port: i32, protocol: &str, cert: Option<&str>, forward: &str) -> Listener {
    Listener {
        arn: arn.into(),
        port,
        protocol: protocol.into(),
        certificate_arns: cert.into_iter().map(str::to_string).collect(),
        ssl_policy: None,
        forward_to: vec![forward.into()],
    }
}

fn subnet(id: &str, vpc: &str, zone: &str) -> Subnet {
    Subnet {
        id: id.into(),
        vpc_id: vpc.into(),
        zone: zone.into(),
    }
}

fn target(id: &str, port: i32) -> Target {
    Target {
        id: id.into(),
        port,
        health: "healthy".into(),
    }
}

fn balancer(arn: &str) -> LoadBalancer {
    LoadBalancer {
        arn: arn.into(),
        state: "active".into(),
        ..LoadBalancer::default()
    }
}

/// AWS facts that exist before the route: subnets, instances, the certificate.
fn prerequisites() -> Observed {
    Observed {
        certificate_status: Some("ISSUED".into()),
        provider_subnets: vec![
            subnet("subnet-0000000a", "vpc-0000000a", "eu-west-1a"),
            subnet("subnet-0000000b", "vpc-0000000a", "eu-west-1b"),
        ],
        consumer_subnets: vec![subnet("subnet-0000000c", "vpc-0000000c", "eu-west-1a")],
        instances: ["i-0000000a", "i-0000000b"]
            .iter()
            .map(|id| Instance {
                id: (*id).into(),
                vpc_id: "vpc-0000000a".into(),
                state: "running".into(),
            })
            .collect(),
        ..Observed::default()
    }
}

/// A route whose every hop matches the spec.
pub(super) fn converged() -> Observed {
    let health_check = HealthCheckSettings {
        protocol: "HTTPS".into(),
        path: "/".into(),
        interval_seconds: 30,
        healthy_threshold: 5,
        unhealthy_threshold: 2,
        matcher: "200-399".into(),
    };
    Observed {
        instance_target_group: Some(TargetGroup {
            arn: ITG.into(),
            protocol: "HTTPS".into(),
            port: 443,
            health_check,
            targets: vec![target("i-0000000a", 443), target("i-0000000b", 443)],
        }),
        alb: Some(balancer(ALB)),
        alb_listeners: vec![listener(
            "arn:alb-listener",
            10443,
            "HTTPS",
            Some(CERT),
            ITG,
        )],
        alb_target_group: Some(TargetGroup {
            arn: ATG.into(),
            targets: vec![target(ALB, 10443)],
            ..TargetGroup::default()
        }),
        nlb: Some(balancer(NLB)),
        nlb_listeners: vec![listener("arn:nlb-listener", 10443, "TCP", None, ATG)],
        endpoint_service: Some(EndpointService {
            id: "vpce-svc-1".into(),
            name: "com.amazonaws.vpce.eu-west-1.vpce-svc-1".into(),
            state: "Available".into(),
            acceptance_required: true,
            principals: vec![PRINCIPAL.into()],
            connections: vec![Connection {
                endpoint_id: "vpce-1".into(),
                state: "available".into(),
            }],
        }),
        endpoint: Some(Endpoint {
            id: "vpce-1".into(),
            state: "available".into(),
            service_name: "com.amazonaws.vpce.eu-west-1.vpce-svc-1".into(),
            subnet_ids: vec!["subnet-0000000c".into()],
            security_group_ids: vec!["sg-0000000c".into()],
            dns_name: ENDPOINT_DNS.into(),
            dns_zone_id: "Z7HUB22UULQXV".into(),
        }),
        hosted_zone: Some(HostedZone {
            id: "Z0ZONE".into(),
            name: "prod.example.com.".into(),
            owned: true,
            vpc_ids: vec!["vpc-0000000c".into()],
        }),
        record: Some(Record {
            name: "admin.prod.example.com".into(),
            type_: "CNAME".into(),
            values: vec![ENDPOINT_DNS.into()],
            alias_zone_id: None,
            ttl: Some(60),
        }),
        ..prerequisites()
    }
}

pub(super) fn desired(spec: &PrivateLinkRouteSpec) -> Desired<'_> {
    Desired {
        spec,
        principals: vec![PRINCIPAL.into()],
    }
}

#[test]
fn converged_route_needs_nothing_and_is_ready() {
    let spec = spec();
    let plan = plan(&desired(&spec), &converged());
    assert_eq!(plan.actions, vec![]);
    assert!(plan.ready(), "{:?}", plan.hops);
}

#[test]
fn creates_the_whole_path_in_dependency_order_from_nothing() {
    let spec = spec();
    let plan = plan(&desired(&spec), &prerequisites());
    use RouteAction::*;
    assert_eq!(
        plan.actions,
        vec![
            CreateInstanceTargetGroup,
            RegisterTargets {
                instance_ids: vec!["i-0000000a".into(), "i-0000000b".into()]
            },
            CreateAlb,
            CreateAlbListener,
            CreateAlbTargetGroup,
            RegisterAlb,
            CreateNlb,
            CreateNlbListener,
            CreateEndpointService,
            AddPrincipals {
                principals: vec![PRINCIPAL.into()]
            },
            CreateEndpoint,
            AcceptConnection,
            CreateHostedZone,
            UpsertRecord { replace: None },
        ]
    );
    assert!(!plan.ready());
    assert!(plan.hops.iter().all(|h| h.reason == "Reconciling"));
}

/// One drift case: a change to the converged state and the single action that corrects it.
struct Drift {
    name: &'static str,
    change: fn(&mut Observed),
    expect: Vec<RouteAction>,
}

fn drift_cases() -> Vec<Drift> {
    use RouteAction::*;
    let alb_listener = || "arn:alb-listener".to_string();
    let nlb_listener = || "arn:nlb-listener".to_string();
    vec![
        Drift {
            name: "ALB listener deleted",
            change: |o| o.alb_listeners.clear(),
            expect: vec![CreateAlbListener],
        },
        Drift {
            name: "ALB listener port",
            change: |o| o.alb_listeners[0].port = 443,
            expect: vec![ModifyAlbListener {
                listener_arn: alb_listener(),
                changes: vec!["port 443 -> 10443".into()],
            }],
        },
        Drift {
            name: "ALB listener protocol",
            change: |o| o.alb_listeners[0].protocol = "HTTP".into(),
            expect: vec![ModifyAlbListener {
                listener_arn: alb_listener(),
                changes: vec!["protocol HTTP -> HTTPS".into()],
            }],
        },
        Drift {
            name: "ALB listener certificate",
            change: |o| o.alb_listeners[0].certificate_arns = vec![OTHER_CERT.into()],
            expect: vec![ModifyAlbListener {
                listener_arn: alb_listener(),
                changes: vec![format!("certificate {OTHER_CERT} -> {CERT}")],
            }],
        },
        Drift {
            name: "ALB listener default action",
            change: |o| o.alb_listeners[0].forward_to = vec![],
            expect: vec![ModifyAlbListener {
                listener_arn: alb_listener(),
                changes: vec![format!("default action forwards to [] -> [{ITG}]")],
            }],
        },
        Drift {
            name: "NLB listener deleted",
            change: |o| o.nlb_listeners.clear(),
            expect: vec![CreateNlbListener],
        },
        Drift {
            name: "NLB listener port and protocol",
            change: |o| {
                o.nlb_listeners[0].port = 80;
                o.nlb_listeners[0].protocol = "TLS".into();
            },
            expect: vec![ModifyNlbListener {
                listener_arn: nlb_listener(),
                changes: vec!["port 80 -> 10443".into(), "protocol TLS -> TCP".into()],
            }],
        },
        Drift {
            name: "NLB listener default action",
            change: |o| o.nlb_listeners[0].forward_to = vec!["arn:other".into()],
            expect: vec![ModifyNlbListener {
                listener_arn: nlb_listener(),
                changes: vec![format!("default action forwards to [arn:other] -> [{ATG}]")],
            }],
        },
        Drift {
            name: "target missing",
            change: |o| {
                if let Some(g) = o.instance_target_group.as_mut() {
                    g.targets.remove(1);
                }
            },
            expect: vec![RegisterTargets {
                instance_ids: vec!["i-0000000b".into()],
            }],
        },
        Drift {
            name: "unknown target",
            change: |o| {
                if let Some(g) = o.instance_target_group.as_mut() {
                    g.targets.push(target("i-0000000f", 443));
                }
            },
            expect: vec![DeregisterTargets {
                targets: vec![("i-0000000f".into(), 443)],
            }],
        },
        Drift {
            name: "target on the wrong port",
            change: |o| {
                if let Some(g) = o.instance_target_group.as_mut() {
                    g.targets[0].port = 8443;
                }
            },
            expect: vec![
                RegisterTargets {
                    instance_ids: vec!["i-0000000a".into()],
                },
                DeregisterTargets {
                    targets: vec![("i-0000000a".into(), 8443)],
                },
            ],
        },
        Drift {
            name: "health check settings",
            change: |o| {
                if let Some(g) = o.instance_target_group.as_mut() {
                    g.health_check.path = "/health".into();
                    g.health_check.healthy_threshold = 3;
                }
            },
            expect: vec![ModifyHealthCheck {
                changes: vec![
                    "path /health -> /".into(),
                    "healthy threshold 3 -> 5".into(),
                ],
            }],
        },
        Drift {
            name: "ALB deregistered from the alb target group",
            change: |o| {
                if let Some(g) = o.alb_target_group.as_mut() {
                    g.targets.clear();
                }
            },
            expect: vec![RegisterAlb],
        },
        Drift {
            name: "principal removed and a stranger added",
            change: |o| {
                if let Some(s) = o.endpoint_service.as_mut() {
                    s.principals = vec!["arn:aws:iam::999999999999:root".into()];
                }
            },
            expect: vec![
                AddPrincipals {
                    principals: vec![PRINCIPAL.into()],
                },
                RemovePrincipals {
                    principals: vec!["arn:aws:iam::999999999999:root".into()],
                },
            ],
        },
        Drift {
            name: "acceptance switched off",
            change: |o| {
                if let Some(s) = o.endpoint_service.as_mut() {
                    s.acceptance_required = false;
                }
            },
            expect: vec![SetAcceptanceRequired { required: true }],
        },
        Drift {
            name: "endpoint subnets and security groups",
            change: |o| {
                if let Some(e) = o.endpoint.as_mut() {
                    e.subnet_ids = vec!["subnet-0000000d".into()];
                    e.security_group_ids.push("sg-0000000d".into());
                }
            },
            expect: vec![ModifyEndpoint {
                changes: EndpointChanges {
                    add_subnets: vec!["subnet-0000000c".into()],
                    remove_subnets: vec!["subnet-0000000d".into()],
                    add_security_groups: vec![],
                    remove_security_groups: vec!["sg-0000000d".into()],
                },
            }],
        },
        Drift {
            name: "our connection pending acceptance",
            change: |o| {
                if let Some(s) = o.endpoint_service.as_mut() {
                    s.connections[0].state = "pendingAcceptance".into();
                }
            },
            expect: vec![AcceptConnection],
        },
        Drift {
            name: "DNS record value",
            change: |o| {
                if let Some(r) = o.record.as_mut() {
                    r.values = vec!["elsewhere.example.com".into()];
                }
            },
            expect: vec![UpsertRecord { replace: None }],
        },
        Drift {
            name: "DNS record deleted",
            change: |o| o.record = None,
            expect: vec![UpsertRecord { replace: None }],
        },
        Drift {
            name: "DNS record replaced by another type",
            change: |o| {
                if let Some(r) = o.record.as_mut() {
                    r.type_ = "A".into();
                    r.alias_zone_id = Some("Z1".into());
                }
            },
            expect: vec![UpsertRecord {
                replace: Some(Record {
                    name: "admin.prod.example.com".into(),
                    type_: "A".into(),
                    values: vec![ENDPOINT_DNS.into()],
                    alias_zone_id: Some("Z1".into()),
                    ttl: Some(60),
                }),
            }],
        },
    ]
}

#[test]
fn every_drift_case_is_corrected_by_exactly_its_actions() {
    let spec = spec();
    for case in drift_cases() {
        let mut observed = converged();
        (case.change)(&mut observed);
        let plan = plan(&desired(&spec), &observed);
        assert_eq!(plan.actions, case.expect, "{}", case.name);
        assert!(!plan.ready(), "{}", case.name);
    }
}

#[test]
fn dns_values_match_regardless_of_case_and_trailing_dot() {
    let spec = spec();
    let mut observed = converged();
    if let Some(r) = observed.record.as_mut() {
        r.values = vec![format!("{}.", ENDPOINT_DNS.to_uppercase())];
    }
    assert_eq!(plan(&desired(&spec), &observed).actions, vec![]);
}

#[test]
fn other_endpoints_pending_connections_are_left_alone() {
    let spec = spec();
    let mut observed = converged();
    if let Some(s) = observed.endpoint_service.as_mut() {
        let stranger = Connection {
            endpoint_id: "vpce-9".into(),
            state: "pendingAcceptance".into(),
        };
        s.connections.push(stranger);
    }
    assert_eq!(plan(&desired(&spec), &observed).actions, vec![]);
}

#[test]
fn ssl_policy_drift_is_corrected_when_the_spec_names_one() {
    let mut spec = spec();
    spec.provider.ssl_policy = Some("ELBSecurityPolicy-TLS13-1-2-2021-06".into());
    let actions = plan(&desired(&spec), &converged()).actions;
    assert!(
        matches!(&actions[..], [RouteAction::ModifyAlbListener { changes, .. }]
        if changes == &["ssl policy none -> ELBSecurityPolicy-TLS13-1-2-2021-06".to_string()])
    );
}

#[test]
fn alias_records_compare_the_alias_zone() {
    let mut spec = spec();
    spec.consumer.record_type = crate::crd::RecordType::Alias;
    let mut observed = converged();
    if let Some(r) = observed.record.as_mut() {
        r.type_ = "A".into();
        r.alias_zone_id = Some("Z7HUB22UULQXV".into());
    }
    assert_eq!(plan(&desired(&spec), &observed).actions, vec![]);
    if let Some(r) = observed.record.as_mut() {
        r.alias_zone_id = Some("ZOTHER".into());
    }
    let actions = plan(&desired(&spec), &observed).actions;
    assert_eq!(actions, vec![RouteAction::UpsertRecord { replace: None }]);
}

/// A blocking problem: no action at all, and the hop says why.
struct Blocked {
    name: &'static str,
    change: fn(&mut Observed),
    hop: Hop,
    reason: &'static str,
}

#[test]
fn problems_aws_cannot_fix_block_every_write_with_a_reason() {
    let cases = [
        Blocked {
            name: "certificate pending",
            change: |o| o.certificate_status = Some("PENDING_VALIDATION".into()),
            hop: Hop::LoadBalancer,
            reason: "CertificateNotIssued",
        },
        Blocked {
            name: "certificate unknown",
            change: |o| o.certificate_status = None,
            hop: Hop::LoadBalancer,
            reason: "CertificateNotFound",
        },
        Blocked {
            name: "ALB subnets in one zone",
            change: |o| o.provider_subnets[1].zone = "eu-west-1a".into(),
            hop: Hop::LoadBalancer,
            reason: "SubnetsInOneZone",
        },
        Blocked {
            name: "subnet in another VPC",
            change: |o| o.provider_subnets[1].vpc_id = "vpc-0000000f".into(),
            hop: Hop::LoadBalancer,
            reason: "VpcMismatch",
        },
        Blocked {
            name: "subnet missing",
            change: |o| {
                o.provider_subnets.pop();
            },
            hop: Hop::LoadBalancer,
            reason: "SubnetNotFound",
        },
        Blocked {
            name: "consumer subnet in another VPC",
            change: |o| o.consumer_subnets[0].vpc_id = "vpc-0000000a".into(),
            hop: Hop::Endpoint,
            reason: "VpcMismatch",
        },
        Blocked {
            name: "instance in another VPC",
            change: |o| o.instances[0].vpc_id = "vpc-0000000f".into(),
            hop: Hop::Targets,
            reason: "VpcMismatch",
        },
    ];
    let spec = spec();
    for case in cases {
        let mut observed = prerequisites();
        (case.change)(&mut observed);
        let plan = plan(&desired(&spec), &observed);
        assert_eq!(plan.actions, vec![], "{}", case.name);
        let problem = plan.problem.as_ref().map(|p| (p.hop, p.reason));
        assert_eq!(problem, Some((case.hop, case.reason)), "{}", case.name);
        let hop = plan.hops.iter().find(|h| h.hop == case.hop);
        assert_eq!(
            hop.map(|h| h.reason.as_str()),
            Some(case.reason),
            "{}",
            case.name
        );
    }
}

#[test]
fn missing_instances_are_skipped_not_registered() {
    let spec = spec();
    let mut observed = prerequisites();
    observed.instances.pop();
    let actions = plan(&desired(&spec), &observed).actions;
    let register = RouteAction::RegisterTargets {
        instance_ids: vec!["i-0000000a".into()],
    };
    assert_eq!(actions.get(1), Some(&register));
}

#[test]
fn a_route_missing_one_of_its_instances_is_not_ready() {
    let spec = spec();
    let mut observed = converged();
    let gone = observed.instances.pop().map(|i| i.id).unwrap_or_default();
    if let Some(group) = observed.instance_target_group.as_mut() {
        group.targets.retain(|t| t.id != gone);
    }
    let plan = plan(&desired(&spec), &observed);
    assert_eq!(plan.actions, vec![], "the rest of the path is in place");
    assert!(!plan.ready());
    let targets = plan.hops.iter().find(|h| h.hop == Hop::Targets);
    assert_eq!(targets.map(|h| h.reason.as_str()), Some("InstanceNotFound"));
    assert!(targets.is_some_and(|h| h.message.contains(&gone)));
}

#[test]
fn ready_names_the_hop_with_the_problem_not_one_it_blocks() {
    let spec = spec();
    let mut observed = prerequisites();
    observed.provider_subnets.pop();
    let blocked = plan(&desired(&spec), &observed);
    let route = route(spec.clone());
    let at = jiff::Timestamp::UNIX_EPOCH;
    let status = super::status::from_plan(&route, &observed, &blocked, None, at);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.reason.as_str()), Some("SubnetNotFound"));
}

#[test]
fn provisioning_load_balancers_keep_the_hop_waiting() {
    let spec = spec();
    let mut observed = converged();
    if let Some(nlb) = observed.nlb.as_mut() {
        nlb.state = "provisioning".into();
    }
    let plan = plan(&desired(&spec), &observed);
    assert_eq!(plan.actions, vec![]);
    let hop = plan.hops.iter().find(|h| h.hop == Hop::LoadBalancer);
    assert_eq!(
        hop.map(|h| h.reason.as_str()),
        Some("LoadBalancerProvisioning")
    );
    assert!(!plan.ready());
}

#[test]
fn existing_zone_must_be_associated_with_the_consumer_vpc() {
    let mut spec = spec();
    spec.consumer.hosted_zone = crate::crd::HostedZone {
        zone_id: Some("Z0ZONE".into()),
        zone_name: None,
    };
    let mut observed = converged();
    if let Some(z) = observed.hosted_zone.as_mut() {
        z.owned = false;
        z.vpc_ids = vec!["vpc-0000000f".into()];
    }
    let plan = plan(&desired(&spec), &observed);
    assert_eq!(plan.problem.map(|p| p.reason), Some("VpcMismatch"));
    observed.hosted_zone = None;
    let plan = super::plan::plan(&desired(&spec), &observed);
    assert_eq!(plan.problem.map(|p| p.reason), Some("HostedZoneNotFound"));
}

#[test]
fn deletion_runs_in_reverse_order_and_waits_for_the_endpoint() {
    let spec = spec();
    use RouteAction::*;
    let actions = plan_cleanup(&spec, &converged());
    let record = converged().record.unwrap_or_default();
    assert_eq!(
        actions,
        vec![
            DeleteRecord { record },
            DeleteHostedZone {
                zone_id: "Z0ZONE".into()
            },
            DeleteEndpoint {
                endpoint_id: "vpce-1".into()
            },
            WaitEndpointDeleted {
                endpoint_id: "vpce-1".into()
            },
            DeleteEndpointService {
                service_id: "vpce-svc-1".into()
            },
            DeleteListener {
                listener_arn: "arn:nlb-listener".into()
            },
            DeleteLoadBalancer { arn: NLB.into() },
            DeleteTargetGroup { arn: ATG.into() },
            DeleteListener {
                listener_arn: "arn:alb-listener".into()
            },
            DeleteLoadBalancer { arn: ALB.into() },
            DeleteTargetGroup { arn: ITG.into() },
        ]
    );
}

#[test]
fn deletion_of_what_is_already_gone_plans_nothing() {
    assert_eq!(plan_cleanup(&spec(), &prerequisites()), vec![]);
}

#[test]
fn retain_leaves_everything_in_place() {
    let mut spec = spec();
    spec.deletion_policy = crate::crd::DeletionPolicy::Retain;
    assert_eq!(plan_cleanup(&spec, &converged()), vec![]);
}

#[test]
fn deletion_keeps_an_existing_zone_and_records_that_are_not_ours() {
    let mut spec = spec();
    spec.consumer.hosted_zone = crate::crd::HostedZone {
        zone_id: Some("Z0ZONE".into()),
        zone_name: None,
    };
    let mut observed = converged();
    if let Some(z) = observed.hosted_zone.as_mut() {
        z.owned = false;
    }
    if let Some(r) = observed.record.as_mut() {
        r.values = vec!["someone-else.example.com".into()];
    }
    let actions = plan_cleanup(&spec, &observed);
    assert!(
        matches!(actions.first(), Some(RouteAction::DeleteEndpoint { .. })),
        "{actions:?}"
    );
}

#[test]
fn deletion_does_not_delete_an_endpoint_twice() {
    let mut observed = converged();
    if let Some(e) = observed.endpoint.as_mut() {
        e.state = "deleting".into();
    }
    let actions = plan_cleanup(&spec(), &observed);
    assert!(!actions
        .iter()
        .any(|a| matches!(a, RouteAction::DeleteEndpoint { .. })));
    assert!(actions
        .iter()
        .any(|a| matches!(a, RouteAction::WaitEndpointDeleted { .. })));
}

fn account(name: &str, id: Option<&str>, namespaces: &[&str]) -> Arc<AwsAccount> {
    let value = serde_json::json!({
        "apiVersion": "prodaccess.io/v1alpha1",
        "kind": "AwsAccount",
        "metadata": {"name": name},
        "spec": {"region": "eu-west-1", "allowedNamespaces": namespaces},
        "status": {"accountId": id},
    });
    Arc::new(serde_json::from_value(value).unwrap_or_else(|err| unreachable!("account: {err}")))
}

fn route(spec: PrivateLinkRouteSpec) -> PrivateLinkRoute {
    PrivateLinkRoute::new("admin", spec)
}

fn accounts(name: &str) -> Option<Arc<AwsAccount>> {
    match name {
        "production" => Some(account("production", Some("111111111111"), &["team-*"])),
        "jump" => Some(account("jump", Some("222222222222"), &["team-a"])),
        "pending" => Some(account("pending", None, &["*"])),
        _ => None,
    }
}

#[test]
fn validation_resolves_accounts_and_defaults_principals_to_the_consumer_root() {
    let resolved = validate(&route(spec()), "team-a", accounts);
    let resolved = resolved.unwrap_or_else(|err| unreachable!("{err:?}"));
    assert_eq!(resolved.principals, vec![PRINCIPAL.to_string()]);
    assert_eq!(resolved.drift_check, std::time::Duration::from_secs(300));
}

/// Case name, change to the spec, namespace of the route, expected reason.
type ValidationCase = (
    &'static str,
    fn(&mut PrivateLinkRouteSpec),
    &'static str,
    &'static str,
);

#[test]
fn validation_reasons_name_what_is_wrong() {
    let cases: Vec<ValidationCase> = vec![
        ("ok", |_| {}, "team-b", "NamespaceNotAllowed"),
        (
            "unknown account",
            |s| s.provider.account_ref = "nope".into(),
            "team-a",
            "AccountNotFound",
        ),
        (
            "consumer without id",
            |s| s.consumer.account_ref = "pending".into(),
            "team-a",
            "AccountNotReady",
        ),
        (
            "certificate in another region",
            |s| s.provider.certificate_arn = CERT.replace("eu-west-1", "us-east-1"),
            "team-a",
            "CertificateWrongRegion",
        ),
        (
            "certificate of another account",
            |s| s.provider.certificate_arn = CERT.replace("111111111111", "333333333333"),
            "team-a",
            "CertificateWrongAccount",
        ),
        (
            "both zone id and name",
            |s| s.consumer.hosted_zone.zone_id = Some("Z1".into()),
            "team-a",
            "HostedZoneChoice",
        ),
        (
            "host outside the zone",
            |s| s.consumer.hosted_zone.zone_name = Some("corp.example.com".into()),
            "team-a",
            "HostNotInZone",
        ),
        (
            "zero drift interval",
            |s| s.drift_check_interval = "0s".into(),
            "team-a",
            "InvalidDriftCheckInterval",
        ),
    ];
    for (name, change, namespace, reason) in cases {
        let mut spec = spec();
        change(&mut spec);
        let result = validate(&route(spec), namespace, accounts);
        assert_eq!(result.err().map(|e| e.reason), Some(reason), "{name}");
    }
}

#[test]
fn status_reports_url_only_when_every_hop_is_ready_and_keeps_transition_times() {
    let spec = spec();
    let mut route = route(spec.clone());
    route.metadata.generation = Some(3);
    let at = |s: i64| jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let ready_plan = plan(&desired(&spec), &converged());
    let status = super::status::from_plan(&route, &converged(), &ready_plan, None, at(10));
    assert_eq!(
        status.url.as_deref(),
        Some("https://admin.prod.example.com:10443")
    );
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.conditions.len(), 6);
    assert_eq!(status.hops.endpoint_id.as_deref(), Some("vpce-1"));
    route.status = Some(status);
    let again = super::status::from_plan(&route, &converged(), &ready_plan, None, at(20));
    assert!(again
        .conditions
        .iter()
        .all(|c| c.last_transition_time.0 == at(10)));
    let pending = plan(&desired(&spec), &prerequisites());
    let status = super::status::from_plan(&route, &prerequisites(), &pending, None, at(30));
    assert_eq!(status.url, None);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    assert_eq!(
        ready.map(|c| (c.status.as_str(), c.last_transition_time.0)),
        Some(("False", at(30)))
    );
}
