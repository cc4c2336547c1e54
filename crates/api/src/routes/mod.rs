//! Request handlers, one module per resource.

pub mod answer;
pub mod documents;
pub mod health;
pub mod tools;
pub mod ui;

use crate::error::ApiError;

pub async fn not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

pub(crate) fn parse_id(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::InvalidParameter(format!("{raw:?} is not a valid {what} id")))
}
