//! Finds the chunks that answer a question: dense (embedding) search,
//! lexical (BM25) search, or both fused by reciprocal rank, and the
//! citations that go with them. `request.rs` checks what a search may ask,
//! `fusion.rs` merges ranked lists, `sources.rs` builds citations.

mod context;
mod fusion;
mod request;
mod sources;

use std::sync::Arc;

use tracing::Instrument;

use crate::backend::{Embedder, LexicalIndex, MetadataStore, VectorStore};
use crate::domain::{
    RerankReport, SearchMode, SourceReference, VectorSearchResult, estimate_tokens,
};
use crate::error::{EmbedError, RagError};
use crate::rerank::Reranking;
use crate::telemetry::MetricEvent;
use crate::tenant::Tenant;
use crate::usage::{UsageCounts, UsageMeter};

pub use context::{
    AssembledPassage, DEFAULT_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS, assemble, neighbour_ids,
};
pub use fusion::reciprocal_rank_fusion;
pub use request::{
    MAX_QUERY_CHARS, MAX_TOP_K, SearchDefaults, SearchParams, SearchRequest, check_question,
};
pub use sources::source_references;
/// Each side of a hybrid search contributes this many times `top_k`
/// candidates, so a chunk ranked low by one method can still be lifted by
/// the other.
const HYBRID_CANDIDATE_FACTOR: usize = 4;

// A rerank asks one search for its candidates.
const _: () = assert!(crate::rerank::MAX_RERANK_CANDIDATES <= MAX_TOP_K);

/// The hits of one search with their citations, in the same order.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// The mode the search ran in (hybrid falls back to the side a
    /// deployment has).
    pub mode: SearchMode,
    pub hits: Vec<VectorSearchResult>,
    pub sources: Vec<SourceReference>,
    /// How the hits were reranked; `None` when they were not.
    pub rerank: Option<RerankReport>,
}

/// A passage a model reads and the source it is cited as.
#[derive(Debug, Clone)]
pub struct ReadPassage {
    pub source: SourceReference,
    pub text: String,
}

