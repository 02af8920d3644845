//! Checks of a route that Kubernetes 1.20's schemas cannot express, and resolution of its two
//! accounts. Pure: the account lookup is passed in.
//!
//! A route that fails here gets a condition with a specific reason and no AWS call at all.

use std::sync::Arc;
use std::time::Duration;

use crate::crd::{arn_partition, parse_duration, AwsAccount, PrivateLinkRoute};

/// Why a route cannot be reconciled until someone edits it or its accounts.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

fn invalid<T>(reason: &'static str, message: String) -> Result<T, Invalid> {
    Err(Invalid { reason, message })
}

/// A route's references, resolved.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub provider: Arc<AwsAccount>,
    pub consumer: Arc<AwsAccount>,
    /// Principals the endpoint service allows.
    pub principals: Vec<String>,
    pub drift_check: Duration,
}

/// The drift-check period of a route; the operator default when the value is unusable.
pub fn drift_check(route: &PrivateLinkRoute, default: Duration) -> Duration {
    parse_duration(&route.spec.drift_check_interval).unwrap_or(default)
}

/// Validates a route and resolves its accounts through `find`, which looks an `AwsAccount`
/// up by name.
pub fn validate(
    route: &PrivateLinkRoute,
    namespace: &str,
    find: impl Fn(&str) -> Option<Arc<AwsAccount>>,
) -> Result<Resolved, Invalid> {
    let spec = &route.spec;
    let drift_check = parse_duration(&spec.drift_check_interval).map_err(|err| Invalid {
        reason: "InvalidDriftCheckInterval",
        message: err.to_string(),
    })?;
    check_zone(route)?;
    check_lists(route)?;
    check_ssl_policy(route)?;
    let provider = account(&spec.provider.account_ref, namespace, &find)?;
    let consumer = account(&spec.consumer.account_ref, namespace, &find)?;
    check_certificate(route, &provider)?;
    let principals = if spec.provider.allowed_principals.is_empty() {
        let id = account_id(&consumer)?;
        vec![format!("arn:{}:iam::{id}:root", provider.partition())]
    } else {
        check_principals(route, &provider)?;
        spec.provider.allowed_principals.clone()
    };
    Ok(Resolved {
        provider,
        consumer,
        principals,
        drift_check,
    })
}

/// Refuses a route whose host name an older route already serves in the same consumer VPC of
/// the same account (by `AwsAccount` or by account ID; DNS names are case-insensitive): both
/// would write the one record that VPC resolves, each putting back its own endpoint over the
/// other's at every drift check. The oldest route (then first by namespace and name) keeps the
/// name, whatever its state.
pub fn check_host_name(
    route: &PrivateLinkRoute,
    routes: &[Arc<PrivateLinkRoute>],
    accounts: &[Arc<AwsAccount>],
) -> Result<(), Invalid> {
    use kube::ResourceExt;
    let account = |r: &PrivateLinkRoute| {
        crate::controller::peers::account_key(&r.spec.consumer.account_ref, accounts)
    };
    let ours = account(route);
    let owner = crate::controller::peers::older_claimant(route, routes, |other| {
        other
            .spec
            .host_name
            .eq_ignore_ascii_case(&route.spec.host_name)
            && other.spec.consumer.vpc_id == route.spec.consumer.vpc_id
            && account(other) == ours
    });
    match owner {
        Some(owner) => invalid(
            "HostNameConflict",
            format!(
                "host name {} is already served in consumer VPC {} by route {}/{}",
                route.spec.host_name,
                route.spec.consumer.vpc_id,
                owner.namespace().unwrap_or_default(),
                owner.name_any()
            ),
        ),
        None => Ok(()),
    }
}

/// Resolves only the two accounts, which is all that cleanup needs: a route whose spec is
/// otherwise invalid can still have its resources found by tag and deleted.
pub fn accounts(
    route: &PrivateLinkRoute,
    namespace: &str,
    find: impl Fn(&str) -> Option<Arc<AwsAccount>>,
    default_drift_check: Duration,
) -> Result<Resolved, Invalid> {
    let provider = account(&route.spec.provider.account_ref, namespace, &find)?;
    let consumer = account(&route.spec.consumer.account_ref, namespace, &find)?;
    Ok(Resolved {
        provider,
        consumer,
        principals: Vec::new(),
        drift_check: default_drift_check,
    })
}

