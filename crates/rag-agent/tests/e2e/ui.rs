//! The web UI in a real browser: Debian's headless Chromium driven by
//! playwright-core (`tests/ui/ui.test.mjs`) against the real binary, with
//! an agent behind `/chat` (the OpenAI-compatible model server scripted to
//! search, then stream a cited answer slowly enough to watch it grow).
//! Screenshots of every step land in `target/ui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rag_aws_emulator::{OpenAiServer, Reply, ReplyBlock};
use serde_json::{Value, json};

use crate::support::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("ui-screenshots")
}

/// The second sentence is nowhere in the book: the server flags its
/// citation, and the page marks it.
const ANSWER: &str = "The ? operator returns early with the error when a Result is an Err, \
    so the calling code handles it [1]. \
    It also mails each failure to a penguin colony in Antarctica [1].";

/// The browser scripts' folder and Chromium, both checked.
fn browser() -> (PathBuf, String) {
    let ui = repo_root().join("tests/ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in tests/ui first (scripts/test.sh does)"
    );
    let chromium =
        std::env::var("RAG_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's `chromium` (scripts/test.sh does) or set RAG_TEST_CHROMIUM"
    );
    (ui, chromium)
}

/// Runs one of `tests/ui`'s scripts in Chromium with `env`: whether it
/// exited 0, the JSON summary it prints last, and its stderr.
async fn run_script(
    script: &'static str,
    env: Vec<(&'static str, String)>,
) -> (bool, Value, String) {
    let (ui, chromium) = browser();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new("node");
        command
            .arg(script)
            .current_dir(&ui)
            .env("CHROMIUM_PATH", &chromium);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("run node (install Node.js)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary from {script}\n{stdout}\n{stderr}"));
    (output.status.success(), summary, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_works_in_a_real_browser() {
    let openai = OpenAiServer::start().await.unwrap();
    let question = "How do I propagate errors with the question mark operator?";
    openai.push_reply(Reply::tool_use(
        "call_1",
        "vector_search",
        json!({"query": "propagate errors question mark operator", "top_k": 3}),
    ));
    openai.push_reply(Reply {
        blocks: vec![ReplyBlock::Text(ANSWER.to_string())],
        stop_reason: "end_turn".into(),
        delta_delay: Duration::from_millis(120),
    });

    let files = tempfile::tempdir().unwrap();
    let page = files.path().join("recoverable-errors.html");
    std::fs::copy(
        book_dir().join("ch09-02-recoverable-errors-with-result.html"),
        &page,
    )
    .unwrap();
    let notes = files.path().join("release-notes.md");
    std::fs::write(
        &notes,
        "# Release notes\n\nVersion 2 adds streaming answers to the web UI.\n\nUploads take several files at once.\n",
    )
    .unwrap();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &[
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &openai.url),
            ("OPENAI_MODEL", "emulated"),
        ],
    );
    let url = server.url.clone();
    let shots = screenshots_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let (succeeded, summary, stderr) = run_script(
        "ui.test.mjs",
        vec![
            ("UI_BASE_URL", url),
            ("UI_SCREENSHOTS", shots.display().to_string()),
            (
                "UI_FILES",
                format!("{}\n{}", page.display(), notes.display()),
            ),
            ("UI_QUESTION", question.to_string()),
        ],
    )
    .await;
    assert!(
        succeeded && summary["ok"] == true,
        "browser test failed: {}\n{stderr}",
        serde_json::to_string_pretty(&summary).unwrap()
    );

    // The answer was seen growing: several partial texts before the end.
    let partials = summary["partial_answers"].as_array().unwrap();
    assert!(partials.len() >= 3, "{summary}");
    assert!(
        summary["answer"]
            .as_str()
            .unwrap()
            .starts_with("The ? operator")
    );
    assert!(summary["tool"].as_str().unwrap().contains("vector_search"));
    let unsupported = summary["unsupported"].as_str().unwrap();
    assert!(unsupported.contains("penguin colony"), "{summary}");
    assert!(
        summary["groundedness_footer"]
            .as_str()
            .unwrap()
            .contains("% grounded"),
        "{summary}"
    );
    assert!(
        summary["citation_title"]
            .as_str()
            .unwrap()
            .starts_with("[1] Recoverable Errors with Result"),
        "{summary}"
    );
    assert!(
        summary["document_chunks"].as_u64().unwrap() > 10,
        "{summary}"
    );
    let toast = summary["error_toast"].as_str().unwrap();
    assert!(
        toast.contains("127.0.0.1") || toast.contains("address"),
        "{toast}"
    );
    assert_eq!(
        summary["console_errors"].as_array().unwrap().len(),
        0,
        "{summary}"
    );
    // Only the refused URL failed; every page, asset and API call worked.
    let failed: Vec<&str> = summary["failed_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("400 POST") && failed[0].ends_with("/documents/ingest"),
        "{failed:?}"
    );
    assert_eq!(summary["steps"].as_array().unwrap().len(), 14, "{summary}");
    // The page reached nothing but its own server: no font, script,
    // analytics or image from anywhere else.
    let requests = summary["requests"].as_array().unwrap();
    assert!(requests.len() > 10, "{summary}");
    let own = format!("{}/", server.url);
    let elsewhere: Vec<&str> = requests
        .iter()
        .map(|r| r.as_str().unwrap())
        .filter(|url| !url.starts_with(&own) && !url.starts_with("data:"))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests left the server: {elsewhere:?}"
    );
    // A request may go unanswered when the page itself cancels it (a
    // stream it no longer needs); none may be blocked or refused.
    for unanswered in summary["unanswered"].as_array().unwrap() {
        let error = unanswered["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("ABORTED") && unanswered["url"].as_str().unwrap().starts_with(&own),
            "a request failed: {unanswered}"
        );
    }
    assert_eq!(summary["added_by_drop_and_paste"], true, "{summary}");
    assert_eq!(summary["direct_upload"], true, "{summary}");

    // What the browser did reached the server.
    // Two uploads, one drop, one direct upload, one paste, one deleted.
    let (_, list) = get_json(&server.at("/documents")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 4, "{list}");
    let conversation = summary["conversation"].as_str().unwrap();
    assert!(conversation.starts_with("Conversation "), "{conversation}");

    // The CLI's chat shows the agent's tool activity too (the model server
    // is unscripted now: it searches for the question, then answers).
    let url = server.url.clone();
    let chat = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rag-agent"))
            .args(["chat", "--url", &url])
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(b"What is the question mark operator?\n")?;
                child.wait_with_output()
            })
            .unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&chat.stdout);
    assert!(
        chat.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&chat.stderr)
    );
    assert!(out.contains("→ vector_search {\"query\""), "{out}");
    assert!(out.contains("✓ vector_search: "), "{out}");
    assert!(out.contains("[1]") && out.contains("Sources"), "{out}");
    server.stop();
}

