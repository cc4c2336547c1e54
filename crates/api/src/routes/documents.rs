//! Document ingestion, listing, inspection and deletion.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rag_core::chunk::ChunkingOptions;
use rag_core::{
    ChunkLocation, Document, DocumentStatus, IngestInput, IngestOutcome, ListQuery, Role,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AppJson, AppMultipart, AppPath, AppQuery, whole_number};
use crate::routes::parse_id;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// The document's text (or HTML/Markdown source); give this or `url`.
    #[schema(min_length = 1)]
    pub content: Option<String>,
    /// An http(s) URL to fetch; private and internal addresses are refused.
    #[schema(min_length = 1)]
    pub url: Option<String>,
    #[schema(max_length = 500)]
    pub title: Option<String>,
    #[schema(max_length = 2048)]
    pub source: Option<String>,
    /// `text/plain`, `text/markdown`, `text/html` or `application/pdf`; sniffed when omitted.
    pub content_type: Option<String>,
    /// At most 32 keys of 1 to 64 characters, 8 KiB as JSON.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    /// Characters per chunk, 50 to 20000 (default 1000).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 50, maximum = 20000)]
    pub chunk_size: Option<usize>,
    /// Characters shared by neighbouring chunks, at most half of
    /// `chunk_size` (default 200, or a fifth of a given `chunk_size`).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 10000)]
    pub chunk_overlap: Option<usize>,
    /// Index again even if identical content is already indexed.
    #[serde(default)]
    pub new_version: bool,
    /// Answer only once the document is INDEXED or FAILED.
    pub wait: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    pub document: Document,
    /// True when identical content was already indexed and that document is returned.
    pub duplicate: bool,
}

pub(crate) fn ingest_response(outcome: IngestOutcome) -> Response {
    let (status, document, duplicate) = match outcome {
        IngestOutcome::Duplicate(d) => (StatusCode::OK, d, true),
        IngestOutcome::Created(d) if d.status == DocumentStatus::Pending => {
            (StatusCode::ACCEPTED, d, false)
        }
        IngestOutcome::Created(d) => (StatusCode::CREATED, d, false),
    };
    (
        status,
        Json(IngestResponse {
            document,
            duplicate,
        }),
    )
        .into_response()
}

/// Ingest text or a URL. 202 while indexing continues in the background,
/// 201 when `wait` was set, 200 when identical content already exists.
#[utoipa::path(post, path = "/documents/ingest", tag = "documents", request_body = IngestRequest,
    responses((status = 202, body = IngestResponse), (status = 201, body = IngestResponse),
              (status = 200, body = IngestResponse), (status = 400, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<IngestRequest>,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Role::Writer)?;
    let wait = body.wait.unwrap_or(state.wait_for_ingest_by_default);
    let input = IngestInput {
        bytes: Bytes::new(),
        declared_content_type: body.content_type,
        filename: None,
        title: body.title,
        source: body.source,
        metadata: body.metadata.unwrap_or_default(),
        chunking: ChunkingOptions::requested(body.chunk_size, body.chunk_overlap),
        new_version: body.new_version,
    };
    let outcome = match (body.content, body.url) {
        (Some(content), None) => {
            state
                .service
                .ingestor()
                .ingest(
                    tenant,
                    IngestInput {
                        bytes: Bytes::from(content),
                        ..input
                    },
                    wait,
                )
                .await?
        }
        (None, Some(url)) => {
            state
                .service
                .ingestor()
                .ingest_url(tenant, &url, input, wait)
                .await?
        }
        _ => {
            return Err(ApiError::InvalidBody(
                "give exactly one of `content` and `url`".to_string(),
            ));
        }
    };
    Ok(ingest_response(outcome))
}

