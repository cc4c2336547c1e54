//! Retrieve-then-answer: one search, one model call over the passages it
//! found. `/query` always answers this way; `/chat` does for models that
//! cannot call tools, with the conversation's memory window as the agent
//! uses it.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::follow_up;
use super::memory::window;
use super::{
    ChatEvent, ChatEventStream, ChatReply, ChatTurns, EventSink, TurnRequest, fold_stream,
    spawn_turn,
};
use crate::answer::{CitedPassage, build_rag_request, verify_citations};
use crate::backend::{ConversationStore, StoredMessage};
use crate::chat::{ChatModel, ChatRequest, InferenceConfig, Message, Passage, StopReason};
use crate::domain::{QueryResponse, RerankReport, SearchFilter, SearchMode, SourceReference};
use crate::error::RagError;
use crate::retrieve::{Retriever, SearchParams};
use crate::tenant::Tenant;

/// A question for `/query`, asked by `tenant`.
#[derive(Debug, Clone)]
pub struct QueryInput {
    pub tenant: Tenant,
    pub query: String,
    pub top_k: Option<usize>,
    pub similarity_threshold: Option<f32>,
    pub document_ids: Vec<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub mode: Option<SearchMode>,
    /// Rerank the candidates; `None` takes the deployment's default.
    pub rerank: Option<bool>,
}

pub struct RetrieveThenAnswer {
    retriever: Retriever,
    model: Arc<dyn ChatModel>,
    conversations: Arc<dyn ConversationStore>,
    /// Stored messages sent back to the model as history.
    memory_messages: usize,
    max_answer_tokens: u32,
}

/// A retrieval made and the model request built from it.
struct Prepared {
    mode: SearchMode,
    sources: Vec<SourceReference>,
    /// The text of each source's passage, as the model read it.
    passages: Vec<String>,
    request: ChatRequest,
    /// What was searched when the question leaned on the conversation.
    search_query: Option<String>,
    rerank: Option<RerankReport>,
}

impl RetrieveThenAnswer {
    pub fn new(
        retriever: Retriever,
        model: Arc<dyn ChatModel>,
        conversations: Arc<dyn ConversationStore>,
        memory_messages: usize,
        max_answer_tokens: u32,
    ) -> Self {
        Self {
            retriever,
            model,
            conversations,
            memory_messages,
            max_answer_tokens,
        }
    }

    /// The same answerer searching with `retriever` and answering with
    /// `model`.
    pub fn with_parts(&self, retriever: Retriever, model: Arc<dyn ChatModel>) -> Self {
        Self {
            retriever,
            model,
            conversations: self.conversations.clone(),
            memory_messages: self.memory_messages,
            max_answer_tokens: self.max_answer_tokens,
        }
    }

    /// Retrieves, then answers; with a `conversation_id`, from the
    /// conversation's memory and stored in it.
    pub async fn query(&self, input: QueryInput) -> Result<QueryResponse, RagError> {
        Ok(self.answer(input, None).await?.0)
    }

    async fn answer(
        &self,
        input: QueryInput,
        sink: Option<&EventSink>,
    ) -> Result<(QueryResponse, StopReason), RagError> {
        let started = Instant::now();
        let prepared = self.prepare(&input).await?;
        self.respond(input, prepared, started, sink).await
    }

    /// The model call and what follows it, once retrieval is done.
    async fn respond(
        &self,
        input: QueryInput,
        prepared: Prepared,
        started: Instant,
        sink: Option<&EventSink>,
    ) -> Result<(QueryResponse, StopReason), RagError> {
        if let Some(sink) = sink {
            sink.send(ChatEvent::Sources {
                sources: prepared.sources.clone(),
                rerank: prepared.rerank.clone(),
            })
            .await;
        }
        let response = fold_stream(self.model.as_ref(), prepared.request, sink).await?;
        let cited: Vec<CitedPassage<'_>> = prepared
            .sources
            .iter()
            .zip(&prepared.passages)
            .map(|(source, text)| CitedPassage {
                number: source.citation,
                chunk_id: &source.chunk_id,
                text,
            })
            .collect();
        let (answer, citation_report) =
            verify_citations(&response.message.text(), &cited).into_parts();
        if let Some(conversation_id) = input.conversation_id {
            self.remember(&input.tenant, conversation_id, &input.query, &answer)
                .await?;
        }
        let reply = QueryResponse {
            query: input.query,
            answer,
            sources: prepared.sources,
            model_id: self.model.model_id().to_string(),
            search_mode: prepared.mode,
            latency_ms: started.elapsed().as_millis() as u64,
            token_usage: response.usage,
            conversation_id: input.conversation_id,
            search_query: prepared.search_query,
            rerank: prepared.rerank,
            citation_report,
        };
        Ok((reply, response.stop_reason))
    }