/// Against `RAG_AGENT_AUTH=api_key`: the page asks for a key on 401, asks
/// again when one is refused, keeps it in sessionStorage only, and offers
/// a reader nothing it may not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_asks_for_a_key_and_follows_its_role() {
    let data = tempfile::tempdir().unwrap();
    let stack = Stack::embedded();
    let reader = crate::auth::make_key(&stack, data.path(), "team-a", "reader");
    let writer = crate::auth::make_key(&stack, data.path(), "team-a", "writer");
    let server = Server::start(data.path(), &stack, &[("RAG_AGENT_AUTH", "api_key")]);
    let (status, body) = crate::auth::call(
        "POST",
        &server.at("/documents/ingest"),
        Some(&writer),
        Some(&json!({"title": "Team notes", "content": "Keys are kept per tab.", "wait": true})),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let url = server.url.clone();
    let shots = screenshots_dir().join("keys");
    let _ = std::fs::remove_dir_all(&shots);
    let (succeeded, summary, stderr) = run_script(
        "keys.test.mjs",
        vec![
            ("UI_BASE_URL", url),
            ("UI_SCREENSHOTS", shots.display().to_string()),
            ("UI_READER_KEY", reader),
            ("UI_WRITER_KEY", writer),
        ],
    )
    .await;
    assert!(succeeded && summary["ok"] == true, "{summary}\n{stderr}");
    assert_eq!(summary["reader_who"], "team-a · reader", "{summary}");
    assert_eq!(summary["writer_who"], "team-a · writer", "{summary}");
    assert_eq!(summary["reader_rows"], 1, "{summary}");
    assert_eq!(
        summary["console_errors"].as_array().unwrap().len(),
        0,
        "{summary}"
    );
    assert_eq!(summary["steps"].as_array().unwrap().len(), 4, "{summary}");
    server.stop();
}
