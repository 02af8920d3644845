//! Sorting AWS SDK errors into the few classes that decide what happens next.
//!
//! Every controller step wraps SDK errors in its own error enum, but retry, Event reasons and
//! metrics all key on the class computed here, once, from the error code and HTTP status.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What kind of failure an AWS call had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Credentials missing, expired, or not allowed: retry slowly and warn.
    Auth,
    /// The resource does not exist.
    NotFound,
    /// Rate limited or the service asked to slow down: retry soon with backoff.
    Throttling,
    /// The request never got an answer (timeout, reset, DNS): retry soon.
    Connectivity,
    /// The request itself is wrong (bad parameter, limit, wrong state): waits for an edit.
    InvalidRequest,
    /// The resource already exists or is in a conflicting state.
    Conflict,
    /// AWS failed (5xx): retry soon.
    Service,
}

impl ErrorClass {
    /// Low-cardinality label for metrics and Event reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "AwsAuth",
            Self::NotFound => "AwsNotFound",
            Self::Throttling => "AwsThrottling",
            Self::Connectivity => "AwsConnectivity",
            Self::InvalidRequest => "AwsInvalidRequest",
            Self::Conflict => "AwsConflict",
            Self::Service => "AwsService",
        }
    }

    /// Whether retrying the same call later may succeed without a spec change.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Throttling | Self::Connectivity | Self::Service | Self::Conflict
        )
    }
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "PriorRequestNotComplete",
    "SlowDown",
    "EC2ThrottledException",
    "BandwidthLimitExceeded",
];

const AUTH_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "RegionDisabledException",
];

/// Classifies an error code (as AWS spells it) and HTTP status.
pub fn classify_code(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    if let Some(code) = code {
        if THROTTLING_CODES.contains(&code) {
            return ErrorClass::Throttling;
        }
        if AUTH_CODES.contains(&code) {
            return ErrorClass::Auth;
        }
        if is_not_found_code(code) {
            return ErrorClass::NotFound;
        }
        if code.contains("Duplicate") || code.contains("AlreadyExists") || code == "Conflict" {
            return ErrorClass::Conflict;
        }
    }
    match status {
        Some(429) => ErrorClass::Throttling,
        Some(401 | 403) => ErrorClass::Auth,
        Some(404) => ErrorClass::NotFound,
        Some(409) => ErrorClass::Conflict,
        Some(s) if s >= 500 => ErrorClass::Service,
        _ => ErrorClass::InvalidRequest,
    }
}

/// Whether an error code means "the thing is not there". Cleanup treats these as success.
pub fn is_not_found_code(code: &str) -> bool {
    code == "NoSuchEntity"
        || code == "ResourceNotFoundException"
        || code.ends_with("NotFound")
        || code.ends_with(".NotFound")
        || code.ends_with("NotFoundException")
        || code == "NoSuchHostedZone"
        || code == "InvalidChangeBatch.NotFound"
        || code == "AutomationExecutionNotFoundException"
        || code == "InvalidVpcEndpointId.NotFound"
}

/// Classification of any SDK error.
pub fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> ErrorClass {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => ErrorClass::Connectivity,
        SdkError::ResponseError(_) => ErrorClass::Service,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            classify_code(service.err().code(), Some(status))
        }
        SdkError::ConstructionFailure(_) => ErrorClass::InvalidRequest,
        _ => ErrorClass::Service,
    }
}

/// The AWS error code of an SDK error, if the service sent one.
pub fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// The AWS error message of an SDK error, or the error's own description.
pub fn error_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown");
            let message = service.err().message().unwrap_or("");
            format!("{code}: {message}")
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_throttling_code_is_throttling() {
        for code in ["Throttling", "ThrottlingException", "RequestLimitExceeded"] {
            assert_eq!(
                classify_code(Some(code), Some(400)),
                ErrorClass::Throttling,
                "{code}"
            );
        }
        assert_eq!(
            classify_code(Some("PriorRequestNotComplete"), Some(400)),
            ErrorClass::Throttling
        );
        assert_eq!(classify_code(None, Some(503)), ErrorClass::Service);
        assert_eq!(classify_code(None, Some(429)), ErrorClass::Throttling);
    }

    #[test]
    fn missing_things_are_not_found_across_services() {
        for code in [
            "NoSuchEntity",
            "LoadBalancerNotFound",
            "TargetGroupNotFound",
            "ListenerNotFound",
            "InvalidVpcEndpointId.NotFound",
            "InvalidVpcEndpointServiceId.NotFound",
            "NoSuchHostedZone",
            "AutomationExecutionNotFoundException",
        ] {
            assert_eq!(
                classify_code(Some(code), Some(400)),
                ErrorClass::NotFound,
                "{code}"
            );
        }
    }

    #[test]
    fn auth_and_conflicts_are_recognised() {
        assert_eq!(
            classify_code(Some("AccessDenied"), Some(403)),
            ErrorClass::Auth
        );
        assert_eq!(
            classify_code(Some("ExpiredToken"), Some(400)),
            ErrorClass::Auth
        );
        assert_eq!(
            classify_code(Some("DuplicateLoadBalancerName"), Some(400)),
            ErrorClass::Conflict
        );
        assert_eq!(
            classify_code(Some("ValidationError"), Some(400)),
            ErrorClass::InvalidRequest
        );
        assert!(ErrorClass::Throttling.is_transient());
        assert!(!ErrorClass::InvalidRequest.is_transient());
    }
}
