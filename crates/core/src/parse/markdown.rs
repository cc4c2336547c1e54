//! Markdown's sections: its ATX headings (`#` to `######`, outside fenced
//! code) cut the text into parts, each located by its heading path.
//! Setext headings (a line underlined with `===` or `---`) are read as
//! text, since `---` alone is also a thematic break.

use super::layout::{Part, split_at_headings};

/// The text as parts, one from each heading to the next.
pub(crate) fn markdown_parts(text: &str) -> Vec<Part> {
    let mut headings = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start_matches(' ');
        // Four spaces of indentation make a code block, never a heading
        // or a fence.
        if line.len() - trimmed.len() < 4 {
            if let Some((mark, length)) = fence_marker(trimmed) {
                fence = match fence {
                    None => Some((mark, length)),
                    Some((open, open_length)) if open == mark && length >= open_length => None,
                    still_open => still_open,
                };
            } else if fence.is_none()
                && let Some((level, heading)) = atx_heading(trimmed)
            {
                headings.push((offset, level, heading));
            }
        }
        offset += line.len();
    }
    split_at_headings(text, headings)
}

/// A fence's character and length: three or more backticks or tildes.
fn fence_marker(line: &str) -> Option<(char, usize)> {
    let mark = line.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let length = line.chars().take_while(|c| *c == mark).count();
    (length >= 3).then_some((mark, length))
}

/// `## Heading ##` as its level and text.
fn atx_heading(line: &str) -> Option<(u8, String)> {
    let level = line.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r'])) {
        return None;
    }
    let mut heading = rest.trim();
    // A closing run of `#` goes when a space precedes it.
    let without_closing = heading.trim_end_matches('#');
    if without_closing.is_empty() || without_closing.ends_with([' ', '\t']) {
        heading = without_closing.trim_end();
    }
    Some((level as u8, heading.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(text: &str) -> Vec<(Option<String>, String)> {
        markdown_parts(text)
            .into_iter()
            .map(|p| (p.location.section, p.text))
            .collect()
    }

    #[test]
    fn headings_cut_sections_with_their_paths() {
        let parts = sections(
            "Intro line.\n\n# Guide\n\n## Install ##\n\nRun it.\n\n```sh\n# not a heading\n```\n\n### Linux\n\napt.\n\n## Use\n\nCall it.\n#hashtag is text\n",
        );
        assert_eq!(
            parts,
            vec![
                (None, "Intro line.\n\n".to_string()),
                (
                    Some("Guide > Install".to_string()),
                    "# Guide\n\n## Install ##\n\nRun it.\n\n```sh\n# not a heading\n```\n\n"
                        .to_string()
                ),
                (
                    Some("Guide > Install > Linux".to_string()),
                    "### Linux\n\napt.\n\n".to_string()
                ),
                (
                    Some("Guide > Use".to_string()),
                    "## Use\n\nCall it.\n#hashtag is text\n".to_string()
                ),
            ]
        );
    }

    #[test]
    fn text_without_headings_is_one_part() {
        assert_eq!(
            sections("just text\n"),
            vec![(None, "just text\n".to_string())]
        );
    }

    #[test]
    fn indented_and_tilde_fenced_hashes_are_not_headings() {
        let parts = sections("# A\n\nx\n\n    # code\n\n~~~~\n# code\n~~~\n~~~~\n\n# B\n\ny\n");
        let paths: Vec<_> = parts.iter().map(|(p, _)| p.clone().unwrap()).collect();
        assert_eq!(paths, vec!["A", "B"]);
    }
}
