//! The BERT encoder forward pass of all-MiniLM-L6-v2, written for inference
//! speed on a CPU. candle multiplies the matrices; every step between two
//! products (bias, splitting heads, masked softmax, GELU, residual plus
//! layer norm) is one fused pass over contiguous memory, in place where it
//! can be.
//!
//! candle-transformers' `BertModel` computes the same function with about
//! twenty tensor operations per layer, each a separate pass that allocates
//! its output; a profile showed those passes, not the matrix products, took
//! two thirds of the time (docs/BENCHMARKS.md). The arithmetic follows
//! Hugging Face's `BertModel` (post-norm layers, exact erf GELU, additive
//! attention mask); `tests/minilm_reference.rs` compares the output with
//! sentence-transformers'.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, InplaceOp1, Layout, Shape, Tensor};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::vecmath;

type CandleResult<T> = candle_core::Result<T>;

/// The fields of a Hugging Face BERT `config.json` this encoder uses.
#[derive(Debug, Deserialize)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

struct Layer {
    /// `[Wq; Wk; Wv]` transposed: (hidden, 3 * hidden), so one product
    /// gives queries, keys and values.
    qkv: Tensor,
    qkv_bias: Vec<f32>,
    /// Attention output projection, transposed: (hidden, hidden).
    output: Tensor,
    output_bias: Vec<f32>,
    attention_norm: Norm,
    /// Feed-forward, transposed: (hidden, intermediate) and back.
    up: Tensor,
    up_bias: Vec<f32>,
    down: Tensor,
    down_bias: Vec<f32>,
    output_norm: Norm,
}

pub(crate) struct Encoder {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_positions: usize,
    type_vocab: usize,
}

/// The tensors of a safetensors file, converted straight into the
/// encoder's own buffers: one pass over the file's bytes per tensor, where
/// loading through candle's `VarBuilder` copied each tensor twice.
struct Weights<'a>(SafeTensors<'a>);