/// Upload a file as multipart form data: `file` (required, exactly once), and optionally
/// `title`, `source`, `metadata` (a JSON object), `chunk_size`,
/// `chunk_overlap`, `new_version`, `wait`.
#[utoipa::path(post, path = "/documents/upload", tag = "documents",
    request_body(content_type = "multipart/form-data", content = String),
    responses((status = 202, body = IngestResponse), (status = 201, body = IngestResponse),
              (status = 200, body = IngestResponse), (status = 400, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    AppMultipart(mut multipart): AppMultipart,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Role::Writer)?.clone();
    let mut input = IngestInput::default();
    let mut file_seen = false;
    let (mut size, mut overlap, mut wait) = (None, None, None);
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" if file_seen => {
                // One document per request: dropping all but one file
                // silently would lose the rest without a word.
                return Err(ApiError::InvalidBody(
                    "send one `file` per upload; each file is its own document".to_string(),
                ));
            }
            "file" => {
                input.filename = field.file_name().map(str::to_string);
                input.declared_content_type = field.content_type().map(str::to_string);
                input.bytes = field.bytes().await?;
                file_seen = true;
            }
            "title" => input.title = Some(field.text().await?),
            "source" => input.source = Some(field.text().await?),
            "metadata" => {
                let text = field.text().await?;
                input.metadata = serde_json::from_str(&text).map_err(|e| {
                    ApiError::InvalidBody(format!("`metadata` must be a JSON object: {e}"))
                })?;
            }
            "chunk_size" => size = Some(number_field(&name, &field.text().await?)?),
            "chunk_overlap" => overlap = Some(number_field(&name, &field.text().await?)?),
            "new_version" => input.new_version = bool_field(&name, &field.text().await?)?,
            "wait" => wait = Some(bool_field(&name, &field.text().await?)?),
            other => {
                return Err(ApiError::InvalidBody(format!(
                    "unknown form field `{other}`"
                )));
            }
        }
    }
    if !file_seen {
        return Err(ApiError::InvalidBody(
            "the form field `file` is required".to_string(),
        ));
    }
    input.chunking = ChunkingOptions::requested(size, overlap);
    let wait = wait.unwrap_or(state.wait_for_ingest_by_default);
    Ok(ingest_response(
        state
            .service
            .ingestor()
            .ingest(&tenant, input, wait)
            .await?,
    ))
}

fn number_field(name: &str, value: &str) -> Result<usize, ApiError> {
    value
        .trim()
        .parse()
        .map_err(|_| ApiError::InvalidBody(format!("`{name}` must be a whole number")))
}

fn bool_field(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::InvalidBody(format!(
            "`{name}` must be true or false"
        ))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// PENDING, PROCESSING, INDEXED or FAILED.
    #[param(value_type = Option<DocumentStatus>, nullable = false)]
    pub status: Option<String>,
    /// 1 to 1000, default 50.
    #[serde(default, deserialize_with = "whole_number")]
    #[param(minimum = 1, maximum = 1000, nullable = false)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    pub items: Vec<Document>,
    pub next_cursor: Option<String>,
}

/// Documents, newest first, a page at a time.
#[utoipa::path(get, path = "/documents", tag = "documents", params(ListParams),
    responses((status = 200, body = DocumentList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<DocumentList>, ApiError> {
    let tenant = caller.require(Role::Reader)?;
    let status = match params.status.as_deref() {
        None => None,
        Some(s) => Some(DocumentStatus::exact(s).ok_or_else(|| {
            ApiError::InvalidParameter(format!(
                "status must be one of PENDING, PROCESSING, INDEXED, FAILED, not {s:?}"
            ))
        })?),
    };
    let page = state
        .service
        .catalog()
        .list_documents(
            tenant,
            &ListQuery {
                status,
                limit: params.limit.unwrap_or(50),
                cursor: params.cursor,
            },
        )
        .await?;
    Ok(Json(DocumentList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Include the parsed text.
    #[serde(default)]
    pub include_content: bool,
    /// Include the chunks with their offsets.
    #[serde(default)]
    pub include_chunks: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkView {
    pub chunk_id: String,
    pub chunk_index: u32,
    pub start_char: u64,
    pub end_char: u64,
    pub token_count: u32,
    /// The page, sheet or slide the chunk comes from, where the format
    /// has them.
    #[serde(flatten)]
    pub location: ChunkLocation,
    pub content: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentDetail {
    #[serde(flatten)]
    pub document: Document,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<ChunkView>>,
}

/// One document; `include_content=true` adds its text.
#[utoipa::path(get, path = "/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path, description = "document id"), GetParams),
    responses((status = 200, body = DocumentDetail), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppQuery(params): AppQuery<GetParams>,
) -> Result<Json<DocumentDetail>, ApiError> {
    let tenant = caller.require(Role::Reader)?;
    let id = parse_id(&id, "document")?;
    let document = state
        .service
        .catalog()
        .get_document(tenant, id, params.include_content)
        .await?;
    let chunks = if params.include_chunks {
        Some(
            state
                .service
                .catalog()
                .document_chunks(tenant, id)
                .await?
                .into_iter()
                .map(|c| ChunkView {
                    chunk_id: c.chunk_id,
                    chunk_index: c.metadata.chunk_index,
                    start_char: c.metadata.start_char,
                    end_char: c.metadata.end_char,
                    token_count: c.metadata.token_count,
                    location: c.metadata.location,
                    content: c.content,
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(Json(DocumentDetail { document, chunks }))
}

/// Delete a document: its file, chunks, vectors and lexical entries.
#[utoipa::path(delete, path = "/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path, description = "document id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.require(Role::Writer)?;
    let id = parse_id(&id, "document")?;
    state.service.catalog().delete_document(tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
