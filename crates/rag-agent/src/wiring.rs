//! Builds the backends the configuration asks for and hands them, ready
//! made, to the service.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rag_api::{AppState, AuthMode, Authenticator, RequestGuard};
use rag_aws::DynamoDbRateLimiter;
use rag_core::AgentSettings;
use rag_core::agent::MAX_CYCLES_LIMIT;
use rag_core::answer::ExtractiveAnswerer;
use rag_core::chat::ChatModel;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::ingest::sync::IngestionJobStore;
use rag_core::jwt::{JwksSource, JwtSettings, JwtVerifier};
use rag_core::keys::{KeyService, KeyStore};
use rag_core::parse::{ParseLimits, WorkerCommand};
use rag_core::ratelimit::{MemoryRateLimiter, RateLimiter};
use rag_core::tools::{ToolRegistry, WebSearchProvider, WebSearchTool};
use rag_core::usage::{TenantSettingsStore, UsageSettings, UsageStore};
use rag_core::{
    ConversationStore, DocumentStore, Embedder, LexicalIndex, MetadataStore, RagService,
    SearchMode, ServiceSettings, Stores, VectorStore,
};
use rag_local::queue::WorkerSettings;
use rag_local::{AnnSettings, FileDocumentStore, LocalVectorIndex, SqliteQueue, SqliteStore};
use rag_openai::{OpenAiChatModel, OpenAiConfig};

use crate::aws;
use crate::config::{
    AgentArgs, AuthArg, DocumentBackend, EmbeddingProvider, JwtArgs, LlmProvider, MetadataBackend,
    RerankProviderArg, SearchModeArg, ServeArgs, VectorBackend, WebSearchProviderArg,
};
use crate::{embedding, rerank, sources};

const MINILM_DIMENSION: usize = 384;

/// How long a message a local worker received stays invisible to the
/// others: longer than indexing the largest document takes, so a second
/// worker only sees it once the first is gone.
const LOCAL_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A long-running process queues accepted documents in a SQLite file of
/// its data directory, whatever its stores, and indexes them with
/// `RAG_AGENT_INGEST_CONCURRENCY` workers of its own.
fn with_local_queue(
    service: Arc<RagService>,
    data_dir: &std::path::Path,
    args: &ServeArgs,
) -> anyhow::Result<Arc<RagService>> {
    let path = data_dir.join("ingest-queue.sqlite3");
    let queue = SqliteQueue::open(&path)
        .with_context(|| format!("opening the ingest queue {}", path.display()))?;
    let service = service.with_ingest_queue(Arc::new(queue.clone()));
    queue.spawn_workers(
        service.ingestor().clone(),
        WorkerSettings {
            workers: args.ingest_concurrency.max(1),
            visibility_timeout: LOCAL_VISIBILITY_TIMEOUT,
        },
    );
    Ok(service)
}

/// The record-keeping stores, which one backend (SQLite or DynamoDB)
/// serves all of.
struct Records {
    metadata: Arc<dyn MetadataStore>,
    conversations: Arc<dyn ConversationStore>,
    keys: Arc<dyn KeyStore>,
    usage: Arc<dyn UsageStore>,
    tenant_settings: Arc<dyn TenantSettingsStore>,
}

impl Records {
    fn of<T>(store: Arc<T>) -> Self
    where
        T: MetadataStore
            + ConversationStore
            + KeyStore
            + UsageStore
            + TenantSettingsStore
            + 'static,
    {
        Self {
            metadata: store.clone(),
            conversations: store.clone(),
            keys: store.clone(),
            usage: store.clone(),
            tenant_settings: store,
        }
    }
}

/// What serving needs: the router's state and, under Lambda with
/// `INGEST_QUEUE_URL`, the worker for the ingest queue's SQS events.
pub struct Served {
    pub state: AppState,
    pub ingest_worker: Option<rag_lambda::IngestWorker>,
}

pub async fn build_state(args: &ServeArgs) -> anyhow::Result<AppState> {
    Ok(build(args).await?.state)
}

