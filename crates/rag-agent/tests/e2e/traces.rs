//! Traces through the binary to the in-repo OTLP/HTTP receiver: one trace
//! per request, joined to the caller's `traceparent`, with a span for each
//! model call, tool call, embedding, vector and keyword search and rerank,
//! carrying the OpenTelemetry GenAI attributes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rag_aws_emulator::{OpenAiServer, OtlpReceiver, ReceivedSpan};
use serde_json::json;

use crate::support::*;

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

fn attr<'a>(span: &'a ReceivedSpan, key: &str) -> &'a serde_json::Value {
    span.attributes.get(key).unwrap_or(&serde_json::Value::Null)
}

async fn spans_until(
    receiver: &OtlpReceiver,
    done: impl Fn(&[ReceivedSpan]) -> bool,
) -> Vec<ReceivedSpan> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = receiver.spans();
        if done(&spans) {
            return spans;
        }
        assert!(Instant::now() < deadline, "spans never arrived: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_trace_with_genai_spans() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let model = OpenAiServer::start().await.unwrap();
    let rerank_url = format!("{}/rerank", model.url);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &model.url),
            ("OPENAI_MODEL", "emulated"),
            ("RERANK_PROVIDER", "http"),
            ("RERANK_URL", &rerank_url),
            ("RERANK_MODEL", "test-reranker"),
        ],
    );
    let (status, body) = post_json(
        &server.at("/documents/ingest"),
        &json!({"title": "Borrowing", "content": "Borrowing lends a value without taking ownership of it. A reference borrows.", "wait": true}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let response = client()
        .post(server.at("/chat"))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"message": "How does borrowing work?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(reply["tool_calls"][0]["name"], "vector_search", "{reply}");
    let (status, _) = post_json(
        &server.at("/query"),
        &json!({"query": "What does a reference do?"}),
    )
    .await;
    assert_eq!(status, 200);

    let is_request = |s: &ReceivedSpan, route: &str| s.kind == 2 && attr(s, "http.route") == route;
    let spans = spans_until(&receiver, |spans| {
        spans.iter().any(|s| is_request(s, "/chat"))
            && spans.iter().any(|s| is_request(s, "/query"))
    })
    .await;

    // The chat request joined the caller's trace, as a child of its span.
    let chat_request = spans.iter().find(|s| is_request(s, "/chat")).unwrap();
    assert_eq!(chat_request.name, "POST /chat");
    assert_eq!(chat_request.trace_id, CALLER_TRACE);
    assert_eq!(chat_request.parent_span_id, CALLER_SPAN);
    assert_eq!(attr(chat_request, "http.response.status_code"), 200);
    assert_eq!(attr(chat_request, "tenant"), "default");
    assert_eq!(chat_request.service_name.as_deref(), Some("rag-agent"));
    // Everything the turn did is in that trace, under that span.
    let chat: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == CALLER_TRACE)
        .collect();
    let ids: HashSet<&str> = chat.iter().map(|s| s.span_id.as_str()).collect();
    for span in &chat {
        assert!(
            span.parent_span_id == CALLER_SPAN || ids.contains(span.parent_span_id.as_str()),
            "{} has a parent outside the trace",
            span.name
        );
    }
    let model_calls: Vec<&&ReceivedSpan> = chat
        .iter()
        .filter(|s| attr(s, "gen_ai.operation.name") == "chat")
        .collect();
    assert_eq!(
        model_calls.len(),
        2,
        "a tool use, then the answer: {chat:#?}"
    );
    for call in &model_calls {
        assert_eq!(call.kind, 3, "a model call is a client span");
        assert_eq!(
            attr(call, "gen_ai.request.model"),
            "openai:emulated",
            "{call:?}"
        );
        assert!(
            attr(call, "gen_ai.usage.input_tokens").as_i64().unwrap() > 0,
            "{call:?}"
        );
        assert!(
            attr(call, "gen_ai.usage.output_tokens").as_i64().is_some(),
            "{call:?}"
        );
        assert!(call.name.starts_with("chat "), "{}", call.name);
    }
    let tool = chat
        .iter()
        .find(|s| attr(s, "gen_ai.operation.name") == "execute_tool")
        .expect("a tool span");
    assert_eq!(attr(tool, "gen_ai.tool.name"), "vector_search");
    let under_tool = |name: &str| {
        chat.iter()
            .find(|s| s.name.starts_with(name) && s.parent_span_id == tool.span_id)
            .unwrap_or_else(|| panic!("no {name} span under the tool call: {chat:#?}"))
    };
    let embed = under_tool("embeddings");
    assert_eq!(attr(embed, "gen_ai.operation.name"), "embeddings");
    assert_eq!(attr(embed, "gen_ai.request.model"), "all-MiniLM-L6-v2");
    under_tool("vector_search");
    under_tool("keyword_search");
    let rerank = under_tool("rerank");
    assert_eq!(attr(rerank, "gen_ai.operation.name"), "rerank");

    // A request without a caller's trace starts its own.
    let query_request = spans.iter().find(|s| is_request(s, "/query")).unwrap();
    assert!(query_request.parent_span_id.is_empty());
    assert_ne!(query_request.trace_id, CALLER_TRACE);
    assert!(
        spans
            .iter()
            .any(|s| s.trace_id == query_request.trace_id
                && attr(s, "gen_ai.operation.name") == "chat"),
        "the /query model call is in the /query trace"
    );
    server.terminate();
}
