//! Titan text embeddings over Bedrock `InvokeModel`. Titan embeds one text
//! per call, so a batch is many calls in flight at once, answered in input
//! order, each retried with backoff when throttled. How many are in flight
//! adapts to the account's quota (`rag_core::adaptive`): a throttle halves
//! it, a run of successes grows it back to the configured concurrency.

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::primitives::Blob;
use futures::stream::{self, StreamExt, TryStreamExt};
use rag_core::error::ErrorClass;
use rag_core::{EmbedError, Embedder};
use serde_json::{Value, json};

use crate::sdk_error::{classify, retryable_code};
use rag_core::adaptive::AdaptiveLimit;
use rag_core::retry::RetryPolicy;

/// Titan v2 takes at most 50,000 characters (about 8,192 tokens); longer
/// text is cut here rather than failing the whole batch.
const MAX_INPUT_CHARS: usize = 50_000;

/// Which Titan text embedding model, with the dimensions it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TitanModel {
    /// `amazon.titan-embed-text-v2:0`: 1024, 512 or 256 dimensions.
    V2,
    /// `amazon.titan-embed-text-v1`: always 1536.
    V1,
}

impl TitanModel {
    /// Recognises a model id, including cross-region inference profiles
    /// and ARNs that end in the model id.
    pub fn from_model_id(model_id: &str) -> Option<TitanModel> {
        if model_id.contains("amazon.titan-embed-text-v2") {
            Some(TitanModel::V2)
        } else if model_id.contains("amazon.titan-embed-text-v1") {
            Some(TitanModel::V1)
        } else {
            None
        }
    }

    pub fn dimensions(self) -> &'static [usize] {
        match self {
            TitanModel::V2 => &[1024, 512, 256],
            TitanModel::V1 => &[1536],
        }
    }

    pub fn default_dimension(self) -> usize {
        self.dimensions()[0]
    }
}

pub struct TitanEmbedder {
    client: Client,
    model_id: String,
    model: TitanModel,
    dimension: usize,
    concurrency: usize,
    /// Bounds the calls in flight across every caller (concurrent document
    /// ingests, pipelined batches, queries), not just within one batch,
    /// and cuts that bound while Bedrock throttles.
    limit: AdaptiveLimit,
    retry: RetryPolicy,
}

impl TitanEmbedder {
    /// Fails when the model is not a Titan text model or does not offer
    /// `dimension`.
    pub fn new(
        client: Client,
        model_id: impl Into<String>,
        dimension: usize,
        concurrency: usize,
        retry: RetryPolicy,
    ) -> Result<TitanEmbedder, EmbedError> {
        let model_id = model_id.into();
        let model = TitanModel::from_model_id(&model_id).ok_or_else(|| {
            EmbedError::Invalid(format!(
                "{model_id} is not a Titan text embedding model (amazon.titan-embed-text-v2:0 or amazon.titan-embed-text-v1)"
            ))
        })?;
        if !model.dimensions().contains(&dimension) {
            return Err(EmbedError::Invalid(format!(
                "{model_id} produces {:?} dimensions, not {dimension}",
                model.dimensions()
            )));
        }
        Ok(TitanEmbedder {
            client,
            model_id,
            model,
            dimension,
            concurrency: concurrency.max(1),
            limit: AdaptiveLimit::new(concurrency),
            retry,
        })
    }

    /// How many Titan calls may be in flight now: the configured
    /// concurrency, or less while Bedrock throttles.
    pub fn current_concurrency(&self) -> usize {
        self.limit.current()
    }

    fn request_body(&self, text: &str) -> Value {
        let text: String = text.chars().take(MAX_INPUT_CHARS).collect();
        match self.model {
            TitanModel::V2 => {
                json!({"inputText": text, "dimensions": self.dimension, "normalize": true})
            }
            TitanModel::V1 => json!({"inputText": text}),
        }
    }

    async fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        if text.trim().is_empty() {
            return Err(EmbedError::Invalid("cannot embed empty text".into()));
        }
        let body = self.request_body(text).to_string();
        // Held through retries, so a throttled embedder slows its callers
        // instead of piling up more calls.
        let permit = self.limit.acquire().await;
        let output = self
            .retry
            .run(
                || {
                    self.client
                        .invoke_model()
                        .model_id(&self.model_id)
                        .content_type("application/json")
                        .accept("application/json")
                        .body(Blob::new(body.clone()))
                        .send()
                },
                |e| {
                    // Only decide retryability here; the error is
                    // classified properly once attempts run out.
                    // No code means the call never got an answer (a
                    // dropped connection, a timeout): worth repeating.
                    let code = aws_smithy_types::error::metadata::ProvideErrorMetadata::code(e);
                    if code == Some("ThrottlingException") {
                        self.limit.throttled(&permit);
                    }
                    (code.is_none() || retryable_code(code)).then_some(None)
                },
            )
            .await
            .map_err(embed_error)?;
        self.limit.succeeded();
        let response: Value = serde_json::from_slice(output.body().as_ref())
            .map_err(|e| EmbedError::permanent(format!("Titan answered with invalid JSON: {e}")))?;
        let vector: Vec<f32> = response
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or_else(|| EmbedError::permanent("Titan's answer has no embedding"))?
            .iter()
            .map(|v| v.as_f64().map(|f| f as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| EmbedError::permanent("Titan's embedding holds a non-number"))?;
        if vector.len() != self.dimension {
            return Err(EmbedError::permanent(format!(
                "Titan returned {} dimensions, expected {}",
                vector.len(),
                self.dimension
            )));
        }
        Ok(vector)
    }
}

fn embed_error(
    error: aws_sdk_bedrockruntime::error::SdkError<
        aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError,
    >,
) -> EmbedError {
    let c = classify(error);
    if c.throttled {
        return EmbedError::Throttled { retry_after: None };
    }
    match c.class {
        ErrorClass::Invalid => EmbedError::Invalid(c.message),
        ErrorClass::Transient => EmbedError::Transient(c.cause),
        ErrorClass::NotFound | ErrorClass::Permanent => EmbedError::Permanent(c.cause),
    }
}

#[async_trait]
impl Embedder for TitanEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    /// Several rounds of in-flight calls per batch, so the pipeline keeps
    /// every slot busy between batch boundaries.
    fn batch_size(&self) -> usize {
        self.concurrency * 4
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // `buffered` keeps at most `concurrency` calls in flight and yields
        // results in input order.
        stream::iter(texts.to_vec())
            .map(|text| async move { self.embed_one(&text).await })
            .buffered(self.concurrency)
            .try_collect()
            .await
    }
}
