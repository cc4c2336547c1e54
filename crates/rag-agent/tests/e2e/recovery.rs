//! A crash mid-ingestion: documents left PENDING or PROCESSING are resumed
//! from the ingest queue on the next start (a held one once its lease
//! expires) and all end INDEXED, with no duplicate chunks. A
//! clean shutdown saves the vector graph, and the next start uses it.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_ingestion_resumes_after_restart_embedded() {
    interrupted_ingestion_resumes_after_restart(Stack::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_ingestion_resumes_after_restart_aws() {
    interrupted_ingestion_resumes_after_restart(Stack::aws().await).await;
}

/// A short lease, so the documents the killed process held are taken over
/// soon after the restart.
const SHORT_LEASE: &[(&str, &str)] = &[("RAG_AGENT_INGEST_LEASE_SECONDS", "2")];

async fn interrupted_ingestion_resumes_after_restart(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, SHORT_LEASE);
    let pages: Vec<_> = book_pages()
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("ch04") || name.starts_with("ch08")
        })
        .collect();
    assert!(pages.len() >= 5);
    for page in &pages {
        let (status, body) = upload(&server, page).await;
        assert_eq!(status, 202, "{body}");
    }
    // Kill it while the background workers are still embedding. (That a
    // document left PROCESSING with half of its chunks written is resumed
    // once, with no chunk twice, is crates/core/tests/ingestion.rs, which
    // holds it there with a gate; here the pages are one embedding batch
    // each, so that state lasts milliseconds.)
    let (_, in_flight) = get_json(&server.at("/documents?status=PENDING")).await;
    assert!(
        !in_flight["items"].as_array().unwrap().is_empty(),
        "indexing finished too soon to test recovery"
    );
    server.stop();

    // The queued documents, and those the killed workers held, are in the
    // ingest queue's file and resume from there.
    let server = Server::start(data.path(), &stack, SHORT_LEASE);
    wait_until_settled(&server, Duration::from_secs(600)).await;
    let (_, indexed) = get_json(&server.at("/documents?status=INDEXED&limit=100")).await;
    let docs = indexed["items"].as_array().unwrap();
    assert_eq!(docs.len(), pages.len());
    let chunk_total: u64 = docs
        .iter()
        .map(|d| d["chunk_count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        stack.vector_count(&server).await,
        chunk_total,
        "vectors must match chunks exactly"
    );
    for doc in docs {
        let (_, detail) = get_json(&server.at(&format!(
            "/documents/{}?include_chunks=true",
            doc["id"].as_str().unwrap()
        )))
        .await;
        assert_eq!(
            detail["chunks"].as_array().unwrap().len() as u64,
            doc["chunk_count"].as_u64().unwrap()
        );
    }
    let (status, answer) = post_json(
        &server.at("/query"),
        &json!({"query": "What is a String?", "top_k": 3}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!answer["sources"].as_array().unwrap().is_empty());
}

/// `n` paragraphs of about 300 characters on `subject`, numbered.
fn numbered_paragraphs(subject: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "Note {i}. {subject} This note, number {i}, says it again in other words, \
                 so that each note is long enough to be a passage of its own and the \
                 notes differ only by their number.\n\n"
            )
        })
        .collect()
}

