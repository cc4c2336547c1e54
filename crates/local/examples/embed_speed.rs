//! Embedding throughput of the in-process MiniLM on a JSON array of texts,
//! in batches of 32 like the ingestion pipeline. Threads follow
//! RAYON_NUM_THREADS. Used by benches/embedded.py:
//!
//!     cargo build --release -p rag-local --example embed_speed
//!     RAYON_NUM_THREADS=2 target/release/examples/embed_speed MODEL_DIR texts.json
//!
//! With a third argument it also writes the vectors there, raw little-endian
//! f32 row-major, for benches/vectors.py's real-embedding runs.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: embed_speed MODEL_DIR TEXTS.json [VECTORS.f32]");
    let texts: Vec<String> = match args.next() {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path).expect("read texts"))
            .expect("a JSON array of strings"),
        None => (0..64)
            .map(|i| {
                format!(
                    "{i} {}",
                    "Ownership is a set of rules that govern how a Rust program manages memory. "
                        .repeat(13)
                )
            })
            .collect(),
    };
    let out = args.next();
    let embedder = rag_local::MiniLmEmbedder::load(std::path::Path::new(&dir)).expect("load model");
    embedder
        .embed_sync(&texts[..texts.len().min(4)])
        .expect("warm up");
    let mut vectors = Vec::new();
    let start = Instant::now();
    for batch in texts.chunks(32) {
        let embedded = embedder.embed_sync(batch).expect("embed");
        if out.is_some() {
            vectors.extend(embedded.into_iter().flatten().flat_map(f32::to_le_bytes));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(path) = out {
        std::fs::write(path, vectors).expect("write the vectors");
    }
    println!(
        "{{\"texts\": {}, \"seconds\": {:.3}, \"per_second\": {:.2}}}",
        texts.len(),
        secs,
        texts.len() as f64 / secs
    );
}