pub async fn build(args: &ServeArgs) -> anyhow::Result<Served> {
    let aws_args = &args.aws;
    let on_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    check_combination(args, on_lambda)?;
    let knowledge_base = aws_args
        .bedrock_knowledge_base_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty());
    let uses_aws = knowledge_base.is_some()
        || aws_args.metadata_backend == MetadataBackend::Dynamodb
        || aws_args.document_backend == DocumentBackend::S3
        || aws_args.vector_backend == VectorBackend::S3vectors
        || aws_args.ingest_queue_url.is_some()
        || !aws::listed_buckets(&aws_args.sync_buckets).is_empty()
        || args.embedding_provider == EmbeddingProvider::Bedrock
        || args.llm_provider == LlmProvider::Bedrock
        || args.rerank.rerank_provider == RerankProviderArg::Bedrock;
    let sdk = if uses_aws {
        Some(aws::sdk_config(aws_args).await)
    } else {
        None
    };
    let uses_disk = aws_args.metadata_backend == MetadataBackend::Sqlite
        || aws_args.document_backend == DocumentBackend::Local
        || aws_args.vector_backend == VectorBackend::Local;
    let data_dir = args.data_dir();
    if uses_disk {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    }
    let mut warnings = Vec::new();
    let route_configs = match &args.routes.bedrock_routes {
        Some(value) => {
            if args.llm_provider != LlmProvider::Bedrock {
                bail!("BEDROCK_ROUTES routes Bedrock calls, so it needs LLM_PROVIDER=bedrock");
            }
            let text = crate::observability::inline_or_file(value, "BEDROCK_ROUTES")?;
            Some(crate::bedrock_routes::parse(&text, aws_args, &args.routes)?)
        }
        None => None,
    };

    let embedder: Option<Arc<dyn Embedder>> = match (args.embedding_provider, &sdk) {
        (EmbeddingProvider::Local, _) => embedding::load_local_embedder(args, &mut warnings),
        (EmbeddingProvider::Bedrock, Some(sdk)) => {
            Some(aws::embedder(sdk, aws_args, args.vector_dimension)?)
        }
        (EmbeddingProvider::Bedrock, None) => unreachable!("Bedrock always loads the SDK config"),
        (EmbeddingProvider::Openai, _) => Some(embedding::openai_embedder(args).await?),
    };
    let dimension = embedder
        .as_ref()
        .map(|e| e.dimension())
        .unwrap_or(MINILM_DIMENSION);
    if let (Some(expected), Some(embedder)) = (args.vector_dimension, &embedder)
        && expected != embedder.dimension()
    {
        bail!(
            "VECTOR_DIMENSION={expected} but the embedding model {} produces {} dimensions",
            embedder.model_id(),
            embedder.dimension()
        );
    }

    let sqlite = match aws_args.metadata_backend {
        MetadataBackend::Sqlite => {
            Some(SqliteStore::open(&data_dir.join("rag.sqlite3")).context("opening the database")?)
        }
        MetadataBackend::Dynamodb => None,
    };
    let dynamodb = match (&sqlite, &sdk) {
        (None, Some(sdk)) => Some(Arc::new(aws::metadata_store(sdk, aws_args)?)),
        _ => None,
    };
    let records = match (&sqlite, &dynamodb) {
        (Some(sqlite), _) => Records::of(Arc::new(sqlite.clone())),
        (None, Some(store)) => Records::of(store.clone()),
        (None, None) => unreachable!("DynamoDB always loads the SDK config"),
    };
    let Records {
        metadata,
        conversations,
        keys: key_store,
        usage,
        tenant_settings,
    } = records;
    let rate_limiter: Option<Arc<dyn RateLimiter>> = match (args.rate_limit_per_minute, &dynamodb) {
        (0, _) => None,
        (limit, Some(store)) => Some(Arc::new(DynamoDbRateLimiter::new(store.clone(), limit))),
        (limit, None) => Some(Arc::new(MemoryRateLimiter::new(limit))),
    };
    let documents: Arc<dyn DocumentStore> = match (aws_args.document_backend, &sdk) {
        (DocumentBackend::S3, Some(sdk)) => Arc::new(aws::document_store(sdk, aws_args)?),
        _ => Arc::new(
            FileDocumentStore::open(data_dir.join("files")).context("opening the file store")?,
        ),
    };
    let (uploads, max_upload_bytes) = sources::uploads(args, on_lambda, &sdk, &data_dir)?;
    let vectors: Arc<dyn VectorStore> = match (aws_args.vector_backend, &sdk) {
        (VectorBackend::S3vectors, Some(sdk)) => {
            Arc::new(aws::vector_store(sdk, aws_args, dimension, &mut warnings).await?)
        }
        _ => Arc::new(
            LocalVectorIndex::open_with(
                &data_dir.join("vectors.log"),
                dimension,
                AnnSettings {
                    min_rows: args.vector_graph_min_rows,
                    ..AnnSettings::default()
                },
            )
            .context(
                "opening the vector index (one built by another embedding model is re-embedded with `rag-agent reindex`)",
            )?,
        ),
    };
    let lexical: Option<Arc<dyn LexicalIndex>> = sqlite
        .as_ref()
        .map(|s| Arc::new(s.clone()) as Arc<dyn LexicalIndex>);
    let stores = Stores {
        metadata,
        documents,
        vectors,
        lexical,
        conversations,
        usage,
        tenant_settings,
    };
    if let (VectorBackend::Local, Some(embedder)) = (aws_args.vector_backend, &embedder) {
        embedding::check_index_model(&data_dir, embedder.as_ref(), &stores).await?;
    }

    let chat: Arc<dyn ChatModel> = match (args.llm_provider, &sdk) {
        (LlmProvider::Extractive, _) => Arc::new(ExtractiveAnswerer),
        (LlmProvider::Openai, _) => Arc::new(OpenAiChatModel::new(
            reqwest_client()?,
            OpenAiConfig {
                base_url: args.openai_base_url.clone(),
                model: args.openai_model.clone(),
                api_key: args.openai_api_key.clone(),
                timeout: Duration::from_secs(120),
            },
        )),
        (LlmProvider::Bedrock, Some(sdk)) => Arc::new(aws::chat_model(sdk, aws_args)),
        (LlmProvider::Bedrock, None) => unreachable!("Bedrock always loads the SDK config"),
    };

    let reranking = rerank::reranking(args, &sdk, &chat, &mut warnings)?;

    let fetcher = UrlFetcher::new(FetchPolicy {
        allowed_hosts: args
            .fetch_allowlist
            .iter()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect(),
        max_bytes: args.max_body_bytes as u64,
        ..FetchPolicy::default()
    })
    .context("building the URL fetcher")?;

    // Ingestion jobs need a queue their tasks wait in: the SQLite one of a
    // long-running process, or SQS under Lambda.
    let sync = if on_lambda && aws_args.ingest_queue_url.is_none() {
        None
    } else {
        let jobs: Arc<dyn IngestionJobStore> = match (&sqlite, &dynamodb) {
            (Some(sqlite), _) => Arc::new(sqlite.clone()),
            (None, Some(store)) => store.clone(),
            (None, None) => unreachable!("DynamoDB always loads the SDK config"),
        };
        Some(sources::sync_sources(
            args, on_lambda, &sdk, jobs, &fetcher,
        )?)
    };

    let sinks = crate::observability::metric_sinks(&args.metrics)?;
    let settings = ServiceSettings {
        top_k: args.top_k,
        similarity_threshold: args
            .similarity_threshold
            .unwrap_or_else(|| embedding::default_similarity_threshold(args.embedding_provider)),
        search_mode: match args.search_mode {
            Some(SearchModeArg::Hybrid) => SearchMode::Hybrid,
            Some(SearchModeArg::Dense) => SearchMode::Dense,
            Some(SearchModeArg::Lexical) => SearchMode::Lexical,
            None if aws_args.metadata_backend == MetadataBackend::Sqlite => SearchMode::Hybrid,
            None => SearchMode::Dense,
        },
        max_document_bytes: args.max_body_bytes as u64,
        max_upload_bytes,
        ingest_concurrency: args.ingest_concurrency.max(1),
        parse: ParseLimits {
            timeout: Duration::from_secs(args.parse_timeout_secs.max(1)),
            worker_memory_bytes: args.parse_memory_mb.max(64) << 20,
            concurrency: args.ingest_concurrency.max(1),
            ..ParseLimits::default()
        },
        parse_worker: Some(parse_worker()?),
        max_chunks_per_document: args.max_chunks_per_document.max(1),
        ingest_lease: Duration::from_secs(args.ingest_lease_seconds.max(1)),
        reranking,
        context_tokens: args.context_max_tokens,
        metrics: sinks.metrics,
        usage: UsageSettings {
            default_monthly_token_budget: Some(args.tenant_monthly_token_budget).filter(|&b| b > 0),
            // A frozen Lambda process cannot write later: each request
            // writes what it counted before its response.
            flush_every: if on_lambda {
                Duration::ZERO
            } else {
                UsageSettings::default().flush_every
            },
            ..UsageSettings::default()
        },
        ..ServiceSettings::default()
    };
    // The search defaults are checked by the rules requests obey.
    let service = RagService::new(stores, embedder, chat, fetcher, settings, warnings)
        .map_err(|e| {
            anyhow::anyhow!("VECTOR_TOP_K, SIMILARITY_THRESHOLD or CONTEXT_MAX_TOKENS: {e}")
        })?
        .with_uploads(uploads);
    let service = match sync {
        Some(sources) => service.with_sync(sources),
        None => service,
    };
    let mut tools = ToolRegistry::standard(service.tool_parts());
    if let (Some(id), Some(sdk)) = (knowledge_base, &sdk) {
        tools = tools.with(Arc::new(aws::knowledge_base_tool(sdk, aws_args, id)));
    }
    if let Some(provider) = web_search_provider(&args.agent)? {
        tools = tools.with(Arc::new(
            WebSearchTool::new(provider, Duration::from_secs(15))
                .context("building the web search client")?,
        ));
    }
    let agent = &args.agent;
    if agent.agent_max_cycles == 0 || agent.agent_max_cycles > MAX_CYCLES_LIMIT {
        bail!("AGENT_MAX_CYCLES must be between 1 and {MAX_CYCLES_LIMIT}");
    }
    // Whether chat turns run the agent is decided here, once.
    let service = service.with_agent(
        tools,
        AgentSettings {
            max_cycles: agent.agent_max_cycles,
            memory_messages: agent.agent_memory_messages.max(2),
            max_tool_result_chars: agent.agent_max_tool_result_chars.max(1000),
            tool_timeout: Duration::from_secs(agent.agent_tool_timeout_secs.max(1)),
            ..AgentSettings::default()
        },
    );
    let sqs = match (&aws_args.ingest_queue_url, &sdk) {
        (Some(url), Some(sdk)) => Some(Arc::new(aws::ingest_queue(sdk, aws_args, url))),
        _ => None,
    };
    let (service, ingest_worker) = match &sqs {
        Some(queue) => {
            let service = service.with_ingest_queue(queue.clone());
            let worker = rag_lambda::IngestWorker {
                handler: service.ingestor().clone(),
                redelivery: queue.clone(),
                queues: rag_lambda::QueueNames {
                    ingest: queue.name().to_string(),
                    dead_letter: aws_args
                        .ingest_dead_letter_queue_url
                        .as_deref()
                        .map(|url| rag_aws::queue_name(url).to_string()),
                },
                uploads_prefix: Some(aws_args.s3_uploads_prefix.clone()),
            };
            (service, Some(worker))
        }
        None if on_lambda => (service, None),
        None => (with_local_queue(service, &data_dir, args)?, None),
    };
    let use_cases: Option<Arc<dyn rag_core::routing::UseCaseServices>> = match (route_configs, &sdk)
    {
        (Some(configs), Some(sdk)) => {
            let wiring = crate::bedrock_routes::RouteWiring {
                sdk,
                aws: aws_args,
                routes: &args.routes,
                bedrock_embedding_dimension: (args.embedding_provider
                    == EmbeddingProvider::Bedrock)
                    .then_some(dimension),
            };
            Some(Arc::new(crate::bedrock_routes::RoutedServices::build(
                service.clone(),
                configs,
                &wiring,
            )?))
        }
        _ => None,
    };
    let mut state = AppState::new(service);
    state.use_cases = use_cases;
    state.auth = Authenticator {
        mode: match args.auth {
            AuthArg::None => AuthMode::None,
            AuthArg::ApiKey => AuthMode::ApiKey,
            AuthArg::Jwt => AuthMode::Jwt,
        },
        keys: Some(KeyService::new(key_store)),
        jwt: match args.auth {
            AuthArg::Jwt => Some(Arc::new(jwt_verifier(&args.jwt).await?)),
            _ => None,
        },
    };
    state.rate_limiter = rate_limiter;
    state.metrics = sinks.registry;
    state.body_limit = args.max_body_bytes;
    state.guard = RequestGuard {
        allowed_hosts: listed(&args.allowed_hosts),
        loopback_only: !on_lambda && args.addr.ip().is_loopback(),
        allowed_origins: listed(&args.cors_allowed_origins),
    };
    // Lambda freezes the process between invocations, so background work
    // would stall: without a queue, ingestion answers once it has finished.
    state.wait_for_ingest_by_default = args.wait_for_ingest || (on_lambda && sqs.is_none());
    Ok(Served {
        state,
        ingest_worker,
    })
}

