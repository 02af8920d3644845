//! Reads what exists of a route in both accounts, by ownership: load balancers and target
//! groups by their deterministic names with the route-UID tag checked, EC2 endpoint services
//! and endpoints by the route-UID tag, the hosted zone by ID or by the route's caller
//! reference. A crash between a create and the status write therefore never leads to a
//! second resource: the next observe finds the first one.
//!
//! Endpoint services and endpoints are listed whole, every page, and filtered by tag here
//! rather than with a `tag:` filter, which the emulator does not implement everywhere.

use aws_sdk_ec2::types::Filter;
use std::sync::Arc;

use super::error::{none_if_not_found, AwsCallError};
use super::names::RouteNames;
use super::state::{
    Connection, Endpoint, EndpointService, HealthCheckSettings, HostedZone, Instance, Listener,
    LoadBalancer, Observed, Record, Subnet, Target, TargetGroup,
};
use crate::aws::AwsClients;
use crate::crd::{PrivateLinkRouteSpec, PrivateLinkRouteStatus};

/// Clients of the two accounts of a route.
#[derive(Clone, Debug)]
pub struct Clients {
    pub provider: Arc<AwsClients>,
    pub consumer: Arc<AwsClients>,
}

/// Why reading AWS failed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("failed to describe the certificate")]
    DescribeCertificate(#[source] AwsCallError),
    #[error("failed to describe subnets")]
    DescribeSubnets(#[source] AwsCallError),
    #[error("failed to describe instances")]
    DescribeInstances(#[source] AwsCallError),
    #[error("failed to describe target group {0}")]
    DescribeTargetGroups(String, #[source] AwsCallError),
    #[error("failed to describe target health")]
    DescribeTargetHealth(#[source] AwsCallError),
    #[error("failed to describe load balancer {0}")]
    DescribeLoadBalancers(String, #[source] AwsCallError),
    #[error("failed to describe tags")]
    DescribeTags(#[source] AwsCallError),
    #[error("failed to describe listeners")]
    DescribeListeners(#[source] AwsCallError),
    #[error("failed to describe endpoint service configurations")]
    DescribeEndpointServices(#[source] AwsCallError),
    #[error("failed to describe endpoint service permissions")]
    DescribeServicePermissions(#[source] AwsCallError),
    #[error("failed to describe endpoint connections")]
    DescribeEndpointConnections(#[source] AwsCallError),
    #[error("failed to describe VPC endpoints")]
    DescribeEndpoints(#[source] AwsCallError),
    #[error("failed to get hosted zone")]
    GetHostedZone(#[source] AwsCallError),
    #[error("failed to list hosted zones")]
    ListHostedZones(#[source] AwsCallError),
    #[error("failed to list resource record sets")]
    ListRecords(#[source] AwsCallError),
    #[error("{0} exists but belongs to another route or to nobody; rename or delete it")]
    NameTaken(String),
}

/// Reads everything the planner needs.
pub async fn observe(
    clients: &Clients,
    spec: &PrivateLinkRouteSpec,
    names: &RouteNames,
    status: Option<&PrivateLinkRouteStatus>,
) -> Result<Observed, ObserveError> {
    let provider = &clients.provider;
    let mut observed = Observed {
        certificate_status: certificate_status(provider, &spec.provider.certificate_arn).await?,
        ..Observed::default()
    };
    let lb_subnets: Vec<String> = spec
        .provider
        .alb_subnet_ids
        .iter()
        .chain(&spec.provider.nlb_subnet_ids)
        .cloned()
        .collect();
    observed.provider_subnets = subnets(provider, &lb_subnets).await?;
    observed.consumer_subnets = subnets(&clients.consumer, &spec.consumer.subnet_ids).await?;
    observed.instances = instances(provider, &spec.provider.targets.instance_ids).await?;
    observe_balancers(provider, names, &mut observed).await?;
    observed.endpoint_service = endpoint_service(provider, names).await?;
    observed.endpoint = endpoint(&clients.consumer, names).await?;
    observed.hosted_zone = hosted_zone(&clients.consumer, spec, names).await?;
    if let Some(zone) = &observed.hosted_zone {
        observed.record = record(&clients.consumer, &zone.id, &spec.host_name).await?;
    }
    let hops = status.map(|s| &s.hops);
    observed.recorded_alb_listener = hops.and_then(|h| h.alb_listener_arn.clone());
    observed.recorded_nlb_listener = hops.and_then(|h| h.nlb_listener_arn.clone());
    observed.recorded_endpoint_dns = hops.and_then(|h| h.endpoint_dns_name.clone());
    Ok(observed)
}

async fn observe_balancers(
    aws: &AwsClients,
    names: &RouteNames,
    observed: &mut Observed,
) -> Result<(), ObserveError> {
    observed.instance_target_group =
        target_group(aws, names, &names.instance_target_group()).await?;
    observed.alb = load_balancer(aws, names, &names.alb()).await?;
    if let Some(alb) = &observed.alb {
        observed.alb_listeners = listeners(aws, &alb.arn).await?;
    }
    observed.alb_target_group = target_group(aws, names, &names.alb_target_group()).await?;
    observed.nlb = load_balancer(aws, names, &names.nlb()).await?;
    if let Some(nlb) = &observed.nlb {
        observed.nlb_listeners = listeners(aws, &nlb.arn).await?;
    }
    Ok(())
}

pub(super) async fn certificate_status(
    aws: &AwsClients,
    arn: &str,
) -> Result<Option<String>, ObserveError> {
    let result = aws
        .acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await;
    let out = none_if_not_found(result, ObserveError::DescribeCertificate)?;
    Ok(out.and_then(|out| {
        let status = out.certificate().and_then(|c| c.status());
        status.map(|s| s.as_str().to_string())
    }))
}

pub(super) fn filter(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

pub(super) async fn subnets(aws: &AwsClients, ids: &[String]) -> Result<Vec<Subnet>, ObserveError> {
    let out = aws
        .ec2
        .describe_subnets()
        .filters(filter("subnet-id", ids))
        .send()
        .await
        .map_err(|e| ObserveError::DescribeSubnets(e.into()))?;
    Ok(out
        .subnets()
        .iter()
        .map(|s| Subnet {
            id: s.subnet_id().unwrap_or_default().to_string(),
            vpc_id: s.vpc_id().unwrap_or_default().to_string(),
            zone: s.availability_zone().unwrap_or_default().to_string(),
        })
        .collect())
}

pub(super) async fn instances(
    aws: &AwsClients,
    ids: &[String],
) -> Result<Vec<Instance>, ObserveError> {
    let out = aws
        .ec2
        .describe_instances()
        .filters(filter("instance-id", ids))
        .send()
        .await
        .map_err(|e| ObserveError::DescribeInstances(e.into()))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            vpc_id: i.vpc_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
        })
        .filter(|i| i.state != "terminated" && i.state != "shutting-down")
        .collect())
}

/// Whether the ELB resource `arn` carries this route's UID tag.
async fn elb_owned(aws: &AwsClients, names: &RouteNames, arn: &str) -> Result<bool, ObserveError> {
    let out = aws
        .elbv2
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .map_err(|e| ObserveError::DescribeTags(e.into()))?;
    let tags = out.tag_descriptions().iter().flat_map(|d| d.tags());
    Ok(names.owns(tags.map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))))
}

async fn target_group(
    aws: &AwsClients,
    names: &RouteNames,
    name: &str,
) -> Result<Option<TargetGroup>, ObserveError> {
    let result = aws.elbv2.describe_target_groups().names(name).send().await;
    let fail = |err| ObserveError::DescribeTargetGroups(name.to_string(), err);
    let Some(out) = none_if_not_found(result, fail)? else {
        return Ok(None);
    };
    let Some(group) = out.target_groups().first() else {
        return Ok(None);
    };
    let arn = group.target_group_arn().unwrap_or_default().to_string();
    if !elb_owned(aws, names, &arn).await? {
        return Err(ObserveError::NameTaken(name.to_string()));
    }
    let targets = targets(aws, &arn).await?;
    Ok(Some(TargetGroup {
        targets,
        ..target_group_of(group)
    }))
}

/// A target group as ELB describes it, without its targets (a separate read).
pub(super) fn target_group_of(
    group: &aws_sdk_elasticloadbalancingv2::types::TargetGroup,
) -> TargetGroup {
    let health_check = HealthCheckSettings {
        protocol: group
            .health_check_protocol()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        path: group.health_check_path().unwrap_or_default().to_string(),
        interval_seconds: group.health_check_interval_seconds().unwrap_or_default(),
        healthy_threshold: group.healthy_threshold_count().unwrap_or_default(),
        unhealthy_threshold: group.unhealthy_threshold_count().unwrap_or_default(),
        matcher: group
            .matcher()
            .and_then(|m| m.http_code())
            .unwrap_or_default()
            .to_string(),
    };
    TargetGroup {
        arn: group.target_group_arn().unwrap_or_default().to_string(),
        targets: Vec::new(),
        protocol: group
            .protocol()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        port: group.port().unwrap_or_default(),
        health_check,
    }
}

pub(super) async fn targets(aws: &AwsClients, arn: &str) -> Result<Vec<Target>, ObserveError> {
    let out = aws
        .elbv2
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .map_err(|e| ObserveError::DescribeTargetHealth(e.into()))?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .map(|d| Target {
            id: d
                .target()
                .and_then(|t| t.id())
                .unwrap_or_default()
                .to_string(),
            port: d.target().and_then(|t| t.port()).unwrap_or_default(),
            health: d
                .target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        })
        .collect())
}

async fn load_balancer(
    aws: &AwsClients,
    names: &RouteNames,
    name: &str,
) -> Result<Option<LoadBalancer>, ObserveError> {
    let result = aws.elbv2.describe_load_balancers().names(name).send().await;
    let fail = |err| ObserveError::DescribeLoadBalancers(name.to_string(), err);
    let Some(out) = none_if_not_found(result, fail)? else {
        return Ok(None);
    };
    let Some(lb) = out.load_balancers().first() else {
        return Ok(None);
    };
    let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    if !elb_owned(aws, names, &arn).await? {
        return Err(ObserveError::NameTaken(name.to_string()));
    }
    Ok(Some(load_balancer_of(lb)))
}

/// A load balancer as ELB describes it.
pub(super) fn load_balancer_of(
    lb: &aws_sdk_elasticloadbalancingv2::types::LoadBalancer,
) -> LoadBalancer {
    LoadBalancer {
        arn: lb.load_balancer_arn().unwrap_or_default().to_string(),
        state: lb
            .state()
            .and_then(|s| s.code())
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        vpc_id: lb.vpc_id().unwrap_or_default().to_string(),
        dns_name: lb.dns_name().unwrap_or_default().to_string(),
    }
}

async fn listeners(aws: &AwsClients, lb_arn: &str) -> Result<Vec<Listener>, ObserveError> {
    let out = aws
        .elbv2
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .map_err(|e| ObserveError::DescribeListeners(e.into()))?;
    Ok(out.listeners().iter().map(listener_of).collect())
}

pub(super) fn listener_of(l: &aws_sdk_elasticloadbalancingv2::types::Listener) -> Listener {
    let forward_to = l
        .default_actions()
        .iter()
        .filter(|a| a.r#type().is_some_and(|t| t.as_str() == "forward"))
        .flat_map(|a| {
            let mut arns: Vec<String> = a
                .target_group_arn()
                .map(str::to_string)
                .into_iter()
                .collect();
            if arns.is_empty() {
                let groups = a
                    .forward_config()
                    .map(|f| f.target_groups())
                    .unwrap_or_default();
                arns = groups
                    .iter()
                    .filter_map(|g| g.target_group_arn())
                    .map(str::to_string)
                    .collect();
            }
            arns
        })
        .collect();
    Listener {
        arn: l.listener_arn().unwrap_or_default().to_string(),
        port: l.port().unwrap_or_default(),
        protocol: l
            .protocol()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        certificate_arns: l
            .certificates()
            .iter()
            .filter_map(|c| c.certificate_arn())
            .map(str::to_string)
            .collect(),
        ssl_policy: l.ssl_policy().map(str::to_string),
        forward_to,
    }
}

pub(super) fn ec2_owned(names: &RouteNames, tags: &[aws_sdk_ec2::types::Tag]) -> bool {
    names.owns(
        tags.iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    )
}

async fn endpoint_service(
    aws: &AwsClients,
    names: &RouteNames,
) -> Result<Option<EndpointService>, ObserveError> {
    let services = aws
        .ec2
        .describe_vpc_endpoint_service_configurations()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ObserveError::DescribeEndpointServices(e.into()))?;
    let found = services
        .iter()
        .find(|s| ec2_owned(names, s.tags()) && service_in_use(s));
    let Some(service) = found else {
        return Ok(None);
    };
    let service = endpoint_service_of(service);
    Ok(Some(EndpointService {
        principals: principals(aws, &service.id).await?,
        connections: connections(aws, &service.id).await?,
        ..service
    }))
}

/// Whether an endpoint service is neither gone nor going.
pub(super) fn service_in_use(service: &aws_sdk_ec2::types::ServiceConfiguration) -> bool {
    let state = service
        .service_state()
        .map(|s| s.as_str())
        .unwrap_or_default();
    !matches!(state, "Deleted" | "Deleting" | "Failed")
}

/// An endpoint service as EC2 describes it, without principals and connections (separate
/// reads).
pub(super) fn endpoint_service_of(
    service: &aws_sdk_ec2::types::ServiceConfiguration,
) -> EndpointService {
    EndpointService {
        id: service.service_id().unwrap_or_default().to_string(),
        name: service.service_name().unwrap_or_default().to_string(),
        state: service
            .service_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        acceptance_required: service.acceptance_required().unwrap_or(false),
        principals: Vec::new(),
        connections: Vec::new(),
    }
}

pub(super) async fn principals(
    aws: &AwsClients,
    service_id: &str,
) -> Result<Vec<String>, ObserveError> {
    let out = aws
        .ec2
        .describe_vpc_endpoint_service_permissions()
        .service_id(service_id)
        .send()
        .await
        .map_err(|e| ObserveError::DescribeServicePermissions(e.into()))?;
    Ok(out
        .allowed_principals()
        .iter()
        .filter_map(|p| p.principal())
        .map(str::to_string)
        .collect())
}

async fn connections(aws: &AwsClients, service_id: &str) -> Result<Vec<Connection>, ObserveError> {
    let out = aws
        .ec2
        .describe_vpc_endpoint_connections()
        .filters(filter("service-id", &[service_id.to_string()]))
        .send()
        .await
        .map_err(|e| ObserveError::DescribeEndpointConnections(e.into()))?;
    Ok(out
        .vpc_endpoint_connections()
        .iter()
        .map(|c| Connection {
            endpoint_id: c.vpc_endpoint_id().unwrap_or_default().to_string(),
            state: c
                .vpc_endpoint_state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        })
        .collect())
}

async fn endpoint(aws: &AwsClients, names: &RouteNames) -> Result<Option<Endpoint>, ObserveError> {
    let endpoints = aws
        .ec2
        .describe_vpc_endpoints()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ObserveError::DescribeEndpoints(e.into()))?;
    let found = endpoints
        .iter()
        .find(|e| ec2_owned(names, e.tags()) && endpoint_in_use(e));
    Ok(found.map(endpoint_of))
}

/// Whether an interface endpoint is not yet deleted.
pub(super) fn endpoint_in_use(endpoint: &aws_sdk_ec2::types::VpcEndpoint) -> bool {
    let state = endpoint
        .state()
        .map(|s| s.as_str().to_ascii_lowercase())
        .unwrap_or_default();
    state != "deleted"
}

/// An interface endpoint as EC2 describes it.
pub(super) fn endpoint_of(e: &aws_sdk_ec2::types::VpcEndpoint) -> Endpoint {
    let dns = e.dns_entries().first();
    Endpoint {
        id: e.vpc_endpoint_id().unwrap_or_default().to_string(),
        state: e
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        service_name: e.service_name().unwrap_or_default().to_string(),
        subnet_ids: e.subnet_ids().to_vec(),
        security_group_ids: e
            .groups()
            .iter()
            .filter_map(|g| g.group_id())
            .map(str::to_string)
            .collect(),
        dns_name: dns
            .and_then(|d| d.dns_name())
            .unwrap_or_default()
            .to_string(),
        dns_zone_id: dns
            .and_then(|d| d.hosted_zone_id())
            .unwrap_or_default()
            .to_string(),
    }
}

/// Zone IDs without Route 53's `/hostedzone/` prefix.
pub fn bare_zone_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_string()
}

async fn hosted_zone(
    aws: &AwsClients,
    spec: &PrivateLinkRouteSpec,
    names: &RouteNames,
) -> Result<Option<HostedZone>, ObserveError> {
    let zone = &spec.consumer.hosted_zone;
    if let Some(id) = &zone.zone_id {
        return existing_zone(aws, &bare_zone_id(id)).await;
    }
    let Some(name) = &zone.zone_name else {
        return Ok(None);
    };
    let out = aws
        .route53
        .list_hosted_zones_by_name()
        .dns_name(name)
        .send()
        .await
        .map_err(|e| ObserveError::ListHostedZones(e.into()))?;
    let reference = names.zone_caller_reference();
    let found = out
        .hosted_zones()
        .iter()
        .find(|z| z.caller_reference() == reference);
    Ok(found.map(|z| HostedZone {
        id: bare_zone_id(z.id()),
        name: z.name().to_string(),
        owned: true,
        vpc_ids: vec![spec.consumer.vpc_id.clone()],
    }))
}

pub(super) async fn existing_zone(
    aws: &AwsClients,
    id: &str,
) -> Result<Option<HostedZone>, ObserveError> {
    let result = aws.route53.get_hosted_zone().id(id).send().await;
    let Some(out) = none_if_not_found(result, ObserveError::GetHostedZone)? else {
        return Ok(None);
    };
    Ok(out.hosted_zone().map(|z| HostedZone {
        id: bare_zone_id(z.id()),
        name: z.name().to_string(),
        owned: false,
        vpc_ids: out
            .vpcs()
            .iter()
            .filter_map(|v| v.vpc_id())
            .map(str::to_string)
            .collect(),
    }))
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

pub(super) async fn record(
    aws: &AwsClients,
    zone_id: &str,
    host: &str,
) -> Result<Option<Record>, ObserveError> {
    let out = aws
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(host)
        .max_items(10)
        .send()
        .await
        .map_err(|e| ObserveError::ListRecords(e.into()))?;
    Ok(record_in(out.resource_record_sets(), host))
}

/// The CNAME or A record of `host` among a zone's record sets.
pub(super) fn record_in(
    sets: &[aws_sdk_route53::types::ResourceRecordSet],
    host: &str,
) -> Option<Record> {
    let found = sets
        .iter()
        .find(|r| same_name(r.name(), host) && matches!(r.r#type().as_str(), "CNAME" | "A"));
    found.map(|r| {
        let alias = r.alias_target();
        let values = match alias {
            Some(alias) => vec![alias.dns_name().to_string()],
            None => r
                .resource_records()
                .iter()
                .map(|v| v.value().to_string())
                .collect(),
        };
        Record {
            name: host.to_string(),
            type_: r.r#type().as_str().to_string(),
            values,
            alias_zone_id: alias.map(|a| a.hosted_zone_id().to_string()),
            ttl: r.ttl(),
        }
    })
}
