//! AWS backends behind the core crate's traits: Bedrock (Titan embeddings,
//! Converse and ConverseStream), S3 for raw documents, S3 Vectors for
//! embeddings, DynamoDB for document metadata and conversations, and the
//! knowledge base search tool over Bedrock Retrieve, the rerank stage over
//! Bedrock Rerank, and the ingest queue on SQS.
//!
//! Adapters are handed ready-built SDK clients and their resource names;
//! they never read environment variables or build configuration. Must not
//! depend on axum, lambda or any other backend crate.

mod bedrock_chat;
mod bedrock_embed;
mod bedrock_rerank;
mod document;
mod dynamodb;
mod knowledge_base;
mod role_credentials;
mod s3;
mod s3_source;
mod s3vectors;
mod sdk_error;
mod sqs;

pub use bedrock_chat::BedrockChatModel;
pub use bedrock_embed::{TitanEmbedder, TitanModel};
pub use bedrock_rerank::{BedrockReranker, RERANK_MODEL_REGIONS, rerank_region_problem};
pub use dynamodb::{DynamoDbRateLimiter, DynamoDbStore};
pub use knowledge_base::{KnowledgeBaseSearchInput, KnowledgeBaseSearchTool};
pub use rag_core::retry::RetryPolicy;
pub use role_credentials::{MAX_SESSION_NAME, RoleCredentials, RoleSource, RoleSpec, session_name};
pub use s3::S3DocumentStore;
pub use s3_source::S3SyncSource;
pub use s3vectors::{IndexLayout, S3VectorStore, per_tenant_index_name, similarity_from_distance};
pub use sqs::{SqsQueue, queue_name};
