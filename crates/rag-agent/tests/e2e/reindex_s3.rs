//! `rag-agent reindex` on the AWS stack: every chunk in the S3 Vectors
//! index is embedded again (here by Titan v2 at 256 dimensions instead of
//! 1024) into a new index beside it while the server keeps answering from
//! the old one, and a server pointed at the new index finds the same
//! documents.

use std::process::{Command, Stdio};

use crate::support::{
    Server, Stack, THREE_PAGES, assert_finds_three_pages, ingest_pages, top_dense_source,
};

// moto and the emulator serve on this test's runtime while the test
// blocks on the binary, so they need threads of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_vectors_index_is_re_embedded_into_a_new_index() {
    let stack = Stack::aws().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    ingest_pages(&server, &THREE_PAGES).await;

    let env = stack.env();
    let dir = data.path().to_path_buf();
    let run = move |extra: Vec<&'static str>| {
        let env = env.clone();
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
            command
                .arg("reindex")
                .args(&extra)
                .args(["--offline", "--data-dir"])
                .arg(&dir)
                .env("RUST_LOG", "error")
                .env("VECTOR_DIMENSION", "256")
                .stdin(Stdio::null());
            command.envs(env);
            command.output().unwrap()
        })
    };
    // Without a new index to build, it says what to give.
    let refused = run(vec![]).await.unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--target-index"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let output = run(vec!["--target-index", "chunks-256"]).await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("re-embedded 3 chunks of 3 documents") && stdout.contains("chunks-256"),
        "{stdout}"
    );
    // The old index kept serving.
    assert!(
        top_dense_source(&server, "Who lends a value by borrowing?")
            .await
            .ends_with("borrow.txt")
    );
    server.stop();

    let server = Server::start(
        data.path(),
        &stack,
        &[
            ("S3_VECTOR_INDEX_NAME", "chunks-256"),
            ("VECTOR_DIMENSION", "256"),
        ],
    );
    assert_finds_three_pages(&server).await;
    server.stop();
}
