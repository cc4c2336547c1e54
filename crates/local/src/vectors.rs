//! A cosine index kept in memory and persisted as an append-only log,
//! replayed at start-up and compacted when mostly dead.
//!
//! Search is exact (one pass of dot products over contiguous rows) until
//! the index holds `AnnSettings::min_rows` rows; from then on an HNSW graph
//! (`hnsw.rs`), built in the background and then kept current, answers
//! searches that have no document filter. Exact search stays available as
//! the judge of the graph's recall and for filtered searches. The graph is
//! saved beside the log (`snapshot.rs`) and picked up again on reopening.

mod codec;
mod exact;
mod rows;
mod snapshot;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard, RwLock};

use async_trait::async_trait;
use rag_core::{DocumentChunk, SearchFilter, StoreError, Tenant, VectorSearchResult, VectorStore};
use uuid::Uuid;

use crate::hnsw::{Candidate, Graph};
use codec::{MAGIC, Replayed, encode_delete, encode_upsert, write_record};
pub use rows::AnnSettings;
use rows::{Entry, Rows};
use snapshot::GraphFile;

struct Log {
    path: PathBuf,
    writer: BufWriter<File>,
    records: usize,
}

/// The index itself; every method is synchronous and may block (fsync,
/// scans), so the store below calls them on blocking threads.
struct Index {
    dimension: usize,
    rows: Arc<RwLock<Rows>>,
    log: Mutex<Log>,
    ann: AnnSettings,
    /// Set while a background thread builds the graph.
    building: Arc<AtomicBool>,
    graph_file: Arc<GraphFile>,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::permanent(e)
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| x / norm).collect()
}

