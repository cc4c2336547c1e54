//! The steps of indexing one document, each a function of its inputs:
//! chunk (with the cap), embed one batch (with its checks), build the
//! stored chunks, store them. `Ingestor` runs them in order; their tests
//! are here.

use std::sync::Arc;

use crate::backend::Embedder;
use crate::catalog::Stores;
use crate::chunk::{
    ChunkingOptions, TextChunk, chunk_header, chunk_sections, embedding_text, min_chunk_count,
};
use crate::domain::{ChunkMetadata, DocumentChunk, estimate_tokens};
use crate::error::{EmbedError, ParseError, RagError};
use crate::parse::Section;
use crate::tenant::Tenant;
use uuid::Uuid;

use super::limits::check_chunk_count;

/// Runs CPU-heavy work on a blocking thread. A panic there is the
/// document's failure (it fails, the server carries on), reported as a
/// parser fault rather than a store's.
pub(super) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, RagError> + Send + 'static,
) -> Result<T, RagError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ParseError::Internal(format!("{what} stopped: {e}")))?
}

/// How many chunks a text makes, refusing one past `limit` from a cheap
/// lower bound before paying for the real split.
pub(super) fn count_chunks(
    text: &str,
    sections: &[Section],
    options: ChunkingOptions,
    limit: usize,
) -> Result<usize, RagError> {
    check_chunk_count(min_chunk_count(text, options), limit)?;
    let count = chunk_sections(text, sections, options)?.len();
    check_chunk_count(count, limit)?;
    Ok(count)
}

/// The chunks of a text, refusing an empty result or one past `limit`.
pub(super) fn chunk(
    text: &str,
    sections: &[Section],
    options: ChunkingOptions,
    limit: usize,
) -> Result<Vec<TextChunk>, RagError> {
    check_chunk_count(min_chunk_count(text, options), limit)?;
    let pieces = chunk_sections(text, sections, options)?;
    if pieces.is_empty() {
        return Err(ParseError::Empty.into());
    }
    check_chunk_count(pieces.len(), limit)?;
    Ok(pieces)
}

/// Embeds one batch of chunk texts (or gives empty vectors without an
/// embedding model), checking count and dimension.
pub(super) async fn embed_batch<'a>(
    embedder: Option<Arc<dyn Embedder>>,
    title: &str,
    batch_no: usize,
    batch: &'a [TextChunk],
) -> Result<(usize, &'a [TextChunk], Vec<Vec<f32>>), RagError> {
    let texts: Vec<String> = batch
        .iter()
        .map(|p| embedding_text(&chunk_header(title, &p.location), &p.content))
        .collect();
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

pub(super) fn check_embeddings(
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

/// The stored form of one embedded batch; `first_index` is the index of
/// its first chunk in the document.
pub(super) fn stored_chunks(
    document_id: Uuid,
    title: &str,
    first_index: usize,
    batch: &[TextChunk],
    embeddings: Vec<Vec<f32>>,
) -> Vec<DocumentChunk> {
    batch
        .iter()
        .zip(embeddings)
        .enumerate()
        .map(|(i, (piece, embedding))| {
            let index = (first_index + i) as u32;
            DocumentChunk {
                metadata: ChunkMetadata {
                    chunk_id: ChunkMetadata::chunk_id_for(document_id, index),
                    document_id,
                    chunk_index: index,
                    start_char: piece.start_char as u64,
                    end_char: piece.end_char as u64,
                    token_count: estimate_tokens(&piece.content),
                    location: piece.location.clone(),
                },
                content: piece.content.clone(),
                header: chunk_header(title, &piece.location),
                embedding,
            }
        })
        .collect()
}

/// Writes one batch to the vector store (when there is an embedder) and
/// the lexical index (when there is one).
pub(super) async fn store(
    stores: &Stores,
    tenant: &Tenant,
    chunks: &[DocumentChunk],
    embedded: bool,
) -> Result<(), RagError> {
    if embedded {
        stores.vectors.upsert(tenant, chunks).await?;
    }
    if let Some(lexical) = &stores.lexical {
        lexical.index_chunks(tenant, chunks).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(size: usize) -> ChunkingOptions {
        ChunkingOptions {
            chunk_size: size,
            chunk_overlap: 0,
        }
    }

    #[test]
    fn the_count_agrees_with_the_split_and_the_cap_refuses() {
        let text = "One sentence here. ".repeat(200);
        let pieces = chunk(&text, &[], options(100), 1000).unwrap();
        assert_eq!(
            count_chunks(&text, &[], options(100), 1000).unwrap(),
            pieces.len()
        );
        assert!(matches!(
            count_chunks(&text, &[], options(100), pieces.len() - 1),
            Err(RagError::TooManyChunks { .. })
        ));
        assert!(matches!(
            chunk("   ", &[], options(100), 10),
            Err(RagError::Parse(ParseError::Empty))
        ));
    }

    #[test]
    fn stored_chunks_number_on_from_the_batch_start() {
        let pieces = chunk(&"Words and more words. ".repeat(20), &[], options(60), 100).unwrap();
        let id = Uuid::new_v4();
        let stored = stored_chunks(id, "Words", 7, &pieces[..2], vec![vec![1.0], vec![2.0]]);
        assert_eq!(stored[0].metadata.chunk_index, 7);
        assert_eq!(stored[0].header, "Words");
        assert_eq!(
            stored[1].metadata.chunk_id,
            ChunkMetadata::chunk_id_for(id, 8)
        );
        assert_eq!(stored[1].embedding, vec![2.0]);
        assert_eq!(stored[0].content, pieces[0].content);
    }

    #[test]
    fn embeddings_of_the_wrong_count_or_dimension_are_refused() {
        assert!(check_embeddings(&[vec![0.0; 3]], 1, 3).is_ok());
        assert!(check_embeddings(&[vec![0.0; 3]], 2, 3).is_err());
        assert!(check_embeddings(&[vec![0.0; 4]], 1, 3).is_err());
    }

    #[tokio::test]
    async fn a_panic_on_the_blocking_thread_is_a_parser_fault() {
        let result: Result<(), RagError> = blocking("the chunker", || panic!("boom")).await;
        assert!(matches!(
            result,
            Err(RagError::Parse(ParseError::Internal(_)))
        ));
    }
}
