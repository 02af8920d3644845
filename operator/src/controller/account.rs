//! The `AwsAccount` controller: proves the operator can act in the account and records which
//! account that is. Grants and routes use an account only while it is Ready.

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::ResourceExt;
use serde_json::json;
use std::sync::Arc;

use crate::aws::{classify, error_message, ErrorClass};
use crate::controller::grant::retry_after;
use crate::controller::{in_use, Context};
use crate::crd::{
    arn_partition, partition_of_region, set_condition, AwsAccount, AwsAccountSpec,
    AwsAccountStatus, ConditionStatus as Cs,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to write the status of account {name}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update the finalizer of account {name}")]
    Finalizer {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Checks what the schema cannot: the role must be in the region's partition. An account that
/// fails here is not Ready, and the operator makes no AWS call for it.
pub fn check_spec(spec: &AwsAccountSpec) -> Result<(), (&'static str, String)> {
    let region_partition = partition_of_region(&spec.region);
    let role_partition = spec.role_arn.as_deref().and_then(arn_partition);
    match role_partition {
        Some(partition) if partition != region_partition => Err((
            "PartitionMismatch",
            format!(
                "roleArn is in partition {partition}, but region {} is in {region_partition}.",
                spec.region
            ),
        )),
        _ => Ok(()),
    }
}

/// Plans the account's status from the `GetCallerIdentity` answer (pure).
pub fn plan_status(
    account: &AwsAccount,
    identity: Result<(String, String), (ErrorClass, String)>,
    now: Timestamp,
) -> AwsAccountStatus {
    let mut status = account.status.clone().unwrap_or_default();
    let generation = account.metadata.generation;
    status.observed_generation = generation;
    let (state, reason, message) = match identity {
        Ok((id, arn)) => {
            let expected = account.spec.expected_account_id.as_deref();
            status.account_id = Some(id.clone());
            status.caller_arn = Some(arn.clone());
            match expected {
                Some(want) if want != id => (
                    Cs::False,
                    "AccountMismatch",
                    format!("Credentials act in account {id}, but expectedAccountId is {want}."),
                ),
                _ => (
                    Cs::True,
                    "Verified",
                    format!("Acting in account {id} as {arn}."),
                ),
            }
        }
        Err((class, message)) => {
            let reason = match class {
                ErrorClass::Auth => "AssumeRoleFailed",
                _ => "AwsUnreachable",
            };
            (Cs::False, reason, message)
        }
    };
    set_condition(
        &mut status.conditions,
        "Ready",
        state,
        reason,
        message,
        generation,
        now,
    );
    status
}

pub async fn reconcile(account: Arc<AwsAccount>, ctx: Arc<Context>) -> Result<Action, Error> {
    let labels = crate::metrics::KindLabels { kind: "AwsAccount" };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let api: Api<AwsAccount> = Api::all(ctx.client.clone());
    let finalizer_failed = |source| Error::Finalizer {
        name: account.name_any(),
        source,
    };
    if account.metadata.deletion_timestamp.is_some() {
        return release(&ctx, &api, &account).await;
    }
    in_use::set_finalizer(&api, account.as_ref(), true)
        .await
        .map_err(finalizer_failed)?;
    if let Err((reason, message)) = check_spec(&account.spec) {
        let status = invalid_status(&account, reason, message, Timestamp::now());
        write_status(&ctx, &account, &status).await?;
        return Ok(Action::await_change());
    }
    let clients = ctx.aws.for_account(&account.spec, "account").await;
    let identity = match clients.sts.get_caller_identity().send().await {
        Ok(out) => Ok((
            out.account().unwrap_or_default().to_string(),
            out.arn().unwrap_or_default().to_string(),
        )),
        Err(err) => Err((classify(&err), error_message(&err))),
    };
    let failed = identity.is_err();
    let status = plan_status(&account, identity, Timestamp::now());
    write_status(&ctx, &account, &status).await?;
    if failed {
        return Ok(retry_after(ErrorClass::Auth));
    }
    Ok(Action::requeue(ctx.settings.account_resync))
}

/// What still names the account: its groups and routes, as `kind name` for people.
fn users_of(ctx: &Context, account: &str) -> Vec<String> {
    let groups = ctx.groups.state();
    let groups = groups
        .iter()
        .filter(|g| g.spec.account_ref == account)
        .map(|g| format!("AccessGroup {}", g.name_any()));
    let routes = ctx.routes.state();
    let routes = routes
        .iter()
        .filter(|r| {
            r.spec.provider.account_ref == account || r.spec.consumer.account_ref == account
        })
        .map(|r| {
            let namespace = r.namespace().unwrap_or_default();
            format!("PrivateLinkRoute {namespace}/{}", r.name_any())
        });
    let mut users: Vec<String> = groups.chain(routes).collect();
    users.sort();
    users
}

/// A deleted account stays while a group or route names it, since revoking a group's grants and
/// tearing a route down need its role. It is not Ready meanwhile, so nothing new is granted or
/// built through it, and its grants are revoked; its Ready condition says what it waits for.
async fn release(
    ctx: &Context,
    api: &Api<AwsAccount>,
    account: &AwsAccount,
) -> Result<Action, Error> {
    if !in_use::held(account) {
        return Ok(Action::await_change());
    }
    let name = account.name_any();
    let users = users_of(ctx, &name);
    if users.is_empty() {
        in_use::set_finalizer(api, account, false)
            .await
            .map_err(|source| Error::Finalizer { name, source })?;
        return Ok(Action::await_change());
    }
    let shown = users.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    let more = users.len().saturating_sub(5);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let message = format!("Being deleted; waits until nothing uses it: {shown}{more}.");
    // Keeps the account ID: the groups' conflict checks key on it.
    let mut status = account.status.clone().unwrap_or_default();
    let generation = account.metadata.generation;
    let now = Timestamp::now();
    set_condition(
        &mut status.conditions,
        "Ready",
        Cs::False,
        "InUse",
        message,
        generation,
        now,
    );
    write_status(ctx, account, &status).await?;
    Ok(Action::requeue(std::time::Duration::from_secs(5)))
}

/// Status of an account whose spec cannot work: not Ready, with the reason.
fn invalid_status(
    account: &AwsAccount,
    reason: &str,
    message: String,
    now: Timestamp,
) -> AwsAccountStatus {
    let mut status = account.status.clone().unwrap_or_default();
    status.observed_generation = account.metadata.generation;
    status.account_id = None;
    status.caller_arn = None;
    set_condition(
        &mut status.conditions,
        "Ready",
        Cs::False,
        reason,
        message,
        account.metadata.generation,
        now,
    );
    status
}

async fn write_status(
    ctx: &Context,
    account: &AwsAccount,
    status: &AwsAccountStatus,
) -> Result<(), Error> {
    if account.status.as_ref() != Some(status) {
        let api: Api<AwsAccount> = Api::all(ctx.client.clone());
        let patch = json!({
            "apiVersion": "prodaccess.io/v1alpha1", "kind": "AwsAccount", "status": status,
        });
        let params = PatchParams::apply(super::grant::MANAGER).force();
        api.patch_status(&account.name_any(), &params, &Patch::Apply(&patch))
            .await
            .map_err(|source| Error::WriteStatus {
                name: account.name_any(),
                source,
            })?;
    }
    Ok(())
}

fn error_policy(account: Arc<AwsAccount>, err: &Error, ctx: Arc<Context>) -> Action {
    let labels = crate::metrics::ErrorLabels {
        kind: "AwsAccount",
        category: "KubeApi",
    };
    ctx.metrics.reconcile_errors.get_or_create(&labels).inc();
    tracing::warn!(account = %account.name_any(), error = %err, "Reconcile failed");
    // Both errors are the API server's; a conflict is the usual one.
    retry_after(ErrorClass::Conflict)
}

/// Runs the controller until the process stops, from the shared cache (already scoped by the
/// instance's label selector).
pub async fn run(ctx: Arc<Context>) {
    Controller::for_shared_stream(ctx.accounts.subscribe(), ctx.accounts.clone())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AwsAccountSpec, ConditionExt};

    fn account(expected: Option<&str>) -> AwsAccount {
        AwsAccount::new(
            "prod",
            AwsAccountSpec {
                role_arn: None,
                external_id: None,
                region: "ap-northeast-1".into(),
                session_name_prefix: "prodaccess".into(),
                expected_account_id: expected.map(str::to_string),
                allowed_namespaces: vec![],
            },
        )
    }

    #[test]
    fn role_outside_the_regions_partition_is_refused() {
        let mut spec = account(None).spec;
        spec.role_arn = Some("arn:aws-cn:iam::111111111111:role/prodaccess".into());
        let refused = check_spec(&spec).map_err(|(reason, _)| reason);
        assert_eq!(refused, Err("PartitionMismatch"));
        spec.region = "cn-north-1".into();
        assert_eq!(check_spec(&spec), Ok(()));
        spec.role_arn = Some("arn:aws:iam::111111111111:role/prodaccess".into());
        assert!(check_spec(&spec).is_err());
        spec.role_arn = None;
        assert_eq!(check_spec(&spec), Ok(()));
    }

    #[test]
    fn account_ready_when_identity_matches_expected_id() {
        let ok = Ok((
            "111111111111".to_string(),
            "arn:aws:sts::111111111111:x".to_string(),
        ));
        let status = plan_status(
            &account(Some("111111111111")),
            ok.clone(),
            Timestamp::UNIX_EPOCH,
        );
        assert!(status.conditions.is_true("Ready"));
        let status = plan_status(&account(Some("222222222222")), ok, Timestamp::UNIX_EPOCH);
        assert_eq!(
            status
                .conditions
                .condition("Ready")
                .map(|c| c.reason.as_str()),
            Some("AccountMismatch")
        );
        let err = Err((ErrorClass::Auth, "AccessDenied".to_string()));
        let status = plan_status(&account(None), err, Timestamp::UNIX_EPOCH);
        assert_eq!(
            status
                .conditions
                .condition("Ready")
                .map(|c| c.reason.as_str()),
            Some("AssumeRoleFailed")
        );
    }
}
