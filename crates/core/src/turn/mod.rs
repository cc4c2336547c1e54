//! A chat turn, whichever way a deployment answers it: the agent's tool
//! loop (`agent/`) or retrieve-then-answer (`rag.rs`). Both implement
//! [`ChatTurns`]; the binary picks one at wiring time from what the model
//! can do, and the HTTP layer only calls it. Both stream through one fold
//! of the model's stream (`fold.rs`) into one [`EventSink`], so they share
//! one policy for a client that goes away: **the turn runs to its end and
//! is stored**, and the client reads it from the conversation when it
//! reconnects. Tokens already spent are not wasted, and a conversation never
//! holds a question without its answer.

mod fold;
pub mod follow_up;
pub mod memory;
mod rag;

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::chat::{StopReason, ToolResultStatus};
use crate::domain::{
    CitationReport, QueryResponse, RerankReport, SearchMode, SourceReference, TokenUsage,
};
use crate::error::RagError;
use crate::tenant::Tenant;

pub(crate) use fold::fold_stream;
pub use rag::{QueryInput, RetrieveThenAnswer};

/// One `/chat` turn as the caller asks it. Which fields apply depends on
/// the kind of turn: the agent takes `max_cycles` and chooses its own
/// searches; retrieve-then-answer takes `top_k`, `mode` and `document_ids`.
/// A field the deployment's kind does not take is refused, not ignored.
/// The turn reads and writes only `tenant`'s documents and conversations.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub tenant: Tenant,
    pub message: String,
    pub conversation_id: Option<Uuid>,
    pub max_cycles: Option<u32>,
    pub top_k: Option<usize>,
    pub mode: Option<SearchMode>,
    pub document_ids: Vec<Uuid>,
    /// Retrieve-then-answer only: rerank this turn's search or not.
    pub rerank: Option<bool>,
}

impl TurnRequest {
    /// A new conversation's first turn, every option left to the defaults.
    pub fn new(tenant: Tenant, message: impl Into<String>) -> Self {
        Self {
            tenant,
            message: message.into(),
            conversation_id: None,
            max_cycles: None,
            top_k: None,
            mode: None,
            document_ids: Vec::new(),
            rerank: None,
        }
    }
}

/// A deployment's way of answering chat turns.
#[async_trait]
pub trait ChatTurns: Send + Sync {
    /// Runs one turn to its end and stores it.
    async fn chat(&self, request: TurnRequest) -> Result<ChatReply, RagError>;
    /// Runs one turn as a stream of events. Input errors surface before
    /// the stream starts; a failure after that is the stream's last item.
    async fn chat_stream(
        self: Arc<Self>,
        request: TurnRequest,
    ) -> Result<ChatEventStream, RagError>;
}

/// A streamed turn: events, then at most one error, which the API turns
/// into an `error` event with the code its JSON body would carry.
pub type ChatEventStream = BoxStream<'static, Result<ChatEvent, RagError>>;

/// What a streamed chat turn emits. Retrieve-then-answer: `Sources`, then
/// `Delta`s, then `Citations` and one `Done`, or an `Error`. The agent:
/// `Delta`s, `ToolUse`s and `ToolResult`s as they happen, then `Sources`
/// (what the answer cites), `Citations` and one `Done`, or an `Error`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum ChatEvent {
    Sources {
        sources: Vec<SourceReference>,
        /// How the sources were reranked; retrieve-then-answer only.
        #[serde(skip_serializing_if = "Option::is_none")]
        rerank: Option<RerankReport>,
    },
    Delta {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[schema(value_type = Object)]
        input: serde_json::Value,
    },
    ToolResult {
        id: String,
        name: String,
        #[schema(value_type = String)]
        status: ToolResultStatus,
        /// A one-line account of the result, or the error.
        summary: String,
    },
    /// The answer as checked, markers that name no passage removed, and
    /// how its citations hold up; sent once the text is complete.
    Citations {
        answer: String,
        #[serde(flatten)]
        report: CitationReport,
    },
    Done {
        conversation_id: Uuid,
        model_id: String,
        stop_reason: StopReason,
        outcome: ChatOutcome,
        cycles: u32,
        token_usage: TokenUsage,
        latency_ms: u64,
    },
    /// A failure after the stream started. Core never builds one: the API
    /// makes it from the stream's error with the same mapping as its JSON
    /// errors, so both carry the same `code`.
    Error {
        code: String,
        message: String,
    },
}

