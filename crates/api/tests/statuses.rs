//! Statuses that only a failing backend produces (409, 500, 502, 504), and
//! the promise that a streamed failure carries the code its JSON error
//! would, through the router on the in-memory fakes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rag_api::{AppState, app};
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::test_util::{Gate, LetterEmbedder, MemoryStores, Scripted, ScriptedModel};
use rag_core::{ModelError, RagService, ServiceSettings};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

fn state(model: ScriptedModel, embedder: LetterEmbedder, fetch: FetchPolicy) -> AppState {
    let service = RagService::new(
        MemoryStores::default().stores(),
        Some(Arc::new(embedder)),
        Arc::new(model),
        UrlFetcher::new(fetch).unwrap(),
        ServiceSettings::default(),
        Vec::new(),
    )
    .unwrap();
    AppState::new(service)
}

async fn call(state: &AppState, method: &str, path: &str, body: Value) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn code(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    value["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The `data` of the stream's `error` event.
fn sse_error(body: &str) -> Value {
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        if line == "event: error" {
            let data = lines.next().unwrap().trim_start_matches("data: ");
            return serde_json::from_str(data).unwrap();
        }
    }
    panic!("no error event in {body}")
}

#[tokio::test]
async fn a_model_failure_has_one_code_as_json_and_as_a_stream_event() {
    let failing = || Scripted::Fail(|| ModelError::permanent("secret internal detail"));
    let state = state(
        ScriptedModel::new(false, [failing(), failing(), failing(), failing()]),
        LetterEmbedder::default(),
        FetchPolicy::default(),
    );
    let (status, json_body) =
        call(&state, "POST", "/chat", json!({"message": "who owns it"})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&json_body), "model_error");
    assert!(!json_body.contains("secret"), "{json_body}");

    let (status, stream) = call(
        &state,
        "POST",
        "/chat/stream",
        json!({"message": "who owns it"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let event = sse_error(&stream);
    assert_eq!(event["code"], "model_error", "{stream}");
    assert_eq!(
        event["message"],
        serde_json::from_str::<Value>(&json_body).unwrap()["error"]["message"]
    );
    assert!(!stream.contains("secret"), "{stream}");
}

#[tokio::test]
async fn a_context_overflow_is_422_context_too_long_in_both_forms() {
    let overflow = || Scripted::Fail(|| ModelError::ContextTooLong);
    let state = state(
        ScriptedModel::new(false, [overflow(), overflow()]),
        LetterEmbedder::default(),
        FetchPolicy::default(),
    );
    let (status, body) = call(&state, "POST", "/chat", json!({"message": "long"})).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "context_too_long")
    );
    let (_, stream) = call(&state, "POST", "/chat/stream", json!({"message": "long"})).await;
    assert_eq!(sse_error(&stream)["code"], "context_too_long");
}

/// A document deleted while it is being indexed: the indexer finds it gone
/// (renewing its lease or ending it), takes back what it wrote, and the
/// waiting ingest request says the document is not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_deleted_while_indexing_answers_404_to_the_waiting_ingest() {
    let gate = Gate::closed_after(0);
    let state = state(
        ScriptedModel::new(false, []),
        LetterEmbedder::gated(gate.clone()),
        FetchPolicy::default(),
    );
    let held = gate.held();
    let ingest = tokio::spawn({
        let state = state.clone();
        async move {
            call(
                &state,
                "POST",
                "/documents/ingest",
                json!({"content": "Ownership moves values.", "wait": true}),
            )
            .await
        }
    });
    held.await;
    let (_, list) = call(&state, "GET", "/documents", Value::Null).await;
    let id = serde_json::from_str::<Value>(&list).unwrap()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = call(&state, "DELETE", &format!("/documents/{id}"), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    gate.open();
    let (status, body) = ingest.await.unwrap();
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "document_not_found"),
        "{body}"
    );
}

/// One connection to a local server that answers `response`, or never
/// answers when it is `None`.
async fn one_shot_server(response: Option<&'static str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4096];
        let _ = socket.read(&mut buffer).await;
        match response {
            Some(text) => {
                let _ = socket.write_all(text.as_bytes()).await;
            }
            None => tokio::time::sleep(Duration::from_secs(60)).await,
        }
    });
    addr.to_string()
}

/// The status and code of ingesting a page of `host`, a server the
/// fetcher is allowed to reach.
async fn ingest_url_from(host: &str) -> (StatusCode, String) {
    let state = state(
        ScriptedModel::new(false, []),
        LetterEmbedder::default(),
        allowing(host),
    );
    let (status, body) = call(
        &state,
        "POST",
        "/documents/ingest",
        json!({"url": format!("http://{host}/page")}),
    )
    .await;
    (status, code(&body))
}

fn allowing(host: &str) -> FetchPolicy {
    FetchPolicy {
        allowed_hosts: [host.to_string()].into_iter().collect(),
        timeout: Duration::from_millis(500),
        ..FetchPolicy::default()
    }
}

#[tokio::test]
async fn an_upstream_error_is_502_and_an_upstream_that_hangs_is_504() {
    let host = one_shot_server(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
    ))
    .await;
    assert_eq!(
        ingest_url_from(&host).await,
        (StatusCode::BAD_GATEWAY, "url_fetch_failed".to_string())
    );
    let host = one_shot_server(None).await;
    assert_eq!(
        ingest_url_from(&host).await,
        (StatusCode::GATEWAY_TIMEOUT, "url_fetch_timeout".to_string())
    );
}
