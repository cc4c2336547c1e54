//! The ingestion pipeline: parse -> store raw and text -> chunk -> embed in
//! batches -> store vectors and lexical entries -> mark INDEXED. A failure at
//! any step removes what was written and marks the document FAILED.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::backend::{Embedder, StatusUpdate};
use crate::chunk::{ChunkingOptions, TextChunk, chunk_text, min_chunk_count};
use crate::domain::{ChunkMetadata, Document, DocumentChunk, DocumentStatus, estimate_tokens};
use crate::error::{EmbedError, RagError, StoreError};
use crate::parse::{self, ParsedDocument};
use crate::service::RagService;

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

pub fn raw_key(id: Uuid) -> String {
    format!("documents/{id}/original")
}

pub fn text_key(id: Uuid) -> String {
    format!("documents/{id}/text.txt")
}

pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl RagService {
    /// Validates and parses the input, stores it as PENDING and returns the
    /// document; chunking and embedding happen in [`RagService::process`].
    pub(crate) async fn accept(&self, input: IngestInput) -> Result<IngestOutcome, RagError> {
        let settings = self.settings();
        if input.bytes.is_empty() {
            return Err(RagError::invalid("the document is empty"));
        }
        if input.bytes.len() as u64 > settings.max_document_bytes {
            return Err(RagError::PayloadTooLarge {
                limit_bytes: settings.max_document_bytes,
            });
        }
        let chunking = input.chunking.unwrap_or(settings.chunking);
        chunking.validate()?;
        check_descriptors(&input)?;
        let kind = parse::detect_kind(
            input.declared_content_type.as_deref(),
            input.filename.as_deref(),
            &input.bytes,
        )?;
        let hash = content_hash(&input.bytes);
        if !input.new_version
            && let Some(existing) = self.stores().metadata.find_by_hash(&hash).await?
        {
            return Ok(IngestOutcome::Duplicate(existing));
        }
        let parsed: ParsedDocument = self.parser().parse(kind, input.bytes.clone()).await?;
        // Chunking here, and again when indexing, lets an oversized
        // document be refused while the caller still waits for the answer;
        // it costs little (text-splitter does over 100 MB/s on prose, 2 MB/s
        // on text without sentence ends), and a text too long for the cap
        // is refused from a count alone, before it is split.
        let text = parsed.text.clone();
        let limit = settings.max_chunks_per_document;
        let chunk_count = tokio::task::spawn_blocking(move || {
            check_chunk_count(min_chunk_count(&text, chunking), limit)?;
            Ok::<_, RagError>(chunk_text(&text, chunking)?.len())
        })
        .await
        .map_err(|e| StoreError::permanent(format!("chunker task failed: {e}")))??;
        check_chunk_count(chunk_count, limit)?;

        let now = Utc::now();
        let id = Uuid::new_v4();
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
        stores.metadata.insert(&document).await?;
        let written = async {
            stores
                .documents
                .put(&raw_key(id), input.bytes, kind.mime())
                .await?;
            stores
                .documents
                .put(
                    &text_key(id),
                    Bytes::from(parsed.text),
                    "text/plain; charset=utf-8",
                )
                .await
        };
        if let Err(e) = written.await {
            self.remove_files(id).await;
            if let Err(cleanup) = stores.metadata.delete(id).await {
                tracing::error!(%id, error = %cleanup, "could not remove the row of a document whose files failed");
            }
            return Err(e.into());
        }
        Ok(IngestOutcome::Created(document))
    }

    /// Claims a PENDING document and indexes it. Safe to call for a document
    /// another worker already claimed: the conditional transition fails and
    /// this call returns without touching it.
    pub async fn process(&self, id: Uuid) -> Result<Document, RagError> {
        let metadata = &self.stores().metadata;
        let document = match metadata
            .transition(
                id,
                DocumentStatus::Pending,
                DocumentStatus::Processing,
                StatusUpdate::default(),
            )
            .await
        {
            Ok(d) => d,
            Err(StoreError::Conflict(_)) => {
                return metadata.get(id).await?.ok_or(RagError::NotFound {
                    what: "document",
                    id: id.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let started = std::time::Instant::now();
        match self.index_document(&document).await {
            Ok((chunk_count, token_count)) => {
                let done = metadata
                    .transition(
                        id,
                        DocumentStatus::Processing,
                        DocumentStatus::Indexed,
                        StatusUpdate {
                            chunk_count: Some(chunk_count),
                            token_count: Some(token_count),
                            error: None,
                            indexed_at: Some(Utc::now()),
                        },
                    )
                    .await;
                match done {
                    Ok(doc) => {
                        tracing::info!(%id, chunk_count, elapsed_ms = started.elapsed().as_millis() as u64, "document indexed");
                        Ok(doc)
                    }
                    Err(e) => {
                        // Deleted while we worked: take back what we wrote.
                        self.remove_index_entries(id).await;
                        Err(e.into())
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%id, %error, "ingestion failed");
                self.remove_index_entries(id).await;
                let failed = metadata
                    .transition(
                        id,
                        DocumentStatus::Processing,
                        DocumentStatus::Failed,
                        StatusUpdate {
                            error: Some(error.to_string()),
                            ..StatusUpdate::default()
                        },
                    )
                    .await?;
                Ok(failed)
            }
        }
    }

    async fn index_document(&self, document: &Document) -> Result<(u32, u64), RagError> {
        let stores = self.stores();
        let text = match stores.documents.get(&text_key(document.id)).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(StoreError::NotFound { .. }) => self.reparse(document).await?,
            Err(e) => return Err(e.into()),
        };
        let options = ChunkingOptions {
            chunk_size: document.chunk_size as usize,
            chunk_overlap: document.chunk_overlap as usize,
        };
        let pieces = tokio::task::spawn_blocking(move || chunk_text(&text, options))
            .await
            .map_err(|e| StoreError::permanent(format!("chunker task failed: {e}")))??;
        if pieces.is_empty() {
            return Err(RagError::Parse(crate::error::ParseError::Empty));
        }
        check_chunk_count(pieces.len(), self.settings().max_chunks_per_document)?;
        // An interrupted earlier attempt may have left entries behind.
        self.remove_index_entries(document.id).await;

        let batch_size = self
            .embedder()
            .map(|e| e.batch_size())
            .unwrap_or(256)
            .max(1);
        // Embedding the next batch overlaps with storing the current one, so
        // a remote embedder's calls stay busy across batch boundaries. Only
        // two batches are ever in memory at once.
        let embedder = self.embedder().cloned();
        let jobs: Vec<_> = pieces
            .chunks(batch_size)
            .enumerate()
            .map(|(batch_no, batch)| embed_batch(embedder.clone(), batch_no, batch))
            .collect();
        let mut embedded = futures::stream::iter(jobs).buffered(2);
        let mut token_count: u64 = 0;
        while let Some(next) = embedded.next().await {
            let (batch_no, batch, embeddings) = next?;
            let chunks: Vec<DocumentChunk> = batch
                .iter()
                .zip(embeddings)
                .enumerate()
                .map(|(i, (piece, embedding))| {
                    let index = (batch_no * batch_size + i) as u32;
                    let tokens = estimate_tokens(&piece.content);
                    token_count += tokens as u64;
                    DocumentChunk {
                        metadata: ChunkMetadata {
                            chunk_id: ChunkMetadata::chunk_id_for(document.id, index),
                            document_id: document.id,
                            chunk_index: index,
                            start_char: piece.start_char as u64,
                            end_char: piece.end_char as u64,
                            token_count: tokens,
                        },
                        content: piece.content.clone(),
                        embedding,
                    }
                })
                .collect();
            // Batches are stored in index order, which keeps every
            // document's chunk ids a prefix 0..n (see the S3 Vectors store).
            if embedder.is_some() {
                stores.vectors.upsert(&chunks).await?;
            }
            if let Some(lexical) = &stores.lexical {
                lexical.index_chunks(&chunks).await?;
            }
        }
        Ok((pieces.len() as u32, token_count))
    }

    async fn reparse(&self, document: &Document) -> Result<String, RagError> {
        let raw = self.stores().documents.get(&raw_key(document.id)).await?;
        let kind = parse::detect_kind(Some(&document.content_type), None, &raw)?;
        Ok(self.parser().parse(kind, raw).await?.text)
    }

    /// Best effort: logs and carries on, because it runs on paths that are
    /// already handling another error.
    pub(crate) async fn remove_index_entries(&self, id: Uuid) {
        let stores = self.stores();
        if let Err(e) = stores.vectors.delete_document(id).await {
            tracing::error!(%id, error = %e, "could not remove vectors");
        }
        if let Some(lexical) = &stores.lexical
            && let Err(e) = lexical.delete_document(id).await
        {
            tracing::error!(%id, error = %e, "could not remove lexical entries");
        }
    }

    pub(crate) async fn remove_files(&self, id: Uuid) {
        for key in [raw_key(id), text_key(id)] {
            if let Err(e) = self.stores().documents.delete(&key).await {
                tracing::error!(%id, error = %e, key, "could not remove file");
            }
        }
    }
}

/// Embeds one batch of chunk texts (or gives empty vectors without an
/// embedding model), checking count and dimension.
async fn embed_batch(
    embedder: Option<Arc<dyn Embedder>>,
    batch_no: usize,
    batch: &[TextChunk],
) -> Result<(usize, &[TextChunk], Vec<Vec<f32>>), RagError> {
    let texts: Vec<String> = batch.iter().map(|p| p.content.clone()).collect();
    let embeddings = match &embedder {
        Some(embedder) => {
            let vectors = embedder.embed(&texts).await?;
            check_embeddings(&vectors, texts.len(), embedder.dimension())?;
            vectors
        }
        None => vec![Vec::new(); texts.len()],
    };
    Ok((batch_no, batch, embeddings))
}

fn check_embeddings(
    vectors: &[Vec<f32>],
    expected: usize,
    dimension: usize,
) -> Result<(), EmbedError> {
    if vectors.len() != expected {
        return Err(EmbedError::permanent(format!(
            "the embedder returned {} vectors for {expected} texts",
            vectors.len()
        )));
    }
    if let Some(bad) = vectors.iter().find(|v| v.len() != dimension) {
        return Err(EmbedError::permanent(format!(
            "the embedder returned a {}-dimensional vector, expected {dimension}",
            bad.len()
        )));
    }
    Ok(())
}

/// Bounds on what describes a document: every listing page carries them,
/// so a 1 MiB title would make each page megabytes.
pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_SOURCE_CHARS: usize = 2048;
pub const MAX_METADATA_KEYS: usize = 32;
pub const MAX_METADATA_KEY_CHARS: usize = 64;
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

fn check_descriptors(input: &IngestInput) -> Result<(), RagError> {
    let too_long = |what: &str, value: &Option<String>, limit: usize| match value {
        Some(v) if v.chars().count() > limit => Err(RagError::invalid(format!(
            "{what} is longer than {limit} characters"
        ))),
        _ => Ok(()),
    };
    too_long("title", &input.title, MAX_TITLE_CHARS)?;
    too_long("source", &input.source, MAX_SOURCE_CHARS)?;
    too_long("the file name", &input.filename, MAX_SOURCE_CHARS)?;
    if input.metadata.len() > MAX_METADATA_KEYS {
        return Err(RagError::invalid(format!(
            "metadata has {} keys; at most {MAX_METADATA_KEYS} are allowed",
            input.metadata.len()
        )));
    }
    if let Some(key) = input
        .metadata
        .keys()
        .find(|k| k.is_empty() || k.chars().count() > MAX_METADATA_KEY_CHARS)
    {
        return Err(RagError::invalid(format!(
            "metadata keys must be 1 to {MAX_METADATA_KEY_CHARS} characters, not {:?}",
            key.chars()
                .take(MAX_METADATA_KEY_CHARS + 1)
                .collect::<String>()
        )));
    }
    let size = serde_json::to_vec(&input.metadata)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(RagError::invalid(format!(
            "metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed"
        )));
    }
    Ok(())
}

fn check_chunk_count(count: usize, limit: usize) -> Result<(), RagError> {
    if count > limit {
        return Err(RagError::TooManyChunks { count, limit });
    }
    Ok(())
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
