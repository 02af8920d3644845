//! The operator's Prometheus metrics: one registry, prefix `prodaccess`.
//!
//! Besides the usual reconcile counters this tracks what users of an access controller care
//! about: AWS calls by service, operation and outcome (throttles included), grants by phase,
//! how long after a grant's expiry its revocation landed, and how many routes are ready.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    pub service: String,
    pub operation: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub service: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub aws_calls: Family<AwsCallLabels, Counter>,
    pub grants: Family<PhaseLabels, Gauge>,
    pub revoke_lag: Histogram,
    pub routes_ready: Gauge,
    pub leader: Gauge,
    pub budget_calls: Family<BudgetLabels, Counter>,
    pub budget_wait: Family<BudgetLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("prodaccess");
        let reconciles = Family::<KindLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error category",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS API call attempts by service, operation and outcome",
            aws_calls.clone(),
        );
        let grants = Family::<PhaseLabels, Gauge>::default();
        registry.register("grants", "Grants by phase", grants.clone());
        let revoke_lag = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "revoke_lag_seconds",
            "Delay from a grant's expiry to the user's removal from the group",
            revoke_lag.clone(),
        );
        let routes_ready = Gauge::default();
        registry.register(
            "routes_ready",
            "Routes whose every hop is ready",
            routes_ready.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let budget_calls = Family::<BudgetLabels, Counter>::default();
        registry.register(
            "aws_budget_requests",
            "AWS requests that passed the request budget, by service and read or write",
            budget_calls.clone(),
        );
        let budget_wait = Family::<BudgetLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 12))
        });
        registry.register(
            "aws_budget_wait_seconds",
            "Time AWS requests waited for the request budget",
            budget_wait.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            aws_calls,
            grants,
            revoke_lag,
            routes_ready,
            leader,
            budget_calls,
            budget_wait,
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail: fmt::Write for String is infallible.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
