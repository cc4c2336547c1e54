//! What the ingestion tests share: an ingestor on the in-memory fakes with
//! a short lease, and a document of six chunks.

// Each test file uses part of what is here.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rag_core::catalog::Catalog;
use rag_core::chunk::ChunkingOptions;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::ingest::IngestSettings;
use rag_core::parse::{ParseLimits, ThreadParser};
use rag_core::test_util::{LetterEmbedder, MemoryStores};
use rag_core::{Embedder, IngestInput, Ingestor};

/// Short, so a document an aborted task held is taken over quickly.
pub const LEASE: Duration = Duration::from_millis(300);

pub fn ingestor(memory: &MemoryStores, embedder: LetterEmbedder) -> Arc<Ingestor> {
    Ingestor::new(
        Catalog::new(memory.stores()),
        Some(Arc::new(embedder) as Arc<dyn Embedder>),
        Arc::new(ThreadParser::new(ParseLimits::default())),
        UrlFetcher::new(FetchPolicy::default()).unwrap(),
        IngestSettings {
            lease: LEASE,
            ..IngestSettings::default()
        },
    )
}

/// Six chunks of 60 characters: three batches of the letter embedder's two.
pub fn six_chunk_document() -> IngestInput {
    IngestInput {
        bytes: (0..6)
            .map(|i| format!("Sentence number {i} is about ownership and borrowing.\n"))
            .collect::<String>()
            .into(),
        declared_content_type: Some("text/plain".into()),
        chunking: Some(ChunkingOptions {
            chunk_size: 60,
            chunk_overlap: 0,
        }),
        ..IngestInput::default()
    }
}
