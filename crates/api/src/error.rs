//! Every error the API returns, as `{"error": {"code", "message"}}` with the
//! right status. One exhaustive match decides the status of each error, so
//! a new variant anywhere forces a decision here; streamed failures go
//! through the same match. 5xx bodies never carry internals; the cause is
//! logged once, by `log_server_errors` (or by the stream), never here.

use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rag_core::routing::RouteError;
use rag_core::{EmbedError, FetchError, ModelError, ParseError, RagError, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `document_not_found`.
    pub code: String,
    pub message: String,
}

#[derive(Debug)]
pub enum ApiError {
    Rag(RagError),
    /// Well-formed JSON of the wrong shape.
    InvalidBody(String),
    MalformedJson(String),
    UnsupportedMediaType(String),
    PayloadTooLarge,
    InvalidParameter(String),
    RouteNotFound,
    MethodNotAllowed,
    /// The `Host` is not a name this server answers to (DNS rebinding).
    HostNotAllowed,
    /// A state-changing request from another site's page.
    OriginNotAllowed,
    /// No credential, or one that does not prove a principal.
    Unauthenticated(String),
    /// A principal whose role does not include what the route needs.
    Forbidden(String),
    /// Over `RATE_LIMIT_PER_MINUTE`; try again after this many seconds.
    RateLimited {
        retry_after_secs: u64,
    },
    /// No use case, or a use case or model the caller may not use.
    Route(RouteError),
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        ApiError::Route(e)
    }
}

impl From<RagError> for ApiError {
    fn from(e: RagError) -> Self {
        ApiError::Rag(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected a request with Content-Type: application/json".to_string(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge
            }
            other => ApiError::MalformedJson(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::InvalidBody(format!(
                "the body could not be read: {}",
                rejection.body_text()
            ))
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidParameter(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::InvalidParameter(rejection.body_text())
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(rejection: MultipartRejection) -> Self {
        ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: multipart/form-data with a boundary ({})",
            rejection.body_text()
        ))
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::InvalidBody(format!("invalid multipart body: {}", e.body_text()))
        }
    }
}

/// A status, a code and a message that is safe to show.
struct Mapped {
    status: StatusCode,
    code: String,
    message: String,
    retry_after: Option<u64>,
}

impl Mapped {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after: None,
        }
    }

    fn hidden(status: StatusCode, code: &str) -> Self {
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            "a backend is temporarily unavailable; retry shortly"
        } else {
            "internal error"
        };
        Self::new(status, code, message)
    }
}

