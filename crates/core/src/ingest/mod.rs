//! `Ingestor`: a document from bytes or a URL to INDEXED. `accept` checks,
//! parses and stores it as PENDING while the caller waits, then hands it
//! to the ingest queue (`queue.rs`); a worker takes the document's lease
//! and runs the steps of `steps.rs` (chunk -> embed in batches -> store
//! vectors and lexical entries) to INDEXED (`worker.rs`). A failure at any
//! step removes what was written and marks it FAILED with the reason, or
//! PENDING for another attempt when the cause may pass; `recover` queues
//! again what a crash interrupted.

mod limits;
pub mod queue;
pub mod reindex;
mod steps;
pub mod sync;
pub mod upload;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::backend::Embedder;
use crate::catalog::{Catalog, Stores};
pub use crate::catalog::{layout_key, raw_key, text_key};
use crate::chunk::ChunkingOptions;
use crate::domain::{Document, DocumentStatus};
use crate::error::{RagError, StoreError};
use crate::fetch::UrlFetcher;
use crate::parse::{self, DocumentParser, ParsedDocument, Section};
use crate::tenant::Tenant;
use crate::usage::UsageMeter;
use queue::{IngestJob, IngestQueue};
pub use upload::{UploadDestination, UploadRequest, UploadTicket, Uploads};
pub use worker::retry_delay;

pub use limits::{
    MAX_METADATA_BYTES, MAX_METADATA_KEY_CHARS, MAX_METADATA_KEYS, MAX_SOURCE_CHARS,
    MAX_TITLE_CHARS,
};

/// A document as a caller hands it in.
#[derive(Debug, Clone, Default)]
pub struct IngestInput {
    pub bytes: Bytes,
    pub declared_content_type: Option<String>,
    pub filename: Option<String>,
    pub title: Option<String>,
    pub source: Option<String>,
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub chunking: Option<ChunkingOptions>,
    /// Index these bytes again even if an identical document exists.
    pub new_version: bool,
}

/// Whether ingestion made a new document or found the same bytes indexed.
#[derive(Debug, Clone)]
pub enum IngestOutcome {
    Created(Document),
    Duplicate(Document),
}

impl IngestOutcome {
    pub fn document(&self) -> &Document {
        match self {
            IngestOutcome::Created(d) | IngestOutcome::Duplicate(d) => d,
        }
    }
}

pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Chunks one document may have unless configured otherwise: about 16
/// million characters at the default chunk size, and half an hour of
/// embedding on one laptop core.
pub const DEFAULT_MAX_CHUNKS_PER_DOCUMENT: usize = 20_000;

/// Ingestion's defaults and limits, set once from configuration.
#[derive(Debug, Clone, Copy)]
pub struct IngestSettings {
    pub chunking: ChunkingOptions,
    pub max_document_bytes: u64,
    /// Documents chunked and embedded at once in the background.
    pub concurrency: usize,
    /// A document that would split into more chunks is refused.
    pub max_chunks_per_document: usize,
    /// How long a worker's hold on a document lasts unless renewed: how
    /// soon a document a dead worker held can be taken over.
    pub lease: std::time::Duration,
    /// The largest file a direct upload (`POST /documents/uploads`) may
    /// declare.
    pub max_upload_bytes: u64,
}

/// A worker's lease unless configured otherwise.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            chunking: ChunkingOptions::default(),
            max_document_bytes: 50 * 1024 * 1024,
            concurrency: 2,
            max_chunks_per_document: DEFAULT_MAX_CHUNKS_PER_DOCUMENT,
            lease: DEFAULT_LEASE,
            max_upload_bytes: 50 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct Ingestor {
    catalog: Catalog,
    embedder: Option<Arc<dyn Embedder>>,
    parser: Arc<dyn DocumentParser>,
    fetcher: UrlFetcher,
    settings: IngestSettings,
    permits: Arc<Semaphore>,
    /// Where indexed documents, their bytes and embeddings are counted.
    usage: Option<Arc<UsageMeter>>,
    /// Where accepted documents wait for a worker; without one, a task of
    /// this process indexes each.
    queue: Option<Arc<dyn IngestQueue>>,
    /// Where direct uploads are declared and, when signed, land.
    uploads: Option<Uploads>,
    /// What ingestion jobs read and where they are kept.
    sync: Option<sync::SyncSources>,
}

