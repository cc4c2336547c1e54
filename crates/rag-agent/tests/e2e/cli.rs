//! The command-line client, run as a user runs it, against a real server:
//! every subcommand, human and `--json` output, and the exit codes of the
//! ways it fails.

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::*;

fn cli(server_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
    command
        .env("RAG_AGENT_URL", server_url)
        .env("NO_COLOR", "1")
        .env_remove("RAG_AGENT_HEADERS")
        .timeout(Duration::from_secs(600));
    command
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

fn run(mut command: Command, args: &[&str], stdin: &str) -> Run {
    let output = command.args(args).write_stdin(stdin).output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn copy_page(name: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(book_dir().join(name), to).unwrap();
}

#[test]
fn the_cli_drives_a_running_server() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &Stack::embedded(), &[]);
    let url = server.url.clone();
    let c = || cli(&url);

    let health = run(c(), &["health"], "");
    assert_eq!(health.code, 0, "{}", health.stderr);
    assert!(
        health.stdout.starts_with("rag-agent ok"),
        "{}",
        health.stdout
    );
    assert!(health.stdout.contains("all-MiniLM-L6-v2 (384 dims)"));
    assert_eq!(run(c(), &["health", "--json"], "").json()["status"], "ok");

    // A directory: the default include takes the pages, an exclude drops a
    // folder, source code is not a document type.
    let docs = tempfile::tempdir().unwrap();
    copy_page(
        "ch09-02-recoverable-errors-with-result.html",
        &docs.path().join("errors.html"),
    );
    copy_page(
        "ch04-01-what-is-ownership.html",
        &docs.path().join("guide/ownership.html"),
    );
    copy_page(
        "ch08-01-vectors.html",
        &docs.path().join("drafts/vectors.html"),
    );
    std::fs::write(docs.path().join("guide/main.rs"), "fn main() {}").unwrap();
    let dir = docs.path().to_str().unwrap();
    let ingest = run(c(), &["ingest", dir, "--exclude", "drafts", "--json"], "");
    assert_eq!(ingest.code, 0, "{}\n{}", ingest.stdout, ingest.stderr);
    let report = ingest.json();
    assert_eq!(report["summary"]["total"], 2, "{report}");
    assert_eq!(report["summary"]["indexed"], 2, "{report}");
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    let inputs: Vec<&str> = report["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["input"].as_str().unwrap())
        .collect();
    assert!(
        inputs.iter().any(|i| i.ends_with("errors.html")),
        "{inputs:?}"
    );
    assert!(
        inputs.iter().any(|i| i.ends_with("ownership.html")),
        "{inputs:?}"
    );

    // The same files again are duplicates; an explicit file is taken even
    // where an exclude would skip it; people get a table and a summary.
    let again = run(
        c(),
        &[
            "ingest",
            dir,
            "--include",
            "*.html",
            "--exclude",
            "drafts/**",
        ],
        "",
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("STATUS"), "{}", again.stdout);
    assert!(
        again.stdout.contains("INDEXED (duplicate)"),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stdout
            .contains("2 documents (2 indexed, 2 already present, 0 failed)"),
        "{}",
        again.stdout
    );

    // A failing document fails the command, says which and why.
    let empty = docs.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let vectors = docs.path().join("drafts/vectors.html");
    let failing = run(
        c(),
        &["ingest", empty.to_str().unwrap(), vectors.to_str().unwrap()],
        "",
    );
    assert_eq!(failing.code, 1, "{}\n{}", failing.stdout, failing.stderr);
    assert!(
        failing.stdout.contains("the document is empty"),
        "{}",
        failing.stdout
    );
    assert!(
        failing.stderr.contains("1 of 2 documents failed"),
        "{}",
        failing.stderr
    );
    let missing = run(c(), &["ingest", "/no/such/file.md"], "");
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("/no/such/file.md"),
        "{}",
        missing.stderr
    );

    // query: an answer with numbered sources, or the API's JSON.
    let question = "How do I propagate errors with the question mark operator?";
    let answer = run(c(), &["query", question, "--top-k", "3"], "");
    assert_eq!(answer.code, 0, "{}", answer.stderr);
    assert!(answer.stdout.contains("[1]"), "{}", answer.stdout);
    assert!(answer.stdout.contains("Sources"), "{}", answer.stdout);
    assert!(answer.stdout.contains("Recoverable Errors with Result"));
    let answer = run(c(), &["query", question, "--mode", "lexical", "--json"], "").json();
    assert_eq!(answer["search_mode"], "lexical");
    assert!(
        answer["sources"][0]["title"]
            .as_str()
            .unwrap()
            .starts_with("Recoverable Errors")
    );
    let bad = run(c(), &["query", question, "--top-k", "0", "--json"], "");
    assert_eq!(bad.code, 1);
    let error: Value = serde_json::from_str(bad.stderr.trim()).unwrap();
    assert_eq!(error["error"]["status"], 400, "{error}");

    // chat: one session keeps its conversation; /new starts another.
    let chat = run(
        c(),
        &["chat", "--json"],
        "What is ownership?\nAnd what are the rules?\n/new\nHow do I handle errors?\n/quit\nnever sent\n",
    );
    assert_eq!(chat.code, 0, "{}", chat.stderr);
    let events = chat.json_lines();
    let done: Vec<&Value> = events.iter().filter(|e| e["event"] == "done").collect();
    assert_eq!(done.len(), 3, "{events:?}");
    let first = done[0]["data"]["conversation_id"].as_str().unwrap();
    assert_eq!(done[1]["data"]["conversation_id"], first);
    assert_ne!(done[2]["data"]["conversation_id"], first);
    assert!(events.iter().any(|e| e["event"] == "delta"));
    assert!(events.iter().any(|e| e["event"] == "new_conversation"));
    let conversation = run(c(), &["chat"], "What is ownership?\n");
    assert_eq!(conversation.code, 0, "{}", conversation.stderr);
    assert!(
        conversation.stdout.contains("Sources"),
        "{}",
        conversation.stdout
    );
    let history = cli_get(&url, &format!("/conversations/{first}"));
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        4,
        "{history}"
    );

    // documents list / get / delete.
    let list = run(c(), &["documents", "list", "--json"], "").json();
    assert_eq!(list["count"], 3, "{list}");
    let table = run(c(), &["documents", "list", "--status", "indexed"], "");
    assert!(table.stdout.contains("3 documents"), "{}", table.stdout);
    let id = list["items"][0]["id"].as_str().unwrap().to_string();
    let detail = run(c(), &["documents", "get", &id, "--chunks", "--json"], "").json();
    assert_eq!(
        detail["chunks"].as_array().unwrap().len() as u64,
        detail["chunk_count"].as_u64().unwrap()
    );
    let human = run(c(), &["documents", "get", &id, "--chunks"], "");
    assert!(human.stdout.contains("#0 chars 0.."), "{}", human.stdout);
    let unconfirmed = run(c(), &["documents", "delete", &id], "");
    assert_eq!(unconfirmed.code, 2, "{}", unconfirmed.stderr);
    assert!(unconfirmed.stderr.contains("--yes"));
    let deleted = run(c(), &["documents", "delete", &id, "--yes"], "");
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let gone = run(c(), &["documents", "get", &id], "");
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("404"), "{}", gone.stderr);
    assert_eq!(
        run(c(), &["documents", "list", "--json"], "").json()["count"],
        2
    );

    // tools.
    let tools = run(c(), &["tools", "--json"], "").json();
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "vector_search")
    );
    let tools = run(c(), &["tools"], "");
    assert!(
        tools
            .stdout
            .contains("input: filter_document_id?, query, top_k?")
    );

    // Usage mistakes and an unreachable server have their own exit codes.
    let bad_header = run(c(), &["health", "--header", "no-colon"], "");
    assert_eq!(bad_header.code, 2, "{}", bad_header.stderr);
    let port = free_port();
    let unreachable = run(
        cli(&format!("http://127.0.0.1:{port}")),
        &["health", "--json"],
        "",
    );
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    let error: Value = serde_json::from_str(unreachable.stderr.trim()).unwrap();
    assert_eq!(error["error"]["code"], "unreachable");
    assert_eq!(run(c(), &["query"], "").code, 2);

    let completions = run(c(), &["completions", "bash"], "");
    assert_eq!(completions.code, 0);
    assert!(completions.stdout.contains("rag-agent"));
    assert!(completions.stdout.contains("documents"));

    // eval, over the server and then over its data directory embedded.
    let remaining = run(c(), &["documents", "list", "--json"], "").json();
    let mut lines = Vec::new();
    for doc in remaining["items"].as_array().unwrap() {
        let source = doc["source"].as_str().unwrap();
        let file = source.rsplit('/').next().unwrap();
        let question = match file {
            "errors.html" => "How do I propagate errors with the ? operator?",
            "ownership.html" => "What are the ownership rules?",
            "vectors.html" => "How do I add elements to a vector?",
            other => panic!("unexpected document {other}"),
        };
        lines.push(json!({"question": question, "expected_sources": [file]}).to_string());
    }
    let questions = docs.path().join("questions.jsonl");
    std::fs::write(&questions, lines.join("\n")).unwrap();
    let q = questions.to_str().unwrap();
    let eval = run(
        c(),
        &["eval", "--questions", q, "--min-hit-at-5", "1", "--json"],
        "",
    );
    assert_eq!(eval.code, 0, "{}\n{}", eval.stdout, eval.stderr);
    let report = eval.json();
    assert_eq!(report["questions"], 2);
    let modes: Vec<&str> = report["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes.len(), 3, "{report}");
    for mode in report["summary"].as_array().unwrap() {
        assert_eq!(mode["hit_at_5"], 1.0, "{report}");
        assert_eq!(mode["errors"], 0, "{report}");
    }
    let human = run(c(), &["eval", "--questions", q, "--modes", "lexical"], "");
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(human.stdout.contains("HIT@5"), "{}", human.stdout);
    server.stop();

    // Embedded over the same directory, with a question no document
    // answers: hit@5 falls to 2/3 and the bar fails the command.
    lines.push(
        json!({"question": "How do I write a proc macro?", "expected_sources": ["macros.html"]})
            .to_string(),
    );
    std::fs::write(&questions, lines.join("\n")).unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut embedded = c();
    embedded.env("RAG_AGENT_OFFLINE", "true");
    let gated = run(
        embedded,
        &[
            "eval",
            "--questions",
            q,
            "--data-dir",
            data_dir,
            "--modes",
            "dense",
            "--min-hit-at-5",
            "0.9",
            "--json",
        ],
        "",
    );
    assert_eq!(gated.code, 1, "{}\n{}", gated.stdout, gated.stderr);
    let report = gated.json();
    assert_eq!(report["passed"], false);
    let hit = report["summary"][0]["hit_at_5"].as_f64().unwrap();
    assert!((hit - 2.0 / 3.0).abs() < 1e-9, "{report}");
    assert!(gated.stderr.contains("under the bar"), "{}", gated.stderr);
}

