//! PDF to text through pdf-extract, behind a structural check of our own.
//!
//! pdf-extract and lopdf parse nested arrays and dictionaries by recursion
//! and inflate every stream in full, so a small file can exhaust a thread's
//! stack or inflate to gigabytes. Before they see a file, [`check_structure`]
//! walks it once with an explicit depth counter: nesting past
//! [`MAX_PDF_NESTING`] is refused, and every stream that inflates is
//! inflated into a bounded buffer, so the whole file's inflated bytes are
//! counted before anything keeps them. The same walk covers the inflated
//! streams (page contents and object streams), where nesting can also hide.

use std::io::Read;

use flate2::read::ZlibDecoder;

use crate::error::ParseError;

/// Arrays and dictionaries nest at most this deep. The PDF reference's
/// implementation limits name no depth, but real files stay within a few
/// levels (a page tree is the deepest common structure).
pub const MAX_PDF_NESTING: usize = 256;

/// Pages one PDF may have; each page object (`/Type /Page`) counts, in the
/// file and in its object streams.
pub const MAX_PDF_PAGES: usize = 10_000;

/// How far a document's streams may inflate, in total: 64 times the file,
/// at least 16 MiB and at most 256 MiB.
pub fn max_inflated_bytes(file_len: usize) -> u64 {
    (file_len as u64)
        .saturating_mul(64)
        .clamp(16 << 20, 256 << 20)
}

/// The text of each page, in page order, after the structural check.
pub(crate) fn pdf_to_pages(bytes: &[u8]) -> Result<Vec<String>, ParseError> {
    check_structure(bytes)?;
    // pdf-extract panics on some malformed files; a bad upload must fail the
    // document, not the worker thread.
    let result = std::panic::catch_unwind(|| extract_pages(bytes));
    match result {
        Ok(Ok(pages)) => Ok(pages),
        Ok(Err(e)) => Err(ParseError::Malformed {
            format: "PDF",
            message: e.to_string(),
        }),
        Err(_) => Err(ParseError::Malformed {
            format: "PDF",
            message: "the PDF parser could not read this file".to_string(),
        }),
    }
}

/// pdf-extract's own page-by-page reader stops quietly at the first page
/// it cannot read; this one fails the document instead, so a PDF is never
/// indexed with its later pages missing.
fn extract_pages(bytes: &[u8]) -> Result<Vec<String>, pdf_extract::OutputError> {
    let mut document = pdf_extract::Document::load_mem(bytes)?;
    if document.is_encrypted() {
        document.decrypt("")?;
    }
    let numbers: Vec<u32> = document.get_pages().keys().copied().collect();
    let mut pages = Vec::with_capacity(numbers.len());
    for number in numbers {
        let mut text = String::new();
        {
            let mut output = pdf_extract::PlainTextOutput::new(&mut text);
            pdf_extract::output_doc_page(&document, &mut output, number)?;
        }
        pages.push(text);
    }
    Ok(pages)
}

/// Refuses files that nest too deeply or inflate too far; see the module
/// header.
pub fn check_structure(bytes: &[u8]) -> Result<(), ParseError> {
    let mut budget = max_inflated_bytes(bytes.len());
    let mut inflated = Vec::new();
    let mut pages = 0;
    scan(bytes, Some((&mut budget, &mut inflated)), &mut pages)?;
    Ok(())
}

/// One pass over PDF syntax. With a budget, stream bodies are inflated (when
/// they are zlib data) and scanned in turn; without one (inside an inflated
/// stream) they are skipped, as are inline image data.
fn scan(
    bytes: &[u8],
    mut streams: Option<(&mut u64, &mut Vec<u8>)>,
    pages: &mut usize,
) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                while i < bytes.len() && !matches!(bytes[i], b'\n' | b'\r') {
                    i += 1;
                }
            }
            b'(' => i = skip_literal_string(bytes, i),
            b'<' if bytes.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 1;
            }
            b'<' => {
                while i < bytes.len() && bytes[i] != b'>' {
                    i += 1;
                }
            }
            b'>' if bytes.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'/' if keyword_at(bytes, i + 1, b"Page") => {
                *pages += 1;
                if *pages > MAX_PDF_PAGES {
                    return Err(ParseError::ExpansionLimit(format!(
                        "the PDF has more than {MAX_PDF_PAGES} pages"
                    )));
                }
            }
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b's' if keyword_at(bytes, i, b"stream") => {
                let body_start = skip_eol(bytes, i + b"stream".len());
                let body_end = find(bytes, body_start, b"endstream").unwrap_or(bytes.len());
                if let Some((budget, buffer)) = streams.as_mut() {
                    inflate_bounded(&bytes[body_start..body_end], budget, buffer)?;
                    if !buffer.is_empty() {
                        scan(buffer, None, pages)?;
                    }
                }
                i = body_end + b"endstream".len();
                continue;
            }
            b'I' if keyword_at(bytes, i, b"ID") => {
                i = find_keyword(bytes, i + 2, b"EI").unwrap_or(bytes.len());
            }
            _ => {}
        }
        if depth > MAX_PDF_NESTING {
            return Err(ParseError::TooComplex(format!(
                "PDF arrays and dictionaries nest more than {MAX_PDF_NESTING} deep"
            )));
        }
        i += 1;
    }
    Ok(())
}

