//! Quick embedding speed probe: `cargo run -p rag-local --example embed_speed -- MODEL_DIR`.
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("model dir");
    let embedder = rag_local::MiniLmEmbedder::load(std::path::Path::new(&dir)).unwrap();
    let text =
        "Ownership is a set of rules that govern how a Rust program manages memory. ".repeat(13);
    let texts: Vec<String> = (0..32).map(|i| format!("{i} {text}")).collect();
    embedder.embed_sync(&texts[..2]).unwrap();
    let start = Instant::now();
    embedder.embed_sync(&texts).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} texts of {} chars in {:.2}s = {:.1}/s",
        texts.len(),
        texts[0].len(),
        secs,
        texts.len() as f64 / secs
    );
}
