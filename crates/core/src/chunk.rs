//! Splits parsed text into overlapping chunks with exact character offsets,
//! paragraph boundaries first (text-splitter's semantic levels: paragraphs,
//! then lines, sentences, words).

use serde::{Deserialize, Serialize};
use text_splitter::{ChunkConfig, TextSplitter};
use utoipa::ToSchema;

use crate::domain::ChunkLocation;
use crate::error::RagError;
use crate::parse::Section;

mod table;

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
    /// What a request's `chunk_size` and `chunk_overlap` mean: neither is
    /// the deployment's default (`None`); a size alone gets a fifth of it
    /// as overlap (at most the default overlap); an overlap alone goes with
    /// the default size. `validate` checks the result.
    pub fn requested(size: Option<usize>, overlap: Option<usize>) -> Option<Self> {
        if size.is_none() && overlap.is_none() {
            return None;
        }
        let chunk_size = size.unwrap_or(DEFAULT_CHUNK_SIZE);
        Some(Self {
            chunk_size,
            chunk_overlap: overlap.unwrap_or(DEFAULT_CHUNK_OVERLAP.min(chunk_size / 5)),
        })
    }

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

/// The fewest chunks `text` can split into: chunks hold at most
/// `chunk_size` characters and together cover every character that is not
/// whitespace. Lets an oversized document be refused before it is split.
pub fn min_chunk_count(text: &str, options: ChunkingOptions) -> usize {
    let content = text.chars().filter(|c| !c.is_whitespace()).count();
    content.div_ceil(options.chunk_size.max(1))
}

/// A piece of text and where it sits, in characters, and in the
/// document's pages, sheets or slides where it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    pub content: String,
    pub start_char: usize,
    pub end_char: usize,
    pub location: ChunkLocation,
}

/// The short header a chunk is embedded and keyword-indexed with, so that
/// a passage under "Defining an Enum > Enum Values" is found by those
/// words even where its own text never repeats them: the document's title,
/// then the headings it sits under that the title does not already name.
/// It is never part of the chunk's content, whose offsets stay exact.
pub fn chunk_header(title: &str, location: &ChunkLocation) -> String {
    let title = title.trim();
    let title_lower = title.to_lowercase();
    let mut header = title.to_string();
    if let Some(section) = &location.section {
        for heading in section.split(" > ") {
            if heading.is_empty() || title_lower.contains(&heading.to_lowercase()) {
                continue;
            }
            if !header.is_empty() {
                header.push_str(" > ");
            }
            header.push_str(heading);
        }
    }
    header
}

/// What the embedder is given for a chunk: its header and its content.
pub fn embedding_text(header: &str, content: &str) -> String {
    if header.is_empty() {
        content.to_string()
    } else {
        format!("{header}\n\n{content}")
    }
}

/// How much text text-splitter sees at once, in chunks' worth. It looks
/// for the next sentence boundary across the rest of its input for every
/// chunk, so a text without sentence ends costs time quadratic in its
/// length (1 MB in one line: 51 s; 49 MB would be days). Windows of this
/// many chunks make the cost linear; they end where the splitter would cut
/// anyway (a paragraph, line, sentence or word), so only a chunk at a
/// window's edge differs, by not overlapping the next. Where the text has
/// no sentence or line end for two chunks' worth, the window shrinks to
/// that, since there the cost per window grows with its square.
const WINDOW_CHUNKS: usize = 16;
const BREAKLESS_WINDOW_CHUNKS: usize = 2;