/// A deployed API behind a key: the header reaches it, from the flag or
/// the environment, and without it the API's error is shown.
#[test]
fn auth_headers_reach_a_deployed_api() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = Router::new().route(
        "/Prod/health",
        get(|headers: HeaderMap| async move {
            if headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some("s3cret") {
                (
                    StatusCode::OK,
                    axum::Json(json!({"status": "ok", "version": "9"})),
                )
            } else {
                (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!({"message": "Forbidden"})),
                )
            }
        }),
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}/Prod", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let ok = run(
        cli(&base),
        &["health", "-H", "x-api-key: s3cret", "--json"],
        "",
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.json()["version"], "9");
    let mut from_env = cli(&base);
    from_env.env("RAG_AGENT_HEADERS", "x-api-key: s3cret");
    assert_eq!(run(from_env, &["health"], "").code, 0);
    let denied = run(cli(&base), &["health"], "");
    assert_eq!(denied.code, 1);
    assert!(denied.stderr.contains("403"), "{}", denied.stderr);
    assert!(denied.stderr.contains("Forbidden"), "{}", denied.stderr);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli_get(base: &str, path: &str) -> Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(get_json(&format!("{base}{path}"))).1
}

#[test]
fn a_file_over_five_megabytes_goes_by_direct_upload() {
    let data = tempfile::tempdir().unwrap();
    // With keys: the declaration carries the key, the PUT only its token.
    let stack = Stack::embedded();
    let key = crate::auth::make_key(&stack, data.path(), "default", "writer");
    let server = Server::start(data.path(), &stack, &[("RAG_AGENT_AUTH", "api_key")]);
    let files = tempfile::tempdir().unwrap();
    let big = files.path().join("pump-manual.pdf");
    std::fs::write(&big, crate::direct_uploads::make_pdf(4, 6 << 20)).unwrap();
    let mut command = cli(&server.url);
    command.env("RAG_AGENT_API_KEY", &key);
    let ingested = run(command, &["ingest", big.to_str().unwrap(), "--json"], "");
    assert_eq!(ingested.code, 0, "{}\n{}", ingested.stdout, ingested.stderr);
    let report = ingested.json();
    let document = &report["documents"][0];
    assert_eq!(document["status"], "INDEXED", "{report}");
    assert_eq!(document["chunks"], 4);
    assert!(document["bytes"].as_u64().unwrap() > 5 << 20);
    assert_eq!(document["via"], "direct_upload", "{report}");
}

