//! The `/rerank` client against the in-repo server that answers the API
//! TEI, Infinity, llama.cpp, vLLM, Cohere and Jina share, on 127.0.0.1.

use std::time::Duration;

use rag_aws_emulator::OpenAiServer;
use rag_core::rerank::{RerankError, Reranker};
use rag_openai::{HttpRerankConfig, HttpReranker};
use serde_json::json;

fn reranker(server: &OpenAiServer, api_key: Option<&str>) -> HttpReranker {
    HttpReranker::new(
        reqwest::Client::new(),
        HttpRerankConfig {
            url: format!("{}/rerank", server.url),
            model: "BAAI/bge-reranker-base".into(),
            api_key: api_key.map(String::from),
            timeout: Duration::from_secs(5),
        },
    )
}

fn documents() -> Vec<String> {
    [
        "The weather in the mountains.",
        "How to borrow a value: take a reference.",
        "Borrowing lends a value.",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn scores_come_back_in_input_order_from_a_best_first_reply() {
    let server = OpenAiServer::start().await.unwrap();
    let reranker = reranker(&server, Some("secret"));
    assert_eq!(reranker.name(), "http:BAAI/bge-reranker-base");
    let scores = reranker
        .score("how to borrow a value", &documents())
        .await
        .unwrap();
    assert!(scores[1] > scores[2] && scores[2] > scores[0], "{scores:?}");
    assert_eq!(
        server.requests()[0],
        json!({
            "model": "BAAI/bge-reranker-base",
            "query": "how to borrow a value",
            "documents": documents(),
            "top_n": 3,
        })
    );
}

#[tokio::test]
async fn server_failures_are_classified() {
    let server = OpenAiServer::start().await.unwrap();
    let reranker = reranker(&server, None);
    for (status, expected) in [
        (429, "throttled"),
        (500, "transient"),
        (400, "invalid"),
        (401, "permanent"),
    ] {
        server.push_failure(status);
        let error = reranker.score("q", &documents()).await.unwrap_err();
        let kind = match error {
            RerankError::Throttled => "throttled",
            RerankError::Transient(_) => "transient",
            RerankError::Invalid(_) => "invalid",
            RerankError::Permanent(_) => "permanent",
            other => panic!("unexpected {other}"),
        };
        assert_eq!(kind, expected, "HTTP {status}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let reranker = HttpReranker::new(
        reqwest::Client::new(),
        HttpRerankConfig {
            url: format!("http://127.0.0.1:{port}/rerank"),
            model: "m".into(),
            api_key: None,
            timeout: Duration::from_secs(2),
        },
    );
    let error = reranker.score("q", &documents()).await.unwrap_err();
    assert!(matches!(error, RerankError::Transient(_)), "{error}");
}
