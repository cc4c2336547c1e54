//! Word, Excel, CSV, PowerPoint and PDF files through the real binary on
//! both backend sets: each is indexed with its page, sheet or slide in its
//! chunks and in the sources that cite them; and Office files built to
//! exhaust the parser (a zip bomb, a million-row sheet, entity expansion)
//! are refused with 422 while the same process keeps serving.

use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn office_files_and_pdf_pages_are_located_in_their_chunks_embedded() {
    located_chunks(Stack::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn office_files_and_pdf_pages_are_located_in_their_chunks_aws() {
    located_chunks(Stack::aws().await).await;
}

async fn chunks_of(server: &Server, name: &str) -> Vec<Value> {
    let (status, uploaded) = upload(server, &fixture(name)).await;
    assert!(
        status == 200 || status == 201 || status == 202,
        "{name}: {status} {uploaded}"
    );
    let id = uploaded["document"]["id"].as_str().unwrap().to_string();
    wait_until_settled(server, Duration::from_secs(120)).await;
    let (status, document) =
        get_json(&server.at(&format!("/documents/{id}?include_chunks=true"))).await;
    assert_eq!(status, 200, "{document}");
    assert_eq!(document["status"], "INDEXED", "{name}: {document}");
    document["chunks"].as_array().unwrap().clone()
}

fn chunk_with<'a>(chunks: &'a [Value], needle: &str) -> &'a Value {
    chunks
        .iter()
        .find(|c| c["content"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no chunk has {needle:?}: {chunks:#?}"))
}

async fn located_chunks(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);

    let word = chunks_of(&server, "handbook.docx").await;
    let table = chunk_with(&word, "Ines Duarte");
    assert!(
        table["content"]
            .as_str()
            .unwrap()
            .contains("Berth | Depth | Keeper\nNorth quay | 12 m | Ines Duarte"),
        "{table}"
    );

    let sheets = chunks_of(&server, "warehouse.xlsx").await;
    assert_eq!(chunk_with(&sheets, "Copper rivet")["sheet"], "Inventory");
    assert_eq!(chunk_with(&sheets, "Vantor Metals")["sheet"], "Suppliers");

    let csv = chunks_of(&server, "orchards.csv").await;
    let orchards = chunk_with(&csv, "Rocha pears");
    assert!(
        orchards["content"]
            .as_str()
            .unwrap()
            .starts_with("Orchard | Variety | Harvest")
    );
    assert!(orchards.get("sheet").is_none(), "{orchards}");

    let deck = chunks_of(&server, "lighthouse.pptx").await;
    assert_eq!(chunk_with(&deck, "lamp room glazing")["slide"], 1);
    assert_eq!(chunk_with(&deck, "keeper's cottage")["slide"], 1);
    assert_eq!(chunk_with(&deck, "Scaffolding costs")["slide"], 2);

    let pdf = chunks_of(&server, "ownership.pdf").await;
    assert_eq!(
        chunk_with(&pdf, "Each value in Rust has an owner.")["page"],
        1
    );
    assert!(pdf.iter().all(|c| c["page"].as_u64().is_some()), "{pdf:#?}");

    // The location reaches the sources an answer cites.
    let (status, answer) = post_json(
        &server.at("/query"),
        &json!({"query": "Which supplier in Norway has a lead time of two weeks?", "top_k": 5}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let sources = answer["sources"].as_array().unwrap();
    assert!(
        sources
            .iter()
            .any(|s| s["sheet"] == "Suppliers" && s["snippet"].as_str().unwrap().contains("Keel")),
        "{answer:#}"
    );
    server.stop();
}

/// A zip of the given entries, deflated.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// An `.xlsx` of one sheet with a row per number, streamed into the zip
/// so the test never holds the sheet's XML.
fn million_row_workbook(rows: usize) -> Vec<u8> {
    let options = zip::write::SimpleFileOptions::default();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let package = "http://schemas.openxmlformats.org/package/2006/relationships";
    for (name, xml) in [
        (
            "[Content_Types].xml",
            r#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#.to_string(),
        ),
        (
            "_rels/.rels",
            format!(r#"<Relationships xmlns="{package}"><Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
        ),
        (
            "xl/workbook.xml",
            format!(r#"<workbook xmlns="{main}" xmlns:r="{rel}"><sheets><sheet name="Big" sheetId="1" r:id="rId1"/></sheets></workbook>"#),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            format!(r#"<Relationships xmlns="{package}"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#),
        ),
    ] {
        writer.start_file(name, options).unwrap();
        writer.write_all(xml.as_bytes()).unwrap();
    }
    writer
        .start_file("xl/worksheets/sheet1.xml", options)
        .unwrap();
    write!(writer, r#"<worksheet xmlns="{main}"><sheetData>"#).unwrap();
    for r in 1..=rows {
        write!(writer, r#"<row r="{r}"><c r="A{r}"><v>{r}</v></c></row>"#).unwrap();
    }
    writer.write_all(b"</sheetData></worksheet>").unwrap();
    writer.finish().unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_office_files_are_refused_and_the_server_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), &Stack::embedded(), &[]);
    let pid = server.pid();
    let docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

    // 256 MiB of spaces behind a few hundred kilobytes.
    let zeros = vec![b' '; 256 << 20];
    let bomb = zip_of(&[("word/document.xml", &zeros)]);
    drop(zeros);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let laughs = zip_of(&[(
        "word/document.xml",
        br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><w:document><w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>"#,
    )]);
    let sheet = million_row_workbook(1_000_000);
    eprintln!("the million-row workbook is {} KiB", sheet.len() >> 10);
    for (bytes, name, mime, status, code) in [
        (bomb, "bomb.docx", docx, 422, "document_too_large"),
        (laughs, "laughs.docx", docx, 422, "document_too_complex"),
        (sheet, "rows.xlsx", xlsx, 422, "document_too_complex"),
    ] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name(name)
                .mime_str(mime)
                .unwrap(),
        );
        let (s, body) = send(
            client()
                .post(server.at("/documents/upload"))
                .multipart(form),
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {body}"
        );
        assert!(server.is_running(), "the server exited after {name}");
        assert_eq!(server.pid(), pid);
        let (s, health) = get_json(&server.at("/health")).await;
        assert_eq!(s, 200, "{health}");
    }
    let (_, listed) = get_json(&server.at("/documents")).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");
    server.stop();
}
