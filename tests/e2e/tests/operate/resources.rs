//! What one `PrivateLinkRoute` is made of in AWS, counted through the AWS APIs of both
//! accounts, so that a test can prove nothing was created twice and nothing was left behind.

use aws_config::SdkConfig;

/// Load balancers, target groups and listeners in the Production account, and endpoint
/// services there; interface endpoints and hosted zones in the Jump account. Deleted ones
/// are not counted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteResources {
    pub load_balancers: usize,
    pub target_groups: usize,
    pub listeners: usize,
    pub endpoint_services: usize,
    pub endpoints: usize,
    pub hosted_zones: usize,
}

impl RouteResources {
    /// What one route is made of.
    pub fn one_route() -> Self {
        Self {
            load_balancers: 2,
            target_groups: 2,
            listeners: 2,
            endpoint_services: 1,
            endpoints: 1,
            hosted_zones: 1,
        }
    }

    pub async fn count(prod: &SdkConfig, jump: &SdkConfig) -> anyhow::Result<Self> {
        let elb = aws_sdk_elasticloadbalancingv2::Client::new(prod);
        let lbs = elb.describe_load_balancers().send().await?;
        let mut listeners = 0;
        for lb in lbs.load_balancers() {
            let arn = lb.load_balancer_arn().unwrap_or_default();
            let out = elb
                .describe_listeners()
                .load_balancer_arn(arn)
                .send()
                .await?;
            listeners += out.listeners().len();
        }
        let groups = elb.describe_target_groups().send().await?;
        let services = aws_sdk_ec2::Client::new(prod)
            .describe_vpc_endpoint_service_configurations()
            .send()
            .await?;
        let live_services = services
            .service_configurations()
            .iter()
            .filter(|s| {
                let state = s.service_state().map(|s| s.as_str()).unwrap_or_default();
                !matches!(state, "Deleted" | "Deleting")
            })
            .count();
        let endpoints = aws_sdk_ec2::Client::new(jump)
            .describe_vpc_endpoints()
            .send()
            .await?;
        let live_endpoints = endpoints
            .vpc_endpoints()
            .iter()
            .filter(|e| {
                let state = e.state().map(|s| s.as_str().to_ascii_lowercase());
                !matches!(state.as_deref(), Some("deleted" | "deleting"))
            })
            .count();
        let zones = aws_sdk_route53::Client::new(jump)
            .list_hosted_zones()
            .send()
            .await?;
        Ok(Self {
            load_balancers: lbs.load_balancers().len(),
            target_groups: groups.target_groups().len(),
            listeners,
            endpoint_services: live_services,
            endpoints: live_endpoints,
            hosted_zones: zones.hosted_zones().len(),
        })
    }
}