fn map_store(e: &StoreError) -> Mapped {
    match e {
        StoreError::NotFound { .. } => {
            Mapped::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        StoreError::Conflict(_) => Mapped::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        StoreError::Invalid(m) => {
            Mapped::new(StatusCode::BAD_REQUEST, "invalid_request", m.clone())
        }
        StoreError::Transient(_) => {
            Mapped::hidden(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
        }
        StoreError::Permanent(_) => {
            Mapped::hidden(StatusCode::INTERNAL_SERVER_ERROR, "store_error")
        }
    }
}

fn map_embed(e: &EmbedError) -> Mapped {
    match e {
        EmbedError::Invalid(m) => {
            Mapped::new(StatusCode::BAD_REQUEST, "invalid_request", m.clone())
        }
        EmbedError::Throttled { retry_after } => Mapped {
            retry_after: retry_after.map(|d| d.as_secs().max(1)),
            ..Mapped::hidden(StatusCode::SERVICE_UNAVAILABLE, "embedding_throttled")
        },
        EmbedError::Transient(_) => {
            Mapped::hidden(StatusCode::SERVICE_UNAVAILABLE, "embedding_unavailable")
        }
        EmbedError::Permanent(_) => {
            Mapped::hidden(StatusCode::INTERNAL_SERVER_ERROR, "embedding_error")
        }
    }
}

fn map_model(e: &ModelError) -> Mapped {
    match e {
        ModelError::Invalid(m) => {
            Mapped::new(StatusCode::BAD_REQUEST, "invalid_model_request", m.clone())
        }
        ModelError::ContextTooLong => Mapped::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "context_too_long",
            e.to_string(),
        ),
        ModelError::Throttled { retry_after } => Mapped {
            retry_after: retry_after.map(|d| d.as_secs().max(1)),
            ..Mapped::hidden(StatusCode::SERVICE_UNAVAILABLE, "model_throttled")
        },
        ModelError::Transient(_) => {
            Mapped::hidden(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable")
        }
        ModelError::Permanent(_) => {
            Mapped::hidden(StatusCode::INTERNAL_SERVER_ERROR, "model_error")
        }
    }
}

fn map_fetch(e: &FetchError) -> Mapped {
    let message = e.to_string();
    match e {
        FetchError::InvalidUrl(_) => Mapped::new(StatusCode::BAD_REQUEST, "invalid_url", message),
        FetchError::Blocked { .. } => {
            Mapped::new(StatusCode::BAD_REQUEST, "url_not_allowed", message)
        }
        FetchError::TooLarge { .. } => {
            Mapped::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
        }
        FetchError::TooManyRedirects => {
            Mapped::new(StatusCode::BAD_REQUEST, "too_many_redirects", message)
        }
        FetchError::Status { .. } => {
            Mapped::new(StatusCode::BAD_GATEWAY, "url_fetch_failed", message)
        }
        FetchError::Timeout => {
            Mapped::new(StatusCode::GATEWAY_TIMEOUT, "url_fetch_timeout", message)
        }
        FetchError::Network(_) => Mapped::new(
            StatusCode::BAD_GATEWAY,
            "url_fetch_failed",
            "could not fetch the URL",
        ),
    }
}

fn map_parse(e: &ParseError) -> Mapped {
    let message = e.to_string();
    match e {
        ParseError::UnsupportedContentType(_) => Mapped::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            message,
        ),
        ParseError::Empty => {
            Mapped::new(StatusCode::UNPROCESSABLE_ENTITY, "empty_document", message)
        }
        ParseError::Malformed { .. } => Mapped::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unparseable_document",
            message,
        ),
        ParseError::TooComplex(_) => Mapped::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "document_too_complex",
            message,
        ),
        ParseError::ExpansionLimit(_) => Mapped::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "document_too_large",
            message,
        ),
        ParseError::Timeout { .. } => {
            Mapped::new(StatusCode::UNPROCESSABLE_ENTITY, "parse_timeout", message)
        }
        ParseError::Internal(_) => {
            Mapped::hidden(StatusCode::INTERNAL_SERVER_ERROR, "parser_error")
        }
    }
}

