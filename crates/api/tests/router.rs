//! The router without a socket (`tower::ServiceExt::oneshot`), on the
//! embedded stores in the lexical-only configuration a machine without the
//! embedding model runs in.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rag_api::{AppState, app};
use rag_core::answer::ExtractiveAnswerer;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::{RagService, ServiceSettings, Stores};
use rag_local::{FileDocumentStore, LocalVectorIndex, SqliteStore};
use serde_json::{Value, json};
use tower::ServiceExt;

fn state(dir: &std::path::Path) -> AppState {
    let (service, _) = common::lexical_service(
        dir,
        ServiceSettings::default(),
        vec!["no embedding model".to_string()],
    );
    AppState::new(service)
}

async fn call(state: &AppState, request: Request<Body>) -> (StatusCode, Value) {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn lexical_only_deployment_ingests_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());

    let (status, health) = call(&state, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["search_modes"], json!(["lexical"]));
    assert_eq!(health["default_search_mode"], "lexical");

    let (status, created) = call(
        &state,
        post(
            "/documents/ingest",
            json!({"content": "# Borrowing\n\nA reference lets you refer to a value without taking ownership of it.\n\nMutable references are exclusive.", "content_type": "text/markdown", "wait": true, "metadata": {"team": "docs"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["document"]["status"], "INDEXED");
    assert_eq!(created["document"]["title"], "Borrowing");
    assert_eq!(created["document"]["extra_metadata"]["team"], "docs");

    let (status, answer) = call(
        &state,
        post(
            "/query",
            json!({"query": "What does a reference let you do?"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["search_mode"], "lexical");
    assert_eq!(answer["sources"][0]["title"], "Borrowing");
    assert!(
        answer["answer"]
            .as_str()
            .unwrap()
            .contains("without taking ownership of it. [1]"),
        "{answer}"
    );

    let (status, error) = call(
        &state,
        post("/query", json!({"query": "x", "mode": "dense"})),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error["error"]["code"], "unavailable");
}

#[tokio::test]
async fn rejections_use_the_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let request = Request::post("/query")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, body) = call(&state, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_json");

    let (status, body) = call(
        &state,
        Request::get("/documents/123").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_parameter");

    let (status, spec) = call(
        &state,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object());
}

/// The web UI's three files are served with their types and the policy;
/// everything else under `/ui/` is the JSON 404 of any unknown route.
#[tokio::test]
async fn the_web_ui_is_served_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    for (path, content_type, marker) in [
        ("/", "text/html", "<title>rag-agent</title>"),
        ("/ui/app.js", "text/javascript", "chat/stream"),
        ("/ui/app.css", "text/css", ".composer"),
    ] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = app(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("connect-src 'self'")
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains(marker), "{path}");
    }
    let (status, body) = call(
        &state,
        Request::get("/ui/other.js").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "route_not_found", "{body}");
}

/// A tiny deterministic embedder: letter counts.
struct LetterCounts;

#[async_trait::async_trait]
impl rag_core::Embedder for LetterCounts {
    fn model_id(&self) -> &str {
        "letter-counts"
    }
    fn dimension(&self) -> usize {
        4
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, rag_core::EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                ['a', 'e', 'o', 'r']
                    .iter()
                    .map(|c| 1.0 + t.matches(*c).count() as f32)
                    .collect()
            })
            .collect())
    }
}

#[tokio::test]
async fn health_says_starting_while_the_model_loads_and_ingestion_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open_in_memory().unwrap();
    let stores = Stores {
        metadata: Arc::new(sqlite.clone()),
        documents: Arc::new(FileDocumentStore::open(dir.path().join("files")).unwrap()),
        vectors: Arc::new(LocalVectorIndex::open(&dir.path().join("vectors.log"), 4).unwrap()),
        lexical: Some(Arc::new(sqlite.clone())),
        usage: Arc::new(sqlite.clone()),
        tenant_settings: Arc::new(sqlite.clone()),
        conversations: Arc::new(sqlite),
    };
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let embedder = rag_core::loading::LoadingEmbedder::spawn("letter-counts", 4, move || {
        gate.recv().map_err(|e| e.to_string())?;
        Ok(Arc::new(LetterCounts) as Arc<dyn rag_core::Embedder>)
    })
    .unwrap();
    let service = RagService::new(
        stores,
        Some(Arc::new(embedder)),
        Arc::new(ExtractiveAnswerer),
        UrlFetcher::new(FetchPolicy::default()).unwrap(),
        ServiceSettings::default(),
        Vec::new(),
    )
    .unwrap();
    let state = AppState::new(service);

    let (status, health) = call(&state, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "starting", "{health}");
    assert_eq!(health["embedding_model"]["dimension"], 4);
    assert!(
        health["warnings"][0].as_str().unwrap().contains("loading"),
        "{health}"
    );

    let ingest = tokio::spawn({
        let state = state.clone();
        async move {
            call(
                &state,
                post(
                    "/documents/ingest",
                    json!({"content": "Borrowers read; owners drop.", "wait": true}),
                ),
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!ingest.is_finished(), "ingestion waits for the model");
    release.send(()).unwrap();
    let (status, created) = ingest.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["document"]["status"], "INDEXED", "{created}");

    let (_, health) = call(&state, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["warnings"], json!([]));
    assert_eq!(health["vector_count"], 1);
}

/// Usage counts the tenant's API requests, not the UI's files, `/health`
/// or the OpenAPI document, and its answers' tokens.
#[tokio::test]
async fn usage_counts_api_requests_and_answer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    for path in ["/", "/ui/app.js", "/health", "/openapi.json", "/documents"] {
        let (status, _) = call(&state, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, answer) = call(&state, post("/query", json!({"query": "anything at all?"}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, report) = call(&state, Request::get("/usage").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let total = &report["tenants"][0]["total"];
    assert_eq!(report["tenants"][0]["tenant"], "default", "{report}");
    // /documents, /query and /usage itself.
    assert_eq!(total["requests"], 3, "{report}");
    assert_eq!(
        total["input_tokens"].as_u64().unwrap() + total["output_tokens"].as_u64().unwrap(),
        answer["token_usage"]["total_tokens"].as_u64().unwrap(),
        "{report}"
    );
}
