//! The small object-safe traits every backend implements. Services hold them
//! as `Arc<dyn _>`; adapters are handed ready-built clients and never read
//! configuration themselves.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chat::Message;
use crate::domain::{
    Document, DocumentChunk, DocumentStatus, Page, SearchFilter, VectorSearchResult,
};
use crate::error::{EmbedError, StoreError};
use crate::tenant::Tenant;

/// Texts per embedding call unless an embedder says otherwise.
pub const DEFAULT_EMBED_BATCH_SIZE: usize = 32;

/// Turns text into vectors.
///
/// Invariants: the output has one vector per input, in input order, each of
/// exactly `dimension()` values. A vector of another dimension written into
/// an index silently corrupts every later search, so callers check it.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Identifies the model, e.g. `all-MiniLM-L6-v2` or a Bedrock model id.
    fn model_id(&self) -> &str;
    fn dimension(&self) -> usize;
    /// How many texts one call should carry; callers split larger inputs.
    fn batch_size(&self) -> usize {
        DEFAULT_EMBED_BATCH_SIZE
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Embeds one question. Someone is waiting for it, so an embedder that
    /// shares its compute with ingestion serves it first (the in-process
    /// MiniLM runs it on a lane of its own); a remote model gives it no
    /// special treatment.
    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.embed(&[text.to_string()])
            .await?
            .pop()
            .ok_or_else(|| EmbedError::permanent("the embedder returned no vector"))
    }
    /// Whether `embed` can answer now. Only an embedder that loads its
    /// model after start-up is ever anything but ready.
    fn state(&self) -> EmbedderState {
        EmbedderState::Ready
    }
}

/// Where an embedder's model stands, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedderState {
    Ready,
    /// Still loading; `embed` waits for it.
    Loading,
    /// The model could not be loaded, for this reason; `embed` fails.
    Failed(String),
}

