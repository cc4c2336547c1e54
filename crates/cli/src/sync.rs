//! `rag-agent sync SOURCE`. An `s3://` prefix, a sitemap's URL or a
//! `file://` directory of the server's own is synced by the server: an
//! ingestion job is started and followed until it ends. A local directory
//! is synced from the client side, so it works against any deployment. It
//! lists and hashes the files, compares them with the documents whose
//! source is under the directory (by path and SHA-256, the hash the server
//! keeps), uploads what is new or changed, and deletes what disappeared.
//! A changed file is indexed as a new version first; the old one is
//! removed only once the new one is INDEXED, so searches never lose it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::ingest::{self, DEFAULT_INCLUDE, IngestArgs, Input};
use crate::output::{self, dim};
use crate::{ApiClient, CliError};

pub const EXAMPLES: &str = "Examples:
  rag-agent sync ./handbook
  rag-agent sync s3://team-docs/handbook/ --exclude 'drafts/**'
  rag-agent sync https://docs.example.com/sitemap.xml
  rag-agent sync ./site --include '*.html' --exclude 'drafts/**'
  rag-agent sync ./handbook --no-delete --json

s3://, http(s):// (a sitemap) and file:// sources start an ingestion job on
the server (it reads them itself; see RAG_AGENT_SYNC_BUCKETS and
RAG_AGENT_SYNC_ROOTS) and show its progress until it ends. A plain path is a
local directory synced from here: each file's document has the file's
absolute path as its source, so the next sync finds it. New files are added, changed ones indexed again (the
old version removed once the new one is INDEXED), and documents whose file
is gone are deleted (unless --no-delete). Files are filtered as `ingest`
filters directories. The exit code is 1 when any file failed.";

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// A local directory, or a source the server reads: s3://bucket/prefix/,
    /// a sitemap's http(s) URL, file:///path on the server.
    #[arg(value_name = "DIR|SOURCE")]
    pub source: String,
    /// Take only files matching this glob (repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Skip files and folders matching this glob (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Keep the documents of files that disappeared.
    #[arg(long)]
    pub no_delete: bool,
    /// Files in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

/// What sync does about one file or one vanished source.
#[derive(Debug)]
enum Step {
    Add(PathBuf),
    /// A changed file, and the documents it replaces.
    Update(PathBuf, Vec<String>),
    /// Unchanged; stale versions beside the current one are removed.
    Keep(Vec<String>),
    /// Gone from the directory: its documents.
    Delete(String, Vec<String>),
}

/// What one step came to.
enum Done {
    Added,
    Updated,
    Unchanged,
    Deleted,
    Failed { item: String, reason: String },
}

/// A document of the server, as the listing shows it.
struct Known {
    id: String,
    hash: String,
    status: String,
}

