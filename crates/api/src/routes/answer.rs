//! `/query`, `/chat`, `/chat/stream` and conversation history.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use rag_core::chat::{ContentBlock, Role, ToolResultStatus};
use rag_core::principal;
use rag_core::routing::{RouteError, resolve_use_case, valid_use_case};
use rag_core::usage::UsageCounts;
use rag_core::{
    ChatEvent, ChatReply, QueryInput, QueryResponse, RagError, SearchMode, TurnRequest,
};
use rag_core::{RagService, StoredMessage, Tenant};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery, whole_number};
use crate::routes::parse_id;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The question: 1 to 8000 characters, not all whitespace.
    #[schema(
        min_length = 1,
        max_length = 8000,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    pub query: String,
    /// Passages to retrieve (1 to 100; default `VECTOR_TOP_K`).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 100)]
    pub top_k: Option<usize>,
    /// Dense hits under this cosine similarity are dropped (default `SIMILARITY_THRESHOLD`).
    #[schema(minimum = -1.0, maximum = 1.0)]
    pub similarity_threshold: Option<f32>,
    /// Only search these documents.
    #[serde(default)]
    pub document_ids: Vec<Uuid>,
    /// Continue this conversation: earlier turns are sent to the model and this turn is stored.
    pub conversation_id: Option<Uuid>,
    pub mode: Option<SearchMode>,
    /// Rerank the best `RERANK_CANDIDATES` passages before `top_k` is cut
    /// (default: on when the deployment has a reranker). `true` where it
    /// has none is refused.
    pub rerank: Option<bool>,
    /// The chat model to answer with: one the request's use case allows
    /// (`BEDROCK_ROUTES`; 403 `model_not_allowed` otherwise, before any
    /// call), or this deployment's own. Default: the use case's model.
    #[schema(min_length = 1, max_length = 2048)]
    pub model: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequestBody {
    /// The message: 1 to 8000 characters, not all whitespace.
    #[schema(
        min_length = 1,
        max_length = 8000,
        pattern = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    pub message: String,
    /// Omit to start a new conversation; the reply says which id it got.
    pub conversation_id: Option<Uuid>,
    /// Model calls this turn may make (1 to 32; default `AGENT_MAX_CYCLES`).
    /// Agent only.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 32)]
    pub max_cycles: Option<u32>,
    /// Retrieve-then-answer only (models without tool calling): the agent
    /// chooses its own searches.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 100)]
    pub top_k: Option<usize>,
    /// Retrieve-then-answer only.
    pub mode: Option<SearchMode>,
    /// Retrieve-then-answer only.
    #[serde(default)]
    pub document_ids: Vec<Uuid>,
    /// Retrieve-then-answer only: as `rerank` of `/query`.
    pub rerank: Option<bool>,
    /// As `model` of `/query`.
    #[schema(min_length = 1, max_length = 2048)]
    pub model: Option<String>,
}

/// The header a request names its use case with.
pub const USE_CASE_HEADER: &str = "x-use-case-id";

/// The deployment as this request reaches it: with `BEDROCK_ROUTES`, the
/// service of the request's use case and model; else this deployment's,
/// which answers with its own model only.
async fn service_for(
    state: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    headers: &HeaderMap,
    model: Option<&str>,
) -> Result<Arc<RagService>, ApiError> {
    // A malformed name is refused whether or not this deployment routes
    // use cases, as the OpenAPI document says.
    let named = match headers.get(USE_CASE_HEADER) {
        Some(value) => {
            let name = value.to_str().map_err(|_| {
                ApiError::Route(RouteError::InvalidUseCase(format!(
                    "{USE_CASE_HEADER} is not a use case name"
                )))
            })?;
            valid_use_case(name)?;
            Some(name)
        }
        None => None,
    };
    let Some(routes) = &state.use_cases else {
        let own = state.service.tool_parts().model.model_id();
        return match model {
            Some(asked) if asked != own => Err(ApiError::InvalidBody(format!(
                "this deployment answers with {own} only (BEDROCK_ROUTES lets use cases choose among their models)"
            ))),
            _ => Ok(state.service.clone()),
        };
    };
    let settings = state
        .service
        .usage()
        .cached_tenant_settings(tenant)
        .await
        .map_err(|e| ApiError::Rag(RagError::from(e)))?;
    let use_case = resolve_use_case(&caller.0, &settings, named)?;
    tracing::Span::current().record("use_case", use_case.as_str());
    Ok(routes.service(&use_case, model)?)
}

