//! AWS access, all in one place: SDK clients built per `AwsAccount` from one base config, and
//! SDK errors sorted into classes.
//!
//! The base config comes from the SDK's standard chain (environment, IRSA web identity, EKS Pod
//! Identity, profile), so the SDK's own `AWS_ENDPOINT_URL` points every client at an emulator
//! in tests. For an account with a role, the operator assumes it with the account's external ID
//! and a session name that says which operator acted; the SDK's identity cache refreshes those
//! credentials before they expire. Clients are cached per account settings and reused.

mod budget;
mod calls;
mod error;

pub use budget::{BudgetConfig, CallKind, RequestBudget};
pub use calls::CallRecorder;
pub use error::{
    classify, classify_code, error_code, error_message, is_not_found_code, ErrorClass,
};

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::crd::AwsAccountSpec;
use crate::metrics::Metrics;

/// Every SDK client the operator uses in one account.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub region: String,
    pub iam: aws_sdk_iam::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub elbv2: aws_sdk_elasticloadbalancingv2::Client,
    pub route53: aws_sdk_route53::Client,
    pub acm: aws_sdk_acm::Client,
    pub sts: aws_sdk_sts::Client,
    budget: Arc<RequestBudget>,
    /// The account whose budget these clients spend.
    budget_account: Arc<str>,
}

impl AwsClients {
    /// Runs `call`, one `service`/`kind` request of this account, after waiting for its budget
    /// outside the SDK's timeouts (see [`RequestBudget::prepaid`]).
    pub async fn budgeted<F: std::future::Future>(
        &self,
        service: &'static str,
        kind: CallKind,
        call: F,
    ) -> F::Output {
        let budget = &self.budget;
        budget
            .prepaid(&self.budget_account, service, kind, call)
            .await
    }
}

/// Why the operator could not set up AWS access at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "AWS credentials could not be resolved ({0}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
         AWS_PROFILE, or run with IRSA or EKS Pod Identity"
    )]
    Credentials(String),
}

/// The settings that make two accounts' clients interchangeable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AccountKey {
    role_arn: Option<String>,
    external_id: Option<String>,
    region: String,
    session_name: String,
}

/// The SDK's default HTTPS client, chosen explicitly: a config left to pick its own exposes
/// no client, and the request budget is a wrapper around this one.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https()
}

/// Builds and caches clients per account.
pub struct ClientFactory {
    base: SdkConfig,
    recorder: CallRecorder,
    budget: Arc<RequestBudget>,
    cache: Mutex<HashMap<AccountKey, Arc<AwsClients>>>,
}

impl ClientFactory {
    /// Loads the base config from the standard chain. Retries are the SDK's standard mode with
    /// a bounded attempt timeout, so a hung endpoint surfaces as a connectivity error instead of
    /// stalling a reconcile.
    pub async fn from_env(metrics: Arc<Metrics>, budget: BudgetConfig) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(10))
            .operation_timeout(Duration::from_secs(40))
            .build();
        // Stalled-stream protection would take a request waiting for its budget token (inside
        // the HTTP client, see `budget`) for a stalled upload and fail it; the attempt timeout
        // still bounds a request that really hangs.
        let base = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .retry_config(RetryConfig::standard().with_max_attempts(4))
            .timeout_config(timeouts)
            .load()
            .await;
        Self {
            base,
            budget: RequestBudget::new(budget, metrics.clone()),
            recorder: CallRecorder::new(metrics),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves the operator's own credentials, so that a misconfigured pod stops at start with
    /// one line instead of failing every reconcile.
    pub async fn check_credentials(&self) -> Result<(), SetupError> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self
            .base
            .credentials_provider()
            .ok_or_else(|| SetupError::Credentials("no credentials provider".to_string()))?;
        provider
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|err| SetupError::Credentials(err.to_string()))
    }

    /// Clients acting in the account `spec` describes. `purpose` ends up in the role session
    /// name (for example `grant` or `route`), so CloudTrail says which controller acted.
    pub async fn for_account(&self, spec: &AwsAccountSpec, purpose: &str) -> Arc<AwsClients> {
        let mut session_name = format!("{}-{purpose}", spec.session_name_prefix);
        session_name.truncate(64);
        let key = AccountKey {
            role_arn: spec.role_arn.clone(),
            external_id: spec.external_id.clone(),
            region: spec.region.clone(),
            session_name,
        };
        let mut cache = self.cache.lock().await;
        if let Some(clients) = cache.get(&key) {
            return clients.clone();
        }
        let clients = Arc::new(self.build(&key).await);
        cache.insert(key, clients.clone());
        clients
    }

    async fn build(&self, key: &AccountKey) -> AwsClients {
        let region = Region::new(key.region.clone());
        let mut config = self.base.to_builder().region(region.clone());
        // Budgets are per account: the role's account, or the operator's own identity.
        let account: Arc<str> = Arc::from(
            key.role_arn
                .as_deref()
                .and_then(|arn| arn.split(':').nth(4))
                .unwrap_or("default"),
        );
        // The base config always has its client (`https_client`); without one there would be
        // nothing to wrap and no budget.
        if let Some(inner) = self.base.http_client() {
            config = config.http_client(budget::BudgetedHttpClient {
                inner,
                budget: self.budget.clone(),
                account: account.clone(),
            });
        }
        if let Some(role_arn) = &key.role_arn {
            let mut provider = AssumeRoleProvider::builder(role_arn)
                .session_name(&key.session_name)
                .region(region.clone())
                .configure(&self.base);
            if let Some(external_id) = &key.external_id {
                provider = provider.external_id(external_id);
            }
            let provider = provider.build().await;
            config = config.credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            );
        }
        let config = config.build();
        self.clients(&config, key.region.clone(), account)
    }

    fn clients(&self, config: &SdkConfig, region: String, account: Arc<str>) -> AwsClients {
        let rec = self.recorder.clone();
        AwsClients {
            region,
            budget: self.budget.clone(),
            budget_account: account,
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(config)
                    .interceptor(rec.clone())
                    .build(),
            ),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(config)
                    .interceptor(rec.clone())
                    .build(),
            ),
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(config)
                    .interceptor(rec.clone())
                    .build(),
            ),
            elbv2: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(config)
                    .interceptor(rec.clone())
                    .build(),
            ),
            route53: aws_sdk_route53::Client::from_conf(
                aws_sdk_route53::config::Builder::from(config)
                    .interceptor(rec.clone())
                    .build(),
            ),
            acm: aws_sdk_acm::Client::from_conf(
                aws_sdk_acm::config::Builder::from(config)
                    .interceptor(rec.clone())
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(config)
                    .interceptor(rec)
                    .build(),
            ),
        }
    }
}