/// The JWT verifier `RAG_AGENT_AUTH=jwt` needs, with its JWKS read now so
/// a wrong URL or file stops start-up rather than every request.
async fn jwt_verifier(args: &JwtArgs) -> anyhow::Result<JwtVerifier> {
    let (Some(issuer), Some(audience)) = (&args.jwt_issuer, &args.jwt_audience) else {
        bail!("RAG_AGENT_AUTH=jwt needs JWT_ISSUER and JWT_AUDIENCE");
    };
    let source = match (&args.jwt_jwks_url, &args.jwt_jwks_file) {
        (Some(url), None) => JwksSource::Url {
            client: reqwest_client()?,
            url: url.clone(),
        },
        (None, Some(path)) => JwksSource::File(path.clone()),
        _ => bail!("RAG_AGENT_AUTH=jwt needs exactly one of JWT_JWKS_URL and JWT_JWKS_FILE"),
    };
    let verifier = JwtVerifier::new(
        JwtSettings {
            tenant_claim: args.jwt_tenant_claim.clone(),
            role_claim: args.jwt_role_claim.clone(),
            use_case_claim: args.jwt_use_case_claim.clone(),
            ..JwtSettings::new(issuer, audience)
        },
        source,
    );
    verifier
        .load()
        .await
        .map_err(|e| anyhow::anyhow!("JWT_JWKS_URL / JWT_JWKS_FILE: {e}"))?;
    Ok(verifier)
}

