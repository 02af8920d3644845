//! End-to-end tests of `PrivateLinkRoute` on the platform: the operator binary against a real
//! kube-apiserver and the AWS emulator, with the provider and consumer in two fresh accounts.
//!
//! Each test builds what exists before prodaccess (VPCs, subnets in two zones, security
//! groups, production instances, an imported certificate) through the AWS APIs, applies the
//! accounts and a route, and checks the result through the AWS APIs of both accounts.

use anyhow::Context as _;
use aws_config::SdkConfig;
use kube::api::{Api, DeleteParams};
use prodaccess::crd::{ConditionExt, PrivateLinkRoute};
use prodaccess_e2e::network::{Labels, Network};
use prodaccess_e2e::platform::eventually;
use prodaccess_e2e::{aws, Operator, TestEnv};
use std::time::Duration;

const ROUTE: &str = "admin-console";
const HOST: &str = "admin.prod.example.com";
const ZONE: &str = "prod.example.com";
const PORT: i32 = 10443;
const UID_TAG: &str = "prodaccess.io/route-uid";

/// AWS state that exists before the route.
struct Fixture {
    prod_account: String,
    jump_account: String,
    prod: SdkConfig,
    jump: SdkConfig,
    net: Network,
}

impl Fixture {
    async fn create(endpoint: &str) -> anyhow::Result<Fixture> {
        let prod_account = TestEnv::account_id();
        let jump_account = TestEnv::account_id();
        let prod = aws::admin(endpoint, &prod_account).await?;
        let jump = aws::admin(endpoint, &jump_account).await?;
        let labels = Labels {
            security_groups: "",
            instances: "production",
            certificate_domain: HOST,
        };
        let net = Network::create(&jump, &prod, &labels).await?;
        Ok(Fixture {
            prod_account,
            jump_account,
            prod,
            jump,
            net,
        })
    }

    /// The two accounts and the route, as a user would write them.
    fn manifests(&self, env: &TestEnv, policy: &str, drift_check: &str) -> String {
        let account = |name: &str, id: &str| {
            format!(
                "apiVersion: prodaccess.io/v1alpha1\nkind: AwsAccount\nmetadata:\n  name: {name}-{}\n\
                 spec:\n  roleArn: arn:aws:iam::{id}:role/prodaccess-operator\n  \
                 region: {}\n  expectedAccountId: \"{id}\"\n  allowedNamespaces: [\"{}\"]\n---\n",
                env.id,
                aws::REGION,
                env.namespace
            )
        };
        let route = serde_json::json!({
            "apiVersion": "prodaccess.io/v1alpha1",
            "kind": "PrivateLinkRoute",
            "metadata": {"name": ROUTE},
            "spec": {
                "hostName": HOST,
                "port": PORT,
                "deletionPolicy": policy,
                "driftCheckInterval": drift_check,
                "provider": self.net.route_provider(&format!("production-{}", env.id)),
                "consumer": self.net.route_consumer(&format!("jump-{}", env.id), ZONE),
            },
        });
        let route = serde_yaml::to_string(&route).unwrap_or_default();
        format!(
            "{}{}{route}",
            account("production", &self.prod_account),
            account("jump", &self.jump_account)
        )
    }