pub async fn run(client: &ApiClient, args: &SyncArgs, json: bool) -> Result<(), CliError> {
    if args.source.contains("://") {
        return server_side(client, args, json).await;
    }
    let root = std::fs::canonicalize(&args.source).map_err(|source| CliError::Io {
        context: args.source.clone(),
        source,
    })?;
    if !root.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let started = Instant::now();
    let files = files_of(&root, args)?;
    let scanned = files.len() as u64;
    let prefix = format!("{}/", root.display().to_string().trim_end_matches('/'));
    let known = documents_under(client, &prefix).await?;
    let steps = plan(files, known, !args.no_delete).await?;
    let progress = progress_bar(steps.len() as u64, json);
    let upload_args = IngestArgs {
        inputs: Vec::new(),
        include: Vec::new(),
        exclude: Vec::new(),
        concurrency: args.concurrency,
        // Each file is its own document, even where another source holds
        // the same bytes, so the next sync finds it by its path.
        new_version: true,
        chunk_size: None,
        chunk_overlap: None,
    };
    let mut results = futures::stream::iter(
        steps
            .into_iter()
            .map(|step| carry_out(client, &upload_args, step, &progress)),
    )
    .buffer_unordered(usize::from(args.concurrency));
    let mut counts: BTreeMap<&str, u64> = ["added", "updated", "deleted", "unchanged", "failed"]
        .into_iter()
        .map(|k| (k, 0))
        .collect();
    let mut failures = Vec::new();
    while let Some(done) = results.next().await {
        let key = match done {
            Done::Added => "added",
            Done::Updated => "updated",
            Done::Unchanged => "unchanged",
            Done::Deleted => "deleted",
            Done::Failed { item, reason } => {
                progress.println(format!("{} {item}: {reason}", output::red("failed")));
                failures.push(json!({"item": item, "reason": reason}));
                "failed"
            }
        };
        *counts.entry(key).or_default() += 1;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let report = json!({
        "source": root.display().to_string(),
        "counts": {
            "scanned": scanned, "added": counts["added"], "updated": counts["updated"],
            "deleted": counts["deleted"], "unchanged": counts["unchanged"], "failed": counts["failed"],
        },
        "failures": failures,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    if json {
        output::print_json(&report);
    } else {
        for failure in &failures {
            outln!(
                "{} {}: {}",
                output::red("failed:"),
                failure["item"].as_str().unwrap_or_default(),
                failure["reason"].as_str().unwrap_or_default()
            );
        }
        outln!(
            "{}",
            dim(&format!(
                "{}: {scanned} files, {} added, {} updated, {} deleted, {} unchanged, {} failed in {:.1}s",
                root.display(),
                counts["added"],
                counts["updated"],
                counts["deleted"],
                counts["unchanged"],
                counts["failed"],
                started.elapsed().as_secs_f64()
            ))
        );
    }
    if !failures.is_empty() {
        return Err(CliError::Partial(format!(
            "{} of {scanned} files failed",
            failures.len()
        )));
    }
    Ok(())
}

/// Starts an ingestion job for a source the server reads and follows it
/// until it ends, showing its counts.
async fn server_side(client: &ApiClient, args: &SyncArgs, json: bool) -> Result<(), CliError> {
    let job = client
        .post(
            "ingestion-jobs",
            &json!({
                "source": args.source,
                "include": args.include,
                "exclude": args.exclude,
                "delete_missing": !args.no_delete,
            }),
        )
        .await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    let bar = if json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    };
    let job = loop {
        let job = client.get(&format!("ingestion-jobs/{id}")).await?;
        let status = job["status"].as_str().unwrap_or_default().to_string();
        let c = &job["counts"];
        bar.set_message(format!(
            "{status}: {} scanned, {} added, {} updated, {} deleted, {} unchanged, {} failed, {} in flight",
            c["scanned"], c["added"], c["updated"], c["deleted"], c["unchanged"], c["failed"], job["pending"]
        ));
        if status == "COMPLETED" || status == "FAILED" {
            break job;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    bar.finish_and_clear();
    let failed = job["counts"]["failed"].as_u64().unwrap_or(0);
    if json {
        output::print_json(&job);
    } else {
        for failure in job["failures"].as_array().into_iter().flatten() {
            outln!(
                "{} {}: {}",
                output::red("failed:"),
                failure["item"].as_str().unwrap_or_default(),
                failure["reason"].as_str().unwrap_or_default()
            );
        }
        let c = &job["counts"];
        outln!(
            "{}",
            dim(&format!(
                "job {id} {}: {} scanned, {} added, {} updated, {} deleted, {} unchanged, {failed} failed",
                job["status"].as_str().unwrap_or_default(),
                c["scanned"],
                c["added"],
                c["updated"],
                c["deleted"],
                c["unchanged"]
            ))
        );
    }
    if job["status"] == "FAILED" {
        return Err(CliError::Partial(format!(
            "the ingestion job failed: {}",
            job["error"].as_str().unwrap_or("no reason given")
        )));
    }
    if failed > 0 {
        return Err(CliError::Partial(format!("{failed} items failed")));
    }
    Ok(())
}

/// The files of the directory that the filters take.
fn files_of(root: &Path, args: &SyncArgs) -> Result<Vec<PathBuf>, CliError> {
    let defaults: Vec<String> = DEFAULT_INCLUDE.iter().map(|s| s.to_string()).collect();
    let include = ingest::glob_set(
        if args.include.is_empty() {
            &defaults
        } else {
            &args.include
        },
        "include",
    )?;
    let exclude = ingest::glob_set(&args.exclude, "exclude")?;
    Ok(ingest::walk(root, &include, &exclude)?
        .into_iter()
        .filter_map(|input| match input {
            Input::File { path, .. } => Some(path),
            Input::Url(_) => None,
        })
        .collect())
}

/// The server's documents whose source is under `prefix`, by source.
async fn documents_under(
    client: &ApiClient,
    prefix: &str,
) -> Result<BTreeMap<String, Vec<Known>>, CliError> {
    let mut found: BTreeMap<String, Vec<Known>> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("documents?limit=1000&cursor={}", encode(cursor)),
            None => "documents?limit=1000".to_string(),
        };
        let page = client.get(&path).await?;
        for doc in page["items"].as_array().into_iter().flatten() {
            let source = doc["source"].as_str().unwrap_or_default();
            if !source.starts_with(prefix) {
                continue;
            }
            found.entry(source.to_string()).or_default().push(Known {
                id: doc["id"].as_str().unwrap_or_default().to_string(),
                hash: doc["content_hash"].as_str().unwrap_or_default().to_string(),
                status: doc["status"].as_str().unwrap_or_default().to_string(),
            });
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(found),
        }
    }
}

/// A query-string value, percent-encoded.
fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Compares the files with the documents: hashing runs on blocking
/// threads, a file at a time.
async fn plan(
    files: Vec<PathBuf>,
    mut known: BTreeMap<String, Vec<Known>>,
    delete_missing: bool,
) -> Result<Vec<Step>, CliError> {
    let mut steps = Vec::new();
    let mut present = BTreeSet::new();
    for path in files {
        let source = path.display().to_string();
        present.insert(source.clone());
        let documents = known.remove(&source).unwrap_or_default();
        if documents.is_empty() {
            steps.push(Step::Add(path));
            continue;
        }
        let hash = hash_file(&path).await?;
        let current = documents
            .iter()
            .any(|d| d.hash == hash && d.status != "FAILED");
        let ids_other_than = |keep: bool| -> Vec<String> {
            documents
                .iter()
                .filter(|d| !(keep && d.hash == hash && d.status != "FAILED"))
                .map(|d| d.id.clone())
                .collect()
        };
        steps.push(if current {
            Step::Keep(ids_other_than(true))
        } else {
            Step::Update(path, ids_other_than(false))
        });
    }
    if delete_missing {
        for (source, documents) in known {
            if !present.contains(&source) {
                steps.push(Step::Delete(
                    source,
                    documents.into_iter().map(|d| d.id).collect(),
                ));
            }
        }
    }
    Ok(steps)
}

async fn hash_file(path: &Path) -> Result<String, CliError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok::<_, std::io::Error>(hex_string(&hasher.finalize()))
    })
    .await
    .expect("hashing does not panic")
    .map_err(|source| CliError::Io {
        context: format!("reading {}", path.display()),
        source,
    })
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn carry_out(
    client: &ApiClient,
    upload_args: &IngestArgs,
    step: Step,
    progress: &ProgressBar,
) -> Done {
    match step {
        Step::Keep(stale) => {
            // Versions left by an update that stopped before its cleanup.
            let _ = delete_all(client, &stale).await;
            Done::Unchanged
        }
        Step::Delete(source, ids) => match delete_all(client, &ids).await {
            Ok(()) => Done::Deleted,
            Err(reason) => Done::Failed {
                item: source,
                reason,
            },
        },
        Step::Add(path) => match put_file(client, upload_args, &path, progress).await {
            Ok(()) => Done::Added,
            Err(reason) => Done::Failed {
                item: path.display().to_string(),
                reason,
            },
        },
        Step::Update(path, old) => {
            // The old version stays searchable until the new one is in.
            match put_file(client, upload_args, &path, progress).await {
                Ok(()) => match delete_all(client, &old).await {
                    Ok(()) => Done::Updated,
                    Err(reason) => Done::Failed {
                        item: path.display().to_string(),
                        reason: format!(
                            "the new version is indexed, the old one remains: {reason}"
                        ),
                    },
                },
                Err(reason) => Done::Failed {
                    item: path.display().to_string(),
                    reason,
                },
            }
        }
    }
}

