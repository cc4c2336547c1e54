//! Chunk embeddings in an S3 Vectors index. The chunk text and offsets ride
//! along as metadata (text non-filterable), so a search needs no second
//! lookup. S3 Vectors returns a distance; `similarity_from_distance` is the
//! one place it becomes the similarity the rest of the service expects.
//!
//! By default tenants share the index. Each vector's key starts with its
//! tenant (`<tenant>#<chunk id>`) and its metadata carries a filterable
//! `tenant`, and every `QueryVectors` filters on it. The index runs in
//! `ENHANCED` mode, where filters apply before the search, so a small
//! tenant beside a large one still gets its own true top-k (`CLASSIC`
//! filters during the search and may return fewer).
//!
//! With [`IndexLayout::PerTenant`] (`S3_VECTOR_INDEX_PER_TENANT`) each
//! tenant has an index of its own, `<index>-<16 hex of SHA-256(tenant)>`
//! (index names allow only lowercase letters, digits, `-` and `.`, which
//! tenant ids do not keep to), created on its first write. Keys and the
//! tenant filter stay as in a shared index, so a vector is never found
//! through the wrong one. A tenant with no index yet has no vectors.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3vectors::Client;
use aws_sdk_s3vectors::types::{
    DataType, DistanceMetric, IndexMode, MetadataConfiguration, PutInputVector, VectorData,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use rag_core::{
    ChunkLocation, ChunkMetadata, DocumentChunk, SearchFilter, StoreError, Tenant,
    VectorSearchResult, VectorStore,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::document::{to_document, to_value};
use crate::sdk_error::classify;

/// Service limits per call.
const PUT_BATCH: usize = 500;
const DELETE_BATCH: usize = 500;
const GET_BATCH: usize = 100;
const MAX_TOP_K: usize = 100;

/// Metadata keys stored but not filterable: the text is large and the
/// filterable part of a vector's metadata is capped at 2 KB.
const NON_FILTERABLE_KEYS: &[&str] = &["text"];

/// Converts an S3 Vectors cosine distance (`1 - cos`) into the cosine
/// similarity the rest of the service ranks and thresholds by.
pub fn similarity_from_distance(distance: f32) -> f32 {
    1.0 - distance
}

/// One index for every tenant, or one per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexLayout {
    #[default]
    Shared,
    /// Indexes are made on a tenant's first write when `create` allows.
    PerTenant { create: bool },
}

/// Index names are at most 63 characters; a per-tenant name adds 17.
pub const MAX_PER_TENANT_BASE_CHARS: usize = 63 - 17;

/// The index of `tenant` when each tenant has its own.
pub fn per_tenant_index_name(base: &str, tenant: &Tenant) -> String {
    let digest = Sha256::digest(tenant.as_str().as_bytes());
    format!("{base}-{}", hex_prefix(&digest[..8]))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct S3VectorStore {
    client: Client,
    bucket: String,
    index: String,
    dimension: usize,
    layout: IndexLayout,
    /// Per-tenant indexes known to exist, so a write checks once.
    ready: Mutex<HashSet<String>>,
}

impl S3VectorStore {
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        index: impl Into<String>,
        dimension: usize,
    ) -> Self {
        S3VectorStore {
            client,
            bucket: bucket.into(),
            index: index.into(),
            dimension,
            layout: IndexLayout::Shared,
            ready: Mutex::new(HashSet::new()),
        }
    }

    /// The same store with this layout.
    pub fn with_layout(self, layout: IndexLayout) -> Self {
        Self { layout, ..self }
    }

    pub fn layout(&self) -> IndexLayout {
        self.layout
    }

    /// The index that holds `tenant`'s vectors.
    pub fn index_of(&self, tenant: &Tenant) -> String {
        match self.layout {
            IndexLayout::Shared => self.index.clone(),
            IndexLayout::PerTenant { .. } => per_tenant_index_name(&self.index, tenant),
        }
    }

    fn err_in(&self, index: &str, e: crate::sdk_error::Classified) -> StoreError {
        e.into_store_error(|| format!("vector index {}/{index}", self.bucket))
    }

    /// A per-tenant index that does not exist yet holds nothing: reads of
    /// it find nothing rather than fail.
    fn missing_tenant_index(&self, error: &StoreError) -> bool {
        matches!(self.layout, IndexLayout::PerTenant { .. })
            && matches!(error, StoreError::NotFound { .. })
    }

    /// Makes sure `tenant`'s index exists before a write: a per-tenant
    /// index is checked (and made, if allowed) the first time.
    async fn writable_index(&self, tenant: &Tenant) -> Result<String, StoreError> {
        let index = self.index_of(tenant);
        let IndexLayout::PerTenant { create } = self.layout else {
            return Ok(index);
        };
        if lock(&self.ready).contains(&index) {
            return Ok(index);
        }
        if let Some(warning) = self.ensure_named_index(&index, create).await? {
            tracing::warn!("{warning}");
        }
        lock(&self.ready).insert(index.clone());
        Ok(index)
    }

    /// Checks that the index exists with this dimension and the cosine
    /// metric (writing into another would corrupt every search), creating
    /// the vector bucket and the index when missing if `create` allows,
    /// and puts it in `ENHANCED` mode. Returns a warning when the index is
    /// in another mode and `create` forbids changing it: tenants stay
    /// isolated, but a small tenant's searches may return fewer hits.
    ///
    /// With an index per tenant this checks the default tenant's index, so
    /// a wrong dimension or a missing permission stops the start-up rather
    /// than a first write.
    pub async fn ensure_index(&self, create: bool) -> Result<Option<String>, StoreError> {
        match self.layout {
            IndexLayout::Shared => self.ensure_named_index(&self.index, create).await,
            IndexLayout::PerTenant { .. } => {
                if self.index.len() > MAX_PER_TENANT_BASE_CHARS {
                    return Err(StoreError::Invalid(format!(
                        "with an index per tenant, S3_VECTOR_INDEX_NAME may have at most {MAX_PER_TENANT_BASE_CHARS} characters ({} has {})",
                        self.index,
                        self.index.len()
                    )));
                }
                let tenant = Tenant::default_tenant();
                let index = self.index_of(&tenant);
                let warning = self.ensure_named_index(&index, create).await?;
                lock(&self.ready).insert(index);
                Ok(warning)
            }
        }
    }

    async fn ensure_named_index(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Option<String>, StoreError> {
        match self
            .client
            .get_index()
            .vector_bucket_name(&self.bucket)
            .index_name(name)
            .send()
            .await
        {
            Ok(output) => {
                let Some(index) = output.index() else {
                    return Err(StoreError::permanent("GetIndex returned no index"));
                };
                if index.dimension() as usize != self.dimension {
                    return Err(StoreError::Invalid(format!(
                        "the S3 Vectors index {} has dimension {} but VECTOR_DIMENSION is {}",
                        name,
                        index.dimension(),
                        self.dimension
                    )));
                }
                if *index.distance_metric() != DistanceMetric::Cosine {
                    return Err(StoreError::Invalid(format!(
                        "the S3 Vectors index {} uses {} distance; rag-agent needs cosine",
                        name,
                        index.distance_metric().as_str()
                    )));
                }
                if index.index_mode() == Some(&IndexMode::Enhanced) {
                    return Ok(None);
                }
                if create {
                    return Ok(self.enhance(name).await);
                }
                return Ok(Some(format!(
                    "the S3 Vectors index {} is not in ENHANCED mode and S3_VECTOR_CREATE_INDEX forbids changing it; tenants stay isolated, but a small tenant's searches may return fewer than top_k hits (set it with UpdateIndexMode)",
                    self.index
                )));
            }
            Err(e) => match self.err_in(name, classify(e)) {
                StoreError::NotFound { .. } if create => {}
                StoreError::NotFound { .. } => {
                    return Err(StoreError::Invalid(format!(
                        "the S3 Vectors index {}/{} does not exist and creating it is turned off",
                        self.bucket, name
                    )));
                }
                other => return Err(other),
            },
        }
        if let Err(e) = self
            .client
            .create_vector_bucket()
            .vector_bucket_name(&self.bucket)
            .send()
            .await
        {
            let c = classify(e);
            // Another instance may have created it first.
            if c.code.as_deref() != Some("ConflictException") {
                return Err(self.err_in(name, c));
            }
        }
        let metadata = MetadataConfiguration::builder()
            .set_non_filterable_metadata_keys(Some(
                NON_FILTERABLE_KEYS.iter().map(|k| k.to_string()).collect(),
            ))
            .build()
            .map_err(StoreError::permanent)?;
        if let Err(e) = self
            .client
            .create_index()
            .vector_bucket_name(&self.bucket)
            .index_name(name)
            .data_type(DataType::Float32)
            .dimension(self.dimension as i32)
            .distance_metric(DistanceMetric::Cosine)
            .metadata_configuration(metadata)
            .send()
            .await
        {
            let c = classify(e);
            if c.code.as_deref() != Some("ConflictException") {
                return Err(self.err_in(name, c));
            }
        }
        Ok(self.enhance(name).await)
    }

    /// Puts the index in `ENHANCED` mode; a failure (a role without
    /// `s3vectors:UpdateIndexMode`, a service that lacks the call) is a
    /// warning, not a refusal to start, since isolation does not depend on
    /// the mode.
    async fn enhance(&self, name: &str) -> Option<String> {
        let result = self
            .client
            .update_index_mode()
            .vector_bucket_name(&self.bucket)
            .index_name(name)
            .index_mode(IndexMode::Enhanced)
            .send()
            .await;
        match result {
            Ok(_) => None,
            Err(e) => {
                let c = classify(e);
                Some(format!(
                    "could not put the S3 Vectors index {name} in ENHANCED mode ({}); tenants stay isolated, but a small tenant's searches may return fewer than top_k hits",
                    c.message
                ))
            }
        }
    }

    /// The keys of a document's vectors that exist. Chunk keys are
    /// `<document id>#<index>` and ingestion writes them in index order,
    /// so they form a prefix of 0, 1, 2, ...: probing in pages until one
    /// comes back empty finds them all without a scan of the index.
    async fn existing_keys(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<Vec<(String, Option<Value>)>, StoreError> {
        let index = self.index_of(tenant);
        let mut found = Vec::new();
        let mut start = 0u32;
        loop {
            let keys: Vec<String> = (start..start + GET_BATCH as u32)
                .map(|i| vector_key(tenant, &ChunkMetadata::chunk_id_for(document_id, i)))
                .collect();
            let Some(page) = self.metadata_of(&index, keys).await? else {
                break;
            };
            if page.is_empty() {
                break;
            }
            found.extend(page);
            start += GET_BATCH as u32;
        }
        Ok(found)
    }

    /// Every chunk of a document, in order, from the vectors' metadata.
    pub async fn chunks_of(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        let mut chunks: Vec<VectorSearchResult> = self
            .existing_keys(tenant, document_id)
            .await?
            .into_iter()
            .filter_map(|(key, metadata)| from_metadata(&key, metadata.as_ref()?, 1.0))
            .collect();
        chunks.sort_by_key(|c| c.metadata.chunk_index);
        Ok(chunks)
    }

    /// The chunks among `chunk_ids` that exist, read by key from the
    /// tenant's index.
    pub async fn chunks_by_id(
        &self,
        tenant: &Tenant,
        chunk_ids: &[String],
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        let index = self.index_of(tenant);
        let mut found = Vec::new();
        for batch in chunk_ids.chunks(GET_BATCH) {
            let keys: Vec<String> = batch.iter().map(|id| vector_key(tenant, id)).collect();
            let Some(page) = self.metadata_of(&index, keys).await? else {
                return Ok(Vec::new());
            };
            found.extend(
                page.into_iter()
                    .filter_map(|(key, metadata)| from_metadata(&key, metadata.as_ref()?, 1.0)),
            );
        }
        Ok(found)
    }

    /// The keys among `keys` (at most `GET_BATCH`) that exist in `index`,
    /// each with its metadata; `None` when a tenant's own index was never
    /// made, which holds nothing.
    async fn metadata_of(
        &self,
        index: &str,
        keys: Vec<String>,
    ) -> Result<Option<Vec<(String, Option<Value>)>>, StoreError> {
        let output = match self
            .client
            .get_vectors()
            .vector_bucket_name(&self.bucket)
            .index_name(index)
            .set_keys(Some(keys))
            .return_metadata(true)
            .return_data(false)
            .send()
            .await
            .map_err(|e| self.err_in(index, classify(e)))
        {
            Ok(output) => output,
            Err(e) if self.missing_tenant_index(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(
            output
                .vectors()
                .iter()
                .map(|v| (v.key().to_string(), v.metadata().map(to_value)))
                .collect(),
        ))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A vector's key: its tenant, then the chunk id. Tenant ids never hold a
/// `#`, so the tenant is exactly the part before the first one.
fn vector_key(tenant: &Tenant, chunk_id: &str) -> String {
    format!("{tenant}#{chunk_id}")
}

fn to_metadata(tenant: &Tenant, chunk: &DocumentChunk) -> Value {
    let m = &chunk.metadata;
    let mut metadata = json!({
        "tenant": tenant.as_str(),
        "document_id": m.document_id.to_string(),
        "chunk_index": m.chunk_index,
        "start_char": m.start_char,
        "end_char": m.end_char,
        "token_count": m.token_count,
        "text": chunk.content,
    });
    // The location's fields (`page`, `sheet`, `slide`, `section`) sit beside the
    // others, and only where the chunk has them.
    if let (Value::Object(fields), Ok(Value::Object(location))) =
        (&mut metadata, serde_json::to_value(&m.location))
    {
        fields.extend(location);
    }
    metadata
}

fn from_metadata(key: &str, metadata: &Value, score: f32) -> Option<VectorSearchResult> {
    let (_, key) = key.split_once('#')?;
    let document_id: Uuid = metadata.get("document_id")?.as_str()?.parse().ok()?;
    let number = |field: &str| {
        metadata
            .get(field)
            .and_then(Value::as_f64)
            .map(|f| f as u64)
    };
    Some(VectorSearchResult {
        document_id,
        chunk_id: key.to_string(),
        score,
        content: metadata.get("text")?.as_str()?.to_string(),
        metadata: ChunkMetadata {
            chunk_id: key.to_string(),
            document_id,
            chunk_index: number("chunk_index")? as u32,
            start_char: number("start_char")?,
            end_char: number("end_char")?,
            token_count: number("token_count").unwrap_or(0) as u32,
            location: ChunkLocation {
                page: number("page").map(|n| n as u32),
                sheet: metadata
                    .get("sheet")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                slide: number("slide").map(|n| n as u32),
                section: metadata
                    .get("section")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            },
        },
    })
}

/// The S3 Vectors filter for a tenant's search: always its tenant, and
/// with documents named, one is `$eq`, several are `$in`.
fn filter_document(tenant: &Tenant, filter: &SearchFilter) -> Value {
    let tenant = json!({"tenant": {"$eq": tenant.as_str()}});
    let ids: Vec<String> = filter.document_ids.iter().map(Uuid::to_string).collect();
    let documents = match ids.len() {
        0 => return tenant,
        1 => json!({"document_id": {"$eq": ids[0]}}),
        _ => json!({"document_id": {"$in": ids}}),
    };
    json!({"$and": [tenant, documents]})
}

#[async_trait]
impl VectorStore for S3VectorStore {
    async fn upsert(&self, tenant: &Tenant, chunks: &[DocumentChunk]) -> Result<(), StoreError> {
        for chunk in chunks {
            if chunk.embedding.len() != self.dimension {
                return Err(StoreError::Invalid(format!(
                    "chunk {} has {} dimensions, the index {}",
                    chunk.metadata.chunk_id,
                    chunk.embedding.len(),
                    self.dimension
                )));
            }
        }
        if chunks.is_empty() {
            return Ok(());
        }
        let index = self.writable_index(tenant).await?;
        for batch in chunks.chunks(PUT_BATCH) {
            let vectors = batch
                .iter()
                .map(|chunk| {
                    PutInputVector::builder()
                        .key(vector_key(tenant, &chunk.metadata.chunk_id))
                        .data(VectorData::Float32(chunk.embedding.clone()))
                        .metadata(to_document(&to_metadata(tenant, chunk)))
                        .build()
                        .map_err(StoreError::permanent)
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .put_vectors()
                .vector_bucket_name(&self.bucket)
                .index_name(&index)
                .set_vectors(Some(vectors))
                .send()
                .await
                .map_err(|e| self.err_in(&index, classify(e)))?;
        }
        Ok(())
    }

    async fn search(
        &self,
        tenant: &Tenant,
        query: &[f32],
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        if query.len() != self.dimension {
            return Err(StoreError::Invalid(format!(
                "the query has {} dimensions, the index {}",
                query.len(),
                self.dimension
            )));
        }
        let index = self.index_of(tenant);
        let output = self
            .client
            .query_vectors()
            .vector_bucket_name(&self.bucket)
            .index_name(&index)
            .top_k(top_k.clamp(1, MAX_TOP_K) as i32)
            .query_vector(VectorData::Float32(query.to_vec()))
            .filter(to_document(&filter_document(tenant, filter)))
            .return_metadata(true)
            .return_distance(true)
            .send()
            .await
            .map_err(|e| self.err_in(&index, classify(e)));
        let output = match output {
            Ok(output) => output,
            Err(e) if self.missing_tenant_index(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut hits: Vec<VectorSearchResult> = output
            .vectors()
            .iter()
            .filter_map(|v| {
                let score = similarity_from_distance(v.distance()?);
                from_metadata(v.key(), &to_value(v.metadata()?), score)
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(hits)
    }

    async fn delete_document(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<usize, StoreError> {
        let keys: Vec<String> = self
            .existing_keys(tenant, document_id)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let count = keys.len();
        let index = self.index_of(tenant);
        let index = &index;
        let batches: Vec<Vec<String>> = keys.chunks(DELETE_BATCH).map(<[String]>::to_vec).collect();
        stream::iter(batches)
            .map(|batch| async move {
                self.client
                    .delete_vectors()
                    .vector_bucket_name(&self.bucket)
                    .index_name(index)
                    .set_keys(Some(batch))
                    .send()
                    .await
                    .map_err(|e| self.err_in(index, classify(e)))
            })
            .buffer_unordered(4)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(count)
    }

    /// S3 Vectors has no count; listing a whole index on every health check
    /// would cost one call per thousand vectors.
    async fn count(&self, _tenant: &Tenant) -> Result<Option<usize>, StoreError> {
        Ok(None)
    }

    async fn chunks_of(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<Option<Vec<VectorSearchResult>>, StoreError> {
        S3VectorStore::chunks_of(self, tenant, document_id)
            .await
            .map(Some)
    }

    async fn chunks_by_id(
        &self,
        tenant: &Tenant,
        chunk_ids: &[String],
    ) -> Result<Option<Vec<VectorSearchResult>>, StoreError> {
        S3VectorStore::chunks_by_id(self, tenant, chunk_ids)
            .await
            .map(Some)
    }

    fn backend_name(&self) -> &'static str {
        "s3vectors"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_becomes_similarity() {
        assert_eq!(similarity_from_distance(0.0), 1.0);
        assert_eq!(similarity_from_distance(1.0), 0.0);
        assert_eq!(similarity_from_distance(2.0), -1.0);
        assert!(similarity_from_distance(0.1) > similarity_from_distance(0.2));
    }

    #[test]
    fn filters_by_tenant_always_and_by_one_or_several_documents() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let t = Tenant::new("team-a").unwrap();
        let tenant = json!({"tenant": {"$eq": "team-a"}});
        assert_eq!(filter_document(&t, &SearchFilter::default()), tenant);
        assert_eq!(
            filter_document(
                &t,
                &SearchFilter {
                    document_ids: vec![a]
                }
            ),
            json!({"$and": [tenant, {"document_id": {"$eq": a.to_string()}}]})
        );
        assert_eq!(
            filter_document(
                &t,
                &SearchFilter {
                    document_ids: vec![a, b]
                }
            ),
            json!({"$and": [tenant, {"document_id": {"$in": [a.to_string(), b.to_string()]}}]})
        );
    }

    #[test]
    fn keys_carry_the_tenant_and_hits_carry_the_chunk_id() {
        let t = Tenant::new("team-a").unwrap();
        let doc = Uuid::new_v4();
        let chunk_id = ChunkMetadata::chunk_id_for(doc, 3);
        let key = vector_key(&t, &chunk_id);
        assert_eq!(key, format!("team-a#{chunk_id}"));
        let metadata = json!({
            "tenant": "team-a", "document_id": doc.to_string(), "chunk_index": 3,
            "start_char": 0, "end_char": 4, "token_count": 1, "text": "text",
        });
        let hit = from_metadata(&key, &metadata, 0.5).unwrap();
        assert_eq!(
            (hit.chunk_id.as_str(), hit.metadata.chunk_index),
            (chunk_id.as_str(), 3)
        );
    }
}
