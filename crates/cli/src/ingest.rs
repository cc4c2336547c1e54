//! `rag-agent ingest`: files, directories (walked recursively, filtered by
//! globs) and URLs, sent a few at a time, each waited for until it is
//! INDEXED or FAILED, with a progress bar and a summary table.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use globset::{Glob, GlobSet, GlobSetBuilder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::direct_upload;
use crate::output::{self, dim};
use crate::{ApiClient, CliError};

pub const EXAMPLES: &str = "Examples:
  rag-agent ingest notes.md report.pdf
  rag-agent ingest ./docs --include '*.md' --exclude 'drafts/**'
  rag-agent ingest https://doc.rust-lang.org/book/ch01-00-getting-started.html
  rag-agent ingest ./site --concurrency 8 --json > ingest-report.json

Directories are walked recursively; hidden files and folders are skipped.
Without --include, .txt .md .markdown .html .htm .pdf .docx .pptx .xlsx
.xls .ods .csv and .tsv files are taken.
Globs match the path relative to the directory given (`*` crosses folders
unless you write `dir/*`). Files over 5 MB go by direct upload (declared,
then PUT to the URL the server gives: S3 itself on AWS), past the API's
request size limit. The exit code is 1 when any document failed.";

/// File types ingested from directories when no `--include` is given.
pub(crate) const DEFAULT_INCLUDE: &[&str] = &[
    "*.txt",
    "*.md",
    "*.markdown",
    "*.html",
    "*.htm",
    "*.pdf",
    "*.docx",
    "*.pptx",
    "*.xlsx",
    "*.xls",
    "*.ods",
    "*.csv",
    "*.tsv",
];

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files, directories and http(s) URLs.
    #[arg(required = true, value_name = "PATH|DIR|URL")]
    pub inputs: Vec<String>,
    /// Take only files matching this glob when walking directories (repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Skip files and folders matching this glob (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Documents in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Index again even when identical content is already indexed.
    #[arg(long)]
    pub new_version: bool,
    /// Chunk size in characters [default: the server's].
    #[arg(long)]
    pub chunk_size: Option<usize>,
    /// Chunk overlap in characters [default: the server's].
    #[arg(long)]
    pub chunk_overlap: Option<usize>,
}

/// One thing to ingest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    File { path: PathBuf, label: String },
    Url(String),
}

impl Input {
    fn label(&self) -> &str {
        match self {
            Input::File { label, .. } => label,
            Input::Url(url) => url,
        }
    }
}

/// What became of one input.
#[derive(Debug)]
struct Outcome {
    input: String,
    document_id: Option<String>,
    status: String,
    duplicate: bool,
    chunks: u64,
    bytes: u64,
    error: Option<String>,
    elapsed: Duration,
    /// How it reached the server: `form`, `direct_upload` or `url`.
    via: &'static str,
}

pub async fn run(client: &ApiClient, args: &IngestArgs, json: bool) -> Result<(), CliError> {
    let inputs = collect_inputs(args)?;
    if inputs.is_empty() {
        return Err(CliError::Usage(
            "nothing to ingest: no file matched (see --include / --exclude)".to_string(),
        ));
    }
    let progress = progress_bar(inputs.len() as u64, json);
    let started = Instant::now();
    let mut bytes_done = 0u64;
    let mut failed = 0usize;
    let mut outcomes = Vec::with_capacity(inputs.len());
    let mut results = futures::stream::iter(
        inputs
            .into_iter()
            .map(|input| ingest_one(client, args, input, &progress)),
    )
    .buffer_unordered(usize::from(args.concurrency));
    while let Some(outcome) = results.next().await {
        bytes_done += outcome.bytes;
        if outcome.error.is_some() {
            failed += 1;
            progress.println(format!(
                "{} {}: {}",
                output::red("failed"),
                outcome.input,
                outcome.error.as_deref().unwrap_or_default()
            ));
        }
        progress.inc(1);
        let rate = bytes_done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        progress.set_message(format!(
            "{}/s{}",
            output::bytes(rate as u64),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        ));
        outcomes.push(outcome);
    }
    progress.finish_and_clear();
    report(&outcomes, started.elapsed(), bytes_done, json);
    if failed > 0 {
        return Err(CliError::Partial(format!(
            "{failed} of {} documents failed",
            outcomes.len()
        )));
    }
    Ok(())
}

fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    // indicatif draws only when stderr is a terminal, so piped output and
    // CI logs get the summary alone.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} documents  {per_sec:.dim}  {msg}  {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn report(outcomes: &[Outcome], elapsed: Duration, bytes: u64, json: bool) {
    let count = |status: &str| outcomes.iter().filter(|o| o.status == status).count();
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    let duplicates = outcomes.iter().filter(|o| o.duplicate).count();
    let chunks: u64 = outcomes.iter().map(|o| o.chunks).sum();
    let seconds = elapsed.as_secs_f64();
    if json {
        let documents: Vec<Value> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "input": o.input, "document_id": o.document_id, "status": o.status,
                    "duplicate": o.duplicate, "chunks": o.chunks, "bytes": o.bytes, "via": o.via,
                    "error": o.error, "elapsed_ms": o.elapsed.as_millis() as u64,
                })
            })
            .collect();
        output::print_json(&json!({
            "documents": documents,
            "summary": {
                "total": outcomes.len(), "indexed": count("INDEXED"), "failed": failed,
                "duplicates": duplicates, "chunks": chunks, "bytes": bytes,
                "elapsed_ms": elapsed.as_millis() as u64,
                "documents_per_second": outcomes.len() as f64 / seconds.max(1e-3),
            }
        }));
        return;
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let status = if o.duplicate {
                format!("{} (duplicate)", output::status(&o.status))
            } else {
                output::status(&o.status)
            };
            vec![
                status,
                o.chunks.to_string(),
                output::bytes(o.bytes),
                format!("{:.1}s", o.elapsed.as_secs_f64()),
                o.document_id.clone().unwrap_or_else(|| "-".to_string()),
                output::clip(&o.input, 60),
            ]
        })
        .collect();
    output::table(
        &["STATUS", "CHUNKS", "SIZE", "TIME", "DOCUMENT", "INPUT"],
        &rows,
    );
    for o in outcomes.iter().filter(|o| o.error.is_some()) {
        outln!(
            "{} {}: {}",
            output::red("failed:"),
            o.input,
            o.error.as_deref().unwrap_or_default()
        );
    }
    outln!(
        "{}",
        dim(&format!(
            "{} documents ({} indexed, {duplicates} already present, {failed} failed), {chunks} chunks, {} in {seconds:.1}s ({:.1} documents/s, {}/s)",
            outcomes.len(),
            count("INDEXED"),
            output::bytes(bytes),
            outcomes.len() as f64 / seconds.max(1e-3),
            output::bytes((bytes as f64 / seconds.max(1e-3)) as u64),
        ))
    );
}

async fn ingest_one(
    client: &ApiClient,
    args: &IngestArgs,
    input: Input,
    progress: &ProgressBar,
) -> Outcome {
    let started = Instant::now();
    let label = input.label().to_string();
    let mut via = "url";
    let result = match &input {
        Input::Url(url) => ingest_url(client, args, url).await,
        Input::File { path, label } => {
            let large = std::fs::metadata(path)
                .is_ok_and(|m| m.len() > direct_upload::DIRECT_UPLOAD_ABOVE_BYTES);
            via = if large { "direct_upload" } else { "form" };
            upload(client, args, path, label, progress).await
        }
    };
    match result {
        Ok((response, bytes)) => {
            let document = &response["document"];
            let status = document["status"].as_str().unwrap_or("?").to_string();
            let error = match status.as_str() {
                "FAILED" => Some(
                    document["error"]
                        .as_str()
                        .unwrap_or("indexing failed")
                        .to_string(),
                ),
                _ => None,
            };
            Outcome {
                input: label,
                document_id: document["id"].as_str().map(str::to_string),
                status,
                duplicate: response["duplicate"].as_bool().unwrap_or(false),
                chunks: document["chunk_count"].as_u64().unwrap_or(0),
                bytes: bytes.unwrap_or_else(|| document["size_bytes"].as_u64().unwrap_or(0)),
                error,
                elapsed: started.elapsed(),
                via,
            }
        }
        Err(e) => Outcome {
            input: label,
            document_id: None,
            status: "FAILED".to_string(),
            duplicate: false,
            chunks: 0,
            bytes: 0,
            error: Some(match e {
                CliError::Api { message, code, .. } => format!("{code}: {message}"),
                other => other.to_string(),
            }),
            elapsed: started.elapsed(),
            via,
        },
    }
}

