//! The index's rows in memory, and the approximate-search graph that
//! follows them once there are enough rows for exact search to be slow.
//!
//! The graph is built on a background thread, so opening a large index or
//! crossing the threshold never blocks a request: searches stay exact
//! until the graph has caught up with every row, then the graph is
//! installed and kept current by every later write, under the same lock as
//! the rows it describes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Instant;

use rag_core::ChunkMetadata;
use uuid::Uuid;

use super::snapshot::GraphFile;
use crate::hnsw::Graph;

/// When and how the index builds its approximate-search graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnSettings {
    /// Below this many rows every search is exact: an exact scan of 10,000
    /// 384-dimensional rows takes about a millisecond.
    pub min_rows: usize,
    /// Links per node (twice as many on the bottom level).
    pub m: usize,
    /// Candidates kept while linking a new row.
    pub ef_construction: usize,
    /// Candidates kept while searching, at least `top_k`.
    pub ef_search: usize,
}

impl Default for AnnSettings {
    fn default() -> Self {
        Self {
            min_rows: 10_000,
            m: 16,
            ef_construction: 100,
            ef_search: 64,
        }
    }
}

impl AnnSettings {
    /// Exact search only, at any size.
    pub fn exact_only() -> Self {
        Self {
            min_rows: usize::MAX,
            ..Self::default()
        }
    }
}

pub(super) struct Entry {
    pub metadata: ChunkMetadata,
    pub content: String,
}

#[derive(Default)]
pub(super) struct Rows {
    /// Row-major, `dimension` floats per row, each row unit length.
    pub data: Vec<f32>,
    pub entries: Vec<Entry>,
    by_chunk: HashMap<String, usize>,
    /// Present once built; from then on it describes every row.
    pub graph: Option<Graph>,
    /// Changes whenever rows move or change in place, so a background build
    /// started before knows its partial graph no longer fits.
    pub generation: u64,
    /// Log records applied so far, in log order: replayed, then written.
    pub applied: u64,
}

impl Rows {
    pub fn upsert(
        &mut self,
        dimension: usize,
        metadata: ChunkMetadata,
        content: String,
        vector: &[f32],
    ) {
        self.applied += 1;
        match self.by_chunk.get(&metadata.chunk_id) {
            Some(&row) => {
                let slot = &mut self.data[row * dimension..(row + 1) * dimension];
                let moved = slot != vector;
                slot.copy_from_slice(vector);
                self.entries[row] = Entry { metadata, content };
                if moved {
                    self.generation += 1;
                    if let Some(graph) = &mut self.graph {
                        graph.relink(&self.data, row as u32);
                    }
                }
            }
            None => {
                self.by_chunk
                    .insert(metadata.chunk_id.clone(), self.entries.len());
                self.data.extend_from_slice(vector);
                self.entries.push(Entry { metadata, content });
                if let Some(graph) = &mut self.graph {
                    graph.insert(&self.data);
                }
            }
        }
    }

    pub fn delete_document(&mut self, dimension: usize, document_id: Uuid) -> usize {
        self.applied += 1;
        let doomed: Vec<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.metadata.document_id == document_id)
            .map(|(i, _)| i)
            .collect();
        if doomed.is_empty() {
            return 0;
        }
        // Which old row each row holds after the swap-removes, for the graph.
        let mut old_of_new: Vec<u32> = (0..self.entries.len() as u32).collect();
        // Highest rows first, so each swap_remove moves a row we keep.
        for &row in doomed.iter().rev() {
            let last = self.entries.len() - 1;
            let removed = self.entries.swap_remove(row);
            old_of_new.swap_remove(row);
            self.by_chunk.remove(&removed.metadata.chunk_id);
            if row != last {
                let (head, tail) = self.data.split_at_mut(last * dimension);
                head[row * dimension..(row + 1) * dimension].copy_from_slice(&tail[..dimension]);
                self.by_chunk
                    .insert(self.entries[row].metadata.chunk_id.clone(), row);
            }
            self.data.truncate(last * dimension);
        }
        self.generation += 1;
        if let Some(graph) = &mut self.graph {
            graph.renumber(&self.data, &old_of_new);
        }
        doomed.len()
    }
}

/// Rows linked per hold of the read lock while building in the
/// background: a writer waits for at most one step, tens of milliseconds.
const BUILD_STEP: usize = 256;

/// Starts building the graph on its own thread unless one is running,
/// from `seed` (a graph of the first rows, valid for the rows' current
/// generation) or from nothing. Once installed the graph is saved to
/// `file`. The thread holds the rows weakly and stops when the index is
/// dropped.
pub(super) fn build_in_background(
    rows: &Arc<RwLock<Rows>>,
    building: &Arc<AtomicBool>,
    file: &Arc<GraphFile>,
    seed: Option<(Graph, u64)>,
    dimension: usize,
    settings: AnnSettings,
) {
    if building.swap(true, Ordering::AcqRel) {
        return;
    }
    let rows = Arc::downgrade(rows);
    let (flag, file) = (Arc::clone(building), Arc::clone(file));
    let spawned = std::thread::Builder::new()
        .name("vector-graph".into())
        .spawn(move || {
            if build(&rows, seed, dimension, settings)
                && let Some(rows) = rows.upgrade()
            {
                file.save_in_background(&rows);
            }
            flag.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        building.store(false, Ordering::Release);
        tracing::warn!(error = %e, "could not start the vector graph builder; searches stay exact");
    }
}

/// True once it installed a graph.
fn build(
    rows: &Weak<RwLock<Rows>>,
    seed: Option<(Graph, u64)>,
    dimension: usize,
    settings: AnnSettings,
) -> bool {
    let started = Instant::now();
    let fresh = || Graph::new(dimension, settings.m, settings.ef_construction);
    let (mut graph, mut generation) = match seed {
        Some((graph, generation)) => (graph, Some(generation)),
        None => (fresh(), None),
    };
    let mut resumed_at = graph.len();
    loop {
        let Some(lock) = rows.upgrade() else {
            return false;
        };
        {
            let Ok(current) = lock.read() else {
                return false;
            };
            if current.graph.is_some() {
                return false;
            }
            if generation != Some(current.generation) {
                graph = fresh();
                generation = Some(current.generation);
                resumed_at = 0;
            }
            let end = current.entries.len().min(graph.len() + BUILD_STEP);
            while graph.len() < end {
                graph.insert(&current.data);
            }
            if graph.len() < current.entries.len() {
                continue;
            }
        }
        let Ok(mut current) = lock.write() else {
            return false;
        };
        if generation == Some(current.generation) && graph.len() == current.entries.len() {
            tracing::info!(
                rows = graph.len(),
                resumed_from_saved_rows = resumed_at,
                seconds = started.elapsed().as_secs_f64(),
                "vector graph built; searches without a document filter are approximate from now on"
            );
            current.graph = Some(graph);
            return true;
        }
    }
}
