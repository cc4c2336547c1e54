//! Word documents (`.docx`): the paragraphs, headings, list items and
//! tables of `word/document.xml`, in reading order. Headings become
//! Markdown headings and list items `- ` lines, so the chunker sees the
//! document's structure; each table becomes a table part whose chunks
//! repeat its header row. Text is only what sits in `w:t` runs: field
//! codes, deleted revisions and drawing internals are left out.

use super::archive::Archive;
use super::layout::{HeadingPath, Part, split_at_headings_under};
use super::xml::{XmlEvent, walk};
use crate::error::ParseError;

const FORMAT: &str = "DOCX";

pub(crate) fn docx_to_parts(bytes: &[u8]) -> Result<(Option<String>, Vec<Part>), ParseError> {
    let mut archive = Archive::open(bytes, FORMAT)?;
    let document = archive.require("word/document.xml")?;
    let mut body = Body::default();
    walk(&document, FORMAT, |event| {
        body.visit(event);
        Ok(())
    })?;
    let title = match archive.read("docProps/core.xml")? {
        Some(core) => core_title(&core, FORMAT)?,
        None => None,
    };
    let first_heading = body.first_heading.take();
    Ok((title.or(first_heading), body.finish()))
}

/// The `dc:title` of an Office file's `docProps/core.xml`, if it has one.
pub(crate) fn core_title(core: &[u8], format: &'static str) -> Result<Option<String>, ParseError> {
    let mut in_title = false;
    let mut title = String::new();
    walk(core, format, |event| {
        match event {
            XmlEvent::Start(e) if e.name == "title" => in_title = true,
            XmlEvent::End("title") => in_title = false,
            XmlEvent::Text(t) if in_title => title.push_str(&t),
            _ => {}
        }
        Ok(())
    })?;
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((!title.is_empty()).then_some(title))
}

#[derive(Default)]
struct Body {
    parts: Vec<Part>,
    prose: String,
    paragraph: Option<Paragraph>,
    in_text: bool,
    /// Tables nest; only the outermost one becomes a table part, and the
    /// text of tables inside its cells joins the cell.
    table_depth: usize,
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
    first_heading: Option<String>,
    /// The headings of the prose gathered so far: byte offset, level,
    /// text.
    headings: Vec<(usize, u8, String)>,
    /// The headings open where the prose gathered so far starts.
    path: HeadingPath,
}

#[derive(Default)]
struct Paragraph {
    text: String,
    heading: Option<usize>,
    list_item: bool,
}

impl Body {
    fn visit(&mut self, event: XmlEvent<'_>) {
        match event {
            XmlEvent::Start(e) => match e.name {
                "p" => self.paragraph = Some(Paragraph::default()),
                "pStyle" => {
                    if let (Some(p), Some(style)) = (&mut self.paragraph, e.attribute("val")) {
                        p.heading = heading_level(&style);
                        // `ListBullet`, `ListNumber`, `ListParagraph`: the
                        // style numbers the paragraph, not a `w:numPr`.
                        p.list_item |= style.starts_with("List");
                    }
                }
                "numPr" => {
                    if let Some(p) = &mut self.paragraph {
                        p.list_item = true;
                    }
                }
                "t" => self.in_text = true,
                "tab" => self.push_text("\t"),
                "br" | "cr" => self.push_text("\n"),
                "tbl" => {
                    if self.table_depth == 0 {
                        self.flush_prose();
                        self.rows.clear();
                    }
                    self.table_depth += 1;
                }
                "tr" if self.table_depth == 1 => self.row.clear(),
                "tc" if self.table_depth == 1 => self.cell.clear(),
                _ => {}
            },
            XmlEvent::Text(text) if self.in_text => self.push_text(&text),
            XmlEvent::Text(_) => {}
            XmlEvent::End(name) => match name {
                "t" => self.in_text = false,
                "p" => self.end_paragraph(),
                "tc" if self.table_depth == 1 => {
                    self.row.push(std::mem::take(&mut self.cell));
                }
                "tr" if self.table_depth == 1 => {
                    self.rows.push(std::mem::take(&mut self.row));
                }
                "tbl" => {
                    self.table_depth = self.table_depth.saturating_sub(1);
                    if self.table_depth == 0 {
                        let rows = std::mem::take(&mut self.rows);
                        self.parts.push(Part::table(self.path.location(), &rows));
                    }
                }
                _ => {}
            },
        }
    }

    fn push_text(&mut self, text: &str) {
        if let Some(p) = &mut self.paragraph {
            p.text.push_str(text);
        }
    }