    /// Every resource in both accounts that carries the route-UID tag `uid`, as `kind/id`.
    async fn managed(&self, uid: &str) -> anyhow::Result<Vec<String>> {
        let mut found = Vec::new();
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(&self.prod);
        let lbs = elb.describe_load_balancers().send().await?;
        let groups = elb.describe_target_groups().send().await?;
        let arns: Vec<String> = lbs
            .load_balancers()
            .iter()
            .filter_map(|lb| lb.load_balancer_arn())
            .chain(
                groups
                    .target_groups()
                    .iter()
                    .filter_map(|g| g.target_group_arn()),
            )
            .map(str::to_string)
            .collect();
        for arn in arns {
            let tags = elb.describe_tags().resource_arns(&arn).send().await?;
            let tags = tags.tag_descriptions().iter().flat_map(|d| d.tags());
            if tags
                .clone()
                .any(|t| t.key() == Some(UID_TAG) && t.value() == Some(uid))
            {
                found.push(format!("elb/{arn}"));
            }
        }
        let ec2 = aws_sdk_ec2::Client::new(&self.prod);
        let services = ec2
            .describe_vpc_endpoint_service_configurations()
            .send()
            .await?;
        for service in services.service_configurations() {
            let ours = service
                .tags()
                .iter()
                .any(|t| t.key() == Some(UID_TAG) && t.value() == Some(uid));
            let state = service
                .service_state()
                .map(|s| s.as_str())
                .unwrap_or_default();
            if ours && !matches!(state, "Deleted" | "Deleting") {
                found.push(format!(
                    "service/{}",
                    service.service_id().unwrap_or_default()
                ));
            }
        }
        let ec2 = aws_sdk_ec2::Client::new(&self.jump);
        let endpoints = ec2.describe_vpc_endpoints().send().await?;
        for endpoint in endpoints.vpc_endpoints() {
            let ours = endpoint
                .tags()
                .iter()
                .any(|t| t.key() == Some(UID_TAG) && t.value() == Some(uid));
            let state = endpoint
                .state()
                .map(|s| s.as_str().to_ascii_lowercase())
                .unwrap_or_default();
            if ours && state != "deleted" {
                found.push(format!(
                    "endpoint/{}",
                    endpoint.vpc_endpoint_id().unwrap_or_default()
                ));
            }
        }
        let zones = aws_sdk_route53::Client::new(&self.jump)
            .list_hosted_zones()
            .send()
            .await?;
        for zone in zones.hosted_zones() {
            if zone.caller_reference().starts_with(uid) {
                found.push(format!("zone/{}", zone.id()));
            }
        }
        Ok(found)
    }