/// Where a running turn sends its events. Sending never fails the turn: a
/// client that went away stops receiving, and the turn carries on to be
/// stored (see the module's documentation).
#[derive(Clone)]
pub(crate) struct EventSink(mpsc::Sender<Result<ChatEvent, RagError>>);

impl EventSink {
    pub(crate) async fn send(&self, event: ChatEvent) {
        let _ = self.0.send(Ok(event)).await;
    }
}

/// Runs a turn on its own task, streaming what it sends to its sink, then
/// the events it ends with, or its error.
pub(crate) fn spawn_turn<F, Fut>(turn: F) -> ChatEventStream
where
    F: FnOnce(EventSink) -> Fut,
    Fut: Future<Output = Result<Vec<ChatEvent>, RagError>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let running = turn(EventSink(tx.clone()));
    // The turn's spans (model calls, tools) stay children of the request's,
    // though the task outlives the handler.
    let task = async move {
        match running.await {
            Ok(last) => {
                for event in last {
                    let _ = tx.send(Ok(event)).await;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    };
    tokio::spawn(task.in_current_span());
    ReceiverStream::new(rx).boxed()
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatOutcome {
    /// The model finished its answer.
    Completed,
    /// The model ran out of output tokens; the answer is cut short.
    MaxTokens,
    /// The cycle cap was reached before the model answered.
    CycleLimit,
    /// The model's guardrails withheld the answer.
    ContentFiltered,
}

impl ChatOutcome {
    pub fn from_stop(stop_reason: StopReason) -> Self {
        match stop_reason {
            StopReason::EndTurn | StopReason::StopSequence | StopReason::ToolUse => {
                ChatOutcome::Completed
            }
            StopReason::MaxTokens => ChatOutcome::MaxTokens,
            StopReason::ContentFiltered => ChatOutcome::ContentFiltered,
        }
    }
}

/// A tool call the model made, with what came of it. Times are
/// milliseconds from the start of the turn, so overlapping calls show.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ToolCallRecord {
    pub id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    #[schema(value_type = String)]
    pub status: ToolResultStatus,
    /// A one-line account of the result, or the error.
    pub summary: String,
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// The answer to one `/chat` turn.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatReply {
    pub conversation_id: Uuid,
    pub answer: String,
    /// The passages the answer cites (or, when it cites none, every passage
    /// the tools returned).
    pub sources: Vec<SourceReference>,
    pub model_id: String,
    pub outcome: ChatOutcome,
    pub stop_reason: StopReason,
    /// Model calls made.
    pub cycles: u32,
    pub tool_calls: Vec<ToolCallRecord>,
    pub token_usage: TokenUsage,
    pub latency_ms: u64,
    /// The search mode of retrieve-then-answer turns; absent for agent turns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_mode: Option<SearchMode>,
    /// The standalone query searched for a follow-up question (see
    /// `QueryResponse::search_query`); retrieve-then-answer turns only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_query: Option<String>,
    /// How the passages were reranked (see `QueryResponse::rerank`);
    /// retrieve-then-answer turns only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank: Option<RerankReport>,
    /// How the answer's citations hold up against their passages.
    #[serde(flatten)]
    pub citation_report: CitationReport,
}

impl ChatReply {
    /// A retrieve-then-answer turn, for models without tool calling.
    pub fn from_query(response: QueryResponse, stop_reason: StopReason) -> Self {
        ChatReply {
            conversation_id: response.conversation_id.unwrap_or_default(),
            answer: response.answer,
            sources: response.sources,
            model_id: response.model_id,
            outcome: ChatOutcome::from_stop(stop_reason),
            stop_reason,
            cycles: 1,
            tool_calls: Vec::new(),
            token_usage: response.token_usage,
            latency_ms: response.latency_ms,
            search_mode: Some(response.search_mode),
            search_query: response.search_query,
            rerank: response.rerank,
            citation_report: response.citation_report,
        }
    }

    /// The events that end a streamed turn with this reply.
    pub(crate) fn closing_events(self) -> Vec<ChatEvent> {
        vec![
            ChatEvent::Sources {
                sources: self.sources,
                rerank: self.rerank,
            },
            ChatEvent::Citations {
                answer: self.answer,
                report: self.citation_report,
            },
            ChatEvent::Done {
                conversation_id: self.conversation_id,
                model_id: self.model_id,
                stop_reason: self.stop_reason,
                outcome: self.outcome,
                cycles: self.cycles,
                token_usage: self.token_usage,
                latency_ms: self.latency_ms,
            },
        ]
    }
}
