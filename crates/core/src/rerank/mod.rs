//! The rerank stage: a second opinion on the order of the best fused hits,
//! from a model that reads the question and each passage together (a
//! cross-encoder behind Bedrock's `Rerank` or a `/rerank` server, or the
//! chat model ranking a list). Retrieval asks it for the top
//! `candidates` hits and cuts to `top_k` afterwards, so a passage ranked
//! tenth by the embeddings can still be shown first.
//!
//! A reranker is a refinement, never a dependency: when it fails or
//! answers something unusable, the hits keep their retrieval order and the
//! response says why, so a search never fails because of it.
//!
//! Adapters live with their clients (`rag-aws` for Bedrock, `rag-openai`
//! for `/rerank` servers); the listwise chat-model reranker is here because
//! it needs nothing but the `ChatModel` trait.

pub mod llm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::{RerankReport, VectorSearchResult};
use crate::error::{BoxError, ErrorClass};

pub use llm::LlmReranker;

/// Characters of a passage a reranker reads. Chunks are shorter; the cap
/// keeps a pathological chunk within every service's per-document limit.
pub const MAX_DOCUMENT_CHARS: usize = 4000;

/// The most candidates one rerank scores: as many as one search may
/// return (`retrieve::MAX_TOP_K`, which checks the two agree).
pub const MAX_RERANK_CANDIDATES: usize = 100;

/// Candidates scored unless configured otherwise (`RERANK_CANDIDATES`).
pub const DEFAULT_RERANK_CANDIDATES: usize = 30;

/// Scores passages against a question.
///
/// Invariant: `score` returns exactly one score per document, in the
/// documents' order, higher meaning more relevant.
#[async_trait]
pub trait Reranker: Send + Sync {
    /// Names the reranker in `/health` and in a response's `rerank`, as
    /// `<kind>:<model>` (`bedrock:amazon.rerank-v1:0`).
    fn name(&self) -> &str;
    async fn score(&self, query: &str, documents: &[String]) -> Result<Vec<f32>, RerankError>;
}

/// Failures of a reranker. None reaches an API caller as an error: the
/// search keeps its own order and reports the failure's class.
#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    #[error("invalid rerank request: {0}")]
    Invalid(String),
    #[error("reranker throttled")]
    Throttled,
    #[error("the reranker did not answer in time")]
    TimedOut,
    #[error("reranker temporarily unavailable: {0}")]
    Transient(#[source] BoxError),
    #[error("reranker failure: {0}")]
    Permanent(#[source] BoxError),
    /// The reranker answered, but not with a ranking that can be used.
    #[error("the reranker's answer could not be used: {0}")]
    Unreadable(String),
}

impl RerankError {
    pub fn permanent(e: impl Into<BoxError>) -> Self {
        RerankError::Permanent(e.into())
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            RerankError::Invalid(_) => ErrorClass::Invalid,
            RerankError::Throttled | RerankError::TimedOut | RerankError::Transient(_) => {
                ErrorClass::Transient
            }
            RerankError::Permanent(_) | RerankError::Unreadable(_) => ErrorClass::Permanent,
        }
    }

    /// What a response says about the failure: its kind, never the
    /// backend's message (which may name accounts, hosts or keys).
    fn public_reason(&self) -> &'static str {
        match self {
            RerankError::Invalid(_) => "the reranker refused the request",
            RerankError::Throttled => "the reranker is throttling requests",
            RerankError::TimedOut => "the reranker did not answer in time",
            RerankError::Transient(_) => "the reranker is temporarily unavailable",
            RerankError::Permanent(_) => "the reranker failed",
            RerankError::Unreadable(_) => "the reranker's answer could not be read",
        }
    }
}

/// A deployment's rerank stage: which reranker, over how many candidates,
/// and whether a request that does not say is reranked.
#[derive(Clone)]
pub struct Reranking {
    pub reranker: Arc<dyn Reranker>,
    /// Fused hits the reranker scores before `top_k` is cut (1 to 100).
    pub candidates: usize,
    /// Whether requests that leave `rerank` out are reranked.
    pub by_default: bool,
    /// How long the reranker may take before retrieval's order is kept.
    pub timeout: Duration,
}

