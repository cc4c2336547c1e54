//! The exact search: scores every row (the SIMD kernel of `scan.rs`, a
//! block at a time) and keeps the best `top_k` in a heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rag_core::SearchFilter;

use super::rows::Rows;
use crate::hnsw::Candidate;
use crate::scan;

/// Rows scored per kernel call: the scores of a block stay in L1 cache
/// while the top-k heap reads them.
const SCAN_BLOCK_ROWS: usize = 1024;

/// The `top_k` rows nearest a normalised `query`, best first, among those
/// the filter allows.
pub(super) fn top_k(
    rows: &Rows,
    dimension: usize,
    query: &[f32],
    top_k: usize,
    filter: &SearchFilter,
) -> Vec<Candidate> {
    let mut heap: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(top_k + 1);
    let mut scores = vec![0f32; SCAN_BLOCK_ROWS];
    for (block, vectors) in rows.data.chunks(SCAN_BLOCK_ROWS * dimension).enumerate() {
        let scores = &mut scores[..vectors.len() / dimension];
        scan::score_rows(query, vectors, scores);
        for (offset, &score) in scores.iter().enumerate() {
            let row = block * SCAN_BLOCK_ROWS + offset;
            if !filter.document_ids.is_empty()
                && !filter.allows(&rows.entries[row].metadata.document_id)
            {
                continue;
            }
            if heap.len() < top_k {
                heap.push(Reverse(Candidate(score, row as u32)));
            } else if let Some(Reverse(worst)) = heap.peek()
                && score > worst.0
            {
                heap.pop();
                heap.push(Reverse(Candidate(score, row as u32)));
            }
        }
    }
    let mut best: Vec<Candidate> = heap.into_iter().map(|Reverse(s)| s).collect();
    best.sort_by(|a, b| b.cmp(a));
    best
}