/// Holds chunk embeddings and finds the nearest ones.
///
/// Every call names its tenant and sees only that tenant's vectors; a
/// search for one tenant returns its own true top-k however many vectors
/// other tenants hold. Invariants: `upsert` is idempotent per chunk id; `search` returns at most
/// `top_k` hits ordered by `score` descending, where `score` is a similarity
/// (higher is better) — adapters whose backend returns a distance convert it.
#[async_trait]
pub trait VectorStore: Send + Sync {
    async fn upsert(&self, tenant: &Tenant, chunks: &[DocumentChunk]) -> Result<(), StoreError>;
    async fn search(
        &self,
        tenant: &Tenant,
        query: &[f32],
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorSearchResult>, StoreError>;
    /// Removes every vector of a document; returns how many there were.
    async fn delete_document(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<usize, StoreError>;
    /// How many vectors the tenant has, when the store can tell cheaply;
    /// `None` for services that would need a full listing to count.
    async fn count(&self, tenant: &Tenant) -> Result<Option<usize>, StoreError>;
    /// Every stored chunk of a document in order, for stores that keep the
    /// chunk text with the vector; `None` when this store does not.
    async fn chunks_of(
        &self,
        _tenant: &Tenant,
        _document_id: Uuid,
    ) -> Result<Option<Vec<VectorSearchResult>>, StoreError> {
        Ok(None)
    }
    /// The stored chunks among `chunk_ids` (ids of no chunk are left out),
    /// for stores that keep the chunk text with the vector; `None` when
    /// this store does not.
    async fn chunks_by_id(
        &self,
        _tenant: &Tenant,
        _chunk_ids: &[String],
    ) -> Result<Option<Vec<VectorSearchResult>>, StoreError> {
        Ok(None)
    }
    /// Identifies the backend in `/health`.
    fn backend_name(&self) -> &'static str;
}

/// Keyword search over chunk text (BM25 or similar) and the chunk listing
/// behind the document view, each call within one tenant.
#[async_trait]
pub trait LexicalIndex: Send + Sync {
    /// Names the engine for `/health`, e.g. `sqlite-fts5`.
    fn backend_name(&self) -> &'static str;
    async fn index_chunks(
        &self,
        tenant: &Tenant,
        chunks: &[DocumentChunk],
    ) -> Result<(), StoreError>;
    /// Hits ordered best first; `score` is higher-is-better.
    async fn search(
        &self,
        tenant: &Tenant,
        query: &str,
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorSearchResult>, StoreError>;
    async fn delete_document(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<usize, StoreError>;
    async fn chunks_of(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<Vec<VectorSearchResult>, StoreError>;
    /// The stored chunks among `chunk_ids`, in any order; ids of no chunk
    /// (or of another tenant's) are left out.
    async fn chunks_by_id(
        &self,
        tenant: &Tenant,
        chunk_ids: &[String],
    ) -> Result<Vec<VectorSearchResult>, StoreError>;
}

/// Raw bytes by key: the original upload and the parsed text (S3 or disk).
/// Keys are relative to the tenant: the adapter puts the tenant in front
/// of every key it writes or reads, so one tenant's key never names
/// another's object.
#[async_trait]
pub trait DocumentStore: Send + Sync {
    async fn put(
        &self,
        tenant: &Tenant,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StoreError>;
    /// `StoreError::NotFound` when the key does not exist.
    async fn get(&self, tenant: &Tenant, key: &str) -> Result<Bytes, StoreError>;
    /// Deleting a missing key is not an error.
    async fn delete(&self, tenant: &Tenant, key: &str) -> Result<(), StoreError>;
    async fn exists(&self, tenant: &Tenant, key: &str) -> Result<bool, StoreError> {
        match self.get(tenant, key).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn backend_name(&self) -> &'static str;
}

/// A request a client sends itself, straight to storage: a presigned PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub url: String,
    /// Headers the request must carry exactly as given (they are part of
    /// the signature).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Signs uploads into a document store so that a client sends large files
/// to storage directly, past the API's request size limit.
#[async_trait]
pub trait UploadSigner: Send + Sync {
    /// A PUT of exactly `size` bytes of `content_type` to `key` in the
    /// tenant's place of the store, valid for `valid_for`; size and type
    /// are bound into the signature, so no other body is accepted.
    async fn presign_put(
        &self,
        tenant: &Tenant,
        key: &str,
        size: u64,
        content_type: &str,
        valid_for: std::time::Duration,
    ) -> Result<PresignedPut, StoreError>;
}

/// The fields a status transition writes besides the status itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusUpdate {
    pub chunk_count: Option<u32>,
    pub token_count: Option<u64>,
    pub error: Option<String>,
    pub indexed_at: Option<DateTime<Utc>>,
}

/// A worker's hold on a PROCESSING document, renewed while it works; a
/// worker that dies stops renewing, and once `expires_at` passes another
/// may take the document over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// A lease for `owner` lasting `duration` from now.
    pub fn for_next(owner: &str, duration: std::time::Duration) -> Self {
        Self {
            owner: owner.to_string(),
            expires_at: Utc::now()
                + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::days(3650)),
        }
    }
}

/// Which documents a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<DocumentStatus>,
    pub limit: usize,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
}

/// Document metadata (DynamoDB items or SQLite rows), each call within one
/// tenant: another tenant's document is as absent as an unknown one.
#[async_trait]
pub trait MetadataStore: Send + Sync {
    /// Fails with `Conflict` if the id exists.
    async fn insert(&self, tenant: &Tenant, document: &Document) -> Result<(), StoreError>;
    async fn get(&self, tenant: &Tenant, id: Uuid) -> Result<Option<Document>, StoreError>;
    /// Takes, or renews, a worker's lease on a document: a PENDING
    /// document, or a PROCESSING one whose lease is `lease.owner`'s or has
    /// expired, becomes PROCESSING held by `lease` (one conditional write,
    /// so two workers cannot both hold it). `Conflict` otherwise, and
    /// `NotFound` for a document that does not exist.
    async fn lease(&self, tenant: &Tenant, id: Uuid, lease: &Lease)
    -> Result<Document, StoreError>;
    /// Ends `owner`'s lease, moving the document from PROCESSING to `to`
    /// with `update`, only while the lease is still `owner`'s: a worker
    /// whose lease was taken over cannot finish the document. `Conflict`
    /// otherwise.
    async fn release(
        &self,
        tenant: &Tenant,
        id: Uuid,
        owner: &str,
        to: DocumentStatus,
        update: StatusUpdate,
    ) -> Result<Document, StoreError>;
    /// Newest first.
    async fn list(&self, tenant: &Tenant, query: &ListQuery) -> Result<Page<Document>, StoreError>;
    /// Returns whether the document existed.
    async fn delete(&self, tenant: &Tenant, id: Uuid) -> Result<bool, StoreError>;
    /// A non-failed document of this tenant with these exact bytes, if any.
    async fn find_by_hash(
        &self,
        tenant: &Tenant,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError>;
    async fn count(&self, tenant: &Tenant) -> Result<u64, StoreError>;
    /// Every tenant that has ever stored a document, for the work that
    /// spans tenants: resuming interrupted ingestions at start-up.
    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    fn backend_name(&self) -> &'static str;
}

/// One stored turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub message: Message,
    pub created_at: DateTime<Utc>,
}

/// Conversation memory keyed by tenant and conversation id: the same id
/// under another tenant is another, empty conversation.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    async fn append(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        messages: &[StoredMessage],
    ) -> Result<(), StoreError>;
    /// The latest `limit` messages, oldest first.
    async fn history(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;
}