/// Uploads one file (a form, or a direct upload past 5 MB) and waits for
/// it: Ok once INDEXED.
async fn put_file(
    client: &ApiClient,
    upload_args: &IngestArgs,
    path: &Path,
    progress: &ProgressBar,
) -> Result<(), String> {
    let source = path.display().to_string();
    let (answer, _) = ingest::upload(client, upload_args, path, &source, progress)
        .await
        .map_err(describe)?;
    let document = &answer["document"];
    match document["status"].as_str() {
        Some("INDEXED") => Ok(()),
        _ => Err(document["error"]
            .as_str()
            .unwrap_or("indexing failed")
            .to_string()),
    }
}

/// Deletes documents; one already gone is no error.
async fn delete_all(client: &ApiClient, ids: &[String]) -> Result<(), String> {
    for id in ids {
        match client.delete(&format!("documents/{id}")).await {
            Ok(()) | Err(CliError::Api { status: 404, .. }) => {}
            Err(e) => return Err(describe(e)),
        }
    }
    Ok(())
}

fn describe(error: CliError) -> String {
    match error {
        CliError::Api { message, code, .. } => format!("{code}: {message}"),
        other => other.to_string(),
    }
}

fn progress_bar(total: u64, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} files  {msg}  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(id: &str, hash: &str, status: &str) -> Known {
        Known {
            id: id.into(),
            hash: hash.into(),
            status: status.into(),
        }
    }

    #[tokio::test]
    async fn each_file_is_added_kept_updated_or_its_document_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let same = dir.path().join("same.md");
        let changed = dir.path().join("changed.md");
        let new = dir.path().join("new.md");
        for (path, text) in [(&same, "same"), (&changed, "now"), (&new, "new")] {
            std::fs::write(path, text).unwrap();
        }
        let same_hash = hex_string(&Sha256::digest(b"same"));
        let mut server = BTreeMap::new();
        let key = |p: &PathBuf| p.display().to_string();
        server.insert(
            key(&same),
            vec![
                known("a", &same_hash, "INDEXED"),
                known("a0", "old", "INDEXED"),
            ],
        );
        server.insert(key(&changed), vec![known("b", "before", "INDEXED")]);
        server.insert("gone.md".to_string(), vec![known("c", "x", "INDEXED")]);
        let files = vec![same.clone(), changed.clone(), new.clone()];
        let steps = plan(files.clone(), server, true).await.unwrap();
        let described: Vec<String> = steps.iter().map(|s| format!("{s:?}")).collect();
        assert!(
            matches!(&steps[0], Step::Keep(stale) if stale == &["a0"]),
            "{described:?}"
        );
        assert!(matches!(&steps[1], Step::Update(p, old) if p == &changed && old == &["b"]));
        assert!(matches!(&steps[2], Step::Add(p) if p == &new));
        assert!(matches!(&steps[3], Step::Delete(s, ids) if s == "gone.md" && ids == &["c"]));

        // A failed document of the same bytes is tried again.
        let mut server = BTreeMap::new();
        server.insert(key(&same), vec![known("f", &same_hash, "FAILED")]);
        let steps = plan(vec![same.clone()], server, false).await.unwrap();
        assert!(matches!(&steps[0], Step::Update(_, old) if old == &["f"]));
    }
}
