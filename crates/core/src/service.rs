//! `RagService`: the façade the API holds. It builds the parts of a
//! deployment from its backends and settings (the `Ingestor`, the
//! `Catalog`, the `Retriever`, retrieve-then-answer, the tools and the way
//! chat turns run) and hands each out; it holds no logic of its own.

use std::sync::Arc;

use crate::agent::{Agent, AgentSettings};
use crate::backend::Embedder;
use crate::catalog::{Catalog, Stores};
use crate::chat::ChatModel;
use crate::chunk::ChunkingOptions;
use crate::domain::SearchMode;
use crate::error::RagError;
use crate::fetch::UrlFetcher;
use crate::health::{HealthCheck, HealthReport};
use crate::ingest::queue::IngestQueue;
use crate::ingest::{DEFAULT_MAX_CHUNKS_PER_DOCUMENT, IngestSettings, Ingestor};
use crate::parse::{DocumentParser, ParseLimits, ProcessParser, ThreadParser, WorkerCommand};
use crate::rerank::Reranking;
use crate::retrieve::{Retriever, SearchDefaults};
use crate::retry::RetryPolicy;
use crate::retrying_model::RetryingChatModel;
use crate::telemetry::{Metrics, ObservedChatModel};
use crate::tenant::Tenant;
use crate::tools::{StandardToolParts, ToolRegistry};
use crate::turn::{ChatTurns, RetrieveThenAnswer};
use crate::usage::{UsageMeter, UsageSettings};

/// Defaults and limits, set once from configuration.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub top_k: usize,
    pub similarity_threshold: f32,
    pub search_mode: SearchMode,
    pub chunking: ChunkingOptions,
    pub max_document_bytes: u64,
    /// The largest file a direct upload may declare.
    pub max_upload_bytes: u64,
    /// Documents chunked and embedded at once in the background.
    pub ingest_concurrency: usize,
    /// Earlier messages of a conversation sent with each new turn.
    pub history_messages: usize,
    pub max_answer_tokens: u32,
    /// Time, text and memory limits of every parse.
    pub parse: ParseLimits,
    /// Parse HTML, PDF and Office files in child processes started this way; without
    /// it they are parsed on a thread of this process.
    pub parse_worker: Option<WorkerCommand>,
    /// A document that would split into more chunks is refused.
    pub max_chunks_per_document: usize,
    /// Budgets and how usage counts are written.
    pub usage: UsageSettings,
    /// How long a worker's hold on a document lasts unless renewed.
    pub ingest_lease: std::time::Duration,
    /// The rerank stage of every search, where the deployment has one.
    pub reranking: Option<Reranking>,
    /// Tokens of context a model reads per retrieval: the hits, then
    /// their neighbouring chunks while this allows (0: the hits alone).
    pub context_tokens: usize,
    /// Where metric events go (none: not recorded).
    pub metrics: Metrics,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        let search = SearchDefaults::default();
        let ingest = IngestSettings::default();
        Self {
            top_k: search.top_k,
            similarity_threshold: search.similarity_threshold,
            search_mode: search.mode,
            chunking: ingest.chunking,
            max_document_bytes: ingest.max_document_bytes,
            max_upload_bytes: ingest.max_upload_bytes,
            ingest_concurrency: ingest.concurrency,
            history_messages: 20,
            max_answer_tokens: 1024,
            parse: ParseLimits::default(),
            parse_worker: None,
            max_chunks_per_document: DEFAULT_MAX_CHUNKS_PER_DOCUMENT,
            usage: UsageSettings::default(),
            ingest_lease: ingest.lease,
            reranking: None,
            context_tokens: crate::retrieve::DEFAULT_CONTEXT_TOKENS,
            metrics: Metrics::default(),
        }
    }
}

impl ServiceSettings {
    pub fn search_defaults(&self) -> SearchDefaults {
        SearchDefaults {
            top_k: self.top_k,
            similarity_threshold: self.similarity_threshold,
            mode: self.search_mode,
            rerank: false,
        }
    }
}

