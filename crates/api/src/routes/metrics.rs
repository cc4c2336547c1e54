//! `GET /metrics`: the Prometheus text of this process's metrics, for the
//! operator (they span every tenant), or anyone on a server without
//! authentication (which the binary allows on loopback only).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rag_core::Role;

use crate::AppState;
use crate::auth::{AuthMode, Caller};
use crate::error::{ApiError, ErrorBody};

/// The Prometheus text format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request, model, retrieval and ingestion metrics in the Prometheus text
/// format (an operator key's admin role).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let principal = caller.require_role(Role::Admin)?;
    if !principal.is_operator() && state.auth.mode != AuthMode::None {
        return Err(ApiError::Forbidden(
            "metrics span every tenant: they need an operator key (tenant *)".to_string(),
        ));
    }
    // With METRICS=emf or off this deployment has no such endpoint.
    let registry = state.metrics.as_ref().ok_or(ApiError::RouteNotFound)?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], registry.render()).into_response())
}