impl Index {
    /// Opens (or creates) the index at `path` for vectors of `dimension`.
    /// An index built with another dimension is refused: mixing dimensions
    /// would make every search meaningless.
    fn open_with(path: &Path, dimension: usize, ann: AnnSettings) -> Result<Self, StoreError> {
        if dimension == 0 {
            return Err(StoreError::Invalid(
                "vector dimension must be positive".into(),
            ));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let graph_file = Arc::new(GraphFile::beside(path));
        let saved = (ann.min_rows != usize::MAX)
            .then(|| graph_file.read(dimension, ann))
            .flatten();
        // The rows' length and generation right after the saved graph's
        // last record: the graph fits the rows only if neither moved since.
        let Replayed {
            rows,
            records,
            valid_len,
            at_saved,
        } = codec::replay(path, dimension, saved.as_ref().map(|s| s.records))?;
        let had_saved = saved.is_some();
        let seed = saved.filter(|s| {
            at_saved == Some((s.graph.len(), rows.generation)) && s.matches(&rows.entries)
        });
        if had_saved && seed.is_none() {
            tracing::info!(path = %path.display(), "rows were deleted or changed since the vector graph was saved; rebuilding it in the background");
        }
        if let Some(seed) = &seed {
            graph_file.mark_saved(seed.records, rows.generation);
        }
        let live = rows.entries.len();
        let index = Self {
            dimension,
            log: Mutex::new(Self::open_log(path, dimension, valid_len)?),
            rows: Arc::new(RwLock::new(rows)),
            ann,
            building: Arc::new(AtomicBool::new(false)),
            graph_file,
        };
        index.log.lock().expect("fresh lock").records = records;
        if records > 2 * live + 1000 {
            index.compact()?;
        }
        index.open_graph(seed.map(|s| s.graph), live);
        Ok(index)
    }

    /// Installs the saved graph if it covers every row, or builds the rest
    /// of it (or all of it) in the background if the index is large enough.
    fn open_graph(&self, saved: Option<Graph>, live: usize) {
        if live < self.ann.min_rows {
            return;
        }
        let mut rows = self.rows.write().expect("fresh lock");
        match saved {
            Some(graph) if graph.len() == live => {
                tracing::info!(rows = live, "vector graph loaded from disk");
                rows.graph = Some(graph);
            }
            saved => {
                let seed = saved.map(|graph| (graph, rows.generation));
                drop(rows);
                rows::build_in_background(
                    &self.rows,
                    &self.building,
                    &self.graph_file,
                    seed,
                    self.dimension,
                    self.ann,
                );
            }
        }
    }

    fn open_log(path: &Path, dimension: usize, valid_len: u64) -> Result<Log, StoreError> {
        let fresh = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        if fresh {
            let mut w = BufWriter::new(&file);
            w.write_all(MAGIC).map_err(io)?;
            w.write_all(&(dimension as u32).to_le_bytes()).map_err(io)?;
            w.flush().map_err(io)?;
        } else {
            // Cut a torn tail so new records follow the last good one.
            file.set_len(valid_len).map_err(io)?;
        }
        let mut file = file;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(Log {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
            records: 0,
        })
    }

    /// Rewrites the log with only live rows, in row order.
    fn compact(&self) -> Result<(), StoreError> {
        let mut log = self.lock_log()?;
        let mut rows = self
            .rows
            .write()
            .map_err(|_| StoreError::permanent("index lock poisoned"))?;
        // Its record count would name a point of the old log.
        self.graph_file.remove().map_err(io)?;
        let tmp = log.path.with_extension("compacting");
        {
            let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
            w.write_all(MAGIC).map_err(io)?;
            w.write_all(&(self.dimension as u32).to_le_bytes())
                .map_err(io)?;
            for (row, entry) in rows.entries.iter().enumerate() {
                let vector = &rows.data[row * self.dimension..(row + 1) * self.dimension];
                write_record(
                    &mut w,
                    &encode_upsert(self.dimension, &entry.metadata, &entry.content, vector),
                )
                .map_err(io)?;
            }
            w.flush().map_err(io)?;
            w.get_ref().sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &log.path).map_err(io)?;
        let path = log.path.clone();
        let size = std::fs::metadata(&path).map_err(io)?.len();
        *log = Self::open_log(&path, self.dimension, size)?;
        log.records = rows.entries.len();
        rows.applied = rows.entries.len() as u64;
        Ok(())
    }

    fn lock_log(&self) -> Result<MutexGuard<'_, Log>, StoreError> {
        self.log
            .lock()
            .map_err(|_| StoreError::permanent("index lock poisoned"))
    }

    /// Writes records durably and returns the log still locked: the caller
    /// applies them to the rows before releasing it, so rows change in log
    /// order and a saved graph's record count names one state of the rows.
    fn append(&self, payloads: &[Vec<u8>]) -> Result<MutexGuard<'_, Log>, StoreError> {
        let mut log = self.lock_log()?;
        for payload in payloads {
            write_record(&mut log.writer, payload).map_err(io)?;
        }
        log.writer.flush().map_err(io)?;
        log.writer.get_ref().sync_data().map_err(io)?;
        log.records += payloads.len();
        Ok(log)
    }

    /// After a write: starts the graph once the index is large enough, and
    /// saves it again once it has moved on from the saved one.
    fn tend_graph(&self, rows: &Rows) {
        if rows.graph.is_none() {
            if rows.entries.len() >= self.ann.min_rows {
                rows::build_in_background(
                    &self.rows,
                    &self.building,
                    &self.graph_file,
                    None,
                    self.dimension,
                    self.ann,
                );
            }
        } else if self.graph_file.due(rows) {
            self.graph_file.save_in_background(&self.rows);
        }
    }

    fn graph_ready(&self) -> bool {
        self.rows.read().is_ok_and(|rows| rows.graph.is_some())
    }

    /// `ef_search` of `None` means exact.
    fn search_sync(
        &self,
        query: &[f32],
        top_k: usize,
        filter: &SearchFilter,
        ef_search: Option<usize>,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        if query.len() != self.dimension {
            return Err(StoreError::Invalid(format!(
                "query vector has {} dimensions, the index {}",
                query.len(),
                self.dimension
            )));
        }
        let query = normalized(query);
        let rows = self
            .rows
            .read()
            .map_err(|_| StoreError::permanent("index lock poisoned"))?;
        if let Some(graph) = &rows.graph
            && let Some(ef_search) = ef_search
            && filter.document_ids.is_empty()
        {
            let best = graph.search(&rows.data, &query, top_k, ef_search);
            return Ok(best
                .into_iter()
                .map(|c| result(&rows.entries[c.1 as usize], c.0))
                .collect());
        }
        let best = exact::top_k(&rows, self.dimension, &query, top_k, filter);
        Ok(best
            .into_iter()
            .map(|Candidate(score, row)| result(&rows.entries[row as usize], score))
            .collect())
    }
}

