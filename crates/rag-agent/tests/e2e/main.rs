//! End-to-end tests of the `rag-agent` binary over a real socket: the
//! process is started, stopped and restarted like a user would.
//!
//! They need the MiniLM model (RAG_AGENT_MODEL_DIR or the user cache, as
//! `rag-agent models fetch` leaves it); the README's test command fetches it.

mod support;

mod agent;
mod auth;
mod bad_input;
mod bedrock_routes;
mod cargo_book;
mod cli;
mod direct_uploads;
mod drain;
mod formats;
mod hostile;
mod infra_names;
mod ingestion_jobs;
mod lambda_runtime;
mod observability;
mod openai_embeddings;
mod openapi_conformance;
mod recovery;
mod reindex_s3;
mod rerank;
mod rust_book;
mod sqs_worker;
mod startup_config;
mod traces;
mod ui;
mod usage;
