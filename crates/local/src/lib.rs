//! rag-local: the embedded default backends, for running rag-agent as one
//! process with no cloud account — SQLite for metadata, conversations,
//! chunks and FTS5 lexical search, and for the ingest queue; an on-disk vector index; files on disk;
//! and all-MiniLM-L6-v2 run in-process (candle for the matrix products).
//!
//! It depends on rag-core only; it must not depend on an AWS SDK, axum or
//! the API crate. Adapters take paths and opened handles, never environment
//! variables.

mod bert;
pub mod directory;
pub mod files;
mod hnsw;
pub mod minilm;
pub mod model_files;
pub mod queue;
mod scan;
pub mod simd;
pub mod sqlite;
mod vecmath;
pub mod vectors;

pub use directory::DirectorySource;
pub use files::FileDocumentStore;
pub use minilm::MiniLmEmbedder;
pub use queue::SqliteQueue;
pub use sqlite::SqliteStore;
pub use vectors::{AnnSettings, LocalVectorIndex};
