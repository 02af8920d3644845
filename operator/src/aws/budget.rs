//! A request budget per account and service: token buckets that every AWS call passes through,
//! so that the operator stays inside AWS's API rate limits however many objects it manages.
//!
//! The budget sits in the SDK's HTTP layer (a wrapper around the real HTTP client), which is
//! the one place every attempt of every client crosses, retries included, and where a call
//! can wait without blocking a thread. The service comes from the signature's credential
//! scope; whether a call reads or writes comes from its operation name (`Get*`, `List*`,
//! `Describe*` read; everything else writes). Defaults follow AWS's published limits where
//! there are some (EC2's token buckets, Route 53's five requests a second) and conservative
//! figures elsewhere; `--aws-budget` overrides them.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::{BudgetLabels, Metrics};

/// Whether a call changes state in AWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallKind {
    Read,
    Write,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// Rate (tokens a second) and burst (bucket size) of one bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

/// Limits per service and kind, with defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    limits: HashMap<(String, CallKind), Limit>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        let mut limits = HashMap::new();
        let mut set = |service: &str, kind, rate, burst| {
            limits.insert((service.to_string(), kind), Limit { rate, burst });
        };
        // EC2 documents its token buckets: non-mutating 100 burst / 20 a second, mutating
        // 50 / 5. Route 53 documents five requests a second per account. IAM, ELBv2, SSM and
        // ACM publish no exact figures; these stay well under what they accept in practice.
        set("ec2", CallKind::Read, 20.0, 100.0);
        set("ec2", CallKind::Write, 5.0, 50.0);
        set("route53", CallKind::Read, 5.0, 5.0);
        set("route53", CallKind::Write, 5.0, 5.0);
        set("iam", CallKind::Read, 20.0, 20.0);
        set("iam", CallKind::Write, 10.0, 10.0);
        set("elasticloadbalancing", CallKind::Read, 10.0, 20.0);
        set("elasticloadbalancing", CallKind::Write, 5.0, 10.0);
        set("ssm", CallKind::Read, 20.0, 40.0);
        set("ssm", CallKind::Write, 5.0, 10.0);
        set("acm", CallKind::Read, 10.0, 10.0);
        set("sts", CallKind::Read, 50.0, 100.0);
        set("sts", CallKind::Write, 50.0, 100.0);
        Self { limits }
    }
}

impl BudgetConfig {
    /// Parses overrides like `iam:write=20/40,ec2:read=50` on top of the defaults.
    pub fn with_overrides(mut self, text: &str) -> Result<Self, String> {
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || format!("bad budget {entry:?}; write SERVICE:read|write=RATE[/BURST]");
            let (key, value) = entry.split_once('=').ok_or_else(bad)?;
            let (service, kind) = key.split_once(':').ok_or_else(bad)?;
            let kind = match kind {
                "read" => CallKind::Read,
                "write" => CallKind::Write,
                _ => return Err(bad()),
            };
            let (rate, burst) = match value.split_once('/') {
                Some((rate, burst)) => (rate, Some(burst)),
                None => (value, None),
            };
            let rate: f64 = rate.parse().map_err(|_| bad())?;
            let burst: f64 = match burst {
                Some(burst) => burst.parse().map_err(|_| bad())?,
                None => rate.max(1.0),
            };
            if !(rate > 0.0 && burst >= 1.0) {
                return Err(bad());
            }
            self.limits
                .insert((service.to_string(), kind), Limit { rate, burst });
        }
        Ok(self)
    }

    /// The limit of one service and kind, if it is budgeted.
    pub fn limit(&self, service: &str, kind: CallKind) -> Option<Limit> {
        self.limits.get(&(service.to_string(), kind)).copied()
    }
}

#[derive(Debug)]
struct Bucket {
    limit: Limit,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Takes one token, possibly going into debt, and says how long the caller must wait for
    /// its turn. Debt makes waiting callers queue in order instead of polling.
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.rate).min(self.limit.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.limit.rate)
        }
    }
}

/// The shared token buckets of one operator.
#[derive(Debug)]
pub struct RequestBudget {
    config: BudgetConfig,
    buckets: Mutex<HashMap<(String, String, CallKind), Bucket>>,
    metrics: Arc<Metrics>,
}