impl std::fmt::Debug for Reranking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reranking")
            .field("reranker", &self.reranker.name())
            .field("candidates", &self.candidates)
            .field("by_default", &self.by_default)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Reranking {
    /// Checks the configured candidate count with the rule `top_k` obeys.
    pub fn validate(&self) -> Result<(), crate::error::RagError> {
        if self.candidates == 0 || self.candidates > MAX_RERANK_CANDIDATES {
            return Err(crate::error::RagError::invalid(format!(
                "RERANK_CANDIDATES must be between 1 and {MAX_RERANK_CANDIDATES}"
            )));
        }
        Ok(())
    }

    /// Reorders `hits` (retrieval's best first) by the reranker and keeps
    /// the best `top_k`; each kept hit's `score` becomes the reranker's.
    /// When the reranker fails, the first `top_k` hits are kept as they
    /// were, and the report says why.
    pub async fn apply(
        &self,
        query: &str,
        mut hits: Vec<VectorSearchResult>,
        top_k: usize,
    ) -> (Vec<VectorSearchResult>, RerankReport) {
        let started = Instant::now();
        let mut report = RerankReport {
            reranker: self.reranker.name().to_string(),
            applied: true,
            candidates: hits.len(),
            latency_ms: 0,
            fallback_reason: None,
        };
        if hits.len() > 1 {
            let documents: Vec<String> = hits.iter().map(document_text).collect();
            let scored =
                match tokio::time::timeout(self.timeout, self.reranker.score(query, &documents))
                    .await
                {
                    Ok(scored) => scored,
                    Err(_) => Err(RerankError::TimedOut),
                };
            match scored {
                Ok(scores)
                    if scores.len() == hits.len() && scores.iter().all(|s| s.is_finite()) =>
                {
                    hits = in_score_order(hits, &scores);
                }
                Ok(scores) => {
                    tracing::warn!(
                        reranker = self.reranker.name(),
                        expected = hits.len(),
                        got = scores.len(),
                        "the reranker's scores do not match the passages; keeping retrieval order"
                    );
                    report.applied = false;
                    report.fallback_reason = Some(
                        RerankError::Unreadable(String::new())
                            .public_reason()
                            .into(),
                    );
                }
                Err(error) => {
                    tracing::warn!(
                        reranker = self.reranker.name(),
                        class = ?error.class(),
                        cause = %error,
                        "reranking failed; keeping retrieval order"
                    );
                    report.applied = false;
                    report.fallback_reason = Some(error.public_reason().to_string());
                }
            }
        }
        hits.truncate(top_k);
        report.latency_ms = started.elapsed().as_millis() as u64;
        (hits, report)
    }
}