async fn ingest_url(
    client: &ApiClient,
    args: &IngestArgs,
    url: &str,
) -> Result<(Value, Option<u64>), CliError> {
    let mut body = json!({ "url": url, "wait": true, "new_version": args.new_version });
    if let Some(size) = args.chunk_size {
        body["chunk_size"] = json!(size);
    }
    if let Some(overlap) = args.chunk_overlap {
        body["chunk_overlap"] = json!(overlap);
    }
    Ok((client.post("documents/ingest", &body).await?, None))
}

pub(crate) async fn upload(
    client: &ApiClient,
    args: &IngestArgs,
    path: &Path,
    label: &str,
    progress: &ProgressBar,
) -> Result<(Value, Option<u64>), CliError> {
    let io = |source| CliError::Io {
        context: format!("reading {}", path.display()),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| label.to_string());
    let size = tokio::fs::metadata(path).await.map_err(io)?.len();
    if size > direct_upload::DIRECT_UPLOAD_ABOVE_BYTES {
        let file = direct_upload::Declared {
            path,
            filename: file_name,
            content_type: content_type(path),
            source: label,
            new_version: args.new_version,
            chunk_size: args.chunk_size,
            chunk_overlap: args.chunk_overlap,
        };
        return Ok((
            direct_upload::upload(client, file, progress).await?,
            Some(size),
        ));
    }
    let bytes = tokio::fs::read(path).await.map_err(io)?;
    let part = Part::bytes(bytes)
        .file_name(file_name)
        .mime_str(content_type(path))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut form = Form::new()
        .part("file", part)
        .text("source", label.to_string())
        .text("wait", "true")
        .text("new_version", args.new_version.to_string());
    if let Some(size) = args.chunk_size {
        form = form.text("chunk_size", size.to_string());
    }
    if let Some(overlap) = args.chunk_overlap {
        form = form.text("chunk_overlap", overlap.to_string());
    }
    let request = client
        .request(Method::POST, "documents/upload")?
        .multipart(form);
    Ok((client.send_json(request).await?, Some(size)))
}

/// The declared type; the server sniffs `application/octet-stream`.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("md" | "markdown") => "text/markdown",
        Some("html" | "htm") => "text/html",
        Some("pdf") => "application/pdf",
        Some("txt" | "text") => "text/plain",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("pptx") => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("xls") => "application/vnd.ms-excel",
        Some("ods") => "application/vnd.oasis.opendocument.spreadsheet",
        Some("csv") => "text/csv",
        Some("tsv") => "text/tab-separated-values",
        _ => "application/octet-stream",
    }
}

pub(crate) fn glob_set(patterns: &[String], what: &str) -> Result<GlobSet, CliError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern)
            .map_err(|e| CliError::Usage(format!("--{what} {pattern:?} is not a glob: {e}")))?;
        builder.add(glob);
        // `name/` style patterns are meant as "this folder and below".
        if !pattern.contains('*') {
            let below = format!("{}/**", pattern.trim_end_matches('/'));
            builder.add(Glob::new(&below).map_err(|e| CliError::Usage(e.to_string()))?);
        }
    }
    builder
        .build()
        .map_err(|e| CliError::Usage(format!("--{what}: {e}")))
}

