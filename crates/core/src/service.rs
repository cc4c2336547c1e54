//! `RagService`: the application layer the API calls. It owns the backends
//! and runs ingestion, retrieval and answering; it knows nothing of HTTP.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::agent::{ChatOutcome, ChatReply};
use crate::answer::build_rag_request;
use crate::backend::{
    ConversationStore, DocumentStore, Embedder, EmbedderState, LexicalIndex, ListQuery,
    MetadataStore, StoredMessage, VectorStore,
};
use crate::chat::{
    ChatModel, ChatStreamEvent, InferenceConfig, Message, Passage, StopReason, ToolResultStatus,
};
use crate::chunk::ChunkingOptions;
use crate::domain::{
    Document, DocumentStatus, Page, QueryResponse, SearchFilter, SearchMode, SourceReference,
    TokenUsage, VectorSearchResult,
};
use crate::error::{ModelError, RagError, StoreError};
use crate::fetch::UrlFetcher;
use crate::ingest::{IngestInput, IngestOutcome, text_key};
use crate::parse::{DocumentParser, ParseLimits, ProcessParser, ThreadParser, WorkerCommand};
use crate::retrieve::{MAX_TOP_K, Retriever, SearchRequest};
use crate::retry::RetryPolicy;
use crate::retrying_model::RetryingChatModel;

/// The backends one deployment runs on.
#[derive(Clone)]
pub struct Stores {
    pub metadata: Arc<dyn MetadataStore>,
    pub documents: Arc<dyn DocumentStore>,
    pub vectors: Arc<dyn VectorStore>,
    pub lexical: Option<Arc<dyn LexicalIndex>>,
    pub conversations: Arc<dyn ConversationStore>,
}

/// Defaults and limits, set once from configuration.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub top_k: usize,
    pub similarity_threshold: f32,
    pub search_mode: SearchMode,
    pub chunking: ChunkingOptions,
    pub max_document_bytes: u64,
    /// Documents chunked and embedded at once in the background.
    pub ingest_concurrency: usize,
    /// Earlier messages of a conversation sent with each new turn.
    pub history_messages: usize,
    pub max_answer_tokens: u32,
    /// Time, text and memory limits of every parse.
    pub parse: ParseLimits,
    /// Parse HTML and PDF in child processes started this way; without
    /// it they are parsed on a thread of this process.
    pub parse_worker: Option<WorkerCommand>,
    /// A document that would split into more chunks is refused.
    pub max_chunks_per_document: usize,
}

/// Chunks one document may have unless configured otherwise: about 16
/// million characters at the default chunk size, and half an hour of
/// embedding on one laptop core.
pub const DEFAULT_MAX_CHUNKS_PER_DOCUMENT: usize = 20_000;

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            top_k: 5,
            similarity_threshold: 0.2,
            search_mode: SearchMode::Hybrid,
            chunking: ChunkingOptions::default(),
            max_document_bytes: 50 * 1024 * 1024,
            ingest_concurrency: 2,
            history_messages: 20,
            max_answer_tokens: 1024,
            parse: ParseLimits::default(),
            parse_worker: None,
            max_chunks_per_document: DEFAULT_MAX_CHUNKS_PER_DOCUMENT,
        }
    }
}

const SNIPPET_CHARS: usize = 300;

/// A question for `query` or `chat`.
#[derive(Debug, Clone, Default)]
pub struct QueryInput {
    pub query: String,
    pub top_k: Option<usize>,
    pub similarity_threshold: Option<f32>,
    pub document_ids: Vec<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub mode: Option<SearchMode>,
}

/// What a streamed chat turn emits. Retrieve-then-answer: `Sources`, then
/// `Delta`s, then one `Done` or `Error`. The agent: `Delta`s, `ToolUse`s and
/// `ToolResult`s as they happen, then `Sources` (what the answer cites) and
/// one `Done`, or an `Error`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum ChatEvent {
    Sources {
        sources: Vec<SourceReference>,
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
    Done {
        conversation_id: Uuid,
        model_id: String,
        stop_reason: StopReason,
        outcome: ChatOutcome,
        cycles: u32,
        token_usage: TokenUsage,
        latency_ms: u64,
    },
    Error {
        code: String,
        message: String,
    },
}

