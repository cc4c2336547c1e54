//! The OpenAI-compatible client against an in-repo server that speaks the
//! chat completions wire format (JSON and SSE) on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use rag_core::ModelError;
use rag_core::answer::build_rag_request;
use rag_core::chat::{ChatModel, ChatStreamEvent, InferenceConfig, Message, Passage, StopReason};
use rag_openai::{OpenAiChatModel, OpenAiConfig};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Server {
    requests: Arc<Mutex<Vec<Value>>>,
}

async fn completions(State(server): State<Server>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap();
    server.requests.lock().unwrap().push(request.clone());
    let last = request["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if last.contains("THROTTLE") {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2")],
            "slow down",
        )
            .into_response();
    }
    if last.contains("TOO LONG") {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": "context_length_exceeded", "message": "This model's maximum context length is 4096 tokens"}}).to_string(),
        )
            .into_response();
    }
    if request["stream"] == json!(true) {
        let pieces = ["The ? operator ", "returns early ", "on errors [1]."];
        let mut body = String::new();
        for piece in pieces {
            body.push_str(&format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})
            ));
        }
        body.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        ));
        body.push_str(&format!(
            "data: {}\n\n",
            json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 9}})
        ));
        body.push_str("data: [DONE]\n\n");
        // Deliver in small pieces, as a real server would, to exercise line reassembly.
        let chunks: Vec<Result<String, std::io::Error>> = body
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
            .collect();
        let stream = tokio_stream::iter(chunks);
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from_stream(stream))
            .unwrap();
    }
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "It propagates errors [1]."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
    })
    .to_string()
    .into_response()
}

async fn start() -> (String, Server) {
    let server = Server::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), server)
}

fn model(base_url: String) -> OpenAiChatModel {
    OpenAiChatModel::new(
        reqwest::Client::new(),
        OpenAiConfig {
            base_url,
            model: "llama3.2".into(),
            api_key: Some("sk-test".into()),
            timeout: Duration::from_secs(10),
        },
    )
}

fn request(question: &str) -> rag_core::chat::ChatRequest {
    build_rag_request(
        question,
        vec![Passage {
            number: 1,
            title: "Errors".into(),
            text: "The ? operator propagates errors.".into(),
        }],
        vec![
            Message::user_text("earlier question"),
            Message::assistant_text("earlier answer"),
        ],
        InferenceConfig {
            max_tokens: Some(256),
            temperature: Some(0.2),
        },
    )
}

#[tokio::test]
async fn converse_sends_system_history_and_passages() {
    let (url, server) = start().await;
    let response = model(url)
        .converse(request("What does ? do?"))
        .await
        .unwrap();
    assert_eq!(response.message.text(), "It propagates errors [1].");
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(
        (response.usage.input_tokens, response.usage.output_tokens),
        (42, 7)
    );

    let sent = server.requests.lock().unwrap()[0].clone();
    assert_eq!(sent["model"], "llama3.2");
    assert_eq!(sent["max_tokens"], 256);
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["content"], "earlier question");
    assert_eq!(messages[2]["role"], "assistant");
    let last = messages[3]["content"].as_str().unwrap();
    assert!(last.contains("[1] Errors") && last.ends_with("Question: What does ? do?"));
}

#[tokio::test]
async fn streams_deltas_then_stop_with_usage() {
    let (url, _) = start().await;
    let mut stream = model(url)
        .converse_stream(request("stream please"))
        .await
        .unwrap();
    let mut text = String::new();
    let mut stop = None;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ChatStreamEvent::TextDelta(t) => {
                assert!(stop.is_none(), "delta after stop");
                text.push_str(&t);
            }
            ChatStreamEvent::Stop { stop_reason, usage } => stop = Some((stop_reason, usage)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(text, "The ? operator returns early on errors [1].");
    let (reason, usage) = stop.unwrap();
    assert_eq!(reason, StopReason::EndTurn);
    assert_eq!((usage.input_tokens, usage.output_tokens), (50, 9));
}

#[tokio::test]
async fn classifies_throttling_and_context_overflow() {
    let (url, _) = start().await;
    let m = model(url);
    match m.converse(request("THROTTLE")).await {
        Err(ModelError::Throttled { retry_after }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)))
        }
        other => panic!("expected throttling, got {other:?}"),
    }
    assert!(matches!(
        m.converse(request("TOO LONG")).await,
        Err(ModelError::ContextTooLong)
    ));
}

#[tokio::test]
async fn unreachable_server_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let result = model(url).converse(request("hello")).await;
    assert!(
        matches!(result, Err(ModelError::Transient(_))),
        "{result:?}"
    );
}
