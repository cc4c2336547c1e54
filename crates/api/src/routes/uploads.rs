//! Direct uploads: declare a file, then PUT its bytes where the answer
//! says — to storage through a presigned URL, or to this server with a
//! single-use token — for files past the request size limit.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rag_core::Role;
use rag_core::chunk::ChunkingOptions;
use rag_core::ingest::{UploadDestination, UploadRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery, whole_number};
use crate::routes::documents::{IngestResponse, ingest_response};
use crate::routes::parse_id;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadDeclaration {
    /// The file's name; its extension tells the format when the type does not.
    #[schema(min_length = 1, max_length = 2048)]
    pub filename: String,
    /// The type the PUT will carry (a presigned URL is signed for it).
    #[schema(max_length = 255)]
    pub content_type: String,
    /// The exact number of bytes the PUT will carry, at most this
    /// deployment's `RAG_AGENT_MAX_UPLOAD_BYTES`.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(required = true, value_type = u64, minimum = 1)]
    pub size: Option<u64>,
    #[schema(max_length = 500)]
    pub title: Option<String>,
    #[schema(max_length = 2048)]
    pub source: Option<String>,
    /// At most 32 keys of 1 to 64 characters, 8 KiB as JSON.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<BTreeMap<String, serde_json::Value>>,
    /// Characters per chunk, 50 to 20000 (default 1000).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 50, maximum = 20000)]
    pub chunk_size: Option<usize>,
    /// Characters shared by neighbouring chunks, at most half of `chunk_size`.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 10000)]
    pub chunk_overlap: Option<usize>,
    /// Index again even if identical content is already indexed.
    #[serde(default)]
    pub new_version: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadTicketView {
    /// The document the upload becomes: `GET /documents/{id}` finds it once
    /// the bytes have arrived (PENDING, then INDEXED or FAILED with why).
    pub document_id: Uuid,
    /// Where to send the bytes; absolute.
    pub upload_url: String,
    /// Always `PUT`.
    pub method: String,
    /// Headers the PUT must carry exactly as given.
    pub headers: BTreeMap<String, String>,
    /// The URL stops working after this (15 minutes).
    pub expires_at: DateTime<Utc>,
}

/// Declare a direct upload: answers with the document id it will become and
/// a URL to PUT exactly `size` bytes of `content_type` to, for 15 minutes.
/// Up to `RAG_AGENT_MAX_UPLOAD_BYTES`; past the request size limit of
/// `/documents/upload`.
#[utoipa::path(post, path = "/documents/uploads", tag = "documents", request_body = UploadDeclaration,
    responses((status = 201, body = UploadTicketView), (status = 400, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn declare(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    AppJson(body): AppJson<UploadDeclaration>,
) -> Result<Response, ApiError> {
    let tenant = caller.require(Role::Writer)?;
    let size = body
        .size
        .ok_or_else(|| ApiError::InvalidBody("`size` is required".to_string()))?;
    let ticket = state
        .service
        .ingestor()
        .declare_upload(
            tenant,
            UploadRequest {
                filename: body.filename,
                content_type: body.content_type.clone(),
                size,
                title: body.title,
                source: body.source,
                metadata: body.metadata.unwrap_or_default(),
                chunking: ChunkingOptions::requested(body.chunk_size, body.chunk_overlap),
                new_version: body.new_version,
            },
        )
        .await?;
    let (upload_url, headers) = match ticket.destination {
        UploadDestination::Signed(put) => (put.url, put.headers),
        UploadDestination::ThisServer { token } => {
            let mut needed = BTreeMap::new();
            if !body.content_type.is_empty() {
                needed.insert("content-type".to_string(), body.content_type);
            }
            (
                format!(
                    "{}/documents/uploads/{}?token={token}",
                    base_url(&headers),
                    ticket.document_id
                ),
                needed,
            )
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(UploadTicketView {
            document_id: ticket.document_id,
            upload_url,
            method: "PUT".to_string(),
            headers,
            expires_at: ticket.expires_at,
        }),
    )
        .into_response())
}

/// This server as the client reached it. The Host header has passed the
/// request guard (on loopback, only loopback names and listed ones do); a
/// proxy that ends TLS says so in `x-forwarded-proto`.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadToken {
    /// The token from the upload's `upload_url`; it works once.
    #[param(min_length = 1)]
    pub token: String,
}

/// The bytes of a declared upload, sent to this server (where uploads are
/// not presigned into storage). The token is the credential; the body is
/// the file, exactly as many bytes as declared. 202: the document is
/// PENDING under the promised id; 200 when identical content was already
/// indexed; 404 for an unknown, used or expired token.
#[utoipa::path(put, path = "/documents/uploads/{id}", tag = "documents",
    params(("id" = Uuid, Path, description = "the upload's document id"), UploadToken),
    request_body(content_type = "application/octet-stream", content = Vec<u8>),
    responses((status = 202, body = IngestResponse), (status = 200, body = IngestResponse),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<UploadToken>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "upload")?;
    let bytes = body?;
    let (_tenant, outcome) = state
        .service
        .ingestor()
        .receive_upload(id, &query.token, bytes)
        .await?;
    // Never waited for: 202 with the PENDING document, or 200 with the
    // one that already holds these bytes.
    Ok(ingest_response(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_url_follows_the_host_and_a_proxys_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "localhost:3000".parse().unwrap());
        assert_eq!(base_url(&headers), "http://localhost:3000");
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(base_url(&headers), "https://localhost:3000");
    }
}
