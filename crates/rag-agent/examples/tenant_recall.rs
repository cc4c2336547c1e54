//! Tenant-filtered vector search at scale (issue 16, acceptance 4): the
//! benchmark set's real MiniLM embeddings split among ten tenants of very
//! different sizes (the smallest 1,000 rows, the largest tens of
//! thousands), then each of the 200 held-out queries searched as the
//! smallest and as the largest tenant, top-10, one at a time, against the
//! exact neighbours within that tenant:
//!
//! - the local index, exact scan and HNSW graph (`ef_search` 64; every
//!   tenant builds its own graph here, whatever its size);
//! - S3 Vectors through the real SDK client against the emulator, the one
//!   index holding every tenant, in `ENHANCED` mode (filters before the
//!   search) and in `CLASSIC` mode (filters after, over 4 x top_k).
//!
//!     cargo run -p rag-agent --example tenant_recall -- DIM DIR [TENANTS]
//!
//! DIR holds `base.f32`, `more.f32` (read when there) and `queries.f32` as
//! benches/std_doc_sentences.py and the `embed_speed` example write them
//! (docs/BENCHMARKS.md has the commands). The dev profile optimises the
//! vector index and every dependency, so no release build is needed.
//! Prints one JSON object.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_s3vectors::types::IndexMode;
use rag_aws::S3VectorStore;
use rag_aws_emulator::Emulator;
use rag_core::{
    ChunkMetadata, DocumentChunk, SearchFilter, Tenant, VectorSearchResult, VectorStore,
};
use rag_local::{AnnSettings, LocalVectorIndex};
use serde_json::{Value, json};
use uuid::Uuid;

const SMALLEST: usize = 1_000;
const TOP_K: usize = 10;

fn read_f32(path: &std::path::Path, dimension: usize) -> Vec<Vec<f32>> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect::<Vec<f32>>()
        .chunks_exact(dimension)
        .map(<[f32]>::to_vec)
        .collect()
}

/// Tenant sizes growing by one factor from `SMALLEST`, chosen so that they
/// add up to `total`.
fn tenant_sizes(total: usize, tenants: usize) -> Vec<usize> {
    let sum_for = |ratio: f64| {
        (0..tenants)
            .map(|i| SMALLEST as f64 * ratio.powi(i as i32))
            .sum::<f64>()
    };
    let (mut low, mut high) = (1.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = (low + high) / 2.0;
        if sum_for(mid) < total as f64 {
            low = mid;
        } else {
            high = mid;
        }
    }
    let mut sizes: Vec<usize> = (0..tenants)
        .map(|i| (SMALLEST as f64 * low.powi(i as i32)) as usize)
        .collect();
    let assigned: usize = sizes.iter().sum();
    if let Some(last) = sizes.last_mut() {
        *last += total - assigned.min(total);
    }
    sizes
}

/// The same shuffle every run (xorshift), so every run splits alike.
fn shuffled(count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..count).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    dot / (na.sqrt() * nb.sqrt()).max(f32::MIN_POSITIVE)
}

/// The exact top-10 rows of `rows` for each query.
fn truth(base: &[Vec<f32>], rows: &[usize], queries: &[Vec<f32>]) -> Vec<Vec<usize>> {
    queries
        .iter()
        .map(|q| {
            let mut scored: Vec<(f32, usize)> =
                rows.iter().map(|&r| (cosine(q, &base[r]), r)).collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.iter().take(TOP_K).map(|&(_, r)| r).collect()
        })
        .collect()
}

fn chunk_of(document_id: Uuid, vector: &[f32]) -> DocumentChunk {
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
        embedding: vector.to_vec(),
    }
}

