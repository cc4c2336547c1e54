//! The OpenAPI document, generated from the handlers' annotations and the
//! types' schemas, served at `/openapi.json`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::AppState;

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::{answer, documents, health, jobs, keys, me, metrics, tools, uploads, usage};

#[derive(OpenApi)]
#[openapi(
    info(title = "rag-agent", description = "Retrieval-augmented question answering over your documents. Errors are `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        health::health, me::me, metrics::metrics,
        answer::query, answer::chat, answer::chat_stream, answer::conversation,
        documents::list, documents::ingest, documents::upload, documents::get, documents::delete,
        uploads::declare, uploads::receive,
        jobs::start, jobs::get, jobs::list,
        tools::list,
        keys::create, keys::list, keys::revoke,
        usage::usage, usage::get_settings, usage::put_settings,
    ),
    components(schemas(
        ErrorBody, ErrorDetail,
        rag_core::Document, rag_core::DocumentStatus, rag_core::SourceReference, rag_core::ChunkLocation,
        rag_core::QueryResponse, rag_core::TokenUsage, rag_core::SearchMode,
        rag_core::HealthReport, rag_core::health::EmbeddingModelInfo, rag_core::ChatEvent,
        rag_core::ChatReply, rag_core::ChatOutcome, rag_core::agent::ToolCallRecord,
        rag_core::chat::StopReason, rag_core::chat::ToolSpec,
        keys::CreateKeyRequest, keys::KeyList, rag_core::keys::ApiKeyView,
        rag_core::keys::CreatedKey,
        me::Identity, usage::UsageReport, usage::TenantUsage, usage::TenantSettingsRequest,
        usage::TenantSettingsView, rag_core::usage::UsageCounts, rag_core::usage::DailyUsage,
        rag_core::ingest::sync::IngestionJob, rag_core::ingest::sync::JobStatus,
        rag_core::ingest::sync::JobCounts, rag_core::ingest::sync::JobFailure, jobs::JobList,
    )),
    tags(
        (name = "documents", description = "Ingest, list, inspect and delete documents"),
        (name = "answers", description = "Questions, chat and streaming chat"),
        (name = "agent", description = "The agent's tools"),
        (name = "service", description = "Health and metrics"),
        (name = "admin", description = "API keys, usage and tenant settings (tenant admins and operators)"),
    )
)]
pub struct ApiDoc;

/// The document as this deployment serves it; see [`document`].
pub async fn openapi_json(State(state): State<AppState>) -> Json<Value> {
    let mut doc = document(state.service.runs_agent());
    // A declared upload may be as large as this deployment takes.
    doc["components"]["schemas"]["UploadDeclaration"]["properties"]["size"]["maximum"] =
        json!(state.service.ingestor().max_upload_bytes());
    Json(doc)
}

/// The generated document, completed with what annotations cannot say:
/// every status an operation can answer with (the guard's 403, the body
/// limits, 500 and 503 from any backend), the event stream's real content
/// type and event shape, the upload form's fields, and the chat fields this
/// deployment accepts (the agent's `max_cycles`, or retrieve-then-answer's
/// `top_k`, `mode` and `document_ids`).
pub fn document(has_agent: bool) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(operations) = item.as_object_mut() else {
                continue;
            };
            for operation in operations.values_mut() {
                complete_responses(path, operation);
            }
        }
    }
    describe_security(&mut doc);
    describe_upload_form(&mut doc["paths"]["/documents/upload"]["post"]);
    for request in ["IngestRequest", "UploadDeclaration"] {
        let metadata = &mut doc["components"]["schemas"][request]["properties"]["metadata"];
        metadata["maxProperties"] = json!(32);
        metadata["propertyNames"] = json!({"minLength": 1, "maxLength": 64});
    }
    describe_event_stream(&mut doc["paths"]["/chat/stream"]["post"]["responses"]["200"]);
    let fields_not_taken: &[&str] = if has_agent {
        &["top_k", "mode", "document_ids"]
    } else {
        &["max_cycles"]
    };
    if let Some(properties) =
        doc["components"]["schemas"]["ChatRequestBody"]["properties"].as_object_mut()
    {
        for field in fields_not_taken {
            properties.remove(*field);
        }
    }
    doc
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

