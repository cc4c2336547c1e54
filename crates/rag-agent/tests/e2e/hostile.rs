//! Uploads, requests and pages built to take the server down or reach past
//! it, sent to the real binary over a real socket. After each, the same
//! process (same PID) must still answer `/health`, and a real PDF must
//! still be indexed and cited.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The bound the README documents: no single upload lifts the server's
/// peak resident memory past 1 GiB at the default limits.
const PEAK_RSS_BOUND: u64 = 1 << 30;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn form(
    file: Vec<u8>,
    name: &str,
    mime: &str,
    fields: &[(&str, &str)],
) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    form.part(
        "file",
        reqwest::multipart::Part::bytes(file)
            .file_name(name.to_string())
            .mime_str(mime)
            .unwrap(),
    )
}

async fn upload_form(server: &Server, form: reqwest::multipart::Form) -> (u16, Value) {
    send(
        client()
            .post(server.at("/documents/upload"))
            .multipart(form),
    )
    .await
}

fn assert_code(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (want_status, Some(want_code)),
        "{body}"
    );
}

async fn still_serving(server: &mut Server, pid: u32) {
    assert!(server.is_running(), "the server exited");
    assert_eq!(server.pid(), pid);
    let (s, health) = get_json(&server.at("/health")).await;
    assert_eq!(s, 200, "{health}");
}

