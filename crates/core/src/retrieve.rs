//! Finds the chunks that answer a question: dense (embedding) search,
//! lexical (BM25) search, or both fused by reciprocal rank.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::{Embedder, LexicalIndex, VectorStore};
use crate::domain::{SearchFilter, SearchMode, VectorSearchResult};
use crate::error::{EmbedError, RagError};

pub const MAX_TOP_K: usize = 100;
/// The `k` of reciprocal rank fusion; 60 is the value from the original
/// paper and what most hybrid search engines use.
const RRF_K: f32 = 60.0;
/// Each side of a hybrid search contributes this many times `top_k`
/// candidates, so a chunk ranked low by one method can still be lifted by
/// the other.
const HYBRID_CANDIDATE_FACTOR: usize = 4;

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub top_k: usize,
    pub mode: SearchMode,
    /// Dense hits below this cosine similarity are dropped.
    pub similarity_threshold: f32,
    pub filter: SearchFilter,
}

/// The search backends a deployment has. Either side may be missing: no
/// embedding model means lexical only, no lexical index means dense only.
#[derive(Clone)]
pub struct Retriever {
    embedder: Option<Arc<dyn Embedder>>,
    vectors: Arc<dyn VectorStore>,
    lexical: Option<Arc<dyn LexicalIndex>>,
}

impl Retriever {
    pub fn new(
        embedder: Option<Arc<dyn Embedder>>,
        vectors: Arc<dyn VectorStore>,
        lexical: Option<Arc<dyn LexicalIndex>>,
    ) -> Self {
        Self {
            embedder,
            vectors,
            lexical,
        }
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
        if request.top_k == 0 || request.top_k > MAX_TOP_K {
            return Err(RagError::invalid(format!(
                "top_k must be between 1 and {MAX_TOP_K}"
            )));
        }
        if request.query.trim().is_empty() {
            return Err(RagError::invalid("query must not be empty"));
        }
        let mode = self.effective_mode(request.mode)?;
        let hits = match mode {
            SearchMode::Dense => self.dense(request, request.top_k).await?,
            SearchMode::Lexical => self.lexical(request, request.top_k).await?,
            SearchMode::Hybrid => {
                let candidates = (request.top_k * HYBRID_CANDIDATE_FACTOR).min(MAX_TOP_K);
                let (dense, lexical) = futures::try_join!(
                    self.dense(request, candidates),
                    self.lexical(request, candidates)
                )?;
                reciprocal_rank_fusion(&[dense, lexical], request.top_k)
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
        let vector = embedder
            .embed(std::slice::from_ref(&request.query))
            .await?
            .pop()
            .ok_or_else(|| EmbedError::permanent("the embedder returned no vector"))?;
        let mut hits = self.vectors.search(&vector, top_k, &request.filter).await?;
        hits.retain(|hit| hit.score >= request.similarity_threshold);
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
            .search(&request.query, top_k, &request.filter)
            .await?)
    }
}

/// Fuses ranked lists: each chunk scores the sum of `1 / (k + rank)` over the
/// lists it appears in. Ties keep the order of first appearance.
pub fn reciprocal_rank_fusion(
    lists: &[Vec<VectorSearchResult>],
    top_k: usize,
) -> Vec<VectorSearchResult> {
    let mut fused: Vec<VectorSearchResult> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut scores: Vec<f32> = Vec::new();
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            let contribution = 1.0 / (RRF_K + rank as f32 + 1.0);
            match position.get(&hit.chunk_id) {
                Some(&i) => scores[i] += contribution,
                None => {
                    position.insert(hit.chunk_id.clone(), fused.len());
                    fused.push(hit.clone());
                    scores.push(contribution);
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..fused.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(top_k)
        .map(|i| {
            let mut hit = fused[i].clone();
            hit.score = scores[i];
            hit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChunkMetadata;
    use uuid::Uuid;

    fn hit(id: &str, score: f32) -> VectorSearchResult {
        VectorSearchResult {
            document_id: Uuid::nil(),
            chunk_id: id.to_string(),
            score,
            content: id.to_string(),
            metadata: ChunkMetadata {
                chunk_id: id.to_string(),
                document_id: Uuid::nil(),
                chunk_index: 0,
                start_char: 0,
                end_char: 0,
                token_count: 0,
            },
        }
    }

    #[test]
    fn fusion_rewards_agreement() {
        let dense = vec![hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)];
        let lexical = vec![hit("c", 12.0), hit("b", 11.0), hit("d", 3.0)];
        let fused = reciprocal_rank_fusion(&[dense, lexical], 3);
        let ids: Vec<&str> = fused.iter().map(|h| h.chunk_id.as_str()).collect();
        // c (ranks 3 and 1) edges out b (ranks 2 and 2); a, found once, trails.
        assert_eq!(ids, ["c", "b", "a"]);
        assert!(fused[0].score > fused[2].score);
    }

    #[test]
    fn fusion_of_one_list_keeps_its_order() {
        let fused = reciprocal_rank_fusion(&[vec![hit("x", 0.1), hit("y", 0.05)]], 10);
        let ids: Vec<&str> = fused.iter().map(|h| h.chunk_id.as_str()).collect();
        assert_eq!(ids, ["x", "y"]);
    }
}
