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