#[derive(Clone)]
pub struct RagService {
    ingestor: Arc<Ingestor>,
    catalog: Catalog,
    retriever: Retriever,
    answerer: Arc<RetrieveThenAnswer>,
    turns: Arc<dyn ChatTurns>,
    /// Whether `turns` is the agent, which takes other chat fields.
    runs_agent: bool,
    /// The agent's limits, when `turns` is the agent.
    agent_settings: Option<AgentSettings>,
    tools: ToolRegistry,
    tool_parts: StandardToolParts,
    health: Arc<HealthCheck>,
    usage: Arc<UsageMeter>,
}

impl RagService {
    /// A deployment whose chat turns retrieve, then answer; see
    /// [`RagService::with_agent`] for the agent.
    pub fn new(
        stores: Stores,
        embedder: Option<Arc<dyn Embedder>>,
        chat: Arc<dyn ChatModel>,
        fetcher: UrlFetcher,
        settings: ServiceSettings,
        warnings: Vec<String>,
    ) -> Result<Arc<Self>, RagError> {
        let search = settings.search_defaults();
        search.validate()?;
        // Every path that calls the model (answers, summaries, the agent)
        // retries throttling the same way; each attempt is a span and a
        // metric event of its own.
        let observed: Arc<dyn ChatModel> =
            Arc::new(ObservedChatModel::new(chat, settings.metrics.clone()));
        let chat: Arc<dyn ChatModel> =
            Arc::new(RetryingChatModel::new(observed, RetryPolicy::default()));
        let catalog = Catalog::new(stores.clone());
        let usage = Arc::new(
            UsageMeter::new(
                stores.usage.clone(),
                stores.tenant_settings.clone(),
                settings.usage,
            )
            .reporting_to(settings.metrics.clone()),
        );
        let mut retriever = Retriever::new(
            embedder.clone(),
            stores.vectors.clone(),
            stores.lexical.clone(),
            stores.metadata.clone(),
            search,
        )
        .counting_into(usage.clone())
        .with_context_tokens(settings.context_tokens);
        if settings.context_tokens > crate::retrieve::MAX_CONTEXT_TOKENS {
            return Err(RagError::invalid(format!(
                "the context budget is at most {} tokens",
                crate::retrieve::MAX_CONTEXT_TOKENS
            )));
        }
        if let Some(reranking) = settings.reranking.clone() {
            reranking.validate()?;
            retriever = retriever.reranking_with(reranking);
        }
        let parser: Arc<dyn DocumentParser> = match &settings.parse_worker {
            Some(worker) => Arc::new(ProcessParser::new(worker.clone(), settings.parse)),
            None => Arc::new(ThreadParser::new(settings.parse)),
        };
        let ingestor = Ingestor::counting_into(
            catalog.clone(),
            embedder.clone(),
            parser.clone(),
            fetcher.clone(),
            IngestSettings {
                chunking: settings.chunking,
                max_document_bytes: settings.max_document_bytes,
                concurrency: settings.ingest_concurrency,
                max_chunks_per_document: settings.max_chunks_per_document,
                lease: settings.ingest_lease,
                max_upload_bytes: settings.max_upload_bytes,
            },
            Some(usage.clone()),
        );
        let answerer = Arc::new(RetrieveThenAnswer::new(
            retriever.clone(),
            chat.clone(),
            stores.conversations.clone(),
            settings.history_messages,
            settings.max_answer_tokens,
        ));
        let tool_parts = StandardToolParts {
            retriever: retriever.clone(),
            catalog: catalog.clone(),
            model: chat.clone(),
            fetcher,
            parser,
        };
        let health = Arc::new(HealthCheck {
            stores,
            embedder,
            chat,
            retriever: retriever.clone(),
            warnings,
        });
        Ok(Arc::new(Self {
            tools: ToolRegistry::standard(&tool_parts),
            turns: answerer.clone(),
            runs_agent: false,
            agent_settings: None,
            ingestor,
            catalog,
            retriever,
            answerer,
            tool_parts,
            health,
            usage,
        }))
    }