/// What the reranker reads of a hit: its section's headings, then its text.
fn document_text(hit: &VectorSearchResult) -> String {
    let mut text = match &hit.metadata.location.section {
        Some(section) if !section.is_empty() => format!("{section}\n{}", hit.content),
        _ => hit.content.clone(),
    };
    if text.len() > MAX_DOCUMENT_CHARS {
        let mut end = MAX_DOCUMENT_CHARS;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `hits` sorted by `scores`, best first; equal scores keep retrieval order.
fn in_score_order(hits: Vec<VectorSearchResult>, scores: &[f32]) -> Vec<VectorSearchResult> {
    let mut ranked: Vec<(usize, VectorSearchResult)> = hits.into_iter().enumerate().collect();
    ranked.sort_by(|(a, _), (b, _)| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
    ranked
        .into_iter()
        .map(|(i, mut hit)| {
            hit.score = scores[i];
            hit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChunkMetadata;
    use std::sync::Mutex;
    use uuid::Uuid;

    fn hit(id: &str, text: &str) -> VectorSearchResult {
        VectorSearchResult {
            document_id: Uuid::nil(),
            chunk_id: id.into(),
            score: 0.5,
            content: text.into(),
            metadata: ChunkMetadata {
                chunk_id: id.into(),
                document_id: Uuid::nil(),
                chunk_index: 0,
                start_char: 0,
                end_char: text.len() as u64,
                token_count: 1,
                location: Default::default(),
            },
        }
    }

    /// Scores a passage by how many times it holds the query's first word,
    /// and keeps what it was asked where the test can read it.
    struct CountingReranker {
        seen: Arc<Mutex<Vec<String>>>,
        answer: fn(usize) -> Result<Vec<f32>, RerankError>,
    }

    #[async_trait]
    impl Reranker for CountingReranker {
        fn name(&self) -> &str {
            "test:counting"
        }
        async fn score(&self, query: &str, documents: &[String]) -> Result<Vec<f32>, RerankError> {
            *self.seen.lock().unwrap() = documents.to_vec();
            let word = query.split_whitespace().next().unwrap_or_default();
            (self.answer)(documents.len())?;
            Ok(documents
                .iter()
                .map(|d| d.matches(word).count() as f32)
                .collect())
        }
    }

    fn reranking(
        answer: fn(usize) -> Result<Vec<f32>, RerankError>,
    ) -> (Reranking, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stage = Reranking {
            reranker: Arc::new(CountingReranker {
                seen: seen.clone(),
                answer,
            }),
            candidates: 30,
            by_default: true,
            timeout: Duration::from_secs(5),
        };
        (stage, seen)
    }

    #[tokio::test]
    async fn the_reranker_order_wins_and_its_scores_replace_retrievals() {
        let hits = vec![
            hit("a", "borrow once"),
            hit("b", "nothing here"),
            hit("c", "borrow borrow borrow"),
            hit("d", "borrow borrow"),
        ];
        let (stage, _) = reranking(|n| Ok(vec![0.0; n]));
        let (kept, report) = stage.apply("borrow rules", hits, 3).await;
        let ids: Vec<&str> = kept.iter().map(|h| h.chunk_id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "a"]);
        assert_eq!(kept[0].score, 3.0);
        assert!(report.applied && report.fallback_reason.is_none());
        assert_eq!(
            (report.candidates, report.reranker.as_str()),
            (4, "test:counting")
        );
    }

    #[tokio::test]
    async fn a_failing_reranker_keeps_retrieval_order_and_says_why() {
        let hits = vec![hit("a", "x"), hit("b", "borrow"), hit("c", "borrow")];
        let (stage, _) = reranking(|_| Err(RerankError::Throttled));
        let (kept, report) = stage.apply("borrow", hits.clone(), 2).await;
        assert_eq!(kept, hits[..2].to_vec());
        assert!(!report.applied);
        assert_eq!(
            report.fallback_reason.as_deref(),
            Some("the reranker is throttling requests")
        );
    }

    #[tokio::test]
    async fn the_reranker_reads_the_section_then_the_text_within_a_cap() {
        let mut with_section = hit("a", "Some text.");
        with_section.metadata.location.section = Some("Enums > Option".into());
        let (stage, seen) = reranking(|n| Ok(vec![0.0; n]));
        stage
            .apply("q", vec![with_section, hit("b", &"é".repeat(3000))], 2)
            .await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0], "Enums > Option\nSome text.");
        assert!(seen[1].len() <= MAX_DOCUMENT_CHARS && seen[1].starts_with('é'));
    }

    #[tokio::test]
    async fn a_single_candidate_is_not_sent_to_the_reranker() {
        let (stage, seen) = reranking(|_| Err(RerankError::Throttled));
        let (kept, report) = stage.apply("q", vec![hit("a", "x")], 5).await;
        assert_eq!(kept.len(), 1);
        assert!(report.applied);
        assert!(seen.lock().unwrap().is_empty());
    }
}
