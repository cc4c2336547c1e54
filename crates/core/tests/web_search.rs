//! `web_search` against local servers speaking the SearXNG and Brave wire
//! formats.

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use rag_core::tools::{Tool, ToolError, ToolOutput, WebSearchProvider, WebSearchTool};
use serde_json::{Value, json};
use std::collections::HashMap;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn text(output: ToolOutput) -> String {
    match output {
        ToolOutput::Text(t) => t,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn searxng_results_become_numbered_titles_urls_and_snippets() {
    let app = Router::new().route(
        "/search",
        get(|Query(q): Query<HashMap<String, String>>| async move {
            assert_eq!(q["format"], "json");
            axum::Json(json!({"results": [
                {"title": format!("About {}", q["q"]), "url": "https://a.example/1", "content": "First snippet."},
                {"title": "Second", "url": "https://a.example/2", "content": "x".repeat(2000)},
                {"title": "Third", "url": "https://a.example/3", "content": "Third snippet."},
                {"url": "https://a.example/untitled"},
            ]}))
        }),
    );
    let url = serve(app).await;
    let tool = WebSearchTool::new(
        WebSearchProvider::Searxng { base_url: url },
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(tool.spec().name, "web_search");
    let out = text(
        tool.call(
            &rag_core::Tenant::default_tenant(),
            json!({"query": "rust", "max_results": 2}),
        )
        .await
        .unwrap(),
    );
    assert!(
        out.starts_with("1. About rust\nhttps://a.example/1\nFirst snippet."),
        "{out}"
    );
    assert!(out.contains("2. Second\nhttps://a.example/2\n"));
    assert!(!out.contains("Third"), "max_results is respected");
    assert!(out.len() < 1000, "snippets are capped");
    assert!(matches!(
        tool.call(&rag_core::Tenant::default_tenant(), json!({"query": " "}))
            .await,
        Err(ToolError::InvalidInput(_))
    ));
    assert!(matches!(
        tool.call(
            &rag_core::Tenant::default_tenant(),
            json!({"query": "x", "max_results": 11})
        )
        .await,
        Err(ToolError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn brave_sends_its_token_and_reads_its_shape() {
    let app = Router::new().route(
        "/res/v1/web/search",
        get(|headers: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
            if headers.get("x-subscription-token").and_then(|v| v.to_str().ok()) != Some("secret") {
                return (StatusCode::UNAUTHORIZED, axum::Json(Value::Null));
            }
            (
                StatusCode::OK,
                axum::Json(json!({"web": {"results": [
                    {"title": "Brave result", "url": "https://b.example", "description": format!("count={}", q["count"])}
                ]}})),
            )
        }),
    );
    let url = serve(app).await;
    let tool = WebSearchTool::new(
        WebSearchProvider::Brave {
            base_url: url.clone(),
            api_key: "secret".into(),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    let out = text(
        tool.call(
            &rag_core::Tenant::default_tenant(),
            json!({"query": "rust"}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(out, "1. Brave result\nhttps://b.example\ncount=5");

    let wrong = WebSearchTool::new(
        WebSearchProvider::Brave {
            base_url: url,
            api_key: "nope".into(),
        },
        Duration::from_secs(5),
    )
    .unwrap();
    match wrong
        .call(
            &rag_core::Tenant::default_tenant(),
            json!({"query": "rust"}),
        )
        .await
    {
        Err(ToolError::Failed(m)) => assert!(m.contains("401"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_a_tool_failure_not_a_panic() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let tool = WebSearchTool::new(
        WebSearchProvider::Searxng { base_url: url },
        Duration::from_secs(5),
    )
    .unwrap();
    match tool
        .call(
            &rag_core::Tenant::default_tenant(),
            json!({"query": "rust"}),
        )
        .await
    {
        Err(ToolError::Failed(m)) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("{other:?}"),
    }
}
