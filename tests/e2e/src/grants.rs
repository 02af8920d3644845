//! Support for the grant rule and security tests: one test's own admin objects (an
//! `AwsAccount` and an `AccessGroup` built as JSON so each test can bend them), the people
//! around a grant (alice, the approver carol, a requester dave, a bystander bob), change
//! requests and automation approvals opened with a person's own credentials, and what the
//! tests read back: grant phases and conditions, Events, the user's policies and the
//! emulator's call log.

use anyhow::{ensure, Context as _};
use aws_config::SdkConfig;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use prodaccess::crd::{GrantPhase, ProductionAccessGrant};
use serde_json::{json, Value};
use std::time::Duration;

use crate::aws::{self, Person};
use crate::platform::eventually;
use crate::seed::{self, Fixtures};
use crate::TestEnv;

/// IAM group the tests' access groups manage.
pub const IAM_GROUP: &str = "ProductionAccess";
/// A change template whose approval step names no approvers, so anyone may approve.
pub const OPEN_TEMPLATE: &str = "ProdAccess-OpenTemplate";
/// An automation document with an approval step (carol approves), for `approval.mode:
/// automation`.
pub const APPROVAL_RUNBOOK: &str = "ProdAccess-ApprovalRunbook";
/// Session name of the grant controller's role session: its calls carry it in the call log.
pub const GRANT_SESSION: &str = "/prodaccess-grant";

/// One test's AWS world (the seed fixtures plus two more people and two more documents) and
/// the names of its admin objects.
pub struct World {
    pub fx: Fixtures,
    /// A colleague who opens change requests and automation approvals with his own keys.
    pub dave: Person,
    /// Another engineer, used where an approval names someone else or a member is added by hand.
    pub bob: Person,
    /// Name of the test's `AwsAccount` (cluster-scoped, suffixed with the test id).
    pub account: String,
    /// Name of the test's `AccessGroup`.
    pub group: String,
}

