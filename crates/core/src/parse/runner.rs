//! Where parsing runs. A parse is CPU-bound work on bytes a stranger sent,
//! so it never runs on the async runtime, always under a time budget, and
//! its output is bounded. Two runners:
//!
//! - [`ProcessParser`] runs each parse of markup, PDF or an Office file
//!   (see [`ContentKind::needs_isolation`]) in a child process (the
//!   binary's hidden `parse-worker` command) with its own memory and CPU
//!   limits and no environment. Whatever the file does to the parser (a
//!   stack overflow, an allocation failure, a loop), the child dies or is
//!   killed at the deadline and the document fails; the server is untouched.
//!   The binary uses this one.
//! - [`ThreadParser`] runs the parse on a thread of its own with a known
//!   stack size. It relies on the parsers' own limits (iterative walks,
//!   nesting and inflation checks) and cannot stop a parse at its deadline,
//!   only stop waiting for it; it serves tests and embedders of the crate.
//!
//! Plain text, Markdown and CSV/TSV need no isolation and are parsed in
//! place on a blocking thread by both.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::{ContentKind, ParsedDocument, Section, parse};
use crate::error::ParseError;

/// The stack of a parse thread. Our walks need little; the margin is for
/// the libraries underneath.
pub const PARSE_STACK_BYTES: usize = 64 << 20;

/// Limits every parse runs under.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Wall-clock budget of one parse (`RAG_AGENT_PARSE_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Extracted text may be at most this many times the upload...
    pub text_multiple: usize,
    /// ...and never more than this many bytes.
    pub max_text_bytes: usize,
    /// Address space of a parse worker process.
    pub worker_memory_bytes: u64,
    /// Parses running at once; further ones wait.
    pub concurrency: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            text_multiple: 16,
            max_text_bytes: 64 << 20,
            worker_memory_bytes: 768 << 20,
            concurrency: 2,
        }
    }
}

impl ParseLimits {
    /// The most text a document of `input_len` bytes may yield (at least
    /// 1 MiB, so small compressed PDFs still fit).
    pub fn max_text_for(&self, input_len: usize) -> usize {
        input_len
            .saturating_mul(self.text_multiple)
            .max(1 << 20)
            .min(self.max_text_bytes)
    }

    fn check_text(&self, input_len: usize, text_len: usize) -> Result<(), ParseError> {
        let limit = self.max_text_for(input_len);
        if text_len > limit {
            return Err(text_too_large(limit));
        }
        Ok(())
    }
}

fn text_too_large(limit: usize) -> ParseError {
    ParseError::ExpansionLimit(format!(
        "the extracted text is larger than {} MiB",
        (limit >> 20).max(1)
    ))
}

/// Turns uploaded bytes of a known kind into text. Implementations bound
/// time, memory and output; see the module header.
#[async_trait]
pub trait DocumentParser: Send + Sync {
    async fn parse(&self, kind: ContentKind, bytes: Bytes) -> Result<ParsedDocument, ParseError>;

    /// For logs and `/health`: `thread` or `process`.
    fn name(&self) -> &'static str;
}

/// Parses on a dedicated thread; see the module header.
pub struct ThreadParser {
    limits: ParseLimits,
    permits: Arc<Semaphore>,
}

impl ThreadParser {
    pub fn new(limits: ParseLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            limits,
        }
    }
}

impl Default for ThreadParser {
    fn default() -> Self {
        Self::new(ParseLimits::default())
    }
}

