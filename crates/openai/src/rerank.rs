//! A `Reranker` for the `/rerank` API that TEI, Infinity, llama.cpp's
//! server (`--reranking`), vLLM, Cohere and Jina share: `{model, query,
//! documents, top_n}` in, `{results: [{index, relevance_score}]}` out.

use std::time::Duration;

use async_trait::async_trait;
use rag_core::rerank::{RerankError, Reranker};
use serde_json::{Value, json};

use crate::http::{Failure, post_json};

/// Where the rerank server is and which model to ask.
#[derive(Debug, Clone)]
pub struct HttpRerankConfig {
    /// The whole endpoint, e.g. `http://127.0.0.1:8080/v1/rerank` or
    /// `https://api.cohere.com/v2/rerank`: servers put it under
    /// different paths.
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

pub struct HttpReranker {
    client: reqwest::Client,
    config: HttpRerankConfig,
    name: String,
}

impl HttpReranker {
    pub fn new(client: reqwest::Client, config: HttpRerankConfig) -> Self {
        let name = format!("http:{}", config.model);
        Self {
            client,
            config,
            name,
        }
    }
}

#[async_trait]
impl Reranker for HttpReranker {
    fn name(&self) -> &str {
        &self.name
    }

    async fn score(&self, query: &str, documents: &[String]) -> Result<Vec<f32>, RerankError> {
        let body = json!({
            "model": self.config.model,
            "query": query,
            "documents": documents,
            "top_n": documents.len(),
        });
        let value = post_json(
            &self.client,
            &self.config.url,
            &body,
            self.config.api_key.as_deref(),
            self.config.timeout,
        )
        .await
        .map_err(|failure| match failure {
            Failure::Unreachable(e) => RerankError::Transient(Box::new(e)),
            Failure::Request(e) => RerankError::permanent(e),
            Failure::Status { status: 429, .. } => RerankError::Throttled,
            Failure::Status {
                status, summary, ..
            } if Failure::is_invalid_status(status) => RerankError::Invalid(summary),
            Failure::Status {
                status, summary, ..
            } if status >= 500 => RerankError::Transient(summary.into()),
            Failure::Status { summary, .. } => RerankError::permanent(summary),
            Failure::NotJson(message) => RerankError::Unreadable(message),
        })?;
        scores_from_results(&value, documents.len())
    }
}

/// One score per document from a `/rerank` reply. Servers send the results
/// best first, under `results` (Cohere, Jina, vLLM, llama.cpp, Infinity)
/// or as a bare array (TEI's own route), the score as `relevance_score`
/// or `score`. A document the server left out ranks after every returned
/// one; an index out of range or given twice makes the reply unusable.
fn scores_from_results(value: &Value, count: usize) -> Result<Vec<f32>, RerankError> {
    let results = value
        .get("results")
        .unwrap_or(value)
        .as_array()
        .ok_or_else(|| RerankError::Unreadable("the reply has no results array".into()))?;
    let mut scores: Vec<Option<f32>> = vec![None; count];
    for result in results {
        let index = result
            .get("index")
            .and_then(Value::as_u64)
            .map(|i| i as usize)
            .filter(|&i| i < count)
            .ok_or_else(|| {
                RerankError::Unreadable(format!("a result has no valid index: {result}"))
            })?;
        let score = result
            .get("relevance_score")
            .or_else(|| result.get("score"))
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite())
            .ok_or_else(|| RerankError::Unreadable(format!("a result has no score: {result}")))?;
        if scores[index].replace(score as f32).is_some() {
            return Err(RerankError::Unreadable(format!(
                "document {index} was scored twice"
            )));
        }
    }
    let floor = scores
        .iter()
        .flatten()
        .copied()
        .fold(f32::INFINITY, f32::min);
    if !floor.is_finite() && count > 0 {
        return Err(RerankError::Unreadable(
            "the reply scored no document".into(),
        ));
    }
    Ok(scores
        .into_iter()
        .map(|s| s.unwrap_or(floor - 1.0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_the_servers_send_is_read() {
        let cohere = json!({"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.2}]});
        assert_eq!(scores_from_results(&cohere, 2).unwrap(), [0.2, 0.9]);
        let tei = json!([{"index": 0, "score": 0.5}, {"index": 1, "score": 0.1}]);
        assert_eq!(scores_from_results(&tei, 2).unwrap(), [0.5, 0.1]);
    }

    #[test]
    fn left_out_documents_rank_last_and_bad_indices_are_refused() {
        let partial = json!({"results": [{"index": 2, "relevance_score": 0.7}]});
        let scores = scores_from_results(&partial, 3).unwrap();
        assert!(scores[0] == scores[1] && scores[1] < scores[2] && scores[2] == 0.7);
        for bad in [
            json!({"results": [{"index": 5, "relevance_score": 0.7}]}),
            json!({"results": [{"index": 0, "relevance_score": 0.7}, {"index": 0, "relevance_score": 0.1}]}),
            json!({"results": [{"index": 0}]}),
            json!({"results": []}),
            json!({"error": "model not loaded"}),
        ] {
            assert!(
                matches!(
                    scores_from_results(&bad, 3),
                    Err(RerankError::Unreadable(_))
                ),
                "{bad}"
            );
        }
    }
}
