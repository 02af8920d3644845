//! Carries a plan out against AWS, in order.
//!
//! Create actions record the ARN or ID they got in [`Refs`], so later actions of the same plan
//! find their dependencies. "Already exists" and "already gone" are success. An action whose
//! dependency AWS has not finished (a load balancer still provisioning, an endpoint still
//! deleting, a target group still in use) stops the run and reports what it waits for; the
//! next reconcile carries on from observe.

use aws_sdk_ec2::types::{ResourceType, TagSpecification, VpcEndpointType};
use aws_sdk_elasticloadbalancingv2::types::{
    Action as ElbAction, ActionTypeEnum, Certificate, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
    Matcher, ProtocolEnum, Tag as ElbTag, TargetDescription, TargetTypeEnum,
};
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, HostedZoneConfig, ResourceRecord,
    ResourceRecordSet, RrType, Tag as ZoneTag, TagResourceType, Vpc, VpcRegion,
};
use std::time::Duration;

use super::action::{EndpointChanges, RouteAction};
use super::error::{none_if_not_found, AwsCallError};
use super::names::RouteNames;
use super::observe::{bare_zone_id, Clients};
use super::plan::target_protocol;
use super::state::{Observed, Record};
use crate::crd::{PrivateLinkRouteSpec, RecordType};

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("failed to create target group {0}")]
    CreateTargetGroup(String, #[source] AwsCallError),
    #[error("failed to modify the health check")]
    ModifyTargetGroup(#[source] AwsCallError),
    #[error("failed to register targets")]
    RegisterTargets(#[source] AwsCallError),
    #[error("failed to deregister targets")]
    DeregisterTargets(#[source] AwsCallError),
    #[error("failed to create load balancer {0}")]
    CreateLoadBalancer(String, #[source] AwsCallError),
    #[error("failed to create a listener")]
    CreateListener(#[source] AwsCallError),
    #[error("failed to modify listener {0}")]
    ModifyListener(String, #[source] AwsCallError),
    #[error("failed to describe listeners")]
    DescribeListeners(#[source] AwsCallError),
    #[error("failed to create the endpoint service")]
    CreateEndpointService(#[source] AwsCallError),
    #[error("failed to modify the endpoint service")]
    ModifyEndpointService(#[source] AwsCallError),
    #[error("failed to modify the endpoint service permissions")]
    ModifyServicePermissions(#[source] AwsCallError),
    #[error("failed to create the interface endpoint")]
    CreateEndpoint(#[source] AwsCallError),
    #[error("failed to modify the interface endpoint")]
    ModifyEndpoint(#[source] AwsCallError),
    #[error("failed to accept the endpoint connection")]
    AcceptConnection(#[source] AwsCallError),
    #[error("failed to accept the endpoint connection: {0}")]
    AcceptRefused(String),
    #[error("failed to create the hosted zone")]
    CreateHostedZone(#[source] AwsCallError),
    #[error("failed to tag the hosted zone")]
    TagHostedZone(#[source] AwsCallError),
    #[error("failed to change the record")]
    ChangeRecord(#[source] AwsCallError),
    #[error("failed to delete hosted zone {0}")]
    DeleteHostedZone(String, #[source] AwsCallError),
    #[error("failed to delete endpoint {0}")]
    DeleteEndpoint(String, #[source] AwsCallError),
    #[error("failed to describe endpoint {0}")]
    DescribeEndpoint(String, #[source] AwsCallError),
    #[error("failed to delete endpoint service {0}")]
    DeleteEndpointService(String, #[source] AwsCallError),
    #[error("failed to delete endpoint service {0}: {1}")]
    DeleteEndpointServiceRefused(String, String),
    #[error("failed to delete listener {0}")]
    DeleteListener(String, #[source] AwsCallError),
    #[error("failed to delete load balancer {0}")]
    DeleteLoadBalancer(String, #[source] AwsCallError),
    #[error("failed to delete target group {0}")]
    DeleteTargetGroup(String, #[source] AwsCallError),
    #[error("failed to find the {0} an action depends on")]
    MissingDependency(&'static str),
}

/// ARNs and IDs the actions depend on, from observe and from creates of the same run.
#[derive(Clone, Debug, Default)]
pub struct Refs {
    pub instance_target_group: Option<String>,
    pub alb: Option<String>,
    pub alb_active: bool,
    pub alb_target_group: Option<String>,
    pub nlb: Option<String>,
    pub nlb_active: bool,
    pub service_id: Option<String>,
    pub service_name: Option<String>,
    pub endpoint_id: Option<String>,
    pub endpoint_dns: Option<String>,
    pub endpoint_zone: Option<String>,
    pub zone_id: Option<String>,
    /// The route created the zone (found by its caller reference).
    pub zone_owned: bool,
}

impl Refs {
    pub fn from_observed(observed: &Observed) -> Self {
        let endpoint = observed.endpoint.as_ref();
        Self {
            instance_target_group: observed
                .instance_target_group
                .as_ref()
                .map(|g| g.arn.clone()),
            alb: observed.alb.as_ref().map(|lb| lb.arn.clone()),
            alb_active: observed.alb.as_ref().is_some_and(|lb| lb.is_active()),
            alb_target_group: observed.alb_target_group.as_ref().map(|g| g.arn.clone()),
            nlb: observed.nlb.as_ref().map(|lb| lb.arn.clone()),
            nlb_active: observed.nlb.as_ref().is_some_and(|lb| lb.is_active()),
            service_id: observed.endpoint_service.as_ref().map(|s| s.id.clone()),
            service_name: observed.endpoint_service.as_ref().map(|s| s.name.clone()),
            endpoint_id: endpoint.map(|e| e.id.clone()),
            endpoint_dns: endpoint.map(|e| e.dns_name.clone()),
            endpoint_zone: endpoint.map(|e| e.dns_zone_id.clone()),
            zone_id: observed.hosted_zone.as_ref().map(|z| z.id.clone()),
            zone_owned: observed.hosted_zone.as_ref().is_some_and(|z| z.owned),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Descriptions of the actions carried out, in order.
    pub done: Vec<String>,
    /// What the run stopped for, if it stopped before the end.
    pub waiting: Option<String>,
}

/// Everything an action needs besides its own fields.
pub struct Executor<'a> {
    pub clients: &'a Clients,
    pub spec: &'a PrivateLinkRouteSpec,
    pub names: &'a RouteNames,
    pub refs: Refs,
    /// Attempts and pause of [`RouteAction::WaitEndpointDeleted`].
    pub wait_attempts: u32,
    pub wait_pause: Duration,
}

/// One action's result: done, or stopped waiting for something.
enum Step {
    Done,
    Wait(String),
}

fn need(value: &Option<String>, what: &'static str) -> Result<String, ActError> {
    value.clone().ok_or(ActError::MissingDependency(what))
}

/// A removal whose thing is already gone is done: a run that an earlier, interrupted run
/// got halfway through must not fail on what that one removed.
fn done_if_gone<T>(
    result: Result<T, impl Into<AwsCallError>>,
    fail: impl FnOnce(AwsCallError) -> ActError,
) -> Result<Step, ActError> {
    none_if_not_found(result, fail).map(|_| Step::Done)
}

impl Executor<'_> {
    /// Runs `actions` in order until one has to wait.
    pub async fn run(&mut self, actions: &[RouteAction]) -> Result<Outcome, ActError> {
        let mut outcome = Outcome::default();
        for action in actions {
            match self.step(action).await? {
                Step::Done => outcome.done.push(action.describe()),
                Step::Wait(reason) => {
                    outcome.waiting = Some(reason);
                    break;
                }
            }
        }
        Ok(outcome)
    }

    async fn step(&mut self, action: &RouteAction) -> Result<Step, ActError> {
        use RouteAction::*;
        tracing::info!(action = %action.describe(), "Route action");
        match action {
            CreateInstanceTargetGroup => self.create_instance_target_group().await,
            ModifyHealthCheck { .. } => self.modify_health_check().await,
            RegisterTargets { instance_ids } => self.register_targets(instance_ids).await,
            DeregisterTargets { targets } => self.deregister_targets(targets).await,
            CreateAlb => self.create_balancer(false).await,
            CreateNlb => self.create_balancer(true).await,
            CreateAlbListener => self.create_listener(false).await,
            CreateNlbListener => self.create_listener(true).await,
            ModifyAlbListener { listener_arn, .. } => {
                self.modify_listener(listener_arn, false).await
            }
            ModifyNlbListener { listener_arn, .. } => {
                self.modify_listener(listener_arn, true).await
            }
            CreateAlbTargetGroup => self.create_alb_target_group().await,
            RegisterAlb => self.register_alb().await,
            CreateEndpointService => self.create_endpoint_service().await,
            SetAcceptanceRequired { required } => self.set_acceptance(*required).await,
            AddPrincipals { principals } => self.permissions(principals, true).await,
            RemovePrincipals { principals } => self.permissions(principals, false).await,
            CreateEndpoint => self.create_endpoint().await,
            ModifyEndpoint { changes } => self.modify_endpoint(changes).await,
            AcceptConnection => self.accept_connection().await,
            CreateHostedZone => self.create_hosted_zone().await,
            UpsertRecord { replace } => self.upsert_record(replace.as_ref()).await,
            DeleteRecord { record } => self.delete_record(record).await,
            DeleteHostedZone { zone_id } => self.delete_hosted_zone(zone_id).await,
            DeleteEndpoint { endpoint_id } => self.delete_endpoint(endpoint_id).await,
            WaitEndpointDeleted { endpoint_id } => self.wait_endpoint_deleted(endpoint_id).await,
            DeleteEndpointService { service_id } => self.delete_endpoint_service(service_id).await,
            DeleteListener { listener_arn } => self.delete_listener(listener_arn).await,
            DeleteLoadBalancer { arn } => self.delete_balancer(arn).await,
            DeleteTargetGroup { arn } => self.delete_target_group(arn).await,
        }
    }

    fn elb_tags(&self) -> Vec<ElbTag> {
        let tags = self.names.tags().into_iter();
        tags.map(|(key, value)| ElbTag::builder().key(key).value(value).build())
            .collect()
    }

    fn ec2_tags(&self, resource: ResourceType) -> TagSpecification {
        let tags = self.names.tags().into_iter().map(|(key, value)| {
            aws_sdk_ec2::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
        });
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags.collect()))
            .build()
    }

    fn target_protocol(&self) -> ProtocolEnum {
        ProtocolEnum::from(target_protocol(self.spec.provider.targets.protocol))
    }

    async fn create_instance_target_group(&mut self) -> Result<Step, ActError> {
        let targets = &self.spec.provider.targets;
        let check = &targets.health_check;
        let name = self.names.instance_target_group();
        let out = self
            .clients
            .provider
            .elbv2
            .create_target_group()
            .name(&name)
            .target_type(TargetTypeEnum::Instance)
            .protocol(self.target_protocol())
            .port(targets.port)
            .vpc_id(&self.spec.provider.vpc_id)
            .health_check_protocol(self.target_protocol())
            .health_check_path(&check.path)
            .health_check_interval_seconds(check.interval_seconds)
            .healthy_threshold_count(check.healthy_threshold)
            .unhealthy_threshold_count(check.unhealthy_threshold)
            .matcher(Matcher::builder().http_code(&check.matcher).build())
            .set_tags(Some(self.elb_tags()))
            .send()
            .await
            .map_err(|e| ActError::CreateTargetGroup(name.clone(), e.into()))?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn());
        self.refs.instance_target_group = arn.map(str::to_string);
        Ok(Step::Done)
    }

    async fn modify_health_check(&mut self) -> Result<Step, ActError> {
        let arn = need(&self.refs.instance_target_group, "instance target group")?;
        let check = &self.spec.provider.targets.health_check;
        self.clients
            .provider
            .elbv2
            .modify_target_group()
            .target_group_arn(arn)
            .health_check_protocol(self.target_protocol())
            .health_check_path(&check.path)
            .health_check_interval_seconds(check.interval_seconds)
            .healthy_threshold_count(check.healthy_threshold)
            .unhealthy_threshold_count(check.unhealthy_threshold)
            .matcher(Matcher::builder().http_code(&check.matcher).build())
            .send()
            .await
            .map_err(|e| ActError::ModifyTargetGroup(e.into()))?;
        Ok(Step::Done)
    }

    async fn register_targets(&mut self, ids: &[String]) -> Result<Step, ActError> {
        let arn = need(&self.refs.instance_target_group, "instance target group")?;
        let port = self.spec.provider.targets.port;
        let targets = ids
            .iter()
            .map(|id| TargetDescription::builder().id(id).port(port).build());
        self.clients
            .provider
            .elbv2
            .register_targets()
            .target_group_arn(arn)
            .set_targets(Some(targets.collect()))
            .send()
            .await
            .map_err(|e| ActError::RegisterTargets(e.into()))?;
        Ok(Step::Done)
    }

    async fn deregister_targets(&mut self, targets: &[(String, i32)]) -> Result<Step, ActError> {
        let arn = need(&self.refs.instance_target_group, "instance target group")?;
        let targets = targets
            .iter()
            .map(|(id, port)| TargetDescription::builder().id(id).port(*port).build());
        let result = self
            .clients
            .provider
            .elbv2
            .deregister_targets()
            .target_group_arn(arn)
            .set_targets(Some(targets.collect()))
            .send()
            .await;
        done_if_gone(result, ActError::DeregisterTargets)
    }

    async fn create_balancer(&mut self, network: bool) -> Result<Step, ActError> {
        let provider = &self.spec.provider;
        let (name, kind, subnets) = if network {
            (
                self.names.nlb(),
                LoadBalancerTypeEnum::Network,
                &provider.nlb_subnet_ids,
            )
        } else {
            (
                self.names.alb(),
                LoadBalancerTypeEnum::Application,
                &provider.alb_subnet_ids,
            )
        };
        let mut request = self
            .clients
            .provider
            .elbv2
            .create_load_balancer()
            .name(&name)
            .r#type(kind)
            .scheme(LoadBalancerSchemeEnum::Internal)
            .set_subnets(Some(subnets.clone()))
            .set_tags(Some(self.elb_tags()));
        if !network {
            request = request.set_security_groups(Some(provider.alb_security_group_ids.clone()));
        }
        let out = request
            .send()
            .await
            .map_err(|e| ActError::CreateLoadBalancer(name.clone(), e.into()))?;
        let lb = out.load_balancers().first();
        let arn = lb.and_then(|lb| lb.load_balancer_arn()).map(str::to_string);
        let active = lb.and_then(|lb| lb.state()).and_then(|s| s.code());
        let active = active.is_some_and(|c| c.as_str() == "active");
        if network {
            (self.refs.nlb, self.refs.nlb_active) = (arn, active);
        } else {
            (self.refs.alb, self.refs.alb_active) = (arn, active);
        }
        Ok(Step::Done)
    }

    fn forward(&self, network: bool) -> Result<ElbAction, ActError> {
        let group = if network {
            need(&self.refs.alb_target_group, "target group of type alb")?
        } else {
            need(&self.refs.instance_target_group, "instance target group")?
        };
        Ok(ElbAction::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(group)
            .build())
    }

    async fn create_listener(&mut self, network: bool) -> Result<Step, ActError> {
        let (balancer, what) = if network {
            (&self.refs.nlb, "NLB")
        } else {
            (&self.refs.alb, "ALB")
        };
        let balancer = need(balancer, what)?;
        let provider = &self.spec.provider;
        let mut request = self
            .clients
            .provider
            .elbv2
            .create_listener()
            .load_balancer_arn(&balancer)
            .port(self.spec.port)
            .default_actions(self.forward(network)?)
            .set_tags(Some(self.elb_tags()));
        request = if network {
            request.protocol(ProtocolEnum::Tcp)
        } else {
            let certificate = Certificate::builder().certificate_arn(&provider.certificate_arn);
            request
                .protocol(ProtocolEnum::Https)
                .certificates(certificate.build())
                .set_ssl_policy(provider.ssl_policy.clone())
        };
        match request.send().await.map_err(AwsCallError::from) {
            Ok(_) => Ok(Step::Done),
            // Someone else holds the port (or our own create landed before a crash): the
            // next observe picks that listener up and corrects it.
            Err(err) if err.is_code(&["DuplicateListener"]) => Ok(Step::Done),
            Err(err) => Err(ActError::CreateListener(err)),
        }
    }

    async fn modify_listener(&mut self, arn: &str, network: bool) -> Result<Step, ActError> {
        let provider = &self.spec.provider;
        let mut request = self
            .clients
            .provider
            .elbv2
            .modify_listener()
            .listener_arn(arn)
            .port(self.spec.port)
            .default_actions(self.forward(network)?);
        request = if network {
            request.protocol(ProtocolEnum::Tcp)
        } else {
            let certificate = Certificate::builder().certificate_arn(&provider.certificate_arn);
            request
                .protocol(ProtocolEnum::Https)
                .certificates(certificate.build())
                .set_ssl_policy(provider.ssl_policy.clone())
        };
        request
            .send()
            .await
            .map_err(|e| ActError::ModifyListener(arn.to_string(), e.into()))?;
        Ok(Step::Done)
    }

    async fn create_alb_target_group(&mut self) -> Result<Step, ActError> {
        let name = self.names.alb_target_group();
        let check = &self.spec.provider.targets.health_check;
        let out = self
            .clients
            .provider
            .elbv2
            .create_target_group()
            .name(&name)
            .target_type(TargetTypeEnum::Alb)
            .protocol(ProtocolEnum::Tcp)
            .port(self.spec.port)
            .vpc_id(&self.spec.provider.vpc_id)
            .health_check_protocol(ProtocolEnum::Https)
            .health_check_path(&check.path)
            .set_tags(Some(self.elb_tags()))
            .send()
            .await
            .map_err(|e| ActError::CreateTargetGroup(name.clone(), e.into()))?;
        let arn = out
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn());
        self.refs.alb_target_group = arn.map(str::to_string);
        Ok(Step::Done)
    }

    async fn register_alb(&mut self) -> Result<Step, ActError> {
        let alb = need(&self.refs.alb, "ALB")?;
        if !self.refs.alb_active {
            return Ok(Step::Wait("the ALB to become active".into()));
        }
        let group = need(&self.refs.alb_target_group, "target group of type alb")?;
        let target = TargetDescription::builder()
            .id(alb)
            .port(self.spec.port)
            .build();
        self.clients
            .provider
            .elbv2
            .register_targets()
            .target_group_arn(group)
            .targets(target)
            .send()
            .await
            .map_err(|e| ActError::RegisterTargets(e.into()))?;
        Ok(Step::Done)
    }

    async fn create_endpoint_service(&mut self) -> Result<Step, ActError> {
        let nlb = need(&self.refs.nlb, "NLB")?;
        if !self.refs.nlb_active {
            return Ok(Step::Wait("the NLB to become active".into()));
        }
        let out = self
            .clients
            .provider
            .ec2
            .create_vpc_endpoint_service_configuration()
            .network_load_balancer_arns(nlb)
            .acceptance_required(self.spec.provider.acceptance_required)
            .client_token(self.names.client_token("endpoint-service"))
            .tag_specifications(self.ec2_tags(ResourceType::VpcEndpointService))
            .send()
            .await
            .map_err(|e| ActError::CreateEndpointService(e.into()))?;
        let service = out.service_configuration();
        self.refs.service_id = service.and_then(|s| s.service_id()).map(str::to_string);
        self.refs.service_name = service.and_then(|s| s.service_name()).map(str::to_string);
        Ok(Step::Done)
    }

    async fn set_acceptance(&mut self, required: bool) -> Result<Step, ActError> {
        let service = need(&self.refs.service_id, "endpoint service")?;
        self.clients
            .provider
            .ec2
            .modify_vpc_endpoint_service_configuration()
            .service_id(service)
            .acceptance_required(required)
            .send()
            .await
            .map_err(|e| ActError::ModifyEndpointService(e.into()))?;
        Ok(Step::Done)
    }

    async fn permissions(&mut self, principals: &[String], add: bool) -> Result<Step, ActError> {
        let service = need(&self.refs.service_id, "endpoint service")?;
        let request = self
            .clients
            .provider
            .ec2
            .modify_vpc_endpoint_service_permissions()
            .service_id(service);
        let request = if add {
            request.set_add_allowed_principals(Some(principals.to_vec()))
        } else {
            request.set_remove_allowed_principals(Some(principals.to_vec()))
        };
        request
            .send()
            .await
            .map_err(|e| ActError::ModifyServicePermissions(e.into()))?;
        Ok(Step::Done)
    }

    async fn create_endpoint(&mut self) -> Result<Step, ActError> {
        let service = need(&self.refs.service_name, "endpoint service name")?;
        let consumer = &self.spec.consumer;
        let groups =
            (!consumer.security_group_ids.is_empty()).then(|| consumer.security_group_ids.clone());
        let out = self
            .clients
            .consumer
            .ec2
            .create_vpc_endpoint()
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .vpc_id(&consumer.vpc_id)
            .service_name(service)
            .set_subnet_ids(Some(consumer.subnet_ids.clone()))
            .set_security_group_ids(groups)
            .private_dns_enabled(false)
            .client_token(self.names.client_token("endpoint"))
            .tag_specifications(self.ec2_tags(ResourceType::VpcEndpoint))
            .send()
            .await
            .map_err(|e| ActError::CreateEndpoint(e.into()))?;
        let endpoint = out.vpc_endpoint();
        let dns = endpoint.and_then(|e| e.dns_entries().first());
        self.refs.endpoint_id = endpoint
            .and_then(|e| e.vpc_endpoint_id())
            .map(str::to_string);
        self.refs.endpoint_dns = dns.and_then(|d| d.dns_name()).map(str::to_string);
        self.refs.endpoint_zone = dns.and_then(|d| d.hosted_zone_id()).map(str::to_string);
        Ok(Step::Done)
    }

    async fn modify_endpoint(&mut self, changes: &EndpointChanges) -> Result<Step, ActError> {
        let endpoint = need(&self.refs.endpoint_id, "endpoint")?;
        let some = |ids: &Vec<String>| (!ids.is_empty()).then(|| ids.clone());
        self.clients
            .consumer
            .ec2
            .modify_vpc_endpoint()
            .vpc_endpoint_id(endpoint)
            .set_add_subnet_ids(some(&changes.add_subnets))
            .set_remove_subnet_ids(some(&changes.remove_subnets))
            .set_add_security_group_ids(some(&changes.add_security_groups))
            .set_remove_security_group_ids(some(&changes.remove_security_groups))
            .send()
            .await
            .map_err(|e| ActError::ModifyEndpoint(e.into()))?;
        Ok(Step::Done)
    }

    /// Accepts the connection of our endpoint only: the request names its ID, so pending
    /// connections of other endpoints stay untouched.
    async fn accept_connection(&mut self) -> Result<Step, ActError> {
        let service = need(&self.refs.service_id, "endpoint service")?;
        let endpoint = need(&self.refs.endpoint_id, "endpoint")?;
        let out = self
            .clients
            .provider
            .ec2
            .accept_vpc_endpoint_connections()
            .service_id(service)
            .vpc_endpoint_ids(&endpoint)
            .send()
            .await
            .map_err(|e| ActError::AcceptConnection(e.into()))?;
        let refused = out.unsuccessful().iter().find_map(|item| item.error());
        match refused {
            // A connection that is not pending any more (already accepted, or AWS has not
            // shown it yet) is picked up again by the next observe.
            Some(err)
                if err
                    .code()
                    .is_some_and(|c| c.contains("State") || c.contains("NotFound")) =>
            {
                Ok(Step::Done)
            }
            Some(err) => Err(ActError::AcceptRefused(
                err.message().unwrap_or_default().to_string(),
            )),
            None => Ok(Step::Done),
        }
    }

    async fn create_hosted_zone(&mut self) -> Result<Step, ActError> {
        let consumer = &self.spec.consumer;
        let Some(name) = consumer.hosted_zone.zone_name.clone() else {
            return Err(ActError::MissingDependency("hosted zone name"));
        };
        let region = &self.clients.consumer.region;
        let vpc = Vpc::builder()
            .vpc_id(&consumer.vpc_id)
            .vpc_region(VpcRegion::from(region.as_str()));
        let config = HostedZoneConfig::builder()
            .private_zone(true)
            .comment(format!(
                "prodaccess route {}/{}",
                self.names.namespace, self.names.name
            ));
        let out = self
            .clients
            .consumer
            .route53
            .create_hosted_zone()
            .name(&name)
            .caller_reference(self.names.zone_caller_reference())
            .vpc(vpc.build())
            .hosted_zone_config(config.build())
            .send()
            .await
            .map_err(|e| ActError::CreateHostedZone(e.into()))?;
        let id = out.hosted_zone().map(|z| bare_zone_id(z.id()));
        let Some(id) = id else {
            return Err(ActError::MissingDependency("created hosted zone"));
        };
        self.refs.zone_id = Some(id.clone());
        self.refs.zone_owned = true;
        self.tag_zone(&id).await?;
        Ok(Step::Done)
    }

    async fn tag_zone(&self, id: &str) -> Result<(), ActError> {
        let tags = self.names.tags().into_iter();
        let tags = tags.map(|(key, value)| ZoneTag::builder().key(key).value(value).build());
        self.clients
            .consumer
            .route53
            .change_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(id)
            .set_add_tags(Some(tags.collect()))
            .send()
            .await
            .map_err(|e| ActError::TagHostedZone(e.into()))?;
        Ok(())
    }

    fn desired_record(&self) -> Result<ResourceRecordSet, ActError> {
        let consumer = &self.spec.consumer;
        let dns = need(&self.refs.endpoint_dns, "endpoint DNS name")?;
        let set = ResourceRecordSet::builder().name(&self.spec.host_name);
        let set = match consumer.record_type {
            RecordType::Cname => {
                let value = ResourceRecord::builder()
                    .value(dns)
                    .build()
                    .map_err(build_error)?;
                set.r#type(RrType::Cname)
                    .ttl(consumer.ttl)
                    .resource_records(value)
            }
            RecordType::Alias => {
                let zone = need(&self.refs.endpoint_zone, "endpoint DNS zone")?;
                let alias = AliasTarget::builder()
                    .hosted_zone_id(zone)
                    .dns_name(dns)
                    .evaluate_target_health(false)
                    .build()
                    .map_err(build_error)?;
                set.r#type(RrType::A).alias_target(alias)
            }
        };
        set.build().map_err(build_error)
    }

    async fn upsert_record(&mut self, replace: Option<&Record>) -> Result<Step, ActError> {
        let zone = need(&self.refs.zone_id, "hosted zone")?;
        if self.refs.zone_owned {
            // The zone is tagged right after it is created; a crash or a lost answer in between
            // left it untagged for good, as the next observe finds it by caller reference. The
            // record is written once when the route is built, so tag again here (adding the
            // same tags is a no-op).
            self.tag_zone(&zone).await?;
        }
        let mut changes = Vec::new();
        if let Some(old) = replace {
            changes.push(change(ChangeAction::Delete, record_set(old)?)?);
        }
        changes.push(change(ChangeAction::Upsert, self.desired_record()?)?);
        self.change_records(&zone, changes).await?;
        Ok(Step::Done)
    }

    async fn change_records(&self, zone: &str, changes: Vec<Change>) -> Result<(), ActError> {
        let batch = ChangeBatch::builder()
            .set_changes(Some(changes))
            .build()
            .map_err(build_error)?;
        self.clients
            .consumer
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| ActError::ChangeRecord(e.into()))?;
        Ok(())
    }

    async fn delete_record(&mut self, record: &Record) -> Result<Step, ActError> {
        let zone = need(&self.refs.zone_id, "hosted zone")?;
        let changes = vec![change(ChangeAction::Delete, record_set(record)?)?];
        match self.change_records(&zone, changes).await {
            Err(ActError::ChangeRecord(err)) if err.is_code(&["InvalidChangeBatch"]) => {
                // Route 53 answers a delete of a record that is gone with InvalidChangeBatch.
                Ok(Step::Done)
            }
            other => other.map(|()| Step::Done),
        }
    }

    async fn delete_hosted_zone(&mut self, id: &str) -> Result<Step, ActError> {
        let result = self
            .clients
            .consumer
            .route53
            .delete_hosted_zone()
            .id(id)
            .send()
            .await;
        done_if_gone(result, |err| {
            ActError::DeleteHostedZone(id.to_string(), err)
        })
    }

    async fn delete_endpoint(&mut self, id: &str) -> Result<Step, ActError> {
        let result = self
            .clients
            .consumer
            .ec2
            .delete_vpc_endpoints()
            .vpc_endpoint_ids(id)
            .send()
            .await;
        done_if_gone(result, |err| ActError::DeleteEndpoint(id.to_string(), err))
    }

    async fn endpoint_gone(&self, id: &str) -> Result<bool, ActError> {
        let result = self
            .clients
            .consumer
            .ec2
            .describe_vpc_endpoints()
            .vpc_endpoint_ids(id)
            .send()
            .await;
        let out = none_if_not_found(result, |err| {
            ActError::DescribeEndpoint(id.to_string(), err)
        })?;
        Ok(out.is_none_or(|out| {
            out.vpc_endpoints().iter().all(|e| {
                let state = e
                    .state()
                    .map(|s| s.as_str().to_ascii_lowercase())
                    .unwrap_or_default();
                state == "deleted"
            })
        }))
    }

    async fn wait_endpoint_deleted(&mut self, id: &str) -> Result<Step, ActError> {
        for attempt in 0..self.wait_attempts {
            if self.endpoint_gone(id).await? {
                return Ok(Step::Done);
            }
            if attempt + 1 < self.wait_attempts {
                tokio::time::sleep(self.wait_pause).await;
            }
        }
        Ok(Step::Wait(format!("endpoint {id} to finish deleting")))
    }

    async fn delete_endpoint_service(&mut self, id: &str) -> Result<Step, ActError> {
        let result = self
            .clients
            .provider
            .ec2
            .delete_vpc_endpoint_service_configurations()
            .service_ids(id)
            .send()
            .await;
        let fail = |err| ActError::DeleteEndpointService(id.to_string(), err);
        let Some(out) = none_if_not_found(result, fail)? else {
            return Ok(Step::Done);
        };
        let refused = out.unsuccessful().iter().find_map(|item| item.error());
        match refused {
            Some(err) if err.code().is_some_and(crate::aws::is_not_found_code) => Ok(Step::Done),
            Some(err) => {
                let message = err.message().unwrap_or_default().to_string();
                Err(ActError::DeleteEndpointServiceRefused(
                    id.to_string(),
                    message,
                ))
            }
            None => Ok(Step::Done),
        }
    }

    async fn delete_listener(&mut self, arn: &str) -> Result<Step, ActError> {
        let result = self
            .clients
            .provider
            .elbv2
            .delete_listener()
            .listener_arn(arn)
            .send()
            .await;
        done_if_gone(result, |err| ActError::DeleteListener(arn.to_string(), err))
    }

    async fn delete_balancer(&mut self, arn: &str) -> Result<Step, ActError> {
        let elb = &self.clients.provider.elbv2;
        let result = elb
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await;
        done_if_gone(result, |err| {
            ActError::DeleteLoadBalancer(arn.to_string(), err)
        })
    }

    async fn delete_target_group(&mut self, arn: &str) -> Result<Step, ActError> {
        let elb = &self.clients.provider.elbv2;
        let result = elb.delete_target_group().target_group_arn(arn).send().await;
        match none_if_not_found(result, |err| err) {
            Ok(_) => Ok(Step::Done),
            // A load balancer being deleted still holds its target groups for a moment.
            Err(err) if err.is_code(&["ResourceInUse"]) => {
                Ok(Step::Wait(format!("target group {arn} to be released")))
            }
            Err(err) => Err(ActError::DeleteTargetGroup(arn.to_string(), err)),
        }
    }
}

fn build_error(err: aws_smithy_types::error::operation::BuildError) -> ActError {
    tracing::error!(error = %err, "Route 53 request could not be built");
    ActError::MissingDependency("record field")
}

fn change(action: ChangeAction, set: ResourceRecordSet) -> Result<Change, ActError> {
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(build_error)
}

/// The record set exactly as observed, which Route 53 needs to delete it.
fn record_set(record: &Record) -> Result<ResourceRecordSet, ActError> {
    let set = ResourceRecordSet::builder()
        .name(&record.name)
        .r#type(RrType::from(record.type_.as_str()));
    let value = record.values.first().cloned().unwrap_or_default();
    let set = match &record.alias_zone_id {
        Some(zone) => {
            let alias = AliasTarget::builder()
                .hosted_zone_id(zone)
                .dns_name(value)
                .evaluate_target_health(false)
                .build()
                .map_err(build_error)?;
            set.alias_target(alias)
        }
        None => {
            let records: Result<Vec<ResourceRecord>, _> = record
                .values
                .iter()
                .map(|v| ResourceRecord::builder().value(v).build())
                .collect();
            set.set_resource_records(Some(records.map_err(build_error)?))
                .set_ttl(record.ttl)
        }
    };
    set.build().map_err(build_error)
}
