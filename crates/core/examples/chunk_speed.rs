//! Chunking throughput on real documents, single-threaded: parses every
//! file given (HTML, Markdown, text; not timed), then splits each parsed
//! text with the ingestion chunker (1000 characters, 200 overlap) until at
//! least two seconds have passed. Used by benches/side_by_side.py, which
//! runs LangChain's splitter on the same texts (written with --dump) and
//! embeds the chunks (written with --dump-chunks) with both embedders.
//!
//!     cargo build --release -p rag-core --example chunk_speed
//!     target/release/examples/chunk_speed --dump texts.json BOOK_DIR/*.html

use std::time::{Duration, Instant};

use rag_core::chunk::{ChunkingOptions, chunk_text};
use rag_core::parse::{detect_kind, parse};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dump = take_option(&mut args, "--dump");
    let dump_chunks = take_option(&mut args, "--dump-chunks");
    assert!(
        !args.is_empty(),
        "usage: chunk_speed [--dump texts.json] [--dump-chunks chunks.json] FILES..."
    );
    let texts: Vec<String> = args
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).expect("read a file");
            let kind = detect_kind(None, Some(path), &bytes).expect("a known document type");
            parse(kind, &bytes).expect("parse").text
        })
        .collect();
    if let Some(path) = dump {
        std::fs::write(path, serde_json::to_string(&texts).unwrap()).expect("write the texts");
    }
    let options = ChunkingOptions::default();
    if let Some(path) = dump_chunks {
        let chunks: Vec<String> = texts
            .iter()
            .flat_map(|t| chunk_text(t, options).expect("chunk"))
            .map(|c| c.content)
            .collect();
        std::fs::write(path, serde_json::to_string(&chunks).unwrap()).expect("write the chunks");
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    let mut chunks = 0;
    let mut rounds = 0u32;
    let start = Instant::now();
    while rounds == 0 || start.elapsed() < Duration::from_secs(2) {
        chunks = texts
            .iter()
            .map(|t| chunk_text(t, options).expect("chunk").len())
            .sum();
        rounds += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"documents\": {}, \"bytes\": {bytes}, \"chunks\": {chunks}, \"rounds\": {rounds}, \"seconds\": {seconds:.4}, \"mb_per_second\": {:.3}}}",
        texts.len(),
        bytes as f64 * f64::from(rounds) / seconds / 1e6
    );
}

/// Removes `name VALUE` from the arguments and returns VALUE.
fn take_option(args: &mut Vec<String>, name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    let value = args
        .get(i + 1)
        .cloned()
        .unwrap_or_else(|| panic!("{name} needs a path"));
    args.drain(i..=i + 1);
    Some(value)
}
