//! Ingestion jobs: a source (an S3 prefix, a directory under the allowed
//! roots, a sitemap) synced into the tenant's documents in the background.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rag_core::ingest::sync::{IngestionJob, SyncRequest};
use rag_core::{Page, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery, whole_number};
use crate::routes::parse_id;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// `s3://bucket/prefix/` (a bucket of `RAG_AGENT_SYNC_BUCKETS`),
    /// `file:///absolute/path` (under `RAG_AGENT_SYNC_ROOTS`; the embedded
    /// default only) or a sitemap's http(s) URL.
    #[schema(min_length = 1, max_length = 2048)]
    pub source: String,
    /// Take only items whose path below the source matches one of these
    /// globs (default: all).
    #[serde(default)]
    #[schema(max_items = 50)]
    pub include: Vec<String>,
    /// Skip items whose path below the source matches one of these globs.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub exclude: Vec<String>,
    /// Delete the documents of items that disappeared (default true).
    pub delete_missing: Option<bool>,
}

/// Start an ingestion job: 202 with the job, QUEUED. Follow it with
/// `GET /ingestion-jobs/{id}` until COMPLETED or FAILED.
#[utoipa::path(post, path = "/ingestion-jobs", tag = "documents", request_body = JobRequest,
    responses((status = 202, body = IngestionJob), (status = 400, body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<JobRequest>,
) -> Result<(StatusCode, Json<IngestionJob>), ApiError> {
    let tenant = caller.require(Role::Writer)?;
    let job = state
        .service
        .ingestor()
        .start_sync(
            tenant,
            SyncRequest {
                source: body.source,
                include: body.include,
                exclude: body.exclude,
                delete_missing: body.delete_missing.unwrap_or(true),
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// One ingestion job: its status, counts and first failures.
#[utoipa::path(get, path = "/ingestion-jobs/{id}", tag = "documents",
    params(("id" = Uuid, Path, description = "ingestion job id")),
    responses((status = 200, body = IngestionJob), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<Json<IngestionJob>, ApiError> {
    let tenant = caller.require(Role::Reader)?;
    let id = parse_id(&id, "ingestion job")?;
    Ok(Json(state.service.ingestor().sync_job(tenant, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// 1 to 1000, default 50.
    #[serde(default, deserialize_with = "whole_number")]
    #[param(minimum = 1, maximum = 1000, nullable = false)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<IngestionJob>,
    pub next_cursor: Option<String>,
}

/// Ingestion jobs, newest first, a page at a time.
#[utoipa::path(get, path = "/ingestion-jobs", tag = "documents", params(JobListParams),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(params): AppQuery<JobListParams>,
) -> Result<Json<JobList>, ApiError> {
    let tenant = caller.require(Role::Reader)?;
    let Page { items, next_cursor } = state
        .service
        .ingestor()
        .sync_jobs(tenant, params.limit.unwrap_or(50), params.cursor)
        .await?;
    Ok(Json(JobList { items, next_cursor }))
}
