//! Ingest throughput through the ingest queue against a Bedrock quota:
//! DOCUMENTS one-chunk documents are accepted (answered 202) and queued in
//! the SQLite queue a long-running server uses; WORKERS queue workers take
//! them, each under its document's lease, and embed through Titan on the
//! emulator, which answers each call after LATENCY_MS and throttles calls
//! past a token bucket of QUOTA calls a second. Printed next to the ideal
//! (the quota's pace after its first full bucket, or the workers' pace if
//! slower: one call in flight per worker) and the share of the quota used.
//! The SQS worker under Lambda hands deliveries to the same job handler;
//! only the queue differs.
//!
//!   cargo run --release -p rag-agent --example queue_ingest -- [DOCUMENTS] [LATENCY_MS] [QUOTA] [WORKERS...]
//!
//! Defaults: 1000 documents, 100 ms, 50 calls/s, 4, 8 and 16 workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rag_aws::{RetryPolicy, TitanEmbedder};
use rag_aws_emulator::{Emulator, Faults};
use rag_core::answer::ExtractiveAnswerer;
use rag_core::backend::{ListQuery, MetadataStore};
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::{DocumentStatus, IngestInput, RagService, ServiceSettings, Stores, Tenant};
use rag_local::queue::WorkerSettings;
use rag_local::{FileDocumentStore, LocalVectorIndex, SqliteQueue, SqliteStore};

async fn count(store: &SqliteStore, status: DocumentStatus) -> usize {
    let mut total = 0;
    let mut cursor = None;
    loop {
        let page = store
            .list(
                &Tenant::default_tenant(),
                &ListQuery {
                    status: Some(status),
                    limit: 1000,
                    cursor,
                },
            )
            .await
            .unwrap();
        total += page.items.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return total,
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let documents = args.first().copied().unwrap_or(1000) as usize;
    let latency_ms = args.get(1).copied().unwrap_or(100);
    let quota = args.get(2).copied().unwrap_or(50) as u32;
    let mut worker_counts: Vec<usize> = args.iter().skip(3).map(|&w| w as usize).collect();
    if worker_counts.is_empty() {
        worker_counts = vec![4, 8, 16];
    }
    println!(
        "| workers | quota calls/s | documents | seconds | ideal seconds | ideal / measured | throttled calls | share of quota used | failed |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for workers in worker_counts {
        // A fresh emulator per run, so each starts with a full bucket.
        let emulator = Emulator::start().await.expect("start the emulator");
        emulator.set_faults(Faults {
            latency: Duration::from_millis(latency_ms),
            calls_per_second: Some(quota),
            ..Faults::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("rag.sqlite3")).unwrap();
        let client = aws_sdk_bedrockruntime::Client::from_conf(
            aws_sdk_bedrockruntime::Config::builder()
                .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
                .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(
                    "bench", "bench", None, None, "bench",
                ))
                .endpoint_url(&emulator.url)
                .build(),
        );
        let embedder = TitanEmbedder::new(
            client,
            "amazon.titan-embed-text-v2:0",
            256,
            25,
            RetryPolicy::default(),
        )
        .unwrap();
        let stores = Stores {
            metadata: Arc::new(sqlite.clone()),
            documents: Arc::new(FileDocumentStore::open(dir.path().join("files")).unwrap()),
            vectors: Arc::new(
                LocalVectorIndex::open(&dir.path().join("vectors.log"), 256).unwrap(),
            ),
            lexical: Some(Arc::new(sqlite.clone())),
            usage: Arc::new(sqlite.clone()),
            tenant_settings: Arc::new(sqlite.clone()),
            conversations: Arc::new(sqlite.clone()),
        };
        let service = RagService::new(
            stores,
            Some(Arc::new(embedder)),
            Arc::new(ExtractiveAnswerer),
            UrlFetcher::new(FetchPolicy::default()).unwrap(),
            ServiceSettings {
                ingest_concurrency: workers,
                ..ServiceSettings::default()
            },
            Vec::new(),
        )
        .expect("service");
        let queue = SqliteQueue::open(&dir.path().join("ingest-queue.sqlite3")).unwrap();
        let service = service.with_ingest_queue(Arc::new(queue.clone()));
        queue.spawn_workers(
            service.ingestor().clone(),
            WorkerSettings {
                workers,
                visibility_timeout: Duration::from_secs(900),
            },
        );
        let started = Instant::now();
        for i in 0..documents {
            service
                .ingestor()
                .ingest(
                    &Tenant::default_tenant(),
                    IngestInput {
                        bytes: format!("Note {i}: the queue takes one document at a time per worker, and this one is number {i}.").into(),
                        declared_content_type: Some("text/plain".into()),
                        ..IngestInput::default()
                    },
                    false,
                )
                .await
                .expect("accept");
        }
        let accepted = started.elapsed().as_secs_f64();
        let (indexed, failed) = loop {
            let indexed = count(&sqlite, DocumentStatus::Indexed).await;
            let failed = count(&sqlite, DocumentStatus::Failed).await;
            if indexed + failed == documents {
                break (indexed, failed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let seconds = started.elapsed().as_secs_f64();
        let by_workers = documents.div_ceil(workers) as f64 * latency_ms as f64 / 1000.0;
        let by_quota = documents.saturating_sub(quota as usize) as f64 / f64::from(quota);
        let ideal = by_workers.max(by_quota);
        let stats = emulator.bedrock_stats();
        println!(
            "| {workers} | {quota} | {documents} | {seconds:.2} | {ideal:.2} | {:.1}% | {} | {:.1}% | {failed} |",
            100.0 * ideal / seconds,
            stats.over_quota,
            100.0 * indexed as f64 / seconds / f64::from(quota),
        );
        eprintln!("(accepting all {documents} took {accepted:.2} s)");
    }
}
