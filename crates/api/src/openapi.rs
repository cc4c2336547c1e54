//! The OpenAPI document, generated from the handlers' annotations and the
//! types' schemas, served at `/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::{answer, documents, health, tools};

#[derive(OpenApi)]
#[openapi(
    info(title = "rag-agent", description = "Retrieval-augmented question answering over your documents. Errors are `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        health::health,
        answer::query, answer::chat, answer::chat_stream, answer::conversation,
        documents::list, documents::ingest, documents::upload, documents::get, documents::delete,
        tools::list,
    ),
    components(schemas(
        ErrorBody, ErrorDetail,
        rag_core::Document, rag_core::DocumentStatus, rag_core::SourceReference,
        rag_core::QueryResponse, rag_core::TokenUsage, rag_core::SearchMode,
        rag_core::HealthReport, rag_core::service::EmbeddingModelInfo, rag_core::ChatEvent,
        rag_core::ChatReply, rag_core::ChatOutcome, rag_core::agent::ToolCallRecord,
        rag_core::chat::StopReason, rag_core::chat::ToolSpec,
    )),
    tags(
        (name = "documents", description = "Ingest, list, inspect and delete documents"),
        (name = "answers", description = "Questions, chat and streaming chat"),
        (name = "agent", description = "The agent's tools"),
        (name = "service", description = "Health"),
    )
)]
pub struct ApiDoc;

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