/// `none` answers anyone as the default tenant's admin: only where no one
/// else can reach the server, unless its operator says otherwise.
fn check_auth(args: &ServeArgs, on_lambda: bool) -> anyhow::Result<()> {
    if args.auth != AuthArg::None {
        return Ok(());
    }
    const HOW: &str = "set RAG_AGENT_AUTH=api_key (--auth api_key) and make a key first with `rag-agent keys create --tenant <tenant> --role admin`";
    if on_lambda {
        bail!(
            "RAG_AGENT_AUTH=none is refused under Lambda, where the function is reachable from outside; {HOW}"
        );
    }
    if !args.addr.ip().is_loopback() && !args.allow_unauthenticated {
        bail!(
            "listening on {} without authentication would let anyone who reaches it read and delete every document; {HOW}, or pass --allow-unauthenticated (RAG_AGENT_ALLOW_UNAUTHENTICATED=true) if something in front of it authenticates",
            args.addr
        );
    }
    Ok(())
}

fn listed(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// HTML, PDF and Office files are parsed by this same binary in a child process.
fn parse_worker() -> anyhow::Result<WorkerCommand> {
    Ok(WorkerCommand {
        program: std::env::current_exe().context("finding this binary for the parse worker")?,
        args: vec!["parse-worker".into()],
    })
}

/// The parse worker's side: limits itself, parses stdin, answers on
/// stdout. Its environment holds only its limits (the parent clears the
/// rest, secrets included).
pub fn run_parse_worker(content_type: &str) -> i32 {
    let limit = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(bytes) = limit(rag_core::parse::WORKER_MEMORY_ENV)
        && let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes)
    {
        eprintln!("parse-worker: could not limit memory: {e}");
        return 2;
    }
    if let Some(secs) = limit(rag_core::parse::WORKER_CPU_ENV) {
        let _ = rlimit::setrlimit(rlimit::Resource::CPU, secs, secs);
    }
    rag_core::parse::serve_worker(
        content_type,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
    )
}

