//! Direct uploads through the real binary on both backend sets: a 40 MB
//! PDF and a 300-page PDF are declared with `POST /documents/uploads`,
//! PUT to the URL the answer gives (this server, with a single-use token)
//! and reach INDEXED under the promised id, each chunk carrying its page.
//! The presigned S3 path under Lambda is in `sqs_worker.rs`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// A PDF of `pages` pages, page k saying which page it is with words found
/// on no other page, padded with an unreferenced binary stream to at least
/// `min_bytes` (the size of a scanned manual, with little text).
pub(crate) fn make_pdf(pages: usize, min_bytes: usize) -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    let mut object = |pdf: &mut Vec<u8>, body: &[u8]| {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", offsets.len()).as_bytes());
        pdf.extend_from_slice(body);
        pdf.extend_from_slice(b"\nendobj\n");
    };
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    object(&mut pdf, b"<< /Type /Catalog /Pages 2 0 R >>");
    object(
        &mut pdf,
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        )
        .as_bytes(),
    );
    object(
        &mut pdf,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    );
    for i in 0..pages {
        let page = i + 1;
        object(
            &mut pdf,
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            )
            .as_bytes(),
        );
        let text = format!(
            "BT /F1 12 Tf 72 720 Td (Page {page} of the pump manual: valve {page} is checked every {page} days.) Tj ET"
        );
        object(
            &mut pdf,
            format!(
                "<< /Length {} >>\nstream\n{text}\nendstream",
                text.len() + 1
            )
            .as_bytes(),
        );
    }
    let padding = min_bytes.saturating_sub(pdf.len() + 1024);
    if padding > 0 {
        let mut body = format!("<< /Length {padding} >>\nstream\n").into_bytes();
        // Bytes that neither compress nor look like PDF syntax.
        let mut state = 0x2545_u32;
        body.extend((0..padding).map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 16) as u8
        }));
        body.extend_from_slice(b"\nendstream");
        object(&mut pdf, &body);
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", offsets.len() + 1).as_bytes(),
    );
    for offset in &offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            offsets.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pdfs_arrive_by_direct_upload_with_their_pages_embedded() {
    large_pdfs(Stack::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pdfs_arrive_by_direct_upload_with_their_pages_aws() {
    large_pdfs(Stack::aws().await).await;
}

/// Declares and PUTs one file; returns the ticket and the PUT's answer.
async fn direct_upload(server: &Server, name: &str, bytes: Vec<u8>) -> (Value, u16, Value) {
    let (status, ticket) = post_json(
        &server.at("/documents/uploads"),
        &json!({"filename": name, "content_type": "application/pdf", "size": bytes.len()}),
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["method"], "PUT");
    let url = ticket["upload_url"].as_str().unwrap();
    assert!(url.starts_with(&server.url), "{url}");
    let mut put = client().put(url);
    for (name, value) in ticket["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let (status, answer) = send(put.body(bytes)).await;
    (ticket, status, answer)
}

async fn large_pdfs(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    for (name, pdf, pages) in [
        ("pump-manual-40mb.pdf", make_pdf(3, 40 << 20), 3),
        ("pump-manual-300-pages.pdf", make_pdf(300, 0), 300),
    ] {
        let size = pdf.len();
        let (ticket, status, answer) = direct_upload(&server, name, pdf.clone()).await;
        let id = ticket["document_id"].as_str().unwrap().to_string();
        assert_eq!(status, 202, "{name}: {answer}");
        assert_eq!(answer["document"]["id"], id.as_str());
        assert_eq!(answer["document"]["size_bytes"], size);

        // The token worked once.
        let url = ticket["upload_url"].as_str().unwrap();
        let (status, again) = send(
            client()
                .put(url)
                .header("content-type", "application/pdf")
                .body(pdf),
        )
        .await;
        assert_eq!(status, 404, "{again}");
        assert_eq!(again["error"]["code"], "upload_not_found");

        let started = Instant::now();
        let document = loop {
            let (status, document) =
                get_json(&server.at(&format!("/documents/{id}?include_chunks=true"))).await;
            assert_eq!(status, 200, "{document}");
            if document["status"] == "INDEXED" || document["status"] == "FAILED" {
                break document;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{name}: {document}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(
            document["status"], "INDEXED",
            "{name}: {}",
            document["error"]
        );
        let chunks = document["chunks"].as_array().unwrap();
        let seen: BTreeSet<u64> = chunks
            .iter()
            .map(|c| c["page"].as_u64().unwrap_or_else(|| panic!("no page: {c}")))
            .collect();
        assert_eq!(seen, (1..=pages as u64).collect(), "{name}");
        let last = chunks
            .iter()
            .find(|c| {
                c["content"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("valve {pages} is checked"))
            })
            .unwrap_or_else(|| panic!("{name}: no chunk of the last page"));
        assert_eq!(last["page"], pages);
    }
    assert!(stack.vector_count(&server).await >= 303);
}

#[tokio::test]
async fn a_declaration_the_server_cannot_take_is_refused_before_any_bytes_move() {
    let data = tempfile::tempdir().unwrap();
    let stack = Stack::embedded();
    let server = Server::start(
        data.path(),
        &stack,
        &[("RAG_AGENT_MAX_BODY_BYTES", "1000000")],
    );
    let declare = |body: Value| {
        let url = server.at("/documents/uploads");
        async move { post_json(&url, &body).await }
    };
    // Past the most this server receives (here the body limit).
    let (status, body) = declare(
        json!({"filename": "big.pdf", "content_type": "application/pdf", "size": 1_000_001}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1000000"),
        "{body}"
    );
    let (status, body) =
        declare(json!({"filename": "photo.png", "content_type": "image/png", "size": 10})).await;
    assert_eq!(status, 415, "{body}");
    let (status, body) =
        declare(json!({"filename": "a.pdf", "content_type": "application/pdf", "size": 0})).await;
    assert_eq!(status, 400, "{body}");

    // A body of another length than declared is refused, and the token
    // still works for the right one.
    let notes = "Notes about the harbour and its three quays.\n";
    let (status, ticket) = declare(
        json!({"filename": "notes.txt", "content_type": "text/plain", "size": notes.len()}),
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    let url = ticket["upload_url"].as_str().unwrap();
    let (status, body) = send(client().put(url).body("too short")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = send(client().put(url).body(notes)).await;
    assert_eq!(status, 202, "{body}");
    // Someone else's guess at the token gets nowhere.
    let forged = url.replace("token=default~", "token=default~0");
    let (status, body) = send(client().put(&forged).body("x")).await;
    assert_eq!(status, 404, "{body}");
    assert!(server_is_healthy(&server).await);
}

async fn server_is_healthy(server: &Server) -> bool {
    let (status, health) = get_json(&server.at("/health")).await;
    status == 200 && health["status"] == "ok"
}
