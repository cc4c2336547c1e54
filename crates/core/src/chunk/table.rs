//! Chunks of a table: whole rows, as many as fit in a chunk after the
//! header row, which every chunk starts with so a row is never read
//! without the names of its columns. The first chunk's content is exactly
//! its characters of the text; a later chunk's content is the header row,
//! a line break, then its rows, and its offsets cover the rows only. A
//! row too long for a chunk even alone is split as prose is, without the
//! header. Tables have no overlap: the repeated header is their context.

use super::{ChunkingOptions, TextChunk, chunk_text};
use crate::error::RagError;
use crate::parse::Section;

pub(super) fn chunk_table(
    text: &str,
    section: &Section,
    section_char: usize,
    options: ChunkingOptions,
) -> Result<Vec<TextChunk>, RagError> {
    let body = &text[section.start..section.end];
    let (header, rows) = body.split_once('\n').unwrap_or((body, ""));
    let header_start = section.start;
    let header_chars = header.chars().count();
    let emit = |chunks: &mut Vec<TextChunk>, gathered: &Gathered| {
        let covered = &text[gathered.from..gathered.to];
        let content = if gathered.from == header_start {
            covered.to_string()
        } else {
            format!("{header}\n{covered}")
        };
        chunks.push(TextChunk {
            content,
            start_char: gathered.from_char,
            end_char: gathered.to_char,
            location: section.location.clone(),
        });
    };
    let mut chunks = Vec::new();
    // The first chunk covers the header itself; later ones only repeat it.
    let mut current = Some(Gathered {
        from: header_start,
        to: header_start + header.len(),
        from_char: section_char,
        to_char: section_char + header_chars,
        chars: header_chars,
        rows: 0,
    });
    let mut row_start = header_start + header.len() + 1;
    let mut row_char = section_char + header_chars + 1;
    for row in rows.split('\n').filter(|_| !rows.is_empty()) {
        let row_chars = row.chars().count();
        let row_end = row_start + row.len();
        if header_chars + 1 + row_chars > options.chunk_size {
            if let Some(gathered) = current.take().filter(|g| g.rows > 0) {
                emit(&mut chunks, &gathered);
            }
            for mut piece in chunk_text(row, options)? {
                piece.start_char += row_char;
                piece.end_char += row_char;
                piece.location = section.location.clone();
                chunks.push(piece);
            }
        } else {
            if current
                .as_ref()
                .is_some_and(|g| g.chars + 1 + row_chars > options.chunk_size)
            {
                emit(&mut chunks, &current.take().expect("checked"));
            }
            let gathered = current.get_or_insert(Gathered {
                from: row_start,
                to: row_start,
                from_char: row_char,
                to_char: row_char,
                chars: header_chars,
                rows: 0,
            });
            gathered.chars += 1 + row_chars;
            gathered.to = row_end;
            gathered.to_char = row_char + row_chars;
            gathered.rows += 1;
        }
        row_start = row_end + 1;
        row_char += row_chars + 1;
    }
    if let Some(gathered) = current.filter(|g| g.rows > 0 || chunks.is_empty()) {
        emit(&mut chunks, &gathered);
    }
    Ok(chunks)
}

/// Rows gathered for the chunk being built: their bytes `from..to` and
/// characters `from_char..to_char` of the text, the characters of the
/// chunk with the header's, and how many rows there are.
struct Gathered {
    from: usize,
    to: usize,
    from_char: usize,
    to_char: usize,
    chars: usize,
    rows: usize,
}

#[cfg(test)]
mod tests {
    use super::super::chunk_sections;
    use super::*;
    use crate::domain::ChunkLocation;

    fn table_section(text: &str) -> Section {
        Section {
            start: 0,
            end: text.len(),
            location: ChunkLocation::sheet("S"),
            table: true,
        }
    }

    fn options(size: usize) -> ChunkingOptions {
        ChunkingOptions {
            chunk_size: size,
            chunk_overlap: 0,
        }
    }

    #[test]
    fn rows_stay_whole_and_every_chunk_starts_with_the_header() {
        let mut text = String::from("name | city | note");
        for i in 0..40 {
            text.push_str(&format!("\nperson {i} | town {i} | ünïcode row"));
        }
        let chunks = chunk_sections(&text, &[table_section(&text)], options(120)).unwrap();
        assert!(chunks.len() > 5, "{}", chunks.len());
        let mut rows_seen = 0;
        for (n, chunk) in chunks.iter().enumerate() {
            assert!(
                chunk.content.starts_with("name | city | note\n"),
                "{chunk:?}"
            );
            assert!(chunk.content.chars().count() <= 120, "{chunk:?}");
            assert_eq!(chunk.location, ChunkLocation::sheet("S"));
            let covered = super::super::char_slice(&text, chunk.start_char, chunk.end_char);
            if n == 0 {
                assert_eq!(covered, chunk.content);
            } else {
                assert_eq!(format!("name | city | note\n{covered}"), chunk.content);
            }
            for line in chunk.content.lines().skip(1) {
                assert!(line.ends_with("ünïcode row"), "a row was cut: {line:?}");
                rows_seen += 1;
            }
        }
        assert_eq!(rows_seen, 40);
    }

    #[test]
    fn a_row_longer_than_a_chunk_is_split_alone() {
        let long = "word ".repeat(60);
        let text = format!("h1 | h2\na | b\n{} | end\nc | d", long.trim());
        let chunks = chunk_sections(&text, &[table_section(&text)], options(100)).unwrap();
        assert_eq!(chunks[0].content, "h1 | h2\na | b");
        assert!(chunks.iter().any(|c| c.content.contains("end")));
        assert_eq!(chunks.last().unwrap().content, "h1 | h2\nc | d");
        assert!(chunks.iter().all(|c| c.content.chars().count() <= 100));
    }

    #[test]
    fn prose_is_chunked_within_each_location() {
        let text = "Page one text.\n\nPage two text.\n\nh | v\n1 | 2";
        let sections = vec![
            Section {
                start: 0,
                end: 14,
                location: ChunkLocation::page(1),
                table: false,
            },
            Section {
                start: 16,
                end: 30,
                location: ChunkLocation::page(2),
                table: false,
            },
            Section {
                start: 32,
                end: text.len(),
                location: ChunkLocation::default(),
                table: true,
            },
        ];
        let chunks = chunk_sections(text, &sections, options(50)).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].content, "Page one text.");
        assert_eq!(chunks[0].location, ChunkLocation::page(1));
        assert_eq!(chunks[1].content, "Page two text.");
        assert_eq!((chunks[1].start_char, chunks[1].end_char), (16, 30));
        assert_eq!(chunks[1].location, ChunkLocation::page(2));
        assert_eq!(chunks[2].content, "h | v\n1 | 2");
        assert_eq!(chunks[2].start_char, 32);
    }
}
