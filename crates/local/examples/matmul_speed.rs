//! GFLOP/s of candle's matrix products (the `gemm` crate underneath) on the
//! shapes one MiniLM layer multiplies for one micro-batch of 8 texts of 230
//! tokens, laid out as `bert.rs` lays them out (weights `[in, out]`
//! row-major; the keys transposed as a strided view). Threads follow
//! RAYON_NUM_THREADS. benches/matmul.py runs it beside PyTorch on the same
//! shapes:
//!
//!     cargo build --release -p rag-local --example matmul_speed
//!     RAYON_NUM_THREADS=1 target/release/examples/matmul_speed
//!
//! Prints one JSON object per shape: name, dimensions, GFLOP/s (best of 5
//! rounds, each as many products as fill about 0.2 s).

use std::time::Instant;

use candle_core::{Device, Tensor};

fn filled(shape: &[usize]) -> Tensor {
    let len: usize = shape.iter().product();
    let data: Vec<f32> = (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("a tensor")
}

fn gflops(flops: f64, product: impl Fn() -> Tensor) -> f64 {
    let started = Instant::now();
    product();
    let once = started.elapsed().as_secs_f64().max(1e-6);
    let repeats = ((0.2 / once) as usize).clamp(1, 10_000);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..repeats {
            std::hint::black_box(product());
        }
        best = best.min(started.elapsed().as_secs_f64() / repeats as f64);
    }
    flops / best / 1e9
}

fn main() {
    let (texts, width, hidden, heads, inner) = (8, 230, 384, 12, 1536);
    let rows = texts * width;
    let head = hidden / heads;
    let x = filled(&[rows, hidden]);
    let wide = filled(&[rows, inner]);
    for (name, out) in [
        ("qkv", 3 * hidden),
        ("attention_output", hidden),
        ("up", inner),
    ] {
        let weight = filled(&[hidden, out]);
        let rate = gflops(2.0 * (rows * hidden * out) as f64, || {
            x.matmul(&weight).expect("matmul")
        });
        println!(
            "{{\"name\": \"{name}\", \"m\": {rows}, \"k\": {hidden}, \"n\": {out}, \"batch\": 1, \"gflops\": {rate:.2}}}"
        );
    }
    let down = filled(&[inner, hidden]);
    let rate = gflops(2.0 * (rows * inner * hidden) as f64, || {
        wide.matmul(&down).expect("matmul")
    });
    println!(
        "{{\"name\": \"down\", \"m\": {rows}, \"k\": {inner}, \"n\": {hidden}, \"batch\": 1, \"gflops\": {rate:.2}}}"
    );
    let batch = texts * heads;
    let query = filled(&[batch, width, head]);
    let key = filled(&[batch, width, head]);
    let key_t = key.t().expect("a transposed view");
    let rate = gflops(2.0 * (batch * width * head * width) as f64, || {
        query.matmul(&key_t).expect("matmul")
    });
    println!(
        "{{\"name\": \"scores\", \"m\": {width}, \"k\": {head}, \"n\": {width}, \"batch\": {batch}, \"gflops\": {rate:.2}}}"
    );
    let weights = filled(&[batch, width, width]);
    let value = filled(&[batch, width, head]);
    let rate = gflops(2.0 * (batch * width * width * head) as f64, || {
        weights.matmul(&value).expect("matmul")
    });
    println!(
        "{{\"name\": \"context\", \"m\": {width}, \"k\": {width}, \"n\": {head}, \"batch\": {batch}, \"gflops\": {rate:.2}}}"
    );
}
