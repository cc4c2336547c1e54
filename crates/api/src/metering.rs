//! Counts each authenticated API request as its tenant's usage (the UI's
//! files, `/health` and the OpenAPI document are not usage), and writes
//! what the meter gathered when a flush is due (after every request under
//! Lambda, where nothing may run after the response). Requests refused by
//! the rate limit are not counted: this layer runs inside it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rag_core::Principal;
use rag_core::usage::{UsageCounts, UsageMeter};

/// What answers anyone and does no work for a tenant.
fn is_open(path: &str) -> bool {
    matches!(path, "/" | "/health" | "/openapi.json") || path.starts_with("/ui/")
}

pub async fn count_requests(
    State(meter): State<Arc<UsageMeter>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(tenant) = request
        .extensions()
        .get::<Principal>()
        .and_then(Principal::tenant)
        .filter(|_| !is_open(request.uri().path()))
    {
        meter.record(tenant, UsageCounts::request());
    }
    let response = next.run(request).await;
    meter.flush_if_due().await;
    response
}