impl RequestBudget {
    pub fn new(config: BudgetConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            config,
            buckets: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Waits for a token of `account`'s budget for `service` calls of `kind`. A caller that
    /// gives up while waiting (an SDK attempt timing out) hands its place back, so abandoned
    /// waits do not pile up debt that every later caller would pay for.
    pub async fn acquire(&self, account: &str, service: &str, kind: CallKind) {
        let Some(limit) = self.config.limit(service, kind) else {
            return;
        };
        let key = (account.to_string(), service.to_string(), kind);
        let wait = {
            let Ok(mut buckets) = self.buckets.lock() else {
                return;
            };
            let bucket = buckets.entry(key.clone()).or_insert_with(|| Bucket {
                limit,
                tokens: limit.burst,
                last: Instant::now(),
            });
            bucket.reserve(Instant::now())
        };
        let labels = BudgetLabels {
            service: service.to_string(),
            kind: kind.as_str(),
        };
        self.metrics.budget_calls.get_or_create(&labels).inc();
        if !wait.is_zero() {
            self.metrics
                .budget_wait
                .get_or_create(&labels)
                .observe(wait.as_secs_f64());
            let mut place = Place {
                budget: self,
                key: Some(key),
            };
            tokio::time::sleep(wait).await;
            place.key = None;
        }
    }

    /// Runs `call` after waiting for one `service`/`kind` token of `account`'s budget here,
    /// outside the SDK's timeouts: a long queue (a thousand revocations at once) then delays
    /// the call instead of timing out its attempts one after the other. The first matching
    /// request `call` sends uses that token; retries pay their own.
    pub async fn prepaid<F: Future>(
        &self,
        account: &str,
        service: &'static str,
        kind: CallKind,
        call: F,
    ) -> F::Output {
        self.acquire(account, service, kind).await;
        let token = Cell::new(Some((service, kind)));
        PREPAID.scope(token, call).await
    }

    fn refund(&self, key: &(String, String, CallKind)) {
        if let Ok(mut buckets) = self.buckets.lock() {
            if let Some(bucket) = buckets.get_mut(key) {
                bucket.tokens = (bucket.tokens + 1.0).min(bucket.limit.burst);
            }
        }
    }
}

tokio::task_local! {
    /// A token the task already waited for (see [`RequestBudget::prepaid`]).
    static PREPAID: Cell<Option<(&'static str, CallKind)>>;
}

/// Uses the task's prepaid token if it is for this service and kind.
fn take_prepaid(service: &str, kind: CallKind) -> bool {
    PREPAID
        .try_with(|token| match token.get() {
            Some((s, k)) if s == service && k == kind => {
                token.set(None);
                true
            }
            _ => false,
        })
        .unwrap_or(false)
}

/// A reserved place in a bucket's queue, handed back if the wait is abandoned.
struct Place<'a> {
    budget: &'a RequestBudget,
    key: Option<(String, String, CallKind)>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.budget.refund(&key);
        }
    }
}

/// Service and kind of a signed request: the service from the SigV4 credential scope, the
/// operation from `X-Amz-Target` (JSON protocols), the `Action` form field (query protocols)
/// or the method (REST).
pub fn classify_request(request: &HttpRequest) -> Option<(String, CallKind)> {
    let auth = request.headers().get("authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    let service = scope.split('/').nth(3)?.to_string();
    let operation = match request.headers().get("x-amz-target") {
        Some(target) => target.rsplit('.').next().map(str::to_string),
        None => request.body().bytes().and_then(form_action),
    };
    let kind = match operation {
        Some(op) => operation_kind(&op),
        None if request.method() == "GET" => CallKind::Read,
        None => CallKind::Write,
    };
    Some((service, kind))
}

fn form_action(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(str::to_string)
}

/// Reads are the operations whose names say they only look.
pub fn operation_kind(operation: &str) -> CallKind {
    const READS: &[&str] = &["Get", "List", "Describe", "Lookup", "Search"];
    if READS.iter().any(|prefix| operation.starts_with(prefix)) {
        CallKind::Read
    } else {
        CallKind::Write
    }
}

/// The real HTTP client with the budget in front, for the clients of one account.
#[derive(Debug, Clone)]
pub struct BudgetedHttpClient {
    pub inner: SharedHttpClient,
    pub budget: Arc<RequestBudget>,
    pub account: Arc<str>,
}

impl HttpClient for BudgetedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(BudgetedConnector {
            inner: self.inner.http_connector(settings, components),
            budget: self.budget.clone(),
            account: self.account.clone(),
        })
    }
}

#[derive(Debug)]
struct BudgetedConnector {
    inner: SharedHttpConnector,
    budget: Arc<RequestBudget>,
    account: Arc<str>,
}