fn is_url(input: &str) -> bool {
    input.starts_with("http://") || input.starts_with("https://")
}

/// Expands the command line into files and URLs, in a stable order.
fn collect_inputs(args: &IngestArgs) -> Result<Vec<Input>, CliError> {
    let defaults: Vec<String> = DEFAULT_INCLUDE.iter().map(|s| s.to_string()).collect();
    let include = glob_set(
        if args.include.is_empty() {
            &defaults
        } else {
            &args.include
        },
        "include",
    )?;
    let exclude = glob_set(&args.exclude, "exclude")?;
    let mut inputs = Vec::new();
    for raw in &args.inputs {
        if is_url(raw) {
            inputs.push(Input::Url(raw.clone()));
            continue;
        }
        let path = PathBuf::from(raw);
        let metadata = std::fs::metadata(&path).map_err(|source| CliError::Io {
            context: raw.to_string(),
            source,
        })?;
        if metadata.is_file() {
            // A file named on the command line is taken as asked.
            inputs.push(Input::File {
                path,
                label: raw.clone(),
            });
            continue;
        }
        inputs.extend(walk(&path, &include, &exclude)?);
    }
    inputs.dedup();
    Ok(inputs)
}

pub(crate) fn walk(
    root: &Path,
    include: &GlobSet,
    exclude: &GlobSet,
) -> Result<Vec<Input>, CliError> {
    let mut found = Vec::new();
    let entries = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
            let hidden = entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.');
            !hidden && (entry.depth() == 0 || !exclude.is_match(relative))
        });
    for entry in entries {
        let entry = entry.map_err(|e| CliError::Io {
            context: format!("walking {}", root.display()),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let name_matches = entry
            .path()
            .file_name()
            .is_some_and(|name| include.is_match(Path::new(name)));
        if include.is_match(relative) || name_matches {
            found.push(Input::File {
                path: entry.path().to_path_buf(),
                label: entry.path().display().to_string(),
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(inputs: &[&str], include: &[&str], exclude: &[&str]) -> IngestArgs {
        IngestArgs {
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            concurrency: 4,
            new_version: false,
            chunk_size: None,
            chunk_overlap: None,
        }
    }

    fn labels(inputs: &[Input], root: &Path) -> Vec<String> {
        inputs
            .iter()
            .map(|i| match i {
                Input::File { path, .. } => path.strip_prefix(root).unwrap().display().to_string(),
                Input::Url(u) => u.clone(),
            })
            .collect()
    }

    #[test]
    fn directories_are_walked_with_globs() {
        let dir = std::env::temp_dir().join(format!("rag-cli-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for file in [
            "a.md",
            "b.txt",
            "c.rs",
            "sub/d.html",
            "sub/drafts/e.md",
            ".hidden/f.md",
            "sub/.g.md",
        ] {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        let root = dir.to_str().unwrap();
        let all = collect_inputs(&args(&[root], &[], &[])).unwrap();
        assert_eq!(
            labels(&all, &dir),
            ["a.md", "b.txt", "sub/d.html", "sub/drafts/e.md"]
        );
        let md = collect_inputs(&args(&[root], &["*.md"], &["sub/drafts"])).unwrap();
        assert_eq!(labels(&md, &dir), ["a.md"]);
        let rs = collect_inputs(&args(&[root, "https://example.com/x"], &["*.rs"], &[])).unwrap();
        assert_eq!(labels(&rs, &dir), ["c.rs", "https://example.com/x"]);
        let missing = collect_inputs(&args(&["/no/such/path"], &[], &[]));
        assert!(matches!(missing, Err(CliError::Io { .. })));
        let bad_glob = collect_inputs(&args(&[root], &["a[b"], &[]));
        assert!(matches!(bad_glob, Err(CliError::Usage(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
