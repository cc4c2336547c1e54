//! A crash mid-ingestion: documents left PENDING or PROCESSING are resumed
//! on the next start and all end INDEXED, with no duplicate chunks.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_ingestion_resumes_after_restart_embedded() {
    interrupted_ingestion_resumes_after_restart(Stack::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_ingestion_resumes_after_restart_aws() {
    interrupted_ingestion_resumes_after_restart(Stack::aws().await).await;
}

async fn interrupted_ingestion_resumes_after_restart(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    let pages: Vec<_> = book_pages()
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("ch04") || name.starts_with("ch08")
        })
        .collect();
    assert!(pages.len() >= 5);
    for page in &pages {
        let (status, body) = upload(&server, page).await;
        assert_eq!(status, 202, "{body}");
    }
    // Kill it while the background workers are still embedding.
    let (_, in_flight) = get_json(&server.at("/documents?status=PENDING")).await;
    assert!(
        !in_flight["items"].as_array().unwrap().is_empty(),
        "indexing finished too soon to test recovery"
    );
    server.stop();

    let server = Server::start(data.path(), &stack, &[]);
    wait_until_settled(&server, Duration::from_secs(600)).await;
    let (_, indexed) = get_json(&server.at("/documents?status=INDEXED&limit=100")).await;
    let docs = indexed["items"].as_array().unwrap();
    assert_eq!(docs.len(), pages.len());
    let chunk_total: u64 = docs
        .iter()
        .map(|d| d["chunk_count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        stack.vector_count(&server).await,
        chunk_total,
        "vectors must match chunks exactly"
    );
    for doc in docs {
        let (_, detail) = get_json(&server.at(&format!(
            "/documents/{}?include_chunks=true",
            doc["id"].as_str().unwrap()
        )))
        .await;
        assert_eq!(
            detail["chunks"].as_array().unwrap().len() as u64,
            doc["chunk_count"].as_u64().unwrap()
        );
    }
    let (status, answer) = post_json(
        &server.at("/query"),
        &json!({"query": "What is a String?", "top_k": 3}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!answer["sources"].as_array().unwrap().is_empty());
}
