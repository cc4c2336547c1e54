//! In-memory backends for tests of core's own logic (the agent loop, the
//! ingestion state machine, retrieve-then-answer) without moto, the
//! emulator or a model. Behind the `test-util` feature; nothing in a
//! deployment uses them.
//!
//! - [`MemoryStores`]: metadata, files, vectors (exact cosine), a keyword
//!   index (term overlap) and conversations, each behind a mutex, with the
//!   same conditional-transition rule as the real stores.
//! - [`LetterEmbedder`]: 26-dimensional letter counts, normalised, so
//!   texts sharing letters are near; its [`Gate`] can hold batches to
//!   catch ingestion mid-way.
//! - [`ScriptedModel`]: answers from a script, one response per call, and
//!   records every request it was sent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::backend::{
    ConversationStore, DocumentStore, Embedder, Lease, LexicalIndex, ListQuery, MetadataStore,
    StatusUpdate, StoredMessage, VectorStore,
};
use crate::catalog::Stores;
use crate::chat::{
    ChatModel, ChatRequest, ChatResponse, ChatStreamEvent, ContentBlock, Message, Role, StopReason,
};
use crate::domain::{
    Document, DocumentChunk, DocumentStatus, Page, SearchFilter, TokenUsage, VectorSearchResult,
};
use crate::error::{EmbedError, ModelError, StoreError};
use crate::tenant::Tenant;
pub use crate::usage::MemoryUsageStore;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct Tables {
    documents: BTreeMap<Uuid, Document>,
    leases: HashMap<Uuid, Lease>,
    files: HashMap<String, Bytes>,
    chunks: BTreeMap<String, DocumentChunk>,
    conversations: HashMap<Uuid, Vec<StoredMessage>>,
}

/// Every store of a deployment, in memory: one set of tables per tenant,
/// so a call for one tenant cannot see another's rows.
#[derive(Clone, Default)]
pub struct MemoryStores {
    tenants: Arc<Mutex<BTreeMap<Tenant, Tables>>>,
    usage: Arc<MemoryUsageStore>,
}

impl MemoryStores {
    /// All five stores, the lexical index included.
    pub fn stores(&self) -> Stores {
        let this = Arc::new(self.clone());
        Stores {
            metadata: this.clone(),
            documents: this.clone(),
            vectors: this.clone(),
            lexical: Some(this.clone()),
            conversations: this,
            usage: self.usage.clone(),
            tenant_settings: self.usage.clone(),
        }
    }

    /// Runs `f` on a tenant's tables, creating them on first use.
    fn with<T>(&self, tenant: &Tenant, f: impl FnOnce(&mut Tables) -> T) -> T {
        let mut tenants = lock(&self.tenants);
        f(tenants.entry(tenant.clone()).or_default())
    }

    /// How many chunks of a document are stored, in any tenant.
    pub fn chunk_count(&self, document_id: Uuid) -> usize {
        lock(&self.tenants)
            .values()
            .flat_map(|t| t.chunks.values())
            .filter(|c| c.metadata.document_id == document_id)
            .count()
    }

    /// Removes a file directly, as a crash would have left it.
    pub fn remove_file(&self, tenant: &Tenant, key: &str) {
        self.with(tenant, |t| t.files.remove(key));
    }

    fn hits(
        &self,
        tenant: &Tenant,
        filter: &SearchFilter,
        score: impl Fn(&DocumentChunk) -> f32,
    ) -> Vec<VectorSearchResult> {
        self.with(tenant, |tables| {
            let mut hits: Vec<VectorSearchResult> = tables
                .chunks
                .values()
                .filter(|c| filter.allows(&c.metadata.document_id))
                .map(|c| result(c, score(c)))
                .collect();
            hits.sort_by(|a, b| b.score.total_cmp(&a.score));
            hits
        })
    }

