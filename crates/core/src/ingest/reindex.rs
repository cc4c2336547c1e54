//! Re-embedding every stored chunk with another embedding model into
//! another vector store, for `rag-agent reindex`: the chunks are read back
//! from whichever store keeps their text, embedded as ingestion embeds
//! them (title and heading path, then the body), and written to the target
//! store, which nothing searches until the caller switches over. The
//! deployment keeps answering from its own store meanwhile.

use std::collections::HashSet;

use uuid::Uuid;

use super::steps::check_embeddings;
use crate::backend::{Embedder, LexicalIndex, ListQuery, MetadataStore, VectorStore};
use crate::chunk::{chunk_header, embedding_text};
use crate::domain::{Document, DocumentChunk, DocumentStatus, VectorSearchResult};
use crate::error::{RagError, StoreError};
use crate::tenant::Tenant;

/// Documents read per listing page.
const PAGE: usize = 100;

/// Where a reindex reads the chunks' text: the lexical index, which keeps
/// every chunk, or a vector store that keeps the text with each vector.
#[derive(Clone, Copy)]
pub enum ChunkText<'a> {
    Lexical(&'a dyn LexicalIndex),
    Vectors(&'a dyn VectorStore),
}

/// How far a reindex has come; reported after each document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReindexProgress {
    /// Indexed documents when the pass began, across tenants.
    pub total_documents: u64,
    pub documents: u64,
    pub chunks: u64,
}

/// Re-embeds every chunk of every indexed document of every tenant with
/// `embedder` into `target`. A document indexed while this runs is picked
/// up by a further pass; one deleted while this runs is removed from
/// `target` at the end, so the target matches the catalog when this
/// returns.
pub async fn reindex(
    metadata: &dyn MetadataStore,
    text: ChunkText<'_>,
    embedder: &dyn Embedder,
    target: &dyn VectorStore,
    mut progress: impl FnMut(&ReindexProgress),
) -> Result<ReindexProgress, RagError> {
    let tenants = metadata.tenants().await?;
    let mut report = ReindexProgress::default();
    for tenant in &tenants {
        report.total_documents += metadata.count(tenant).await?;
    }
    for tenant in &tenants {
        let mut done: HashSet<Uuid> = HashSet::new();
        // Passes until one finds nothing new: ingestion may go on while
        // this runs, and each pass is shorter than the last.
        loop {
            let pending: Vec<Document> = indexed_documents(metadata, tenant)
                .await?
                .into_iter()
                .filter(|d| !done.contains(&d.id))
                .collect();
            if pending.is_empty() {
                break;
            }
            for document in pending {
                report.chunks += reembed(text, embedder, target, tenant, &document).await?;
                report.documents += 1;
                report.total_documents = report.total_documents.max(report.documents);
                done.insert(document.id);
                progress(&report);
            }
        }
        let still_there: HashSet<Uuid> = indexed_documents(metadata, tenant)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect();
        for gone in done.difference(&still_there) {
            target.delete_document(tenant, *gone).await?;
        }
    }
    Ok(report)
}

async fn indexed_documents(
    metadata: &dyn MetadataStore,
    tenant: &Tenant,
) -> Result<Vec<Document>, RagError> {
    let mut documents = Vec::new();
    let mut cursor = None;
    loop {
        let page = metadata
            .list(
                tenant,
                &ListQuery {
                    status: Some(DocumentStatus::Indexed),
                    limit: PAGE,
                    cursor,
                },
            )
            .await?;
        documents.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(documents),
        }
    }
}

/// One document's chunks, embedded and written to `target`; returns how
/// many there were.
async fn reembed(
    text: ChunkText<'_>,
    embedder: &dyn Embedder,
    target: &dyn VectorStore,
    tenant: &Tenant,
    document: &Document,
) -> Result<u64, RagError> {
    let stored = stored_chunks(text, tenant, document.id).await?;
    for batch in stored.chunks(embedder.batch_size().max(1)) {
        let chunks: Vec<DocumentChunk> = batch
            .iter()
            .map(|hit| DocumentChunk {
                header: chunk_header(&document.title, &hit.metadata.location),
                metadata: hit.metadata.clone(),
                content: hit.content.clone(),
                embedding: Vec::new(),
            })
            .collect();
        let texts: Vec<String> = chunks
            .iter()
            .map(|c| embedding_text(&c.header, &c.content))
            .collect();
        let vectors = embedder.embed(&texts).await?;
        check_embeddings(&vectors, texts.len(), embedder.dimension())?;
        let chunks: Vec<DocumentChunk> = chunks
            .into_iter()
            .zip(vectors)
            .map(|(chunk, embedding)| DocumentChunk { embedding, ..chunk })
            .collect();
        target.upsert(tenant, &chunks).await?;
    }
    Ok(stored.len() as u64)
}

/// A document's chunks with their text.
async fn stored_chunks(
    text: ChunkText<'_>,
    tenant: &Tenant,
    document_id: Uuid,
) -> Result<Vec<VectorSearchResult>, RagError> {
    match text {
        ChunkText::Lexical(lexical) => Ok(lexical.chunks_of(tenant, document_id).await?),
        ChunkText::Vectors(vectors) => {
            vectors
                .chunks_of(tenant, document_id)
                .await?
                .ok_or_else(|| {
                    StoreError::permanent(format!(
                        "the {} vector store keeps no chunk text to embed again",
                        vectors.backend_name()
                    ))
                    .into()
                })
        }
    }
}