async fn ingest_text(server: &Server, title: &str, subject: &str, paragraphs: usize) {
    let (status, body) = post_json(
        &server.at("/documents/ingest"),
        &json!({"title": title, "content": numbered_paragraphs(subject, paragraphs),
                "content_type": "text/plain", "wait": true}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["document"]["status"], "INDEXED", "{body}");
}

async fn vectors_backend(server: &Server) -> String {
    let (_, health) = get_json(&server.at("/health")).await;
    health["backends"]["vectors"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vector_graph_is_saved_on_shutdown_and_used_after_restart_embedded() {
    let data = tempfile::tempdir().unwrap();
    let graph_file = data.path().join("vectors.graph");
    let env = [("RAG_AGENT_VECTOR_GRAPH_MIN_ROWS", "20")];
    let server = Server::start(data.path(), &Stack::embedded(), &env);
    assert_eq!(vectors_backend(&server).await, "local-exact");
    ingest_text(
        &server,
        "Configuration",
        "A service reads its settings from environment variables at start-up and refuses unknown values.",
        60,
    )
    .await;
    let started = std::time::Instant::now();
    while vectors_backend(&server).await != "local-hnsw" || !graph_file.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no graph built and saved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let saved_after_build = std::fs::metadata(&graph_file).unwrap().len();
    // Too few new rows to warrant a save of their own: only closing saves them.
    ingest_text(
        &server,
        "Volcanoes",
        "Lava flows from a volcano when molten rock rises through cracks in the crust and erupts.",
        30,
    )
    .await;
    let (_, health) = get_json(&server.at("/health")).await;
    let vectors = health["vector_count"].as_u64().unwrap();
    server.terminate();
    let saved_on_close = std::fs::metadata(&graph_file).unwrap().len();
    assert!(
        saved_on_close > saved_after_build,
        "the graph file should grow with the rows written before shutdown ({saved_after_build} -> {saved_on_close} bytes)"
    );

    let server = Server::start(data.path(), &Stack::embedded(), &env);
    assert_eq!(
        vectors_backend(&server).await,
        "local-hnsw",
        "the saved graph answers from the first request"
    );
    let (_, health) = get_json(&server.at("/health")).await;
    assert_eq!(health["vector_count"].as_u64().unwrap(), vectors);
    let (status, answer) = post_json(
        &server.at("/query"),
        &json!({"query": "How does lava come out of a volcano?", "mode": "dense", "top_k": 3}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sources"][0]["title"], "Volcanoes", "{answer}");
}

/// Titan calls that stay throttled past `BEDROCK_MAX_ATTEMPTS` fail their
/// document, FAILED with the reason and nothing of it stored, as DEPLOY
/// promises; once the throttling stops, the next document is indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_throttled_past_its_attempts_fails_with_the_reason_aws() {
    let stack = Stack::aws_with(&[("BEDROCK_MAX_ATTEMPTS", "3")]).await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    let emulator = stack.emulator().unwrap();
    emulator.set_faults(rag_aws_emulator::Faults {
        throttle_percent: 100,
        ..Default::default()
    });
    let (status, body) = post_json(
        &server.at("/documents/ingest"),
        &json!({"title": "Throttled", "content": numbered_paragraphs("quota", 3), "wait": true}),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let document = &body["document"];
    assert_eq!(document["status"], "FAILED", "{body}");
    assert!(
        document["error"].as_str().unwrap().contains("throttled"),
        "{body}"
    );
    assert_eq!(stack.vector_count(&server).await, 0);
    let stats = emulator.bedrock_stats();
    assert!(stats.invoke_calls >= 3, "{stats:?}");

    emulator.set_faults(rag_aws_emulator::Faults::default());
    ingest_text(&server, "Calm", "patience", 3).await;
    server.stop();
}

/// Polls a document until `done` holds for it; returns it then.
async fn poll_document(
    server: &Server,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, document) = get_json(&server.at(&format!("/documents/{id}"))).await;
        if done(&document) {
            return document;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {document} after two minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A queued document whose Titan calls are throttled is retried from the
/// ingest queue, PENDING with the reason in between: one throttled on
/// every attempt ends FAILED after its last, and one whose throttling
/// passes is indexed on a later attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_documents_are_retried_after_a_throttle_and_failed_after_the_last_attempt_aws() {
    let stack = Stack::aws_with(&[("BEDROCK_MAX_ATTEMPTS", "1")]).await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    let emulator = stack.emulator().unwrap();
    emulator.set_faults(rag_aws_emulator::Faults {
        throttle_percent: 100,
        ..Default::default()
    });
    let queue = |title: &'static str, subject: &'static str| {
        let server = &server;
        async move {
            let (status, body) = post_json(
                &server.at("/documents/ingest"),
                &json!({"title": title, "content": numbered_paragraphs(subject, 3), "wait": false}),
            )
            .await;
            assert_eq!(status, 202, "{body}");
            body["document"]["id"].as_str().unwrap().to_string()
        }
    };
    let retried = |document: &serde_json::Value| {
        document["status"] == "PENDING"
            && document["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("attempt 1 of 3 failed and will be retried"))
    };

    let doomed = queue("Always throttled", "quota").await;
    poll_document(&server, &doomed, retried).await;
    let failed = poll_document(&server, &doomed, |d| d["status"] == "FAILED").await;
    let reason = failed["error"].as_str().unwrap();
    assert!(reason.contains("throttled"), "{failed}");
    assert!(!reason.starts_with("attempt"), "{failed}");

    let lucky = queue("Throttled once", "patience").await;
    poll_document(&server, &lucky, retried).await;
    emulator.set_faults(rag_aws_emulator::Faults::default());
    let indexed = poll_document(&server, &lucky, |d| d["status"] == "INDEXED").await;
    assert!(indexed["error"].is_null(), "{indexed}");
    assert_eq!(
        stack.vector_count(&server).await,
        indexed["chunk_count"].as_u64().unwrap()
    );
    server.stop();
}