    fn chunks_in_order(&self, tenant: &Tenant, document_id: Uuid) -> Vec<VectorSearchResult> {
        self.with(tenant, |tables| {
            let mut chunks: Vec<VectorSearchResult> = tables
                .chunks
                .values()
                .filter(|c| c.metadata.document_id == document_id)
                .map(|c| result(c, 0.0))
                .collect();
            chunks.sort_by_key(|c| c.metadata.chunk_index);
            chunks
        })
    }

    fn delete_chunks(&self, tenant: &Tenant, document_id: Uuid) -> usize {
        self.with(tenant, |tables| {
            let before = tables.chunks.len();
            tables
                .chunks
                .retain(|_, c| c.metadata.document_id != document_id);
            before - tables.chunks.len()
        })
    }
}

fn result(chunk: &DocumentChunk, score: f32) -> VectorSearchResult {
    VectorSearchResult {
        document_id: chunk.metadata.document_id,
        chunk_id: chunk.metadata.chunk_id.clone(),
        score,
        content: chunk.content.clone(),
        metadata: chunk.metadata.clone(),
    }
}

#[async_trait]
impl MetadataStore for MemoryStores {
    async fn insert(&self, tenant: &Tenant, document: &Document) -> Result<(), StoreError> {
        self.with(tenant, |tables| {
            if tables.documents.contains_key(&document.id) {
                return Err(StoreError::Conflict(format!(
                    "document {} exists",
                    document.id
                )));
            }
            tables.documents.insert(document.id, document.clone());
            Ok(())
        })
    }

    async fn get(&self, tenant: &Tenant, id: Uuid) -> Result<Option<Document>, StoreError> {
        Ok(self.with(tenant, |t| t.documents.get(&id).cloned()))
    }

