//! Carries out a grant plan's actions in AWS. Every action is idempotent: adding a member who
//! is in, or removing one who is out, succeeds; "already gone" is success.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::observe::Resolved;
use super::plan::GrantAction;
use crate::aws::{classify, error_message, AwsClients, CallKind, ErrorClass};
use crate::controller::Context;
use crate::crd::{AccessGroup, ConsumedApproval, ProductionAccessGrant, ProductionAccessGrantSpec};

/// Failures while acting. Each names the AWS or Kubernetes call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("failed to open a change request from {template}: {message}")]
    StartChangeRequestExecution {
        template: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to cancel change request {id}: {message}")]
    StopAutomationExecution {
        id: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to add {user} to {group}: {message}")]
    AddUserToGroup {
        user: String,
        group: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to remove {user} from {group}: {message}")]
    RemoveUserFromGroup {
        user: String,
        group: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to put the expiry guard policy on {user}: {message}")]
    PutUserPolicy {
        user: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to delete the expiry guard policy of {user}: {message}")]
    DeleteUserPolicy {
        user: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to list sessions of {user}: {message}")]
    DescribeSessions {
        user: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to terminate session {session}: {message}")]
    TerminateSession {
        session: String,
        message: String,
        class: ErrorClass,
    },
    #[error("failed to record approval {id} in the group's ledger")]
    ClaimApproval {
        id: String,
        #[source]
        source: kube::Error,
    },
    #[error("approval {id} was claimed by grant {other} first")]
    ApprovalTaken { id: String, other: String },
}

impl ActError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::StartChangeRequestExecution { class, .. }
            | Self::StopAutomationExecution { class, .. }
            | Self::AddUserToGroup { class, .. }
            | Self::RemoveUserFromGroup { class, .. }
            | Self::PutUserPolicy { class, .. }
            | Self::DeleteUserPolicy { class, .. }
            | Self::DescribeSessions { class, .. }
            | Self::TerminateSession { class, .. } => *class,
            Self::ClaimApproval { .. } | Self::ApprovalTaken { .. } => ErrorClass::Conflict,
        }
    }
}

/// What acting produced that the status must record.
#[derive(Default, Debug)]
pub struct ActOutcome {
    pub opened_change_request: Option<String>,
    pub sessions_terminated: usize,
}

/// Client settings of the membership calls. IAM answers them in well under a second; one that
/// hangs is abandoned after 2 s and sent again, so a revocation is not held up by the
/// client's general 10 s attempt timeout. Calls that give access pass `send_by`: no attempt
/// starts after it, so none is still on its way to IAM when the window ends (see
/// `plan::ADD_MARGIN`).
fn membership_call(send_by: Option<Timestamp>) -> aws_sdk_iam::config::Builder {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .operation_attempt_timeout(std::time::Duration::from_secs(2))
        .operation_timeout(operation_timeout(send_by))
        .build();
    let retries = RetryConfig::standard()
        .with_max_attempts(6)
        .with_initial_backoff(std::time::Duration::from_millis(200))
        .with_max_backoff(std::time::Duration::from_secs(2));
    aws_sdk_iam::config::Builder::default()
        .timeout_config(timeouts)
        .retry_config(retries)
}

/// At most 20 s, and never past `send_by`.
fn operation_timeout(send_by: Option<Timestamp>) -> std::time::Duration {
    let most = std::time::Duration::from_secs(20);
    let Some(send_by) = send_by else {
        return most;
    };
    let left = send_by.duration_since(Timestamp::now());
    std::time::Duration::try_from(left)
        .unwrap_or(std::time::Duration::ZERO)
        .min(most)
}

/// Refuses to start a call that gives access once its `send_by` has passed: the reconcile is
/// retried, and its plan no longer gives access this close to the window's end.
fn too_late(send_by: Timestamp) -> Option<String> {
    (Timestamp::now() >= send_by).then(|| {
        format!("not sent: the window ends too soon after {send_by} for the request to land")
    })
}

/// Name of the per-user inline policy that ends session rights at expiry inside AWS.
pub fn guard_policy_name(group: &str) -> String {
    let mut name = format!("prodaccess-expiry-{group}");
    name.truncate(128);
    name
}

/// The guard policy: deny the session actions once `aws:CurrentTime` passes the expiry, so
/// access ends on time even when the operator is down.
pub fn guard_policy_document(expiry: Timestamp) -> String {
    let expiry = expiry.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ProdaccessDenySessionsAfterExpiry",
            "Effect": "Deny",
            "Action": [
                "ssm:StartSession",
                "ssm:ResumeSession",
                "ssm:DescribeSessions",
                "ssm:TerminateSession"
            ],
            "Resource": "*",
            "Condition": { "DateGreaterThan": { "aws:CurrentTime": expiry } }
        }]
    })
    .to_string()
}