    fn end_paragraph(&mut self) {
        let Some(p) = self.paragraph.take() else {
            return;
        };
        let text = p.text.trim();
        if text.is_empty() {
            return;
        }
        if self.table_depth > 0 {
            if !self.cell.is_empty() {
                self.cell.push(' ');
            }
            self.cell.push_str(text);
            return;
        }
        match (p.heading, p.list_item) {
            (Some(level), _) => {
                if self.first_heading.is_none() {
                    self.first_heading = Some(text.to_string());
                }
                let level_u8 = u8::try_from(level.clamp(1, 6)).unwrap_or(6);
                self.headings
                    .push((self.prose.len(), level_u8, text.to_string()));
                self.prose.push_str(&"#".repeat(level));
                self.prose.push(' ');
                self.prose.push_str(text);
                self.prose.push_str("\n\n");
            }
            (None, true) => {
                self.prose.push_str("- ");
                self.prose.push_str(text);
                self.prose.push('\n');
            }
            (None, false) => {
                if self.prose.ends_with('\n') && !self.prose.ends_with("\n\n") {
                    // A list just ended: a blank line before the paragraph.
                    self.prose.push('\n');
                }
                self.prose.push_str(text);
                self.prose.push_str("\n\n");
            }
        }
    }

    fn flush_prose(&mut self) {
        let prose = std::mem::take(&mut self.prose);
        let headings = std::mem::take(&mut self.headings);
        if !prose.trim().is_empty() {
            self.parts
                .extend(split_at_headings_under(&prose, headings, &mut self.path));
        }
    }

    fn finish(mut self) -> Vec<Part> {
        self.flush_prose();
        self.parts
    }
}

/// `Title` is a first-level heading, `Heading3` (or `heading 3`) a third.
fn heading_level(style: &str) -> Option<usize> {
    let style = style.to_ascii_lowercase().replace(' ', "");
    if style == "title" {
        return Some(1);
    }
    let level: usize = style.strip_prefix("heading")?.parse().ok()?;
    Some(level.clamp(1, 6))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::archive::tests::zip_of;
    use super::*;

    /// A `.docx` whose body is `body` (WordprocessingML inside `w:body`).
    pub(crate) fn docx_of(title: &str, body: &str) -> Vec<u8> {
        let document = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
        );
        let core = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title></cp:coreProperties>"#
        );
        zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", document.as_bytes()),
            ("docProps/core.xml", core.as_bytes()),
        ])
    }

    pub(crate) fn paragraph(style: Option<&str>, text: &str) -> String {
        let style = style
            .map(|s| format!(r#"<w:pPr><w:pStyle w:val="{s}"/></w:pPr>"#))
            .unwrap_or_default();
        format!("<w:p>{style}<w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r></w:p>")
    }

    pub(crate) fn table(rows: &[&[&str]]) -> String {
        let rows: String = rows
            .iter()
            .map(|cells| {
                let cells: String = cells
                    .iter()
                    .map(|c| format!("<w:tc>{}</w:tc>", paragraph(None, c)))
                    .collect();
                format!("<w:tr>{cells}</w:tr>")
            })
            .collect();
        format!("<w:tbl>{rows}</w:tbl>")
    }

    #[test]
    fn paragraphs_headings_lists_and_tables_in_order() {
        let list_item = r#"<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/></w:numPr></w:pPr><w:r><w:t>Bring a towel</w:t></w:r></w:p>"#;
        let body = [
            paragraph(Some("Heading1"), "Travel notes"),
            paragraph(None, "Pack light &amp; early."),
            list_item.to_string(),
            paragraph(None, "After the list."),
            table(&[&["City", "Days"], &["Lisbon", "3"], &["Porto", "2"]]),
            paragraph(Some("Heading2"), "Money"),
        ]
        .concat();
        let (title, parts) = docx_to_parts(&docx_of("Trip plan", &body)).unwrap();
        assert_eq!(title.as_deref(), Some("Trip plan"));
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0].text,
            "# Travel notes\n\nPack light & early.\n\n- Bring a towel\n\nAfter the list.\n\n"
        );
        assert!(parts[1].table);
        assert_eq!(parts[1].text, "City | Days\nLisbon | 3\nPorto | 2\n");
        assert_eq!(parts[2].text, "## Money\n\n");
        // Headings locate what follows them, the table included.
        let sections: Vec<Option<&str>> = parts
            .iter()
            .map(|p| p.location.section.as_deref())
            .collect();
        assert_eq!(
            sections,
            vec![
                Some("Travel notes"),
                Some("Travel notes"),
                Some("Travel notes > Money")
            ]
        );
    }

    #[test]
    fn the_first_heading_is_the_title_without_core_properties() {
        let document = format!(
            "<w:document><w:body>{}</w:body></w:document>",
            paragraph(Some("Title"), "Annual report")
        );
        let bytes = zip_of(&[("word/document.xml", document.as_bytes())]);
        let (title, _) = docx_to_parts(&bytes).unwrap();
        assert_eq!(title.as_deref(), Some("Annual report"));
        let missing = zip_of(&[("other.xml", b"<a/>")]);
        assert!(matches!(
            docx_to_parts(&missing),
            Err(ParseError::Malformed { .. })
        ));
    }
}
