//! Structure-aware chunks on real pages: each chunk of the Rust book's
//! HTML (from the toolchain's own documentation) names the heading path it
//! starts under and keeps exact offsets while the embedded text carries
//! the header.

use std::path::PathBuf;
use std::process::Command;

use rag_core::chunk::{ChunkingOptions, chunk_header, chunk_sections, embedding_text};
use rag_core::parse::{ContentKind, parse};

fn book_page(name: &str) -> Vec<u8> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc runs");
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    let path = PathBuf::from(sysroot.trim())
        .join("share/doc/rust/html/book")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn rust_book_chunks_know_their_sections_and_keep_exact_offsets() {
    let doc = parse(
        ContentKind::Html,
        &book_page("ch06-01-defining-an-enum.html"),
    )
    .unwrap();
    assert_eq!(
        doc.title.as_deref(),
        Some("Defining an Enum - The Rust Programming Language")
    );
    let chunks = chunk_sections(&doc.text, &doc.sections, ChunkingOptions::default()).unwrap();
    let sections: Vec<Option<&str>> = chunks
        .iter()
        .map(|c| c.location.section.as_deref())
        .collect();
    // The page's own heading leads; its two subsections follow, each
    // under it. No chunk reaches into the sidebar's headings.
    assert_eq!(
        sections.first(),
        Some(&Some("Defining an Enum")),
        "{sections:?}"
    );
    for expected in [
        "Defining an Enum > Enum Values",
        "Defining an Enum > The Option Enum",
    ] {
        assert!(
            sections.contains(&Some(expected)),
            "{expected}: {sections:?}"
        );
    }
    assert!(sections.iter().all(Option::is_some), "{sections:?}");

    let text: Vec<char> = doc.text.chars().collect();
    for chunk in &chunks {
        let at: String = text[chunk.start_char..chunk.end_char].iter().collect();
        assert_eq!(at, chunk.content);
        let header = chunk_header(doc.title.as_deref().unwrap(), &chunk.location);
        let embedded = embedding_text(&header, &chunk.content);
        assert!(embedded.starts_with("Defining an Enum - The Rust Programming Language"));
        assert!(embedded.ends_with(&chunk.content));
    }
    let option_chunk = chunks
        .iter()
        .find(|c| c.location.section.as_deref() == Some("Defining an Enum > The Option Enum"))
        .unwrap();
    assert_eq!(
        chunk_header(doc.title.as_deref().unwrap(), &option_chunk.location),
        "Defining an Enum - The Rust Programming Language > The Option Enum"
    );
}

#[test]
fn markdown_sections_and_plain_text_without_them() {
    let markdown =
        b"# Guide\n\nAn introduction that runs a while.\n\n## Install\n\nRun the installer.\n";
    let doc = parse(ContentKind::Markdown, markdown).unwrap();
    let sections: Vec<_> = doc
        .sections
        .iter()
        .map(|s| s.location.section.clone().unwrap())
        .collect();
    assert_eq!(sections, vec!["Guide", "Guide > Install"]);
    let options = ChunkingOptions {
        chunk_size: 50,
        chunk_overlap: 0,
    };
    let chunks = chunk_sections(&doc.text, &doc.sections, options).unwrap();
    let by_chunk: Vec<_> = chunks
        .iter()
        .map(|c| c.location.section.clone().unwrap())
        .collect();
    assert_eq!(by_chunk, vec!["Guide", "Guide > Install"]);
    assert_eq!(
        doc.text,
        "# Guide\n\nAn introduction that runs a while.\n\n## Install\n\nRun the installer."
    );

    let plain = parse(ContentKind::PlainText, b"# not a heading\n\ntext").unwrap();
    assert!(plain.sections.is_empty());
}