#[async_trait]
impl DocumentParser for ThreadParser {
    async fn parse(&self, kind: ContentKind, bytes: Bytes) -> Result<ParsedDocument, ParseError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ParseError::Internal("the parser is shutting down".to_string()))?;
        let (done, result) = tokio::sync::oneshot::channel();
        let input_len = bytes.len();
        // The permit goes with the thread: a parse that outlives its
        // deadline still counts against the concurrency limit until it ends.
        std::thread::Builder::new()
            .name("rag-parse".to_string())
            .stack_size(PARSE_STACK_BYTES)
            .spawn(move || {
                let outcome =
                    std::panic::catch_unwind(|| parse(kind, &bytes)).unwrap_or_else(|_| {
                        Err(ParseError::Malformed {
                            format: kind.mime(),
                            message: "the parser could not read this file".to_string(),
                        })
                    });
                drop(permit);
                let _ = done.send(outcome);
            })
            .map_err(|e| ParseError::Internal(format!("starting a parse thread: {e}")))?;
        let parsed = match tokio::time::timeout(self.limits.timeout, result).await {
            Ok(Ok(outcome)) => outcome?,
            Ok(Err(_)) => return Err(ParseError::Internal("the parse thread vanished".into())),
            Err(_) => {
                return Err(ParseError::Timeout {
                    seconds: self.limits.timeout.as_secs(),
                });
            }
        };
        self.limits.check_text(input_len, parsed.text.len())?;
        Ok(parsed)
    }

    fn name(&self) -> &'static str {
        "thread"
    }
}

/// How to start a parse worker: the program and the arguments before the
/// content type, e.g. the running binary and `["parse-worker"]`.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// Parses what needs isolation in child processes; see the module header.
pub struct ProcessParser {
    command: WorkerCommand,
    limits: ParseLimits,
    permits: Arc<Semaphore>,
    inline: ThreadParser,
}

impl ProcessParser {
    pub fn new(command: WorkerCommand, limits: ParseLimits) -> Self {
        Self {
            command,
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            inline: ThreadParser::new(limits),
            limits,
        }
    }

    async fn run_worker(
        &self,
        kind: ContentKind,
        bytes: Bytes,
    ) -> Result<ParsedDocument, ParseError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ParseError::Internal("the parser is shutting down".to_string()))?;
        let max_text = self.limits.max_text_for(bytes.len());
        let mut child = tokio::process::Command::new(&self.command.program)
            .args(&self.command.args)
            .arg(kind.mime())
            .env_clear()
            .env(
                WORKER_MEMORY_ENV,
                self.limits.worker_memory_bytes.to_string(),
            )
            .env(
                WORKER_CPU_ENV,
                (self.limits.timeout.as_secs() + 1).to_string(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ParseError::Internal(format!("starting the parse worker: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let feed = async move {
            // A worker that dies early closes the pipe; its exit status says why.
            let _ = stdin.write_all(&bytes).await;
            drop(stdin);
        };
        // The reply is JSON-escaped text: allow for escapes and the frame.
        let reply_limit = max_text.saturating_mul(2) + 4096;
        let work = async {
            let ((), reply, diagnostics) = tokio::join!(
                feed,
                read_limited(stdout, reply_limit),
                read_limited(stderr, 16 << 10)
            );
            (reply, diagnostics)
        };
        let (reply, diagnostics) = match tokio::time::timeout(self.limits.timeout, work).await {
            Ok(outputs) => outputs,
            Err(_) => {
                let _ = child.kill().await;
                return Err(ParseError::Timeout {
                    seconds: self.limits.timeout.as_secs(),
                });
            }
        };
        let (reply, overflowed) =
            reply.map_err(|e| ParseError::Internal(format!("reading the parse worker: {e}")))?;
        if overflowed {
            let _ = child.kill().await;
            return Err(text_too_large(max_text));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| ParseError::Internal(format!("waiting for the parse worker: {e}")))?;
        let diagnostics = diagnostics.map(|(d, _)| d).unwrap_or_default();
        if !status.success() {
            return Err(classify_worker_death(
                kind,
                &String::from_utf8_lossy(&diagnostics),
                self.limits.worker_memory_bytes,
            ));
        }
        let parsed = match serde_json::from_slice::<WorkerReply>(&reply) {
            Ok(WorkerReply::Parsed {
                title,
                text,
                sections,
            }) => ParsedDocument {
                kind,
                title,
                text,
                sections,
            },
            Ok(WorkerReply::Failed(failure)) => return Err(failure.into_error(kind)),
            Err(e) => {
                return Err(ParseError::Internal(format!(
                    "the parse worker answered nonsense: {e}"
                )));
            }
        };
        if parsed.text.len() > max_text {
            return Err(text_too_large(max_text));
        }
        Ok(parsed)
    }
}

#[async_trait]
impl DocumentParser for ProcessParser {
    async fn parse(&self, kind: ContentKind, bytes: Bytes) -> Result<ParsedDocument, ParseError> {
        if kind.needs_isolation() {
            self.run_worker(kind, bytes).await
        } else {
            self.inline.parse(kind, bytes).await
        }
    }

    fn name(&self) -> &'static str {
        "process"
    }
}