impl Weights<'_> {
    fn bytes(&self, name: &str, shape: &[usize]) -> CandleResult<&[u8]> {
        let view = self
            .0
            .tensor(name)
            .map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            candle_core::bail!(
                "{name}: expected F32 {shape:?}, found {:?} {:?}",
                view.dtype(),
                view.shape()
            );
        }
        Ok(view.data())
    }

    fn vector(&self, name: &str, shape: &[usize]) -> CandleResult<Vec<f32>> {
        Ok(self
            .bytes(name, shape)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn norm(&self, prefix: &str, hidden: usize, eps: f64) -> CandleResult<Norm> {
        Ok(Norm {
            gamma: self.vector(&format!("{prefix}.weight"), &[hidden])?,
            beta: self.vector(&format!("{prefix}.bias"), &[hidden])?,
            eps: eps as f32,
        })
    }

    /// Linear layers' (out, in) weights side by side as the (in, n * out)
    /// right-hand side of `x · Wᵀ`, so one product computes them all.
    fn transposed(&self, names: &[String], out: usize, input: usize) -> CandleResult<Tensor> {
        let width = names.len() * out;
        let mut matrix = vec![0f32; input * width];
        for (part, name) in names.iter().enumerate() {
            let bytes = self.bytes(name, &[out, input])?;
            for (o, row) in bytes.chunks_exact(4 * input).enumerate() {
                for (i, b) in row.chunks_exact(4).enumerate() {
                    matrix[i * width + part * out + o] =
                        f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
        Tensor::from_vec(matrix, (input, width), &Device::Cpu)
    }
}

impl Encoder {
    /// Builds the encoder from the bytes of `model.safetensors`.
    pub(crate) fn load(safetensors: &[u8], config: &BertConfig) -> CandleResult<Self> {
        if config.hidden_act != "gelu" {
            candle_core::bail!(
                "hidden_act {:?} is not supported (only the exact \"gelu\")",
                config.hidden_act
            );
        }
        if let Some(kind) = &config.position_embedding_type
            && kind != "absolute"
        {
            candle_core::bail!("position_embedding_type {kind:?} is not supported");
        }
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !hidden.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {hidden} does not split into {heads} heads");
        }
        let weights = Weights(
            SafeTensors::deserialize(safetensors)
                .map_err(|e| candle_core::Error::Msg(format!("model.safetensors: {e}")))?,
        );
        let inner = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let word = weights.vector(
            "embeddings.word_embeddings.weight",
            &[config.vocab_size, hidden],
        )?;
        let position = weights.vector(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, hidden],
        )?;
        let token_type = weights.vector(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, hidden],
        )?;
        let embedding_norm = weights.norm("embeddings.LayerNorm", hidden, eps)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let layer = format!("encoder.layer.{index}");
            let own = format!("{layer}.attention.self");
            let mut qkv_bias = Vec::with_capacity(3 * hidden);
            for name in ["query", "key", "value"] {
                qkv_bias.extend(weights.vector(&format!("{own}.{name}.bias"), &[hidden])?);
            }
            layers.push(Layer {
                qkv: weights.transposed(
                    &["query", "key", "value"].map(|name| format!("{own}.{name}.weight")),
                    hidden,
                    hidden,
                )?,
                qkv_bias,
                output: weights.transposed(
                    &[format!("{layer}.attention.output.dense.weight")],
                    hidden,
                    hidden,
                )?,
                output_bias: weights
                    .vector(&format!("{layer}.attention.output.dense.bias"), &[hidden])?,
                attention_norm: weights.norm(
                    &format!("{layer}.attention.output.LayerNorm"),
                    hidden,
                    eps,
                )?,
                up: weights.transposed(
                    &[format!("{layer}.intermediate.dense.weight")],
                    inner,
                    hidden,
                )?,
                up_bias: weights.vector(&format!("{layer}.intermediate.dense.bias"), &[inner])?,
                down: weights.transposed(
                    &[format!("{layer}.output.dense.weight")],
                    hidden,
                    inner,
                )?,
                down_bias: weights.vector(&format!("{layer}.output.dense.bias"), &[hidden])?,
                output_norm: weights.norm(&format!("{layer}.output.LayerNorm"), hidden, eps)?,
            });
        }
        Ok(Self {
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            hidden,
            heads,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            type_vocab: config.type_vocab_size,
        })
    }

    /// Mean-pooled, L2-normalised sentence vectors for `rows` sequences of
    /// `width` tokens each (row-major ids, token types and attention mask;
    /// padding has mask 0 and takes no part in attention or pooling).
    pub(crate) fn embed(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        mask: &[u32],
        rows: usize,
        width: usize,
    ) -> CandleResult<Vec<Vec<f32>>> {
        let tokens = rows * width;
        if ids.len() != tokens || type_ids.len() != tokens || mask.len() != tokens {
            candle_core::bail!("ids, token types and mask must hold {rows} x {width} values");
        }
        if width > self.max_positions {
            candle_core::bail!(
                "{width} tokens exceed the model's {} positions",
                self.max_positions
            );
        }
        let mut hidden = self.embeddings(ids, type_ids, width)?;
        // Hugging Face adds the dtype's minimum to masked scores, which
        // softmax turns into exactly zero weight.
        let additive_mask: Vec<f32> = mask
            .iter()
            .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
            .collect();
        let dims = Dims {
            rows,
            width,
            heads: self.heads,
            head_size: self.hidden / self.heads,
        };
        for layer in &self.layers {
            hidden = layer.forward(&hidden, dims, &additive_mask)?;
        }
        let states = hidden.flatten_all()?.to_vec1::<f32>()?;
        Ok(mean_pool(&states, mask, rows, width, self.hidden))
    }

    fn embeddings(&self, ids: &[u32], type_ids: &[u32], width: usize) -> CandleResult<Tensor> {
        let h = self.hidden;
        let mut x = vec![0f32; ids.len() * h];
        for (t, row) in x.chunks_exact_mut(h).enumerate() {
            let (id, kind, position) = (ids[t] as usize, type_ids[t] as usize, t % width);
            if id >= self.vocab || kind >= self.type_vocab {
                candle_core::bail!("token {id} (type {kind}) is outside the vocabulary");
            }
            let word = &self.word[id * h..(id + 1) * h];
            let kind = &self.token_type[kind * h..(kind + 1) * h];
            let position = &self.position[position * h..(position + 1) * h];
            // The order of Hugging Face's additions, so rounding matches.
            for j in 0..h {
                row[j] = (word[j] + kind[j]) + position[j];
            }
            layer_norm(row, &self.embedding_norm);
        }
        Tensor::from_vec(x, (ids.len(), h), &Device::Cpu)
    }
}