/// Closing the index saves a graph that changed since its last save, so
/// the next start finds it current.
impl Drop for Index {
    fn drop(&mut self) {
        self.graph_file.save_if_unsaved(&self.rows);
    }
}

fn result(entry: &Entry, score: f32) -> VectorSearchResult {
    VectorSearchResult {
        document_id: entry.metadata.document_id,
        chunk_id: entry.metadata.chunk_id.clone(),
        score,
        content: entry.content.clone(),
        metadata: entry.metadata.clone(),
    }
}

impl Index {
    fn upsert(&self, chunks: &[DocumentChunk]) -> Result<(), StoreError> {
        let mut payloads = Vec::with_capacity(chunks.len());
        let mut prepared = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            if chunk.embedding.len() != self.dimension {
                return Err(StoreError::Invalid(format!(
                    "chunk {} has a {}-dimensional embedding, the index takes {}",
                    chunk.metadata.chunk_id,
                    chunk.embedding.len(),
                    self.dimension
                )));
            }
            let vector = normalized(&chunk.embedding);
            payloads.push(encode_upsert(
                self.dimension,
                &chunk.metadata,
                &chunk.content,
                &vector,
            ));
            prepared.push(vector);
        }
        // Log first: a crash after the write replays it; before, nothing changed.
        let log = self.append(&payloads)?;
        let mut rows = self
            .rows
            .write()
            .map_err(|_| StoreError::permanent("index lock poisoned"))?;
        drop(log);
        for (chunk, vector) in chunks.iter().zip(prepared) {
            rows.upsert(
                self.dimension,
                chunk.metadata.clone(),
                chunk.content.clone(),
                &vector,
            );
        }
        self.tend_graph(&rows);
        Ok(())
    }

    fn delete_document(&self, document_id: Uuid) -> Result<usize, StoreError> {
        let present = {
            let rows = self
                .rows
                .read()
                .map_err(|_| StoreError::permanent("index lock poisoned"))?;
            rows.entries
                .iter()
                .any(|e| e.metadata.document_id == document_id)
        };
        if !present {
            return Ok(0);
        }
        let log = self.append(&[encode_delete(document_id)])?;
        let mut rows = self
            .rows
            .write()
            .map_err(|_| StoreError::permanent("index lock poisoned"))?;
        drop(log);
        let deleted = rows.delete_document(self.dimension, document_id);
        self.tend_graph(&rows);
        Ok(deleted)
    }

    fn count(&self) -> Result<usize, StoreError> {
        Ok(self
            .rows
            .read()
            .map_err(|_| StoreError::permanent("index lock poisoned"))?
            .entries
            .len())
    }
}

/// The embedded default's `VectorStore`: a cheap handle on one index per
/// tenant. Each tenant's vectors live in their own log (the `default`
/// tenant's at the path given, where indexes from before tenants already
/// are; any other's at `tenants/<tenant>/<file name>` beside it) with
/// their own rows and graph, so a tenant's search is exact, or graph
/// search over its own rows only, and its top-k is its own however large
/// its neighbours grow.
///
/// Appends (with their fsync), scans and graph searches run on tokio's
/// blocking threads, never on the async runtime, so a large ingest or a
/// 100 ms scan at 1M rows stalls no other request.
#[derive(Clone)]
pub struct LocalVectorIndex {
    inner: Arc<Tenants>,
}

