//! `/me`: who the presented credential is, so a client (the web UI) can
//! show the tenant and role and offer only what the role may do.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

#[derive(Debug, Serialize, ToSchema)]
pub struct Identity {
    /// The tenant whose data requests reach; absent for an operator that
    /// names none with `x-tenant-id`.
    pub tenant: Option<String>,
    /// `reader`, `writer` or `admin`.
    pub role: String,
    /// A key of tenant `*`: manages every tenant's keys and settings.
    pub operator: bool,
    /// What may be done: `read` always, `write` for writers and admins,
    /// `admin` for admins.
    pub can: Vec<String>,
}

/// The caller's tenant and role.
#[utoipa::path(get, path = "/me", tag = "service",
    responses((status = 200, body = Identity), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> Result<Json<Identity>, ApiError> {
    let principal = caller.0;
    let can = [
        (rag_core::Role::Reader, "read"),
        (rag_core::Role::Writer, "write"),
        (rag_core::Role::Admin, "admin"),
    ]
    .into_iter()
    .filter(|(role, _)| principal.role.allows(*role))
    .map(|(_, name)| name.to_string())
    .collect();
    Ok(Json(Identity {
        tenant: principal.tenant().map(|t| t.to_string()),
        role: principal.role.as_str().to_string(),
        operator: principal.is_operator(),
        can,
    }))
}
