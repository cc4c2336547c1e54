//! Every request's identity and record: an `x-request-id` (the caller's,
//! when it is a plain token, else a new one) returned on every response,
//! errors and refusals included; a `request` span that every log line of
//! the request is written in (and that becomes the trace's server span);
//! one access log line with the route, status, tenant and latency; and one
//! [`MetricEvent::Request`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use rag_core::telemetry::{MetricEvent, Metrics};
use tracing::Instrument;
use tracing::field::Empty;

use crate::error::ErrorCode;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a caller.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Makes a request's span part of the trace its caller started (W3C
/// `traceparent`, the X-Ray header). The binary sets one when it exports
/// traces; the API knows no tracing backend.
pub type TraceLink = Arc<dyn Fn(&Request, &tracing::Span) + Send + Sync>;

/// What the layer reports to.
#[derive(Clone, Default)]
pub struct Observer {
    pub metrics: Metrics,
    pub trace_link: Option<TraceLink>,
}

/// The request's id, in its extensions for handlers that report it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The tenant a request acted for, put on the response by the auth layer
/// for the access log line (the span has it too).
#[derive(Debug, Clone)]
pub struct ResponseTenant(pub String);

/// The caller's id if it is safe to log and echo: letters, digits and
/// `-_.:/+=@`, at most 128 of them. Anything else is replaced, not refused:
/// a bad id must never cost a request.
fn accepted_id(value: Option<&HeaderValue>) -> Option<String> {
    let value = value?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b));
    plain.then(|| value.to_string())
}

/// Methods become labels; an unknown one is `OTHER`, so a client cannot
/// grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

pub async fn observe(
    State(observer): State<Observer>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = accepted_id(request.headers().get(&REQUEST_ID_HEADER))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = method_label(request.method());
    // The matched route, never the path: ids in paths must not become
    // labels, and an unknown path is one label however many are probed.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        request_id = id.as_str(),
        tenant = Empty,
        use_case = Empty,
        http.request.method = method,
        http.route = route.as_str(),
        http.response.status_code = Empty,
    );
    if let Some(link) = &observer.trace_link {
        link(&request, &span);
    }
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    let status = response.status();
    // As i64: OpenTelemetry integers are signed, and an unsigned value
    // would be exported as a string.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let error_code = response
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.0.as_str());
    let tenant = response
        .extensions()
        .get::<ResponseTenant>()
        .map_or("-", |t| t.0.as_str());
    let latency_ms = latency.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        // Load balancers ask for /health every few seconds.
        if route == "/health" && status.is_success() {
            tracing::debug!(
                request_id = id.as_str(),
                method,
                route = route.as_str(),
                status = status.as_u16(),
                tenant,
                latency_ms,
                "request"
            );
        } else {
            tracing::info!(
                request_id = id.as_str(),
                method,
                route = route.as_str(),
                status = status.as_u16(),
                error_code,
                tenant,
                latency_ms,
                "request"
            );
        }
    });
    observer.metrics.record(&MetricEvent::Request {
        method,
        route: &route,
        status: status.as_u16(),
        error_code,
        latency,
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_kept_and_others_replaced() {
        let ok = HeaderValue::from_static("req-42_a.b:c/d+e=f@g");
        assert_eq!(
            accepted_id(Some(&ok)).as_deref(),
            Some("req-42_a.b:c/d+e=f@g")
        );
        for bad in ["", "has space", "quote\"", "tab\t", &"x".repeat(129)] {
            let value = HeaderValue::from_str(bad).unwrap();
            assert_eq!(accepted_id(Some(&value)), None, "{bad:?}");
        }
        assert_eq!(accepted_id(None), None);
    }
}