impl Ingestor {
    pub fn new(
        catalog: Catalog,
        embedder: Option<Arc<dyn Embedder>>,
        parser: Arc<dyn DocumentParser>,
        fetcher: UrlFetcher,
        settings: IngestSettings,
    ) -> Arc<Self> {
        Self::counting_into(catalog, embedder, parser, fetcher, settings, None)
    }

    /// An ingestor that counts what it indexes as each tenant's usage.
    pub fn counting_into(
        catalog: Catalog,
        embedder: Option<Arc<dyn Embedder>>,
        parser: Arc<dyn DocumentParser>,
        fetcher: UrlFetcher,
        settings: IngestSettings,
        usage: Option<Arc<UsageMeter>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            usage,
            queue: None,
            uploads: None,
            sync: None,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            catalog,
            embedder,
            parser,
            fetcher,
            settings,
        })
    }

    /// The same ingestor, handing accepted documents to `queue`.
    pub fn with_queue(&self, queue: Arc<dyn IngestQueue>) -> Arc<Self> {
        Arc::new(Self {
            queue: Some(queue),
            ..self.clone()
        })
    }

    /// The same ingestor, taking direct uploads into `uploads`.
    pub fn with_uploads(&self, uploads: Uploads) -> Arc<Self> {
        Arc::new(Self {
            uploads: Some(uploads),
            ..self.clone()
        })
    }

    /// The same ingestor, running ingestion jobs from `sources`.
    pub fn with_sync(&self, sources: sync::SyncSources) -> Arc<Self> {
        Arc::new(Self {
            sync: Some(sources),
            ..self.clone()
        })
    }

    /// The largest file a direct upload may declare.
    pub fn max_upload_bytes(&self) -> u64 {
        self.settings.max_upload_bytes
    }

    fn stores(&self) -> &Stores {
        self.catalog.stores()
    }

    /// Accepts a document and indexes it: before returning when `wait` is
    /// set, otherwise in the background (bounded by the concurrency).
    pub async fn ingest(
        self: &Arc<Self>,
        tenant: &Tenant,
        input: IngestInput,
        wait: bool,
    ) -> Result<IngestOutcome, RagError> {
        let outcome = self.accept(tenant, input).await?;
        self.index_accepted(tenant, outcome, wait).await
    }

    /// Indexes a document `accept` made: now when `wait` is set, otherwise
    /// through the queue.
    async fn index_accepted(
        self: &Arc<Self>,
        tenant: &Tenant,
        outcome: IngestOutcome,
        wait: bool,
    ) -> Result<IngestOutcome, RagError> {
        let IngestOutcome::Created(document) = outcome else {
            return Ok(outcome);
        };
        if wait {
            let _permit = self.permits.acquire().await;
            return Ok(IngestOutcome::Created(
                self.process(tenant, document.id).await?,
            ));
        }
        let job = IngestJob {
            tenant: tenant.clone(),
            document_id: document.id,
        };
        if let Err(e) = self.dispatch(job).await {
            // Nobody would ever index it: take it back, and the caller
            // learns the upload did not take.
            self.catalog.remove_files(tenant, document.id).await;
            if let Err(cleanup) = self.stores().metadata.delete(tenant, document.id).await {
                tracing::error!(id = %document.id, error = %cleanup, "could not remove a document that could not be queued");
            }
            return Err(e.into());
        }
        Ok(IngestOutcome::Created(document))
    }

    /// Fetches a URL (with the address protections of [`UrlFetcher`]) and
    /// ingests what it returns.
    pub async fn ingest_url(
        self: &Arc<Self>,
        tenant: &Tenant,
        url: &str,
        mut input: IngestInput,
        wait: bool,
    ) -> Result<IngestOutcome, RagError> {
        let fetched = self.fetcher.fetch(url).await?;
        input.bytes = fetched.bytes;
        if input.declared_content_type.is_none() {
            input.declared_content_type = fetched.content_type;
        }
        if input.source.is_none() {
            input.source = Some(fetched.final_url.clone());
        }
        if input.filename.is_none() {
            input.filename = url::Url::parse(&fetched.final_url)
                .ok()
                .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
                .filter(|name| name.contains('.'));
        }
        self.ingest(tenant, input, wait).await
    }

    /// Validates and parses the input, stores it as PENDING and returns the
    /// document; chunking and embedding happen in [`Ingestor::process`].
    pub async fn accept(
        &self,
        tenant: &Tenant,
        input: IngestInput,
    ) -> Result<IngestOutcome, RagError> {
        let limit = self.settings.max_document_bytes;
        self.accept_as(tenant, input, Uuid::new_v4(), limit).await
    }

    /// [`Ingestor::accept`] under a given id (one promised to a direct
    /// upload) and size limit. An id already taken is a conflict.
    async fn accept_as(
        &self,
        tenant: &Tenant,
        input: IngestInput,
        id: Uuid,
        max_bytes: u64,
    ) -> Result<IngestOutcome, RagError> {
        let settings = &self.settings;
        if input.bytes.is_empty() {
            return Err(RagError::invalid("the document is empty"));
        }
        if input.bytes.len() as u64 > max_bytes {
            return Err(RagError::PayloadTooLarge {
                limit_bytes: max_bytes,
            });
        }
        let chunking = input.chunking.unwrap_or(settings.chunking);
        chunking.validate()?;
        limits::check_descriptors(&input)?;
        let kind = parse::detect_kind(
            input.declared_content_type.as_deref(),
            input.filename.as_deref(),
            &input.bytes,
        )?;
        let hash = content_hash(&input.bytes);
        if !input.new_version
            && let Some(existing) = self.stores().metadata.find_by_hash(tenant, &hash).await?
        {
            return Ok(IngestOutcome::Duplicate(existing));
        }
        let parsed: ParsedDocument = self.parser.parse(kind, input.bytes.clone()).await?;
        // Chunking here, and again when indexing, lets an oversized
        // document be refused while the caller still waits for the answer;
        // it costs little (text-splitter does over 100 MB/s on prose, 2 MB/s
        // on text without sentence ends), and a text too long for the cap
        // is refused from a count alone, before it is split.
        let text = parsed.text.clone();
        let sections = parsed.sections.clone();
        let limit = settings.max_chunks_per_document;
        steps::blocking("the chunker", move || {
            steps::count_chunks(&text, &sections, chunking, limit)
        })
        .await?;

        let now = Utc::now();
        let title = input
            .title
            .filter(|t| !t.trim().is_empty())
            .or(parsed.title.clone())
            .or_else(|| input.filename.clone())
            .unwrap_or_else(|| first_words(&parsed.text));
        let document = Document {
            id,
            title,
            content: None,
            source: input
                .source
                .or(input.filename)
                .unwrap_or_else(|| "inline".to_string()),
            content_type: kind.mime().to_string(),
            status: DocumentStatus::Pending,
            chunk_count: 0,
            token_count: 0,
            chunk_size: chunking.chunk_size as u32,
            chunk_overlap: chunking.chunk_overlap as u32,
            size_bytes: input.bytes.len() as u64,
            content_hash: hash,
            error: None,
            created_at: now,
            updated_at: now,
            indexed_at: None,
            extra_metadata: input.metadata,
        };
        // The row comes first: files are only ever written for a document
        // that is listed, so a crash between the steps leaves a PENDING
        // document that recovery fails visibly (its file is missing), never
        // files that nothing references.
        let stores = self.stores();
        stores.metadata.insert(tenant, &document).await?;
        let written = async {
            stores
                .documents
                .put(tenant, &raw_key(id), input.bytes, kind.mime())
                .await?;
            if !parsed.sections.is_empty() {
                let layout =
                    serde_json::to_vec(&parsed.sections).expect("sections serialise as JSON");
                stores
                    .documents
                    .put(
                        tenant,
                        &layout_key(id),
                        Bytes::from(layout),
                        "application/json",
                    )
                    .await?;
            }
            stores
                .documents
                .put(
                    tenant,
                    &text_key(id),
                    Bytes::from(parsed.text),
                    "text/plain; charset=utf-8",
                )
                .await
        };
        if let Err(e) = written.await {
            self.catalog.remove_files(tenant, id).await;
            if let Err(cleanup) = stores.metadata.delete(tenant, id).await {
                tracing::error!(%id, error = %cleanup, "could not remove the row of a document whose files failed");
            }
            return Err(e.into());
        }
        Ok(IngestOutcome::Created(document))
    }

    async fn index_document(
        &self,
        tenant: &Tenant,
        document: &Document,
    ) -> Result<(u32, u64), RagError> {
        let stores = self.stores();
        let (text, sections) = match stores.documents.get(tenant, &text_key(document.id)).await {
            Ok(bytes) => (
                String::from_utf8_lossy(&bytes).into_owned(),
                self.stored_sections(tenant, document).await?,
            ),
            Err(StoreError::NotFound { .. }) => self.reparse(tenant, document).await?,
            Err(e) => return Err(e.into()),
        };
        let options = ChunkingOptions {
            chunk_size: document.chunk_size as usize,
            chunk_overlap: document.chunk_overlap as usize,
        };
        let limit = self.settings.max_chunks_per_document;
        let pieces = steps::blocking("the chunker", move || {
            steps::chunk(&text, &sections, options, limit)
        })
        .await?;
        // An interrupted earlier attempt may have left entries behind.
        self.catalog.remove_index_entries(tenant, document.id).await;

        let batch_size = self
            .embedder
            .as_ref()
            .map(|e| e.batch_size())
            .unwrap_or(256)
            .max(1);
        // Embedding the next batch overlaps with storing the current one, so
        // a remote embedder's calls stay busy across batch boundaries. Only
        // two batches are ever in memory at once.
        let embedder = self.embedder.clone();
        let jobs: Vec<_> = pieces
            .chunks(batch_size)
            .enumerate()
            .map(|(batch_no, batch)| {
                steps::embed_batch(embedder.clone(), &document.title, batch_no, batch)
            })
            .collect();
        let mut embedded = futures::stream::iter(jobs).buffered(2);
        let mut token_count: u64 = 0;
        while let Some(next) = embedded.next().await {
            let (batch_no, batch, embeddings) = next?;
            let chunks = steps::stored_chunks(
                document.id,
                &document.title,
                batch_no * batch_size,
                batch,
                embeddings,
            );
            token_count += chunks
                .iter()
                .map(|c| u64::from(c.metadata.token_count))
                .sum::<u64>();
            // Batches are stored in index order, which keeps every
            // document's chunk ids a prefix 0..n (see the S3 Vectors store).
            steps::store(stores, tenant, &chunks, embedder.is_some()).await?;
        }
        Ok((pieces.len() as u32, token_count))
    }

    /// The sections stored beside a document's text; a document of a
    /// format without them has none stored.
    async fn stored_sections(
        &self,
        tenant: &Tenant,
        document: &Document,
    ) -> Result<Vec<Section>, RagError> {
        match self
            .stores()
            .documents
            .get(tenant, &layout_key(document.id))
            .await
        {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                RagError::Store(StoreError::permanent(format!(
                    "the stored layout of {} is damaged: {e}",
                    document.id
                )))
            }),
            Err(StoreError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn reparse(
        &self,
        tenant: &Tenant,
        document: &Document,
    ) -> Result<(String, Vec<Section>), RagError> {
        let raw = self
            .stores()
            .documents
            .get(tenant, &raw_key(document.id))
            .await?;
        let kind = parse::detect_kind(Some(&document.content_type), None, &raw)?;
        let parsed = self.parser.parse(kind, raw).await?;
        Ok((parsed.text, parsed.sections))
    }
}

fn first_words(text: &str) -> String {
    let mut title: String = text
        .split_whitespace()
        .take(8)
        .collect::<Vec<_>>()
        .join(" ");
    if title.chars().count() > 80 {
        title = title.chars().take(80).collect();
    }
    title
}
