//! An SDK interceptor that counts every AWS call attempt by service, operation and outcome.
//!
//! It sits on the shared SDK config, so every client of every account reports through it and
//! no call site has to remember to.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::sync::Arc;

use crate::metrics::{AwsCallLabels, Metrics};

/// Records one metric sample per attempt.
#[derive(Debug, Clone)]
pub struct CallRecorder {
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl CallRecorder {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

/// Outcome label of one attempt, from the response alone (the error body is not parsed here).
fn outcome(status: Option<u16>, error_type: Option<&str>) -> &'static str {
    let throttled = error_type.is_some_and(|t| t.contains("Throttl"));
    match status {
        None => "transport_error",
        Some(429) => "throttled",
        Some(_) if throttled => "throttled",
        Some(s) if s < 300 => "ok",
        Some(503) => "throttled_or_unavailable",
        Some(s) if s >= 500 => "server_error",
        Some(_) => "client_error",
    }
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "prodaccess.CallRecorder"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let response = context.response();
        let status = response.map(|r| r.status().as_u16());
        let error_type = response.and_then(|r| r.headers().get("x-amzn-ErrorType"));
        let labels = AwsCallLabels {
            service: meta.service().to_string(),
            operation: meta.name().to_string(),
            outcome: outcome(status, error_type),
        };
        self.metrics.aws_calls.get_or_create(&labels).inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::outcome;

    #[test]
    fn outcomes_distinguish_throttles_from_failures() {
        assert_eq!(outcome(Some(200), None), "ok");
        assert_eq!(
            outcome(Some(400), Some("ThrottlingException:")),
            "throttled"
        );
        assert_eq!(
            outcome(Some(400), Some("ValidationException")),
            "client_error"
        );
        assert_eq!(outcome(Some(500), None), "server_error");
        assert_eq!(outcome(None, None), "transport_error");
    }
}
