//! Splits parsed text into overlapping chunks with exact character offsets,
//! paragraph boundaries first (text-splitter's semantic levels: paragraphs,
//! then lines, sentences, words).

use serde::{Deserialize, Serialize};
use text_splitter::{ChunkConfig, TextSplitter};
use utoipa::ToSchema;

use crate::error::RagError;

pub const DEFAULT_CHUNK_SIZE: usize = 1000;
pub const DEFAULT_CHUNK_OVERLAP: usize = 200;
const MIN_CHUNK_SIZE: usize = 50;
const MAX_CHUNK_SIZE: usize = 20_000;

/// Chunk size and overlap in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChunkingOptions {
    pub chunk_size: usize,
    pub chunk_overlap: usize,
}

impl Default for ChunkingOptions {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            chunk_overlap: DEFAULT_CHUNK_OVERLAP,
        }
    }
}

impl ChunkingOptions {
    pub fn validate(&self) -> Result<(), RagError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(RagError::invalid(format!(
                "chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} characters"
            )));
        }
        // An overlap past half the size re-embeds most of every chunk: at
        // 50/49, 10 KB of text became 1,991 chunks.
        if self.chunk_overlap > self.chunk_size / 2 {
            return Err(RagError::invalid(format!(
                "chunk_overlap must be at most half of chunk_size ({})",
                self.chunk_size / 2
            )));
        }
        Ok(())
    }
}

/// A piece of text and where it sits, in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    pub content: String,
    pub start_char: usize,
    pub end_char: usize,
}

/// Splits `text`; every chunk's content equals the characters
/// `start_char..end_char` of `text`.
pub fn chunk_text(text: &str, options: ChunkingOptions) -> Result<Vec<TextChunk>, RagError> {
    options.validate()?;
    let config = ChunkConfig::new(options.chunk_size)
        .with_overlap(options.chunk_overlap)
        .map_err(|e| RagError::invalid(e.to_string()))?;
    let splitter = TextSplitter::new(config);
    let offsets = CharOffsets::new(text);
    Ok(splitter
        .chunk_indices(text)
        .filter(|(_, chunk)| !chunk.trim().is_empty())
        .map(|(byte_start, chunk)| {
            let start_char = offsets.char_index(byte_start);
            TextChunk {
                content: chunk.to_string(),
                start_char,
                end_char: start_char + chunk.chars().count(),
            }
        })
        .collect())
}

/// Maps byte offsets to character offsets. Chunks overlap, so lookups go
/// backwards as well as forwards; a sorted table answers both in log time.
struct CharOffsets {
    char_starts: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        Self {
            char_starts: text.char_indices().map(|(i, _)| i).collect(),
        }
    }

    fn char_index(&self, byte_offset: usize) -> usize {
        self.char_starts
            .binary_search(&byte_offset)
            .unwrap_or_else(|insert_at| insert_at)
    }
}

/// The characters `start..end` of `text`; the inverse of the offsets above.
pub fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!(
                "Paragraph {i} talks about ownership, borrowing and lifetimes — ünïcödé ✓. "
            ));
            text.push_str("It has a second sentence that makes it longer than a line.\n\n");
        }
        text
    }

    #[test]
    fn offsets_select_exactly_the_chunk() {
        let text = sample();
        let chunks = chunk_text(&text, ChunkingOptions::default()).unwrap();
        assert!(chunks.len() > 3);
        for chunk in &chunks {
            assert_eq!(
                char_slice(&text, chunk.start_char, chunk.end_char),
                chunk.content
            );
            assert!(chunk.content.chars().count() <= 1000);
        }
    }

    #[test]
    fn consecutive_chunks_overlap_and_cover_the_text() {
        let text = sample();
        let chunks = chunk_text(&text, ChunkingOptions::default()).unwrap();
        for pair in chunks.windows(2) {
            assert!(
                pair[1].start_char < pair[0].end_char,
                "chunks should overlap"
            );
            assert!(pair[1].start_char > pair[0].start_char);
        }
        assert_eq!(chunks[0].start_char, 0);
    }

    #[test]
    fn splits_on_paragraphs_first() {
        let text = sample();
        let chunks = chunk_text(&text, ChunkingOptions::default()).unwrap();
        for chunk in &chunks[..chunks.len() - 1] {
            assert!(chunk.content.ends_with("a line."), "{:?}", chunk.content);
        }
    }

    #[test]
    fn rejects_bad_options() {
        let bad = ChunkingOptions {
            chunk_size: 100,
            chunk_overlap: 100,
        };
        assert!(chunk_text("x", bad).is_err());
        let tiny = ChunkingOptions {
            chunk_size: 1,
            chunk_overlap: 0,
        };
        assert!(chunk_text("x", tiny).is_err());
    }
}
