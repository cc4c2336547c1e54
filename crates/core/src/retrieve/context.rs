//! Context assembly: what a model reads for a search's hits.
//!
//! Hits of one document whose text overlaps or touches become one passage,
//! so the overlap that chunking adds is read once; the chunks on either
//! side of a hit are added while a token budget allows ("small to big"), so
//! a sentence cut at a chunk boundary reaches the model whole; and passages
//! keep retrieval's order, so the model reads the best first.

use std::collections::{HashMap, HashSet};

use crate::domain::{ChunkMetadata, VectorSearchResult, estimate_tokens};

/// Tokens of context a model is given when a deployment does not say: the
/// default five hits of ~250 tokens each, and room for about three of
/// their neighbours.
pub const DEFAULT_CONTEXT_TOKENS: usize = 2000;

/// The most a deployment may ask for; more would crowd the answer out of
/// the smaller models' context windows.
pub const MAX_CONTEXT_TOKENS: usize = 100_000;

/// One passage a model reads: the text of one or more adjacent chunks of
/// one document.
#[derive(Debug, Clone, PartialEq)]
pub struct AssembledPassage {
    /// The best-ranked hit the passage holds (an index into the hits); the
    /// passage is cited as that hit.
    pub lead: usize,
    /// Every hit the passage holds, lead first, by index into the hits.
    pub hits: Vec<usize>,
    /// The chunks added beside the hits, by id.
    pub added: Vec<String>,
    /// The chunks' text in document order, each character once.
    pub text: String,
}

/// A passage being built: its chunks in document order.
struct Span<'a> {
    lead: usize,
    hits: Vec<usize>,
    added: Vec<String>,
    chunks: Vec<&'a VectorSearchResult>,
}

impl Span<'_> {
    fn document(&self) -> uuid::Uuid {
        self.chunks[0].document_id
    }

    fn start(&self) -> u64 {
        self.chunks[0].metadata.start_char
    }

    fn end(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| c.metadata.end_char)
            .max()
            .unwrap_or(0)
    }

    /// Whether `chunk` overlaps or touches this passage's text.
    fn touches(&self, chunk: &VectorSearchResult) -> bool {
        chunk.document_id == self.document()
            && chunk.metadata.start_char <= self.end()
            && chunk.metadata.end_char >= self.start()
    }

    fn holds(&self, chunk_id: &str) -> bool {
        self.chunks.iter().any(|c| c.chunk_id == chunk_id)
    }

    fn text(&self) -> String {
        merged_text(&self.chunks)
    }
}

