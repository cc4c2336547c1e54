//! The parts a document's text is made of, where its format has parts:
//! pages of a PDF, sheets of a spreadsheet, slides of a presentation, and
//! the tables among them. Parsers of such formats return [`Part`]s;
//! [`assemble`] joins them into the document's one text and records each
//! part's place in it as a [`Section`], which the chunker reads to keep
//! table rows whole and to give each chunk its page, sheet or slide.

use serde::{Deserialize, Serialize};

use super::normalize_text;
use crate::domain::ChunkLocation;

/// A stretch of the parsed text: byte offsets `start..end` into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub start: usize,
    pub end: usize,
    #[serde(default, skip_serializing_if = "ChunkLocation::is_empty")]
    pub location: ChunkLocation,
    /// A table: one row per line, its first line the header row, which
    /// every chunk of the table repeats.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub table: bool,
}

/// What a parser of a format with parts hands back, in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub location: ChunkLocation,
    pub text: String,
    pub table: bool,
}

impl Part {
    pub fn prose(location: ChunkLocation, text: String) -> Self {
        Self {
            location,
            text,
            table: false,
        }
    }

    /// A table from its rows, the header row first. Cells are joined with
    /// ` | ` and each row is one line, so a row's line breaks become
    /// spaces.
    pub fn table(location: ChunkLocation, rows: &[Vec<String>]) -> Self {
        let mut text = String::new();
        for row in rows {
            let line = row
                .iter()
                .map(|cell| cell.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(" | ");
            if line.replace('|', "").trim().is_empty() {
                continue;
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        Self {
            location,
            text,
            table: true,
        }
    }
}

/// The longest heading path kept, in characters; a longer one keeps its
/// last headings. S3 Vectors counts a chunk's filterable metadata, the
/// path among it, against 2 KB per vector.
const MAX_SECTION_PATH_CHARS: usize = 300;
const SECTION_SEPARATOR: &str = " > ";

/// A text cut at each heading (`(byte offset, level 1-6, heading text)`,
/// in text order), each part located by the path of headings it sits
/// under: a heading closes the sections of its own and deeper levels. A
/// heading with no text of its own before the next one opens no part: its
/// text joins the next part, which goes by the deeper path.
pub(crate) fn split_at_headings(text: &str, headings: Vec<(usize, u8, String)>) -> Vec<Part> {
    split_at_headings_under(text, headings, &mut HeadingPath::default())
}

/// The headings open at a point of a document, outermost first, each with
/// its level.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadingPath(Vec<(u8, String)>);

impl HeadingPath {
    /// Where a part under these headings is.
    pub fn location(&self) -> ChunkLocation {
        ChunkLocation::in_section(section_path(self.0.iter().map(|(_, h)| h.as_str())))
    }
}

/// [`split_at_headings`] for a text that goes on under the headings of
/// `path` (a document read in pieces, with tables between them), leaving
/// `path` as the text ends.
pub(crate) fn split_at_headings_under(
    text: &str,
    headings: Vec<(usize, u8, String)>,
    open: &mut HeadingPath,
) -> Vec<Part> {
    let mut parts = Vec::new();
    let path = &mut open.0;
    let mut start = 0;
    let mut location =
        ChunkLocation::in_section(section_path(path.iter().map(|(_, h)| h.as_str())));
    for (at, level, heading) in headings {
        let body = &text[start..at];
        // Markdown's heading line keeps its `#`s in the text.
        let bare = body.trim().trim_matches('#');
        let heading_only = path
            .last()
            .is_some_and(|(_, h)| words_of(bare) == words_of(h));
        if !body.trim().is_empty() && !heading_only {
            parts.push(Part::prose(location.clone(), body.to_string()));
            start = at;
        }
        while path.last().is_some_and(|(l, _)| *l >= level) {
            path.pop();
        }
        let heading = words_of(&heading);
        if !heading.is_empty() {
            path.push((level, heading));
        }
        location = ChunkLocation::in_section(section_path(path.iter().map(|(_, h)| h.as_str())));
    }
    let rest = &text[start..];
    if !rest.trim().is_empty() {
        parts.push(Part::prose(location, rest.to_string()));
    }
    parts
}

fn words_of(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Headings joined outermost first, cut to [`MAX_SECTION_PATH_CHARS`]
/// from the front; `None` for no headings.
pub(crate) fn section_path<'a>(headings: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut kept: Vec<&str> = headings.collect();
    let length = |kept: &[&str]| {
        kept.iter().map(|h| h.chars().count()).sum::<usize>()
            + SECTION_SEPARATOR.len() * kept.len().saturating_sub(1)
    };
    while kept.len() > 1 && length(&kept) > MAX_SECTION_PATH_CHARS {
        kept.remove(0);
    }
    let path = kept.join(SECTION_SEPARATOR);
    match path.chars().count() {
        0 => None,
        n if n > MAX_SECTION_PATH_CHARS => {
            Some(path.chars().take(MAX_SECTION_PATH_CHARS).collect())
        }
        _ => Some(path),
    }
}

/// Joins parts with blank lines between them, each normalised on its own
/// (so a table never gains a blank line inside it), and says where each
/// landed. Parts with no text are left out.
pub(crate) fn assemble(parts: Vec<Part>) -> (String, Vec<Section>) {
    let mut text = String::new();
    let mut sections = Vec::with_capacity(parts.len());
    for part in parts {
        let body = if part.table {
            part.text
                .lines()
                .map(|line| normalize_text(line).replace('\n', " "))
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            normalize_text(&part.text)
        };
        if body.trim().is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(&body);
        sections.push(Section {
            start,
            end: text.len(),
            location: part.location,
            table: part.table,
        });
    }
    (text, sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_nest_close_and_a_bare_heading_joins_the_next_part() {
        let text = "lead\n\nBook\n\nChapter\n\nbody one\n\nOther\n\nbody two";
        let at = |needle: &str| text.find(needle).unwrap();
        let parts = split_at_headings(
            text,
            vec![
                (at("Book"), 1, "Book".into()),
                (at("Chapter"), 2, "Chapter".into()),
                (at("Other"), 2, " Other ".into()),
            ],
        );
        let got: Vec<(Option<&str>, &str)> = parts
            .iter()
            .map(|p| (p.location.section.as_deref(), p.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, "lead\n\n"),
                (Some("Book > Chapter"), "Book\n\nChapter\n\nbody one\n\n"),
                (Some("Book > Other"), "Other\n\nbody two"),
            ]
        );
    }

    #[test]
    fn long_heading_paths_keep_their_deepest_headings() {
        let long = "h".repeat(200);
        let path = section_path([long.as_str(), long.as_str(), "Last"].into_iter()).unwrap();
        assert_eq!(path, format!("{long} > Last"));
        let one = "x".repeat(400);
        assert_eq!(
            section_path([one.as_str()].into_iter()).unwrap().len(),
            MAX_SECTION_PATH_CHARS
        );
        assert_eq!(section_path(std::iter::empty()), None);
    }

    #[test]
    fn parts_are_joined_and_located() {
        let (text, sections) = assemble(vec![
            Part::prose(
                ChunkLocation::page(1),
                "First page.\r\n\r\n\r\nStill one.".into(),
            ),
            Part::prose(ChunkLocation::page(2), "   ".into()),
            Part::table(
                ChunkLocation::sheet("Q1"),
                &[
                    vec!["name".into(), "amount".into()],
                    vec!["".into(), "".into()],
                    vec!["tea\nleaves".into(), "3".into()],
                ],
            ),
        ]);
        assert_eq!(
            text,
            "First page.\n\nStill one.\n\nname | amount\ntea leaves | 3"
        );
        assert_eq!(sections.len(), 2);
        assert_eq!(
            &text[sections[0].start..sections[0].end],
            "First page.\n\nStill one."
        );
        assert_eq!(sections[1].location, ChunkLocation::sheet("Q1"));
        assert!(sections[1].table);
        assert_eq!(
            &text[sections[1].start..sections[1].end],
            "name | amount\ntea leaves | 3"
        );
    }
}
