//! all-MiniLM-L6-v2 run in-process: tokenizer, BERT forward pass (the fused
//! encoder in `bert.rs`), mean pooling over real tokens, L2 normalisation —
//! the same computation as sentence-transformers, which a test checks
//! against reference vectors.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rag_core::{EmbedError, Embedder};
use rayon::prelude::*;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::bert::{BertConfig, Encoder};
use crate::model_files::MODEL_ID;

/// The model's `max_seq_length` in sentence-transformers; longer inputs are
/// truncated, exactly as the reference does.
const MAX_TOKENS: usize = 256;
/// Texts per forward pass. Inputs are sorted by length first so each pass
/// pads little.
const MICRO_BATCH: usize = 8;

struct Inner {
    encoder: Encoder,
    tokenizer: Tokenizer,
    dimension: usize,
    /// The question lane: threads of their own for `embed_query`, so a
    /// question is computed beside an ingestion's batches (the OS shares
    /// the cores between them) instead of queueing behind them on rayon's
    /// global pool, where a batch of 32 long chunks takes seconds.
    questions: rayon::ThreadPool,
}

/// Threads of the question lane. Two, so two questions embed at once on a
/// laptop; a question is a few milliseconds of work, so more would only
/// take cores from ingestion.
const QUESTION_THREADS: usize = 2;

/// The embedded default embedder (384 dimensions).
#[derive(Clone)]
pub struct MiniLmEmbedder {
    inner: Arc<Inner>,
}

fn candle_error(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::permanent(e.to_string())
}

impl MiniLmEmbedder {
    /// The dimension of the vectors the model in `dir` produces, read from
    /// its `config.json` without loading the weights.
    pub fn dimension_in(dir: &Path) -> Result<usize, EmbedError> {
        let config: BertConfig = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).map_err(candle_error)?,
        )
        .map_err(candle_error)?;
        Ok(config.hidden_size)
    }

    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let config: BertConfig = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).map_err(candle_error)?,
        )
        .map_err(candle_error)?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(candle_error)?;
        // The shipped tokenizer pads everything to 128 tokens; the reference
        // pads to the longest input of the batch and truncates at 256.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(candle_error)?;
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(candle_error)?;
        let encoder = Encoder::load(&weights, &config).map_err(candle_error)?;
        let questions = rayon::ThreadPoolBuilder::new()
            .num_threads(QUESTION_THREADS)
            .thread_name(|i| format!("embed-question-{i}"))
            .build()
            .map_err(candle_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                encoder,
                tokenizer,
                dimension: config.hidden_size,
                questions,
            }),
        })
    }

    /// Embeds synchronously; call from a blocking thread.
    ///
    /// Micro-batches run in parallel on rayon's pool: candle's matrix
    /// multiplications barely use a second core on their own, while one
    /// micro-batch per core roughly doubles throughput on two cores (see
    /// docs/BENCHMARKS.md). The nested parallelism inside candle shares the
    /// same pool, so cores are not oversubscribed.
    pub fn embed_sync(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inner = &self.inner;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let groups: Vec<&[usize]> = order.chunks(MICRO_BATCH).collect();
        let results: Vec<Result<Vec<Vec<f32>>, EmbedError>> = groups
            .par_iter()
            .map(|group| {
                let batch: Vec<&str> = group.iter().map(|&i| texts[i].as_str()).collect();
                inner.forward(&batch)
            })
            .collect();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for (group, vectors) in groups.iter().zip(results) {
            for (&i, v) in group.iter().zip(vectors?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

impl MiniLmEmbedder {
    /// Embeds one question on the question lane; call from a blocking
    /// thread. The same computation as `embed_sync`, so the vector is the
    /// same bit for bit.
    pub fn embed_query_sync(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let inner = &self.inner;
        inner
            .questions
            .install(|| inner.forward(&[text]))?
            .pop()
            .ok_or_else(|| EmbedError::permanent("the encoder returned no vector"))
    }
}

impl Inner {
    fn forward(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(batch.to_vec(), true)
            .map_err(candle_error)?;
        let rows = encodings.len();
        let width = encodings.first().map(|e| e.get_ids().len()).unwrap_or(0);
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect()
        };
        self.encoder
            .embed(
                &flat(&|e| e.get_ids()),
                &flat(&|e| e.get_type_ids()),
                &flat(&|e| e.get_attention_mask()),
                rows,
                width,
            )
            .map_err(candle_error)
    }
}

#[async_trait]
impl Embedder for MiniLmEmbedder {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    fn batch_size(&self) -> usize {
        32
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let this = self.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || this.embed_sync(&texts))
            .await
            .map_err(|e| EmbedError::permanent(format!("embedding task failed: {e}")))?
    }

    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let this = self.clone();
        let text = text.to_string();
        tokio::task::spawn_blocking(move || this.embed_query_sync(&text))
            .await
            .map_err(|e| EmbedError::permanent(format!("embedding task failed: {e}")))?
    }
}
