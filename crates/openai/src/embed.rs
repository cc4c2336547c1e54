//! An `Embedder` for the `/v1/embeddings` API that OpenAI, Ollama, vLLM,
//! TEI, llama.cpp's server and LM Studio share: `{model, input: [...]}` in,
//! `{data: [{index, embedding}]}` out.

use std::time::Duration;

use async_trait::async_trait;
use rag_core::{EmbedError, Embedder};
use serde_json::{Value, json};

use crate::http::{Failure, post_json};

/// Where the embeddings server is and which model to ask.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedConfig {
    /// Up to and including `/v1`, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// Texts per request; servers cap it (TEI at 32 by default).
    pub batch_size: usize,
}

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    config: OpenAiEmbedConfig,
    model_id: String,
    dimension: usize,
}

impl OpenAiEmbedder {
    /// Connects to the server: one embedding of a probe text tells the
    /// model's dimension, so a wrong URL, model or key fails start-up
    /// rather than the first ingestion.
    pub async fn connect(
        client: reqwest::Client,
        config: OpenAiEmbedConfig,
    ) -> Result<Self, EmbedError> {
        if config.batch_size == 0 {
            return Err(EmbedError::Invalid(
                "the embedding batch size must be at least 1".into(),
            ));
        }
        let model_id = format!("openai:{}", config.model);
        let mut embedder = Self {
            client,
            config,
            model_id,
            dimension: 0,
        };
        let probe = embedder
            .request(&["dimension probe".to_string()])
            .await?
            .pop()
            .unwrap_or_default();
        if probe.is_empty() {
            return Err(EmbedError::permanent(
                "the embeddings server returned an empty vector",
            ));
        }
        embedder.dimension = probe.len();
        Ok(embedder)
    }

    /// One request for `texts`, the vectors in input order.
    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let url = format!("{}/embeddings", self.config.base_url.trim_end_matches('/'));
        let body = json!({
            "model": self.config.model,
            "input": texts,
            "encoding_format": "float",
        });
        let value = post_json(
            &self.client,
            &url,
            &body,
            self.config.api_key.as_deref(),
            self.config.timeout,
        )
        .await
        .map_err(|failure| match failure {
            Failure::Unreachable(e) => EmbedError::Transient(Box::new(e)),
            Failure::Request(e) => EmbedError::permanent(e),
            Failure::Status {
                status: 429,
                retry_after,
                ..
            } => EmbedError::Throttled { retry_after },
            Failure::Status {
                status, summary, ..
            } if Failure::is_invalid_status(status) => EmbedError::Invalid(summary),
            Failure::Status {
                status, summary, ..
            } if status >= 500 => EmbedError::Transient(summary.into()),
            Failure::Status { summary, .. } | Failure::NotJson(summary) => {
                EmbedError::permanent(summary)
            }
        })?;
        vectors_from_reply(&value, texts.len())
    }
}

/// The vectors of an embeddings reply in input order. Servers may send
/// `data` in any order, so each item is placed by its `index`; an item
/// missing, out of range or given twice makes the reply unusable.
fn vectors_from_reply(value: &Value, count: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| EmbedError::permanent("the reply has no data array"))?;
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; count];
    for (position, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(position, |i| i as usize);
        let slot = vectors.get_mut(index).ok_or_else(|| {
            EmbedError::permanent(format!(
                "the reply has an item for input {index} of {count}"
            ))
        })?;
        let vector = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| EmbedError::permanent(format!("item {index} has no embedding")))?
            .iter()
            .map(|x| x.as_f64().map(|x| x as f32).filter(|x| x.is_finite()))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| {
                EmbedError::permanent(format!("item {index} holds a value that is not a number"))
            })?;
        if slot.replace(vector).is_some() {
            return Err(EmbedError::permanent(format!(
                "the reply has input {index} twice"
            )));
        }
    }
    vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| EmbedError::permanent(format!("input {i} has no vector"))))
        .collect()
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn batch_size(&self) -> usize {
        self.config.batch_size
    }

    /// Splits `texts` into batches of `batch_size`; every vector must have
    /// the dimension the probe found, since one of another size written
    /// into the index would corrupt every later search.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.batch_size) {
            for vector in self.request(batch).await? {
                if vector.len() != self.dimension {
                    return Err(EmbedError::permanent(format!(
                        "the model returned a {}-dimensional vector, expected {}",
                        vector.len(),
                        self.dimension
                    )));
                }
                vectors.push(vector);
            }
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_placed_by_index_and_a_bad_reply_is_refused() {
        let reply = json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]},
        ]});
        assert_eq!(
            vectors_from_reply(&reply, 2).unwrap(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
        for (bad, why) in [
            (json!({"object": "list"}), "no data"),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}]}),
                "input 1",
            ),
            (
                json!({"data": [{"index": 3, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}),
                "input 3 of 2",
            ),
            (
                json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}),
                "twice",
            ),
            (
                json!({"data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1.0]}]}),
                "not a number",
            ),
        ] {
            let error = vectors_from_reply(&bad, 2).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}
