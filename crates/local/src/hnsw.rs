//! A hierarchical navigable small world graph (Malkov and Yashunin, 2016)
//! over the rows of the vector index: approximate top-k search whose cost
//! grows with the logarithm of the row count instead of linearly.
//!
//! The graph holds links only. Vectors stay in the index's row matrix and
//! are passed in on every call, so the graph costs about `2M + 1` u32 per
//! row beside the row's own `dimension` floats. Node `i` is row `i`; when
//! the index removes rows and moves others, [`Graph::renumber`] follows.
//! Rows are unit vectors and similarity is their dot product, higher being
//! closer, as everywhere in the index.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::scan;

mod codec;

/// Levels are drawn from a geometric distribution; 16 levels of fan-out
/// 16 would hold far more rows than memory can.
const MAX_LEVEL: usize = 16;

/// A row (node) and its similarity to the query at hand; ordered by
/// similarity, ties to the lower row, for both the graph and the exact scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate(pub f32, pub u32);
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

/// Which nodes one search has already scored: one bit per node.
struct Visited(Vec<u64>);
impl Visited {
    fn new(nodes: usize) -> Self {
        Self(vec![0; nodes.div_ceil(64)])
    }

    /// True the first time a node is seen.
    fn first_visit(&mut self, node: u32) -> bool {
        let (word, bit) = (node as usize / 64, 1u64 << (node % 64));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

pub(crate) struct Graph {
    dimension: usize,
    /// Links a node keeps on the levels above 0; level 0 keeps twice as
    /// many, as in the paper, because every search ends there.
    m: usize,
    ef_construction: usize,
    level_factor: f64,
    levels: Vec<u8>,
    /// Level-0 links: per node a count, then `2m` slots.
    base: Vec<u32>,
    /// Links above level 0: per node, for each of its levels, a count and
    /// then `m` slots. Most nodes have none.
    upper: Vec<Vec<u32>>,
    entry: Option<u32>,
    rng: u64,
}

impl Graph {
    pub(crate) fn new(dimension: usize, m: usize, ef_construction: usize) -> Self {
        let m = m.max(2);
        Self {
            dimension,
            m,
            ef_construction: ef_construction.max(m),
            level_factor: 1.0 / (m as f64).ln(),
            levels: Vec::new(),
            base: Vec::new(),
            upper: Vec::new(),
            entry: None,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    fn capacity(&self, level: usize) -> usize {
        if level == 0 { 2 * self.m } else { self.m }
    }

    fn vector<'a>(&self, data: &'a [f32], node: u32) -> &'a [f32] {
        let start = node as usize * self.dimension;
        &data[start..start + self.dimension]
    }

    fn similarity(&self, data: &[f32], query: &[f32], node: u32) -> f32 {
        scan::dot(query, self.vector(data, node))
    }

    /// A node's links on one level: a count, then the level's capacity of
    /// slots.
    fn link_group(&self, node: u32, level: usize) -> &[u32] {
        if level == 0 {
            let stride = 2 * self.m + 1;
            &self.base[node as usize * stride..(node as usize + 1) * stride]
        } else {
            let stride = self.m + 1;
            &self.upper[node as usize][(level - 1) * stride..level * stride]
        }
    }

    fn links(&self, node: u32, level: usize) -> &[u32] {
        let group = self.link_group(node, level);
        &group[1..1 + group[0] as usize]
    }

    fn set_links(&mut self, node: u32, level: usize, links: &[u32]) {
        debug_assert!(links.len() <= self.capacity(level));
        let group = if level == 0 {
            let stride = 2 * self.m + 1;
            &mut self.base[node as usize * stride..(node as usize + 1) * stride]
        } else {
            let stride = self.m + 1;
            &mut self.upper[node as usize][(level - 1) * stride..level * stride]
        };
        group[0] = links.len() as u32;
        group[1..1 + links.len()].copy_from_slice(links);
    }

    /// Adds a node with no links at `level` and below.
    fn push_node(&mut self, level: usize) {
        self.levels.push(level as u8);
        self.base.extend(std::iter::repeat_n(0, 2 * self.m + 1));
        self.upper.push(vec![0; level * (self.m + 1)]);
    }

    fn random_level(&mut self) -> usize {
        // splitmix64: a fixed seed keeps builds, and so tests, reproducible.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-uniform.ln() * self.level_factor) as usize).min(MAX_LEVEL)
    }

    /// Adds the next row of `data` (row `len()`) to the graph.
    pub(crate) fn insert(&mut self, data: &[f32]) {
        let node = self.len() as u32;
        let level = self.random_level();
        self.push_node(level);
        self.connect(data, node);
        let top = self.entry.map(|e| self.levels[e as usize] as usize);
        if top.is_none_or(|top| level > top) {
            self.entry = Some(node);
        }
    }

    /// Links a node whose vector changed in place to its new neighbours.
    /// Old links towards it stay: they cost a little search time, never a
    /// wrong answer, because every result is scored against its vector.
    pub(crate) fn relink(&mut self, data: &[f32], node: u32) {
        self.connect(data, node);
    }

    /// Finds a node's neighbours on each of its levels, level by level
    /// from the top, and links both ways.
    fn connect(&mut self, data: &[f32], node: u32) {
        let Some(entry) = self.entry else {
            return;
        };
        let query = self.vector(data, node);
        let level = self.levels[node as usize] as usize;
        let top = self.levels[entry as usize] as usize;
        let mut closest = Candidate(self.similarity(data, query, entry), entry);
        for upper in (level + 1..=top).rev() {
            closest = self.greedy(data, query, closest, upper);
        }
        let mut entries = vec![closest];
        for current in (0..=level.min(top)).rev() {
            let mut visited = Visited::new(self.len());
            let found: Vec<Candidate> = self
                .search_level(
                    data,
                    query,
                    &entries,
                    self.ef_construction,
                    current,
                    &mut visited,
                )
                .into_iter()
                .filter(|c| c.1 != node)
                .collect();
            let chosen = self.select(data, &found, self.m);
            self.set_links(node, current, &chosen);
            for &neighbour in &chosen {
                self.add_link(data, neighbour, node, current);
            }
            if !found.is_empty() {
                entries = found;
            }
        }
    }

    /// Adds `to` to `from`'s links, pruning them by the heuristic if full.
    fn add_link(&mut self, data: &[f32], from: u32, to: u32, level: usize) {
        let links = self.links(from, level);
        if links.contains(&to) {
            return;
        }
        if links.len() < self.capacity(level) {
            let mut grown = links.to_vec();
            grown.push(to);
            self.set_links(from, level, &grown);
            return;
        }
        let origin = self.vector(data, from);
        let mut candidates: Vec<Candidate> = links
            .iter()
            .chain(std::iter::once(&to))
            .map(|&n| Candidate(self.similarity(data, origin, n), n))
            .collect();
        candidates.sort_by(|a, b| b.cmp(a));
        let kept = self.select(data, &candidates, self.capacity(level));
        self.set_links(from, level, &kept);
    }

    /// The paper's neighbour-selection heuristic: walking candidates from
    /// the closest, keep one only if it is closer to the origin than to
    /// every one kept so far. Links then point in diverse directions, which
    /// is what lets a greedy walk cross between clusters.
    fn select(&self, data: &[f32], best_first: &[Candidate], limit: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(limit);
        for candidate in best_first {
            if kept.len() == limit {
                break;
            }
            let vector = self.vector(data, candidate.1);
            if kept
                .iter()
                .all(|&k| self.similarity(data, vector, k) < candidate.0)
            {
                kept.push(candidate.1);
            }
        }
        kept
    }

    /// Moves to a more similar neighbour until there is none.
    fn greedy(&self, data: &[f32], query: &[f32], start: Candidate, level: usize) -> Candidate {
        let mut best = start;
        loop {
            let mut moved = false;
            for &n in self.links(best.1, level) {
                let score = self.similarity(data, query, n);
                if score > best.0 {
                    best = Candidate(score, n);
                    moved = true;
                }
            }
            if !moved {
                return best;
            }
        }
    }

    /// Best-first search of one level that keeps the `ef` most similar
    /// nodes seen; returns them most similar first.
    fn search_level(
        &self,
        data: &[f32],
        query: &[f32],
        entries: &[Candidate],
        ef: usize,
        level: usize,
        visited: &mut Visited,
    ) -> Vec<Candidate> {
        let mut frontier: BinaryHeap<Candidate> = BinaryHeap::new();
        let mut found: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(ef + 1);
        for &entry in entries {
            if visited.first_visit(entry.1) {
                frontier.push(entry);
                found.push(Reverse(entry));
                if found.len() > ef {
                    found.pop();
                }
            }
        }
        while let Some(current) = frontier.pop() {
            let worst = found.peek().map_or(f32::NEG_INFINITY, |w| w.0.0);
            if found.len() >= ef && current.0 < worst {
                break;
            }
            for &n in self.links(current.1, level) {
                if !visited.first_visit(n) {
                    continue;
                }
                let score = self.similarity(data, query, n);
                let worst = found.peek().map_or(f32::NEG_INFINITY, |w| w.0.0);
                if found.len() < ef || score > worst {
                    frontier.push(Candidate(score, n));
                    found.push(Reverse(Candidate(score, n)));
                    if found.len() > ef {
                        found.pop();
                    }
                }
            }
        }
        let mut best: Vec<Candidate> = found.into_iter().map(|Reverse(c)| c).collect();
        best.sort_by(|a, b| b.cmp(a));
        best
    }

    /// The `k` rows most similar to a unit `query`, most similar first,
    /// keeping `ef` (at least `k`) candidates on level 0: more is slower
    /// and finds more of the true neighbours.
    pub(crate) fn search(
        &self,
        data: &[f32],
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Vec<Candidate> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let mut closest = Candidate(self.similarity(data, query, entry), entry);
        for level in (1..=self.levels[entry as usize] as usize).rev() {
            closest = self.greedy(data, query, closest, level);
        }
        let mut visited = Visited::new(self.len());
        let mut best = self.search_level(data, query, &[closest], ef.max(k), 0, &mut visited);
        best.truncate(k);
        best
    }

    /// Follows the index removing rows and moving others: `old_of_new[i]`
    /// is the old node of new row `i`, and old nodes missing from it are
    /// gone. `data` is the row matrix after the move. A node that loses a
    /// link is relinked among its remaining links and the removed nodes'
    /// links, so removals do not cut the graph apart.
    pub(crate) fn renumber(&mut self, data: &[f32], old_of_new: &[u32]) {
        const GONE: u32 = u32::MAX;
        let mut new_of_old = vec![GONE; self.len()];
        for (new, &old) in old_of_new.iter().enumerate() {
            new_of_old[old as usize] = new as u32;
        }
        let mut next = Graph {
            levels: Vec::with_capacity(old_of_new.len()),
            base: Vec::with_capacity(old_of_new.len() * (2 * self.m + 1)),
            upper: Vec::with_capacity(old_of_new.len()),
            entry: None,
            ..Graph::new(self.dimension, self.m, self.ef_construction)
        };
        next.rng = self.rng;
        let mut damaged: Vec<(u32, usize, Vec<u32>)> = Vec::new();
        for (new, &old) in old_of_new.iter().enumerate() {
            let level = self.levels[old as usize] as usize;
            next.push_node(level);
            for current in 0..=level {
                let mut kept = Vec::with_capacity(self.capacity(current));
                let mut pool = Vec::new();
                for &link in self.links(old, current) {
                    match new_of_old[link as usize] {
                        GONE => pool.extend(
                            self.links(link, current)
                                .iter()
                                .map(|&l| new_of_old[l as usize])
                                .filter(|&l| l != GONE && l != new as u32),
                        ),
                        moved => kept.push(moved),
                    }
                }
                next.set_links(new as u32, current, &kept);
                if !pool.is_empty() {
                    pool.extend(&kept);
                    pool.sort_unstable();
                    pool.dedup();
                    damaged.push((new as u32, current, pool));
                }
            }
        }
        next.entry = match self.entry.map(|e| new_of_old[e as usize]) {
            Some(moved) if moved != GONE => Some(moved),
            _ => (0..next.len() as u32).max_by_key(|&n| (next.levels[n as usize], Reverse(n))),
        };
        for (node, level, pool) in damaged {
            let origin = next.vector(data, node);
            let mut candidates: Vec<Candidate> = pool
                .into_iter()
                .map(|n| Candidate(next.similarity(data, origin, n), n))
                .collect();
            candidates.sort_by(|a, b| b.cmp(a));
            let kept = next.select(data, &candidates, next.capacity(level));
            next.set_links(node, level, &kept);
        }
        *self = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        }
    }

    /// Unit vectors around the same 8 centres (topics) whatever the seed,
    /// so queries drawn with another seed ask about the stored topics.
    pub(super) fn clustered(rows: usize, dimension: usize, seed: u64) -> Vec<f32> {
        let mut centre = uniform(0);
        let centres: Vec<Vec<f32>> = (0..8)
            .map(|_| (0..dimension).map(|_| centre()).collect())
            .collect();
        let mut next = uniform(seed);
        let mut data = Vec::with_capacity(rows * dimension);
        for row in 0..rows {
            let centre = &centres[row % centres.len()];
            let v: Vec<f32> = centre.iter().map(|c| c + 0.6 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            data.extend(v.iter().map(|x| x / norm));
        }
        data
    }

    fn exact(data: &[f32], dimension: usize, query: &[f32], k: usize, live: &[u32]) -> Vec<u32> {
        let mut scored: Vec<Candidate> = live
            .iter()
            .map(|&n| {
                let row = &data[n as usize * dimension..(n as usize + 1) * dimension];
                Candidate(scan::dot(query, row), n)
            })
            .collect();
        scored.sort_by(|a, b| b.cmp(a));
        scored.iter().take(k).map(|c| c.1).collect()
    }

    pub(super) fn recall(
        graph: &Graph,
        data: &[f32],
        dimension: usize,
        queries: &[f32],
        ef: usize,
    ) -> f64 {
        let live: Vec<u32> = (0..graph.len() as u32).collect();
        let mut found = 0;
        let mut total = 0;
        for query in queries.chunks_exact(dimension) {
            let truth = exact(data, dimension, query, 10, &live);
            let got = graph.search(data, query, 10, ef);
            assert!(got.windows(2).all(|w| w[0].0 >= w[1].0));
            found += got.iter().filter(|c| truth.contains(&c.1)).count();
            total += truth.len();
        }
        found as f64 / total as f64
    }

    /// A graph of every row of `data`, inserted in order.
    pub(super) fn built(data: &[f32], dimension: usize, m: usize, ef_construction: usize) -> Graph {
        let mut graph = Graph::new(dimension, m, ef_construction);
        for _ in 0..data.len() / dimension {
            graph.insert(data);
        }
        graph
    }

    #[test]
    fn finds_almost_every_true_neighbour() {
        let dimension = 32;
        let data = clustered(3000, dimension, 1);
        let queries = clustered(50, dimension, 2);
        let graph = built(&data, dimension, 16, 100);
        let r = recall(&graph, &data, dimension, &queries, 64);
        assert!(r >= 0.97, "recall@10 {r}");
        // A stored row finds itself first.
        let hit = graph.search(&data, &data[7 * dimension..8 * dimension], 1, 16);
        assert_eq!(hit[0].1, 7);
    }

    #[test]
    fn survives_removals_and_moves() {
        let dimension = 32;
        let mut data = clustered(2000, dimension, 3);
        let queries = clustered(40, dimension, 4);
        let mut graph = built(&data, dimension, 8, 64);
        // Remove every third row, including the entry's, keeping the rest
        // in a shuffled order as the index's swap-removes would.
        let entry = graph.entry.unwrap();
        let mut old_of_new: Vec<u32> = (0..2000u32)
            .filter(|n| n % 3 != 0 && *n != entry)
            .rev()
            .collect();
        old_of_new.swap(0, 500);
        let moved: Vec<f32> = old_of_new
            .iter()
            .flat_map(|&o| data[o as usize * dimension..(o as usize + 1) * dimension].to_vec())
            .collect();
        graph.renumber(&moved, &old_of_new);
        data = moved;
        assert_eq!(graph.len(), old_of_new.len());
        let entry = graph.entry.unwrap() as usize;
        assert_eq!(
            graph.levels[entry],
            *graph.levels.iter().max().unwrap(),
            "the new entry is on the top level"
        );
        for node in 0..graph.len() as u32 {
            for level in 0..=graph.levels[node as usize] as usize {
                assert!(
                    graph
                        .links(node, level)
                        .iter()
                        .all(|&l| (l as usize) < graph.len())
                );
            }
        }
        let r = recall(&graph, &data, dimension, &queries, 64);
        assert!(r >= 0.95, "recall@10 after removals {r}");
        // And it keeps growing afterwards.
        data.extend(clustered(10, dimension, 5));
        for _ in 0..10 {
            graph.insert(&data);
        }
        let last = graph.len() - 1;
        let hit = graph.search(
            &data,
            &data[last * dimension..(last + 1) * dimension],
            1,
            32,
        );
        assert_eq!(hit[0].1 as usize, last);
    }

    #[test]
    fn removing_everything_leaves_an_empty_searchable_graph() {
        let dimension = 4;
        let data = clustered(10, dimension, 6);
        let mut graph = built(&data, dimension, 4, 8);
        graph.renumber(&[], &[]);
        assert_eq!(graph.len(), 0);
        assert!(graph.search(&[], &data[..dimension], 3, 8).is_empty());
    }

    #[test]
    fn a_moved_vector_is_found_at_its_new_place() {
        let dimension = 16;
        let mut data = clustered(500, dimension, 8);
        let mut graph = built(&data, dimension, 8, 32);
        let target = clustered(1, dimension, 99);
        data[42 * dimension..43 * dimension].copy_from_slice(&target);
        graph.relink(&data, 42);
        let hit = graph.search(&data, &target, 1, 32);
        assert_eq!(hit[0].1, 42);
    }
}
