//! Checks of a route that Kubernetes 1.20's schemas cannot express, and resolution of its two
//! accounts. Pure: the account lookup is passed in.
//!
//! A route that fails here gets a condition with a specific reason and no AWS call at all.

use std::sync::Arc;
use std::time::Duration;

use crate::crd::{parse_duration, AwsAccount, PrivateLinkRoute};

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
    let provider = account(&spec.provider.account_ref, namespace, &find)?;
    let consumer = account(&spec.consumer.account_ref, namespace, &find)?;
    check_certificate(route, &provider)?;
    let principals = if spec.provider.allowed_principals.is_empty() {
        let id = account_id(&consumer)?;
        vec![format!("arn:aws:iam::{id}:root")]
    } else {
        spec.provider.allowed_principals.clone()
    };
    Ok(Resolved {
        provider,
        consumer,
        principals,
        drift_check,
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
    let (Some(region), Some(owner)) = (parts.get(3), parts.get(4)) else {
        return invalid(
            "MalformedCertificateArn",
            format!("{arn} is not an ACM ARN"),
        );
    };
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