struct Tenants {
    default_path: PathBuf,
    dimension: usize,
    ann: AnnSettings,
    open: RwLock<HashMap<Tenant, Arc<Index>>>,
    /// Held while a tenant's log is opened, so two first calls for one
    /// tenant do not both replay it.
    opening: Mutex<()>,
}

impl Tenants {
    fn path_of(&self, tenant: &Tenant) -> PathBuf {
        if tenant.is_default() {
            return self.default_path.clone();
        }
        let parent = self.default_path.parent().unwrap_or(Path::new("."));
        let name = self
            .default_path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "vectors.log".into());
        parent.join("tenants").join(tenant.as_str()).join(name)
    }

    /// The tenant's index; `None` when it has none yet and `create` is
    /// off (a read of a tenant that never wrote finds nothing). Blocking:
    /// opening replays the log.
    fn index(&self, tenant: &Tenant, create: bool) -> Result<Option<Arc<Index>>, StoreError> {
        if let Some(index) = self.loaded(tenant)? {
            return Ok(Some(index));
        }
        let _opening = self
            .opening
            .lock()
            .map_err(|_| StoreError::permanent("index lock poisoned"))?;
        if let Some(index) = self.loaded(tenant)? {
            return Ok(Some(index));
        }
        let path = self.path_of(tenant);
        if !create && !path.exists() {
            return Ok(None);
        }
        let index = Arc::new(Index::open_with(&path, self.dimension, self.ann)?);
        self.open
            .write()
            .map_err(|_| StoreError::permanent("index lock poisoned"))?
            .insert(tenant.clone(), index.clone());
        Ok(Some(index))
    }

    fn loaded(&self, tenant: &Tenant) -> Result<Option<Arc<Index>>, StoreError> {
        Ok(self
            .open
            .read()
            .map_err(|_| StoreError::permanent("index lock poisoned"))?
            .get(tenant)
            .cloned())
    }
}

impl LocalVectorIndex {
    /// Opens (or creates) the index at `path` for vectors of `dimension`,
    /// with the default graph settings.
    pub fn open(path: &Path, dimension: usize) -> Result<Self, StoreError> {
        Self::open_with(path, dimension, AnnSettings::default())
    }

    /// Opens (or creates) the index at `path` for vectors of `dimension`.
    /// An index built with another dimension is refused: mixing dimensions
    /// would make every search meaningless. The default tenant's index is
    /// opened now, so that check happens at start-up; other tenants' when
    /// they are first used.
    pub fn open_with(path: &Path, dimension: usize, ann: AnnSettings) -> Result<Self, StoreError> {
        let tenants = Tenants {
            default_path: path.to_path_buf(),
            dimension,
            ann,
            open: RwLock::new(HashMap::new()),
            opening: Mutex::new(()),
        };
        tenants.index(&Tenant::default_tenant(), true)?;
        Ok(Self {
            inner: Arc::new(tenants),
        })
    }

    pub fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// Whether the tenant's approximate-search graph is built and in use.
    pub fn graph_ready(&self, tenant: &Tenant) -> bool {
        matches!(self.inner.loaded(tenant), Ok(Some(index)) if index.graph_ready())
    }

    /// Exact search regardless of the graph, on the calling thread: the
    /// judge of its recall, for benchmarks and tests.
    pub fn search_exact(
        &self,
        tenant: &Tenant,
        query: &[f32],
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        match self.inner.index(tenant, false)? {
            Some(index) => index.search_sync(query, top_k, filter, None),
            None => Ok(Vec::new()),
        }
    }

    /// Graph search keeping `ef_search` candidates instead of the
    /// configured number (exact while there is no graph), on the calling
    /// thread: for measuring the trade between speed and recall.
    pub fn search_approximate(
        &self,
        tenant: &Tenant,
        query: &[f32],
        top_k: usize,
        ef_search: usize,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        match self.inner.index(tenant, false)? {
            Some(index) => {
                index.search_sync(query, top_k, &SearchFilter::default(), Some(ef_search))
            }
            None => Ok(Vec::new()),
        }
    }

