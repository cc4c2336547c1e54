//! Turns uploaded bytes into plain text: content-type detection, then one
//! parser per format. Parsed text keeps paragraph breaks (blank lines) so the
//! chunker can split on them first.

mod archive;
mod docx;
mod html;
mod layout;
mod markdown;
mod pdf;
mod pptx;
mod runner;
mod sheet;
pub(crate) mod xml;

pub use archive::{MAX_ARCHIVE_ENTRIES, max_unpacked_bytes};
pub use html::{MAX_HTML_NESTING, html_title, html_title_and_text, html_to_text};
pub use layout::Section;
pub use pdf::{MAX_PDF_NESTING, check_structure as check_pdf_structure, max_inflated_bytes};
pub use runner::{
    DocumentParser, PARSE_STACK_BYTES, ParseLimits, ProcessParser, ThreadParser, WORKER_CPU_ENV,
    WORKER_MEMORY_ENV, WorkerCommand, serve_worker,
};

pub use sheet::{MAX_TABLE_COLUMNS, MAX_TABLE_ROWS};

use crate::error::ParseError;
use layout::{Part, assemble};
use sheet::Workbook;

/// The formats the pipeline understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    PlainText,
    Markdown,
    Html,
    Pdf,
    Docx,
    Pptx,
    Xlsx,
    Xls,
    Ods,
    Csv,
    Tsv,
}

impl ContentKind {
    pub const ALL: [ContentKind; 11] = [
        ContentKind::PlainText,
        ContentKind::Markdown,
        ContentKind::Html,
        ContentKind::Pdf,
        ContentKind::Docx,
        ContentKind::Pptx,
        ContentKind::Xlsx,
        ContentKind::Xls,
        ContentKind::Ods,
        ContentKind::Csv,
        ContentKind::Tsv,
    ];

    pub fn mime(self) -> &'static str {
        match self {
            ContentKind::PlainText => "text/plain",
            ContentKind::Markdown => "text/markdown",
            ContentKind::Html => "text/html",
            ContentKind::Pdf => "application/pdf",
            ContentKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            ContentKind::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            ContentKind::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
            ContentKind::Xls => "application/vnd.ms-excel",
            ContentKind::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            ContentKind::Csv => "text/csv",
            ContentKind::Tsv => "text/tab-separated-values",
        }
    }

    pub fn from_mime(mime: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.mime() == mime)
    }

    /// Whether parsing it runs foreign code over untrusted structure
    /// (markup, PDF objects, zip archives, binary spreadsheets), and so
    /// belongs in a worker process. Plain text, Markdown and delimited
    /// text are read in place.
    pub fn needs_isolation(self) -> bool {
        !matches!(
            self,
            ContentKind::PlainText | ContentKind::Markdown | ContentKind::Csv | ContentKind::Tsv
        )
    }
}

/// The text of a document, where the format names one its title, and
/// where it has pages, sheets, slides or tables, where they lie in the
/// text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    pub kind: ContentKind,
    pub title: Option<String>,
    pub text: String,
    pub sections: Vec<Section>,
}

/// Decides the format from the declared content type, then the file name's
/// extension, then the bytes themselves. A declared type we do not support
/// is refused even if the bytes look like text, so an image upload is a 415
/// and not a page of mojibake.
pub fn detect_kind(
    declared: Option<&str>,
    filename: Option<&str>,
    bytes: &[u8],
) -> Result<ContentKind, ParseError> {
    if let Some(declared) = declared {
        let essence = declared
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "" | "application/octet-stream" | "binary/octet-stream" => {}
            "text/plain" => return Ok(refine_text(filename, bytes)),
            "text/markdown" | "text/x-markdown" => return Ok(ContentKind::Markdown),
            "text/html" | "application/xhtml+xml" => return Ok(ContentKind::Html),
            "application/pdf" => return Ok(ContentKind::Pdf),
            "text/csv" | "text/comma-separated-values" | "application/csv" => {
                return Ok(ContentKind::Csv);
            }
            "text/tab-separated-values" => return Ok(ContentKind::Tsv),
            // Browsers on Windows send this type for `.csv` files too.
            "application/vnd.ms-excel" => {
                return Ok(match filename.and_then(kind_from_extension) {
                    Some(ContentKind::Csv) => ContentKind::Csv,
                    _ => ContentKind::Xls,
                });
            }
            other if ContentKind::from_mime(other).is_some() => {
                return Ok(ContentKind::from_mime(other).expect("just found"));
            }
            other => return Err(ParseError::UnsupportedContentType(other.to_string())),
        }
    }
    if let Some(kind) = filename.and_then(kind_from_extension) {
        return Ok(kind);
    }
    if let Some(name) = filename
        && name.contains('.')
        && !is_text(bytes)
    {
        let ext = name.rsplit('.').next().unwrap_or_default();
        return Err(ParseError::UnsupportedContentType(format!(".{ext} file")));
    }
    sniff(bytes)
}

