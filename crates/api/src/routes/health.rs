use axum::Json;
use axum::extract::State;
use rag_core::HealthReport;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// Service status: version, backends, embedding model, document count.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, body = HealthReport), (status = 503, body = ErrorBody)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<HealthReport>, ApiError> {
    Ok(Json(state.service.health().await?))
}
