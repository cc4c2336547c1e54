//! The office formats and PDF pages, parsed from real files (made by
//! python-docx, openpyxl and python-pptx: `tests/fixtures/
//! make_office_fixtures.py`) and chunked: the text each format yields, and
//! the page, sheet or slide every chunk carries.
//!
//!     cargo test -p rag-core --test formats

use rag_core::ChunkLocation;
use rag_core::chunk::{ChunkingOptions, TextChunk, chunk_sections};
use rag_core::parse::{ContentKind, ParsedDocument, detect_kind, parse};

fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");
    std::fs::read(format!("{path}{name}")).unwrap()
}

/// Detects the kind from the bytes alone (no name, no declared type), as
/// for a URL that answers `application/octet-stream`, then parses.
fn parsed(name: &str, expected: ContentKind) -> ParsedDocument {
    let bytes = fixture(name);
    assert_eq!(detect_kind(None, None, &bytes).unwrap(), expected, "{name}");
    assert_eq!(detect_kind(None, Some(name), &bytes).unwrap(), expected);
    parse(expected, &bytes).unwrap()
}

fn chunks(doc: &ParsedDocument, size: usize) -> Vec<TextChunk> {
    chunk_sections(
        &doc.text,
        &doc.sections,
        ChunkingOptions {
            chunk_size: size,
            chunk_overlap: 0,
        },
    )
    .unwrap()
}

fn chunk_with<'a>(chunks: &'a [TextChunk], needle: &str) -> &'a TextChunk {
    chunks
        .iter()
        .find(|c| c.content.contains(needle))
        .unwrap_or_else(|| panic!("no chunk has {needle:?}: {chunks:#?}"))
}

#[test]
fn a_word_document_keeps_headings_lists_and_tables() {
    let doc = parsed("handbook.docx", ContentKind::Docx);
    assert_eq!(doc.title.as_deref(), Some("Harbour maintenance handbook"));
    for expected in [
        "# Harbour maintenance handbook",
        "The harbour crane is greased every second Tuesday by the night shift.",
        "## Checklist",
        "- Inspect the mooring lines\n- Log the tide gauge reading",
        "Berth | Depth | Keeper\nNorth quay | 12 m | Ines Duarte\nSouth quay | 9 m | Tomas Reyes",
        "Storm shutters close when the wind passes force nine.",
    ] {
        assert!(
            doc.text.contains(expected),
            "{expected:?} not in {:?}",
            doc.text
        );
    }
    // Small chunks: the table's rows each come with its header.
    let pieces = chunks(&doc, 60);
    let south = chunk_with(&pieces, "South quay");
    assert!(
        south.content.starts_with("Berth | Depth | Keeper\n"),
        "{south:?}"
    );
}

#[test]
fn a_workbook_is_one_table_per_sheet_named_in_its_chunks() {
    let doc = parsed("warehouse.xlsx", ContentKind::Xlsx);
    let pieces = chunks(&doc, 1000);
    let inventory = chunk_with(&pieces, "Copper rivet");
    assert_eq!(inventory.location, ChunkLocation::sheet("Inventory"));
    assert_eq!(
        inventory.content,
        "Part | Bin | Count\nBrass hinge | A-14 | 320\nCopper rivet | B-02 | 1500"
    );
    let suppliers = chunk_with(&pieces, "Vantor Metals");
    assert_eq!(suppliers.location, ChunkLocation::sheet("Suppliers"));
    assert!(
        suppliers
            .content
            .contains("Keel & Sons | Norway | two weeks")
    );
    assert!(!suppliers.content.contains("Copper"), "{suppliers:?}");
}

#[test]
fn a_csv_file_is_a_table_whose_chunks_repeat_the_header() {
    let doc = parse(ContentKind::Csv, &fixture("orchards.csv")).unwrap();
    assert_eq!(
        detect_kind(Some("text/csv"), None, b"a,b").unwrap(),
        ContentKind::Csv
    );
    assert_eq!(
        detect_kind(
            Some("application/vnd.ms-excel"),
            Some("orchards.csv"),
            b"a,b"
        )
        .unwrap(),
        ContentKind::Csv
    );
    let pieces = chunks(&doc, 100);
    assert_eq!(pieces.len(), 2, "{pieces:#?}");
    for piece in &pieces {
        assert!(piece.content.starts_with("Orchard | Variety | Harvest\n"));
    }
    assert!(
        pieces[1]
            .content
            .ends_with("Vale Verde | Rocha pears | mid August")
    );
}

#[test]
fn a_deck_is_its_slides_and_notes_numbered_in_order() {
    let doc = parsed("lighthouse.pptx", ContentKind::Pptx);
    assert_eq!(doc.title.as_deref(), Some("Lighthouse renovation"));
    let pieces = chunks(&doc, 200);
    let first = chunk_with(&pieces, "lamp room glazing");
    assert_eq!(first.location, ChunkLocation::slide(1));
    assert!(
        first.content.contains("Notes: Remind the board"),
        "{first:?}"
    );
    let second = chunk_with(&pieces, "Scaffolding costs forty thousand euros.");
    assert_eq!(second.location, ChunkLocation::slide(2));
}

#[test]
fn pdf_chunks_carry_the_page_they_start_on() {
    let doc = parsed("ownership.pdf", ContentKind::Pdf);
    let pieces = chunks(&doc, 200);
    let pages: Vec<u32> = pieces.iter().filter_map(|c| c.location.page).collect();
    assert_eq!(pages.len(), pieces.len(), "every chunk has a page");
    assert_eq!(
        chunk_with(&pieces, "Each value in Rust has an owner.").location,
        ChunkLocation::page(1)
    );
    let slices = chunk_with(
        &pieces,
        "A string slice is a reference to part of a String.",
    );
    assert!(slices.location.page.unwrap() > 1, "{slices:?}");
    assert!(pages.windows(2).all(|w| w[0] <= w[1]), "{pages:?}");
}