pub async fn act(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    spec: &ProductionAccessGrantSpec,
    resolved: &Resolved,
    actions: &[GrantAction],
) -> Result<ActOutcome, ActError> {
    let mut outcome = ActOutcome::default();
    let clients = &resolved.clients;
    let iam = &clients.iam;
    let user = spec.user.as_str();
    let group = resolved.terms.group_name.as_str();
    let account = resolved.account.name_any();
    for action in actions {
        match action {
            GrantAction::OpenChangeRequest {
                template,
                duration,
                asked_at,
            } => {
                let request = (template.as_str(), *duration, *asked_at);
                let id = open_change_request(grant, spec, resolved, request).await?;
                outcome.opened_change_request = Some(id);
            }
            GrantAction::ClaimApproval { approval_id, until } => {
                claim_approval(ctx, grant, &resolved.group, approval_id, *until).await?;
            }
            GrantAction::AddToGroup { send_by } => {
                let add = |config| {
                    iam.add_user_to_group()
                        .user_name(user)
                        .group_name(group)
                        .customize()
                        .config_override(config)
                        .send()
                };
                let failed = |class, message| ActError::AddUserToGroup {
                    user: user.into(),
                    group: group.into(),
                    class,
                    message,
                };
                give_access(clients, *send_by, add, failed).await?;
                ctx.shared.set_member(&account, group, user, true).await;
            }
            GrantAction::PutExpiryGuard { expiry, send_by } => {
                let put = |config| {
                    iam.put_user_policy()
                        .user_name(user)
                        .policy_name(guard_policy_name(group))
                        .policy_document(guard_policy_document(*expiry))
                        .customize()
                        .config_override(config)
                        .send()
                };
                let failed = |class, message| ActError::PutUserPolicy {
                    user: user.into(),
                    class,
                    message,
                };
                give_access(clients, *send_by, put, failed).await?;
            }
            GrantAction::RemoveFromGroup => {
                let remove = iam
                    .remove_user_from_group()
                    .user_name(user)
                    .group_name(group)
                    .customize()
                    .config_override(membership_call(None))
                    .send();
                match clients.budgeted("iam", CallKind::Write, remove).await {
                    Ok(_) => ctx.shared.set_member(&account, group, user, false).await,
                    Err(err) if classify(&err) == ErrorClass::NotFound => {
                        ctx.shared.set_member(&account, group, user, false).await
                    }
                    Err(err) => {
                        return Err(ActError::RemoveUserFromGroup {
                            user: user.into(),
                            group: group.into(),
                            class: classify(&err),
                            message: error_message(&err),
                        })
                    }
                }
            }
            GrantAction::TerminateSessions => {
                outcome.sessions_terminated = terminate_sessions(resolved, user).await?;
            }
            GrantAction::CancelChangeRequest { id } => {
                let stop = clients
                    .ssm
                    .stop_automation_execution()
                    .automation_execution_id(id)
                    .r#type(aws_sdk_ssm::types::StopType::Cancel)
                    .send();
                match clients.budgeted("ssm", CallKind::Write, stop).await {
                    Ok(_) => {}
                    // Gone, or already decided: nothing is left to cancel.
                    Err(err)
                        if matches!(
                            classify(&err),
                            ErrorClass::NotFound | ErrorClass::InvalidRequest
                        ) => {}
                    Err(err) => {
                        return Err(ActError::StopAutomationExecution {
                            id: id.clone(),
                            class: classify(&err),
                            message: error_message(&err),
                        })
                    }
                }
            }
            GrantAction::RemoveExpiryGuard => {
                let del = iam
                    .delete_user_policy()
                    .user_name(user)
                    .policy_name(guard_policy_name(group))
                    .send();
                match clients.budgeted("iam", CallKind::Write, del).await {
                    Ok(_) => {}
                    Err(err) if classify(&err) == ErrorClass::NotFound => {}
                    Err(err) => {
                        return Err(ActError::DeleteUserPolicy {
                            user: user.into(),
                            class: classify(&err),
                            message: error_message(&err),
                        })
                    }
                }
            }
        }
    }
    Ok(outcome)
}

