//! Classifies AWS SDK errors once, so every adapter maps them the same way.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use rag_core::error::{BoxError, ErrorClass};

/// What went wrong with one SDK call, with the cause kept for logs.
#[derive(Debug)]
pub struct Classified {
    pub class: ErrorClass,
    pub throttled: bool,
    pub code: Option<String>,
    pub message: String,
    pub cause: BoxError,
}

/// Error codes AWS services use for "slow down".
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "ServiceQuotaExceededException",
];

/// Error codes for faults that a later attempt may not meet.
const TRANSIENT_CODES: &[&str] = &[
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalServerException",
    "InternalServerError",
    "InternalFailure",
    "ModelTimeoutException",
    "ModelNotReadyException",
    "RequestTimeoutException",
    "RequestTimeout",
    "TransactionInProgressException",
    "BadGatewayException",
];

/// Whether an error code names a fault worth another attempt: the one list
/// every adapter's retry consults, the same one `classify` uses.
pub fn retryable_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| THROTTLING_CODES.contains(&c) || TRANSIENT_CODES.contains(&c))
}

/// The retry decision of `RetryPolicy::run` for a call whose error carries
/// an AWS error code: another attempt, with no delay hint, when the code is
/// a throttling or transient one.
pub fn retry_on_code<E: ProvideErrorMetadata>(error: &E) -> Option<Option<std::time::Duration>> {
    retryable_code(error.code()).then_some(None)
}

const NOT_FOUND_CODES: &[&str] = &[
    "NotFoundException",
    "NoSuchKey",
    "NoSuchBucket",
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

/// The HTTP status of a raw response, where there is one (event-stream
/// messages have none).
pub trait RawStatus {
    fn status(&self) -> Option<u16>;
}

impl RawStatus for HttpResponse {
    fn status(&self) -> Option<u16> {
        Some(HttpResponse::status(self).as_u16())
    }
}

impl RawStatus for aws_smithy_types::event_stream::RawMessage {
    fn status(&self) -> Option<u16> {
        None
    }
}

pub fn classify<E, R>(error: SdkError<E, R>) -> Classified
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: RawStatus + std::fmt::Debug + Send + Sync + 'static,
{
    let (class, code, message, status) = match &error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let status = service.raw().status();
            (
                None,
                err.code().map(String::from),
                err.message().unwrap_or_default().to_string(),
                status,
            )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (Some(ErrorClass::Transient), None, error.to_string(), None)
        }
        _ => (Some(ErrorClass::Permanent), None, error.to_string(), None),
    };
    let throttled = code
        .as_deref()
        .is_some_and(|c| THROTTLING_CODES.contains(&c))
        || status == Some(429);
    let class = class.unwrap_or_else(|| match code.as_deref() {
        _ if throttled => ErrorClass::Transient,
        Some(c) if TRANSIENT_CODES.contains(&c) => ErrorClass::Transient,
        Some(c) if NOT_FOUND_CODES.contains(&c) => ErrorClass::NotFound,
        Some("ValidationException" | "InvalidRequest" | "InvalidArgument") => ErrorClass::Invalid,
        _ => match status {
            Some(s) if s >= 500 => ErrorClass::Transient,
            Some(404) => ErrorClass::NotFound,
            _ => ErrorClass::Permanent,
        },
    });
    let message = if message.is_empty() {
        code.clone()
            .unwrap_or_else(|| "AWS call failed".to_string())
    } else {
        message
    };
    Classified {
        class,
        throttled,
        code,
        message,
        // SDK errors display only their outer layer; keep the whole chain.
        cause: Box::new(std::io::Error::other(
            DisplayErrorContext(error).to_string(),
        )),
    }
}

impl Classified {
    pub fn into_store_error(self, what: impl FnOnce() -> String) -> rag_core::StoreError {
        use rag_core::StoreError;
        match self.class {
            ErrorClass::NotFound => StoreError::NotFound { what: what() },
            ErrorClass::Invalid => StoreError::Invalid(self.message),
            ErrorClass::Transient => StoreError::Transient(self.cause),
            ErrorClass::Permanent => StoreError::Permanent(self.cause),
        }
    }
}