impl ChatRequestBody {
    /// The turn this body asks for, on behalf of `tenant`.
    fn into_turn(self, tenant: &Tenant) -> TurnRequest {
        let body = self;
        TurnRequest {
            tenant: tenant.clone(),
            message: body.message,
            conversation_id: body.conversation_id,
            max_cycles: body.max_cycles,
            top_k: body.top_k,
            mode: body.mode,
            document_ids: body.document_ids,
            rerank: body.rerank,
        }
    }
}

/// Retrieve passages and answer from them, with sources.
#[utoipa::path(post, path = "/query", tag = "answers", request_body = QueryRequest,
    params(("x-use-case-id" = Option<String>, Header, pattern = "^[A-Za-z0-9_-]{1,64}$",
            description = "With BEDROCK_ROUTES: the use case to answer under, if the caller may use it")),
    responses((status = 200, body = QueryResponse), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    AppJson(body): AppJson<QueryRequest>,
) -> Result<Json<QueryResponse>, ApiError> {
    let tenant = caller.require(principal::Role::Reader)?;
    let service = service_for(&state, &caller, tenant, &headers, body.model.as_deref()).await?;
    let usage = service.usage();
    usage.check_budget(tenant).await?;
    let response = service
        .answerer()
        .query(QueryInput {
            tenant: tenant.clone(),
            query: body.query,
            top_k: body.top_k,
            similarity_threshold: body.similarity_threshold,
            document_ids: body.document_ids,
            conversation_id: body.conversation_id,
            mode: body.mode,
            rerank: body.rerank,
        })
        .await?;
    usage.record(tenant, UsageCounts::tokens(response.token_usage));
    Ok(Json(response))
}