/// Splits `text`; every chunk's content equals the characters
/// `start_char..end_char` of `text`.
pub fn chunk_text(text: &str, options: ChunkingOptions) -> Result<Vec<TextChunk>, RagError> {
    options.validate()?;
    let config = ChunkConfig::new(options.chunk_size)
        .with_overlap(options.chunk_overlap)
        .map_err(|e| RagError::invalid(e.to_string()))?;
    let splitter = TextSplitter::new(config);
    let offsets = CharOffsets::new(text);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = window_end(text, start, window_for(text, start, options.chunk_size));
        chunks.extend(
            splitter
                .chunk_indices(&text[start..end])
                .filter(|(_, chunk)| !chunk.trim().is_empty())
                .map(|(byte_start, chunk)| {
                    let start_char = offsets.char_index(start + byte_start);
                    TextChunk {
                        content: chunk.to_string(),
                        start_char,
                        end_char: start_char + chunk.chars().count(),
                        location: ChunkLocation::default(),
                    }
                }),
        );
        start = end;
    }
    Ok(chunks)
}

/// Splits a text with sections (see [`Section`]): each run of prose
/// sections of one page, sheet or slide is split as [`chunk_text`] splits
/// it, its chunks taking that location, and each table by whole rows with
/// its header row repeated (see `table.rs`). Without sections this is
/// [`chunk_text`].
pub fn chunk_sections(
    text: &str,
    sections: &[Section],
    options: ChunkingOptions,
) -> Result<Vec<TextChunk>, RagError> {
    if sections.is_empty() {
        return chunk_text(text, options);
    }
    options.validate()?;
    // Sections come in text order, so each one's character offset is
    // counted on from the last: no table of the whole text's offsets.
    let (mut counted_bytes, mut counted_chars) = (0, 0);
    let mut char_index = |byte: usize| {
        counted_chars += text[counted_bytes..byte].chars().count();
        counted_bytes = byte;
        counted_chars
    };
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < sections.len() {
        if sections[at].table {
            let base = char_index(sections[at].start);
            chunks.extend(table::chunk_table(text, &sections[at], base, options)?);
            at += 1;
            continue;
        }
        // A run is prose of one page, sheet or slide: chunks never cross
        // from one into the next, so each names its own. Within a run the
        // splitter cuts where it would anyway, and a chunk goes by the
        // section it starts in: cutting at every heading instead cost
        // retrieval on both question sets (docs/BENCHMARKS.md).
        let run_end = sections[at..]
            .iter()
            .position(|s| s.table || !same_part(&s.location, &sections[at].location))
            .map_or(sections.len(), |n| at + n);
        let run = &sections[at..run_end];
        let (start, end) = (run[0].start, run[run.len() - 1].end);
        let base = char_index(start);
        let section_starts: Vec<usize> = run.iter().map(|s| char_index(s.start) - base).collect();
        let mut current = 0;
        for mut chunk in chunk_text(&text[start..end], options)? {
            while current + 1 < run.len() && section_starts[current + 1] <= chunk.start_char {
                current += 1;
            }
            chunk.start_char += base;
            chunk.end_char += base;
            chunk.location = run[current].location.clone();
            chunks.push(chunk);
        }
        at = run_end;
    }
    Ok(chunks)
}

/// Whether two locations are the same page, sheet or slide, whatever
/// their sections.
fn same_part(a: &ChunkLocation, b: &ChunkLocation) -> bool {
    a.page == b.page && a.sheet == b.sheet && a.slide == b.slide
}

fn window_for(text: &str, start: usize, chunk_size: usize) -> usize {
    let probe =
        &text.as_bytes()[start..text.len().min(start + BREAKLESS_WINDOW_CHUNKS * chunk_size)];
    if probe.len() == BREAKLESS_WINDOW_CHUNKS * chunk_size
        && !probe
            .iter()
            .any(|b| matches!(b, b'.' | b'!' | b'?' | b'\n'))
    {
        BREAKLESS_WINDOW_CHUNKS * chunk_size
    } else {
        WINDOW_CHUNKS * chunk_size
    }
}

