//! The scenario of the article this project started from, shared by `seed_grant_lifecycle`
//! and `make demo`: what exists in AWS before prodaccess (accounts, the Windows jump host,
//! the people, the change template), and the manifests in `examples/seed/` filled in for it.

use anyhow::Context as _;
use aws_config::SdkConfig;
use std::collections::BTreeMap;

use crate::aws::{self, Person};
use crate::network::{self, Labels, Network};

/// Production host name of the seed route.
pub const HOST: &str = "admin.prod.example.com";

/// How the seed names its network.
pub const NETWORK_LABELS: Labels<'static> = Labels {
    security_groups: "admin-console-",
    instances: "production",
    certificate_domain: HOST,
};

/// AWS state the scenario starts from.
pub struct Fixtures {
    pub endpoint: String,
    pub jump_account: String,
    pub prod_account: String,
    pub jump: SdkConfig,
    pub prod: SdkConfig,
    pub jump_host: String,
    /// The network both accounts start with (VPCs, subnets, security groups, the production
    /// instances and the ACM certificate).
    pub net: Network,
    /// The engineer who needs production access.
    pub alice: Person,
    /// The change approver.
    pub carol: Person,
}

/// Name of the change template the access group opens change requests from.
pub const CHANGE_TEMPLATE: &str = "ProdAccess-ChangeTemplate";

impl Fixtures {
    pub async fn create(endpoint: &str) -> crate::Result<Fixtures> {
        let jump_account = crate::TestEnv::account_id();
        let prod_account = crate::TestEnv::account_id();
        let jump = aws::admin(endpoint, &jump_account).await?;
        let prod = aws::admin(endpoint, &prod_account).await?;
        let net = Network::create(&jump, &prod, &NETWORK_LABELS).await?;
        let ec2 = aws_sdk_ec2::Client::new(&jump);
        let jump_host = network::instance(&ec2, &net.jump_subnet, "windows-jump-host").await?;
        let alice = aws::create_person(&jump, "alice").await?;
        let carol = aws::create_person(&jump, "carol").await?;
        let approver_policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": ["ssm:SendAutomationSignal", "ssm:GetAutomationExecution",
                           "ssm:DescribeAutomationExecutions"],
                "Resource": "*"
            }]
        });
        aws_sdk_iam::Client::new(&jump)
            .put_user_policy()
            .user_name("carol")
            .policy_name("ChangeApprover")
            .policy_document(approver_policy.to_string())
            .send()
            .await
            .context("approver policy")?;
        create_change_template(&jump, &carol.arn).await?;
        Ok(Fixtures {
            endpoint: endpoint.to_string(),
            jump_account,
            prod_account,
            jump,
            prod,
            jump_host,
            net,
            alice,
            carol,
        })
    }

    /// Values for the `${...}` placeholders of `examples/seed/`.
    pub fn variables(
        &self,
        namespace: &str,
        suffix: &str,
        duration: &str,
    ) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        vars.insert("JUMP_ACCOUNT_ID".into(), self.jump_account.clone());
        vars.insert("PROD_ACCOUNT_ID".into(), self.prod_account.clone());
        vars.insert("JUMP_HOST_ID".into(), self.jump_host.clone());
        vars.insert("NAMESPACE".into(), namespace.to_string());
        vars.insert("SUFFIX".into(), suffix.to_string());
        vars.insert("GRANT_DURATION".into(), duration.to_string());
        vars.insert("PROD_VPC_ID".into(), self.net.prod_vpc.clone());
        vars.insert("PROD_SUBNET_IDS".into(), self.net.prod_subnets.join(", "));
        vars.insert("PROD_ALB_SG_ID".into(), self.net.prod_sg.clone());
        vars.insert("CERTIFICATE_ARN".into(), self.net.certificate.clone());
        vars.insert("PROD_INSTANCE_IDS".into(), self.net.instances.join(", "));
        vars.insert("JUMP_VPC_ID".into(), self.net.jump_vpc.clone());
        vars.insert("JUMP_SUBNET_ID".into(), self.net.jump_subnet.clone());
        vars.insert("JUMP_ENDPOINT_SG_ID".into(), self.net.jump_sg.clone());
        vars
    }

    /// Starts the article's port-forwarding session as `person` with MFA:
    /// `aws ssm start-session --target <jump host> --document-name
    /// AWS-StartPortForwardingSession --parameters portNumber=3389,localPortNumber=11111`.
    pub async fn start_port_forwarding(
        &self,
        person: &Person,
    ) -> crate::Result<Result<String, String>> {
        let config = person.mfa_session(&self.endpoint).await?;
        let ssm = aws_sdk_ssm::Client::new(&config);
        let result = ssm
            .start_session()
            .target(&self.jump_host)
            .document_name("AWS-StartPortForwardingSession")
            .parameters("portNumber", vec!["3389".to_string()])
            .parameters("localPortNumber", vec!["11111".to_string()])
            .send()
            .await;
        Ok(match result {
            Ok(out) => Ok(out.session_id().unwrap_or_default().to_string()),
            Err(err) => {
                use aws_sdk_ssm::error::ProvideErrorMetadata;
                let code = err.code().unwrap_or("Unknown").to_string();
                let message = err.message().unwrap_or("").to_string();
                Err(format!("{code}: {message}"))
            }
        })
    }

    /// Members of the IAM group, read with the Jump account's admin.
    pub async fn group_members(&self, group: &str) -> crate::Result<Vec<String>> {
        let out = aws_sdk_iam::Client::new(&self.jump)
            .get_group()
            .group_name(group)
            .send()
            .await?;
        Ok(out
            .users()
            .iter()
            .map(|u| u.user_name().to_string())
            .collect())
    }

    /// The approver approves a change request (SendAutomationSignal Approve).
    pub async fn approve(&self, approver: &Person, id: &str) -> crate::Result<()> {
        let ssm = aws_sdk_ssm::Client::new(&approver.config(&self.endpoint).await);
        ssm.send_automation_signal()
            .automation_execution_id(id)
            .signal_type(aws_sdk_ssm::types::SignalType::Approve)
            .payload(
                "Comment",
                vec!["approved for the release check".to_string()],
            )
            .send()
            .await
            .context("approve the change request")?;
        Ok(())
    }

    /// State of one SSM session, as the Jump account's admin sees it.
    pub async fn session_status(&self, id: &str) -> crate::Result<Option<String>> {
        let ssm = aws_sdk_ssm::Client::new(&self.jump);
        for state in [
            aws_sdk_ssm::types::SessionState::Active,
            aws_sdk_ssm::types::SessionState::History,
        ] {
            let out = ssm.describe_sessions().state(state).send().await?;
            if let Some(s) = out.sessions().iter().find(|s| s.session_id() == Some(id)) {
                return Ok(s.status().map(|st| st.as_str().to_string()));
            }
        }
        Ok(None)
    }
}

