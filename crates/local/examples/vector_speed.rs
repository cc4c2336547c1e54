//! Vector search speed of `LocalVectorIndex`, on vectors written by
//! benches/vectors.py (raw little-endian f32, row-major) so the Python peers
//! (faiss, hnswlib) search exactly the same data:
//!
//!     cargo build --release -p rag-local --example vector_speed
//!     target/release/examples/vector_speed DIM base.f32 queries.f32 truth.u32 [hnsw:EF,EF..|exact]
//!
//! Rows go in through upserts in batches of 1,000 and the append-only log,
//! as ingestion writes them. With `hnsw:` (the default, `hnsw:64`) the
//! index builds its graph with the default settings, on its background
//! thread as a server would, and the build time runs until the graph is in
//! use. Prints JSON: build seconds; for exact search and for the graph at
//! each `ef_search`, the p50/p99 of one top-10 search at a time on one
//! thread and recall@10 against `truth.u32` (the exact neighbours numpy
//! found); with a graph, the time to close the index (saving the graph if
//! the background save has not) and to reopen it (replaying the log and
//! loading the saved graph), and the graph file's size; and the process's
//! peak RSS.

use std::time::{Duration, Instant};

use rag_core::{
    ChunkMetadata, DocumentChunk, SearchFilter, Tenant, VectorSearchResult, VectorStore,
};
use rag_local::{AnnSettings, LocalVectorIndex};
use uuid::Uuid;

fn read_f32(path: &str, dimension: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).expect("read a vector file");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect::<Vec<f32>>()
        .chunks_exact(dimension)
        .map(<[f32]>::to_vec)
        .collect()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// p50 and p99 in milliseconds, and recall@10, of one search mode.
fn measure(
    queries: &[Vec<f32>],
    truth: &[u32],
    row_of: &std::collections::HashMap<Uuid, u32>,
    search: impl Fn(&[f32]) -> Vec<VectorSearchResult>,
) -> String {
    let mut latencies = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    for (q, query) in queries.iter().enumerate() {
        let start = Instant::now();
        let hits = search(query);
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        let expected = &truth[q * 10..q * 10 + 10];
        found += hits
            .iter()
            .filter(|h| expected.contains(&row_of[&h.document_id]))
            .count();
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    format!(
        "\"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"recall_at_10\": {:.4}",
        pct(0.5),
        pct(0.99),
        found as f64 / (queries.len() * 10) as f64
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dimension, base, queries, truth, mode) = match args.as_slice() {
        [d, b, q, t] => (d, b, q, t, "hnsw:64"),
        [d, b, q, t, mode] => (d, b, q, t, mode.as_str()),
        _ => panic!("usage: vector_speed DIM base.f32 queries.f32 truth.u32 [hnsw:EF,EF..|exact]"),
    };
    let (settings, efs): (AnnSettings, Vec<usize>) = match mode.strip_prefix("hnsw:") {
        Some(list) => (
            AnnSettings::default(),
            list.split(',')
                .map(|ef| ef.parse().expect("an ef_search"))
                .collect(),
        ),
        None if mode == "exact" => (AnnSettings::exact_only(), Vec::new()),
        None => panic!("mode is hnsw:EF,EF.. or exact"),
    };
    let dimension: usize = dimension.parse().expect("DIM");
    let base = read_f32(base, dimension);
    let queries = read_f32(queries, dimension);
    let truth: Vec<u32> = std::fs::read(truth)
        .expect("read truth")
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tenant = Tenant::default_tenant();
    let index = LocalVectorIndex::open_with(&dir.path().join("vectors.log"), dimension, settings)
        .expect("open");
    // One document per row, so a hit's document id names its row.
    let ids: Vec<Uuid> = (0..base.len()).map(|_| Uuid::new_v4()).collect();
    let row_of: std::collections::HashMap<Uuid, u32> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect();
    let start = Instant::now();
    for (batch, rows) in base.chunks(1000).enumerate() {
        let chunks: Vec<DocumentChunk> = rows
            .iter()
            .enumerate()
            .map(|(i, vector)| {
                let document_id = ids[batch * 1000 + i];
                DocumentChunk {
                    metadata: ChunkMetadata {
                        chunk_id: ChunkMetadata::chunk_id_for(document_id, 0),
                        document_id,
                        chunk_index: 0,
                        start_char: 0,
                        end_char: 0,
                        token_count: 0,
                        location: Default::default(),
                    },
                    content: String::new(),
                    header: String::new(),
                    embedding: vector.clone(),
                }
            })
            .collect();
        index.upsert(&tenant, &chunks).await.expect("upsert");
    }
    let upsert_seconds = start.elapsed().as_secs_f64();
    if !efs.is_empty() && base.len() >= settings.min_rows {
        while !index.graph_ready(&tenant) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let build_seconds = start.elapsed().as_secs_f64();
    drop(base);
    let filter = SearchFilter::default();
    let exact = measure(&queries, &truth, &row_of, |q| {
        index.search_exact(&tenant, q, 10, &filter).expect("search")
    });
    let graph: Vec<String> = efs
        .iter()
        .map(|&ef| {
            let measured = measure(&queries, &truth, &row_of, |q| {
                index
                    .search_approximate(&tenant, q, 10, ef)
                    .expect("search")
            });
            format!("{{\"ef_search\": {ef}, {measured}}}")
        })
        .collect();
    let reopen = if index.graph_ready(&tenant) {
        let closing = Instant::now();
        drop(index);
        let close_seconds = closing.elapsed().as_secs_f64();
        let graph_bytes =
            std::fs::metadata(dir.path().join("vectors.graph")).map_or(0, |m| m.len());
        let opening = Instant::now();
        let index =
            LocalVectorIndex::open_with(&dir.path().join("vectors.log"), dimension, settings)
                .expect("reopen");
        format!(
            ", \"close_seconds\": {close_seconds:.3}, \"reopen_seconds\": {:.3}, \"graph_loaded_on_reopen\": {}, \"graph_file_mib\": {:.1}",
            opening.elapsed().as_secs_f64(),
            index.graph_ready(&tenant),
            graph_bytes as f64 / (1024.0 * 1024.0)
        )
    } else {
        String::new()
    };
    println!(
        "{{\"vectors\": {}, \"dimension\": {dimension}, \"queries\": {}, \"upsert_seconds\": {upsert_seconds:.3}, \"build_seconds\": {build_seconds:.3}, \"m\": {}, \"ef_construction\": {}, \"exact\": {{{exact}}}, \"hnsw\": [{}]{reopen}, \"peak_rss_mib\": {:.0}}}",
        ids.len(),
        queries.len(),
        settings.m,
        settings.ef_construction,
        graph.join(", "),
        peak_rss_mib()
    );
}
