use axum::Json;
use axum::extract::State;
use rag_core::HealthReport;

use rag_core::Role;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// Service status: version, backends, embedding model, document count.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, body = HealthReport), (status = 503, body = ErrorBody)))]
/// Open to anyone (load balancers ask it); the document and vector counts
/// are the caller's tenant's, and only for its admin.
pub async fn health(
    State(state): State<AppState>,
    caller: Option<Caller>,
) -> Result<Json<HealthReport>, ApiError> {
    let counts_for = caller.as_ref().and_then(|c| c.require(Role::Admin).ok());
    Ok(Json(state.service.health(counts_for).await?))
}