/// A request with a Host header of our choosing, over a plain socket so no
/// client library rewrites it; returns the status and body.
fn raw_request(server: &Server, request: &str) -> (u16, String) {
    let address = server.url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_uploads_fail_their_document_and_never_the_server() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        data.path(),
        &Stack::embedded(),
        &[("RAG_AGENT_MAX_CHUNKS_PER_DOCUMENT", "40")],
    );
    let pid = server.pid();

    // Deep HTML: refused by the nesting check, in milliseconds.
    for depth in [10_000, 100_000] {
        let html = format!(
            "<html><body>{}deep{}",
            "<div>".repeat(depth),
            "</div>".repeat(depth)
        );
        let (s, b) = upload_form(
            &server,
            form(html.into_bytes(), "deep.html", "text/html", &[]),
        )
        .await;
        assert_code(s, &b, 422, "document_too_complex");
        still_serving(&mut server, pid).await;
    }
    // A page dictionary holding deeply nested arrays.
    for depth in [1_000, 100_000] {
        let pdf = format!(
            "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R /Annots {}0{} >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let (s, b) = upload_form(
            &server,
            form(pdf.into_bytes(), "deep.pdf", "application/pdf", &[]),
        )
        .await;
        assert_code(s, &b, 422, "document_too_complex");
        still_serving(&mut server, pid).await;
    }
    // A 1 MB PDF whose page content inflates to 1 GiB.
    let bomb = fixture("flate_bomb.pdf");
    assert!(bomb.len() < 2 << 20);
    let (s, b) = upload_form(
        &server,
        form(bomb, "bomb.pdf", "application/pdf", &[("wait", "true")]),
    )
    .await;
    assert_code(s, &b, 422, "document_too_large");
    still_serving(&mut server, pid).await;
    let peak = server.peak_rss_bytes();
    eprintln!("peak RSS after the hostile uploads: {} MiB", peak >> 20);
    assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MiB", peak >> 20);

    // Chunking that would explode, and a document over the chunk cap.
    let text = "Ownership is a set of rules. ".repeat(400);
    let (s, b) = upload_form(
        &server,
        form(
            text.clone().into_bytes(),
            "rules.txt",
            "text/plain",
            &[("chunk_size", "50"), ("chunk_overlap", "49")],
        ),
    )
    .await;
    assert_code(s, &b, 400, "invalid_request");
    let (s, b) = post_json(
        &server.at("/documents/ingest"),
        &json!({"content": text, "chunk_size": 100, "chunk_overlap": 10, "wait": true}),
    )
    .await;
    assert_code(s, &b, 422, "too_many_chunks");

    // Descriptors and form shapes.
    let (s, b) = post_json(
        &server.at("/documents/ingest"),
        &json!({"content": "x y z", "title": "t".repeat(100_000)}),
    )
    .await;
    assert_code(s, &b, 400, "invalid_request");
    let many: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("k{i}"), json!(i))).collect();
    let (s, b) = post_json(
        &server.at("/documents/ingest"),
        &json!({"content": "x y z", "metadata": many}),
    )
    .await;
    assert_code(s, &b, 400, "invalid_request");
    let two = form(b"first file".to_vec(), "a.txt", "text/plain", &[]).part(
        "file",
        reqwest::multipart::Part::bytes(b"second file".to_vec()).file_name("b.txt"),
    );
    let (s, b) = upload_form(&server, two).await;
    assert_code(s, &b, 422, "invalid_request");
    let (s, b) = send(
        client()
            .post(server.at("/documents/upload"))
            .header("content-type", "multipart/form-data")
            .body("no boundary"),
    )
    .await;
    assert_code(s, &b, 415, "unsupported_media_type");
    let (_, listed) = get_json(&server.at("/documents")).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "{listed}");

    // After all that, a real PDF is indexed and cited.
    let (s, b) = upload_form(
        &server,
        form(
            fixture("ownership.pdf"),
            "ownership.pdf",
            "application/pdf",
            &[("wait", "true")],
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["document"]["status"], "INDEXED", "{b}");
    let id = b["document"]["id"].as_str().unwrap().to_string();
    let (_, doc) = get_json(&server.at(&format!("/documents/{id}?include_content=true"))).await;
    let content = doc["content"].as_str().unwrap();
    for phrase in [
        "There can only be one owner at a time.",
        "A string slice is a reference to part of a String.",
    ] {
        assert!(content.contains(phrase), "{phrase:?} missing: {content}");
    }
    let (s, answer) = post_json(
        &server.at("/query"),
        &json!({"query": "How many owners can a value have at a time?"}),
    )
    .await;
    assert_eq!(s, 200, "{answer}");
    let cited = answer["sources"].as_array().unwrap();
    assert!(
        cited.iter().any(|src| src["document_id"] == id.as_str()),
        "{answer}"
    );
    assert!(
        answer["answer"].as_str().unwrap().contains("one owner"),
        "{answer}"
    );
    still_serving(&mut server, pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sites_pages_cannot_reach_the_local_api() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &[
            ("CORS_ALLOWED_ORIGINS", "http://app.example:8080"),
            ("RAG_AGENT_ALLOWED_HOSTS", "rag.lan"),
        ],
    );
    let authority = server.url.strip_prefix("http://").unwrap().to_string();

    // DNS rebinding: the browser sends the attacker's name as Host.
    for host in ["evil.example", "evil.example:80", "localhost.evil.example"] {
        let (s, response) = raw_request(
            &server,
            &format!("GET /documents HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(s, 403, "{response}");
        assert!(response.contains("host_not_allowed"), "{response}");
    }
    for host in [authority.as_str(), "localhost", "rag.lan:3000"] {
        let (s, response) = raw_request(
            &server,
            &format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(s, 200, "{host}: {response}");
    }

    // A cross-site multipart upload needs no preflight; it is refused.
    let (s, b) = send(
        client()
            .post(server.at("/documents/upload"))
            .header("origin", "http://evil.example")
            .multipart(form(b"planted text".to_vec(), "x.txt", "text/plain", &[])),
    )
    .await;
    assert_code(s, &b, 403, "origin_not_allowed");
    let (s, b) = send(
        client()
            .delete(server.at("/documents/7d0c4a8e-3c5b-4a57-9d4e-6a1f2b3c4d5e"))
            .header("origin", "null"),
    )
    .await;
    assert_code(s, &b, 403, "origin_not_allowed");

    // The server's own page (the built-in UI), a listed origin, and curl or
    // the CLI (no Origin) keep working.
    for origin in [
        Some(format!("http://{authority}")),
        Some("http://app.example:8080".to_string()),
        None,
    ] {
        let mut request = client()
            .post(server.at("/documents/upload"))
            .multipart(form(
                format!("text sent from {origin:?}").into_bytes(),
                "x.txt",
                "text/plain",
                &[],
            ));
        if let Some(origin) = &origin {
            request = request.header("origin", origin);
        }
        let (s, b) = send(request).await;
        assert_eq!(s, 202, "{origin:?}: {b}");
    }

    // Preflights: answered for the listed origin only.
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, server.at("/query"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let listed = preflight("http://app.example:8080").await.unwrap();
    assert_eq!(
        listed
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("http://app.example:8080")
    );
    let other = preflight("http://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// A kill at any moment of an upload leaves no files without a row: the
/// row is written first. Many uploads are in flight when the process dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_upload_leaves_no_unlisted_files() {
    let data = tempfile::tempdir().unwrap();
    let stack = Stack::embedded();
    let server = Server::start(data.path(), &stack, &[]);
    let uploads: Vec<_> = (0..40)
        .map(|i| {
            let url = server.at("/documents/upload");
            tokio::spawn(async move {
                let text =
                    format!("Document number {i} about ownership and borrowing. ").repeat(2000);
                let form = form(text.into_bytes(), &format!("doc{i}.txt"), "text/plain", &[]);
                let _ = client().post(url).multipart(form).send().await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.stop();
    for upload in uploads {
        let _ = upload.await;
    }
    let server = Server::start(data.path(), &stack, &[]);
    let folders = data.path().join("files/documents");
    let mut checked = 0;
    if folders.exists() {
        for entry in std::fs::read_dir(&folders).unwrap() {
            let id = entry.unwrap().file_name().to_string_lossy().into_owned();
            let (s, b) = get_json(&server.at(&format!("/documents/{id}"))).await;
            assert_eq!(s, 200, "folder {id} has no row: {b}");
            checked += 1;
        }
    }
    eprintln!("{checked} document folders after the kill, each with its row");
    wait_until_settled(&server, Duration::from_secs(300)).await;
}
