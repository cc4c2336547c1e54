//! Ingest throughput against the Bedrock emulator with a fixed latency per
//! Titan call, at several embedding concurrencies, next to the ideal
//! (chunks / concurrency x latency). Metadata, files and the vector index are
//! local so that only the embedding calls cost time.
//!
//!   cargo run --release -p rag-agent --example bedrock_ingest -- [CHUNKS] [LATENCY_MS] [CONCURRENCY...] [--quota CALLS_PER_SECOND] [--attempts N]
//!
//! Defaults: 1000 chunks, 100 ms, concurrency 1 and 25 (the default), no
//! quota, 6 attempts per call (`--attempts N`; the binary's default is 10). With a quota the emulator throttles calls past it (a token
//! bucket of one second's calls) and the ideal is the quota's pace, or the
//! concurrency's if that is slower; the table adds the throttled calls and
//! the share of the quota the run used.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rag_aws::{RetryPolicy, TitanEmbedder};
use rag_aws_emulator::{Emulator, Faults};
use rag_core::answer::ExtractiveAnswerer;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::{IngestInput, RagService, ServiceSettings, Stores, Tenant};
use rag_local::{FileDocumentStore, LocalVectorIndex, SqliteStore};

/// Text that the 1000/200 splitter cuts into about `chunks` chunks: each
/// paragraph is about 800 characters, the step between chunk starts.
fn corpus(chunks: usize) -> String {
    (0..chunks)
        .map(|i| {
            let sentence = format!("Paragraph {i} explains one more idea about ownership, borrowing and lifetimes in some detail. ");
            sentence.repeat(800 / sentence.len() + 1)[..790].to_string()
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut option = |name: &str| -> Option<u32> {
        let at = args.iter().position(|a| a == name)?;
        let value = args.get(at + 1).and_then(|v| v.parse().ok());
        args.drain(at..(at + 2).min(args.len()));
        Some(value.unwrap_or_else(|| panic!("{name} N")))
    };
    let quota = option("--quota");
    let attempts = option("--attempts");
    let chunks: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let latency_ms: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let mut concurrencies: Vec<usize> =
        args.iter().skip(2).filter_map(|a| a.parse().ok()).collect();
    if concurrencies.is_empty() {
        concurrencies = vec![1, 25];
    }
    let text = corpus(chunks);
    println!(
        "| concurrency | quota calls/s | chunks | seconds | ideal seconds | ideal / measured | throttled calls | share of quota used | calls in flight at the end |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for concurrency in concurrencies {
        // A fresh emulator per run, so each starts with a full bucket.
        let emulator = Emulator::start().await.expect("start the emulator");
        emulator.set_faults(Faults {
            latency: Duration::from_millis(latency_ms),
            calls_per_second: quota,
            ..Faults::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open_in_memory().unwrap();
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
            concurrency,
            RetryPolicy {
                max_attempts: attempts.unwrap_or(RetryPolicy::default().max_attempts),
                ..RetryPolicy::default()
            },
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
            conversations: Arc::new(sqlite),
        };
        let embedder = Arc::new(embedder);
        let service = RagService::new(
            stores,
            Some(embedder.clone()),
            Arc::new(ExtractiveAnswerer),
            UrlFetcher::new(FetchPolicy::default()).unwrap(),
            ServiceSettings::default(),
            Vec::new(),
        )
        .expect("service");
        let started = Instant::now();
        let outcome = service
            .ingestor()
            .ingest(
                &Tenant::default_tenant(),
                IngestInput {
                    bytes: text.clone().into(),
                    declared_content_type: Some("text/plain".into()),
                    title: Some("bench".into()),
                    ..IngestInput::default()
                },
                true,
            )
            .await
            .expect("ingest");
        if outcome.document().status.as_str() != "INDEXED" {
            println!(
                "| {concurrency} | {} | - | FAILED: {} |",
                quota.map_or("-".to_string(), |q| q.to_string()),
                outcome.document().error.as_deref().unwrap_or("")
            );
            continue;
        }
        let seconds = started.elapsed().as_secs_f64();
        let document = outcome.document();
        let n = document.chunk_count as usize;
        let by_concurrency = n.div_ceil(concurrency) as f64 * latency_ms as f64 / 1000.0;
        // A full bucket's worth goes at once, the rest at the quota's pace.
        let by_quota = quota.map_or(0.0, |q| n.saturating_sub(q as usize) as f64 / f64::from(q));
        let ideal = by_concurrency.max(by_quota);
        let stats = emulator.bedrock_stats();
        let share = quota.map_or("-".to_string(), |q| {
            format!("{:.1}%", 100.0 * n as f64 / seconds / f64::from(q))
        });
        println!(
            "| {concurrency} | {} | {n} | {seconds:.2} | {ideal:.2} | {:.1}% | {} | {share} | {} |",
            quota.map_or("-".to_string(), |q| q.to_string()),
            100.0 * ideal / seconds,
            stats.over_quota,
            embedder.current_concurrency(),
        );
    }
}
