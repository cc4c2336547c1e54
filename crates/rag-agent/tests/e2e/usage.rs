//! Usage and budgets over a real socket, on both backend sets: what a
//! tenant's requests, ingestion and answers add to `GET /usage`, a spent
//! `TENANT_MONTHLY_TOKEN_BUDGET` answering 429 `quota_exceeded` to that
//! tenant only, and the operator reading every tenant and lifting one
//! tenant's budget with `PUT /admin/tenants/{tenant}`.

use serde_json::{Value, json};

use crate::auth::{call, make_key};
use crate::support::*;

#[tokio::test]
async fn usage_is_counted_per_tenant_and_a_spent_budget_refuses_embedded() {
    usage_and_budget(Stack::embedded()).await;
}

/// Multi-threaded: the emulator serves from this runtime while the test
/// blocks reading the server's first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_counted_per_tenant_and_a_spent_budget_refuses_aws() {
    usage_and_budget(Stack::aws().await).await;
}

fn tenant_entry<'a>(report: &'a Value, tenant: &str) -> &'a Value {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} missing from {report}"))
}

async fn usage_and_budget(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let writer_a = make_key(&stack, dir, "team-a", "writer");
    let admin_a = make_key(&stack, dir, "team-a", "admin");
    let reader_b = make_key(&stack, dir, "team-b", "reader");
    let operator = make_key(&stack, dir, "*", "admin");
    // One token a month: the first answer spends it, the next is refused.
    let server = Server::start(
        dir,
        &stack,
        &[
            ("RAG_AGENT_AUTH", "api_key"),
            ("TENANT_MONTHLY_TOKEN_BUDGET", "1"),
        ],
    );

    let content = "Budgets renew monthly. The vault keeps one owner per value.";
    let (status, ingested) = call(
        "POST",
        &server.at("/documents/ingest"),
        Some(&writer_a),
        Some(&json!({"title": "Budget", "content": content, "wait": true})),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {ingested}");
    let question = json!({"query": "What does the vault keep?"});
    let (status, answer) = call(
        "POST",
        &server.at("/query"),
        Some(&writer_a),
        Some(&question),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let spent = answer["token_usage"]["total_tokens"].as_u64().unwrap();
    assert!(spent > 0, "{answer}");

    // Spent: /query, /chat and /chat/stream refuse before any model call.
    for (path, body) in [
        ("/query", question.clone()),
        ("/chat", json!({"message": "And again?"})),
        ("/chat/stream", json!({"message": "And again?"})),
    ] {
        let response = client()
            .post(server.at(path))
            .bearer_auth(&writer_a)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429, "{path}");
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=31 * 86_400).contains(&retry_after), "{retry_after}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "quota_exceeded", "{path}: {body}");
    }
    // Reading still works, and another tenant has its own budget.
    let (status, _) = call("GET", &server.at("/documents"), Some(&writer_a), None).await;
    assert_eq!(status, 200);
    let (status, other) = call(
        "POST",
        &server.at("/query"),
        Some(&reader_b),
        Some(&question),
    )
    .await;
    assert_eq!(status, 200, "{other}");
    assert!(
        other["sources"].as_array().unwrap().is_empty(),
        "team-b sees none of team-a's passages: {other}"
    );

    // The tenant's admin reads its own tenant's usage.
    let (status, report) = call("GET", &server.at("/usage"), Some(&admin_a), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tenants"].as_array().unwrap().len(), 1, "{report}");
    let a = tenant_entry(&report, "team-a");
    let total = &a["total"];
    // ingest, query, three refused answers, the list: six requests (the
    // report's own request is counted too, but may land after its read).
    assert!(total["requests"].as_u64().unwrap() >= 6, "{report}");
    assert_eq!(total["documents_ingested"], 1, "{report}");
    assert_eq!(
        total["bytes_ingested"].as_u64(),
        Some(content.len() as u64),
        "{report}"
    );
    assert!(
        total["embedding_calls"].as_u64().unwrap() >= 2,
        "a chunk and a question: {report}"
    );
    assert_eq!(
        total["input_tokens"].as_u64().unwrap() + total["output_tokens"].as_u64().unwrap(),
        spent,
        "{report}"
    );
    assert_eq!(a["tokens_this_month"].as_u64(), Some(spent), "{report}");
    assert_eq!(a["monthly_token_budget"], 1, "{report}");
    let days = a["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{report}");
    assert_eq!(days[0]["date"], report["to"], "{report}");

    // Wrong roles, bad spans.
    let (status, _) = call("GET", &server.at("/usage"), Some(&writer_a), None).await;
    assert_eq!(status, 403, "a writer reads no usage");
    for query in [
        "from=2026-13-01",
        "from=2026-12-02&to=2026-12-01",
        "from=2024-01-01&to=2026-01-01",
        "to=12026-01-01",
    ] {
        let (status, body) = call(
            "GET",
            &server.at(&format!("/usage?{query}")),
            Some(&admin_a),
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (status, _) = call(
        "PUT",
        &server.at("/admin/tenants/team-a"),
        Some(&admin_a),
        Some(&json!({"monthly_token_budget": 0})),
    )
    .await;
    assert_eq!(status, 403, "a tenant's admin sets no budget");

    // The operator reads every tenant's usage, and lifts team-a's budget.
    let (status, report) = call("GET", &server.at("/usage"), Some(&operator), None).await;
    assert_eq!(status, 200, "{report}");
    tenant_entry(&report, "team-a");
    assert!(
        tenant_entry(&report, "team-b")["total"]["requests"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let (status, set) = call(
        "PUT",
        &server.at("/admin/tenants/team-a"),
        Some(&operator),
        Some(&json!({"monthly_token_budget": 0})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set,
        json!({"tenant": "team-a", "monthly_token_budget": 0, "effective_monthly_token_budget": null, "use_case": null, "allowed_use_cases": []})
    );
    let (status, got) = call(
        "GET",
        &server.at("/admin/tenants/team-a"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!((status, &got), (200, &set));
    let (status, answer) = call(
        "POST",
        &server.at("/query"),
        Some(&writer_a),
        Some(&question),
    )
    .await;
    assert_eq!(status, 200, "no budget for team-a now: {answer}");
    let (status, _) = call(
        "GET",
        &server.at("/admin/tenants/not%20a%20tenant"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(status, 400);
    server.stop();
}