/// The ids of the chunks just before and after each hit, that are not hits
/// themselves: what small-to-big may add.
pub fn neighbour_ids(hits: &[VectorSearchResult]) -> Vec<String> {
    let held: HashSet<&str> = hits.iter().map(|h| h.chunk_id.as_str()).collect();
    let mut ids = Vec::new();
    for hit in hits {
        let index = hit.metadata.chunk_index;
        let beside = [index.checked_sub(1), index.checked_add(1)];
        for neighbour in beside.into_iter().flatten() {
            let id = ChunkMetadata::chunk_id_for(hit.document_id, neighbour);
            if !held.contains(id.as_str()) && !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

/// Assembles the passages for `hits` (best first): hits that overlap or
/// touch merge, then, passage by passage in rank order, the chunk after and
/// the chunk before are added from `neighbours` while the whole context
/// stays within `budget_tokens`. The hits themselves are always included,
/// whatever the budget.
pub fn assemble(
    hits: &[VectorSearchResult],
    neighbours: &[VectorSearchResult],
    budget_tokens: usize,
) -> Vec<AssembledPassage> {
    let mut spans: Vec<Span<'_>> = Vec::new();
    for (rank, hit) in hits.iter().enumerate() {
        match spans
            .iter_mut()
            .find(|s| s.touches(hit) || s.holds(&hit.chunk_id))
        {
            Some(span) => {
                span.hits.push(rank);
                if !span.holds(&hit.chunk_id) {
                    insert_in_order(&mut span.chunks, hit);
                }
            }
            None => spans.push(Span {
                lead: rank,
                hits: vec![rank],
                added: Vec::new(),
                chunks: vec![hit],
            }),
        }
        coalesce(&mut spans);
    }
    let by_id: HashMap<&str, &VectorSearchResult> = neighbours
        .iter()
        .map(|n| (n.chunk_id.as_str(), n))
        .collect();
    let mut used: usize = spans.iter().map(|s| tokens(&s.text())).sum();
    let mut next = 0;
    while next < spans.len() {
        for neighbour in beside(&spans[next], &by_id) {
            if spans.iter().any(|s| s.holds(&neighbour.chunk_id)) {
                continue;
            }
            let before = tokens(&spans[next].text());
            let mut grown = spans[next].chunks.clone();
            insert_in_order(&mut grown, neighbour);
            let cost = tokens(&merged_text(&grown)).saturating_sub(before);
            if used + cost > budget_tokens {
                continue;
            }
            used += cost;
            spans[next].chunks = grown;
            spans[next].added.push(neighbour.chunk_id.clone());
        }
        coalesce(&mut spans);
        next += 1;
    }
    spans
        .into_iter()
        .map(|span| AssembledPassage {
            text: span.text(),
            lead: span.lead,
            hits: span.hits,
            added: span.added,
        })
        .collect()
}

/// The chunk after a passage, then the one before, where `neighbours` has
/// them.
fn beside<'a>(
    span: &Span<'_>,
    neighbours: &HashMap<&str, &'a VectorSearchResult>,
) -> Vec<&'a VectorSearchResult> {
    let document = span.document();
    let first = span.chunks.iter().map(|c| c.metadata.chunk_index).min();
    let last = span.chunks.iter().map(|c| c.metadata.chunk_index).max();
    [
        last.and_then(|i| i.checked_add(1)),
        first.and_then(|i| i.checked_sub(1)),
    ]
    .into_iter()
    .flatten()
    .filter_map(|index| {
        neighbours
            .get(ChunkMetadata::chunk_id_for(document, index).as_str())
            .copied()
    })
    .filter(|n| n.document_id == document)
    .collect()
}

/// Merges passages that have come to overlap (a hit or a neighbour can
/// bridge two), keeping the better-ranked passage's place.
fn coalesce(spans: &mut Vec<Span<'_>>) {
    let mut i = 0;
    while i < spans.len() {
        let mut j = i + 1;
        while j < spans.len() {
            let bridged = spans[j].chunks.iter().any(|c| spans[i].touches(c));
            if bridged {
                let later = spans.remove(j);
                let span = &mut spans[i];
                span.hits.extend(later.hits);
                span.added.extend(later.added);
                for chunk in later.chunks {
                    if !span.holds(&chunk.chunk_id) {
                        insert_in_order(&mut span.chunks, chunk);
                    }
                }
                // The grown passage may now reach one already passed over.
                j = i + 1;
            } else {
                j += 1;
            }
        }
        i += 1;
    }
}

fn insert_in_order<'a>(chunks: &mut Vec<&'a VectorSearchResult>, chunk: &'a VectorSearchResult) {
    let at = chunks.partition_point(|c| {
        (c.metadata.start_char, c.metadata.end_char)
            <= (chunk.metadata.start_char, chunk.metadata.end_char)
    });
    chunks.insert(at, chunk);
}

/// The text of chunks in document order, each character once: a chunk that
/// starts inside the text so far adds only what lies past its end. Chunk
/// offsets count characters of the document, and each chunk's content is
/// exactly its `start_char..end_char`.
fn merged_text(chunks: &[&VectorSearchResult]) -> String {
    let mut text = String::new();
    let mut end: Option<u64> = None;
    for chunk in chunks {
        let (start, stop) = (chunk.metadata.start_char, chunk.metadata.end_char);
        match end {
            Some(reached) if stop <= reached => continue,
            Some(reached) if start <= reached => {
                let skip = (reached - start) as usize;
                text.extend(chunk.content.chars().skip(skip));
            }
            Some(_) => {
                // Not adjacent: only a store whose offsets disagree with
                // its chunk index gets here; the gap is marked.
                text.push_str("\n…\n");
                text.push_str(&chunk.content);
            }
            None => text.push_str(&chunk.content),
        }
        end = Some(end.map_or(stop, |e| e.max(stop)));
    }
    text
}

