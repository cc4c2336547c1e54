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
use chrono::Utc;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::backend::{
    ConversationStore, DocumentStore, Embedder, LexicalIndex, ListQuery, MetadataStore,
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

    async fn transition(
        &self,
        tenant: &Tenant,
        id: Uuid,
        from: DocumentStatus,
        to: DocumentStatus,
        update: StatusUpdate,
    ) -> Result<Document, StoreError> {
        self.with(tenant, |tables| {
            let document = tables
                .documents
                .get_mut(&id)
                .filter(|d| d.status == from)
                .ok_or_else(|| StoreError::Conflict(format!("document {id} is not {from:?}")))?;
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
        Ok(self.with(tenant, |t| t.documents.remove(&id).is_some()))
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