#[derive(Clone, Copy)]
struct Dims {
    rows: usize,
    width: usize,
    heads: usize,
    head_size: usize,
}

impl Layer {
    fn forward(&self, x: &Tensor, dims: Dims, additive_mask: &[f32]) -> CandleResult<Tensor> {
        let split = x.matmul(&self.qkv)?.apply_op1_no_bwd(&SplitHeads {
            bias: &self.qkv_bias,
            dims,
        })?;
        let (query, key, value) = (split.get(0)?, split.get(1)?, split.get(2)?);
        let scores = query.matmul(&key.t()?)?;
        scores.inplace_op1(&MaskedSoftmax {
            scale: 1.0 / (dims.head_size as f32).sqrt(),
            additive_mask,
            dims,
        })?;
        let context = scores
            .matmul(&value)?
            .apply_op1_no_bwd(&MergeHeads { dims })?;
        let attended = context.matmul(&self.output)?.apply_op2_no_bwd(
            x,
            &BiasResidualNorm {
                bias: &self.output_bias,
                norm: &self.attention_norm,
            },
        )?;
        let up = attended.matmul(&self.up)?;
        up.inplace_op1(&BiasGelu {
            bias: &self.up_bias,
        })?;
        up.matmul(&self.down)?.apply_op2_no_bwd(
            &attended,
            &BiasResidualNorm {
                bias: &self.down_bias,
                norm: &self.output_norm,
            },
        )
    }
}

/// Sums in eight independent lanes, which the compiler keeps in vector
/// registers (a single running sum would have to stay in order).
#[inline(always)]
fn lanes_sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let blocks = values.chunks_exact(8);
    let rest: f32 = blocks.remainder().iter().sum();
    for block in blocks {
        for (lane, v) in lanes.iter_mut().zip(block) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

#[inline(always)]
fn lanes_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let blocks = values.chunks_exact(8);
    let rest = blocks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    for block in blocks {
        for (lane, v) in lanes.iter_mut().zip(block) {
            *lane = lane.max(*v);
        }
    }
    lanes.iter().fold(rest, |m, v| m.max(*v))
}

#[inline(always)]
fn layer_norm(row: &mut [f32], norm: &Norm) {
    let n = row.len() as f32;
    let mean = lanes_sum(row) / n;
    let mut squares = [0f32; 8];
    let blocks = row.chunks_exact(8);
    let rest: f32 = blocks
        .remainder()
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum();
    for block in blocks {
        for (lane, x) in squares.iter_mut().zip(block) {
            *lane += (x - mean) * (x - mean);
        }
    }
    let variance = (squares.iter().sum::<f32>() + rest) / n;
    let inverse = 1.0 / (variance + norm.eps).sqrt();
    for ((x, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
        *x = (*x - mean) * inverse * g + b;
    }
}

fn mean_pool(states: &[f32], mask: &[u32], rows: usize, width: usize, h: usize) -> Vec<Vec<f32>> {
    (0..rows)
        .map(|r| {
            let mut sum = vec![0f32; h];
            let mut count = 0f32;
            for s in 0..width {
                let t = r * width + s;
                if mask[t] == 0 {
                    continue;
                }
                count += 1.0;
                for (acc, x) in sum.iter_mut().zip(&states[t * h..(t + 1) * h]) {
                    *acc += x;
                }
            }
            let count = count.max(1.0);
            sum.iter_mut().for_each(|x| *x /= count);
            let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            sum.iter_mut().for_each(|x| *x /= norm);
            sum
        })
        .collect()
}

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> CandleResult<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("expected a contiguous f32 tensor"),
    }
}