    async fn lease(
        &self,
        tenant: &Tenant,
        id: Uuid,
        lease: &Lease,
    ) -> Result<Document, StoreError> {
        self.with(tenant, |tables| {
            let now = Utc::now();
            let held_by_another = tables
                .leases
                .get(&id)
                .is_some_and(|held| held.owner != lease.owner && held.expires_at > now);
            let document = tables
                .documents
                .get_mut(&id)
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("document {id}"),
                })?;
            let takeable = match document.status {
                DocumentStatus::Pending => true,
                DocumentStatus::Processing => !held_by_another,
                _ => false,
            };
            if !takeable {
                return Err(StoreError::Conflict(format!(
                    "document {id} is {:?} and not free to lease",
                    document.status
                )));
            }
            document.status = DocumentStatus::Processing;
            document.updated_at = now;
            tables.leases.insert(id, lease.clone());
            Ok(document.clone())
        })
    }

    async fn release(
        &self,
        tenant: &Tenant,
        id: Uuid,
        owner: &str,
        to: DocumentStatus,
        update: StatusUpdate,
    ) -> Result<Document, StoreError> {
        self.with(tenant, |tables| {
            let holds = tables.leases.get(&id).is_some_and(|l| l.owner == owner);
            let document = tables
                .documents
                .get_mut(&id)
                .filter(|d| d.status == DocumentStatus::Processing && holds)
                .ok_or_else(|| {
                    StoreError::Conflict(format!("document {id} is not leased by {owner}"))
                })?;
            tables.leases.remove(&id);
            document.status = to;
            document.updated_at = Utc::now();
            if let Some(n) = update.chunk_count {
                document.chunk_count = n;
            }
            if let Some(n) = update.token_count {
                document.token_count = n;
            }
            document.error = update.error;
            if update.indexed_at.is_some() {
                document.indexed_at = update.indexed_at;
            }
            Ok(document.clone())
        })
    }

    async fn list(&self, tenant: &Tenant, query: &ListQuery) -> Result<Page<Document>, StoreError> {
        let mut items: Vec<Document> = self.with(tenant, |tables| {
            tables
                .documents
                .values()
                .filter(|d| query.status.is_none_or(|s| d.status == s))
                .cloned()
                .collect()
        });
        items.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        let start: usize = query
            .cursor
            .as_deref()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let end = (start + query.limit).min(items.len());
        let next_cursor = (end < items.len()).then(|| end.to_string());
        Ok(Page {
            items: items.get(start..end).unwrap_or_default().to_vec(),
            next_cursor,
        })
    }

    async fn delete(&self, tenant: &Tenant, id: Uuid) -> Result<bool, StoreError> {
        Ok(self.with(tenant, |t| {
            t.leases.remove(&id);
            t.documents.remove(&id).is_some()
        }))
    }

    async fn find_by_hash(
        &self,
        tenant: &Tenant,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError> {
        Ok(self.with(tenant, |t| {
            t.documents
                .values()
                .find(|d| d.content_hash == content_hash && d.status != DocumentStatus::Failed)
                .cloned()
        }))
    }

    async fn count(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        Ok(self.with(tenant, |t| t.documents.len() as u64))
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        Ok(lock(&self.tenants)
            .iter()
            .filter(|(_, t)| !t.documents.is_empty())
            .map(|(tenant, _)| tenant.clone())
            .collect())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl DocumentStore for MemoryStores {
    async fn put(
        &self,
        tenant: &Tenant,
        key: &str,
        bytes: Bytes,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        self.with(tenant, |t| t.files.insert(key.to_string(), bytes));
        Ok(())
    }

    async fn get(&self, tenant: &Tenant, key: &str) -> Result<Bytes, StoreError> {
        self.with(tenant, |t| t.files.get(key).cloned())
            .ok_or_else(|| StoreError::NotFound {
                what: key.to_string(),
            })
    }

    async fn delete(&self, tenant: &Tenant, key: &str) -> Result<(), StoreError> {
        self.with(tenant, |t| t.files.remove(key));
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl VectorStore for MemoryStores {
    async fn upsert(&self, tenant: &Tenant, chunks: &[DocumentChunk]) -> Result<(), StoreError> {
        self.with(tenant, |tables| {
            for chunk in chunks {
                tables
                    .chunks
                    .insert(chunk.metadata.chunk_id.clone(), chunk.clone());
            }
        });
        Ok(())
    }

    async fn search(
        &self,
        tenant: &Tenant,
        query: &[f32],
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        let mut hits = self.hits(tenant, filter, |c| {
            c.embedding.iter().zip(query).map(|(a, b)| a * b).sum()
        });
        hits.truncate(top_k);
        Ok(hits)
    }

    async fn delete_document(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<usize, StoreError> {
        Ok(self.delete_chunks(tenant, document_id))
    }

    async fn count(&self, tenant: &Tenant) -> Result<Option<usize>, StoreError> {
        Ok(Some(self.with(tenant, |t| t.chunks.len())))
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl LexicalIndex for MemoryStores {
    fn backend_name(&self) -> &'static str {
        "memory-terms"
    }

    /// Chunks share one table with the vectors; indexing is the upsert.
    async fn index_chunks(
        &self,
        tenant: &Tenant,
        chunks: &[DocumentChunk],
    ) -> Result<(), StoreError> {
        VectorStore::upsert(self, tenant, chunks).await
    }

    async fn search(
        &self,
        tenant: &Tenant,
        query: &str,
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        let terms: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        let mut hits = self.hits(tenant, filter, |c| {
            let text = c.content.to_lowercase();
            terms.iter().filter(|t| text.contains(t.as_str())).count() as f32
        });
        hits.retain(|h| h.score > 0.0);
        hits.truncate(top_k);
        Ok(hits)
    }

    async fn delete_document(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<usize, StoreError> {
        Ok(self.delete_chunks(tenant, document_id))
    }

    async fn chunks_of(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        Ok(self.chunks_in_order(tenant, document_id))
    }

    async fn chunks_by_id(
        &self,
        tenant: &Tenant,
        chunk_ids: &[String],
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        Ok(self.with(tenant, |tables| {
            chunk_ids
                .iter()
                .filter_map(|id| tables.chunks.get(id))
                .map(|c| result(c, 0.0))
                .collect()
        }))
    }
}

#[async_trait]
impl ConversationStore for MemoryStores {
    async fn append(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        messages: &[StoredMessage],
    ) -> Result<(), StoreError> {
        self.with(tenant, |t| {
            t.conversations
                .entry(conversation_id)
                .or_default()
                .extend_from_slice(messages)
        });
        Ok(())
    }

    async fn history(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(self.with(tenant, |t| {
            let all = t
                .conversations
                .get(&conversation_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            all[all.len().saturating_sub(limit)..].to_vec()
        }))
    }
}

/// Holds embedding batches until opened, to catch ingestion mid-way. A
/// closed gate lets `passes` batches through, then holds the rest.
#[derive(Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
    waiting: Arc<Notify>,
}

impl Gate {
    pub fn closed_after(passes: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(passes)),
            waiting: Arc::new(Notify::new()),
        }
    }

    /// Resolves once a batch is held at the gate.
    pub async fn held(&self) {
        self.waiting.notified().await;
    }

    pub fn open(&self) {
        self.permits.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    async fn pass(&self) {
        if let Ok(permit) = self.permits.try_acquire() {
            permit.forget();
            return;
        }
        self.waiting.notify_one();
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
    }
}

/// Letter counts, L2-normalised: a real embedding of a crude kind, so
/// searches rank by shared letters.
#[derive(Clone, Default)]
pub struct LetterEmbedder {
    gate: Option<Gate>,
    /// Calls still to be refused as throttled, as a busy Bedrock would.
    throttled_calls: Arc<Mutex<usize>>,
    /// Batch sizes `embed` was called with, in order.
    pub calls: Arc<Mutex<Vec<usize>>>,
}

impl LetterEmbedder {
    pub fn gated(gate: Gate) -> Self {
        Self {
            gate: Some(gate),
            ..Self::default()
        }
    }

    /// One whose next `calls` calls are throttled.
    pub fn throttled_for(calls: usize) -> Self {
        Self {
            throttled_calls: Arc::new(Mutex::new(calls)),
            ..Self::default()
        }
    }

    pub fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; 26];
        for c in text.chars().filter(char::is_ascii_alphabetic) {
            v[(c.to_ascii_lowercase() as u8 - b'a') as usize] += 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

#[async_trait]
impl Embedder for LetterEmbedder {
    fn model_id(&self) -> &str {
        "letters"
    }

    fn dimension(&self) -> usize {
        26
    }

    fn batch_size(&self) -> usize {
        2
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
        {
            let mut throttled = lock(&self.throttled_calls);
            if *throttled > 0 {
                *throttled -= 1;
                return Err(EmbedError::Throttled { retry_after: None });
            }
        }
        lock(&self.calls).push(texts.len());
        Ok(texts.iter().map(|t| Self::vector(t)).collect())
    }
}

/// One scripted reply: what the model answers to the next call.
#[derive(Debug, Clone)]
pub enum Scripted {
    Text(String),
    /// Text with this stop reason, such as `ContentFiltered`.
    Stopped(String, StopReason),
    /// Tool uses: (id, tool name, input).
    Tools(Vec<(String, String, serde_json::Value)>),
    Fail(fn() -> ModelError),
}

/// A model that plays a script and records what it was asked. Streams
/// emit each word of a text as its own delta, `delta_pause` apart.
#[derive(Clone)]
pub struct ScriptedModel {
    script: Arc<Mutex<VecDeque<Scripted>>>,
    /// Every request, in the order received.
    pub requests: Arc<Mutex<Vec<ChatRequest>>>,
    tools: bool,
    delta_pause: Duration,
}

impl ScriptedModel {
    pub fn new(tools: bool, script: impl IntoIterator<Item = Scripted>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            requests: Arc::default(),
            tools,
            delta_pause: Duration::ZERO,
        }
    }

    pub fn with_delta_pause(mut self, pause: Duration) -> Self {
        self.delta_pause = pause;
        self
    }

    fn next(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        lock(&self.requests).push(request);
        let step = lock(&self.script)
            .pop_front()
            .unwrap_or_else(|| Scripted::Text("(script ended)".into()));
        let (content, stop_reason) = match step {
            Scripted::Text(text) => (vec![ContentBlock::Text { text }], StopReason::EndTurn),
            Scripted::Stopped(text, reason) => (vec![ContentBlock::Text { text }], reason),
            Scripted::Tools(uses) => (
                uses.into_iter()
                    .map(|(tool_use_id, name, input)| ContentBlock::ToolUse {
                        tool_use_id,
                        name,
                        input,
                    })
                    .collect(),
                StopReason::ToolUse,
            ),
            Scripted::Fail(error) => return Err(error()),
        };
        Ok(ChatResponse {
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason,
            usage: TokenUsage::new(10, 5),
        })
    }
}

#[async_trait]
impl ChatModel for ScriptedModel {
    fn model_id(&self) -> &str {
        "scripted"
    }

    fn supports_tools(&self) -> bool {
        self.tools
    }

    async fn converse(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        self.next(request)
    }

    async fn converse_stream(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatStreamEvent, ModelError>>, ModelError> {
        let response = self.next(request)?;
        let mut events = Vec::new();
        for block in response.message.content {
            match block {
                ContentBlock::Text { text } => events.extend(
                    text.split_inclusive(' ')
                        .map(|word| ChatStreamEvent::TextDelta(word.to_string())),
                ),
                ContentBlock::ToolUse {
                    tool_use_id,
                    name,
                    input,
                } => events.push(ChatStreamEvent::ToolUse {
                    tool_use_id,
                    name,
                    input,
                }),
                ContentBlock::ToolResult { .. } => {}
            }
        }
        events.push(ChatStreamEvent::Stop {
            stop_reason: response.stop_reason,
            usage: response.usage,
        });
        let pause = self.delta_pause;
        Ok(stream::iter(events)
            .then(move |event| async move {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                Ok(event)
            })
            .boxed())
    }
}

/// The rules every [`MetadataStore`] keeps for leases, run against each
/// adapter by its own tests: `pending` is a PENDING document of `tenant`
/// not yet inserted, and `other` a tenant that must not see it.
pub async fn check_lease_rules(
    store: &dyn MetadataStore,
    tenant: &Tenant,
    other: &Tenant,
    pending: Document,
) {
    use crate::backend::Lease;
    let id = pending.id;
    store.insert(tenant, &pending).await.unwrap();
    let long = Duration::from_secs(60);
    let taken = store
        .lease(tenant, id, &Lease::for_next("a", long))
        .await
        .unwrap();
    assert_eq!(taken.status, DocumentStatus::Processing);
    // Held: another worker is refused, the holder may renew.
    let refused = store.lease(tenant, id, &Lease::for_next("b", long)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    store
        .lease(tenant, id, &Lease::for_next("a", long))
        .await
        .unwrap();
    // Only the holder may end it.
    let not_holder = store
        .release(
            tenant,
            id,
            "b",
            DocumentStatus::Indexed,
            StatusUpdate::default(),
        )
        .await;
    assert!(
        matches!(not_holder, Err(StoreError::Conflict(_))),
        "{not_holder:?}"
    );
    // Another tenant's document is as absent as an unknown one.
    let elsewhere = store.lease(other, id, &Lease::for_next("a", long)).await;
    assert!(
        matches!(elsewhere, Err(StoreError::NotFound { .. })),
        "{elsewhere:?}"
    );
    let unknown = store
        .lease(tenant, Uuid::new_v4(), &Lease::for_next("a", long))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );

    // Expired: a new worker takes it over, and the old one can no longer
    // finish it.
    store
        .lease(tenant, id, &Lease::for_next("a", Duration::from_millis(50)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    store
        .lease(tenant, id, &Lease::for_next("b", long))
        .await
        .unwrap();
    let stale = store
        .release(
            tenant,
            id,
            "a",
            DocumentStatus::Indexed,
            StatusUpdate::default(),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    // Back to PENDING for another attempt, free to lease again.
    let retrying = store
        .release(
            tenant,
            id,
            "b",
            DocumentStatus::Pending,
            StatusUpdate {
                error: Some("throttled".into()),
                ..StatusUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(retrying.status, DocumentStatus::Pending);
    assert_eq!(retrying.error.as_deref(), Some("throttled"));
    store
        .lease(tenant, id, &Lease::for_next("c", long))
        .await
        .unwrap();
    let indexed = store
        .release(
            tenant,
            id,
            "c",
            DocumentStatus::Indexed,
            StatusUpdate {
                chunk_count: Some(7),
                token_count: Some(70),
                error: None,
                indexed_at: Some(Utc::now()),
            },
        )
        .await
        .unwrap();
    assert_eq!(indexed.status, DocumentStatus::Indexed);
    assert_eq!((indexed.chunk_count, indexed.token_count), (7, 70));
    assert!(indexed.indexed_at.is_some() && indexed.error.is_none());
    let listed = store
        .list(
            tenant,
            &ListQuery {
                status: Some(DocumentStatus::Indexed),
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert!(listed.items.iter().any(|d| d.id == id));
    // Settled documents are leased by nobody.
    let settled = store.lease(tenant, id, &Lease::for_next("d", long)).await;
    assert!(
        matches!(settled, Err(StoreError::Conflict(_))),
        "{settled:?}"
    );
}

/// A document row titled `title` in `status`, as the store tests insert.
pub fn document(title: &str, created_at: DateTime<Utc>, status: DocumentStatus) -> Document {
    Document {
        id: Uuid::new_v4(),
        title: title.to_string(),
        content: None,
        source: format!("{title}.txt"),
        content_type: "text/plain".to_string(),
        status,
        chunk_count: 0,
        token_count: 0,
        chunk_size: 1000,
        chunk_overlap: 200,
        size_bytes: 10,
        content_hash: format!("hash-{title}"),
        error: None,
        created_at,
        updated_at: created_at,
        indexed_at: None,
        extra_metadata: [("team".to_string(), serde_json::json!("docs"))].into(),
    }
}

/// A PENDING document titled `title`, as `accept` would make it.
pub fn pending_document(title: &str) -> Document {
    document(title, Utc::now(), DocumentStatus::Pending)
}

/// Ingests each text as a plain-text document of the default tenant,
/// indexed before this returns.
/// A deployment on memory stores and the letter embedder, answering with
/// `model`, that already holds `texts` as indexed documents.
pub async fn service_over_texts(
    model: Arc<dyn crate::chat::ChatModel>,
    settings: crate::ServiceSettings,
    texts: &[&str],
) -> Arc<crate::RagService> {
    let memory = MemoryStores::default();
    let service = crate::RagService::new(
        memory.stores(),
        Some(Arc::new(LetterEmbedder::default())),
        model,
        crate::fetch::UrlFetcher::new(crate::fetch::FetchPolicy::default())
            .expect("the default fetch policy builds"),
        settings,
        Vec::new(),
    )
    .expect("the test deployment builds");
    ingest_texts(&service, texts).await;
    service
}

pub async fn ingest_texts(service: &crate::RagService, texts: &[&str]) {
    for text in texts {
        service
            .ingestor()
            .ingest(
                &Tenant::default_tenant(),
                crate::IngestInput {
                    bytes: text.to_string().into(),
                    declared_content_type: Some("text/plain".into()),
                    ..crate::IngestInput::default()
                },
                true,
            )
            .await
            .expect("a plain text ingests");
    }
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    #[tokio::test]
    async fn memory_stores_keep_the_lease_rules() {
        let stores = MemoryStores::default();
        let document = crate::test_util::pending_document("leased");
        check_lease_rules(
            &stores,
            &Tenant::new("team-a").unwrap(),
            &Tenant::new("team-b").unwrap(),
            document,
        )
        .await;
    }
}