fn tokens(text: &str) -> usize {
    estimate_tokens(text) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChunkLocation;
    use crate::text::sentences;
    use uuid::Uuid;

    /// A document of numbered sentences, chunked with overlap as ingestion
    /// chunks it: chunk `i` covers `[i * step, i * step + size)`.
    struct Document {
        id: Uuid,
        text: Vec<char>,
    }

    impl Document {
        fn new(sentences: usize) -> Self {
            let text: String = (0..sentences)
                .map(|i| format!("Sentence number {i} says one thing. "))
                .collect();
            Self {
                id: Uuid::new_v4(),
                text: text.chars().collect(),
            }
        }

        fn chunk(&self, index: u32, step: u64, size: u64) -> VectorSearchResult {
            let start = index as u64 * step;
            let end = (start + size).min(self.text.len() as u64);
            let chunk_id = ChunkMetadata::chunk_id_for(self.id, index);
            VectorSearchResult {
                document_id: self.id,
                chunk_id: chunk_id.clone(),
                score: 1.0,
                content: self.text[start as usize..end as usize].iter().collect(),
                metadata: ChunkMetadata {
                    chunk_id,
                    document_id: self.id,
                    chunk_index: index,
                    start_char: start,
                    end_char: end,
                    token_count: 0,
                    location: ChunkLocation::default(),
                },
            }
        }
    }

    fn whole_sentences(text: &str) -> Vec<String> {
        sentences(text)
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| s.starts_with("Sentence") && s.ends_with('.'))
            .collect()
    }

    #[test]
    fn merged_context_never_repeats_a_sentence() {
        let doc = Document::new(200);
        // Chunks of 300 characters every 200: each overlaps the next by
        // 100, which holds whole sentences.
        let hits = [doc.chunk(3, 200, 300), doc.chunk(2, 200, 300)];
        let neighbours = [doc.chunk(1, 200, 300), doc.chunk(4, 200, 300)];
        let passages = assemble(&hits, &neighbours, 10_000);
        assert_eq!(passages.len(), 1, "overlapping hits are one passage");
        let passage = &passages[0];
        assert_eq!(passage.lead, 0);
        assert_eq!(passage.hits, vec![0, 1]);
        let said = whole_sentences(&passage.text);
        let unique: HashSet<&String> = said.iter().collect();
        assert_eq!(said.len(), unique.len(), "a sentence repeats: {said:?}");
        let expected: String = doc.text[200..1100].iter().collect();
        assert_eq!(passage.text, expected, "chunks 1 to 4, read once");
    }

    #[test]
    fn neighbours_are_added_best_hit_first_within_the_budget() {
        let first = Document::new(200);
        let second = Document::new(200);
        let hits = [first.chunk(5, 200, 200), second.chunk(9, 200, 200)];
        let neighbours = [
            first.chunk(4, 200, 200),
            first.chunk(6, 200, 200),
            second.chunk(8, 200, 200),
            second.chunk(10, 200, 200),
        ];
        let hit_tokens: usize = hits.iter().map(|h| tokens(&h.content)).sum();
        let one_chunk = tokens(&neighbours[1].content);
        let passages = assemble(&hits, &neighbours, hit_tokens + one_chunk);
        assert_eq!(passages.len(), 2);
        assert_eq!(passages[0].added, vec![neighbours[1].chunk_id.clone()]);
        assert!(passages[1].added.is_empty(), "the budget is spent");
        assert!(passages[0].text.starts_with(&hits[0].content));
        assert!(passages[0].text.ends_with(&neighbours[1].content));
    }

    #[test]
    fn hits_are_kept_whatever_the_budget_and_stay_in_rank_order() {
        let doc = Document::new(200);
        let other = Document::new(10);
        let hits = [
            doc.chunk(20, 200, 200),
            other.chunk(1, 200, 200),
            doc.chunk(2, 200, 200),
        ];
        let passages = assemble(&hits, &[], 0);
        let leads: Vec<usize> = passages.iter().map(|p| p.lead).collect();
        assert_eq!(leads, vec![0, 1, 2]);
        for (passage, hit) in passages.iter().zip(&hits) {
            assert_eq!(passage.text, hit.content);
        }
    }

    #[test]
    fn a_neighbour_that_bridges_two_hits_merges_them() {
        let doc = Document::new(200);
        let hits = [doc.chunk(3, 200, 200), doc.chunk(5, 200, 200)];
        let neighbours = [doc.chunk(4, 200, 200)];
        let passages = assemble(&hits, &neighbours, 10_000);
        assert_eq!(passages.len(), 1);
        assert_eq!(passages[0].hits, vec![0, 1]);
        let expected: String = doc.text[600..1200].iter().collect();
        assert_eq!(passages[0].text, expected);
    }

    #[test]
    fn neighbour_ids_skip_hits_and_the_start_of_a_document() {
        let doc = Document::new(10);
        let hits = [doc.chunk(0, 200, 200), doc.chunk(1, 200, 200)];
        assert_eq!(
            neighbour_ids(&hits),
            vec![ChunkMetadata::chunk_id_for(doc.id, 2)]
        );
    }
}