/// One conversational turn; the conversation is stored under
/// `conversation_id`. With a tool-calling model the agent answers, calling
/// tools as it decides; otherwise the service retrieves, then answers.
#[utoipa::path(post, path = "/chat", tag = "answers", request_body = ChatRequestBody,
    params(("x-use-case-id" = Option<String>, Header, pattern = "^[A-Za-z0-9_-]{1,64}$",
            description = "With BEDROCK_ROUTES: the use case to answer under, if the caller may use it")),
    responses((status = 200, body = ChatReply), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn chat(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    AppJson(body): AppJson<ChatRequestBody>,
) -> Result<Json<ChatReply>, ApiError> {
    let tenant = caller.require(principal::Role::Reader)?;
    let service = service_for(&state, &caller, tenant, &headers, body.model.as_deref()).await?;
    let usage = service.usage();
    usage.check_budget(tenant).await?;
    let reply = service.turns().chat(body.into_turn(tenant)).await?;
    usage.record(tenant, UsageCounts::tokens(reply.token_usage));
    Ok(Json(reply))
}

/// A conversational turn as Server-Sent Events. The agent sends `delta`,
/// `tool_use` and `tool_result` events as they happen, then `sources` and
/// `done`; retrieve-then-answer sends `sources`, `delta`s, `done`. Failures
/// after the stream has started arrive as an `error` event.
#[utoipa::path(post, path = "/chat/stream", tag = "answers", request_body = ChatRequestBody,
    params(("x-use-case-id" = Option<String>, Header, pattern = "^[A-Za-z0-9_-]{1,64}$",
            description = "With BEDROCK_ROUTES: the use case to answer under, if the caller may use it")),
    responses((status = 200, description = "text/event-stream of ChatEvent", body = ChatEvent),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn chat_stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    AppJson(body): AppJson<ChatRequestBody>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let tenant = caller.require(principal::Role::Reader)?;
    let service = service_for(&state, &caller, tenant, &headers, body.model.as_deref()).await?;
    let usage = service.usage().clone();
    usage.check_budget(tenant).await?;
    let events = service
        .turns()
        .clone()
        .chat_stream(body.into_turn(tenant))
        .await?;
    // The turn's tokens are known when it is done; they are counted (and
    // written, when due) before that last event is sent.
    let tenant = tenant.clone();
    let stream = events.then(move |item| {
        let usage = usage.clone();
        let tenant = tenant.clone();
        async move {
            if let Ok(ChatEvent::Done { token_usage, .. }) = &item {
                usage.record(&tenant, UsageCounts::tokens(*token_usage));
                usage.flush_if_due().await;
            }
            Ok(to_sse(item))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One item of a turn's stream as an SSE event. A failure becomes an
/// `error` event through the same mapping as a JSON error, so its `code`
/// is the one the body of a plain request would carry; a server fault's
/// cause is logged here, once.
fn to_sse(item: Result<ChatEvent, RagError>) -> Event {
    let event = match item {
        Ok(event) => event,
        Err(error) => {
            let error = ApiError::from(error);
            if error.is_server_error() {
                tracing::error!(cause = ?error, "chat stream failed");
            }
            let (code, message) = error.code_and_message();
            ChatEvent::Error { code, message }
        }
    };
    let value = serde_json::to_value(&event).unwrap_or_default();
    let name = value["event"].as_str().unwrap_or("error").to_string();
    Event::default()
        .event(name)
        .json_data(&value["data"])
        .unwrap_or_else(|_| Event::default().event("error").data("{}"))
}

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    #[serde(default, deserialize_with = "whole_number")]
    pub limit: Option<usize>,
}

fn default_history_limit() -> usize {
    100
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationMessage {
    pub role: Role,
    pub text: String,
    /// Tools the assistant called in this message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_uses: Vec<ToolUseView>,
    /// Results handed back to the model in this message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_results: Vec<ToolResultView>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolUseView {
    pub id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolResultView {
    pub id: String,
    #[schema(value_type = String)]
    pub status: ToolResultStatus,
    pub content: String,
}

impl From<StoredMessage> for ConversationMessage {
    fn from(stored: StoredMessage) -> Self {
        let mut view = ConversationMessage {
            role: stored.message.role,
            text: stored.message.text(),
            tool_uses: Vec::new(),
            tool_results: Vec::new(),
            created_at: stored.created_at,
        };
        for block in stored.message.content {
            match block {
                ContentBlock::Text { .. } => {}
                ContentBlock::ToolUse {
                    tool_use_id,
                    name,
                    input,
                } => view.tool_uses.push(ToolUseView {
                    id: tool_use_id,
                    name,
                    input,
                }),
                ContentBlock::ToolResult {
                    tool_use_id,
                    status,
                    content,
                } => view.tool_results.push(ToolResultView {
                    id: tool_use_id,
                    status,
                    content,
                }),
            }
        }
        view
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Conversation {
    pub conversation_id: Uuid,
    pub messages: Vec<ConversationMessage>,
}

/// The stored turns of a conversation, oldest first.
#[utoipa::path(get, path = "/conversations/{id}", tag = "answers",
    params(("id" = Uuid, Path, description = "conversation id"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "at most this many of the latest messages (1 to 1000)")),
    responses((status = 200, body = Conversation), (status = 400, body = ErrorBody)))]
pub async fn conversation(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<String>,
    AppQuery(params): AppQuery<HistoryParams>,
) -> Result<Json<Conversation>, ApiError> {
    let tenant = caller.require(principal::Role::Reader)?;
    let id = parse_id(&id, "conversation")?;
    let limit = params.limit.unwrap_or_else(default_history_limit);
    let messages = state
        .service
        .catalog()
        .conversation(tenant, id, limit)
        .await?
        .into_iter()
        .map(ConversationMessage::from)
        .collect();
    Ok(Json(Conversation {
        conversation_id: id,
        messages,
    }))
}