impl World {
    /// Creates the AWS side with IAM enforcement on. Admin objects are applied separately.
    pub async fn create(env: &TestEnv) -> crate::Result<World> {
        seed::enable_enforcement(&env.platform.aws_endpoint).await?;
        let fx = Fixtures::create(&env.platform.aws_endpoint).await?;
        let dave = aws::create_person(&fx.jump, "dave").await?;
        let bob = aws::create_person(&fx.jump, "bob").await?;
        let requester = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": ["ssm:StartChangeRequestExecution", "ssm:StartAutomationExecution",
                           "ssm:SendAutomationSignal", "ssm:GetAutomationExecution"],
                "Resource": "*"
            }]
        });
        put_user_policy(&fx.jump, "dave", "ChangeRequester", &requester).await?;
        create_document(&fx.jump, OPEN_TEMPLATE, "Automation.ChangeTemplate", &[]).await?;
        create_document(&fx.jump, APPROVAL_RUNBOOK, "Automation", &[&fx.carol.arn]).await?;
        Ok(World {
            fx,
            dave,
            bob,
            account: format!("jump-{}", env.id),
            group: format!("access-{}", env.id),
        })
    }

    /// The test's `AwsAccount`, allowing `namespaces`.
    pub fn account_manifest(&self, namespaces: &[&str]) -> Value {
        json!({
            "apiVersion": "prodaccess.io/v1alpha1",
            "kind": "AwsAccount",
            "metadata": {"name": self.account},
            "spec": {
                "roleArn": format!("arn:aws:iam::{}:role/prodaccess-operator",
                                   self.fx.jump_account),
                "externalId": "prodaccess-e2e",
                "region": aws::REGION,
                "expectedAccountId": self.fx.jump_account,
                "allowedNamespaces": namespaces,
            }
        })
    }

    /// The test's `AccessGroup`: change requests from the seed template or the open one,
    /// at most one hour, not exclusive, allowing `namespaces`.
    pub fn group_manifest(&self, namespaces: &[&str]) -> Value {
        json!({
            "apiVersion": "prodaccess.io/v1alpha1",
            "kind": "AccessGroup",
            "metadata": {"name": self.group},
            "spec": {
                "accountRef": self.account,
                "groupName": IAM_GROUP,
                "createGroup": true,
                "sessionPolicy": {
                    "policyName": "SessionManagerPortForwardPolicy",
                    "jumpHostInstanceIds": [self.fx.jump_host],
                    "documents": ["AWS-StartPortForwardingSession"],
                    "requireMfa": true,
                },
                "maxDuration": "1h",
                "defaultDuration": "30m",
                "approval": {
                    "mode": "changeRequest",
                    "changeTemplates": [seed::CHANGE_TEMPLATE, OPEN_TEMPLATE],
                },
                "exclusive": false,
                "allowedNamespaces": namespaces,
            }
        })
    }

    /// Applies the account and the group as given and waits until the group is Ready.
    pub async fn apply_admin(
        &self,
        env: &TestEnv,
        mut account: Value,
        mut group: Value,
    ) -> crate::Result<()> {
        env.apply_value(&mut account).await?;
        env.apply_value(&mut group).await?;
        self.wait_group_ready(env).await
    }

    /// Applies the default account and group for the test's namespace (`exclusive` as given).
    pub async fn apply_default_admin(&self, env: &TestEnv, exclusive: bool) -> crate::Result<()> {
        let mut group = self.group_manifest(&[&env.namespace]);
        group["spec"]["exclusive"] = json!(exclusive);
        self.apply_admin(env, self.account_manifest(&[&env.namespace]), group)
            .await
    }

    /// Waits until the test's AccessGroup reports Ready=True.
    pub async fn wait_group_ready(&self, env: &TestEnv) -> crate::Result<()> {
        let api: Api<prodaccess::crd::AccessGroup> = Api::all(env.client.clone());
        eventually("the AccessGroup Ready", Duration::from_secs(30), || async {
            let group = api.get(&self.group).await?;
            let ready = group.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            Ok(ready.then_some(()))
        })
        .await
    }

    /// A grant manifest in this test's group; `approval` is a change request ID, if any.
    pub fn grant_manifest(
        &self,
        name: &str,
        user: &str,
        duration: &str,
        change_request: Option<&str>,
    ) -> Value {
        let mut grant = json!({
            "apiVersion": "prodaccess.io/v1alpha1",
            "kind": "ProductionAccessGrant",
            "metadata": {"name": name},
            "spec": {
                "accessGroup": self.group,
                "user": user,
                "duration": duration,
                "reason": "Check the production admin console after the release",
            }
        });
        if let Some(id) = change_request {
            grant["spec"]["approval"] = json!({"changeRequestId": id});
        }
        grant
    }

    /// `requester` opens a change request from `template` naming `user` and `group` (the IAM
    /// group), with their own credentials. Returns its ID.
    pub async fn open_change_request(
        &self,
        requester: &Person,
        template: &str,
        user: &str,
        group: &str,
    ) -> crate::Result<String> {
        let ssm = aws_sdk_ssm::Client::new(&requester.config(&self.fx.endpoint).await);
        let runbook = aws_sdk_ssm::types::Runbook::builder()
            .document_name("AWS-HelloWorld")
            .build()?;
        let out = ssm
            .start_change_request_execution()
            .document_name(template)
            .change_request_name(format!("production access for {user}"))
            .parameters("UserName", vec![user.to_string()])
            .parameters("GroupName", vec![group.to_string()])
            .parameters("Reason", vec!["release check".to_string()])
            .runbooks(runbook)
            .send()
            .await
            .context("open a change request")?;
        out.automation_execution_id()
            .map(str::to_string)
            .context("no change request ID")
    }

    /// A change request for alice in the test's IAM group, opened by dave and approved by
    /// carol: the ordinary, acceptable approval.
    pub async fn approved_change_request(&self) -> crate::Result<String> {
        let id = self
            .open_change_request(&self.dave, seed::CHANGE_TEMPLATE, "alice", IAM_GROUP)
            .await?;
        self.fx.approve(&self.fx.carol, &id).await?;
        Ok(id)
    }

    /// `requester` starts the approval runbook for `user` in the test's IAM group.
    pub async fn start_approval_automation(
        &self,
        requester: &Person,
        user: &str,
    ) -> crate::Result<String> {
        let ssm = aws_sdk_ssm::Client::new(&requester.config(&self.fx.endpoint).await);
        let out = ssm
            .start_automation_execution()
            .document_name(APPROVAL_RUNBOOK)
            .parameters("UserName", vec![user.to_string()])
            .parameters("GroupName", vec![IAM_GROUP.to_string()])
            .send()
            .await
            .context("start the approval automation")?;
        out.automation_execution_id()
            .map(str::to_string)
            .context("no automation execution ID")
    }

    /// `approver` rejects a change request or approval automation.
    pub async fn reject(&self, approver: &Person, id: &str) -> crate::Result<()> {
        let ssm = aws_sdk_ssm::Client::new(&approver.config(&self.fx.endpoint).await);
        ssm.send_automation_signal()
            .automation_execution_id(id)
            .signal_type(aws_sdk_ssm::types::SignalType::Reject)
            .payload("Comment", vec!["no ticket".to_string()])
            .send()
            .await
            .context("reject")?;
        Ok(())
    }

    /// Members of the IAM group, sorted; none while the group does not exist.
    pub async fn members(&self) -> crate::Result<Vec<String>> {
        let out = aws_sdk_iam::Client::new(&self.fx.jump)
            .get_group()
            .group_name(IAM_GROUP)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(err) => {
                use aws_sdk_iam::error::ProvideErrorMetadata;
                ensure!(err.code() == Some("NoSuchEntity"), "GetGroup: {err:?}");
                return Ok(Vec::new());
            }
        };
        let mut members: Vec<String> = out
            .users()
            .iter()
            .map(|u| u.user_name().to_string())
            .collect();
        members.sort();
        Ok(members)
    }

    /// The expiry guard policy document on `user`, decoded, if there is one.
    pub async fn guard_policy(&self, user: &str) -> crate::Result<Option<Value>> {
        let iam = aws_sdk_iam::Client::new(&self.fx.jump);
        let name = prodaccess::controller::grant::guard_policy_name(IAM_GROUP);
        let out = iam
            .get_user_policy()
            .user_name(user)
            .policy_name(name)
            .send()
            .await;
        match out {
            Ok(out) => Ok(prodaccess::controller::group::decode_policy(
                out.policy_document(),
            )),
            Err(err) => {
                use aws_sdk_iam::error::ProvideErrorMetadata;
                ensure!(
                    err.code() == Some("NoSuchEntity"),
                    "GetUserPolicy failed: {err:?}"
                );
                Ok(None)
            }
        }
    }

    /// The group's session policy document, decoded.
    pub async fn session_policy(&self) -> crate::Result<Option<Value>> {
        let out = aws_sdk_iam::Client::new(&self.fx.jump)
            .get_group_policy()
            .group_name(IAM_GROUP)
            .policy_name("SessionManagerPortForwardPolicy")
            .send()
            .await?;
        Ok(prodaccess::controller::group::decode_policy(
            out.policy_document(),
        ))
    }

    /// AWS calls the grant controller made in the Jump account that change something:
    /// everything but `Get*`, `List*` and `Describe*`.
    pub async fn grant_writes(&self) -> crate::Result<Vec<Call>> {
        let calls = calls(&self.fx.endpoint, &self.fx.jump_account).await?;
        Ok(calls
            .into_iter()
            .filter(|c| c.caller.ends_with(GRANT_SESSION) && c.is_write())
            .collect())
    }
}