    async fn prepare(&self, input: &QueryInput) -> Result<Prepared, RagError> {
        let history = match input.conversation_id {
            Some(id) => window(
                self.conversations
                    .history(&input.tenant, id, self.memory_messages)
                    .await?
                    .into_iter()
                    .map(|stored| stored.message)
                    .collect(),
                self.memory_messages,
            ),
            None => Vec::new(),
        };
        let search_query = self.standalone_query(&input.query, &history).await;
        let search = self.retriever.request(
            &input.tenant,
            search_query.clone().unwrap_or_else(|| input.query.clone()),
            SearchParams {
                top_k: input.top_k,
                similarity_threshold: input.similarity_threshold,
                mode: input.mode,
                filter: SearchFilter {
                    document_ids: input.document_ids.clone(),
                },
                rerank: input.rerank,
            },
        )?;
        let retrieved = self.retriever.retrieve(&search).await?;
        let read = self.retriever.read(&input.tenant, &retrieved).await;
        let passages = read
            .iter()
            .map(|p| Passage {
                number: p.source.citation,
                title: p.source.title.clone(),
                text: p.text.clone(),
            })
            .collect();
        let (sources, texts) = read.into_iter().map(|p| (p.source, p.text)).unzip();
        let request = build_rag_request(
            &input.query,
            passages,
            history,
            InferenceConfig {
                max_tokens: Some(self.max_answer_tokens),
                temperature: Some(0.2),
            },
        );
        Ok(Prepared {
            mode: retrieved.mode,
            sources,
            passages: texts,
            request,
            search_query,
            rerank: retrieved.rerank,
        })
    }

    /// What to search for a question that leans on the conversation (see
    /// `follow_up`); `None` when it stands alone. The extractive answerer
    /// refuses the rewrite request at once, so it gets the previous
    /// question's terms, as does a model whose rewrite is unusable.
    async fn standalone_query(&self, question: &str, history: &[Message]) -> Option<String> {
        // A blank question is searched as asked, so the search refuses it
        // as it refuses any blank query.
        if history.is_empty()
            || question.trim().is_empty()
            || !follow_up::depends_on_history(question)
        {
            return None;
        }
        let previous = follow_up::previous_question(history)?;
        match follow_up::rewrite(self.model.as_ref(), history, question).await {
            Some(rewritten) => Some(rewritten),
            None => Some(follow_up::with_previous_terms(question, &previous)),
        }
    }

    async fn remember(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        question: &str,
        answer: &str,
    ) -> Result<(), RagError> {
        let now = Utc::now();
        let messages = [
            StoredMessage {
                message: Message::user_text(question),
                created_at: now,
            },
            StoredMessage {
                message: Message::assistant_text(answer),
                created_at: now,
            },
        ];
        self.conversations
            .append(tenant, conversation_id, &messages)
            .await?;
        Ok(())
    }

    fn input_of(request: TurnRequest) -> Result<QueryInput, RagError> {
        if request.max_cycles.is_some() {
            return Err(RagError::NotApplicable(
                "max_cycles applies to the agent, and this deployment's model cannot call tools"
                    .into(),
            ));
        }
        Ok(QueryInput {
            tenant: request.tenant,
            query: request.message,
            top_k: request.top_k,
            similarity_threshold: None,
            document_ids: request.document_ids,
            conversation_id: Some(request.conversation_id.unwrap_or_else(Uuid::new_v4)),
            mode: request.mode,
            rerank: request.rerank,
        })
    }
}

#[async_trait]
impl ChatTurns for RetrieveThenAnswer {
    async fn chat(&self, request: TurnRequest) -> Result<ChatReply, RagError> {
        let (response, stop_reason) = self.answer(Self::input_of(request)?, None).await?;
        Ok(ChatReply::from_query(response, stop_reason))
    }

    /// Input errors and retrieval failures still surface before the
    /// stream starts: the search runs first, then the stream opens with
    /// its sources.
    async fn chat_stream(
        self: Arc<Self>,
        request: TurnRequest,
    ) -> Result<ChatEventStream, RagError> {
        let started = Instant::now();
        let input = Self::input_of(request)?;
        let prepared = self.prepare(&input).await?;
        Ok(spawn_turn(move |sink| async move {
            let (response, stop_reason) =
                self.respond(input, prepared, started, Some(&sink)).await?;
            let done = ChatReply::from_query(response, stop_reason);
            Ok(vec![
                ChatEvent::Citations {
                    answer: done.answer,
                    report: done.citation_report,
                },
                ChatEvent::Done {
                    conversation_id: done.conversation_id,
                    model_id: done.model_id,
                    stop_reason: done.stop_reason,
                    outcome: done.outcome,
                    cycles: done.cycles,
                    token_usage: done.token_usage,
                    latency_ms: done.latency_ms,
                },
            ])
        }))
    }
}