fn contiguous_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> CandleResult<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("expected a contiguous f32 tensor"),
    }
}

/// (tokens, 3 * hidden) products plus bias into (3, rows * heads, width,
/// head_size): queries, keys and values, each head's tokens contiguous.
struct SplitHeads<'a> {
    bias: &'a [f32],
    dims: Dims,
}

impl CustomOp1 for SplitHeads<'_> {
    fn name(&self) -> &'static str {
        "split-heads"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CandleResult<(CpuStorage, Shape)> {
        let Dims {
            rows,
            width,
            heads,
            head_size,
        } = self.dims;
        let h = heads * head_size;
        let input = contiguous(storage, layout)?;
        if input.len() != rows * width * 3 * h {
            candle_core::bail!("split-heads: unexpected input size");
        }
        let mut out = vec![0f32; input.len()];
        let part = rows * heads * width * head_size;
        for (t, token) in input.chunks_exact(3 * h).enumerate() {
            let (r, s) = (t / width, t % width);
            for c in 0..3 {
                for n in 0..heads {
                    let from = c * h + n * head_size;
                    let to = c * part + ((r * heads + n) * width + s) * head_size;
                    let source = &token[from..from + head_size];
                    let bias = &self.bias[from..from + head_size];
                    for ((o, x), b) in out[to..to + head_size].iter_mut().zip(source).zip(bias) {
                        *o = x + b;
                    }
                }
            }
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((3, rows * heads, width, head_size)),
        ))
    }
}

/// Softmax over each row of attention scores after scaling and adding the
/// key's mask, in place.
struct MaskedSoftmax<'a> {
    scale: f32,
    additive_mask: &'a [f32],
    dims: Dims,
}

impl InplaceOp1 for MaskedSoftmax<'_> {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> CandleResult<()> {
        let Dims {
            rows, width, heads, ..
        } = self.dims;
        let scores = contiguous_mut(storage, layout)?;
        if scores.len() != rows * heads * width * width {
            candle_core::bail!("masked-softmax: unexpected input size");
        }
        let (scale, masks) = (self.scale, self.additive_mask);
        // Compiled for the widest vector instructions this CPU has.
        crate::simd::arch().dispatch(|| {
            for (index, row) in scores.chunks_exact_mut(width).enumerate() {
                let r = index / (heads * width);
                let mask = &masks[r * width..(r + 1) * width];
                for (x, m) in row.iter_mut().zip(mask) {
                    *x = *x * scale + m;
                }
                let max = lanes_max(row);
                for x in row.iter_mut() {
                    *x = vecmath::exp_nonpositive(*x - max);
                }
                let inverse = 1.0 / lanes_sum(row);
                row.iter_mut().for_each(|x| *x *= inverse);
            }
        });
        Ok(())
    }
}

/// (rows * heads, width, head_size) back to (tokens, hidden).
struct MergeHeads {
    dims: Dims,
}

impl CustomOp1 for MergeHeads {
    fn name(&self) -> &'static str {
        "merge-heads"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CandleResult<(CpuStorage, Shape)> {
        let Dims {
            rows,
            width,
            heads,
            head_size,
        } = self.dims;
        let h = heads * head_size;
        let input = contiguous(storage, layout)?;
        if input.len() != rows * width * h {
            candle_core::bail!("merge-heads: unexpected input size");
        }
        let mut out = vec![0f32; input.len()];
        for (block, values) in input.chunks_exact(width * head_size).enumerate() {
            let (r, n) = (block / heads, block % heads);
            for (s, head) in values.chunks_exact(head_size).enumerate() {
                let to = (r * width + s) * h + n * head_size;
                out[to..to + head_size].copy_from_slice(head);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows * width, h))))
    }
}

