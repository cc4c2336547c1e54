//! Starting the server binary and talking to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use rag_aws_emulator::{Emulator, MotoServer};
use serde_json::Value;

/// Which backend set the binary runs on. The same tests run on both.
pub enum Stack {
    /// SQLite, the local vector index, files on disk, MiniLM in-process,
    /// the extractive answerer.
    Embedded,
    /// DynamoDB and S3 on moto; S3 Vectors and Bedrock on the emulator.
    Aws(Box<AwsStack>),
}

pub struct AwsStack {
    pub moto: MotoServer,
    /// Extra environment for the binary on this stack.
    pub extra_env: Vec<(String, String)>,
    pub emulator: Emulator,
    pub bucket: String,
    pub table: String,
    pub vector_bucket: String,
    pub index: String,
}

pub const BEDROCK_LLM: &str = "anthropic.claude-emulated-v1:0";

pub fn aws_client_config(url: &str) -> (aws_sdk_s3::Client, aws_sdk_dynamodb::Client) {
    let creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests");
    let s3 = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds.clone())
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    let dynamodb = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(url)
        .build();
    (
        aws_sdk_s3::Client::from_conf(s3),
        aws_sdk_dynamodb::Client::from_conf(dynamodb),
    )
}

impl Stack {
    pub fn embedded() -> Stack {
        Stack::Embedded
    }

    /// Starts moto and the emulator (whose Titan embeddings come from the
    /// same MiniLM model, zero-padded, so rankings match the embedded run)
    /// and creates the bucket and table the template would create.
    pub async fn aws() -> Stack {
        Stack::aws_with(&[]).await
    }

    /// The AWS stack with extra environment for the binary.
    pub async fn aws_with(extra_env: &[(&str, &str)]) -> Stack {
        let moto = MotoServer::start();
        let model_dir = rag_local::model_files::resolve(&model_candidates())
            .expect("the MiniLM model; run `rag-agent models fetch`");
        let embedder: Arc<dyn rag_core::Embedder> =
            Arc::new(rag_local::MiniLmEmbedder::load(&model_dir).expect("load MiniLM"));
        let emulator = Emulator::start_with(Some(embedder)).await.unwrap();
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let stack = AwsStack {
            moto,
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            emulator,
            bucket: format!("docs-{suffix}"),
            table: format!("rag-{suffix}"),
            vector_bucket: format!("vectors-{suffix}"),
            index: "chunks".to_string(),
        };
        let (s3, dynamodb) = aws_client_config(&stack.moto.url);
        s3.create_bucket()
            .bucket(&stack.bucket)
            .send()
            .await
            .unwrap();
        rag_aws::DynamoDbStore::new(dynamodb, &stack.table)
            .create_table()
            .await
            .expect("create the table");
        Stack::Aws(Box::new(stack))
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let Stack::Aws(aws) = self else {
            return Vec::new();
        };
        [
            ("METADATA_BACKEND", "dynamodb"),
            ("DOCUMENT_BACKEND", "s3"),
            ("VECTOR_BACKEND", "s3vectors"),
            ("EMBEDDING_PROVIDER", "bedrock"),
            ("LLM_PROVIDER", "bedrock"),
            ("BEDROCK_LLM_MODEL_ID", BEDROCK_LLM),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("S3_BUCKET_NAME", &aws.bucket),
            ("S3_VECTOR_BUCKET_NAME", &aws.vector_bucket),
            ("S3_VECTOR_INDEX_NAME", &aws.index),
            ("DYNAMODB_TABLE_NAME", &aws.table),
            ("AWS_ENDPOINT_URL_S3", &aws.moto.url),
            ("AWS_ENDPOINT_URL_DYNAMODB", &aws.moto.url),
            ("AWS_ENDPOINT_URL_STS", &aws.moto.url),
            ("AWS_ENDPOINT_URL_S3VECTORS", &aws.emulator.url),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &aws.emulator.url),
            ("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", &aws.emulator.url),
            ("BEDROCK_KNOWLEDGE_BASE_ID", "KB1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(aws.extra_env.iter().cloned())
        .collect()
    }

    /// A tenant's usage counters of yesterday and today as the stack's
    /// DynamoDB table holds them (what a process wrote before it ended).
    pub async fn stored_usage(&self, tenant: &str) -> Vec<rag_core::usage::DailyUsage> {
        use rag_core::usage::UsageStore;
        let Stack::Aws(aws) = self else {
            panic!("only the AWS stack keeps usage in DynamoDB");
        };
        let (_, dynamodb) = aws_client_config(&aws.moto.url);
        let today = chrono::Utc::now().date_naive();
        rag_aws::DynamoDbStore::new(dynamodb, &aws.table)
            .usage(
                &rag_core::Tenant::new(tenant).unwrap(),
                today.pred_opt().unwrap(),
                today,
            )
            .await
            .expect("read usage from the table")
    }

    pub fn emulator(&self) -> Option<&Emulator> {
        match self {
            Stack::Aws(aws) => Some(&aws.emulator),
            Stack::Embedded => None,
        }
    }

    /// The search modes this backend set offers: DynamoDB has no lexical
    /// index, so the AWS set is dense only.
    pub fn modes(&self) -> &'static [&'static str] {
        match self {
            Stack::Embedded => &["dense", "lexical", "hybrid"],
            Stack::Aws(_) => &["dense"],
        }
    }