    /// The CNAME value of the host name, if there is one.
    async fn record_value(&self, zone_id: &str) -> anyhow::Result<Option<String>> {
        let r53 = aws_sdk_route53::Client::new(&self.jump);
        let out = r53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .send()
            .await?;
        let record = out
            .resource_record_sets()
            .iter()
            .find(|r| r.name().trim_end_matches('.') == HOST && r.r#type().as_str() == "CNAME");
        let value = record
            .and_then(|r| r.resource_records().first())
            .map(|v| v.value().to_string());
        Ok(value)
    }
}

async fn ready_route(env: &TestEnv, timeout: Duration) -> anyhow::Result<PrivateLinkRoute> {
    let api: Api<PrivateLinkRoute> = env.api();
    eventually("the route to be Ready", timeout, || async {
        let route = api.get(ROUTE).await?;
        let ready = route
            .status
            .as_ref()
            .is_some_and(|s| s.conditions.is_true("Ready"));
        Ok(ready.then_some(route))
    })
    .await
}

async fn delete_route(env: &TestEnv) -> anyhow::Result<()> {
    let api: Api<PrivateLinkRoute> = env.api();
    api.delete(ROUTE, &DeleteParams::default()).await?;
    eventually("the route to be gone", Duration::from_secs(90), || async {
        Ok(api.get_opt(ROUTE).await?.is_none().then_some(()))
    })
    .await
}

fn uid(route: &PrivateLinkRoute) -> String {
    route.metadata.uid.clone().unwrap_or_default()
}

async fn start(
    test: &str,
    policy: &str,
    drift: &str,
) -> anyhow::Result<(TestEnv, Fixture, Operator)> {
    let env = TestEnv::new(test).await?;
    let fx = Fixture::create(&env.platform.aws_endpoint).await?;
    let mut operator = Operator::start(&env, "operator", &[])?;
    operator.wait_ready().await?;
    env.apply_yaml(&fx.manifests(&env, policy, drift)).await?;
    Ok((env, fx, operator))
}

/// Apply, verify every hop through the AWS APIs of both accounts, delete, verify nothing
/// managed remains in either account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_route_lifecycle() -> anyhow::Result<()> {
    let (env, fx, operator) = start("route-life", "Delete", "5m").await?;
    let route = ready_route(&env, Duration::from_secs(120))
        .await
        .with_context(|| operator.log_tail(40))?;
    let status = route.status.clone().unwrap_or_default();
    assert_eq!(
        status.url.as_deref(),
        Some("https://admin.prod.example.com:10443")
    );
    let hops = &status.hops;

    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&fx.prod);
    let alb_listener = hops.alb_listener_arn.clone().context("no ALB listener")?;
    let listeners = elb
        .describe_listeners()
        .listener_arns(&alb_listener)
        .send()
        .await?;
    let listener = listeners
        .listeners()
        .first()
        .context("ALB listener missing")?;
    assert_eq!(listener.port(), Some(PORT));
    assert_eq!(listener.protocol().map(|p| p.as_str()), Some("HTTPS"));
    let certs: Vec<_> = listener
        .certificates()
        .iter()
        .filter_map(|c| c.certificate_arn())
        .collect();
    assert_eq!(certs, vec![fx.net.certificate.as_str()]);
    let nlb_listener = hops.nlb_listener_arn.clone().context("no NLB listener")?;
    let listeners = elb
        .describe_listeners()
        .listener_arns(&nlb_listener)
        .send()
        .await?;
    let listener = listeners
        .listeners()
        .first()
        .context("NLB listener missing")?;
    assert_eq!(listener.protocol().map(|p| p.as_str()), Some("TCP"));
    let group = hops
        .instance_target_group_arn
        .clone()
        .context("no target group")?;
    let health = elb
        .describe_target_health()
        .target_group_arn(group)
        .send()
        .await?;
    let mut targets: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
        .collect();
    targets.sort();
    let mut want = fx.net.instances.clone();
    want.sort();
    assert_eq!(targets, want);

    let ec2 = aws_sdk_ec2::Client::new(&fx.prod);
    let service = hops
        .endpoint_service_id
        .clone()
        .context("no endpoint service")?;
    let perms = ec2
        .describe_vpc_endpoint_service_permissions()
        .service_id(&service)
        .send()
        .await?;
    let principals: Vec<_> = perms
        .allowed_principals()
        .iter()
        .filter_map(|p| p.principal())
        .collect();
    assert_eq!(
        principals,
        vec![format!("arn:aws:iam::{}:root", fx.jump_account)]
    );
    assert_eq!(hops.endpoint_state.as_deref(), Some("available"));
    let zone = hops.hosted_zone_id.clone().context("no hosted zone")?;
    let value = fx.record_value(&zone).await?;
    assert_eq!(value, hops.endpoint_dns_name.clone());

    assert_eq!(routes_ready(&operator).await?, Some(1.0));
    second_route_for_the_host_is_refused(&env, &fx, &route).await?;

    let uid = uid(&route);
    let before = fx.managed(&uid).await?;
    assert_eq!(before.len(), 7, "{before:?}");
    delete_route(&env).await?;
    let left = fx.managed(&uid).await?;
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(routes_ready(&operator).await?, Some(0.0));
    env.cleanup().await;
    Ok(())
}

/// A second route for the same host name in the same consumer account is refused with
/// `HostNameConflict` and builds nothing: both would write the one DNS record.
async fn second_route_for_the_host_is_refused(
    env: &TestEnv,
    fx: &Fixture,
    first: &PrivateLinkRoute,
) -> anyhow::Result<()> {
    let api: Api<PrivateLinkRoute> = env.api();
    let mut second = PrivateLinkRoute::new("second-console", first.spec.clone());
    second.metadata.labels = first.metadata.labels.clone();
    let second = api.create(&Default::default(), &second).await?;
    let message = eventually("HostNameConflict", Duration::from_secs(30), || async {
        let route = api.get("second-console").await?;
        let ready = route
            .status
            .and_then(|s| s.conditions.condition("Ready").cloned());
        Ok(ready
            .filter(|c| c.status == "False" && c.reason == "HostNameConflict")
            .map(|c| c.message))
    })
    .await?;
    anyhow::ensure!(message.contains(ROUTE), "no owner named: {message}");
    let built = fx.managed(&uid(&second)).await?;
    anyhow::ensure!(built.is_empty(), "the refused route built {built:?}");
    api.delete("second-console", &DeleteParams::default())
        .await?;
    eventually("the second route gone", Duration::from_secs(30), || async {
        Ok(api.get_opt("second-console").await?.is_none().then_some(()))
    })
    .await
}