    /// Runs `work` on the tenant's index on a blocking thread; `None` (no
    /// work done) when the tenant has no index and `create` is off.
    async fn blocking<T: Send + 'static>(
        &self,
        tenant: &Tenant,
        create: bool,
        work: impl FnOnce(&Index) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Option<T>, StoreError> {
        let (inner, tenant) = (self.inner.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || match inner.index(&tenant, create)? {
            Some(index) => work(&index).map(Some),
            None => Ok(None),
        })
        .await
        .map_err(|e| StoreError::permanent(format!("vector index task failed: {e}")))?
    }
}

#[async_trait]
impl VectorStore for LocalVectorIndex {
    async fn upsert(&self, tenant: &Tenant, chunks: &[DocumentChunk]) -> Result<(), StoreError> {
        let chunks = chunks.to_vec();
        self.blocking(tenant, true, move |index| index.upsert(&chunks))
            .await
            .map(|_| ())
    }

    async fn search(
        &self,
        tenant: &Tenant,
        query: &[f32],
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        if query.len() != self.inner.dimension {
            return Err(StoreError::Invalid(format!(
                "query vector has {} dimensions, the index {}",
                query.len(),
                self.inner.dimension
            )));
        }
        let (query, filter) = (query.to_vec(), filter.clone());
        Ok(self
            .blocking(tenant, false, move |index| {
                index.search_sync(&query, top_k, &filter, Some(index.ann.ef_search))
            })
            .await?
            .unwrap_or_default())
    }

    async fn delete_document(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<usize, StoreError> {
        Ok(self
            .blocking(tenant, false, move |index| {
                index.delete_document(document_id)
            })
            .await?
            .unwrap_or(0))
    }

    async fn count(&self, tenant: &Tenant) -> Result<Option<usize>, StoreError> {
        Ok(Some(
            self.blocking(tenant, false, |index| index.count())
                .await?
                .unwrap_or(0),
        ))
    }

    /// `local-hnsw` once any tenant's index searches by graph.
    fn backend_name(&self) -> &'static str {
        let graphs = self
            .inner
            .open
            .read()
            .is_ok_and(|open| open.values().any(|index| index.graph_ready()));
        if graphs { "local-hnsw" } else { "local-exact" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan;
    use rag_core::ChunkMetadata;

    pub(super) fn t() -> Tenant {
        Tenant::default_tenant()
    }

    pub(super) fn chunk(doc: Uuid, index: u32, vector: Vec<f32>) -> DocumentChunk {
        DocumentChunk {
            metadata: ChunkMetadata {
                chunk_id: ChunkMetadata::chunk_id_for(doc, index),
                document_id: doc,
                chunk_index: index,
                start_char: 0,
                end_char: 1,
                token_count: 1,
                location: Default::default(),
            },
            content: format!("chunk {index}"),
            header: String::new(),
            embedding: vector,
        }
    }

    /// Deterministic pseudo-random unit vectors.
    fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn finds_nearest_like_brute_force_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.log");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let vectors = random_vectors(200, 16, 7);
        let query = random_vectors(1, 16, 99).pop().unwrap();
        {
            let index = LocalVectorIndex::open(&path, 16).unwrap();
            let chunks: Vec<DocumentChunk> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| chunk(if i % 2 == 0 { a } else { b }, i as u32, v.clone()))
                .collect();
            index.upsert(&t(), &chunks).await.unwrap();
            index.upsert(&t(), &chunks[..10]).await.unwrap();
            assert_eq!(index.count(&t()).await.unwrap(), Some(200));
        }
        let index = LocalVectorIndex::open(&path, 16).unwrap();
        assert_eq!(index.count(&t()).await.unwrap(), Some(200));
        let hits = index
            .search(&t(), &query, 5, &SearchFilter::default())
            .await
            .unwrap();

        let q = normalized(&query);
        let mut expected: Vec<(f32, usize)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (scan::dot(&q, &normalized(v)), i))
            .collect();
        expected.sort_by(|x, y| y.0.total_cmp(&x.0));
        let got: Vec<u32> = hits.iter().map(|h| h.metadata.chunk_index).collect();
        let want: Vec<u32> = expected[..5].iter().map(|(_, i)| *i as u32).collect();
        assert_eq!(got, want);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        assert!((hits[0].score - expected[0].0).abs() < 1e-5);