/// The hits of one search, before citations are looked up.
#[derive(Debug, Clone)]
pub struct Found {
    pub mode: SearchMode,
    pub hits: Vec<VectorSearchResult>,
    pub rerank: Option<RerankReport>,
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
    /// The rerank stage, where the deployment has one.
    reranking: Option<Reranking>,
    /// Tokens of context assembled for a model (see `context`).
    context_tokens: usize,
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
            reranking: None,
            context_tokens: DEFAULT_CONTEXT_TOKENS,
        }
    }

    /// The same retriever, assembling up to `tokens` of context for a
    /// model (0 adds no neighbouring chunks).
    pub fn with_context_tokens(self, tokens: usize) -> Self {
        Self {
            context_tokens: tokens,
            ..self
        }
    }

    /// The same retriever with a rerank stage; requests that leave
    /// `rerank` out follow `reranking.by_default`.
    pub fn reranking_with(self, reranking: Reranking) -> Self {
        Self {
            defaults: SearchDefaults {
                rerank: reranking.by_default,
                ..self.defaults
            },
            reranking: Some(reranking),
            ..self
        }
    }

    /// The same retriever embedding questions with `embedder` (another
    /// client of the same model, such as one reached through a use case's
    /// role: the index holds that model's vectors).
    pub fn with_embedder(self, embedder: Option<Arc<dyn Embedder>>) -> Self {
        Self { embedder, ..self }
    }

    /// The model questions are embedded with, where there is one.
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    /// The reranker's name, for `/health`.
    pub fn reranker_name(&self) -> Option<&str> {
        self.reranking.as_ref().map(|r| r.reranker.name())
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
        if params.rerank == Some(true) && self.reranking.is_none() {
            return Err(RagError::invalid(
                "this deployment has no reranker (set RERANK_PROVIDER to rerank)",
            ));
        }
        SearchRequest::new(tenant, query, params, &self.defaults)
    }

    /// Searches, then looks up what each hit's citation shows.
    pub async fn retrieve(&self, request: &SearchRequest) -> Result<Retrieved, RagError> {
        let Found { mode, hits, rerank } = self.search(request).await?;
        let sources = source_references(self.metadata.as_ref(), request.tenant(), &hits).await?;
        Ok(Retrieved {
            mode,
            hits,
            sources,
            rerank,
        })
    }

    /// The passages a model reads for `hits` (see `context`): overlapping
    /// hits merged and their neighbouring chunks added within the token
    /// budget. The neighbours come from whichever store keeps chunk text;
    /// if that lookup fails, the hits are read as they are, because a
    /// smaller context is better than no answer.
    async fn assemble(
        &self,
        tenant: &Tenant,
        hits: &[VectorSearchResult],
    ) -> Vec<AssembledPassage> {
        // When the hits alone fill the budget no neighbour can join, so
        // the store is not asked for any.
        let hit_tokens: usize = hits
            .iter()
            .map(|h| estimate_tokens(&h.content) as usize)
            .sum();
        let ids = neighbour_ids(hits);
        let neighbours = if ids.is_empty() || hit_tokens >= self.context_tokens {
            Ok(Vec::new())
        } else {
            match &self.lexical {
                Some(lexical) => lexical.chunks_by_id(tenant, &ids).await,
                None => self
                    .vectors
                    .chunks_by_id(tenant, &ids)
                    .await
                    .map(Option::unwrap_or_default),
            }
        };
        let neighbours = neighbours.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read neighbouring chunks; the hits are read alone");
            Vec::new()
        });
        assemble(hits, &neighbours, self.context_tokens)
    }

    /// What a model reads for a retrieval: one passage per assembled
    /// context passage, best first, each with the source it is cited as
    /// (its best hit's), numbered from 1. Hits merged into a better one's
    /// passage are not cited apart from it.
    pub async fn read(&self, tenant: &Tenant, retrieved: &Retrieved) -> Vec<ReadPassage> {
        self.assemble(tenant, &retrieved.hits)
            .await
            .into_iter()
            .enumerate()
            .map(|(i, passage)| ReadPassage {
                source: SourceReference {
                    citation: i + 1,
                    ..retrieved.sources[passage.lead].clone()
                },
                text: passage.text,
            })
            .collect()
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

    /// The best `top_k` hits: retrieval's, or, when the request reranks,
    /// the reranker's pick of retrieval's best `candidates`.
    pub async fn search(&self, request: &SearchRequest) -> Result<Found, RagError> {
        let top_k = request.top_k();
        let mode = self.effective_mode(request.mode())?;
        let reranking = self.reranking.as_ref().filter(|_| request.rerank());
        let wanted = reranking.map_or(top_k, |r| r.candidates.max(top_k));
        let hits = match mode {
            SearchMode::Dense => self.dense(request, wanted).await?,
            SearchMode::Lexical => self.lexical(request, wanted).await?,
            SearchMode::Hybrid => {
                let per_side = (top_k * HYBRID_CANDIDATE_FACTOR).max(wanted).min(MAX_TOP_K);
                let (dense, lexical) = futures::try_join!(
                    self.dense(request, per_side),
                    self.lexical(request, per_side)
                )?;
                // Keyword matches alone are no evidence that the documents
                // cover a question: a question about sourdough shares
                // "bread" or "recipe" with some page of any large corpus.
                // When no passage is semantically close (the dense side
                // kept nothing above the threshold), hybrid finds nothing,
                // and the answer says the documents do not cover it.
                if dense.is_empty() {
                    Vec::new()
                } else {
                    reciprocal_rank_fusion(&[dense, lexical], wanted)
                }
            }
        };
        let (hits, rerank) = match reranking {
            Some(reranking) => {
                let span = tracing::info_span!(
                    "rerank",
                    otel.name = format!("rerank {}", reranking.reranker.name()),
                    gen_ai.operation.name = "rerank",
                    gen_ai.request.model = reranking.reranker.name(),
                    rerank.candidates = hits.len() as i64,
                );
                let (hits, report) = reranking
                    .apply(request.query(), hits, top_k)
                    .instrument(span)
                    .await;
                (hits, Some(report))
            }
            None => (hits, None),
        };
        if let Some(usage) = &self.usage {
            usage.metrics().record(&MetricEvent::Retrieval {
                mode: mode.as_str(),
                top_score: hits.first().map(|hit| hit.score),
                hits: hits.len(),
            });
        }
        Ok(Found { mode, hits, rerank })
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
        let vector = embedder
            .embed_query(request.query())
            .instrument(tracing::info_span!(
                "embed",
                otel.name = format!("embeddings {}", embedder.model_id()),
                otel.kind = "client",
                gen_ai.operation.name = "embeddings",
                gen_ai.request.model = embedder.model_id(),
            ))
            .await?;
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
            .instrument(tracing::info_span!(
                "vector_search",
                db.system = self.vectors.backend_name(),
                search.top_k = top_k as i64,
            ))
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
            .instrument(tracing::info_span!(
                "keyword_search",
                db.system = lexical.backend_name(),
                search.top_k = top_k as i64,
            ))
            .await?)
    }
}
