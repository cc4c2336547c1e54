//! Bedrock per use case (`BEDROCK_ROUTES`) on the AWS stack: moto's STS
//! issues each use case's role credentials (AssumeRole, and
//! AssumeRoleWithWebIdentity with a token file), and the emulator records
//! which access key signed every Bedrock call. Moto tells whose keys they
//! are (`GetCallerIdentity`), so each call is traced to its role.

use std::time::Duration;

use serde_json::{Value, json};

use crate::lambda_runtime::make_key;
use crate::support::*;

const SEARCH_ROLE: &str = "arn:aws:iam::111111111111:role/ACME-GenAI-Search-BedrockInvokeRole";
const FINANCE_ROLE: &str = "arn:aws:iam::222222222222:role/ACME-GenAI-Finance-BedrockInvokeRole";
const OTHER_MODEL: &str = "anthropic.claude-other-v1:0";

fn routes() -> String {
    json!({
        "search": {"role_arn": SEARCH_ROLE, "region": "us-east-1",
                   "allowed_models": [BEDROCK_LLM, OTHER_MODEL]},
        "finance": {"role_arn": FINANCE_ROLE, "region": "us-east-1", "web_identity": true},
    })
    .to_string()
}

fn moto_url(stack: &Stack) -> String {
    stack
        .env()
        .into_iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL_STS")
        .map(|(_, v)| v)
        .unwrap()
}

/// Whose credentials an access key is, as moto's STS says.
async fn caller_arn(stack: &Stack, access_key: &str) -> String {
    let credentials =
        aws_sdk_sts::config::Credentials::new(access_key, "unused", None, None, "test");
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(moto_url(stack))
        .build();
    let identity = aws_sdk_sts::Client::from_conf(config)
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    identity.arn().unwrap_or_default().to_string()
}

async fn ask(
    server: &Server,
    key: &str,
    use_case: Option<&str>,
    model: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"query": "What is a slice?"});
    if let Some(model) = model {
        body["model"] = json!(model);
    }
    let mut request = client()
        .post(server.at("/query"))
        .bearer_auth(key)
        .json(&body);
    if let Some(use_case) = use_case {
        request = request.header("x-use-case-id", use_case);
    }
    send(request).await
}

/// The access keys of the Bedrock calls made since `from`, with their paths.
fn calls_since(stack: &Stack, from: usize) -> Vec<(String, String)> {
    stack.emulator().unwrap().signed_calls()[from..]
        .iter()
        .map(|c| (c.path.clone(), c.access_key.clone().unwrap_or_default()))
        .collect()
}

fn one_key(calls: &[(String, String)]) -> String {
    assert!(!calls.is_empty(), "no Bedrock call was made");
    let key = &calls[0].1;
    assert!(calls.iter().all(|(_, k)| k == key), "{calls:?}");
    assert_ne!(key, "testing", "signed with the process's own credentials");
    key.clone()
}