/// p50 and p99 in milliseconds, and recall@10 against `expected`.
async fn measure<F, Fut>(
    queries: &[Vec<f32>],
    expected: &[Vec<usize>],
    row_of: &HashMap<Uuid, usize>,
    search: F,
) -> Value
where
    F: Fn(Vec<f32>) -> Fut,
    Fut: std::future::Future<Output = Vec<VectorSearchResult>>,
{
    let mut latencies = Vec::with_capacity(queries.len());
    let mut found = 0usize;
    for (query, expected) in queries.iter().zip(expected) {
        let start = Instant::now();
        let hits = search(query.clone()).await;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        found += hits
            .iter()
            .filter(|h| {
                row_of
                    .get(&h.document_id)
                    .is_some_and(|r| expected.contains(r))
            })
            .count();
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    json!({
        "p50_ms": (pct(0.5) * 1000.0).round() / 1000.0,
        "p99_ms": (pct(0.99) * 1000.0).round() / 1000.0,
        "recall_at_10": found as f64 / (queries.len() * TOP_K) as f64,
    })
}

fn s3vectors_client(url: &str) -> aws_sdk_s3vectors::Client {
    use aws_sdk_s3vectors::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_s3vectors::Client::from_conf(
        aws_sdk_s3vectors::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
            .endpoint_url(url)
            .build(),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dimension, dir, tenants) = match args.as_slice() {
        [d, dir] => (d, dir, 10),
        [d, dir, n] => (d, dir, n.parse().expect("TENANTS")),
        _ => panic!("usage: tenant_recall DIM DIR [TENANTS]"),
    };
    let dimension: usize = dimension.parse().expect("DIM");
    let dir = std::path::Path::new(dir);
    let mut base = read_f32(&dir.join("base.f32"), dimension);
    base.extend(read_f32(&dir.join("more.f32"), dimension));
    let queries = read_f32(&dir.join("queries.f32"), dimension);
    assert!(
        !base.is_empty() && !queries.is_empty(),
        "no vectors in {}",
        dir.display()
    );

    // Rows to tenants: a fixed shuffle cut into the sizes.
    let sizes = tenant_sizes(base.len(), tenants);
    let order = shuffled(base.len());
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut offset = 0;
    for size in &sizes {
        members.push(order[offset..offset + size].to_vec());
        offset += size;
    }
    let names: Vec<Tenant> = (0..tenants)
        .map(|i| Tenant::new(&format!("tenant-{i:02}")).unwrap())
        .collect();
    // One document per row, so a hit's document id names its row.
    let ids: Vec<Uuid> = (0..base.len()).map(|_| Uuid::new_v4()).collect();
    let row_of: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let (smallest, largest) = (0, tenants - 1);
    let expected_small = truth(&base, &members[smallest], &queries);
    let expected_large = truth(&base, &members[largest], &queries);

    // The local index: one per tenant, each with a graph.
    let temp = tempfile::tempdir().unwrap();
    let settings = AnnSettings {
        min_rows: 500,
        ..AnnSettings::default()
    };
    let index = LocalVectorIndex::open_with(&temp.path().join("vectors.log"), dimension, settings)
        .expect("open the local index");
    let loading = Instant::now();
    for (tenant, rows) in names.iter().zip(&members) {
        for batch in rows.chunks(1000) {
            let chunks: Vec<DocumentChunk> =
                batch.iter().map(|&r| chunk_of(ids[r], &base[r])).collect();
            index.upsert(tenant, &chunks).await.expect("upsert");
        }
    }
    while !names.iter().all(|t| index.graph_ready(t)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let local_build_seconds = loading.elapsed().as_secs_f64();
    let filter = SearchFilter::default();
    let mut local = serde_json::Map::new();
    for (label, tenant, expected) in [
        ("smallest", smallest, &expected_small),
        ("largest", largest, &expected_large),
    ] {
        let t = &names[tenant];
        let exact = measure(&queries, expected, &row_of, |q| {
            let hits = index.search_exact(t, &q, TOP_K, &filter).expect("search");
            async move { hits }
        })
        .await;
        let graph = measure(&queries, expected, &row_of, |q| {
            let hits = index.search_approximate(t, &q, TOP_K, 64).expect("search");
            async move { hits }
        })
        .await;
        local.insert(
            label.to_string(),
            json!({"rows": sizes[tenant], "exact": exact, "hnsw_ef_64": graph}),
        );
    }
    drop(index);

    // S3 Vectors on the emulator: one index, every tenant, over the wire.
    let emulator = Emulator::start().await.expect("start the emulator");
    let client = s3vectors_client(&emulator.url);
    let store = S3VectorStore::new(client.clone(), "bench", "chunks", dimension);
    store.ensure_index(true).await.expect("create the index");
    let loading = Instant::now();
    for (tenant, rows) in names.iter().zip(&members) {
        let chunks: Vec<DocumentChunk> = rows.iter().map(|&r| chunk_of(ids[r], &base[r])).collect();
        store.upsert(tenant, &chunks).await.expect("PutVectors");
    }
    let emulator_load_seconds = loading.elapsed().as_secs_f64();
    let mut emulator_results = serde_json::Map::new();
    for mode in [IndexMode::Enhanced, IndexMode::Classic] {
        client
            .update_index_mode()
            .vector_bucket_name("bench")
            .index_name("chunks")
            .index_mode(mode.clone())
            .send()
            .await
            .expect("UpdateIndexMode");
        let mut by_tenant = serde_json::Map::new();
        for (label, tenant, expected) in [
            ("smallest", smallest, &expected_small),
            ("largest", largest, &expected_large),
        ] {
            let t = names[tenant].clone();
            let store = &store;
            let filter = &filter;
            let measured = measure(&queries, expected, &row_of, |q| {
                let t = t.clone();
                async move {
                    store
                        .search(&t, &q, TOP_K, filter)
                        .await
                        .expect("QueryVectors")
                }
            })
            .await;
            by_tenant.insert(label.to_string(), measured);
        }
        emulator_results.insert(mode.as_str().to_string(), Value::Object(by_tenant));
    }
    println!(
        "{}",
        json!({
            "vectors": base.len(),
            "dimension": dimension,
            "queries": queries.len(),
            "tenant_sizes": sizes,
            "local": {"load_and_graph_seconds": local_build_seconds, "tenants": local},
            "s3vectors_emulator": {"load_seconds": emulator_load_seconds, "modes": emulator_results},
        })
    );
}
