//! The router under the Lambda adapter, fed API Gateway REST (v1) and HTTP
//! API (v2) events from JSON fixtures, as Lambda delivers them. Binary
//! bodies (multipart uploads) arrive base64-encoded.

use std::sync::Arc;

use base64::Engine;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use rag_api::{AppState, app};
use rag_core::answer::ExtractiveAnswerer;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::{RagService, ServiceSettings, Stores};
use rag_local::{FileDocumentStore, LocalVectorIndex, SqliteStore};
use serde_json::Value;

fn state(dir: &std::path::Path) -> AppState {
    let sqlite = SqliteStore::open_in_memory().unwrap();
    let stores = Stores {
        metadata: Arc::new(sqlite.clone()),
        documents: Arc::new(FileDocumentStore::open(dir.join("files")).unwrap()),
        vectors: Arc::new(LocalVectorIndex::open(&dir.join("vectors.log"), 384).unwrap()),
        lexical: Some(Arc::new(sqlite.clone())),
        usage: Arc::new(sqlite.clone()),
        tenant_settings: Arc::new(sqlite.clone()),
        conversations: Arc::new(sqlite),
    };
    let service = RagService::new(
        stores,
        None,
        Arc::new(ExtractiveAnswerer),
        UrlFetcher::new(FetchPolicy::default()).unwrap(),
        ServiceSettings::default(),
        Vec::new(),
    )
    .unwrap();
    let mut state = AppState::new(service);
    // As the binary configures itself under Lambda.
    state.wait_for_ingest_by_default = true;
    state
}

/// Sends one fixture through the adapter and returns the API Gateway
/// response as Lambda would serialise it.
async fn invoke(state: &AppState, fixture: &str) -> Value {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let event: LambdaRequest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{fixture} is not an API Gateway event: {e}"));
    let mut adapter = Adapter::from(rag_lambda::handler(app(state.clone())));
    let response = adapter
        .call(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(&response).unwrap()
}

/// The response body as JSON, decoding base64 when API Gateway would.
fn body(response: &Value) -> Value {
    let raw = response["body"].as_str().unwrap_or_default();
    let bytes = if response["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap()
    } else {
        raw.as_bytes().to_vec()
    };
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test]
async fn rest_api_v1_events() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());

    let health = invoke(&state, "v1_health.json").await;
    assert_eq!(health["statusCode"], 200, "{health}");
    assert_eq!(body(&health)["status"], "ok");
    assert!(
        health["multiValueHeaders"]["content-type"][0]
            .as_str()
            .unwrap()
            .starts_with("application/json"),
        "{health}"
    );

    let ingested = invoke(&state, "v1_ingest_text.json").await;
    assert_eq!(ingested["statusCode"], 201, "{ingested}");
    assert_eq!(body(&ingested)["document"]["status"], "INDEXED");

    let uploaded = invoke(&state, "v1_upload_multipart.json").await;
    assert_eq!(uploaded["statusCode"], 201, "{uploaded}");
    let document = &body(&uploaded)["document"];
    assert_eq!(document["title"], "Ownership notes");
    assert_eq!(document["source"], "ownership.md");
    assert_eq!(document["status"], "INDEXED");

    let listed = invoke(&state, "v1_list_documents.json").await;
    assert_eq!(listed["statusCode"], 200);
    assert_eq!(body(&listed)["items"].as_array().unwrap().len(), 2);

    let missing = invoke(&state, "v1_not_found.json").await;
    assert_eq!(missing["statusCode"], 404);
    assert_eq!(body(&missing)["error"]["code"], "document_not_found");

    // The web UI below the stage: the page at the stage root, its script
    // at a path relative to it, both as text (not base64).
    let page = invoke(&state, "v1_ui_index.json").await;
    assert_eq!(page["statusCode"], 200, "{page}");
    assert_eq!(page["isBase64Encoded"], false, "{page}");
    assert!(
        page["body"]
            .as_str()
            .unwrap()
            .contains("<script src=\"ui/app.js\"")
    );
    let script = invoke(&state, "v1_ui_script.json").await;
    assert_eq!(script["statusCode"], 200, "{script}");
    assert!(
        script["multiValueHeaders"]["content-type"][0]
            .as_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script["body"].as_str().unwrap().contains("chat/stream"));
}

#[tokio::test]
async fn http_api_v2_events() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());

    let health = invoke(&state, "v2_health.json").await;
    assert_eq!(health["statusCode"], 200, "{health}");
    assert_eq!(body(&health)["status"], "ok");

    let uploaded = invoke(&state, "v2_upload_multipart.json").await;
    assert_eq!(uploaded["statusCode"], 201, "{uploaded}");
    let document = body(&uploaded)["document"].clone();
    assert_eq!(document["title"], "Ownership notes");

    let answer = invoke(&state, "v2_query.json").await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let answer = body(&answer);
    assert_eq!(answer["sources"][0]["document_id"], document["id"]);
    assert!(
        answer["answer"].as_str().unwrap().contains("[1]"),
        "{answer}"
    );

    let malformed = invoke(&state, "v2_malformed_json.json").await;
    assert_eq!(malformed["statusCode"], 400);
    assert_eq!(body(&malformed)["error"]["code"], "malformed_json");
}
