//! Turns uploaded bytes into plain text: content-type detection, then one
//! parser per format. Parsed text keeps paragraph breaks (blank lines) so the
//! chunker can split on them first.

mod html;
mod pdf;
mod runner;

pub use html::{MAX_HTML_NESTING, html_title, html_title_and_text, html_to_text};
pub use pdf::{MAX_PDF_NESTING, check_structure as check_pdf_structure, max_inflated_bytes};
pub use runner::{
    DocumentParser, PARSE_STACK_BYTES, ParseLimits, ProcessParser, ThreadParser, WORKER_CPU_ENV,
    WORKER_MEMORY_ENV, WorkerCommand, serve_worker,
};

use crate::error::ParseError;

/// The formats the pipeline understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    PlainText,
    Markdown,
    Html,
    Pdf,
}

impl ContentKind {
    pub fn mime(self) -> &'static str {
        match self {
            ContentKind::PlainText => "text/plain",
            ContentKind::Markdown => "text/markdown",
            ContentKind::Html => "text/html",
            ContentKind::Pdf => "application/pdf",
        }
    }
}

/// The text of a document and, where the format names one, its title.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    pub kind: ContentKind,
    pub title: Option<String>,
    pub text: String,
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
        Some(ContentKind::Markdown) => ContentKind::Markdown,
        _ if looks_like_html(bytes) => ContentKind::Html,
        _ => ContentKind::PlainText,
    }
}

fn kind_from_extension(filename: &str) -> Option<ContentKind> {
    let ext = filename.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "text" | "log" | "csv" | "rst" => Some(ContentKind::PlainText),
        "md" | "markdown" | "mdx" => Some(ContentKind::Markdown),
        "html" | "htm" | "xhtml" => Some(ContentKind::Html),
        "pdf" => Some(ContentKind::Pdf),
        _ => None,
    }
}

fn sniff(bytes: &[u8]) -> Result<ContentKind, ParseError> {
    if bytes.starts_with(b"%PDF-") {
        return Ok(ContentKind::Pdf);
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
    let (title, text) = match kind {
        ContentKind::PlainText | ContentKind::Markdown => {
            let text = decode_utf8(bytes, kind)?;
            let title = (kind == ContentKind::Markdown)
                .then(|| markdown_title(&text))
                .flatten();
            (title, text)
        }
        ContentKind::Html => {
            let html = decode_utf8(bytes, kind)?;
            html_title_and_text(&html)?
        }
        ContentKind::Pdf => (None, pdf::pdf_to_text(bytes)?),
    };
    let text = normalize_text(&text);
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(ParsedDocument { kind, title, text })
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