    pub fn default_mode(&self) -> &'static str {
        match self {
            Stack::Embedded => "hybrid",
            Stack::Aws(_) => "dense",
        }
    }

    pub fn model_id(&self) -> &'static str {
        match self {
            Stack::Embedded => "extractive",
            Stack::Aws(_) => BEDROCK_LLM,
        }
    }

    pub fn dimension(&self) -> u64 {
        match self {
            Stack::Embedded => 384,
            Stack::Aws(_) => 1024,
        }
    }

    /// Vectors stored: from `/health` on the local index, from the
    /// emulator for S3 Vectors (which has no count API).
    pub async fn vector_count(&self, server: &Server) -> u64 {
        match self {
            Stack::Embedded => {
                let (_, health) = get_json(&server.at("/health")).await;
                health["vector_count"].as_u64().expect("local vector count")
            }
            Stack::Aws(aws) => aws.emulator.vector_count(&aws.vector_bucket, &aws.index) as u64,
        }
    }

    /// Whether any stored file of the document remains.
    pub async fn has_files(&self, server: &Server, document_id: &str) -> bool {
        match self {
            Stack::Embedded => server
                .data_dir
                .join("files/documents")
                .join(document_id)
                .exists(),
            Stack::Aws(aws) => {
                let (s3, _) = aws_client_config(&aws.moto.url);
                let listed = s3
                    .list_objects_v2()
                    .bucket(&aws.bucket)
                    .prefix(format!("documents/default/{document_id}/"))
                    .send()
                    .await
                    .unwrap();
                listed.key_count().unwrap_or(0) > 0
            }
        }
    }
}

fn model_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::var("RAG_AGENT_MODEL_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(cache) = dirs::cache_dir() {
        candidates.push(
            cache
                .join("rag-agent/models")
                .join(rag_local::model_files::MODEL_ID),
        );
    }
    candidates
}

pub struct Server {
    pub url: String,
    pub data_dir: PathBuf,
    child: Child,
}

impl Server {
    /// Starts `rag-agent serve` on a free 127.0.0.1 port on `stack`.
    pub fn start(data_dir: &Path, stack: &Stack, extra_env: &[(&str, &str)]) -> Server {
        Server::spawn(data_dir, stack, extra_env, Stdio::inherit()).0
    }