/// Sends an IAM write that gives access (the add or its expiry guard). The budget is waited
/// for first; only then is the request built with its SDK config (`call` receives it), so that
/// the send-by check and the operation timeout that ends at `send_by` count from when the
/// request can really go. Past `send_by` it is not sent at all: it could reach IAM after the
/// revocation.
async fn give_access<T, E, Fut>(
    clients: &AwsClients,
    send_by: Timestamp,
    call: impl FnOnce(aws_sdk_iam::config::Builder) -> Fut,
    failed: impl Fn(ErrorClass, String) -> ActError,
) -> Result<T, ActError>
where
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let guarded = async {
        if let Some(message) = too_late(send_by) {
            return Err(failed(ErrorClass::Connectivity, message));
        }
        call(membership_call(Some(send_by)))
            .await
            .map_err(|err| failed(classify(&err), error_message(&err)))
    };
    clients.budgeted("iam", CallKind::Write, guarded).await
}

/// Opens a change request for the grant. The grant's UID is the client token, so a retry after
/// a crash returns the same request instead of opening a second one.
async fn open_change_request(
    grant: &ProductionAccessGrant,
    spec: &ProductionAccessGrantSpec,
    resolved: &Resolved,
    (template, duration, asked_at): (&str, std::time::Duration, Timestamp),
) -> Result<String, ActError> {
    let not_before = spec
        .not_before
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    // Every parameter derives from the recorded request time, never from the clock: a retry
    // with the same client token must send exactly the same request.
    let start = not_before.map_or(asked_at, |t| t.max(asked_at));
    let end = start + jiff::SignedDuration::from_secs(duration.as_secs() as i64);
    let fmt = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let name = format!(
        "prodaccess {}/{}",
        grant.namespace().unwrap_or_default(),
        grant.name_any()
    );
    let param = |v: &str| vec![v.to_string()];
    let runbook = aws_sdk_ssm::types::Runbook::builder()
        .document_name("AWS-HelloWorld")
        .build();
    let runbook = runbook.map_err(|err| ActError::StartChangeRequestExecution {
        template: template.into(),
        class: ErrorClass::InvalidRequest,
        message: err.to_string(),
    })?;
    let request = resolved
        .clients
        .ssm
        .start_change_request_execution()
        .document_name(template)
        .change_request_name(name)
        .client_token(grant.uid().unwrap_or_default())
        .scheduled_time(aws_smithy_types::DateTime::from_secs(start.as_second()))
        .scheduled_end_time(aws_smithy_types::DateTime::from_secs(end.as_second()))
        .parameters("UserName", param(&spec.user))
        .parameters("GroupName", param(&resolved.terms.group_name))
        .parameters("Reason", param(&spec.reason))
        .parameters("ScheduledEndTime", param(&fmt(end)))
        .runbooks(runbook);
    let out = request
        .send()
        .await
        .map_err(|err| ActError::StartChangeRequestExecution {
            template: template.into(),
            class: classify(&err),
            message: error_message(&err),
        })?;
    Ok(out
        .automation_execution_id()
        .unwrap_or_default()
        .to_string())
}