/// Reads at most `limit` bytes and drains the rest; says whether there
/// was more.
async fn read_limited(
    mut reader: impl AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut buffer).await?;
        if n == 0 {
            return Ok((kept, false));
        }
        if kept.len() + n > limit {
            return Ok((kept, true));
        }
        kept.extend_from_slice(&buffer[..n]);
    }
}

/// A worker that died tells why on stderr: Rust prints a line for a stack
/// overflow and for an allocation the memory limit refused.
fn classify_worker_death(kind: ContentKind, stderr: &str, memory: u64) -> ParseError {
    if stderr.contains("overflowed its stack") {
        ParseError::TooComplex(format!(
            "this {} nests too deeply for the parser",
            kind.mime()
        ))
    } else if stderr.contains("memory allocation of") || stderr.contains("out of memory") {
        ParseError::ExpansionLimit(format!(
            "parsing it needs more than the parser's {} MiB",
            memory >> 20
        ))
    } else {
        ParseError::Malformed {
            format: kind.mime(),
            message: "the parser stopped on this file".to_string(),
        }
    }
}

/// The worker's limits reach it through these variables, set by the
/// parent; the worker's environment is otherwise empty.
pub const WORKER_MEMORY_ENV: &str = "RAG_PARSE_WORKER_MEMORY_BYTES";
pub const WORKER_CPU_ENV: &str = "RAG_PARSE_WORKER_CPU_SECS";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerReply {
    Parsed {
        title: Option<String>,
        text: String,
        #[serde(default)]
        sections: Vec<Section>,
    },
    Failed(WorkerFailure),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
enum WorkerFailure {
    Unsupported(String),
    Empty,
    Malformed(String),
    TooComplex(String),
    ExpansionLimit(String),
}

impl WorkerFailure {
    fn from_error(error: ParseError) -> Self {
        match error {
            ParseError::UnsupportedContentType(m) => WorkerFailure::Unsupported(m),
            ParseError::Empty => WorkerFailure::Empty,
            ParseError::Malformed { message, .. } => WorkerFailure::Malformed(message),
            ParseError::TooComplex(m) => WorkerFailure::TooComplex(m),
            ParseError::ExpansionLimit(m) => WorkerFailure::ExpansionLimit(m),
            other @ (ParseError::Timeout { .. } | ParseError::Internal(_)) => {
                WorkerFailure::Malformed(other.to_string())
            }
        }
    }

    fn into_error(self, kind: ContentKind) -> ParseError {
        match self {
            WorkerFailure::Unsupported(m) => ParseError::UnsupportedContentType(m),
            WorkerFailure::Empty => ParseError::Empty,
            WorkerFailure::Malformed(message) => ParseError::Malformed {
                format: kind.mime(),
                message,
            },
            WorkerFailure::TooComplex(m) => ParseError::TooComplex(m),
            WorkerFailure::ExpansionLimit(m) => ParseError::ExpansionLimit(m),
        }
    }
}

/// The worker's side: reads the document from `input`, parses it as
/// `mime` and writes one JSON reply to `output`. The binary calls this
/// after setting the process's limits; it returns the exit code.
pub fn serve_worker(mime: &str, mut input: impl Read, mut output: impl Write) -> i32 {
    let kind = match ContentKind::from_mime(mime) {
        Some(kind) => kind,
        None => {
            eprintln!("parse-worker: unknown content type {mime:?}");
            return 2;
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = input.read_to_end(&mut bytes) {
        eprintln!("parse-worker: reading the document: {e}");
        return 2;
    }
    let reply = match parse(kind, &bytes) {
        Ok(parsed) => WorkerReply::Parsed {
            title: parsed.title,
            text: parsed.text,
            sections: parsed.sections,
        },
        Err(e) => WorkerReply::Failed(WorkerFailure::from_error(e)),
    };
    drop(bytes);
    let written = serde_json::to_writer(&mut output, &reply)
        .map_err(std::io::Error::from)
        .and_then(|()| output.flush());
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("parse-worker: writing the reply: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_thread_parse_is_bounded_by_its_text_limit() {
        let parser = ThreadParser::new(ParseLimits {
            max_text_bytes: 1 << 20,
            ..ParseLimits::default()
        });
        let big = Bytes::from("word ".repeat(300_000));
        assert!(matches!(
            parser.parse(ContentKind::PlainText, big).await,
            Err(ParseError::ExpansionLimit(_))
        ));
        let small = Bytes::from_static(b"a few words");
        assert_eq!(
            parser
                .parse(ContentKind::PlainText, small)
                .await
                .unwrap()
                .text,
            "a few words"
        );
    }

    #[tokio::test]
    async fn a_thread_parse_of_deep_html_neither_overflows_nor_hangs() {
        let parser = ThreadParser::default();
        for depth in [10_000, 100_000] {
            let html = format!(
                "<html><body>{}deep{}",
                "<div>".repeat(depth),
                "</div>".repeat(depth)
            );
            let started = std::time::Instant::now();
            let result = parser.parse(ContentKind::Html, Bytes::from(html)).await;
            assert!(
                matches!(result, Err(ParseError::TooComplex(_))),
                "{result:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn worker_replies_round_trip() {
        let mut out = Vec::new();
        assert_eq!(
            serve_worker("text/html", &b"<p>Hello there</p>"[..], &mut out),
            0
        );
        let reply: WorkerReply = serde_json::from_slice(&out).unwrap();
        assert!(matches!(reply, WorkerReply::Parsed { ref text, .. } if text == "Hello there"));

        let mut out = Vec::new();
        let deep = "[".repeat(2000);
        assert_eq!(
            serve_worker(
                "application/pdf",
                format!("%PDF-1.4\n{deep}").as_bytes(),
                &mut out
            ),
            0
        );
        let WorkerReply::Failed(failure) = serde_json::from_slice(&out).unwrap() else {
            panic!("a deep PDF must fail");
        };
        assert!(matches!(
            failure.into_error(ContentKind::Pdf),
            ParseError::TooComplex(_)
        ));
        assert_eq!(serve_worker("image/png", &b""[..], Vec::new()), 2);
    }

    #[test]
    fn a_dead_worker_is_classified_by_what_it_printed() {
        let memory = 256 << 20;
        assert!(matches!(
            classify_worker_death(
                ContentKind::Pdf,
                "thread 'main' has overflowed its stack\nfatal runtime error: stack overflow",
                memory
            ),
            ParseError::TooComplex(_)
        ));
        assert!(matches!(
            classify_worker_death(
                ContentKind::Pdf,
                "memory allocation of 1073741824 bytes failed",
                memory
            ),
            ParseError::ExpansionLimit(_)
        ));
        assert!(matches!(
            classify_worker_death(ContentKind::Html, "", memory),
            ParseError::Malformed { .. }
        ));
    }
}
