//! rag-core: the domain of rag-agent and everything that does not depend on
//! where it runs — domain types, the backend traits (`Embedder`,
//! `VectorStore`, `LexicalIndex`, `DocumentStore`, `MetadataStore`,
//! `ConversationStore`, `ChatModel`), parsing, chunking, the ingestion
//! pipeline, retrieval, prompt building, the extractive answerer, the
//! agent's tool-calling loop and its tools.
//!
//! It must not depend on an AWS SDK, axum, lambda or any concrete storage
//! engine: backends live in their own crates and plug in through the traits.

pub mod adaptive;
pub mod agent;
pub mod answer;
pub mod backend;
pub mod catalog;
pub mod chat;
pub mod chunk;
pub mod domain;
pub mod error;
pub mod fetch;
pub mod health;
pub mod ingest;
pub mod jwt;
pub mod keys;
pub mod loading;
pub mod parse;
pub mod principal;
pub mod ratelimit;
pub mod rerank;
pub mod retrieve;
pub mod retry;
pub mod retrying_model;
pub mod routing;
pub mod service;
pub mod telemetry;
pub mod tenant;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod text;
pub mod tools;
pub mod turn;
pub mod usage;

pub use agent::{Agent, AgentSettings};
pub use backend::{
    ConversationStore, DocumentStore, Embedder, EmbedderState, Lease, LexicalIndex, ListQuery,
    MetadataStore, PresignedPut, StatusUpdate, StoredMessage, UploadSigner, VectorStore,
};
pub use catalog::{Catalog, Stores};
pub use chat::ChatModel;
pub use domain::*;
pub use error::{EmbedError, ErrorClass, FetchError, ModelError, ParseError, RagError, StoreError};
pub use health::HealthReport;
pub use ingest::{IngestInput, IngestOutcome, Ingestor};
pub use principal::{Principal, Role, Scope};
pub use service::{RagService, ServiceSettings};
pub use tenant::{DEFAULT_TENANT, InvalidTenant, Tenant};
pub use turn::{
    ChatEvent, ChatEventStream, ChatOutcome, ChatReply, ChatTurns, QueryInput, RetrieveThenAnswer,
    TurnRequest,
};