/// Puts an inline policy on an IAM user.
pub async fn put_user_policy(
    admin: &SdkConfig,
    user: &str,
    name: &str,
    document: &Value,
) -> crate::Result<()> {
    aws_sdk_iam::Client::new(admin)
        .put_user_policy()
        .user_name(user)
        .policy_name(name)
        .policy_document(document.to_string())
        .send()
        .await
        .with_context(|| format!("put policy {name} on {user}"))?;
    Ok(())
}

/// Creates an SSM document with one `aws:approve` step (`approvers` empty: anyone) and the
/// `UserName` and `GroupName` parameters the operator checks.
async fn create_document(
    admin: &SdkConfig,
    name: &str,
    kind: &str,
    approvers: &[&str],
) -> crate::Result<()> {
    let mut content = json!({
        "schemaVersion": "0.3",
        "parameters": {
            "UserName": {"type": "String"},
            "GroupName": {"type": "String"},
        },
        "mainSteps": [{
            "name": "ApproveProductionAccess",
            "action": "aws:approve",
            "timeoutSeconds": 3600,
            "inputs": {"Message": "Production access for {{ UserName }}",
                       "MinRequiredApprovals": 1, "Approvers": approvers}
        }]
    });
    if kind == "Automation.ChangeTemplate" {
        content["templateInformation"] = json!("# Production access");
        content["executableRunBooks"] = json!([{"name": "AWS-HelloWorld", "version": "$DEFAULT"}]);
    }
    aws_sdk_ssm::Client::new(admin)
        .create_document()
        .name(name)
        .content(content.to_string())
        .document_type(aws_sdk_ssm::types::DocumentType::from(kind))
        .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
        .send()
        .await
        .with_context(|| format!("create document {name}"))?;
    Ok(())
}