/// `prodaccess_routes_ready` as the operator's `/metrics` shows it.
async fn routes_ready(operator: &Operator) -> anyhow::Result<Option<f64>> {
    let text = operator.metrics().await?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("prodaccess_routes_ready "))
        .and_then(|value| value.trim().parse().ok());
    Ok(value)
}

/// Delete a listener, deregister a target, change the DNS record and the endpoint service's
/// principals by hand; each is put back within one drift check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_drift_corrected() -> anyhow::Result<()> {
    let (env, fx, operator) = start("route-drift", "Delete", "5s").await?;
    let route = ready_route(&env, Duration::from_secs(120))
        .await
        .with_context(|| operator.log_tail(40))?;
    let hops = route.status.clone().unwrap_or_default().hops;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&fx.prod);
    let alb = hops.alb_arn.clone().context("no ALB")?;
    let alb_listener = hops.alb_listener_arn.clone().context("no ALB listener")?;
    elb.delete_listener()
        .listener_arn(&alb_listener)
        .send()
        .await?;
    let group = hops
        .instance_target_group_arn
        .clone()
        .context("no target group")?;
    let target = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
        .id(&fx.net.instances[0])
        .port(443)
        .build();
    elb.deregister_targets()
        .target_group_arn(&group)
        .targets(target)
        .send()
        .await?;
    let zone = hops.hosted_zone_id.clone().context("no zone")?;
    change_record(&fx, &zone, "elsewhere.example.com").await?;
    let service = hops.endpoint_service_id.clone().context("no service")?;
    let ec2 = aws_sdk_ec2::Client::new(&fx.prod);
    let consumer_root = format!("arn:aws:iam::{}:root", fx.jump_account);
    ec2.modify_vpc_endpoint_service_permissions()
        .service_id(&service)
        .remove_allowed_principals(&consumer_root)
        .add_allowed_principals("arn:aws:iam::123456789012:root")
        .send()
        .await?;

    let dns = hops.endpoint_dns_name.clone().context("no endpoint DNS")?;
    eventually("every drift corrected", Duration::from_secs(60), || async {
        let listeners = elb
            .describe_listeners()
            .load_balancer_arn(&alb)
            .send()
            .await?;
        let listener_back = listeners.listeners().iter().any(|l| l.port() == Some(PORT));
        let health = elb
            .describe_target_health()
            .target_group_arn(&group)
            .send()
            .await?;
        let registered = health
            .target_health_descriptions()
            .iter()
            .any(|d| d.target().and_then(|t| t.id()) == Some(fx.net.instances[0].as_str()));
        let record_back = fx.record_value(&zone).await? == Some(dns.clone());
        let perms = ec2
            .describe_vpc_endpoint_service_permissions()
            .service_id(&service)
            .send()
            .await?;
        let principals: Vec<_> = perms
            .allowed_principals()
            .iter()
            .filter_map(|p| p.principal())
            .collect();
        let principals_back = principals == vec![consumer_root.as_str()];
        Ok((listener_back && registered && record_back && principals_back).then_some(()))
    })
    .await
    .with_context(|| operator.log_tail(40))?;

    delete_route(&env).await?;
    env.cleanup().await;
    Ok(())
}

async fn change_record(fx: &Fixture, zone: &str, value: &str) -> anyhow::Result<()> {
    use aws_sdk_route53::types::{
        Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
    };
    let record = ResourceRecordSet::builder()
        .name(HOST)
        .r#type(RrType::Cname)
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(value).build()?)
        .build()?;
    let change = Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(record)
        .build()?;
    aws_sdk_route53::Client::new(&fx.jump)
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(ChangeBatch::builder().changes(change).build()?)
        .send()
        .await?;
    Ok(())
}

/// With `Retain`, everything stays in AWS after the route is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_retain_on_delete() -> anyhow::Result<()> {
    let (env, fx, operator) = start("route-retain", "Retain", "5m").await?;
    let route = ready_route(&env, Duration::from_secs(120))
        .await
        .with_context(|| operator.log_tail(40))?;
    let uid = uid(&route);
    let before = fx.managed(&uid).await?;
    assert_eq!(before.len(), 7, "{before:?}");
    delete_route(&env).await?;
    let after = fx.managed(&uid).await?;
    assert_eq!(after, before);
    env.cleanup().await;
    Ok(())
}