        let only_b = index
            .search(
                &t(),
                &query,
                5,
                &SearchFilter {
                    document_ids: vec![b],
                },
            )
            .await
            .unwrap();
        assert!(only_b.iter().all(|h| h.document_id == b));
    }

    #[tokio::test]
    async fn delete_removes_every_vector_of_a_document_durably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.log");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let vectors = random_vectors(50, 8, 3);
        {
            let index = LocalVectorIndex::open(&path, 8).unwrap();
            let chunks: Vec<DocumentChunk> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| chunk(if i < 30 { a } else { b }, i as u32, v.clone()))
                .collect();
            index.upsert(&t(), &chunks).await.unwrap();
            assert_eq!(index.delete_document(&t(), a).await.unwrap(), 30);
            assert_eq!(index.delete_document(&t(), a).await.unwrap(), 0);
        }
        let index = LocalVectorIndex::open(&path, 8).unwrap();
        assert_eq!(index.count(&t()).await.unwrap(), Some(20));
        for v in &vectors {
            let hits = index
                .search(&t(), v, 50, &SearchFilter::default())
                .await
                .unwrap();
            assert!(hits.iter().all(|h| h.document_id == b));
        }
        // The row moved by swap_remove is still found under its own id.
        let hits = index
            .search(&t(), &vectors[49], 1, &SearchFilter::default())
            .await
            .unwrap();
        assert_eq!(hits[0].metadata.chunk_index, 49);
    }

    /// Vectors around the same 6 centres (topics) whatever the seed, so
    /// queries drawn with another seed ask about the stored topics.
    pub(super) fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let centres = random_vectors(6, dim, 0);
        random_vectors(n, dim, seed + 1)
            .into_iter()
            .enumerate()
            .map(|(i, noise)| {
                let centre = &centres[i % centres.len()];
                centre.iter().zip(noise).map(|(c, x)| c + 0.7 * x).collect()
            })
            .collect()
    }

    /// Polls until the background build finishes, under a deadline
    /// generous enough for a loaded 2-core machine.
    pub(super) async fn wait_for_graph(index: &LocalVectorIndex) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if index.graph_ready(&t()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the graph was not built within 120 s");
    }

    pub(super) async fn recall_against_exact(
        index: &LocalVectorIndex,
        queries: &[Vec<f32>],
    ) -> f64 {
        let mut found = 0;
        for query in queries {
            let exact = index
                .search_exact(&t(), query, 10, &SearchFilter::default())
                .unwrap();
            let approximate = index
                .search(&t(), query, 10, &SearchFilter::default())
                .await
                .unwrap();
            assert!(approximate.windows(2).all(|w| w[0].score >= w[1].score));
            found += approximate
                .iter()
                .filter(|a| exact.iter().any(|e| e.chunk_id == a.chunk_id))
                .count();
        }
        found as f64 / (queries.len() * 10) as f64
    }

    /// No search, by `queries` or by stored `rows`, finds the deleted
    /// document `gone`, and the graph still finds 95% of the true top-10.
    pub(super) async fn assert_forgotten(
        index: &LocalVectorIndex,
        gone: Uuid,
        queries: &[Vec<f32>],
        rows: &[Vec<f32>],
    ) {
        for query in queries.iter().chain(rows) {
            let hits = index
                .search(&t(), query, 10, &SearchFilter::default())
                .await
                .unwrap();
            assert!(hits.iter().all(|h| h.document_id != gone));
        }
        let recall = recall_against_exact(index, queries).await;
        assert!(recall >= 0.95, "recall@10 after a delete {recall}");
    }

    #[tokio::test]
    async fn builds_a_graph_past_the_threshold_and_keeps_it_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.log");
        let settings = AnnSettings {
            min_rows: 500,
            ..AnnSettings::default()
        };
        let dim = 24;
        let docs: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
        let vectors = clustered(2000, dim, 11);
        let queries = clustered(30, dim, 12);
        let chunks: Vec<DocumentChunk> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| chunk(docs[i % docs.len()], i as u32, v.clone()))
            .collect();
        {
            let index = LocalVectorIndex::open_with(&path, dim, settings).unwrap();
            index.upsert(&t(), &chunks[..400]).await.unwrap();
            assert!(
                !index.graph_ready(&t()),
                "below the threshold search stays exact"
            );
            assert_eq!(index.backend_name(), "local-exact");
            for batch in chunks[400..1500].chunks(100) {
                index.upsert(&t(), batch).await.unwrap();
            }
            wait_for_graph(&index).await;
            assert_eq!(index.backend_name(), "local-hnsw");
            // Rows written after the graph was installed are linked at once.
            index.upsert(&t(), &chunks[1500..]).await.unwrap();
            let last = index
                .search(&t(), &vectors[1999], 1, &SearchFilter::default())
                .await
                .unwrap();
            assert_eq!(last[0].metadata.chunk_index, 1999);
            let recall = recall_against_exact(&index, &queries).await;
            assert!(recall >= 0.95, "recall@10 {recall}");

            // Deleting a document renumbers rows under the graph.
            assert_eq!(index.delete_document(&t(), docs[3]).await.unwrap(), 200);
            assert_forgotten(&index, docs[3], &queries, &vectors[..50]).await;
            // A filtered search is exact and only sees that document.
            let only = index
                .search(
                    &t(),
                    &queries[0],
                    5,
                    &SearchFilter {
                        document_ids: vec![docs[4]],
                    },
                )
                .await
                .unwrap();
            assert_eq!(only.len(), 5);
            assert!(only.iter().all(|h| h.document_id == docs[4]));
        }
        // Closing saved the graph as the delete left it; reopened, it is
        // back before the first search.
        let index = LocalVectorIndex::open_with(&path, dim, settings).unwrap();
        assert_eq!(index.count(&t()).await.unwrap(), Some(1800));
        assert!(index.graph_ready(&t()));
        let recall = recall_against_exact(&index, &queries).await;
        assert!(recall >= 0.95, "recall@10 after reopening {recall}");
    }

    /// A small tenant beside a large one keeps its own true top-k: each
    /// tenant has its own rows and graph, so the large tenant's graph never
    /// answers for the small one, and neither sees the other's vectors.
    #[tokio::test]
    async fn each_tenant_searches_its_own_rows_exactly_or_by_its_own_graph() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.log");
        let settings = AnnSettings {
            min_rows: 500,
            ..AnnSettings::default()
        };
        let dim = 24;
        let (big, small, graphed) = (
            Tenant::new("big").unwrap(),
            Tenant::new("small").unwrap(),
            Tenant::new("graphed").unwrap(),
        );
        let rows = |n: usize, seed: u64| -> Vec<DocumentChunk> {
            let doc = Uuid::new_v4();
            clustered(n, dim, seed)
                .into_iter()
                .enumerate()
                .map(|(i, v)| chunk(doc, i as u32, v))
                .collect()
        };
        let queries = clustered(30, dim, 99);
        let index = LocalVectorIndex::open_with(&path, dim, settings).unwrap();
        let big_rows = rows(3000, 1);
        for batch in big_rows.chunks(500) {
            index.upsert(&big, batch).await.unwrap();
        }
        let small_rows = rows(100, 2);
        index.upsert(&small, &small_rows).await.unwrap();
        let graphed_rows = rows(800, 3);
        index.upsert(&graphed, &graphed_rows).await.unwrap();
        for tenant in [&big, &graphed] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while !index.graph_ready(tenant) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no graph for {tenant}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        assert!(!index.graph_ready(&small));
        assert_eq!(index.count(&small).await.unwrap(), Some(100));
        assert_eq!(index.count(&t()).await.unwrap(), Some(0));

        let own = |rows: &[DocumentChunk], hits: &[VectorSearchResult]| {
            hits.iter()
                .all(|h| rows.iter().any(|r| r.metadata.chunk_id == h.chunk_id))
        };
        let mut found = 0;
        for query in &queries {
            // Brute force over the small tenant's rows is the truth.
            let q = normalized(query);
            let mut truth: Vec<(f32, &str)> = small_rows
                .iter()
                .map(|r| {
                    let score = scan::dot(&q, &normalized(&r.embedding));
                    (score, r.metadata.chunk_id.as_str())
                })
                .collect();
            truth.sort_by(|x, y| y.0.total_cmp(&x.0));
            let hits = index
                .search(&small, query, 10, &SearchFilter::default())
                .await
                .unwrap();
            let got: Vec<&str> = hits.iter().map(|h| h.chunk_id.as_str()).collect();
            let want: Vec<&str> = truth[..10].iter().map(|(_, id)| *id).collect();
            assert_eq!(got, want);

            let graph_hits = index
                .search(&graphed, query, 10, &SearchFilter::default())
                .await
                .unwrap();
            assert!(own(&graphed_rows, &graph_hits));
            let exact = index
                .search_exact(&graphed, query, 10, &SearchFilter::default())
                .unwrap();
            found += graph_hits
                .iter()
                .filter(|h| exact.iter().any(|e| e.chunk_id == h.chunk_id))
                .count();
            let big_hits = index
                .search(&big, query, 10, &SearchFilter::default())
                .await
                .unwrap();
            assert!(own(&big_rows, &big_hits));
        }
        let recall = found as f64 / (queries.len() * 10) as f64;
        assert!(recall >= 0.95, "recall@10 of the graphed tenant {recall}");

        // Deleting under another tenant's name removes nothing.
        let small_doc = small_rows[0].metadata.document_id;
        assert_eq!(index.delete_document(&big, small_doc).await.unwrap(), 0);
        assert_eq!(index.count(&small).await.unwrap(), Some(100));
        drop(index);
        assert!(dir.path().join("tenants/small/vectors.log").exists());
        let reopened = LocalVectorIndex::open_with(&path, dim, settings).unwrap();
        assert_eq!(reopened.count(&small).await.unwrap(), Some(100));
        assert_eq!(reopened.count(&big).await.unwrap(), Some(3000));
    }

    #[tokio::test]
    async fn drops_a_torn_tail_and_refuses_other_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.log");
        let doc = Uuid::new_v4();
        {
            let index = LocalVectorIndex::open(&path, 4).unwrap();
            index
                .upsert(&t(), &[chunk(doc, 0, vec![1.0, 0.0, 0.0, 0.0])])
                .await
                .unwrap();
            index
                .upsert(&t(), &[chunk(doc, 1, vec![0.0, 1.0, 0.0, 0.0])])
                .await
                .unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        {
            let index = LocalVectorIndex::open(&path, 4).unwrap();
            assert_eq!(index.count(&t()).await.unwrap(), Some(1));
            index
                .upsert(&t(), &[chunk(doc, 2, vec![0.0, 0.0, 1.0, 0.0])])
                .await
                .unwrap();
        }
        assert_eq!(
            LocalVectorIndex::open(&path, 4)
                .unwrap()
                .count(&t())
                .await
                .unwrap(),
            Some(2)
        );
        assert!(matches!(
            LocalVectorIndex::open(&path, 8),
            Err(StoreError::Invalid(_))
        ));
    }
}