/// Whether each part of the deployment is usable, for `/health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthReport {
    /// `ok`; `starting` while the embedding model loads (dense search waits
    /// for it, everything else answers); `degraded` when a component is
    /// missing or failed (see `warnings`).
    pub status: String,
    pub version: String,
    pub backends: BTreeMap<String, String>,
    pub embedding_model: Option<EmbeddingModelInfo>,
    pub chat_model: String,
    pub search_modes: Vec<SearchMode>,
    pub default_search_mode: SearchMode,
    pub document_count: u64,
    /// Absent for vector services that cannot count without a full listing.
    pub vector_count: Option<usize>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingModelInfo {
    pub model_id: String,
    pub dimension: usize,
}

pub struct RagService {
    stores: Stores,
    embedder: Option<Arc<dyn Embedder>>,
    chat: Arc<dyn ChatModel>,
    retriever: Retriever,
    fetcher: UrlFetcher,
    parser: Arc<dyn DocumentParser>,
    settings: ServiceSettings,
    ingest_permits: Arc<Semaphore>,
    warnings: Vec<String>,
}

impl RagService {
    pub fn new(
        stores: Stores,
        embedder: Option<Arc<dyn Embedder>>,
        chat: Arc<dyn ChatModel>,
        fetcher: UrlFetcher,
        settings: ServiceSettings,
        warnings: Vec<String>,
    ) -> Arc<Self> {
        // Every path that calls the model (answers, summaries, the agent)
        // retries throttling the same way.
        let chat: Arc<dyn ChatModel> =
            Arc::new(RetryingChatModel::new(chat, RetryPolicy::default()));
        let retriever = Retriever::new(
            embedder.clone(),
            stores.vectors.clone(),
            stores.lexical.clone(),
        );
        let parser: Arc<dyn DocumentParser> = match &settings.parse_worker {
            Some(worker) => Arc::new(ProcessParser::new(worker.clone(), settings.parse)),
            None => Arc::new(ThreadParser::new(settings.parse)),
        };
        Arc::new(Self {
            parser,
            ingest_permits: Arc::new(Semaphore::new(settings.ingest_concurrency.max(1))),
            stores,
            embedder,
            chat,
            retriever,
            fetcher,
            settings,
            warnings,
        })
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    pub fn chat_model(&self) -> &Arc<dyn ChatModel> {
        &self.chat
    }

    pub fn retriever(&self) -> &Retriever {
        &self.retriever
    }

    /// Every parse of untrusted bytes goes through this.
    pub fn parser(&self) -> &Arc<dyn DocumentParser> {
        &self.parser
    }

    pub fn fetcher(&self) -> &UrlFetcher {
        &self.fetcher
    }

    /// Accepts a document and indexes it: before returning when `wait` is
    /// set, otherwise in the background (bounded by `ingest_concurrency`).
    pub async fn ingest(
        self: &Arc<Self>,
        input: IngestInput,
        wait: bool,
    ) -> Result<IngestOutcome, RagError> {
        let outcome = self.accept(input).await?;
        let IngestOutcome::Created(document) = outcome else {
            return Ok(outcome);
        };
        if wait {
            let _permit = self.ingest_permits.acquire().await;
            return Ok(IngestOutcome::Created(self.process(document.id).await?));
        }
        self.spawn_processing(document.id);
        Ok(IngestOutcome::Created(document))
    }

    /// Fetches a URL (with the address protections of [`UrlFetcher`]) and
    /// ingests what it returns.
    pub async fn ingest_url(
        self: &Arc<Self>,
        url: &str,
        mut input: IngestInput,
        wait: bool,
    ) -> Result<IngestOutcome, RagError> {
        let fetched = self.fetcher.fetch(url).await?;
        input.bytes = fetched.bytes;
        if input.declared_content_type.is_none() {
            input.declared_content_type = fetched.content_type;
        }
        if input.source.is_none() {
            input.source = Some(fetched.final_url.clone());
        }
        if input.filename.is_none() {
            input.filename = url::Url::parse(&fetched.final_url)
                .ok()
                .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
                .filter(|name| name.contains('.'));
        }
        self.ingest(input, wait).await
    }

    fn spawn_processing(self: &Arc<Self>, id: Uuid) {
        let service = self.clone();
        tokio::spawn(async move {
            let _permit = service.ingest_permits.clone().acquire_owned().await;
            if let Err(error) = service.process(id).await {
                tracing::error!(%id, %error, "background ingestion failed");
            }
        });
    }

    /// Finds documents a crash left PENDING or PROCESSING and indexes them
    /// again from their stored text. Returns how many were resumed.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, RagError> {
        let mut resumed = 0;
        for status in [DocumentStatus::Processing, DocumentStatus::Pending] {
            let mut cursor = None;
            loop {
                let page = self
                    .stores
                    .metadata
                    .list(&ListQuery {
                        status: Some(status),
                        limit: 100,
                        cursor,
                    })
                    .await?;
                for doc in &page.items {
                    if status == DocumentStatus::Processing {
                        match self
                            .stores
                            .metadata
                            .transition(
                                doc.id,
                                DocumentStatus::Processing,
                                DocumentStatus::Pending,
                                Default::default(),
                            )
                            .await
                        {
                            Ok(_) | Err(StoreError::Conflict(_)) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    tracing::info!(id = %doc.id, title = %doc.title, "resuming interrupted ingestion");
                    self.spawn_processing(doc.id);
                    resumed += 1;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(resumed)
    }

    pub async fn get_document(
        &self,
        id: Uuid,
        include_content: bool,
    ) -> Result<Document, RagError> {
        let mut document = self
            .stores
            .metadata
            .get(id)
            .await?
            .ok_or(RagError::NotFound {
                what: "document",
                id: id.to_string(),
            })?;
        if include_content {
            match self.stores.documents.get(&text_key(id)).await {
                Ok(bytes) => document.content = Some(String::from_utf8_lossy(&bytes).into_owned()),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(document)
    }

    pub async fn document_chunks(&self, id: Uuid) -> Result<Vec<VectorSearchResult>, RagError> {
        self.get_document(id, false).await?;
        match &self.stores.lexical {
            Some(lexical) => Ok(lexical.chunks_of(id).await?),
            None => Ok(self.stores.vectors.chunks_of(id).await?.unwrap_or_default()),
        }
    }

    pub async fn list_documents(&self, query: &ListQuery) -> Result<Page<Document>, RagError> {
        if query.limit == 0 || query.limit > 1000 {
            return Err(RagError::invalid("limit must be between 1 and 1000"));
        }
        Ok(self.stores.metadata.list(query).await?)
    }

    /// Removes a document everywhere: vectors, lexical entries, files and
    /// metadata, in that order, so a crash midway leaves a listed document
    /// that can be deleted again rather than invisible orphans.
    pub async fn delete_document(&self, id: Uuid) -> Result<(), RagError> {
        if self.stores.metadata.get(id).await?.is_none() {
            return Err(RagError::NotFound {
                what: "document",
                id: id.to_string(),
            });
        }
        self.stores.vectors.delete_document(id).await?;
        if let Some(lexical) = &self.stores.lexical {
            lexical.delete_document(id).await?;
        }
        self.remove_files(id).await;
        self.stores.metadata.delete(id).await?;
        Ok(())
    }

    /// Retrieves, then answers with the configured model.
    pub async fn query(&self, input: QueryInput) -> Result<QueryResponse, RagError> {
        Ok(self.answer(input).await?.0)
    }

    async fn answer(&self, input: QueryInput) -> Result<(QueryResponse, StopReason), RagError> {
        let started = Instant::now();
        let prepared = self.prepare(&input).await?;
        let response = self.chat.converse(prepared.request).await?;
        let answer = response.message.text();
        if let Some(conversation_id) = input.conversation_id {
            self.remember(conversation_id, &input.query, &answer)
                .await?;
        }
        let reply = QueryResponse {
            query: input.query,
            answer,
            sources: prepared.sources,
            model_id: self.chat.model_id().to_string(),
            search_mode: prepared.mode,
            latency_ms: started.elapsed().as_millis() as u64,
            token_usage: response.usage,
            conversation_id: input.conversation_id,
        };
        Ok((reply, response.stop_reason))
    }

    /// One retrieve-then-answer conversational turn, always with memory:
    /// `/chat` for models without tool calling.
    pub async fn chat(&self, mut input: QueryInput) -> Result<ChatReply, RagError> {
        input.conversation_id = Some(input.conversation_id.unwrap_or_else(Uuid::new_v4));
        let (response, stop_reason) = self.answer(input).await?;
        Ok(ChatReply::from_query(response, stop_reason))
    }

    /// A conversational turn as a stream of events. Retrieval happens before
    /// the stream is returned, so input errors still surface as a plain
    /// error; model errors after that arrive as an `Error` event.
    pub async fn chat_stream(
        self: &Arc<Self>,
        mut input: QueryInput,
    ) -> Result<BoxStream<'static, ChatEvent>, RagError> {
        let started = Instant::now();
        let conversation_id = input.conversation_id.unwrap_or_else(Uuid::new_v4);
        input.conversation_id = Some(conversation_id);
        let prepared = self.prepare(&input).await?;
        let (tx, rx) = mpsc::channel(64);
        let service = self.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(ChatEvent::Sources {
                    sources: prepared.sources,
                })
                .await;
            let final_event = match service.stream_answer(prepared.request, &tx).await {
                Ok((answer, stop_reason, usage)) => {
                    match service
                        .remember(conversation_id, &input.query, &answer)
                        .await
                    {
                        Ok(()) => ChatEvent::Done {
                            conversation_id,
                            model_id: service.chat.model_id().to_string(),
                            stop_reason,
                            outcome: ChatOutcome::from_stop(stop_reason),
                            cycles: 1,
                            token_usage: usage,
                            latency_ms: started.elapsed().as_millis() as u64,
                        },
                        Err(e) => stream_error(&e),
                    }
                }
                Err(e) => stream_error(&e),
            };
            let _ = tx.send(final_event).await;
        });
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn stream_answer(
        &self,
        request: crate::chat::ChatRequest,
        tx: &mpsc::Sender<ChatEvent>,
    ) -> Result<(String, StopReason, TokenUsage), RagError> {
        let mut stream = self.chat.converse_stream(request).await?;
        let mut answer = String::new();
        while let Some(event) = stream.next().await {
            match event? {
                ChatStreamEvent::TextDelta(text) => {
                    answer.push_str(&text);
                    if tx.send(ChatEvent::Delta { text }).await.is_err() {
                        return Err(RagError::Model(ModelError::Invalid(
                            "the client went away".to_string(),
                        )));
                    }
                }
                ChatStreamEvent::ToolUse { .. } => {}
                ChatStreamEvent::Stop { stop_reason, usage } => {
                    return Ok((answer, stop_reason, usage));
                }
            }
        }
        Err(RagError::Model(ModelError::permanent(
            "the model's stream ended without a stop event",
        )))
    }

    async fn prepare(&self, input: &QueryInput) -> Result<Prepared, RagError> {
        let top_k = input.top_k.unwrap_or(self.settings.top_k);
        if top_k == 0 || top_k > MAX_TOP_K {
            return Err(RagError::invalid(format!(
                "top_k must be between 1 and {MAX_TOP_K}"
            )));
        }
        let threshold = input
            .similarity_threshold
            .unwrap_or(self.settings.similarity_threshold);
        if !(-1.0..=1.0).contains(&threshold) {
            return Err(RagError::invalid(
                "similarity_threshold must be between -1 and 1",
            ));
        }
        if input.query.trim().is_empty() {
            return Err(RagError::invalid("the question must not be empty"));
        }
        if input.query.chars().count() > 8000 {
            return Err(RagError::invalid(
                "the question is longer than 8000 characters",
            ));
        }
        let (mode, hits) = self
            .retriever
            .search(&SearchRequest {
                query: input.query.clone(),
                top_k,
                mode: input.mode.unwrap_or(self.settings.search_mode),
                similarity_threshold: threshold,
                filter: SearchFilter {
                    document_ids: input.document_ids.clone(),
                },
            })
            .await?;
        let sources = self.source_references(&hits).await?;
        let passages = hits
            .iter()
            .zip(&sources)
            .enumerate()
            .map(|(i, (hit, source))| Passage {
                number: i + 1,
                title: source.title.clone(),
                text: hit.content.clone(),
            })
            .collect();
        let history = match input.conversation_id {
            Some(id) => self
                .stores
                .conversations
                .history(id, self.settings.history_messages)
                .await?
                .into_iter()
                .map(|stored| stored.message)
                .collect(),
            None => Vec::new(),
        };
        let request = build_rag_request(
            &input.query,
            passages,
            history,
            InferenceConfig {
                max_tokens: Some(self.settings.max_answer_tokens),
                temperature: Some(0.2),
            },
        );
        Ok(Prepared {
            mode,
            sources,
            request,
        })
    }

    /// Each hit with its document's title and source, as answers cite it.
    pub async fn source_references(
        &self,
        hits: &[VectorSearchResult],
    ) -> Result<Vec<SourceReference>, RagError> {
        let mut documents: HashMap<Uuid, Option<Document>> = HashMap::new();
        for hit in hits {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                documents.entry(hit.document_id)
            {
                slot.insert(self.stores.metadata.get(hit.document_id).await?);
            }
        }
        Ok(hits
            .iter()
            .enumerate()
            .map(|(i, hit)| {
                let doc = documents.get(&hit.document_id).and_then(Option::as_ref);
                SourceReference {
                    citation: i + 1,
                    document_id: hit.document_id,
                    chunk_id: hit.chunk_id.clone(),
                    title: doc.map(|d| d.title.clone()).unwrap_or_default(),
                    source: doc.map(|d| d.source.clone()).unwrap_or_default(),
                    score: hit.score,
                    snippet: snippet(&hit.content),
                    chunk_index: hit.metadata.chunk_index,
                    start_char: hit.metadata.start_char,
                    end_char: hit.metadata.end_char,
                }
            })
            .collect())
    }

    async fn remember(
        &self,
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
        self.stores
            .conversations
            .append(conversation_id, &messages)
            .await?;
        Ok(())
    }

    pub async fn conversation(
        &self,
        id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, RagError> {
        Ok(self.stores.conversations.history(id, limit).await?)
    }

    pub async fn health(&self) -> Result<HealthReport, RagError> {
        let document_count = self.stores.metadata.count().await?;
        let vector_count = self.stores.vectors.count().await?;
        let mut backends = BTreeMap::new();
        backends.insert(
            "metadata".to_string(),
            self.stores.metadata.backend_name().to_string(),
        );
        backends.insert(
            "documents".to_string(),
            self.stores.documents.backend_name().to_string(),
        );
        backends.insert(
            "vectors".to_string(),
            self.stores.vectors.backend_name().to_string(),
        );
        backends.insert(
            "lexical".to_string(),
            if self.stores.lexical.is_some() {
                "sqlite-fts5"
            } else {
                "none"
            }
            .to_string(),
        );
        let search_modes = [SearchMode::Dense, SearchMode::Lexical, SearchMode::Hybrid]
            .into_iter()
            .filter(
                |m| matches!(self.retriever.effective_mode(*m), Ok(effective) if effective == *m),
            )
            .collect();
        let mut warnings = self.warnings.clone();
        let embedder_state = self
            .embedder
            .as_ref()
            .map_or(EmbedderState::Ready, |e| e.state());
        let loading = embedder_state == EmbedderState::Loading;
        match embedder_state {
            EmbedderState::Ready => {}
            EmbedderState::Loading => warnings.push(
                "the embedding model is loading; dense search and ingestion wait for it".into(),
            ),
            EmbedderState::Failed(reason) => warnings.push(format!(
                "the embedding model could not be loaded ({reason}); dense and hybrid search fail until it is fixed and the service restarted"
            )),
        }
        let status = if warnings.len() > usize::from(loading) {
            "degraded"
        } else if loading {
            "starting"
        } else {
            "ok"
        };
        Ok(HealthReport {
            status: status.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            backends,
            embedding_model: self.embedder.as_ref().map(|e| EmbeddingModelInfo {
                model_id: e.model_id().to_string(),
                dimension: e.dimension(),
            }),
            chat_model: self.chat.model_id().to_string(),
            search_modes,
            default_search_mode: self
                .retriever
                .effective_mode(self.settings.search_mode)
                .unwrap_or(self.settings.search_mode),
            document_count,
            vector_count,
            warnings,
        })
    }
}

struct Prepared {
    mode: SearchMode,
    sources: Vec<SourceReference>,
    request: crate::chat::ChatRequest,
}

fn snippet(content: &str) -> String {
    if content.chars().count() <= SNIPPET_CHARS {
        return content.to_string();
    }
    let mut s: String = content.chars().take(SNIPPET_CHARS).collect();
    s.push('…');
    s
}

pub(crate) fn stream_error(error: &RagError) -> ChatEvent {
    tracing::error!(%error, "chat stream failed");
    ChatEvent::Error {
        code: "stream_failed".to_string(),
        message: match error {
            RagError::Model(ModelError::ContextTooLong) => error.to_string(),
            _ => "the answer could not be completed".to_string(),
        },
    }
}
