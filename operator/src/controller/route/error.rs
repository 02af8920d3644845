//! One failed AWS call, with its class already computed, so the step enums can name the
//! action and still answer "retry or wait for an edit?".

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::aws::{classify, error_code, error_message, ErrorClass};

/// An AWS SDK error reduced to what the controller decides on.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AwsCallError {
    pub class: ErrorClass,
    pub code: Option<String>,
    message: String,
}

impl<E> From<SdkError<E, HttpResponse>> for AwsCallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn from(err: SdkError<E, HttpResponse>) -> Self {
        Self {
            class: classify(&err),
            code: error_code(&err).map(str::to_string),
            message: error_message(&err),
        }
    }
}

impl AwsCallError {
    /// Whether AWS said the thing is not there.
    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// Whether the error code is one of `codes`.
    pub fn is_code(&self, codes: &[&str]) -> bool {
        self.code
            .as_deref()
            .is_some_and(|code| codes.contains(&code))
    }
}

/// The class of the first [`AwsCallError`] in an error's source chain.
pub fn class_of(err: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(call) = err.downcast_ref::<AwsCallError>() {
            return Some(call.class);
        }
        current = err.source();
    }
    None
}

/// A call's output, or `None` where AWS says the thing is not there; any other failure becomes
/// the step's own error through `fail`. Observe reads "not there" as absent and cleanup reads it
/// as already done, so what counts as "not there" is decided here once for both.
pub fn none_if_not_found<T, E>(
    result: Result<T, impl Into<AwsCallError>>,
    fail: impl FnOnce(AwsCallError) -> E,
) -> Result<Option<T>, E> {
    match result.map_err(Into::into) {
        Ok(out) => Ok(Some(out)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(fail(err)),
    }
}