/// Turns on the emulator's IAM enforcement for IAM users' credentials.
pub async fn enable_enforcement(endpoint: &str) -> crate::Result<()> {
    let url = format!("{endpoint}/_prodemu/enforcement");
    let (code, body) = crate::operator::http("POST", &url, r#"{"enabled": true}"#).await?;
    anyhow::ensure!(code == 200, "enabling enforcement failed: {code} {body}");
    Ok(())
}

async fn create_change_template(config: &SdkConfig, approver: &str) -> crate::Result<()> {
    let content = serde_json::json!({
        "schemaVersion": "0.3",
        "emergencyChange": false,
        "autoApprovable": false,
        "executableRunBooks": [{"name": "AWS-HelloWorld", "version": "$DEFAULT"}],
        "templateInformation": "# Production access\nApprove only with a ticket.",
        "mainSteps": [{
            "name": "ApproveProductionAccess",
            "action": "aws:approve",
            "timeoutSeconds": 3600,
            "inputs": {"Message": "Production access", "MinRequiredApprovals": 1,
                       "Approvers": [approver]}
        }]
    });
    aws_sdk_ssm::Client::new(config)
        .create_document()
        .name(CHANGE_TEMPLATE)
        .content(content.to_string())
        .document_type(aws_sdk_ssm::types::DocumentType::from(
            "Automation.ChangeTemplate",
        ))
        .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
        .send()
        .await
        .context("create the change template")?;
    Ok(())
}

/// `examples/seed/*.yaml` (sorted), with `${VAR}` placeholders filled in.
pub fn manifests(
    repo: &std::path::Path,
    vars: &BTreeMap<String, String>,
    only: &[&str],
) -> crate::Result<String> {
    let dir = repo.join("examples/seed");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut out = String::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !name.ends_with(".yaml") || !only.iter().any(|prefix| name.starts_with(prefix)) {
            continue;
        }
        let mut text = std::fs::read_to_string(&file)?;
        for (key, value) in vars {
            text = text.replace(&format!("${{{key}}}"), value);
        }
        out.push_str(&text);
        out.push_str("\n---\n");
    }
    Ok(out)
}
