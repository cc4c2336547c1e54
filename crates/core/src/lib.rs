//! rag-core: the domain of rag-agent and everything that does not depend on
//! where it runs — domain types, the backend traits (`Embedder`,
//! `VectorStore`, `LexicalIndex`, `DocumentStore`, `MetadataStore`,
//! `ConversationStore`, `ChatModel`), parsing, chunking, the ingestion
//! pipeline, retrieval, prompt building, the extractive answerer, the
//! agent's tool-calling loop and its tools.
//!
//! It must not depend on an AWS SDK, axum, lambda or any concrete storage
//! engine: backends live in their own crates and plug in through the traits.

pub mod agent;
pub mod answer;
pub mod backend;
pub mod chat;
pub mod chunk;
pub mod domain;
pub mod error;
pub mod fetch;
pub mod ingest;
pub mod loading;
pub mod parse;
pub mod retrieve;
pub mod retry;
pub mod retrying_model;
pub mod service;
pub mod text;
pub mod tools;

pub use agent::{Agent, AgentRequest, AgentSettings, ChatOutcome, ChatReply};
pub use backend::{
    ConversationStore, DocumentStore, Embedder, EmbedderState, LexicalIndex, ListQuery,
    MetadataStore, StatusUpdate, StoredMessage, VectorStore,
};
pub use chat::ChatModel;
pub use domain::*;
pub use error::{EmbedError, ErrorClass, FetchError, ModelError, ParseError, RagError, StoreError};
pub use ingest::{IngestInput, IngestOutcome};
pub use service::{ChatEvent, HealthReport, QueryInput, RagService, ServiceSettings, Stores};
