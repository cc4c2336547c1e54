//! `/admin/keys`: a tenant's admin makes, lists and revokes its tenant's
//! keys; an operator (a key of tenant `*`) those of every tenant. Another
//! tenant's key id answers as an unknown one does.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rag_core::keys::{ApiKeyView, CreatedKey, KeyService, KeyTenant, parse_duration};
use rag_core::{Principal, RagError, Role, Scope, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The key's tenant; `*` makes an operator key (role admin). A
    /// tenant's admin may leave it out or name its own tenant only.
    #[schema(pattern = r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$")]
    pub tenant: Option<String>,
    /// `reader`, `writer` or `admin`.
    #[schema(pattern = "^(reader|writer|admin)$")]
    pub role: String,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// How long the key works: up to 4 digits and `s`, `m`, `h` or `d`
    /// (seconds when bare), e.g. `30d`; forever when absent.
    #[schema(pattern = "^[1-9][0-9]{0,3}[smhd]?$")]
    pub expires_in: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysParams {
    /// Only this tenant's keys (`*`: the operator keys). An operator
    /// without it sees every key.
    #[param(pattern = r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$")]
    pub tenant: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<ApiKeyView>,
}

fn keys(state: &AppState) -> Result<&std::sync::Arc<KeyService>, ApiError> {
    state.auth.keys.as_ref().ok_or_else(|| {
        ApiError::Rag(RagError::Unavailable(
            "this deployment has no key store".to_string(),
        ))
    })
}

fn key_tenant(raw: &str) -> Result<KeyTenant, ApiError> {
    KeyTenant::parse(raw).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

/// The tenants whose keys a principal manages: `None` for all of them.
fn managed(principal: &Principal) -> Option<KeyTenant> {
    match &principal.scope {
        Scope::Tenant(tenant) => Some(KeyTenant::One(tenant.clone())),
        Scope::Operator { .. } => None,
    }
}

/// Which tenant a request about keys means: the one it names, which must
/// be one the principal manages, or else the principal's own.
fn target(principal: &Principal, named: Option<&str>) -> Result<Option<KeyTenant>, ApiError> {
    let named = named.map(key_tenant).transpose()?;
    match (managed(principal), named) {
        (None, named) => Ok(named),
        (Some(own), None) => Ok(Some(own)),
        (Some(own), Some(named)) if named == own => Ok(Some(own)),
        (Some(_), Some(_)) => Err(ApiError::Forbidden(
            "a tenant's admin manages only its own tenant's keys".to_string(),
        )),
    }
}

fn key_not_found(id: &str) -> ApiError {
    ApiError::Rag(RagError::NotFound {
        what: "key",
        id: id.to_string(),
    })
}

/// Make a key; the response carries the key itself, once.
#[utoipa::path(post, path = "/admin/keys", tag = "admin", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let principal = caller.require_role(Role::Admin)?;
    let tenant = target(principal, body.tenant.as_deref())?.ok_or_else(|| {
        ApiError::InvalidBody("an operator names the key's tenant in `tenant`".to_string())
    })?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::InvalidBody("role must be reader, writer or admin".to_string()))?;
    if tenant == KeyTenant::All && role != Role::Admin {
        return Err(ApiError::InvalidBody(
            "a key of tenant * is an operator key and must have the admin role".to_string(),
        ));
    }
    let expires_in = body
        .expires_in
        .as_deref()
        .map(|raw| {
            parse_duration(raw).ok_or_else(|| {
                ApiError::InvalidBody(format!(
                    "expires_in {raw:?} is not a duration like 30d, 12h or 90m"
                ))
            })
        })
        .transpose()?;
    let created = keys(&state)?
        .create(tenant, role, body.name, expires_in)
        .await
        .map_err(RagError::from)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The keys the caller manages, newest first, without their secrets.
#[utoipa::path(get, path = "/admin/keys", tag = "admin", params(ListKeysParams),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(params): AppQuery<ListKeysParams>,
) -> Result<Json<KeyList>, ApiError> {
    let principal = caller.require_role(Role::Admin)?;
    let tenant = target(principal, params.tenant.as_deref()).map_err(|e| match e {
        ApiError::InvalidBody(m) => ApiError::InvalidParameter(m),
        other => other,
    })?;
    let items = keys(&state)?
        .list(tenant.as_ref())
        .await
        .map_err(RagError::from)?;
    Ok(Json(KeyList { items }))
}

/// Revoke a key: it stops working within five seconds everywhere.
#[utoipa::path(delete, path = "/admin/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "key id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let principal = caller.require_role(Role::Admin)?;
    let keys = keys(&state)?;
    let record = keys
        .get(&id)
        .await
        .map_err(RagError::from)?
        .ok_or_else(|| key_not_found(&id))?;
    if managed(principal).is_some_and(|own| own != record.tenant) {
        return Err(key_not_found(&id));
    }
    match keys.revoke(&id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(key_not_found(&id)),
        Err(StoreError::NotFound { .. }) => Err(key_not_found(&id)),
        Err(e) => Err(RagError::from(e).into()),
    }
}