/// One entry of the emulator's call log.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Call {
    pub time: f64,
    pub service: String,
    pub operation: String,
    #[serde(default)]
    pub caller: String,
    #[serde(default)]
    pub status: u16,
}

impl Call {
    /// Whether the call may change state.
    pub fn is_write(&self) -> bool {
        !["Get", "List", "Describe"]
            .iter()
            .any(|read| self.operation.starts_with(read))
    }
}

/// Every logged call into `account` (`GET /_prodemu/calls?account=`).
pub async fn calls(endpoint: &str, account: &str) -> crate::Result<Vec<Call>> {
    let url = format!("{endpoint}/_prodemu/calls?account={account}");
    let (code, body) = crate::operator::http_get(&url).await?;
    ensure!(code == 200, "call log: {code} {body}");
    let value: Value = serde_json::from_str(&body)?;
    Ok(serde_json::from_value(value["calls"].clone())?)
}

/// The grant's phase (Pending when it has no status yet).
pub fn phase(grant: &ProductionAccessGrant) -> GrantPhase {
    grant.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// One condition of the grant's status.
pub fn condition<'a>(grant: &'a ProductionAccessGrant, type_: &str) -> Option<&'a Condition> {
    grant
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// The grant's status message.
pub fn message(grant: &ProductionAccessGrant) -> String {
    grant
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

/// Waits until grant `name` satisfies `check`, then returns it.
pub async fn wait_grant(
    env: &TestEnv,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&ProductionAccessGrant) -> bool,
) -> crate::Result<ProductionAccessGrant> {
    let api: Api<ProductionAccessGrant> = env.api();
    let what = format!("grant {name}: {what}");
    let last = std::sync::Mutex::new(String::new());
    let result = eventually(&what, timeout, || async {
        let grant = api.get(name).await?;
        if let Ok(mut last) = last.lock() {
            *last = format!("{:?}: {}", phase(&grant), message(&grant));
        }
        Ok(check(&grant).then_some(grant))
    })
    .await;
    let seen = last.lock().map(|l| l.clone()).unwrap_or_default();
    result.with_context(|| format!("last seen {seen}"))
}

/// Waits until grant `name` is in `phase`.
pub async fn wait_phase(
    env: &TestEnv,
    name: &str,
    wanted: GrantPhase,
    timeout: Duration,
) -> crate::Result<ProductionAccessGrant> {
    let what = format!("phase {}", wanted.as_str());
    wait_grant(env, name, &what, timeout, |g| phase(g) == wanted).await
}

/// Waits until grant `name` is in `phase` with `Ready` reason `reason`.
pub async fn wait_reason(
    env: &TestEnv,
    name: &str,
    wanted: GrantPhase,
    reason: &str,
    timeout: Duration,
) -> crate::Result<ProductionAccessGrant> {
    let what = format!("phase {} with reason {reason}", wanted.as_str());
    wait_grant(env, name, &what, timeout, |g| {
        phase(g) == wanted && condition(g, "Ready").is_some_and(|c| c.reason == reason)
    })
    .await
}

/// An Event as the tests read it.
#[derive(Clone, Debug)]
pub struct SeenEvent {
    pub type_: String,
    pub reason: String,
    pub note: String,
}

/// Events about the object `name` in `namespace` (cluster-scoped objects: `default`).
pub async fn events(env: &TestEnv, namespace: &str, name: &str) -> crate::Result<Vec<SeenEvent>> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), namespace);
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| SeenEvent {
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
        })
        .collect())
}

/// Seconds since the Unix epoch, as the call log records them.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl World {
    /// Deletes the test's grants (the operator must be running to release their finalizers),
    /// then its access group, account and namespace.
    pub async fn teardown(&self, env: &TestEnv) -> crate::Result<()> {
        use kube::api::DeleteParams;
        env.delete_all::<ProductionAccessGrant>("grants deleted", Duration::from_secs(30))
            .await?;
        let groups: Api<prodaccess::crd::AccessGroup> = Api::all(env.client.clone());
        let _ = groups.delete(&self.group, &DeleteParams::default()).await;
        let accounts: Api<prodaccess::crd::AwsAccount> = Api::all(env.client.clone());
        let _ = accounts
            .delete(&self.account, &DeleteParams::default())
            .await;
        env.cleanup().await;
        Ok(())
    }
}
