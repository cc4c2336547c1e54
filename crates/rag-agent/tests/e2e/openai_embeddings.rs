//! `EMBEDDING_PROVIDER=openai` through the binary, against the in-repo
//! OpenAI-compatible server's `/v1/embeddings`: the dimension is probed at
//! start-up and shown in `/health`, documents are embedded in batches and
//! found by dense search, a restart with another embedding model over the
//! same index is refused with what to do instead, and `rag-agent reindex`
//! moves the index to another model while the server keeps answering.

use std::process::{Command, Stdio};

use rag_aws_emulator::OpenAiServer;
use rag_aws_emulator::openai::EMBEDDING_DIMENSION;

use crate::support::{
    Server, Stack, THREE_PAGES, assert_finds_three_pages, get_json, ingest_pages, top_dense_source,
};

fn embedding_env<'a>(url: &'a str, model: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_EMBEDDING_BASE_URL", url),
        ("OPENAI_EMBEDDING_MODEL", model),
        ("OPENAI_EMBEDDING_BATCH_SIZE", "2"),
    ]
}

// The embeddings server runs on this test's runtime while the test blocks
// on the binary's start-up, so it needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_compatible_embedder_indexes_and_a_model_switch_is_refused() {
    let embeddings = OpenAiServer::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &embedding_env(&embeddings.url, "nomic-embed-text"),
    );
    let (_, health) = get_json(&server.at("/health")).await;
    assert_eq!(
        health["embedding_model"]["model_id"],
        "openai:nomic-embed-text"
    );
    assert_eq!(health["embedding_model"]["dimension"], EMBEDDING_DIMENSION);

    ingest_pages(&server, &THREE_PAGES).await;
    assert!(
        top_dense_source(&server, "Who lends a value by borrowing?")
            .await
            .ends_with("borrow.txt")
    );
    // Each request carried at most OPENAI_EMBEDDING_BATCH_SIZE texts.
    let requests = embeddings.requests();
    assert!(
        requests.len() >= 4,
        "probe, documents, question: {requests:?}"
    );
    assert!(
        requests.iter().all(|r| r["model"] == "nomic-embed-text"
            && r["input"].as_array().is_some_and(|i| i.len() <= 2)),
        "{requests:?}"
    );
    server.stop();

    // The same index with a model of another size is refused by the
    // index itself; with another model of the same size, by the record of
    // the model that built it. Both say what to do instead.
    for (model, phrases) in [
        (
            "all-minilm-small",
            &["256-dimensional", "64", "data directory"][..],
        ),
        (
            "mxbai-embed-large",
            &[
                "openai:nomic-embed-text",
                "openai:mxbai-embed-large",
                "RAG_AGENT_DATA_DIR",
            ][..],
        ),
    ] {
        let stderr = start_and_fail(data.path(), &embeddings.url, model).await;
        for phrase in phrases {
            assert!(
                stderr.contains(phrase),
                "{model}: {phrase} missing from: {stderr}"
            );
        }
    }

    // The model the index was built with starts again and still finds it.
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &embedding_env(&embeddings.url, "nomic-embed-text"),
    );
    assert!(
        top_dense_source(&server, "When do ferries leave the harbour?")
            .await
            .ends_with("harbour.txt")
    );

    // `rag-agent reindex` with a model of another size, while that server
    // keeps answering: every chunk is embedded again, the directory
    // switches over, and the new model starts and finds what the old one
    // found.
    let before = embeddings.requests().len();
    let (success, stdout, stderr) = reindex(data.path(), &embeddings.url, "all-minilm-small").await;
    assert!(success, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("re-embedded 3 chunks of 3 documents"),
        "{stdout}"
    );
    assert!(stderr.contains("reindex: 3/3 documents"), "{stderr}");
    let reindexed: Vec<_> = embeddings.requests()[before..]
        .iter()
        .filter(|r| r["model"] == "all-minilm-small")
        .cloned()
        .collect();
    assert!(reindexed.len() >= 3, "probe and two batches: {reindexed:?}");
    assert!(
        top_dense_source(&server, "Who lends a value by borrowing?")
            .await
            .ends_with("borrow.txt"),
        "the old server answered throughout"
    );
    server.stop();
    assert!(data.path().join("vectors.previous.log").exists());
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &embedding_env(&embeddings.url, "all-minilm-small"),
    );
    let (_, health) = get_json(&server.at("/health")).await;
    assert_eq!(
        health["embedding_model"]["dimension"],
        rag_aws_emulator::openai::SMALL_EMBEDDING_DIMENSION
    );
    assert_eq!(health["vector_count"], 3, "{health}");
    assert_finds_three_pages(&server).await;
    server.stop();
    // The old model is refused now.
    let stderr = start_and_fail(data.path(), &embeddings.url, "nomic-embed-text").await;
    assert!(stderr.contains("rag-agent reindex"), "{stderr}");
}

/// Runs `rag-agent reindex` over `data` with `model`: whether it
/// succeeded, its stdout and its stderr.
async fn reindex(data: &std::path::Path, url: &str, model: &str) -> (bool, String, String) {
    let output = run(&["reindex", "--offline", "--data-dir"], data, url, model).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts the binary over `data` with `model` and returns what it printed
/// on failing.
async fn start_and_fail(data: &std::path::Path, url: &str, model: &str) -> String {
    let serve = ["serve", "--addr", "127.0.0.1:0", "--offline", "--data-dir"];
    let output = run(&serve, data, url, model).await;
    assert!(
        !output.status.success(),
        "{model} started over another model's index"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the binary to its end with `args`, then `data`, embedding with
/// `model` at `url`.
async fn run(
    args: &[&str],
    data: &std::path::Path,
    url: &str,
    model: &str,
) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (dir, url, name) = (data.to_path_buf(), url.to_string(), model.to_string());
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
        command
            .args(&args)
            .arg(&dir)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null());
        for (k, v) in embedding_env(&url, &name) {
            command.env(k, v);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}