/// Where the window starting at byte `start` ends: the whole rest if it
/// fits, else the last paragraph, line, sentence or word break in the
/// window's second half, else the window's last character boundary.
fn window_end(text: &str, start: usize, window: usize) -> usize {
    if text.len() - start <= window {
        return text.len();
    }
    let mut limit = start + window;
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    let mut half = start + window / 2;
    while !text.is_char_boundary(half) {
        half += 1;
    }
    let searched = &text[half..limit];
    for separator in ["\n\n", "\n", ". ", " "] {
        if let Some(at) = searched.rfind(separator) {
            return half + at + separator.len();
        }
    }
    limit
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

    fn headed(text: &mut String, path: &str, body: &str) -> Section {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(body);
        Section {
            start,
            end: text.len(),
            location: ChunkLocation::in_section(Some(path.to_string())),
            table: false,
        }
    }

    #[test]
    fn a_chunk_goes_by_the_section_it_starts_in() {
        let mut text = String::new();
        let sections = vec![
            headed(
                &mut text,
                "Cmd > Options > --lib",
                "--lib\n\nMake a library.",
            ),
            headed(
                &mut text,
                "Cmd > Options > --bin",
                "--bin\n\nMake a binary.",
            ),
            headed(&mut text, "Cmd > Examples", &"Examples of use. ".repeat(20)),
        ];
        let options = ChunkingOptions {
            chunk_size: 200,
            chunk_overlap: 0,
        };
        let chunks = chunk_sections(&text, &sections, options).unwrap();
        let starts: Vec<(&str, &str)> = chunks
            .iter()
            .map(|c| (c.location.section.as_deref().unwrap(), &c.content[..5]))
            .collect();
        assert_eq!(starts[0], ("Cmd > Options > --lib", "--lib"));
        assert!(starts.last().unwrap().0 == "Cmd > Examples", "{starts:?}");
        let chars: Vec<char> = text.chars().collect();
        for c in &chunks {
            assert_eq!(
                chars[c.start_char..c.end_char].iter().collect::<String>(),
                c.content
            );
            // The section named is the last one starting at or before the
            // chunk.
            let at = sections
                .iter()
                .rev()
                .find(|s| text[..s.start].chars().count() <= c.start_char)
                .unwrap();
            assert_eq!(c.location.section, at.location.section);
        }
    }

    #[test]
    fn chunks_never_cross_pages_even_when_they_would_fit() {
        let mut text = String::new();
        let mut one = headed(&mut text, "A", "page one");
        one.location.page = Some(1);
        let mut two = headed(&mut text, "A", "page two");
        two.location.page = Some(2);
        let chunks = chunk_sections(&text, &[one, two], ChunkingOptions::default()).unwrap();
        let pages: Vec<_> = chunks.iter().map(|c| c.location.page).collect();
        assert_eq!(pages, vec![Some(1), Some(2)]);
    }

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
    fn long_texts_are_split_in_windows_with_exact_offsets() {
        // Paragraphs far past one window, and a run with no break at all.
        let mut text = sample().repeat(20);
        text.push_str(&"x".repeat(40_000));
        text.push_str(&" wörd".repeat(30_000));
        let options = ChunkingOptions::default();
        let chunks = chunk_text(&text, options).unwrap();
        let mut covered = 0;
        for chunk in &chunks {
            assert_eq!(
                char_slice(&text, chunk.start_char, chunk.end_char),
                chunk.content
            );
            assert!(chunk.content.chars().count() <= options.chunk_size);
            let between = char_slice(&text, covered.min(chunk.start_char), chunk.start_char);
            assert!(
                between.trim().is_empty(),
                "text lost before {}",
                chunk.start_char
            );
            covered = covered.max(chunk.end_char);
        }
        assert_eq!(covered, text.chars().count());
        // Windows end on paragraph breaks where there are some.
        let paragraphs = sample().repeat(20);
        for chunk in chunk_text(&paragraphs, options).unwrap() {
            assert!(
                chunk.content.ends_with("a line.") || chunk.end_char == paragraphs.chars().count()
            );
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
