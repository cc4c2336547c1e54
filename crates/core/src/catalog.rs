//! `Catalog`: what the stores hold, read and removed — documents, their
//! text and chunks, and stored conversations — with the listing limits
//! checked here, where the reads happen.

use std::sync::Arc;

use uuid::Uuid;

use crate::backend::{
    ConversationStore, DocumentStore, LexicalIndex, ListQuery, MetadataStore, StoredMessage,
    VectorStore,
};
use crate::domain::{Document, Page, VectorSearchResult};
use crate::error::{RagError, StoreError};
use crate::tenant::Tenant;
use crate::usage::{TenantSettingsStore, UsageStore};

/// The backends one deployment runs on.
#[derive(Clone)]
pub struct Stores {
    pub metadata: Arc<dyn MetadataStore>,
    pub documents: Arc<dyn DocumentStore>,
    pub vectors: Arc<dyn VectorStore>,
    pub lexical: Option<Arc<dyn LexicalIndex>>,
    pub conversations: Arc<dyn ConversationStore>,
    /// Daily usage counters per tenant.
    pub usage: Arc<dyn UsageStore>,
    /// What an operator sets per tenant (its token budget).
    pub tenant_settings: Arc<dyn TenantSettingsStore>,
}

/// Where a document's original upload is kept in the document store,
/// relative to its tenant's place there.
pub fn raw_key(id: Uuid) -> String {
    format!("{id}/original")
}

/// Where its parsed text is kept.
pub fn text_key(id: Uuid) -> String {
    format!("{id}/text.txt")
}

/// Where the places of its pages, sheets, slides and tables in the text
/// are kept (JSON), for the formats that have them.
pub fn layout_key(id: Uuid) -> String {
    format!("{id}/layout.json")
}

/// The most documents, or conversation messages, one listing returns.
pub const MAX_LIST_LIMIT: usize = 1000;

#[derive(Clone)]
pub struct Catalog {
    stores: Stores,
}

impl Catalog {
    pub fn new(stores: Stores) -> Self {
        Self { stores }
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// One document of the tenant; with `include_content`, its parsed
    /// text too. Another tenant's id is as unknown as a made-up one.
    pub async fn get_document(
        &self,
        tenant: &Tenant,
        id: Uuid,
        include_content: bool,
    ) -> Result<Document, RagError> {
        let mut document = self
            .stores
            .metadata
            .get(tenant, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if include_content {
            match self.stores.documents.get(tenant, &text_key(id)).await {
                Ok(bytes) => document.content = Some(String::from_utf8_lossy(&bytes).into_owned()),
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(document)
    }

    /// A document's chunks in order, from the lexical index when there is
    /// one (it keeps every chunk's text), else from the vector store.
    pub async fn document_chunks(
        &self,
        tenant: &Tenant,
        id: Uuid,
    ) -> Result<Vec<VectorSearchResult>, RagError> {
        self.get_document(tenant, id, false).await?;
        match &self.stores.lexical {
            Some(lexical) => Ok(lexical.chunks_of(tenant, id).await?),
            None => Ok(self
                .stores
                .vectors
                .chunks_of(tenant, id)
                .await?
                .unwrap_or_default()),
        }
    }

    pub async fn list_documents(
        &self,
        tenant: &Tenant,
        query: &ListQuery,
    ) -> Result<Page<Document>, RagError> {
        check_limit(query.limit)?;
        Ok(self.stores.metadata.list(tenant, query).await?)
    }

    /// Removes a document everywhere: vectors, lexical entries, files and
    /// metadata, in that order, so a crash midway leaves a listed document
    /// that can be deleted again rather than invisible orphans.
    pub async fn delete_document(&self, tenant: &Tenant, id: Uuid) -> Result<(), RagError> {
        if self.stores.metadata.get(tenant, id).await?.is_none() {
            return Err(not_found(id));
        }
        self.stores.vectors.delete_document(tenant, id).await?;
        if let Some(lexical) = &self.stores.lexical {
            lexical.delete_document(tenant, id).await?;
        }
        self.remove_files(tenant, id).await;
        self.stores.metadata.delete(tenant, id).await?;
        Ok(())
    }

    /// The latest `limit` messages of a conversation, oldest first. An
    /// unknown conversation has none.
    pub async fn conversation(
        &self,
        tenant: &Tenant,
        id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, RagError> {
        check_limit(limit)?;
        Ok(self.stores.conversations.history(tenant, id, limit).await?)
    }

    /// Best effort: logs and carries on, because it runs on paths that are
    /// already handling another error.
    pub(crate) async fn remove_index_entries(&self, tenant: &Tenant, id: Uuid) {
        if let Err(e) = self.stores.vectors.delete_document(tenant, id).await {
            tracing::error!(%id, error = %e, "could not remove vectors");
        }
        if let Some(lexical) = &self.stores.lexical
            && let Err(e) = lexical.delete_document(tenant, id).await
        {
            tracing::error!(%id, error = %e, "could not remove lexical entries");
        }
    }

    /// Best effort, as [`Catalog::remove_index_entries`].
    pub(crate) async fn remove_files(&self, tenant: &Tenant, id: Uuid) {
        for key in [raw_key(id), text_key(id), layout_key(id)] {
            if let Err(e) = self.stores.documents.delete(tenant, &key).await {
                tracing::error!(%id, error = %e, key, "could not remove file");
            }
        }
    }
}

pub(crate) fn not_found(id: Uuid) -> RagError {
    RagError::NotFound {
        what: "document",
        id: id.to_string(),
    }
}

fn check_limit(limit: usize) -> Result<(), RagError> {
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(RagError::invalid(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}"
        )));
    }
    Ok(())
}