/// Records in the group's status that `id` backs this grant. The write carries the group's
/// resourceVersion, so a concurrent writer makes it fail instead of being overwritten.
async fn claim_approval(
    ctx: &Context,
    grant: &ProductionAccessGrant,
    group: &AccessGroup,
    id: &str,
    until: Timestamp,
) -> Result<(), ActError> {
    let _guard = ctx.ledger_lock.lock().await;
    let api: Api<AccessGroup> = Api::all(ctx.client.clone());
    let err = |source| ActError::ClaimApproval {
        id: id.to_string(),
        source,
    };
    let fresh = api.get_status(&group.name_any()).await.map_err(err)?;
    let uid = grant.uid().unwrap_or_default();
    let now = Timestamp::now();
    let mut ledger = fresh.status.clone().unwrap_or_default().consumed_approvals;
    if let Some(other) = ledger
        .iter()
        .find(|c| c.approval_id == id && c.grant_uid != uid)
    {
        return Err(ActError::ApprovalTaken {
            id: id.into(),
            other: other.grant.clone(),
        });
    }
    if ledger.iter().any(|c| c.approval_id == id) {
        return Ok(());
    }
    ledger.retain(|c| c.until.0 > now);
    ledger.push(ConsumedApproval {
        approval_id: id.to_string(),
        grant_uid: uid,
        grant: format!(
            "{}/{}",
            grant.namespace().unwrap_or_default(),
            grant.name_any()
        ),
        until: Time(until),
    });
    let patch = json!({
        "metadata": { "resourceVersion": fresh.resource_version() },
        "status": { "consumedApprovals": ledger },
    });
    let params = PatchParams::default();
    api.patch_status(&group.name_any(), &params, &Patch::Merge(&patch))
        .await
        .map_err(err)?;
    Ok(())
}

async fn terminate_sessions(resolved: &Resolved, user: &str) -> Result<usize, ActError> {
    // Every call waits for its budget before its timeouts start: a mass expiry queues here.
    let clients = &resolved.clients;
    let ssm = &clients.ssm;
    let get_user = clients.iam.get_user().user_name(user).send();
    let arn = clients
        .budgeted("iam", CallKind::Read, get_user)
        .await
        .ok()
        .and_then(|out| out.user().map(|u| u.arn().to_string()));
    let Some(arn) = arn else { return Ok(0) };
    let filter = aws_sdk_ssm::types::SessionFilter::builder()
        .key(aws_sdk_ssm::types::SessionFilterKey::Owner)
        .value(&arn)
        .build()
        .map_err(|err| ActError::DescribeSessions {
            user: user.into(),
            class: ErrorClass::InvalidRequest,
            message: err.to_string(),
        })?;
    let describe = ssm
        .describe_sessions()
        .state(aws_sdk_ssm::types::SessionState::Active)
        .filters(filter)
        .send();
    let out = clients
        .budgeted("ssm", CallKind::Read, describe)
        .await
        .map_err(|err| ActError::DescribeSessions {
            user: user.into(),
            class: classify(&err),
            message: error_message(&err),
        })?;
    let mut terminated = 0;
    for session in out.sessions() {
        let Some(id) = session.session_id() else {
            continue;
        };
        let terminate = ssm.terminate_session().session_id(id).send();
        match clients.budgeted("ssm", CallKind::Write, terminate).await {
            Ok(_) => terminated += 1,
            Err(err) if classify(&err) == ErrorClass::NotFound => {}
            Err(err) => {
                return Err(ActError::TerminateSession {
                    session: id.into(),
                    class: classify(&err),
                    message: error_message(&err),
                })
            }
        }
    }
    Ok(terminated)
}
