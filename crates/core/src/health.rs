//! `/health`: whether each part of a deployment is usable, read from the
//! parts themselves (every backend names its engine).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::backend::{Embedder, EmbedderState};
use crate::catalog::Stores;
use crate::chat::ChatModel;
use crate::domain::SearchMode;
use crate::error::RagError;
use crate::retrieve::Retriever;
use crate::tenant::Tenant;

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
    /// The reranker of the rerank stage (`<kind>:<model>`); absent when
    /// the deployment has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reranker: Option<String>,
    pub search_modes: Vec<SearchMode>,
    pub default_search_mode: SearchMode,
    /// The caller's tenant's documents; absent unless an admin of that
    /// tenant asks, so an open `/health` says nothing about anyone's data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_count: Option<u64>,
    /// As `document_count`, and also absent for vector services that cannot
    /// count without a full listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_count: Option<usize>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingModelInfo {
    pub model_id: String,
    pub dimension: usize,
}

/// What a health report is read from.
pub struct HealthCheck {
    pub stores: Stores,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub chat: Arc<dyn ChatModel>,
    pub retriever: Retriever,
    /// Problems found at start-up, reported on every check.
    pub warnings: Vec<String>,
}

impl HealthCheck {
    /// The report, with document and vector counts of `counts_for` when
    /// given (the caller is that tenant's admin).
    pub async fn report(&self, counts_for: Option<&Tenant>) -> Result<HealthReport, RagError> {
        let (document_count, vector_count) = match counts_for {
            Some(tenant) => (
                Some(self.stores.metadata.count(tenant).await?),
                self.stores.vectors.count(tenant).await?,
            ),
            None => (None, None),
        };
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
            self.stores
                .lexical
                .as_ref()
                .map_or("none", |lexical| lexical.backend_name())
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
            reranker: self.retriever.reranker_name().map(str::to_string),
            search_modes,
            default_search_mode: self
                .retriever
                .effective_mode(self.retriever.defaults().mode)
                .unwrap_or(self.retriever.defaults().mode),
            document_count,
            vector_count,
            warnings,
        })
    }
}
