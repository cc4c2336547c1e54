//! Every kind of bad request gets a JSON error with the right status, and
//! the server keeps serving. Also URL ingestion through the address guard.

use axum::Router;
use axum::response::{Html, Redirect};
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::*;

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

async fn raw_post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    send(
        client()
            .post(url)
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

/// A web server on 127.0.0.1 reached by the name `localhost`, which the
/// test allowlists; the literal address stays forbidden.
async fn page_server() -> u16 {
    let app = Router::new()
        .route(
            "/page.html",
            get(|| async {
                Html("<html><head><title>Borrowing</title></head><body><nav>Menu</nav><main><h1>Borrowing</h1><p>References let you use a value without taking ownership of it.</p></main></body></html>")
            }),
        )
        .route("/to-metadata", get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }))
        .route(
            "/to-port/{port}",
            get(|axum::extract::Path(port): axum::extract::Path<u16>| async move {
                Redirect::temporary(&format!("http://localhost:{port}/documents"))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test]
async fn bad_input_gets_json_errors_and_the_server_keeps_serving_embedded() {
    bad_input_gets_json_errors_and_the_server_keeps_serving(Stack::embedded()).await;
}

/// Multi-threaded: the emulator serves from this runtime while the test
/// blocks reading the server's first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_and_the_server_keeps_serving_aws() {
    let stack = Stack::aws().await;
    bad_input_gets_json_errors_and_the_server_keeps_serving(stack).await;
}

async fn bad_input_gets_json_errors_and_the_server_keeps_serving(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    // The allowlist names host and port: the same host on another port
    // (this server's own API, say) stays refused.
    let port = page_server().await;
    let allowlist = format!("localhost:{port}");
    let server = Server::start(
        data.path(),
        &stack,
        &[("RAG_AGENT_FETCH_ALLOWLIST", allowlist.as_str())],
    );
    let ingest = server.at("/documents/ingest");

    let (s, b) = raw_post(&ingest, "application/json", "{\"content\": ").await;
    assert_error(s, &b, 400, "malformed_json");
    let (s, b) = raw_post(&ingest, "text/plain", "hello").await;
    assert_error(s, &b, 415, "unsupported_media_type");
    let (s, b) = post_json(&ingest, &json!({"content": ""})).await;
    assert_error(s, &b, 400, "invalid_request");
    let (s, b) = post_json(&ingest, &json!({"content": "   \n\n  "})).await;
    assert_error(s, &b, 422, "empty_document");
    let (s, b) = post_json(&ingest, &json!({"title": "neither content nor url"})).await;
    assert_error(s, &b, 422, "invalid_request");
    let (s, b) = post_json(&ingest, &json!({"content": "x", "bogus": 1})).await;
    assert_error(s, &b, 422, "invalid_request");
    let (s, b) = post_json(
        &ingest,
        &json!({"content": "some text", "content_type": "image/png"}),
    )
    .await;
    assert_error(s, &b, 415, "unsupported_content_type");

    // An unsupported file upload.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec())
            .file_name("logo.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let (s, b) = send(
        client()
            .post(server.at("/documents/upload"))
            .multipart(form),
    )
    .await;
    assert_error(s, &b, 415, "unsupported_content_type");
    let form = reqwest::multipart::Form::new().text("title", "no file");
    let (s, b) = send(
        client()
            .post(server.at("/documents/upload"))
            .multipart(form),
    )
    .await;
    assert_error(s, &b, 422, "invalid_request");

    // top_k out of range, empty question, unknown mode.
    for top_k in [0, 1000] {
        let (s, b) = post_json(
            &server.at("/query"),
            &json!({"query": "ownership", "top_k": top_k}),
        )
        .await;
        assert_error(s, &b, 400, "invalid_request");
    }
    let (s, b) = post_json(&server.at("/query"), &json!({"query": "  "})).await;
    assert_error(s, &b, 400, "invalid_request");
    let (s, b) = post_json(
        &server.at("/query"),
        &json!({"query": "x", "mode": "psychic"}),
    )
    .await;
    assert_error(s, &b, 422, "invalid_request");
    // A mode this backend set lacks is refused rather than quietly changed;
    // hybrid degrades to the one half that exists and says so.
    if !stack.modes().contains(&"lexical") {
        let (s, b) = post_json(
            &server.at("/query"),
            &json!({"query": "x", "mode": "lexical"}),
        )
        .await;
        assert_error(s, &b, 503, "unavailable");
        let (s, b) = post_json(
            &server.at("/query"),
            &json!({"query": "x", "mode": "hybrid"}),
        )
        .await;
        assert_eq!((s, b["search_mode"].as_str()), (200, Some("dense")), "{b}");
    }

    // Unknown and malformed ids, unknown routes and methods.
    let (s, b) = get_json(&server.at("/documents/7d0c4a8e-3c5b-4a57-9d4e-6a1f2b3c4d5e")).await;
    assert_error(s, &b, 404, "document_not_found");
    let (s, b) =
        send(client().delete(server.at("/documents/7d0c4a8e-3c5b-4a57-9d4e-6a1f2b3c4d5e"))).await;
    assert_error(s, &b, 404, "document_not_found");
    let (s, b) = get_json(&server.at("/documents/not-a-uuid")).await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get_json(&server.at("/documents?status=DONE")).await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get_json(&server.at("/documents?limit=abc")).await;
    assert_error(s, &b, 400, "invalid_parameter");
    let (s, b) = get_json(&server.at("/no/such/route")).await;
    assert_error(s, &b, 404, "route_not_found");
    let (s, b) = send(client().put(server.at("/query"))).await;
    assert_error(s, &b, 405, "method_not_allowed");

    // A body over the 50 MB default.
    let big = format!("{{\"content\": \"{}\"}}", "a".repeat(51 * 1024 * 1024));
    let (s, b) = raw_post(&ingest, "application/json", big).await;
    assert_error(s, &b, 413, "payload_too_large");

    // URLs to the service's own network are refused, before and after redirects.
    let api_port = reqwest::Url::parse(&server.at("/"))
        .unwrap()
        .port()
        .unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/page.html"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/".to_string(),
        format!("http://[::ffff:0:7f00:1]:{port}/page.html"),
        format!("http://[64:ff9b::7f00:1]:{port}/page.html"),
        format!("http://localhost:{port}/to-metadata"),
        format!("http://localhost:{api_port}/documents"),
        format!("http://localhost:{port}/to-port/{api_port}"),
    ] {
        let (s, b) = post_json(&ingest, &json!({"url": url})).await;
        assert_error(s, &b, 400, "url_not_allowed");
    }
    let (s, b) = post_json(&ingest, &json!({"url": "ftp://example.com/x"})).await;
    assert_error(s, &b, 400, "invalid_url");

    // The allowlisted name works, and only the main content is kept.
    let (s, b) = post_json(
        &ingest,
        &json!({"url": format!("http://localhost:{port}/page.html"), "wait": true}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["document"]["status"], "INDEXED");
    assert_eq!(b["document"]["title"], "Borrowing");
    let id = b["document"]["id"].as_str().unwrap();
    let (_, doc) = get_json(&server.at(&format!("/documents/{id}?include_content=true"))).await;
    assert_eq!(
        doc["content"],
        "Borrowing\n\nReferences let you use a value without taking ownership of it."
    );

    // Identical content is recognised unless a new version is asked for.
    let (s, again) = post_json(
        &ingest,
        &json!({"url": format!("http://localhost:{port}/page.html")}),
    )
    .await;
    assert_eq!((s, again["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(again["document"]["id"], id);
    let (s, v2) = post_json(&ingest, &json!({"url": format!("http://localhost:{port}/page.html"), "new_version": true, "wait": true})).await;
    assert_eq!(s, 201);
    assert_ne!(v2["document"]["id"], id);

    // Still serving, and the OpenAPI document and tools are well formed.
    let (s, health) = get_json(&server.at("/health")).await;
    assert_eq!(s, 200);
    assert_eq!(health["document_count"], 2);
    let (s, spec) = get_json(&server.at("/openapi.json")).await;
    assert_eq!(s, 200);
    for path in [
        "/health",
        "/query",
        "/chat",
        "/chat/stream",
        "/documents",
        "/documents/ingest",
        "/documents/upload",
        "/documents/{id}",
        "/tools",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let (_, names) = list_tools(&server).await;
    let offered = |name: &str| names.iter().any(|n| n == name);
    assert!(
        offered("vector_search") && offered("get_document"),
        "{names:?}"
    );
    // The knowledge base tool is offered only where one is configured.
    assert_eq!(
        offered("knowledge_base_search"),
        stack.emulator().is_some(),
        "{names:?}"
    );
}
