//! SIGTERM, as ECS sends it when it stops a task: the listener closes at
//! once, a streamed answer in flight finishes, and the process exits; a
//! stream longer than the drain time is cut when it ends.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use rag_aws_emulator::{OpenAiServer, Reply};
use serde_json::json;

use crate::support::*;

const WORDS: &str = "Each value in Rust has an owner, there can only be one owner at a time, \
     and when the owner goes out of scope the value will be dropped, which is how Rust frees memory.";

type Body = BoxStream<'static, reqwest::Result<axum::body::Bytes>>;

async fn start(model: &OpenAiServer, drain_secs: &str) -> (tempfile::TempDir, Server) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &[
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &model.url),
            ("OPENAI_MODEL", "emulated"),
            ("RAG_AGENT_DRAIN_SECS", drain_secs),
        ],
    );
    (data, server)
}

/// Asks for a streamed answer whose pieces the model sends `delay` apart,
/// and reads it up to the first delta.
async fn stream_started(server: &Server, model: &OpenAiServer, delay: Duration) -> (Body, String) {
    model.push_reply(Reply {
        delta_delay: delay,
        ..Reply::text(WORDS)
    });
    let response = client()
        .post(server.at("/chat/stream"))
        .json(&json!({"message": "Tell me about ownership."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream().boxed();
    let mut body = String::new();
    while !body.contains("event: delta") {
        body.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    (stream, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_finishes_after_sigterm() {
    let model = OpenAiServer::start().await.unwrap();
    let (_data, mut server) = start(&model, "30").await;
    // About 30 pieces 80 ms apart: some 2.5 s of streaming.
    let (mut stream, mut body) = stream_started(&server, &model, Duration::from_millis(80)).await;
    server.send_sigterm();
    let signalled = Instant::now();
    // New connections are refused while the stream goes on.
    let address = server.url.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let streamed_for = signalled.elapsed();
    assert!(body.contains("event: done"), "{body}");
    assert!(body.contains("dropped"), "the last words arrived: {body}");
    assert!(
        streamed_for >= Duration::from_millis(500),
        "the stream went on after SIGTERM: {streamed_for:?}"
    );
    let status = server.wait_for_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_longer_than_the_drain_time_is_cut() {
    let model = OpenAiServer::start().await.unwrap();
    let (_data, mut server) = start(&model, "1").await;
    // Some 15 s of streaming against a 1 s drain.
    let (mut stream, mut body) = stream_started(&server, &model, Duration::from_millis(500)).await;
    server.send_sigterm();
    let signalled = Instant::now();
    let status = server.wait_for_exit(Duration::from_secs(8));
    let exited_after = signalled.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        exited_after >= Duration::from_millis(900),
        "it drained first: {exited_after:?}"
    );
    while let Some(Ok(chunk)) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!body.contains("event: done"), "{body}");
}
