//! The rerank stage through the binary: `RERANK_PROVIDER=http` against the
//! in-repo `/rerank` server on the embedded default, and `bedrock` against
//! the emulator's `Rerank` on the AWS stack. `/health` names the reranker,
//! each answer says how its sources were reranked, a request can turn it
//! off, and a failing reranker leaves retrieval's order without an error.

use std::time::Duration;

use rag_aws_emulator::OpenAiServer;
use serde_json::{Value, json};

use crate::support::{Server, Stack, get_json, post_json, upload, wait_until_settled};

const PAGES: [(&str, &str); 3] = [
    (
        "weather.txt",
        "The weather in the mountains changes quickly in spring.",
    ),
    (
        "borrow.txt",
        "Borrowing lends a value without taking ownership of it.",
    ),
    (
        "slices.txt",
        "A slice borrows part of a collection, such as part of a String.",
    ),
];

async fn ingest(server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in PAGES {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (status, body) = upload(server, &path).await;
        assert!([200, 202].contains(&status), "{body}");
    }
    wait_until_settled(server, Duration::from_secs(120)).await;
}

async fn query(server: &Server, extra: Value) -> Value {
    let mut body = json!({"query": "How does borrowing a value work?", "top_k": 2, "similarity_threshold": -1.0});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, answer) = post_json(&server.at("/query"), &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

// The reranker and emulator serve on this test's runtime while the test
// blocks on the binary's start-up, so they need threads of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_reranker_orders_the_sources_and_its_failure_is_reported() {
    let reranker = OpenAiServer::start().await.unwrap();
    let url = format!("{}/rerank", reranker.url);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &[
            ("RERANK_PROVIDER", "http"),
            ("RERANK_URL", &url),
            ("RERANK_MODEL", "test-reranker"),
            ("RERANK_CANDIDATES", "3"),
        ],
    );
    let (_, health) = get_json(&server.at("/health")).await;
    assert_eq!(health["reranker"], "http:test-reranker", "{health}");
    ingest(&server).await;

    let answer = query(&server, json!({})).await;
    assert_eq!(
        answer["rerank"],
        json!({"reranker": "http:test-reranker", "applied": true, "candidates": 3,
               "latency_ms": answer["rerank"]["latency_ms"]}),
        "{answer:#}"
    );
    let sent = reranker.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["documents"].as_array().unwrap().len(), 3);
    let sources = answer["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert!(sources[0]["score"].as_f64() >= sources[1]["score"].as_f64());

    let plain = query(&server, json!({"rerank": false})).await;
    assert!(plain.get("rerank").is_none(), "{plain:#}");
    assert_eq!(
        reranker.requests().len(),
        1,
        "rerank: false calls no reranker"
    );

    reranker.push_failure(503);
    let fallback = query(&server, json!({})).await;
    assert_eq!(fallback["rerank"]["applied"], false);
    assert_eq!(
        fallback["rerank"]["fallback_reason"],
        "the reranker is temporarily unavailable"
    );
    assert_eq!(
        fallback["sources"], plain["sources"],
        "retrieval's order is kept"
    );
    server.stop();
}

#[tokio::test]
async fn asking_to_rerank_without_a_reranker_is_a_clear_400() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &Stack::embedded(), &[]);
    let (_, health) = get_json(&server.at("/health")).await;
    assert!(health.get("reranker").is_none(), "{health}");
    let (status, body) = post_json(
        &server.at("/query"),
        &json!({"query": "borrowing", "rerank": true}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("RERANK_PROVIDER"),
        "{body}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_rerank_reorders_dense_search_on_the_aws_stack() {
    let stack = Stack::aws_with(&[
        ("RERANK_PROVIDER", "bedrock"),
        ("BEDROCK_RERANK_MODEL_ID", "cohere.rerank-v3-5:0"),
    ])
    .await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    let (_, health) = get_json(&server.at("/health")).await;
    assert_eq!(
        health["reranker"], "bedrock:cohere.rerank-v3-5:0",
        "{health}"
    );
    assert_eq!(health["warnings"], json!([]), "{health}");
    ingest(&server).await;

    let answer = query(&server, json!({})).await;
    assert_eq!(answer["search_mode"], "dense");
    assert_eq!(answer["rerank"]["applied"], true, "{answer:#}");
    let emulator = stack.emulator().unwrap();
    let requests = emulator.rerank_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"]
            ["modelArn"],
        "arn:aws:bedrock:us-east-1::foundation-model/cohere.rerank-v3-5:0"
    );
    // The emulator scores by shared words: the borrowing page first.
    assert_eq!(answer["sources"][0]["source"], "borrow.txt", "{answer:#}");
    server.stop();
}
