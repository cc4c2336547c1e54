use axum::Json;
use axum::extract::State;
use rag_core::chat::ToolSpec;

use crate::AppState;

/// The tools the agent can call, each with a JSON Schema of its input.
#[utoipa::path(get, path = "/tools", tag = "agent", responses((status = 200, body = [ToolSpec])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ToolSpec>> {
    Json(state.service.tools().specs())
}
