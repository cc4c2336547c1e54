//! Property tests over the parsers: generated nesting, truncation and
//! compression shapes must each end in text or a clean error, never a
//! panic, a stack overflow or a runaway parse.
//!
//!     cargo test -p rag-core --test parser_properties

use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::ZlibEncoder;
use proptest::prelude::*;
use rag_core::ParseError;
use rag_core::parse::{ContentKind, parse};

const OWNERSHIP_PDF: &[u8] = include_bytes!("../../../tests/fixtures/ownership.pdf");

/// Each parse gets a generous but finite budget; the quadratic or
/// exponential shapes these tests look for take far longer.
const BUDGET: Duration = Duration::from_secs(20);

fn bounded(kind: ContentKind, bytes: Vec<u8>) -> Result<String, ParseError> {
    let started = Instant::now();
    // A thread of the size the service parses on, so a recursion that
    // slipped past the checks fails the test instead of passing by luck.
    let outcome = std::thread::Builder::new()
        .stack_size(rag_core::parse::PARSE_STACK_BYTES)
        .spawn(move || parse(kind, &bytes).map(|d| d.text))
        .unwrap()
        .join()
        .expect("a parser panicked");
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
    outcome
}

fn clean_error(error: &ParseError) -> bool {
    matches!(
        error,
        ParseError::Empty
            | ParseError::Malformed { .. }
            | ParseError::TooComplex(_)
            | ParseError::ExpansionLimit(_)
    )
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn html_tag() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "div", "span", "p", "li", "ul", "table", "tr", "td", "b", "a", "main", "article", "pre",
        "script", "template", "svg", "select", "option", "h1",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn html_of_any_nesting_ends_cleanly(
        tags in prop::collection::vec(html_tag(), 1..8),
        depth in 1usize..20_000,
        close in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut html = String::from("<html><body>");
        for level in 0..depth {
            html.push('<');
            html.push_str(tags[level % tags.len()]);
            html.push('>');
        }
        html.push_str("deep words");
        if close {
            for level in (0..depth).rev() {
                html.push_str("</");
                html.push_str(tags[level % tags.len()]);
                html.push('>');
            }
        }
        let mut bytes = html.into_bytes();
        bytes.truncate(cut.index(bytes.len()).max(1));
        match bounded(ContentKind::Html, bytes) {
            Ok(text) => prop_assert!(text.len() <= 20 * depth + 64),
            Err(e) => prop_assert!(clean_error(&e), "{e:?}"),
        }
    }

    #[test]
    fn pdf_nesting_of_any_depth_ends_cleanly(
        openers in prop::collection::vec(prop::sample::select(vec!["[", "<<", "[ /A ", "<< /K "]), 1..4),
        depth in 1usize..120_000,
        compressed in any::<bool>(),
    ) {
        let mut nested = String::new();
        for level in 0..depth {
            nested.push_str(openers[level % openers.len()]);
        }
        let body = if compressed {
            let mut stream = b"4 0 obj << /Length 0 /Filter /FlateDecode >>\nstream\n".to_vec();
            stream.extend_from_slice(&zlib(nested.as_bytes()));
            stream.extend_from_slice(b"\nendstream\nendobj\n");
            stream
        } else {
            format!("4 0 obj << /Type /Page /Annots {nested} >>\nendobj\n").into_bytes()
        };
        let mut pdf = b"%PDF-1.4\n".to_vec();
        pdf.extend_from_slice(&body);
        pdf.extend_from_slice(b"trailer << /Root 1 0 R >>\n%%EOF\n");
        match bounded(ContentKind::Pdf, pdf) {
            Ok(_) => {}
            Err(e) => prop_assert!(clean_error(&e), "{e:?}"),
        }
    }

    #[test]
    fn a_truncated_or_damaged_pdf_ends_cleanly(
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut pdf = OWNERSHIP_PDF.to_vec();
        for (at, byte) in flips {
            let at = at.index(pdf.len());
            pdf[at] = byte;
        }
        pdf.truncate(cut.index(pdf.len()).max(1));
        match bounded(ContentKind::Pdf, pdf) {
            Ok(text) => prop_assert!(text.len() < 4096),
            Err(e) => prop_assert!(clean_error(&e), "{e:?}"),
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn compressed_streams_of_any_ratio_are_bounded(
        filler in any::<u8>(),
        mebibytes in 1usize..40,
        streams in 1usize..4,
        truncate in any::<bool>(),
    ) {
        let mut data = zlib(&vec![filler; mebibytes << 20]);
        if truncate {
            data.truncate(data.len() / 2);
        }
        let mut pdf = b"%PDF-1.4\n".to_vec();
        for n in 0..streams {
            pdf.extend_from_slice(format!("{} 0 obj << /Length {} /Filter /FlateDecode >>\nstream\n", n + 4, data.len()).as_bytes());
            pdf.extend_from_slice(&data);
            pdf.extend_from_slice(b"\nendstream\nendobj\n");
        }
        pdf.extend_from_slice(b"trailer << /Root 1 0 R >>\n%%EOF\n");
        let inflated = (mebibytes << 20) as u64 * streams as u64;
        let budget = rag_core::parse::max_inflated_bytes(pdf.len());
        match bounded(ContentKind::Pdf, pdf) {
            Err(ParseError::ExpansionLimit(_)) => prop_assert!(inflated > budget || truncate),
            Ok(_) => prop_assert!(inflated <= budget || truncate),
            Err(e) => prop_assert!(clean_error(&e), "{e:?}"),
        }
    }
}

#[test]
fn the_real_pdf_fixture_parses_page_by_page() {
    let text = bounded(ContentKind::Pdf, OWNERSHIP_PDF.to_vec()).unwrap();
    for phrase in [
        "Each value in Rust has an owner.",
        "A reference lets you refer to a value without taking ownership of it.",
        "A string slice is a reference to part of a String.",
    ] {
        assert!(text.contains(phrase), "{phrase:?} missing from {text:?}");
    }
}

#[test]
fn the_flate_bomb_fixture_is_refused() {
    let bomb = include_bytes!("../../../tests/fixtures/flate_bomb.pdf");
    assert!(matches!(
        bounded(ContentKind::Pdf, bomb.to_vec()),
        Err(ParseError::ExpansionLimit(_))
    ));
}
