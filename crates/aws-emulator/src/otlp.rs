//! An OpenTelemetry collector's OTLP/HTTP trace endpoint (`POST
//! /v1/traces`, protobuf), keeping every span it receives, so tests see
//! what a real collector would be sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{Value, json};

use crate::Served;

/// One received span, ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// 1 internal, 2 server, 3 client (OTLP's `SpanKind`).
    pub kind: i32,
    pub attributes: BTreeMap<String, Value>,
    pub service_name: Option<String>,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    exports: usize,
}

pub struct OtlpReceiver {
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to.
    pub url: String,
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    _served: Served,
}

impl OtlpReceiver {
    pub async fn start() -> std::io::Result<OtlpReceiver> {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(received.clone());
        let served = Served::start(app).await?;
        Ok(OtlpReceiver {
            url: format!("http://{}", served.addr),
            addr: served.addr,
            received,
            _served: served,
        })
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    /// Export requests received.
    pub fn exports(&self) -> usize {
        self.received.lock().unwrap().exports
    }
}

fn value(any: Option<AnyValue>) -> Value {
    match any {
        Some(AnyValue::StringValue(s)) => json!(s),
        Some(AnyValue::BoolValue(b)) => json!(b),
        Some(AnyValue::IntValue(i)) => json!(i),
        Some(AnyValue::DoubleValue(d)) => json!(d),
        Some(AnyValue::ArrayValue(a)) => {
            Value::Array(a.values.into_iter().map(|v| value(v.value)).collect())
        }
        Some(other) => json!(format!("{other:?}")),
        None => Value::Null,
    }
}

async fn export(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not an ExportTraceServiceRequest").into_response();
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans.resource.as_ref().and_then(|resource| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref().and_then(|v| v.value.clone()) {
                    Some(AnyValue::StringValue(s)) => Some(s),
                    _ => None,
                })
        });
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                spans.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .into_iter()
                        .map(|kv| (kv.key, value(kv.value.and_then(|v| v.value))))
                        .collect(),
                    service_name: service_name.clone(),
                });
            }
        }
    }
    let mut state = received.lock().unwrap();
    state.exports += 1;
    state.spans.extend(spans);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
