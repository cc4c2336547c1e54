//! Request handlers, one module per resource.

pub mod answer;
pub mod documents;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod me;
pub mod metrics;
pub mod tools;
pub mod ui;
pub mod uploads;
pub mod usage;

use crate::error::ApiError;

pub async fn not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Ids are written in the hyphenated form only, as the API hands them out
/// (and as the OpenAPI `uuid` format means); the braced, URN and bare-hex
/// spellings `uuid` would also take are refused.
pub(crate) fn parse_id(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(raw)
        .ok()
        .filter(|_| raw.len() == 36)
        .ok_or_else(|| ApiError::InvalidParameter(format!("{raw:?} is not a valid {what} id")))
}
