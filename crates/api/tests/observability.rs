//! Request ids, the request metrics and `/metrics`, through the router
//! without a socket.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rag_api::{AppState, AuthMode, Authenticator, PrometheusMetrics, app};
use rag_core::keys::{KeyService, KeyTenant};
use rag_core::telemetry::{Metrics, PriceTable};
use rag_core::{Role, ServiceSettings, Tenant};
use rag_local::SqliteStore;
use serde_json::json;
use tower::ServiceExt;

fn state(dir: &std::path::Path, registry: &Arc<PrometheusMetrics>) -> (AppState, SqliteStore) {
    let settings = ServiceSettings {
        metrics: Metrics::new(vec![registry.clone()]),
        ..ServiceSettings::default()
    };
    let (service, sqlite) = common::lexical_service(dir, settings, Vec::new());
    let mut state = AppState::new(service);
    state.metrics = Some(registry.clone());
    (state, sqlite)
}

async fn send(
    state: &AppState,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn post(path: &str, body: serde_json::Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(PrometheusMetrics::new(PriceTable::default()));
    let (mut state, _) = state(dir.path(), &registry);
    state.guard.loopback_only = true;
    let local = Request::get("/health")
        .header("host", "127.0.0.1:3000")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&state, local).await;
    assert_eq!(status, StatusCode::OK);
    let generated = headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::try_parse(generated).is_ok(), "{generated}");

    let given = Request::get("/no/such/route")
        .header("host", "localhost")
        .header("x-request-id", "trace-me-42")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&state, given).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(headers["x-request-id"], "trace-me-42");

    // An id that is not a plain token is replaced, not echoed.
    let odd = Request::post("/query")
        .header("host", "localhost")
        .header("x-request-id", "two words")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, headers, body) = send(&state, odd).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_ne!(headers["x-request-id"], "two words");
    assert!(uuid::Uuid::try_parse(headers["x-request-id"].to_str().unwrap()).is_ok());

    // A refused Host is answered before any route, and still has an id.
    let foreign = Request::get("/health")
        .header("host", "evil.example")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&state, foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn metrics_count_routes_errors_models_and_ingestion() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(PrometheusMetrics::new(PriceTable::default()));
    let (state, _) = state(dir.path(), &registry);
    let ingest = post(
        "/documents/ingest",
        json!({"content": "Ferris the crab is the mascot of Rust.", "title": "ferris", "wait": true}),
    );
    let (status, _, body) = send(&state, ingest).await;
    assert!(status.is_success(), "{body}");
    let (status, _, body) = send(&state, post("/query", json!({"query": "Who is Ferris?"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let missing = Request::get("/documents/6f1c2a9e-0000-4000-8000-000000000000")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&state, missing).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, headers, text) = send(
        &state,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    for line in [
        "rag_http_requests_total{method=\"POST\",route=\"/query\",status=\"200\"} 1",
        // The route, not the id in the path.
        "rag_http_requests_total{method=\"GET\",route=\"/documents/{id}\",status=\"404\"} 1",
        "rag_http_errors_total{route=\"/documents/{id}\",code=\"document_not_found\"} 1",
        "rag_model_calls_total{model=\"extractive\",operation=\"chat\",outcome=\"ok\"} 1",
        "rag_ingested_documents_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("rag_retrieval_top_score_count{mode=\"lexical\"} 1")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("rag_ingested_chunks_total ")),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_need_an_operator_key() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(PrometheusMetrics::new(PriceTable::default()));
    let (mut state, sqlite) = state(dir.path(), &registry);
    let keys = KeyService::new(Arc::new(sqlite));
    state.auth = Authenticator {
        mode: AuthMode::ApiKey,
        keys: Some(keys.clone()),
        jwt: None,
    };
    let tenant_admin = keys
        .create(
            KeyTenant::One(Tenant::new("team-a").unwrap()),
            Role::Admin,
            None,
            None,
        )
        .await
        .unwrap();
    let operator = keys
        .create(KeyTenant::All, Role::Admin, None, None)
        .await
        .unwrap();
    let get = |key: Option<&str>| {
        let mut request = Request::get("/metrics");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.body(Body::empty()).unwrap()
    };
    assert_eq!(send(&state, get(None)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(&state, get(Some(&tenant_admin.key))).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _, text) = send(&state, get(Some(&operator.key))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // Earlier refusals were counted too.
    assert!(text.contains("code=\"unauthenticated\"} 1"), "{text}");

    state.metrics = None;
    assert_eq!(
        send(&state, get(Some(&operator.key))).await.0,
        StatusCode::NOT_FOUND
    );
}
