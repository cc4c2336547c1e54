//! OpenTelemetry traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the spans the service
//! opens with `tracing` (a request, its model calls, searches, reranks and
//! tool calls, with the GenAI attributes) are exported over OTLP/HTTP in
//! protobuf by a batch processor on a thread of its own, so a request never
//! waits for the collector. The standard `OTEL_*` variables apply
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_EXPORTER_OTLP_HEADERS`, ...).
//!
//! A request joins its caller's trace: W3C `traceparent`, else the X-Ray
//! header (`X-Amzn-Trace-Id`, which load balancers and API Gateway send and
//! rag-lambda copies from the invocation under Lambda).

use std::sync::Arc;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rag_api::observe::TraceLink;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether this process should export traces.
pub fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// The tracer provider exporting to the configured endpoint; shut it down
/// before exiting so the last batch is sent.
pub fn provider() -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("OTEL_EXPORTER_OTLP_ENDPOINT: building the OTLP exporter")?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("rag-agent");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("rag-agent")
}

struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span context an X-Ray trace header names:
/// `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>`, fields in any
/// order. `None` without a `Parent`: there is no span to be a child of.
pub fn xray_span_context(header: &str) -> Option<SpanContext> {
    let (mut root, mut parent, mut sampled) = (None, None, false);
    for field in header.split(';') {
        match field.trim().split_once('=') {
            Some(("Root", value)) => root = Some(value),
            Some(("Parent", value)) => parent = Some(value),
            Some(("Sampled", value)) => sampled = value == "1",
            _ => {}
        }
    }
    let mut parts = root?.split('-');
    let (Some("1"), Some(epoch), Some(unique), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if epoch.len() != 8 || unique.len() != 24 {
        return None;
    }
    let trace_id = TraceId::from_hex(&format!("{epoch}{unique}")).ok()?;
    let span_id = SpanId::from_hex(parent?).ok()?;
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let context = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    context.is_valid().then_some(context)
}

/// Joins a request's span to the trace in its headers.
pub fn trace_link() -> TraceLink {
    let propagator = TraceContextPropagator::new();
    Arc::new(move |request, span| {
        let headers = request.headers();
        let parent = if headers.contains_key("traceparent") {
            propagator.extract(&Headers(headers))
        } else if let Some(context) = headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .and_then(xray_span_context)
        {
            opentelemetry::Context::new().with_remote_span_context(context)
        } else {
            return;
        };
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    })
}

/// Under Lambda: answers the request, then sends its spans (on a blocking
/// thread: the exporter's client blocks), because the process may be
/// frozen as soon as the invocation returns.
pub async fn flushing(
    provider: SdkTracerProvider,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "sending this invocation's spans failed");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xray_header_names_its_trace_and_parent() {
        let context = xray_span_context(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .unwrap();
        assert_eq!(
            context.trace_id().to_string(),
            "5759e988bd862e3fe1be46a994272793"
        );
        assert_eq!(context.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(context.is_sampled() && context.is_remote());
        // Field order does not matter; Self and Lineage are ignored.
        let reordered = xray_span_context(
            "Self=1-67891234-12456789abcdef012345678;Sampled=0;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793",
        )
        .unwrap();
        assert!(!reordered.is_sampled());
        // A load balancer's header has no parent: nothing to join.
        assert!(xray_span_context("Root=1-5759e988-bd862e3fe1be46a994272793").is_none());
        for bad in [
            "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e98-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a99427279z;Parent=53995c3f42cd8ad8",
            "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",
            "nonsense",
        ] {
            assert!(xray_span_context(bad).is_none(), "{bad}");
        }
    }
}