/// Inflates zlib data into `buffer` (cleared first), charging `budget`;
/// data that is not zlib leaves the buffer empty and costs nothing.
fn inflate_bounded(data: &[u8], budget: &mut u64, buffer: &mut Vec<u8>) -> Result<(), ParseError> {
    buffer.clear();
    // A zlib header: deflate method, a window of at most 32 KiB, and a
    // check value that makes the first two bytes a multiple of 31.
    let looks_zlib = data.len() >= 2
        && data[0] & 0x0f == 8
        && data[0] >> 4 <= 7
        && u16::from_be_bytes([data[0], data[1]]).is_multiple_of(31);
    if !looks_zlib {
        return Ok(());
    }
    let limit = *budget;
    let mut reader = ZlibDecoder::new(data).take(limit + 1);
    // Damaged streams inflate as far as they can, as lopdf reads them.
    let _ = reader.read_to_end(buffer);
    let used = buffer.len() as u64;
    if used > limit {
        return Err(ParseError::ExpansionLimit(format!(
            "the PDF's compressed streams inflate past {} MiB",
            limit >> 20
        )));
    }
    *budget -= used;
    Ok(())
}

fn skip_literal_string(bytes: &[u8], start: usize) -> usize {
    let mut level = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => level += 1,
            b')' => {
                level -= 1;
                if level == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

fn is_delimiter(byte: u8) -> bool {
    byte.is_ascii_whitespace() || b"()<>[]{}/%".contains(&byte)
}

/// Whether `word` stands at `at` as a whole token.
fn keyword_at(bytes: &[u8], at: usize, word: &[u8]) -> bool {
    bytes[at..].starts_with(word)
        && (at == 0 || is_delimiter(bytes[at - 1]))
        && bytes.get(at + word.len()).is_none_or(|b| is_delimiter(*b))
}

fn find_keyword(bytes: &[u8], from: usize, word: &[u8]) -> Option<usize> {
    let mut at = from;
    while let Some(found) = find(bytes, at, word) {
        if keyword_at(bytes, found, word) {
            return Some(found);
        }
        at = found + 1;
    }
    None
}

fn skip_eol(bytes: &[u8], mut at: usize) -> usize {
    if bytes.get(at) == Some(&b'\r') {
        at += 1;
    }
    if bytes.get(at) == Some(&b'\n') {
        at += 1;
    }
    at
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from >= bytes.len() {
        return None;
    }
    bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::ZlibEncoder;

    use super::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn with_stream(body: &[u8]) -> Vec<u8> {
        let mut pdf = b"%PDF-1.4\n1 0 obj << /Length 1 /Filter /FlateDecode >>\nstream\n".to_vec();
        pdf.extend_from_slice(body);
        pdf.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
        pdf
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!(
            "%PDF-1.4\n1 0 obj {}1{} endobj",
            "[".repeat(1000),
            "]".repeat(1000)
        );
        assert!(matches!(
            check_structure(deep.as_bytes()),
            Err(ParseError::TooComplex(_))
        ));
        let shallow = format!(
            "%PDF-1.4\n1 0 obj {}1{} endobj",
            "[".repeat(20),
            "]".repeat(20)
        );
        check_structure(shallow.as_bytes()).unwrap();
    }

    #[test]
    fn brackets_inside_strings_comments_and_images_do_not_count() {
        let text = format!(
            "%PDF-1.4\n% {}\n1 0 obj ({} \\) {}) endobj\nBI /W 1 ID {} EI",
            "[".repeat(500),
            "[".repeat(500),
            "<<".repeat(500),
            "[".repeat(500)
        );
        check_structure(text.as_bytes()).unwrap();
    }

    #[test]
    fn nesting_inside_a_compressed_stream_is_found() {
        let content = format!("{}1{} TJ", "[".repeat(400), "]".repeat(400));
        let pdf = with_stream(&zlib(content.as_bytes()));
        assert!(matches!(
            check_structure(&pdf),
            Err(ParseError::TooComplex(_))
        ));
    }

    #[test]
    fn page_objects_are_counted() {
        let page = "<< /Type /Page /Parent 2 0 R >>\n";
        let pages = |n: usize| {
            format!(
                "%PDF-1.4\n<< /Type /Pages /Count {n} >>\n{}",
                page.repeat(n)
            )
        };
        check_structure(pages(MAX_PDF_PAGES).as_bytes()).unwrap();
        assert!(matches!(
            check_structure(pages(MAX_PDF_PAGES + 1).as_bytes()),
            Err(ParseError::ExpansionLimit(_))
        ));
    }

    #[test]
    fn a_flate_bomb_is_refused_within_its_budget() {
        let bomb = zlib(&vec![b' '; 64 << 20]);
        let pdf = with_stream(&bomb);
        assert!(pdf.len() < 100_000, "{}", pdf.len());
        assert!(matches!(
            check_structure(&pdf),
            Err(ParseError::ExpansionLimit(_))
        ));
        // A stream that inflates within the budget passes.
        check_structure(&with_stream(&zlib(&vec![b' '; 1 << 20]))).unwrap();
    }
}