/// The web search provider the environment names, checked for what it needs.
fn web_search_provider(args: &AgentArgs) -> anyhow::Result<Option<WebSearchProvider>> {
    let url = args.web_search_url.clone().filter(|u| !u.trim().is_empty());
    let key = args
        .web_search_api_key
        .clone()
        .filter(|k| !k.trim().is_empty());
    Ok(match args.web_search_provider {
        None => None,
        Some(WebSearchProviderArg::Searxng) => Some(WebSearchProvider::Searxng {
            base_url: url.context("WEB_SEARCH_PROVIDER=searxng needs WEB_SEARCH_URL")?,
        }),
        Some(WebSearchProviderArg::Brave) => Some(WebSearchProvider::Brave {
            base_url: url.unwrap_or_else(|| WebSearchProvider::BRAVE_URL.to_string()),
            api_key: key.context("WEB_SEARCH_PROVIDER=brave needs WEB_SEARCH_API_KEY")?,
        }),
    })
}

/// Rejects combinations that cannot work, naming the variable to change.
fn check_combination(args: &ServeArgs, on_lambda: bool) -> anyhow::Result<()> {
    check_auth(args, on_lambda)?;
    let aws = &args.aws;
    if aws.ingest_queue_url.is_some() && !on_lambda {
        bail!(
            "INGEST_QUEUE_URL is consumed by the IngestFunction under AWS Lambda; a long-running server queues in <data dir>/ingest-queue.sqlite3 with workers of its own, so unset INGEST_QUEUE_URL"
        );
    }
    if aws.ingest_dead_letter_queue_url.is_some() && aws.ingest_queue_url.is_none() {
        bail!("INGEST_DEAD_LETTER_QUEUE_URL needs INGEST_QUEUE_URL, the queue it belongs to");
    }
    if on_lambda {
        let local = [
            (
                aws.metadata_backend == MetadataBackend::Sqlite,
                "METADATA_BACKEND=sqlite",
                "METADATA_BACKEND=dynamodb",
            ),
            (
                aws.document_backend == DocumentBackend::Local,
                "DOCUMENT_BACKEND=local",
                "DOCUMENT_BACKEND=s3",
            ),
            (
                aws.vector_backend == VectorBackend::Local,
                "VECTOR_BACKEND=local",
                "VECTOR_BACKEND=s3vectors",
            ),
        ];
        for (is_local, setting, instead) in local {
            if is_local {
                bail!(
                    "{setting} cannot run on AWS Lambda, whose disk is temporary and not shared between instances; set {instead}"
                );
            }
        }
    }
    if aws.metadata_backend == MetadataBackend::Dynamodb
        && matches!(
            args.search_mode,
            Some(SearchModeArg::Lexical | SearchModeArg::Hybrid)
        )
    {
        bail!(
            "SEARCH_MODE={:?} needs the lexical index, which only METADATA_BACKEND=sqlite provides; use SEARCH_MODE=dense",
            args.search_mode.unwrap_or(SearchModeArg::Dense)
        );
    }
    Ok(())
}

fn reqwest_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().build()?)
}
