//! Finds the chunks that answer a question: dense (embedding) search,
//! lexical (BM25) search, or both fused by reciprocal rank, and the
//! citations that go with them. `request.rs` checks what a search may ask,
//! `fusion.rs` merges ranked lists, `sources.rs` builds citations.

mod fusion;
mod request;
mod sources;

use std::sync::Arc;

use crate::backend::{Embedder, LexicalIndex, MetadataStore, VectorStore};
use crate::domain::{SearchMode, SourceReference, VectorSearchResult};
use crate::error::{EmbedError, RagError};
use crate::tenant::Tenant;
use crate::usage::{UsageCounts, UsageMeter};

pub use fusion::reciprocal_rank_fusion;
pub use request::{
    MAX_QUERY_CHARS, MAX_TOP_K, SearchDefaults, SearchParams, SearchRequest, check_question,
};
pub use sources::source_references;
/// Each side of a hybrid search contributes this many times `top_k`
/// candidates, so a chunk ranked low by one method can still be lifted by
/// the other.
const HYBRID_CANDIDATE_FACTOR: usize = 4;

/// The hits of one search with their citations, in the same order.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// The mode the search ran in (hybrid falls back to the side a
    /// deployment has).
    pub mode: SearchMode,
    pub hits: Vec<VectorSearchResult>,
    pub sources: Vec<SourceReference>,
}

/// The search backends a deployment has. Either side may be missing: no
/// embedding model means lexical only, no lexical index means dense only.
#[derive(Clone)]
pub struct Retriever {
    embedder: Option<Arc<dyn Embedder>>,
    vectors: Arc<dyn VectorStore>,
    lexical: Option<Arc<dyn LexicalIndex>>,
    metadata: Arc<dyn MetadataStore>,
    defaults: SearchDefaults,
    /// Where query embeddings are counted, per tenant.
    usage: Option<Arc<UsageMeter>>,
}

impl Retriever {
    pub fn new(
        embedder: Option<Arc<dyn Embedder>>,
        vectors: Arc<dyn VectorStore>,
        lexical: Option<Arc<dyn LexicalIndex>>,
        metadata: Arc<dyn MetadataStore>,
        defaults: SearchDefaults,
    ) -> Self {
        Self {
            embedder,
            vectors,
            lexical,
            metadata,
            defaults,
            usage: None,
        }
    }

    /// The same retriever, counting each question it embeds as the
    /// tenant's usage.
    pub fn counting_into(self, usage: Arc<UsageMeter>) -> Self {
        Self {
            usage: Some(usage),
            ..self
        }
    }

    /// What a request that leaves a parameter out gets.
    pub fn defaults(&self) -> &SearchDefaults {
        &self.defaults
    }

    /// Checks a caller's question and parameters against the limits, with
    /// this deployment's defaults.
    pub fn request(
        &self,
        tenant: &Tenant,
        query: impl Into<String>,
        params: SearchParams,
    ) -> Result<SearchRequest, RagError> {
        SearchRequest::new(tenant, query, params, &self.defaults)
    }

    /// Searches, then looks up what each hit's citation shows.
    pub async fn retrieve(&self, request: &SearchRequest) -> Result<Retrieved, RagError> {
        let (mode, hits) = self.search(request).await?;
        let sources = source_references(self.metadata.as_ref(), request.tenant(), &hits).await?;
        Ok(Retrieved {
            mode,
            hits,
            sources,
        })
    }

    /// The mode a request for `requested` actually runs in.
    pub fn effective_mode(&self, requested: SearchMode) -> Result<SearchMode, RagError> {
        match (requested, self.embedder.is_some(), self.lexical.is_some()) {
            (SearchMode::Hybrid, true, true) => Ok(SearchMode::Hybrid),
            (SearchMode::Hybrid, false, true) => Ok(SearchMode::Lexical),
            (SearchMode::Hybrid, true, false) => Ok(SearchMode::Dense),
            (SearchMode::Dense, true, _) => Ok(SearchMode::Dense),
            (SearchMode::Lexical, _, true) => Ok(SearchMode::Lexical),
            (SearchMode::Dense, false, _) => Err(RagError::Unavailable(
                "dense search needs an embedding model and none is loaded".to_string(),
            )),
            (SearchMode::Lexical, _, false) | (SearchMode::Hybrid, false, false) => Err(
                RagError::Unavailable("this deployment has no lexical index".to_string()),
            ),
        }
    }

    pub async fn search(
        &self,
        request: &SearchRequest,
    ) -> Result<(SearchMode, Vec<VectorSearchResult>), RagError> {
        let top_k = request.top_k();
        let mode = self.effective_mode(request.mode())?;
        let hits = match mode {
            SearchMode::Dense => self.dense(request, top_k).await?,
            SearchMode::Lexical => self.lexical(request, top_k).await?,
            SearchMode::Hybrid => {
                let candidates = (top_k * HYBRID_CANDIDATE_FACTOR).min(MAX_TOP_K);
                let (dense, lexical) = futures::try_join!(
                    self.dense(request, candidates),
                    self.lexical(request, candidates)
                )?;
                reciprocal_rank_fusion(&[dense, lexical], top_k)
            }
        };
        Ok((mode, hits))
    }

    async fn dense(
        &self,
        request: &SearchRequest,
        top_k: usize,
    ) -> Result<Vec<VectorSearchResult>, RagError> {
        let embedder = self
            .embedder
            .as_ref()
            .ok_or_else(|| RagError::Unavailable("no embedding model is loaded".to_string()))?;
        // A question's embedding takes the embedder's question lane, so it
        // never waits behind an ingestion's batches.
        let vector = embedder.embed_query(request.query()).await?;
        if let Some(usage) = &self.usage {
            usage.record(request.tenant(), UsageCounts::embeddings(1));
        }
        if vector.len() != embedder.dimension() {
            return Err(EmbedError::permanent(format!(
                "the embedder returned a {}-dimensional vector, expected {}",
                vector.len(),
                embedder.dimension()
            ))
            .into());
        }
        let mut hits = self
            .vectors
            .search(request.tenant(), &vector, top_k, request.filter())
            .await?;
        hits.retain(|hit| hit.score >= request.similarity_threshold());
        Ok(hits)
    }

    async fn lexical(
        &self,
        request: &SearchRequest,
        top_k: usize,
    ) -> Result<Vec<VectorSearchResult>, RagError> {
        let lexical = self.lexical.as_ref().ok_or_else(|| {
            RagError::Unavailable("this deployment has no lexical index".to_string())
        })?;
        Ok(lexical
            .search(request.tenant(), request.query(), top_k, request.filter())
            .await?)
    }
}
