//! The graph saved beside the log (`vectors.graph` next to `vectors.log`),
//! so reopening a large index does not rebuild its graph from nothing and
//! search exactly for minutes meanwhile.
//!
//! A snapshot names the number of log records it reflects. Reopening
//! replays the log as always and notes the rows as they stood after that
//! many records; the snapshot is used only if those rows are still the
//! first rows, unmoved and unchanged, and their chunk ids match. Rows
//! appended since are linked in the background, as in any build. Anything
//! else (a delete since, another graph setting, a damaged file) falls back
//! to a full build: the snapshot can make a start faster, never a search
//! wrong.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::codec::checksum;
use super::rows::{AnnSettings, Entry, Rows};
use crate::hnsw::Graph;

const MAGIC: &[u8; 8] = b"RAGHNSW1";
/// A generation the rows never reach: the saved state of a graph never
/// saved.
const NOTHING_SAVED: u64 = u64::MAX;
/// Magic, record count, fingerprint of the rows, checksum of the graph.
const HEADER: usize = 8 + 8 + 8 + 4;

/// A graph read back from disk, with what it claims to describe.
pub(super) struct Snapshot {
    /// Log records applied when it was taken.
    pub records: u64,
    fingerprint: u64,
    pub graph: Graph,
}

impl Snapshot {
    /// Whether `entries` begin with the rows this graph was built over.
    pub fn matches(&self, entries: &[Entry]) -> bool {
        entries.len() >= self.graph.len()
            && fingerprint(&entries[..self.graph.len()]) == self.fingerprint
    }
}

