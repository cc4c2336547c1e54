//! schemathesis (PyPI) against the real binary's `/openapi.json`: every
//! check, over generated valid and invalid requests, with no failure. The
//! deliberate exclusions and their reasons are in
//! `tests/schemathesis/schemathesis.toml`, which also bounds the run.
//!
//!     RAG_TEST_SCHEMATHESIS=$VENV/bin/st cargo test -p rag-agent --test e2e openapi

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_what_the_server_does() {
    let st = std::env::var("RAG_TEST_SCHEMATHESIS")
        .expect("RAG_TEST_SCHEMATHESIS must name schemathesis' `st` (scripts/test.sh installs it)");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &Stack::embedded(), &[]);
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/schemathesis");
    let spec = server.at("/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .args(["run", &spec, "--no-color"])
            .current_dir(config)
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: String = stdout
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{summary}");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "no test cases ran:\n{stdout}");
    let (s, health) = get_json(&server.at("/health")).await;
    assert_eq!(s, 200, "{health}");
}