    /// [`Server::start`], keeping every line the server logs (stderr),
    /// which `extra_env` may set `RUST_LOG` for.
    pub fn start_logged(
        data_dir: &Path,
        stack: &Stack,
        extra_env: &[(&str, &str)],
    ) -> (Server, Arc<Mutex<Vec<String>>>) {
        let (server, stderr) = Server::spawn(data_dir, stack, extra_env, Stdio::piped());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        let stderr = stderr.expect("a piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        (server, lines)
    }

    fn spawn(
        data_dir: &Path,
        stack: &Stack,
        extra_env: &[(&str, &str)],
        stderr: Stdio,
    ) -> (Server, Option<std::process::ChildStderr>) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--offline", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in stack.env() {
            command.env(k, v);
        }
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start rag-agent");
        let stderr = child.stderr.take();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("rag-agent printed nothing")
            .expect("read stdout");
        let url = line
            .strip_prefix("rag-agent listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let server = Server {
            url,
            data_dir: data_dir.to_path_buf(),
            child,
        };
        server.wait_until_started();
        (server, stderr)
    }

    /// The server answers while the embedding model loads in the
    /// background (`/health` says `starting`, with a warning); tests start
    /// from a loaded model. Plain blocking HTTP, because callers may or may
    /// not be inside a runtime.
    fn wait_until_started(&self) {
        let address = self
            .url
            .strip_prefix("http://")
            .expect("an http URL")
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut stream = std::net::TcpStream::connect(&address).expect("connect to rag-agent");
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .expect("send GET /health");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("read /health");
            let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
            let health: Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("/health is not JSON ({e}): {response}"));
            if health["status"] != "starting" {
                return;
            }
            let warnings = health["warnings"].to_string();
            assert!(warnings.contains("embedding model is loading"), "{health}");
            assert!(Instant::now() < deadline, "still starting: {health}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still the one that was started: not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib * 1024
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the server to shut down as a service manager would (SIGTERM)
    /// and waits for it to exit cleanly.
    pub fn terminate(mut self) {
        self.send_sigterm();
        let status = self.wait_for_exit(Duration::from_secs(30));
        assert!(status.success(), "rag-agent exited with {status}");
    }

    /// Sends SIGTERM, as ECS does when it stops a task, and returns at once.
    pub fn send_sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit; panics after `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for rag-agent") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rag-agent still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Sends a request; its status and JSON body (null if the body is not
/// JSON).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn get_json(url: &str) -> (u16, Value) {
    send(client().get(url)).await
}

pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    send(client().post(url).json(body)).await
}

/// `GET /tools`: the listing, and the tools' names in its order.
pub async fn list_tools(server: &Server) -> (Value, Vec<String>) {
    let (status, tools) = get_json(&server.at("/tools")).await;
    assert_eq!(status, 200, "{tools}");
    let names = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    (tools, names)
}

/// Polls until no document is PENDING or PROCESSING.
pub async fn wait_until_settled(server: &Server, timeout: Duration) {
    let started = Instant::now();
    loop {
        let mut busy = 0;
        for status in ["PENDING", "PROCESSING"] {
            let (_, page) =
                get_json(&server.at(&format!("/documents?status={status}&limit=1000"))).await;
            busy += page["items"].as_array().map(Vec::len).unwrap_or(0);
        }
        if busy == 0 {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{busy} documents still in flight after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn upload(server: &Server, path: &Path) -> (u16, Value) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    upload_as(server, path, name).await
}

/// Uploads a file under another file name (a path under its book, say).
pub async fn upload_as(server: &Server, path: &Path, name: String) -> (u16, Value) {
    let bytes = std::fs::read(path).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name),
    );
    send(
        client()
            .post(server.at("/documents/upload"))
            .multipart(form),
    )
    .await
}

/// The Rust book that ships with the toolchain.
pub fn book_dir() -> PathBuf {
    toolchain_doc("book")
}

/// A book of the toolchain's own documentation (`book`, `cargo`, ...).
pub fn toolchain_doc(book: &str) -> PathBuf {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    PathBuf::from(sysroot.trim())
        .join("share/doc/rust/html")
        .join(book)
}

/// The book's content pages: not redirects, not the whole-book print page
/// or the table of contents itself, not the tiny "this page moved" stubs.
pub fn book_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(book_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !matches!(name.as_ref(), "print.html" | "toc.html" | "404.html")
        })
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.len() >= 6000 && !text.contains("http-equiv=\"refresh\"")
        })
        .collect();
    pages.sort();
    pages
}

/// Runs `rag-agent eval --json` against `server` with a question set of
/// `tests/eval`, and returns its report after checking it ran cleanly.
pub async fn eval_report(server: &Server, questions: &str, extra: &[&str]) -> Value {
    let questions = format!(
        "{}/../../tests/eval/{questions}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut args: Vec<String> = [
        "eval",
        "--url",
        &server.url,
        "--questions",
        &questions,
        "--json",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    let eval = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rag-agent"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_slice(&eval.stdout).unwrap_or_else(|e| {
        panic!(
            "eval printed no JSON ({e}): {}",
            String::from_utf8_lossy(&eval.stderr)
        )
    });
    assert!(eval.status.success(), "{report:#}");
    report
}

/// Checks that the unanswerable questions of an eval report were declined
/// (no source, nothing cited) in dense and hybrid search at least `min`
/// of the time; lexical search has no threshold and is not held to it.
pub fn check_abstention(report: &Value, unanswerable: u64, min: f64) {
    for mode in report["summary"].as_array().unwrap() {
        assert_eq!(mode["unanswerable_questions"], unanswerable, "{mode}");
        if mode["search_mode"] != "lexical" {
            assert!(mode["abstention"].as_f64().unwrap() >= min, "{mode}");
        }
        assert_eq!(mode["answered_without_sources"], 0, "{mode}");
    }
}

/// Checks every mode of an eval report against its bars (`(mode, hit@1,
/// MRR@10)`), with no errors, and that hybrid's MRR@10 trails the better of
/// its two halves by at most `slack` where all three ran.
pub fn check_eval_bars(report: &Value, bars: &[(&str, f64, f64)], slack: f64) {
    let metric = |mode: &Value, name: &str| mode[name].as_f64().unwrap();
    let mut mrr = std::collections::HashMap::new();
    for mode in report["summary"].as_array().unwrap() {
        let name = mode["mode"].as_str().unwrap();
        let (_, min_hit_at_1, min_mrr) = bars
            .iter()
            .find(|(m, _, _)| *m == name)
            .unwrap_or_else(|| panic!("no bar for mode {name}"));
        assert!(metric(mode, "hit_at_1") >= *min_hit_at_1, "{mode}");
        assert!(metric(mode, "mrr_at_10") >= *min_mrr, "{mode}");
        assert_eq!(mode["errors"], 0, "{mode}");
        mrr.insert(name.to_string(), metric(mode, "mrr_at_10"));
    }
    if let (Some(hybrid), Some(dense), Some(lexical)) =
        (mrr.get("hybrid"), mrr.get("dense"), mrr.get("lexical"))
    {
        let best_half = dense.max(*lexical);
        assert!(
            *hybrid >= best_half - slack,
            "hybrid MRR@10 {hybrid} is under the better half's {best_half}"
        );
    }
}

/// Three short pages on unrelated subjects, for tests that check which
/// one a search finds.
pub const THREE_PAGES: [(&str, &str); 3] = [
    (
        "weather.txt",
        "The weather in the mountains changes quickly in spring.",
    ),
    (
        "borrow.txt",
        "Borrowing lends a value without taking ownership of it.",
    ),
    (
        "harbour.txt",
        "Ferries leave the harbour every hour until midnight.",
    ),
];

/// Uploads `pages` as text files and waits until they are indexed.
pub async fn ingest_pages(server: &Server, pages: &[(&str, &str)]) {
    let files = tempfile::tempdir().unwrap();
    for (name, text) in pages {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (status, body) = upload(server, &path).await;
        assert!([200, 202].contains(&status), "{body}");
    }
    wait_until_settled(server, Duration::from_secs(120)).await;
}

/// The source of the best passage dense search finds for `query`.
pub async fn top_dense_source(server: &Server, query: &str) -> String {
    let (status, answer) = post_json(
        &server.at("/query"),
        &serde_json::json!({"query": query, "mode": "dense", "top_k": 1}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["sources"][0]["source"]
        .as_str()
        .unwrap_or_else(|| panic!("no source: {answer}"))
        .to_string()
}

/// Dense search finds each of `THREE_PAGES` by a question about it.
pub async fn assert_finds_three_pages(server: &Server) {
    for (query, page) in [
        ("Who lends a value by borrowing?", "borrow.txt"),
        ("When do ferries leave the harbour?", "harbour.txt"),
    ] {
        assert!(
            top_dense_source(server, query).await.ends_with(page),
            "{query}"
        );
    }
}
