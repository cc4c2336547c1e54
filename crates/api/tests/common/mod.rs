//! The deployment the router tests run: the embedded stores, in the
//! lexical-only configuration of a machine without the embedding model.

use std::sync::Arc;

use rag_core::answer::ExtractiveAnswerer;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::{RagService, ServiceSettings, Stores};
use rag_local::{FileDocumentStore, LocalVectorIndex, SqliteStore};

/// The service on fresh stores under `dir`, and its SQLite store (which
/// also keeps keys).
pub fn lexical_service(
    dir: &std::path::Path,
    settings: ServiceSettings,
    warnings: Vec<String>,
) -> (Arc<RagService>, SqliteStore) {
    let sqlite = SqliteStore::open_in_memory().unwrap();
    let stores = Stores {
        metadata: Arc::new(sqlite.clone()),
        documents: Arc::new(FileDocumentStore::open(dir.join("files")).unwrap()),
        vectors: Arc::new(LocalVectorIndex::open(&dir.join("vectors.log"), 384).unwrap()),
        lexical: Some(Arc::new(sqlite.clone())),
        usage: Arc::new(sqlite.clone()),
        tenant_settings: Arc::new(sqlite.clone()),
        conversations: Arc::new(sqlite.clone()),
    };
    let service = RagService::new(
        stores,
        None,
        Arc::new(ExtractiveAnswerer),
        UrlFetcher::new(FetchPolicy::default()).unwrap(),
        settings,
        warnings,
    )
    .unwrap();
    (service, sqlite)
}