fn check_zone(route: &PrivateLinkRoute) -> Result<(), Invalid> {
    let zone = &route.spec.consumer.hosted_zone;
    match (&zone.zone_id, &zone.zone_name) {
        (Some(_), None) => Ok(()),
        (None, Some(name)) => {
            let name = name.trim_end_matches('.');
            let host = &route.spec.host_name;
            if host == name || host.ends_with(&format!(".{name}")) {
                Ok(())
            } else {
                invalid(
                    "HostNotInZone",
                    format!("host name {host} is not inside zone {name}"),
                )
            }
        }
        _ => invalid(
            "HostedZoneChoice",
            "set exactly one of zoneId and zoneName".into(),
        ),
    }
}

/// Lists that name the same subnet, security group or instance twice: AWS refuses some of
/// them half-way through building the path, so they are refused before any call.
fn check_lists(route: &PrivateLinkRoute) -> Result<(), Invalid> {
    let provider = &route.spec.provider;
    let consumer = &route.spec.consumer;
    let lists: [(&str, &[String], &'static str); 6] = [
        (
            "provider.nlbSubnetIds",
            &provider.nlb_subnet_ids,
            "DuplicateSubnets",
        ),
        (
            "provider.albSubnetIds",
            &provider.alb_subnet_ids,
            "DuplicateSubnets",
        ),
        (
            "consumer.subnetIds",
            &consumer.subnet_ids,
            "DuplicateSubnets",
        ),
        (
            "provider.albSecurityGroupIds",
            &provider.alb_security_group_ids,
            "DuplicateSecurityGroups",
        ),
        (
            "consumer.securityGroupIds",
            &consumer.security_group_ids,
            "DuplicateSecurityGroups",
        ),
        (
            "provider.targets.instanceIds",
            &provider.targets.instance_ids,
            "DuplicateInstances",
        ),
    ];
    for (field, items, reason) in lists {
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = items.iter().find(|id| !seen.insert(id.as_str())) {
            return invalid(reason, format!("{field} lists {twice} more than once"));
        }
    }
    Ok(())
}

/// Load balancer listeners accept only the predefined ELB security policies.
fn check_ssl_policy(route: &PrivateLinkRoute) -> Result<(), Invalid> {
    match route.spec.provider.ssl_policy.as_deref() {
        Some(policy) if !policy.starts_with("ELBSecurityPolicy-") => invalid(
            "UnknownSslPolicy",
            format!("sslPolicy {policy} is not an ELB security policy (ELBSecurityPolicy-...)"),
        ),
        _ => Ok(()),
    }
}

/// Principals must be in the provider's partition, or the endpoint service cannot allow them.
fn check_principals(route: &PrivateLinkRoute, provider: &AwsAccount) -> Result<(), Invalid> {
    let partition = provider.partition();
    let principals = &route.spec.provider.allowed_principals;
    match principals
        .iter()
        .find(|p| arn_partition(p) != Some(partition))
    {
        Some(other) => invalid(
            "PrincipalWrongPartition",
            format!("allowed principal {other} is not in the provider's partition {partition}"),
        ),
        None => Ok(()),
    }
}

fn account(
    name: &str,
    namespace: &str,
    find: &impl Fn(&str) -> Option<Arc<AwsAccount>>,
) -> Result<Arc<AwsAccount>, Invalid> {
    let Some(account) = find(name) else {
        return invalid(
            "AccountNotFound",
            format!("AwsAccount {name} does not exist"),
        );
    };
    if !account.allows_namespace(namespace) {
        let message = format!("AwsAccount {name} does not allow namespace {namespace}");
        return invalid("NamespaceNotAllowed", message);
    }
    Ok(account)
}

fn account_id(account: &AwsAccount) -> Result<String, Invalid> {
    let id = account.status.as_ref().and_then(|s| s.account_id.clone());
    id.ok_or_else(|| Invalid {
        reason: "AccountNotReady",
        message: format!(
            "AwsAccount {} has no account ID yet",
            kube::ResourceExt::name_any(account)
        ),
    })
}

/// The certificate must live in the provider account and its region: a listener cannot use
/// one from anywhere else.
fn check_certificate(route: &PrivateLinkRoute, provider: &AwsAccount) -> Result<(), Invalid> {
    let arn = &route.spec.provider.certificate_arn;
    let parts: Vec<&str> = arn.split(':').collect();
    let (Some(partition), Some(region), Some(owner)) = (parts.get(1), parts.get(3), parts.get(4))
    else {
        return invalid(
            "MalformedCertificateArn",
            format!("{arn} is not an ACM ARN"),
        );
    };
    if *partition != provider.partition() {
        let message = format!(
            "certificate is in partition {partition}, the provider account in {}",
            provider.partition()
        );
        return invalid("CertificateWrongPartition", message);
    }
    if *region != provider.spec.region {
        let message = format!(
            "certificate is in {region}, the provider account uses {}",
            provider.spec.region
        );
        return invalid("CertificateWrongRegion", message);
    }
    let provider_id = account_id(provider)?;
    if *owner != provider_id {
        let message = format!("certificate belongs to {owner}, not {provider_id}");
        return invalid("CertificateWrongAccount", message);
    }
    Ok(())
}

#[cfg(test)]
mod checks {
    use super::*;
    use crate::crd::{AwsAccountSpec, AwsAccountStatus};

    const CERTIFICATE: &str = concat!(
        "arn:aws:acm:ap-northeast-1:222222222222:",
        "certificate/0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b"
    );

    fn account(name: &str, id: &str) -> Arc<AwsAccount> {
        let mut account = AwsAccount::new(
            name,
            AwsAccountSpec {
                role_arn: None,
                external_id: None,
                region: "ap-northeast-1".into(),
                session_name_prefix: "prodaccess".into(),
                expected_account_id: None,
                allowed_namespaces: vec!["team".into()],
            },
        );
        account.status = Some(AwsAccountStatus {
            account_id: Some(id.into()),
            ..AwsAccountStatus::default()
        });
        Arc::new(account)
    }

    fn route(edit: impl FnOnce(&mut serde_json::Value)) -> PrivateLinkRoute {
        let mut spec = serde_json::json!({
            "hostName": "admin.prod.example.com",
            "port": 10443,
            "provider": {
                "accountRef": "prod",
                "vpcId": "vpc-0a1b2c3d",
                "nlbSubnetIds": ["subnet-0a1b2c31", "subnet-0a1b2c32"],
                "albSubnetIds": ["subnet-0a1b2c31", "subnet-0a1b2c32"],
                "albSecurityGroupIds": ["sg-0a1b2c33"],
                "certificateArn": CERTIFICATE,
                "targets": {"port": 443, "instanceIds": ["i-0a1b2c34"]},
            },
            "consumer": {
                "accountRef": "jump",
                "vpcId": "vpc-0a1b2c35",
                "subnetIds": ["subnet-0a1b2c36"],
                "hostedZone": {"zoneName": "prod.example.com"},
            },
        });
        edit(&mut spec);
        let spec = serde_json::from_value(spec).unwrap_or_else(|e| unreachable!("{e}"));
        PrivateLinkRoute::new("r", spec)
    }

    fn reason(route: &PrivateLinkRoute) -> Result<Vec<String>, &'static str> {
        let find = |name: &str| match name {
            "prod" => Some(account("prod", "222222222222")),
            "jump" => Some(account("jump", "111111111111")),
            _ => None,
        };
        validate(route, "team", find)
            .map(|resolved| resolved.principals)
            .map_err(|invalid| invalid.reason)
    }

    #[test]
    fn a_valid_route_allows_the_consumer_root_in_the_same_partition() {
        let principals = reason(&route(|_| {}));
        assert_eq!(
            principals,
            Ok(vec!["arn:aws:iam::111111111111:root".to_string()])
        );
    }

    #[test]
    fn duplicate_ids_are_refused_with_a_reason_per_kind() {
        let twice = |path: &str, id: &str| {
            let (side, field) = path.split_once('.').unwrap_or_default();
            let path = path.to_string();
            let id = id.to_string();
            route(move |spec| {
                let list = if path.ends_with("instanceIds") {
                    &mut spec["provider"]["targets"]["instanceIds"]
                } else {
                    &mut spec[side][field]
                };
                *list = serde_json::json!([id.clone(), id]);
            })
        };
        assert_eq!(
            reason(&twice("provider.nlbSubnetIds", "subnet-0a1b2c31")),
            Err("DuplicateSubnets")
        );
        assert_eq!(
            reason(&twice("provider.albSubnetIds", "subnet-0a1b2c31")),
            Err("DuplicateSubnets")
        );
        assert_eq!(
            reason(&twice("consumer.subnetIds", "subnet-0a1b2c36")),
            Err("DuplicateSubnets")
        );
        assert_eq!(
            reason(&twice("provider.albSecurityGroupIds", "sg-0a1b2c33")),
            Err("DuplicateSecurityGroups")
        );
        assert_eq!(
            reason(&twice("provider.targets.instanceIds", "i-0a1b2c34")),
            Err("DuplicateInstances")
        );
    }

    #[test]
    fn arns_outside_the_providers_partition_are_refused() {
        let china_cert = route(|spec| {
            let arn = spec["provider"]["certificateArn"]
                .as_str()
                .unwrap_or_default();
            spec["provider"]["certificateArn"] = arn.replace("arn:aws:", "arn:aws-cn:").into();
        });
        assert_eq!(reason(&china_cert), Err("CertificateWrongPartition"));
        let china_principal = route(|spec| {
            spec["provider"]["allowedPrincipals"] =
                serde_json::json!(["arn:aws-cn:iam::111111111111:root"]);
        });
        assert_eq!(reason(&china_principal), Err("PrincipalWrongPartition"));
    }

    #[test]
    fn only_elb_security_policies_are_accepted() {
        let custom = route(|spec| spec["provider"]["sslPolicy"] = "MyPolicy".into());
        assert_eq!(reason(&custom), Err("UnknownSslPolicy"));
        let elb = route(|spec| {
            spec["provider"]["sslPolicy"] = "ELBSecurityPolicy-TLS13-1-2-2021-06".into();
        });
        assert!(reason(&elb).is_ok());
    }

    #[test]
    fn only_the_oldest_route_serves_a_host_name_in_a_consumer_account() {
        let at = |second: i64| {
            let time = jiff::Timestamp::from_second(second).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(time))
        };
        let named = |name: &str, second: i64, edit: &dyn Fn(&mut serde_json::Value)| {
            let mut r = route(|spec| edit(spec));
            r.metadata.name = Some(name.into());
            r.metadata.namespace = Some("team".into());
            r.metadata.uid = Some(format!("uid-{name}"));
            r.metadata.creation_timestamp = at(second);
            Arc::new(r)
        };
        let routes = [
            named("newer", 20, &|spec| {
                spec["hostName"] = "ADMIN.prod.example.com".into()
            }),
            named("oldest", 10, &|_| {}),
            named("same-id", 30, &|spec| {
                spec["consumer"]["accountRef"] = "jump-2".into()
            }),
            named("other-host", 5, &|spec| {
                spec["hostName"] = "api.prod.example.com".into()
            }),
            named("other-vpc", 40, &|spec| {
                spec["consumer"]["vpcId"] = "vpc-0f0f0f0f".into()
            }),
        ];
        let accounts = [
            account("jump", "111111111111"),
            account("jump-2", "111111111111"),
        ];
        let check = |name: &str| {
            let route = routes
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(name))?;
            check_host_name(route, &routes, &accounts)
                .err()
                .map(|e| (e.reason, e.message))
        };
        assert_eq!(check("oldest"), None);
        assert_eq!(check("other-host"), None);
        assert_eq!(check("other-vpc"), None);
        let (reason, message) = check("newer").unwrap_or_default();
        assert_eq!(reason, "HostNameConflict");
        assert!(message.contains("team/oldest"), "{message}");
        assert_eq!(check("same-id").map(|(r, _)| r), Some("HostNameConflict"));
    }
}
