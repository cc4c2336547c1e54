//! Where documents come from besides a request's body: the upload area of
//! direct uploads and the sources ingestion jobs may read, each chosen
//! from configuration (or refused with the reason, naming the variable).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rag_core::UploadSigner;
use rag_core::fetch::UrlFetcher;
use rag_core::ingest::Uploads;
use rag_core::ingest::sync::sitemap::SitemapSource;
use rag_core::ingest::sync::{IngestionJobStore, SyncSource, SyncSources};
use rag_local::{DirectorySource, FileDocumentStore};

use crate::aws;
use crate::config::{DocumentBackend, ServeArgs};

/// The upload area and the largest upload it takes.
pub fn uploads(
    args: &ServeArgs,
    on_lambda: bool,
    sdk: &Option<aws_config::SdkConfig>,
    data_dir: &Path,
) -> anyhow::Result<(Uploads, u64)> {
    // Direct uploads go straight to S3 where the bucket's notification
    // feeds the ingest queue (Lambda with INGEST_QUEUE_URL), and to this
    // server otherwise. Their declarations sit beside the documents, in
    // the bucket or the data directory, so any instance can take the PUT.
    let aws_args = &args.aws;
    let signed_uploads = on_lambda && aws_args.ingest_queue_url.is_some();
    let uploads = match (aws_args.document_backend, &sdk) {
        (DocumentBackend::S3, Some(sdk)) => {
            let area = Arc::new(aws::upload_area(sdk, aws_args)?);
            Uploads {
                area: area.clone(),
                signer: signed_uploads.then_some(area as Arc<dyn UploadSigner>),
            }
        }
        _ => Uploads {
            area: Arc::new(
                FileDocumentStore::open(data_dir.join("uploads"))
                    .context("opening the upload area")?,
            ),
            signer: None,
        },
    };
    let max_upload_bytes = match (args.max_upload_bytes, signed_uploads) {
        (Some(limit), false) if limit > args.max_body_bytes as u64 => bail!(
            "RAG_AGENT_MAX_UPLOAD_BYTES ({limit}) is more than this server receives in one request (RAG_AGENT_MAX_BODY_BYTES, {}): uploads come to the server itself unless they go straight to S3 (under Lambda with INGEST_QUEUE_URL)",
            args.max_body_bytes
        ),
        (Some(limit), _) => limit,
        (None, true) => 1 << 30,
        (None, false) => args.max_body_bytes as u64,
    };
    Ok((uploads, max_upload_bytes))
}

/// What ingestion jobs may read: each kind of source, or why not.
pub fn sync_sources(
    args: &ServeArgs,
    on_lambda: bool,
    sdk: &Option<aws_config::SdkConfig>,
    jobs: Arc<dyn IngestionJobStore>,
    fetcher: &UrlFetcher,
) -> anyhow::Result<SyncSources> {
    let max_bytes = args.max_body_bytes as u64;
    let buckets = aws::listed_buckets(&args.aws.sync_buckets);
    let s3: Result<Arc<dyn SyncSource>, String> = match sdk {
        _ if buckets.is_empty() => Err(
            "s3:// sources are refused: RAG_AGENT_SYNC_BUCKETS lists no bucket jobs may read"
                .into(),
        ),
        Some(sdk) => Ok(Arc::new(aws::sync_source(sdk, &args.aws, max_bytes))),
        None => unreachable!("listed buckets load the SDK config"),
    };
    let roots: Vec<PathBuf> = args
        .sync_roots
        .iter()
        .filter(|r| !r.as_os_str().is_empty())
        .cloned()
        .collect();
    let files: Result<Arc<dyn SyncSource>, String> = if on_lambda {
        Err("file:// sources are read by a server with directories of its own, not a Lambda function".into())
    } else if roots.is_empty() {
        Err(
            "file:// sources are refused: RAG_AGENT_SYNC_ROOTS lists no directory jobs may read"
                .into(),
        )
    } else {
        if let Some(relative) = roots.iter().find(|r| !r.is_absolute()) {
            bail!(
                "RAG_AGENT_SYNC_ROOTS must list absolute paths, not {}",
                relative.display()
            );
        }
        Ok(Arc::new(
            DirectorySource::new(&roots, max_bytes).with_context(|| {
                format!("RAG_AGENT_SYNC_ROOTS: every directory must exist ({roots:?})")
            })?,
        ))
    };
    Ok(SyncSources {
        jobs,
        s3,
        files,
        web: Arc::new(SitemapSource::new(fetcher.clone())),
    })
}