fn refine_text(filename: Option<&str>, bytes: &[u8]) -> ContentKind {
    match filename.and_then(kind_from_extension) {
        Some(kind @ (ContentKind::Markdown | ContentKind::Csv | ContentKind::Tsv)) => kind,
        _ if looks_like_html(bytes) => ContentKind::Html,
        _ => ContentKind::PlainText,
    }
}

fn kind_from_extension(filename: &str) -> Option<ContentKind> {
    let ext = filename.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "text" | "log" | "rst" => Some(ContentKind::PlainText),
        "md" | "markdown" | "mdx" => Some(ContentKind::Markdown),
        "html" | "htm" | "xhtml" => Some(ContentKind::Html),
        "pdf" => Some(ContentKind::Pdf),
        "docx" => Some(ContentKind::Docx),
        "pptx" => Some(ContentKind::Pptx),
        "xlsx" | "xlsm" => Some(ContentKind::Xlsx),
        "xls" => Some(ContentKind::Xls),
        "ods" => Some(ContentKind::Ods),
        "csv" => Some(ContentKind::Csv),
        "tsv" | "tab" => Some(ContentKind::Tsv),
        _ => None,
    }
}

fn sniff(bytes: &[u8]) -> Result<ContentKind, ParseError> {
    if bytes.starts_with(b"%PDF-") {
        return Ok(ContentKind::Pdf);
    }
    if let Some(kind) = sniff_office(bytes) {
        return Ok(kind);
    }
    if !is_text(bytes) {
        return Err(ParseError::UnsupportedContentType(
            "binary data".to_string(),
        ));
    }
    if looks_like_html(bytes) {
        return Ok(ContentKind::Html);
    }
    Ok(ContentKind::PlainText)
}

/// Office files by their container: a zip whose entry names (stored in
/// the clear in every local header) say which format it is, or the OLE2
/// compound file of a legacy `.xls`.
fn sniff_office(bytes: &[u8]) -> Option<ContentKind> {
    if bytes.starts_with(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        return Some(ContentKind::Xls);
    }
    if !bytes.starts_with(b"PK\x03\x04") {
        return None;
    }
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    [
        (&b"word/document.xml"[..], ContentKind::Docx),
        (&b"ppt/presentation.xml"[..], ContentKind::Pptx),
        (&b"xl/workbook.xml"[..], ContentKind::Xlsx),
        (
            &b"application/vnd.oasis.opendocument.spreadsheet"[..],
            ContentKind::Ods,
        ),
    ]
    .into_iter()
    .find(|(needle, _)| has(needle))
    .map(|(_, kind)| kind)
}

fn is_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return false;
    }
    // A multi-byte character may be cut at the end of the sample.
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 >= head.len(),
    }
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<body")
}