/// The AWS stack with the two routes, authenticating with keys; the
/// directory holds the web identity token file.
async fn routed_stack(extra: &[(&str, &str)]) -> (tempfile::TempDir, Stack) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    // moto takes any token; a real STS checks it against the OIDC provider.
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyYWctYWdlbnQifQ.c2ln",
    )
    .unwrap();
    let routes = routes();
    let mut env = vec![
        ("RAG_AGENT_AUTH", "api_key"),
        ("BEDROCK_ROUTES", routes.as_str()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    let stack = Stack::aws_with(&env).await;
    (dir, stack)
}

/// `PUT /admin/tenants/default` as the operator.
async fn set_default_tenant(server: &Server, operator: &str, settings: Value) -> Value {
    let (status, body) = send(
        client()
            .put(server.at("/admin/tenants/default"))
            .bearer_auth(operator)
            .json(&settings),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_use_case_calls_bedrock_as_its_own_role() {
    let (_dir, stack) = routed_stack(&[]).await;
    let operator = make_key(&stack, "*", "admin");
    let writer = make_key(&stack, "default", "writer");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    let (status, body) = send(
        client()
            .post(server.at("/documents/ingest"))
            .bearer_auth(&writer)
            .json(&json!({"title": "Slices", "content": "A slice is a reference to a contiguous sequence of elements in a collection.", "wait": true})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // No use case yet: refused before any model call.
    let before = stack.emulator().unwrap().signed_calls().len();
    let (status, body) = ask(&server, &writer, None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("use_case_required")),
        "{body}"
    );
    assert!(calls_since(&stack, before).is_empty());

    // The operator gives the tenant its use case and one more it may name.
    let body = set_default_tenant(
        &server,
        &operator,
        json!({"use_case": "search", "allowed_use_cases": ["finance"]}),
    )
    .await;
    assert_eq!(body["use_case"], "search");

    let before = stack.emulator().unwrap().signed_calls().len();
    let (status, body) = ask(&server, &writer, None, None).await;
    assert_eq!(status, 200, "{body}");
    let search_calls = calls_since(&stack, before);
    // The question's embedding and the answer, both as the search role.
    assert!(
        search_calls.iter().any(|(p, _)| p.ends_with("/invoke")),
        "{search_calls:?}"
    );
    assert!(
        search_calls.iter().any(|(p, _)| p.ends_with("/converse")),
        "{search_calls:?}"
    );
    let search_key = one_key(&search_calls);

    let before = stack.emulator().unwrap().signed_calls().len();
    let (status, body) = ask(&server, &writer, Some("finance"), None).await;
    assert_eq!(status, 200, "{body}");
    let finance_key = one_key(&calls_since(&stack, before));
    assert_ne!(search_key, finance_key);

    assert!(
        caller_arn(&stack, &search_key)
            .await
            .ends_with(":assumed-role/ACME-GenAI-Search-BedrockInvokeRole/rag-agent-search"),
        "{}",
        caller_arn(&stack, &search_key).await
    );
    assert!(
        caller_arn(&stack, &finance_key)
            .await
            .ends_with(":assumed-role/ACME-GenAI-Finance-BedrockInvokeRole/rag-agent-finance"),
        "{}",
        caller_arn(&stack, &finance_key).await
    );

    // Refusals name the use case and the model, never a role, and call nothing.
    let before = stack.emulator().unwrap().signed_calls().len();
    let (status, body) = ask(&server, &writer, Some("finance"), Some(OTHER_MODEL)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("finance") && message.contains(OTHER_MODEL),
        "{message}"
    );
    assert!(
        !message.contains("arn:") && !message.contains("222222222222"),
        "{message}"
    );
    let (status, body) = ask(&server, &writer, Some("payroll"), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("use_case_not_allowed")),
        "{body}"
    );
    assert!(calls_since(&stack, before).is_empty());

    // Another allowed model of the same use case, and the same credentials
    // again: the role was assumed once.
    let (status, body) = ask(&server, &writer, None, Some(OTHER_MODEL)).await;
    assert_eq!(status, 200, "{body}");
    let again = calls_since(&stack, before);
    assert!(
        again
            .iter()
            .any(|(p, _)| *p == format!("/model/{}/converse", OTHER_MODEL.replace(':', "%3A"))),
        "{again:?}"
    );
    assert_eq!(one_key(&again), search_key);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_near_expiry_are_refreshed_without_failing_a_request() {
    // Credentials of 900 s (STS's shortest) are "near expiry" within a
    // few seconds with a margin of 897 s (moto states expiry to the second).
    let (_dir, stack) = routed_stack(&[
        ("BEDROCK_ROLE_SESSION_SECONDS", "900"),
        ("BEDROCK_CREDENTIALS_REFRESH_SECS", "897"),
    ])
    .await;
    let operator = make_key(&stack, "*", "admin");
    let reader = make_key(&stack, "default", "reader");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    set_default_tenant(&server, &operator, json!({"use_case": "search"})).await;
    let mut keys: Vec<Vec<String>> = Vec::new();
    for _ in 0..4 {
        let before = stack.emulator().unwrap().signed_calls().len();
        let (status, body) = ask(&server, &reader, None, None).await;
        assert_eq!(status, 200, "{body}");
        keys.push(
            calls_since(&stack, before)
                .into_iter()
                .map(|(_, key)| key)
                .collect(),
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // The first request assumed the role and used those credentials
    // throughout; a later one found them within the margin and went on
    // with them while a refresh ran in the background; the last uses the
    // refreshed ones.
    let first: Vec<(String, String)> = keys[0].iter().map(|k| (String::new(), k.clone())).collect();
    let first = one_key(&first);
    let all: std::collections::BTreeSet<&String> = keys.iter().flatten().collect();
    assert!(all.len() >= 2, "never refreshed: {keys:?}");
    assert_ne!(keys[3].last().unwrap(), &first, "{keys:?}");
    for key in all {
        assert!(
            caller_arn(&stack, key)
                .await
                .contains("ACME-GenAI-Search-BedrockInvokeRole")
        );
    }
    server.stop();
}