/// The sources a lexical search for `words` finds.
fn sources_for(url: &str, words: &str) -> Vec<String> {
    let answer = run(
        cli(url),
        &["query", words, "--mode", "lexical", "--json"],
        "",
    );
    assert_eq!(answer.code, 0, "{}", answer.stderr);
    answer.json()["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn sync_mirrors_a_directory_adding_updating_and_deleting() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &Stack::embedded(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(root.join(name).parent().unwrap()).unwrap();
        std::fs::write(root.join(name), text).unwrap();
    };
    write(
        "quays.md",
        "# Quays\n\nThe north quay is dredged to twelve metres.\n",
    );
    write(
        "keepers/ines.md",
        "# Ines\n\nInes Duarte keeps the lighthouse log.\n",
    );
    write(
        "tides.md",
        "# Tides\n\nSpring tides flood the marshalling yard.\n",
    );
    write("drafts/skip.md", "# Draft\n\nNot for the index.\n");
    let sync = |extra: &[&str]| {
        let mut args = vec![
            "sync",
            root.to_str().unwrap(),
            "--exclude",
            "drafts",
            "--json",
        ];
        args.extend_from_slice(extra);
        let done = run(cli(&server.url), &args, "");
        assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
        done.json()["counts"].clone()
    };
    assert_eq!(
        sync(&[]),
        json!({"scanned": 3, "added": 3, "updated": 0, "deleted": 0, "unchanged": 0, "failed": 0})
    );
    assert_eq!(sync(&[])["unchanged"], 3);

    // One changed, one gone, one new.
    write(
        "keepers/ines.md",
        "# Ines\n\nInes Duarte now winds the foghorn clockwork.\n",
    );
    std::fs::remove_file(root.join("tides.md")).unwrap();
    write(
        "berths.md",
        "# Berths\n\nBerth seven takes the grain barges.\n",
    );
    // Without deleting first: the vanished file's document stays.
    assert_eq!(
        sync(&["--no-delete"]),
        json!({"scanned": 3, "added": 1, "updated": 1, "deleted": 0, "unchanged": 1, "failed": 0})
    );
    assert_eq!(
        sync(&[]),
        json!({"scanned": 3, "added": 0, "updated": 0, "deleted": 1, "unchanged": 3, "failed": 0})
    );
    let ines = root.join("keepers/ines.md").display().to_string();
    assert_eq!(sources_for(&server.url, "foghorn clockwork"), [ines]);
    assert!(sources_for(&server.url, "lighthouse log").is_empty());
    assert!(sources_for(&server.url, "marshalling yard").is_empty());
    let listed = cli_get(&server.url, "/documents?limit=100");
    let mut sources: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["source"].as_str().unwrap())
        .collect();
    sources.sort();
    let expected: Vec<String> = ["berths.md", "keepers/ines.md", "quays.md"]
        .iter()
        .map(|n| root.join(n).display().to_string())
        .collect();
    assert_eq!(sources, expected, "one document per file, no stale version");
}

#[test]
fn sync_of_a_source_the_server_reads_follows_its_job() {
    let allowed = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(allowed.path()).unwrap();
    std::fs::write(
        root.join("quays.md"),
        "# Quays\n\nThe north quay is dredged to twelve metres.\n",
    )
    .unwrap();
    std::fs::write(
        root.join("tides.md"),
        "# Tides\n\nSpring tides flood the marshalling yard.\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let roots = root.display().to_string();
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &[("RAG_AGENT_SYNC_ROOTS", roots.as_str())],
    );
    let source = format!("file://{}", root.display());
    let done = run(cli(&server.url), &["sync", &source, "--json"], "");
    assert_eq!(done.code, 0, "{}\n{}", done.stdout, done.stderr);
    let job = done.json();
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["counts"]["added"], 2, "{job}");
    // A source the server may not read: the job is refused, exit 1.
    let refused = run(
        cli(&server.url),
        &["sync", "s3://elsewhere/x/", "--json"],
        "",
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("RAG_AGENT_SYNC_BUCKETS"),
        "{}",
        refused.stderr
    );
}