impl HttpConnector for BudgetedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        let budget = self.budget.clone();
        let account = self.account.clone();
        HttpConnectorFuture::new(async move {
            if let Some((service, kind)) = classify_request(&request) {
                if !take_prepaid(&service, kind) {
                    budget.acquire(&account, &service, kind).await;
                }
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_a_tenth_second() -> Arc<RequestBudget> {
        let config = BudgetConfig::default().with_overrides("iam:write=10/1");
        RequestBudget::new(config.unwrap_or_default(), Metrics::new())
    }

    #[tokio::test]
    async fn abandoned_waits_hand_their_place_back() {
        let budget = one_a_tenth_second();
        budget.acquire("a", "iam", CallKind::Write).await;
        for _ in 0..5 {
            let wait = budget.acquire("a", "iam", CallKind::Write);
            let gave_up = tokio::time::timeout(Duration::from_millis(5), wait).await;
            assert!(gave_up.is_err(), "the bucket is empty: this caller waits");
        }
        let started = Instant::now();
        budget.acquire("a", "iam", CallKind::Write).await;
        let waited = started.elapsed();
        // Without the refunds this caller would queue behind five abandoned places (0.6 s).
        assert!(waited < Duration::from_millis(250), "waited {waited:?}");
    }

    #[tokio::test]
    async fn a_prepaid_token_serves_one_matching_request() {
        let budget = one_a_tenth_second();
        let taken = budget
            .prepaid("a", "iam", CallKind::Write, async {
                [
                    take_prepaid("ssm", CallKind::Write),
                    take_prepaid("iam", CallKind::Read),
                    take_prepaid("iam", CallKind::Write),
                    take_prepaid("iam", CallKind::Write),
                ]
            })
            .await;
        assert_eq!(taken, [false, false, true, false]);
        assert!(
            !take_prepaid("iam", CallKind::Write),
            "nothing outside the scope"
        );
    }

    #[test]
    fn bucket_allows_burst_then_paces_at_rate() {
        let start = Instant::now();
        let mut bucket = Bucket {
            limit: Limit {
                rate: 10.0,
                burst: 3.0,
            },
            tokens: 3.0,
            last: start,
        };
        for _ in 0..3 {
            assert_eq!(bucket.reserve(start), Duration::ZERO);
        }
        let wait = bucket.reserve(start).as_secs_f64();
        assert!((wait - 0.1).abs() < 1e-9, "{wait}");
        let wait = bucket.reserve(start).as_secs_f64();
        assert!(
            (wait - 0.2).abs() < 1e-9,
            "queued callers wait their turn: {wait}"
        );
        let later = start + Duration::from_secs(10);
        assert_eq!(
            bucket.reserve(later),
            Duration::ZERO,
            "refills up to the burst"
        );
    }

    #[test]
    fn overrides_parse_and_bad_ones_are_refused() {
        let config = BudgetConfig::default().with_overrides("iam:write=20/40, ec2:read=7");
        let config = config.unwrap_or_default();
        assert_eq!(
            config.limit("iam", CallKind::Write),
            Some(Limit {
                rate: 20.0,
                burst: 40.0
            })
        );
        assert_eq!(
            config.limit("ec2", CallKind::Read),
            Some(Limit {
                rate: 7.0,
                burst: 7.0
            })
        );
        for bad in [
            "iam=1",
            "iam:write",
            "iam:delete=1",
            "iam:write=0",
            "iam:write=x/2",
        ] {
            assert!(
                BudgetConfig::default().with_overrides(bad).is_err(),
                "{bad}"
            );
        }
    }

    fn signed(service: &str, body: &str, target: Option<&str>) -> HttpRequest {
        let mut request = HttpRequest::new(aws_smithy_types::body::SdkBody::from(body));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/ap-northeast-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=abc"
        );
        request.headers_mut().insert("authorization", auth);
        if let Some(target) = target {
            request
                .headers_mut()
                .insert("x-amz-target", target.to_string());
        }
        request
    }

    #[test]
    fn signed_requests_are_sorted_by_service_and_kind() {
        let iam = signed("iam", "Action=AddUserToGroup&GroupName=G&UserName=u", None);
        assert_eq!(
            classify_request(&iam),
            Some(("iam".to_string(), CallKind::Write))
        );
        let ssm = signed("ssm", "{}", Some("AmazonSSM.GetAutomationExecution"));
        assert_eq!(
            classify_request(&ssm),
            Some(("ssm".to_string(), CallKind::Read))
        );
        let unsigned = HttpRequest::new(aws_smithy_types::body::SdkBody::from(""));
        assert_eq!(classify_request(&unsigned), None);
    }

    #[test]
    fn operation_names_decide_read_or_write() {
        assert_eq!(operation_kind("GetGroup"), CallKind::Read);
        assert_eq!(operation_kind("DescribeListeners"), CallKind::Read);
        assert_eq!(operation_kind("AddUserToGroup"), CallKind::Write);
        assert_eq!(
            form_action(b"Action=RemoveUserFromGroup&Version=2010-05-08").as_deref(),
            Some("RemoveUserFromGroup")
        );
    }
}