/// FNV-1a over the chunk ids in row order: cheap, and enough to notice
/// rows that are not the ones the graph was built over.
fn fingerprint(entries: &[Entry]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for entry in entries {
        for &b in entry.metadata.chunk_id.as_bytes().iter().chain(&[0xff]) {
            hash ^= b as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Where the graph is saved, and which state of the rows it last saved.
pub(super) struct GraphFile {
    path: PathBuf,
    /// Set while a background save is queued or running.
    saving: AtomicBool,
    /// Held for a whole save, so two never write the file at once.
    writing: Mutex<()>,
    saved_records: AtomicU64,
    saved_generation: AtomicU64,
}

impl GraphFile {
    /// The graph file of the log at `log_path`.
    pub fn beside(log_path: &Path) -> Self {
        Self {
            path: log_path.with_extension("graph"),
            saving: AtomicBool::new(false),
            writing: Mutex::new(()),
            saved_records: AtomicU64::new(0),
            saved_generation: AtomicU64::new(NOTHING_SAVED),
        }
    }

    /// The saved graph if there is a well-formed one built with `settings`
    /// for vectors of `dimension`. A missing file is the usual case and
    /// says nothing; a refused one is logged.
    pub fn read(&self, dimension: usize, settings: AnnSettings) -> Option<Snapshot> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the saved vector graph; rebuilding it");
                return None;
            }
        };
        let snapshot = (|| {
            let (header, body) = bytes.split_at_checked(HEADER)?;
            if &header[..8] != MAGIC {
                return None;
            }
            let word =
                |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
            let sum = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes"));
            if checksum(body) != sum {
                return None;
            }
            Some(Snapshot {
                records: word(8),
                fingerprint: word(16),
                graph: Graph::decode(body, dimension, settings.m, settings.ef_construction)?,
            })
        })();
        if snapshot.is_none() {
            tracing::warn!(path = %self.path.display(), "the saved vector graph is damaged or was built with other settings; rebuilding it");
        }
        snapshot
    }

    /// Notes that the saved graph reflects `records` log records and the
    /// rows' `generation` (a snapshot just loaded).
    pub fn mark_saved(&self, records: u64, generation: u64) {
        self.saved_records.store(records, Ordering::Release);
        self.saved_generation.store(generation, Ordering::Release);
    }

    /// Forgets the saved graph: after a compaction its record count means
    /// nothing. The graph in memory, if any, is saved again on the next
    /// write or on close.
    pub fn remove(&self) -> std::io::Result<()> {
        self.mark_saved(0, NOTHING_SAVED);
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether the rows have moved on far enough from the last save to
    /// write another: any delete or changed vector (the saved graph no
    /// longer fits), or growth by a tenth (the catch-up after a restart
    /// stays short).
    pub fn due(&self, rows: &Rows) -> bool {
        rows.graph.is_some()
            && (rows.generation != self.saved_generation.load(Ordering::Acquire)
                || rows
                    .applied
                    .saturating_sub(self.saved_records.load(Ordering::Acquire))
                    >= (rows.entries.len() as u64 / 10).max(1_000))
    }

    /// Whether anything at all happened since the last save.
    fn unsaved(&self, rows: &Rows) -> bool {
        rows.graph.is_some()
            && (rows.generation != self.saved_generation.load(Ordering::Acquire)
                || rows.applied != self.saved_records.load(Ordering::Acquire))
    }

    /// Saves the graph on its own thread unless a save is running.
    pub fn save_in_background(self: &Arc<Self>, rows: &Arc<RwLock<Rows>>) {
        if self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        let (file, rows) = (Arc::clone(self), Arc::downgrade(rows));
        let spawned = std::thread::Builder::new()
            .name("vector-graph-save".into())
            .spawn(move || {
                while let Some(rows) = rows.upgrade() {
                    let saved = file.save(&rows, false);
                    // Writes during the save found the flag set and left
                    // their save to this thread: look again after clearing
                    // it, unless a newer writer has taken it meanwhile. A
                    // failed save waits for the next write to try again.
                    file.saving.store(false, Ordering::Release);
                    let again = saved && rows.read().is_ok_and(|current| file.due(&current));
                    if !again || file.saving.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
                file.saving.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.saving.store(false, Ordering::Release);
            tracing::warn!(error = %e, "could not start saving the vector graph");
        }
    }

    /// Saves now if anything changed since the last save (on close).
    pub fn save_if_unsaved(&self, rows: &RwLock<Rows>) {
        self.save(rows, true);
    }

    /// Encodes under the read lock; checksums and writes after releasing
    /// it, so writers wait for a copy of the links, not for the disk.
    /// False if it tried and failed.
    fn save(&self, rows: &RwLock<Rows>, only_if_unsaved: bool) -> bool {
        let Ok(_writing) = self.writing.lock() else {
            return false;
        };
        let encoded = {
            let Ok(rows) = rows.read() else {
                return false;
            };
            let Some(graph) = rows.graph.as_ref() else {
                return true;
            };
            if only_if_unsaved && !self.unsaved(&rows) {
                return true;
            }
            let mut body = Vec::new();
            graph.encode(&mut body);
            let fingerprint = fingerprint(&rows.entries[..graph.len()]);
            (body, fingerprint, rows.applied, rows.generation)
        };
        let (body, fingerprint, records, generation) = encoded;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&records.to_le_bytes());
        header.extend_from_slice(&fingerprint.to_le_bytes());
        header.extend_from_slice(&checksum(&body).to_le_bytes());
        let tmp = self.path.with_extension("graph-saving");
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&header)?;
            file.write_all(&body)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        match written {
            Ok(()) => {
                self.mark_saved(records, generation);
                tracing::debug!(path = %self.path.display(), bytes = header.len() + body.len(), "vector graph saved");
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(path = %self.path.display(), error = %e, "could not save the vector graph; a restart will rebuild it");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rag_core::{DocumentChunk, SearchFilter, VectorStore};
    use uuid::Uuid;

    use super::super::tests::{
        assert_forgotten, chunk, clustered, recall_against_exact, t, wait_for_graph,
    };
    use super::super::{AnnSettings, LocalVectorIndex};

    const DIM: usize = 24;

    fn settings() -> AnnSettings {
        AnnSettings {
            min_rows: 500,
            ..AnnSettings::default()
        }
    }

    fn chunks(docs: &[Uuid], vectors: &[Vec<f32>], first: usize) -> Vec<DocumentChunk> {
        vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                chunk(
                    docs[(first + i) % docs.len()],
                    (first + i) as u32,
                    v.clone(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_saved_graph_is_loaded_resumed_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.log");
        let graph_path = dir.path().join("vectors.graph");
        let docs: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
        let vectors = clustered(2400, DIM, 21);
        let queries = clustered(30, DIM, 22);
        {
            let index = LocalVectorIndex::open_with(&path, DIM, settings()).unwrap();
            for (at, batch) in vectors[..1600].chunks(200).enumerate() {
                index
                    .upsert(&t(), &chunks(&docs, batch, at * 200))
                    .await
                    .unwrap();
            }
            wait_for_graph(&index).await;
        }
        assert!(graph_path.exists(), "closing the index saves its graph");

        // Reopened, the graph is there before any background build could be.
        {
            let index = LocalVectorIndex::open_with(&path, DIM, settings()).unwrap();
            assert!(index.graph_ready(&t()), "the saved graph covers every row");
            let recall = recall_against_exact(&index, &queries).await;
            assert!(recall >= 0.95, "recall@10 of the loaded graph {recall}");
        }

        // Rows written while the graph was not kept (exact-only settings)
        // are linked onto the saved graph after reopening.
        {
            let index = LocalVectorIndex::open_with(&path, DIM, AnnSettings::exact_only()).unwrap();
            index
                .upsert(&t(), &chunks(&docs, &vectors[1600..], 1600))
                .await
                .unwrap();
        }
        {
            let index = LocalVectorIndex::open_with(&path, DIM, settings()).unwrap();
            wait_for_graph(&index).await;
            let last = index
                .search(&t(), &vectors[2399], 1, &SearchFilter::default())
                .await
                .unwrap();
            assert_eq!(last[0].metadata.chunk_index, 2399);
            let recall = recall_against_exact(&index, &queries).await;
            assert!(recall >= 0.95, "recall@10 of the resumed graph {recall}");
        }

        // A delete written without the graph makes the saved one unfit, and
        // a damaged file is refused: both are rebuilt, never trusted.
        {
            let index = LocalVectorIndex::open_with(&path, DIM, AnnSettings::exact_only()).unwrap();
            assert_eq!(index.delete_document(&t(), docs[2]).await.unwrap(), 300);
        }
        for damage in [false, true] {
            if damage {
                let mut bytes = std::fs::read(&graph_path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x55;
                std::fs::write(&graph_path, bytes).unwrap();
            }
            let index = LocalVectorIndex::open_with(&path, DIM, settings()).unwrap();
            wait_for_graph(&index).await;
            assert_forgotten(&index, docs[2], &queries, &vectors[..40]).await;
        }
    }

    #[tokio::test]
    async fn a_compaction_keeps_a_fitting_graph_and_saves_it_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.log");
        let graph_path = dir.path().join("vectors.graph");
        let docs = [Uuid::new_v4(), Uuid::new_v4()];
        let vectors = clustered(600, DIM, 41);
        let queries = clustered(20, DIM, 42);
        let rows = chunks(&docs, &vectors, 0);
        {
            let index = LocalVectorIndex::open_with(&path, DIM, settings()).unwrap();
            index.upsert(&t(), &rows).await.unwrap();
            wait_for_graph(&index).await;
        }
        // The same rows written again: records pile up, rows do not move.
        {
            let index = LocalVectorIndex::open_with(&path, DIM, AnnSettings::exact_only()).unwrap();
            for _ in 0..3 {
                index.upsert(&t(), &rows).await.unwrap();
            }
        }
        let log_before = std::fs::metadata(&path).unwrap().len();
        {
            let index = LocalVectorIndex::open_with(&path, DIM, settings()).unwrap();
            assert!(
                std::fs::metadata(&path).unwrap().len() < log_before / 3,
                "compacted"
            );
            assert!(
                index.graph_ready(&t()),
                "the graph still fits the compacted rows"
            );
            assert!(!graph_path.exists(), "its record count named the old log");
        }
        assert!(graph_path.exists(), "closing saves it against the new log");
        let index = LocalVectorIndex::open_with(&path, DIM, settings()).unwrap();
        assert!(index.graph_ready(&t()));
        let recall = recall_against_exact(&index, &queries).await;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[tokio::test]
    async fn a_growing_graph_is_saved_again_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.log");
        let graph_path = dir.path().join("vectors.graph");
        let docs = [Uuid::new_v4()];
        let vectors = clustered(2200, DIM, 31);
        let index = LocalVectorIndex::open_with(&path, DIM, settings()).unwrap();
        index
            .upsert(&t(), &chunks(&docs, &vectors[..600], 0))
            .await
            .unwrap();
        wait_for_graph(&index).await;
        let first = wait_for_file(&graph_path, None).await;
        // 1,000 new rows (the least that warrants a save) bring another.
        index
            .upsert(&t(), &chunks(&docs, &vectors[600..1600], 600))
            .await
            .unwrap();
        let second = wait_for_file(&graph_path, Some(first)).await;
        assert!(second > first, "the later save holds more nodes");
    }

    /// Waits until the graph file exists and differs in size from `before`.
    async fn wait_for_file(path: &std::path::Path, before: Option<u64>) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            if let Ok(meta) = std::fs::metadata(path)
                && Some(meta.len()) != before
            {
                return meta.len();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the graph was not saved within 120 s");
    }
}