    /// The same deployment with these tools, whose chat turns run the
    /// agent when the model can call tools (and still retrieve, then
    /// answer, when it cannot). Decided once, here, not per request.
    pub fn with_agent(&self, tools: ToolRegistry, settings: AgentSettings) -> Arc<Self> {
        let model = self.tool_parts.model.clone();
        let runs_agent = model.supports_tools();
        let turns: Arc<dyn ChatTurns> = if runs_agent {
            Arc::new(Agent::new(
                model,
                tools.clone(),
                self.catalog.stores().conversations.clone(),
                settings.clone(),
            ))
        } else {
            self.answerer.clone()
        };
        Arc::new(Self {
            tools,
            turns,
            runs_agent,
            agent_settings: runs_agent.then_some(settings),
            ..self.clone()
        })
    }

    /// The same deployment answering with `chat` and embedding questions
    /// with `embedder`: the models of one use case, reached through its
    /// own credentials. Stores, ingestion, usage and health stay this
    /// deployment's; `chat` is wrapped as every model is (retries, spans,
    /// metrics). `embedder` must be a client of the model the index holds.
    pub fn routed(
        &self,
        chat: Arc<dyn ChatModel>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Arc<Self> {
        let observed: Arc<dyn ChatModel> =
            Arc::new(ObservedChatModel::new(chat, self.usage.metrics().clone()));
        let chat: Arc<dyn ChatModel> =
            Arc::new(RetryingChatModel::new(observed, RetryPolicy::default()));
        let retriever = self.retriever.clone().with_embedder(embedder);
        let answerer = Arc::new(self.answerer.with_parts(retriever.clone(), chat.clone()));
        let tool_parts = StandardToolParts {
            retriever: retriever.clone(),
            model: chat.clone(),
            ..self.tool_parts.clone()
        };
        let tools = self.tools.clone().with_standard(&tool_parts);
        let turns: Arc<dyn ChatTurns> = match (&self.agent_settings, chat.supports_tools()) {
            (Some(settings), true) => Arc::new(Agent::new(
                chat.clone(),
                tools.clone(),
                self.catalog.stores().conversations.clone(),
                settings.clone(),
            )),
            _ => answerer.clone(),
        };
        Arc::new(Self {
            retriever,
            runs_agent: self.agent_settings.is_some() && chat.supports_tools(),
            answerer,
            tool_parts,
            tools,
            turns,
            ..self.clone()
        })
    }

    /// The same deployment, its accepted documents handed to `queue` for
    /// workers (of this process or others) to index.
    pub fn with_ingest_queue(&self, queue: Arc<dyn IngestQueue>) -> Arc<Self> {
        Arc::new(Self {
            ingestor: self.ingestor.with_queue(queue),
            ..self.clone()
        })
    }

    /// The same deployment, taking direct uploads into `uploads`.
    pub fn with_uploads(&self, uploads: crate::ingest::Uploads) -> Arc<Self> {
        Arc::new(Self {
            ingestor: self.ingestor.with_uploads(uploads),
            ..self.clone()
        })
    }

    /// The same deployment, running ingestion jobs from `sources`.
    pub fn with_sync(&self, sources: crate::ingest::sync::SyncSources) -> Arc<Self> {
        Arc::new(Self {
            ingestor: self.ingestor.with_sync(sources),
            ..self.clone()
        })
    }

    pub fn ingestor(&self) -> &Arc<Ingestor> {
        &self.ingestor
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn retriever(&self) -> &Retriever {
        &self.retriever
    }

    /// Retrieve-then-answer, which `/query` always uses.
    pub fn answerer(&self) -> &Arc<RetrieveThenAnswer> {
        &self.answerer
    }

    /// How this deployment's chat turns run.
    pub fn turns(&self) -> &Arc<dyn ChatTurns> {
        &self.turns
    }

    /// Whether chat turns run the agent (else retrieve-then-answer).
    pub fn runs_agent(&self) -> bool {
        self.runs_agent
    }

    /// The tools `/tools` lists and the agent may call.
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// What the standard tools are made of, to build a registry that adds
    /// deployment-specific tools to them.
    pub fn tool_parts(&self) -> &StandardToolParts {
        &self.tool_parts
    }

    /// What each tenant used, and its budget.
    pub fn usage(&self) -> &Arc<UsageMeter> {
        &self.usage
    }

    /// The health report; with `counts_for`, that tenant's document and
    /// vector counts too (for its admin).
    pub async fn health(&self, counts_for: Option<&Tenant>) -> Result<HealthReport, RagError> {
        self.health.report(counts_for).await
    }
}