fn complete_responses(path: &str, operation: &mut Value) {
    let has_body = operation.get("requestBody").is_some();
    let mut statuses = vec![
        ("400", "invalid parameters or body"),
        (
            "401",
            "no credential, or one that is malformed, unknown, expired or revoked",
        ),
        (
            "403",
            "the Host or Origin is not allowed, or the credential's role does not include this",
        ),
        (
            "429",
            "over the credential's request rate, or the tenant's monthly token budget is spent (see Retry-After)",
        ),
        ("500", "internal error (the cause is logged, not shown)"),
        ("503", "a backend is temporarily unavailable"),
    ];
    if has_body {
        statuses.extend([
            ("413", "the body is larger than the server accepts"),
            ("415", "the body's content type is not accepted"),
            ("422", "a well-formed body the server cannot act on"),
        ]);
    }
    if path.contains('{') {
        statuses.push(("404", "no such resource"));
    }
    let Some(responses) = operation["responses"].as_object_mut() else {
        return;
    };
    for (status, description) in statuses {
        responses
            .entry(status)
            .or_insert_with(|| error_response(description));
    }
}

/// The credentials a deployment with `RAG_AGENT_AUTH=api_key` takes: a
/// bearer key, or the same key in `x-api-key`. The empty requirement is a
/// deployment without credentials (`none`, loopback only). An operator key
/// names the tenant it acts for in `x-tenant-id`.
fn describe_security(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({
        "bearer_key": {"type": "http", "scheme": "bearer", "description": "an API key (rag_<id>_<secret>) as a bearer token"},
        "header_key": {"type": "apiKey", "in": "header", "name": "x-api-key"}
    });
    doc["security"] = json!([{"bearer_key": []}, {"header_key": []}, {}]);
}

fn describe_upload_form(operation: &mut Value) {
    operation["requestBody"] = json!({
        "required": true,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "additionalProperties": false,
            "properties": {
                "file": {"type": "string", "format": "binary", "description": "the document; one per upload"},
                "title": {"type": "string", "maxLength": 500},
                "source": {"type": "string", "maxLength": 2048},
                "metadata": {"type": "string", "description": "a JSON object: at most 32 keys of 1 to 64 characters, 8 KiB"},
                "chunk_size": {"type": "integer", "minimum": 50, "maximum": 20000},
                "chunk_overlap": {"type": "integer", "minimum": 0, "maximum": 10000, "description": "at most half of chunk_size"},
                "new_version": {"type": "boolean"},
                "wait": {"type": "boolean"}
            }
        }}}
    });
}

/// Each event as a client reads it: an `event` name and `data` holding
/// that variant of `ChatEvent` as JSON.
fn describe_event_stream(response: &mut Value) {
    response["description"] = json!(
        "Server-sent events: `sources`, `delta`, `tool_use`, `tool_result`, then `citations` (the checked answer and how its citations hold up) and one `done`, or an `error`; each `data` is that variant of ChatEvent as JSON"
    );
    response["content"] = json!({"text/event-stream": {"schema": {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["sources", "delta", "tool_use", "tool_result", "citations", "done", "error"]},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string"},
            "retry": {"type": "integer"}
        }
    }}});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_the_errors_it_can_answer_with() {
        let doc = document(false);
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                for status in ["400", "401", "403", "500", "503"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
        let stream = &doc["paths"]["/chat/stream"]["post"]["responses"]["200"]["content"];
        assert!(
            stream.get("text/event-stream").is_some() && stream.get("application/json").is_none()
        );
    }

    #[test]
    fn chat_fields_follow_the_deployment() {
        let fields = |has_agent| {
            let doc = document(has_agent);
            let properties = doc["components"]["schemas"]["ChatRequestBody"]["properties"].clone();
            properties
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert!(fields(true).contains(&"max_cycles".to_string()));
        assert!(!fields(true).contains(&"top_k".to_string()));
        assert!(fields(false).contains(&"top_k".to_string()));
        assert!(!fields(false).contains(&"max_cycles".to_string()));
    }
}