/// Parses bytes of a known kind, in place. Parsing is CPU-bound and its
/// input untrusted: the service calls this through a [`DocumentParser`].
pub fn parse(kind: ContentKind, bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let (title, text, sections) = match kind {
        ContentKind::PlainText => {
            let text = decode_utf8(bytes, kind)?;
            (None, normalize_text(&text), Vec::new())
        }
        ContentKind::Markdown => {
            let text = decode_utf8(bytes, kind)?;
            with_parts(markdown_title(&text), markdown::markdown_parts(&text))
        }
        ContentKind::Html => {
            let html = decode_utf8(bytes, kind)?;
            let (title, parts) = html::html_title_and_parts(&html)?;
            with_parts(title, parts)
        }
        ContentKind::Pdf => {
            let pages = pdf::pdf_to_pages(bytes)?
                .into_iter()
                .enumerate()
                .map(|(i, text)| {
                    Part::prose(crate::domain::ChunkLocation::page(i as u32 + 1), text)
                })
                .collect();
            with_parts(None, pages)
        }
        ContentKind::Docx => {
            let (title, parts) = docx::docx_to_parts(bytes)?;
            with_parts(title, parts)
        }
        ContentKind::Pptx => {
            let (title, parts) = pptx::pptx_to_parts(bytes)?;
            with_parts(title, parts)
        }
        ContentKind::Xlsx => with_parts(None, sheet::workbook_to_parts(bytes, Workbook::Xlsx)?),
        ContentKind::Xls => with_parts(None, sheet::workbook_to_parts(bytes, Workbook::Xls)?),
        ContentKind::Ods => with_parts(None, sheet::workbook_to_parts(bytes, Workbook::Ods)?),
        ContentKind::Csv => with_parts(None, sheet::delimited_to_parts(bytes, b',')?),
        ContentKind::Tsv => with_parts(None, sheet::delimited_to_parts(bytes, b'\t')?),
    };
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(ParsedDocument {
        kind,
        title,
        text,
        sections,
    })
}

fn with_parts(title: Option<String>, parts: Vec<Part>) -> (Option<String>, String, Vec<Section>) {
    let (text, sections) = assemble(parts);
    (title, text, sections)
}

fn decode_utf8(bytes: &[u8], kind: ContentKind) -> Result<String, ParseError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| ParseError::Malformed {
        format: kind.mime(),
        message: format!("not UTF-8 ({e})"),
    })
}

fn markdown_title(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|line| line.starts_with("# "))
        .map(|line| line.trim_start_matches('#').trim().to_string())
        .filter(|title| !title.is_empty())
}

/// Unix line endings, no control characters, trailing spaces trimmed and at
/// most one blank line between paragraphs.
pub fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.replace("\r\n", "\n").replace('\r', "\n").split('\n') {
        let line: String = line
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_declared_type_then_extension_then_bytes() {
        assert_eq!(
            detect_kind(Some("text/html; charset=utf-8"), None, b"x").unwrap(),
            ContentKind::Html
        );
        assert_eq!(
            detect_kind(None, Some("notes.MD"), b"# hi").unwrap(),
            ContentKind::Markdown
        );
        assert_eq!(
            detect_kind(None, None, b"%PDF-1.7").unwrap(),
            ContentKind::Pdf
        );
        assert_eq!(
            detect_kind(
                Some("application/octet-stream"),
                None,
                b"<!DOCTYPE html><p>x"
            )
            .unwrap(),
            ContentKind::Html
        );
        assert_eq!(
            detect_kind(None, None, b"plain words").unwrap(),
            ContentKind::PlainText
        );
    }

    #[test]
    fn refuses_unsupported_types() {
        assert!(matches!(
            detect_kind(Some("image/png"), None, b"\x89PNG"),
            Err(ParseError::UnsupportedContentType(_))
        ));
        assert!(matches!(
            detect_kind(None, Some("photo.png"), b"\x89PNG\r\n\x1a\n\0\0"),
            Err(ParseError::UnsupportedContentType(_))
        ));
        assert!(detect_kind(None, None, b"\0\x01\x02").is_err());
    }

    #[test]
    fn empty_text_is_an_error() {
        assert!(matches!(
            parse(ContentKind::PlainText, b"  \n\n "),
            Err(ParseError::Empty)
        ));
    }

    #[test]
    fn normalizes_blank_lines_and_line_endings() {
        assert_eq!(normalize_text("a\r\n\r\n\r\n\r\nb  \nc"), "a\n\nb\nc");
    }

    #[test]
    fn markdown_title_is_the_first_heading() {
        let doc = parse(ContentKind::Markdown, b"intro\n\n# The Title\n\nbody").unwrap();
        assert_eq!(doc.title.as_deref(), Some("The Title"));
    }

    #[test]
    fn malformed_pdf_fails_cleanly() {
        assert!(matches!(
            parse(ContentKind::Pdf, b"%PDF-1.4 not really"),
            Err(ParseError::Malformed { .. })
        ));
    }
}