impl ApiError {
    fn mapped(&self) -> Mapped {
        match self {
            ApiError::Rag(e) => match e {
                RagError::InvalidInput(m) => {
                    Mapped::new(StatusCode::BAD_REQUEST, "invalid_request", m.clone())
                }
                RagError::NotFound { what, .. } => Mapped::new(
                    StatusCode::NOT_FOUND,
                    &format!("{what}_not_found"),
                    e.to_string(),
                ),
                RagError::PayloadTooLarge { .. } => Mapped::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    e.to_string(),
                ),
                RagError::TooManyChunks { .. } => Mapped::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "too_many_chunks",
                    e.to_string(),
                ),
                RagError::Parse(p) => map_parse(p),
                RagError::Fetch(f) => map_fetch(f),
                RagError::Store(s) => map_store(s),
                RagError::Embed(x) => map_embed(x),
                RagError::Model(m) => map_model(m),
                RagError::NotApplicable(m) => {
                    Mapped::new(StatusCode::BAD_REQUEST, "invalid_parameter", m.clone())
                }
                RagError::Unavailable(m) => {
                    Mapped::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m.clone())
                }
                RagError::QuotaExceeded {
                    message,
                    retry_after_secs,
                } => Mapped {
                    retry_after: Some(*retry_after_secs),
                    ..Mapped::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "quota_exceeded",
                        message.clone(),
                    )
                },
            },
            ApiError::InvalidBody(m) => Mapped::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                m.clone(),
            ),
            ApiError::MalformedJson(m) => {
                Mapped::new(StatusCode::BAD_REQUEST, "malformed_json", m.clone())
            }
            ApiError::UnsupportedMediaType(m) => Mapped::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m.clone(),
            ),
            ApiError::PayloadTooLarge => Mapped::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the server accepts",
            ),
            ApiError::InvalidParameter(m) => {
                Mapped::new(StatusCode::BAD_REQUEST, "invalid_parameter", m.clone())
            }
            ApiError::RouteNotFound => {
                Mapped::new(StatusCode::NOT_FOUND, "route_not_found", "no such endpoint")
            }
            ApiError::MethodNotAllowed => Mapped::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method",
            ),
            ApiError::HostNotAllowed => Mapped::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                "this server does not answer to that Host; add the name to RAG_AGENT_ALLOWED_HOSTS",
            ),
            ApiError::OriginNotAllowed => Mapped::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "cross-origin requests that change data are refused; add the origin to CORS_ALLOWED_ORIGINS",
            ),
            ApiError::Unauthenticated(m) => {
                Mapped::new(StatusCode::UNAUTHORIZED, "unauthenticated", m.clone())
            }
            ApiError::Forbidden(m) => Mapped::new(StatusCode::FORBIDDEN, "forbidden", m.clone()),
            ApiError::Route(e) => {
                let (status, code) = match e {
                    RouteError::NoUseCase => (StatusCode::FORBIDDEN, "use_case_required"),
                    RouteError::UseCaseNotAllowed(_) => {
                        (StatusCode::FORBIDDEN, "use_case_not_allowed")
                    }
                    RouteError::ModelNotAllowed { .. } => {
                        (StatusCode::FORBIDDEN, "model_not_allowed")
                    }
                    RouteError::InvalidUseCase(_) => (StatusCode::BAD_REQUEST, "invalid_parameter"),
                };
                Mapped::new(status, code, e.to_string())
            }
            ApiError::RateLimited { retry_after_secs } => Mapped {
                retry_after: Some(*retry_after_secs),
                ..Mapped::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "too many requests for this credential; retry after {retry_after_secs} s"
                    ),
                )
            },
        }
    }

    /// The code and message a stream reports in its `error` event.
    pub fn code_and_message(&self) -> (String, String) {
        let m = self.mapped();
        (m.code, m.message)
    }

    /// Whether this is the server's fault, so its cause must be logged.
    pub fn is_server_error(&self) -> bool {
        self.mapped().status.is_server_error()
    }
}

/// The `error.code` of an error response, for the request's log line
/// and metrics.
#[derive(Debug, Clone)]
pub struct ErrorCode(pub String);

/// The hidden cause of a 5xx, carried on the response to the one place
/// that logs it.
#[derive(Clone)]
struct ServerErrorCause(String);

/// Logs the cause of every 5xx answer once, with the request it failed.
pub async fn log_server_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    if let Some(ServerErrorCause(cause)) = response.extensions_mut().remove::<ServerErrorCause>() {
        tracing::error!(%method, %path, status = response.status().as_u16(), %cause, "request failed");
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mapped = self.mapped();
        let cause = mapped
            .status
            .is_server_error()
            .then(|| ServerErrorCause(format!("{self:?}")));
        let body_code = mapped.code.clone();
        let body = ErrorBody {
            error: ErrorDetail {
                code: mapped.code,
                message: mapped.message,
            },
        };
        let mut response = (mapped.status, Json(body)).into_response();
        if let Some(secs) = mapped.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if mapped.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(cause) = cause {
            response.extensions_mut().insert(cause);
        }
        response.extensions_mut().insert(ErrorCode(body_code));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_hide_their_cause() {
        let e = ApiError::Rag(RagError::Store(StoreError::permanent(
            "disk /secret/path failed",
        )));
        let (code, message) = e.code_and_message();
        assert_eq!(code, "store_error");
        assert!(!message.contains("secret"));
        assert_eq!(e.mapped().status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn not_found_names_the_thing() {
        let e = ApiError::Rag(RagError::NotFound {
            what: "document",
            id: "x".into(),
        });
        assert_eq!(e.code_and_message().0, "document_not_found");
        assert_eq!(e.mapped().status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn throttling_sets_retry_after() {
        let e = ApiError::Rag(RagError::Model(ModelError::Throttled {
            retry_after: Some(std::time::Duration::from_secs(3)),
        }));
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