/// `layer_norm(x + bias + residual)`, one row per token.
struct BiasResidualNorm<'a> {
    bias: &'a [f32],
    norm: &'a Norm,
}

impl CustomOp2 for BiasResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "bias-residual-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        residual_storage: &CpuStorage,
        residual_layout: &Layout,
    ) -> CandleResult<(CpuStorage, Shape)> {
        let x = contiguous(storage, layout)?;
        let residual = contiguous(residual_storage, residual_layout)?;
        let h = self.bias.len();
        if x.len() != residual.len() || !x.len().is_multiple_of(h) {
            candle_core::bail!("bias-residual-norm: mismatched inputs");
        }
        let mut out = vec![0f32; x.len()];
        crate::simd::arch().dispatch(|| {
            for ((row, x), residual) in out
                .chunks_exact_mut(h)
                .zip(x.chunks_exact(h))
                .zip(residual.chunks_exact(h))
            {
                for (((o, x), b), r) in row.iter_mut().zip(x).zip(self.bias).zip(residual) {
                    *o = (x + b) + r;
                }
                layer_norm(row, self.norm);
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// `gelu(x + bias)` with the exact erf form, in place.
struct BiasGelu<'a> {
    bias: &'a [f32],
}

impl InplaceOp1 for BiasGelu<'_> {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> CandleResult<()> {
        let x = contiguous_mut(storage, layout)?;
        let h = self.bias.len();
        if !x.len().is_multiple_of(h) {
            candle_core::bail!("bias-gelu: unexpected input size");
        }
        crate::simd::arch().dispatch(|| {
            for row in x.chunks_exact_mut(h) {
                for (x, b) in row.iter_mut().zip(self.bias) {
                    *x = vecmath::gelu(*x + b);
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_then_merge_is_the_identity_on_each_part() {
        let dims = Dims {
            rows: 2,
            width: 3,
            heads: 2,
            head_size: 2,
        };
        let h = 4;
        let values: Vec<f32> = (0..2 * 3 * 3 * h).map(|v| v as f32).collect();
        let bias = vec![0.0; 3 * h];
        let input = Tensor::from_vec(values.clone(), (6, 3 * h), &Device::Cpu).unwrap();
        let split = input
            .apply_op1_no_bwd(&SplitHeads { bias: &bias, dims })
            .unwrap();
        for part in 0..3 {
            let merged = split
                .get(part)
                .unwrap()
                .contiguous()
                .unwrap()
                .apply_op1_no_bwd(&MergeHeads { dims })
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (t, row) in merged.iter().enumerate() {
                assert_eq!(
                    row[..],
                    values[t * 3 * h + part * h..t * 3 * h + (part + 1) * h]
                );
            }
        }
    }

    #[test]
    fn masked_keys_get_no_weight_and_rows_sum_to_one() {
        let dims = Dims {
            rows: 1,
            width: 3,
            heads: 1,
            head_size: 1,
        };
        let scores = Tensor::from_vec(
            vec![1.0f32, 2.0, 50.0, 0.0, 0.0, 9.0, 3.0, 1.0, 2.0],
            (1, 3, 3),
            &Device::Cpu,
        )
        .unwrap();
        let mask = [0.0, 0.0, f32::MIN];
        scores
            .inplace_op1(&MaskedSoftmax {
                scale: 1.0,
                additive_mask: &mask,
                dims,
            })
            .unwrap();
        for row in scores.get(0).unwrap().to_vec2::<f32>().unwrap() {
            assert_eq!(row[2], 0.0);
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let first = scores
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let e = 1f32.exp();
        assert!((first[1] - e / (1.0 + e)).abs() < 1e-6);
    }
}
