//! all-MiniLM-L6-v2 run in-process with candle: BERT forward pass, mean
//! pooling over real tokens, L2 normalisation — the same computation as
//! sentence-transformers, which a test checks against reference vectors.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use rag_core::{EmbedError, Embedder};
use rayon::prelude::*;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::model_files::MODEL_ID;

/// The model's `max_seq_length` in sentence-transformers; longer inputs are
/// truncated, exactly as the reference does.
const MAX_TOKENS: usize = 256;
/// Texts per forward pass. Inputs are sorted by length first so each pass
/// pads little.
const MICRO_BATCH: usize = 8;

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimension: usize,
}

/// The embedded default embedder (384 dimensions).
#[derive(Clone)]
pub struct MiniLmEmbedder {
    inner: Arc<Inner>,
}

fn candle_error(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::permanent(e.to_string())
}

impl MiniLmEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let config: Config = serde_json::from_str(
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
        let device = Device::Cpu;
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(candle_error)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(candle_error)?;
        let model = BertModel::load(vb, &config).map_err(candle_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                device,
                dimension: config.hidden_size,
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
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, width), &self.device)
            .map_err(candle_error)?;
        let type_ids = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, width), &self.device)
            .map_err(candle_error)?;
        let mask = Tensor::from_vec(
            flat(&|e| e.get_attention_mask()),
            (rows, width),
            &self.device,
        )
        .map_err(candle_error)?;
        let hidden = self
            .model
            .forward(&ids, &type_ids, Some(&mask))
            .map_err(candle_error)?;
        // Mean over real tokens only: padding positions are masked out.
        let mask = mask
            .to_dtype(DType::F32)
            .map_err(candle_error)?
            .unsqueeze(2)
            .map_err(candle_error)?;
        let summed = hidden
            .broadcast_mul(&mask)
            .and_then(|t| t.sum(1))
            .map_err(candle_error)?;
        let counts = mask.sum(1).map_err(candle_error)?;
        let mean = summed.broadcast_div(&counts).map_err(candle_error)?;
        let norms = mean
            .sqr()
            .and_then(|t| t.sum_keepdim(1))
            .and_then(|t| t.sqrt())
            .map_err(candle_error)?;
        let unit = mean.broadcast_div(&norms).map_err(candle_error)?;
        unit.to_vec2::<f32>().map_err(candle_error)
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
}
