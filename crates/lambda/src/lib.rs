//! rag-lambda: serves the HTTP router under the AWS Lambda runtime, behind
//! API Gateway (buffered) or a Function URL (response streaming), and the
//! ingest queue's SQS events, which one binary tells apart by the event.
//!
//! It knows the router only as an axum `Router` and the ingest worker
//! only through core's job traits: no service logic, no backend and no
//! AWS SDK.

mod emf;
mod sqs;

use axum::Router;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Request, RequestExt};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tower::util::MapRequest;
use tower::{Service, ServiceBuilder};

pub use emf::EmfMetrics;
pub use sqs::{IngestWorker, QueueNames, is_sqs_event};

/// How responses leave the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeMode {
    /// API Gateway proxy integrations: the whole response at once.
    Buffered,
    /// A Function URL with `InvokeMode: RESPONSE_STREAM`: bytes reach the
    /// client as they are written, which `/chat/stream` needs.
    Streaming,
}

/// API Gateway puts a named stage in front of the path (`/Prod/health`),
/// and lambda_http keeps it; the routes know nothing of stages, so it is
/// removed here. `$default` stages add no prefix.
pub fn strip_stage(mut request: Request) -> Request {
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.clone(),
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") else {
        return request;
    };
    let prefix = format!("/{stage}");
    let uri = request.uri();
    let Some(rest) = uri.path().strip_prefix(&prefix) else {
        return request;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        // `/Production` under a stage called `Prod` is a real path.
        return request;
    }
    let path = if rest.is_empty() { "/" } else { rest };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return request,
    }
    if let Ok(new_uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = new_uri;
    }
    request
}

/// The X-Ray header of the invocation (Lambda hands it to the runtime, not
/// the event), put on the request when the event brought none, so the
/// request's span joins the function's trace.
pub fn carry_trace_header(mut request: Request) -> Request {
    const XRAY: &str = "x-amzn-trace-id";
    if request.headers().contains_key(XRAY) {
        return request;
    }
    let trace = request
        .lambda_context_ref()
        .and_then(|context| context.xray_trace_id.as_deref())
        .and_then(|id| http::HeaderValue::from_str(id).ok());
    if let Some(value) = trace {
        request.headers_mut().insert(XRAY, value);
    }
    request
}

fn prepare(request: Request) -> Request {
    carry_trace_header(strip_stage(request))
}

/// The router as the Lambda adapter calls it.
pub fn handler(router: Router) -> MapRequest<Router, fn(Request) -> Request> {
    ServiceBuilder::new()
        .map_request(prepare as fn(Request) -> Request)
        .service(router)
}

/// Runs the Lambda runtime loop until the function is shut down. Buffered,
/// an event is either an SQS batch, for `worker`, or an HTTP request; a
/// streaming function (a Function URL) only ever receives requests.
pub async fn run(
    router: Router,
    mode: InvokeMode,
    worker: Option<IngestWorker>,
) -> Result<(), lambda_http::Error> {
    tracing::info!(
        ?mode,
        ingest_worker = worker.is_some(),
        "serving under the Lambda runtime"
    );
    match mode {
        InvokeMode::Buffered => {
            let http = lambda_http::Adapter::from(handler(router));
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
                let mut http = http.clone();
                let worker = worker.clone();
                async move {
                    let LambdaEvent { payload, context } = event;
                    if is_sqs_event(&payload) {
                        let Some(worker) = worker else {
                            return Err(lambda_http::Error::from(
                                "this function received SQS events, but INGEST_QUEUE_URL is not set",
                            ));
                        };
                        let batch = serde_json::from_value(payload)?;
                        return Ok(serde_json::to_value(worker.handle_batch(batch).await)?);
                    }
                    let request: LambdaRequest = serde_json::from_value(payload)?;
                    let response = http.call(LambdaEvent::new(request, context)).await?;
                    Ok(serde_json::to_value(response)?)
                }
            }))
            .await
        }
        InvokeMode::Streaming => lambda_http::run_with_streaming_response(handler(router)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;

    fn request(path: &str, stage: &str) -> Request {
        let mut context = ApiGatewayProxyRequestContext::default();
        context.stage = Some(stage.to_string());
        http::Request::builder()
            .uri(path)
            .body(lambda_http::Body::Empty)
            .unwrap()
            .with_request_context(RequestContext::ApiGatewayV1(context))
    }

    #[test]
    fn the_invocations_xray_header_reaches_the_request() {
        let mut context = lambda_runtime::Context::default();
        context.xray_trace_id = Some(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        );
        let bare = http::Request::builder()
            .uri("/health")
            .body(lambda_http::Body::Empty)
            .unwrap()
            .with_lambda_context(context.clone());
        let carried = carry_trace_header(bare);
        assert_eq!(
            carried.headers()["x-amzn-trace-id"],
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
        // The event's own header (API Gateway's, with its own segment) wins.
        let own = http::Request::builder()
            .uri("/health")
            .header(
                "x-amzn-trace-id",
                "Root=1-00000001-000000000000000000000001;Parent=0000000000000001",
            )
            .body(lambda_http::Body::Empty)
            .unwrap()
            .with_lambda_context(context);
        assert!(
            carry_trace_header(own).headers()["x-amzn-trace-id"]
                .to_str()
                .unwrap()
                .ends_with("Parent=0000000000000001")
        );
    }

    #[test]
    fn removes_only_a_whole_stage_segment() {
        let cases = [
            ("/Prod/health", "Prod", "/health"),
            ("/Prod", "Prod", "/"),
            ("/Prod/documents?limit=5", "Prod", "/documents?limit=5"),
            ("/Production/health", "Prod", "/Production/health"),
            ("/health", "$default", "/health"),
            ("/health", "Prod", "/health"),
        ];
        for (path, stage, expected) in cases {
            let stripped = strip_stage(request(path, stage));
            assert_eq!(stripped.uri().to_string(), expected, "{path} under {stage}");
        }
    }
}
