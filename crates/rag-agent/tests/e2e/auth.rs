//! `RAG_AGENT_AUTH=api_key` over a real socket, on both backend sets: keys
//! made with `rag-agent keys create` before the server runs, the 401s and
//! 403s, key management over `/admin/keys`, a revocation that takes hold
//! while the server runs, and a cross-tenant matrix in which tenant B, with
//! every role, reaches nothing of tenant A's; and `RAG_AGENT_AUTH=jwt`
//! against a JWKS this test serves.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// `rag-agent keys <args> --json` on the stack's metadata store.
pub(crate) fn keys(stack: &Stack, data_dir: &Path, args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
    command
        .arg("keys")
        .args(args)
        .arg("--json")
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null());
    for (k, v) in stack.env() {
        command.env(k, v);
    }
    let output = command.output().expect("run rag-agent keys");
    assert!(
        output.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("keys --json prints JSON")
}

pub(crate) fn make_key(stack: &Stack, data_dir: &Path, tenant: &str, role: &str) -> String {
    let made = keys(
        stack,
        data_dir,
        &["create", "--tenant", tenant, "--role", role],
    );
    assert_eq!(
        (made["tenant"].as_str(), made["role"].as_str()),
        (Some(tenant), Some(role))
    );
    made["key"].as_str().unwrap().to_string()
}

pub(crate) async fn call(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = client().request(method.parse().unwrap(), url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    send(request).await
}

#[tokio::test]
async fn api_keys_isolate_tenants_embedded() {
    api_keys_isolate_tenants(Stack::embedded()).await;
}

/// Multi-threaded: the emulator serves from this runtime while the test
/// blocks reading the server's first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_isolate_tenants_aws() {
    api_keys_isolate_tenants(Stack::aws().await).await;
}

/// The same matrix with `S3_VECTOR_INDEX_PER_TENANT`: each tenant's
/// vectors in an index of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_isolate_tenants_aws_with_an_index_per_tenant() {
    api_keys_isolate_tenants(Stack::aws_with(&[("S3_VECTOR_INDEX_PER_TENANT", "true")]).await)
        .await;
}

async fn api_keys_isolate_tenants(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let writer_a = make_key(&stack, dir, "team-a", "writer");
    let admin_a = make_key(&stack, dir, "team-a", "admin");
    let b_keys: Vec<(&str, String)> = ["reader", "writer", "admin"]
        .into_iter()
        .map(|role| (role, make_key(&stack, dir, "team-b", role)))
        .collect();
    let operator = make_key(&stack, dir, "*", "admin");
    let server = Server::start(dir, &stack, &[("RAG_AGENT_AUTH", "api_key")]);

    // A's document and conversation.
    let secret = "The unicorn vault opens with ownership rules: each value has one owner.";
    let (status, ingested) = call(
        "POST",
        &server.at("/documents/ingest"),
        Some(&writer_a),
        Some(&json!({"title": "Vault", "content": secret, "wait": true})),
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {ingested}");
    let a_doc = ingested["document"]["id"].as_str().unwrap().to_string();
    let (status, chat) = call(
        "POST",
        &server.at("/chat"),
        Some(&writer_a),
        Some(&json!({"message": "How does the unicorn vault open?"})),
    )
    .await;
    assert_eq!(status, 200, "{chat}");
    let a_conversation = chat["conversation_id"].as_str().unwrap().to_string();

    // 401: no key, malformed, a wrong secret for a real key id.
    let (status, body) = call("GET", &server.at("/documents"), None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let response = client().get(server.at("/documents")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let wrong_secret = format!("{}{}", &writer_a[..writer_a.len() - 4], "0000");
    for bad in ["rag_nope", "not-a-key", wrong_secret.as_str()] {
        let (status, body) = call("GET", &server.at("/documents"), Some(bad), None).await;
        assert_eq!(status, 401, "{bad}: {body}");
        assert!(!body.to_string().contains(bad), "the key is echoed: {body}");
    }
    let (status, _) = send(
        client()
            .get(server.at("/documents"))
            .header("x-api-key", &writer_a),
    )
    .await;
    assert_eq!(status, 200, "x-api-key works as the bearer token does");

    // /health is open, and counts only for an admin.
    let (status, open) = call("GET", &server.at("/health"), None, None).await;
    assert_eq!(status, 200);
    assert!(open.get("document_count").is_none(), "{open}");
    let (_, counted) = call("GET", &server.at("/health"), Some(&admin_a), None).await;
    assert_eq!(counted["document_count"], 1, "{counted}");

    // The cross-tenant matrix: B, with every role, finds nothing of A's.
    let unknown = uuid::Uuid::new_v4().to_string();
    for (role, b_key) in &b_keys {
        let key = Some(b_key.as_str());
        let (status, listed) = call("GET", &server.at("/documents"), key, None).await;
        assert_eq!(status, 200, "{role}");
        assert_eq!(listed["items"], json!([]), "{role}: {listed}");
        for query in ["", "?include_content=true&include_chunks=true"] {
            let (status, body) = call(
                "GET",
                &server.at(&format!("/documents/{a_doc}{query}")),
                key,
                None,
            )
            .await;
            let (unknown_status, unknown_body) = call(
                "GET",
                &server.at(&format!("/documents/{unknown}{query}")),
                key,
                None,
            )
            .await;
            assert_eq!((status, unknown_status), (404, 404), "{role}: {body}");
            assert_eq!(
                body.to_string().replace(&a_doc, "ID"),
                unknown_body.to_string().replace(&unknown, "ID"),
                "another tenant's id answers as an unknown one"
            );
        }
        let (status, _) = call(
            "DELETE",
            &server.at(&format!("/documents/{a_doc}")),
            key,
            None,
        )
        .await;
        let expected = if *role == "reader" { 403 } else { 404 };
        assert_eq!(status, expected, "{role} deleting A's document");
        for mode in stack.modes() {
            for ids in [json!([]), json!([a_doc])] {
                let (status, answer) = call(
                    "POST",
                    &server.at("/query"),
                    key,
                    Some(&json!({"query": "How does the unicorn vault open?", "mode": mode, "document_ids": ids})),
                )
                .await;
                assert_eq!(status, 200, "{role} {mode}: {answer}");
                assert_eq!(answer["sources"], json!([]), "{role} {mode}: {answer}");
                assert!(
                    !answer.to_string().contains("unicorn vault opens"),
                    "{answer}"
                );
            }
        }
        for path in ["/chat", "/chat/stream"] {
            let response = client()
                .post(server.at(path))
                .bearer_auth(b_key)
                .json(&json!({"message": "What did I ask before about the vault?", "conversation_id": a_conversation}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{role} {path}");
            let text = response.text().await.unwrap();
            assert!(
                !text.contains("unicorn vault opens"),
                "{role} {path}: {text}"
            );
            assert!(!text.contains(&a_doc), "{role} {path}: {text}");
        }
        let (status, conversation) = call(
            "GET",
            &server.at(&format!("/conversations/{a_conversation}")),
            key,
            None,
        )
        .await;
        assert_eq!(status, 200);
        // B's own turns under that id are B's; none of A's are there.
        assert!(
            !conversation
                .to_string()
                .contains("How does the unicorn vault open?"),
            "{role}: {conversation}"
        );
    }
    // A's data is intact.
    let (status, _) = call(
        "GET",
        &server.at(&format!("/documents/{a_doc}")),
        Some(&writer_a),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, conversation) = call(
        "GET",
        &server.at(&format!("/conversations/{a_conversation}")),
        Some(&writer_a),
        None,
    )
    .await;
    assert!(
        conversation
            .to_string()
            .contains("How does the unicorn vault open?")
    );

    // 403: a reader ingesting, a writer managing keys.
    let reader_b = &b_keys[0].1;
    let (status, body) = call(
        "POST",
        &server.at("/documents/ingest"),
        Some(reader_b),
        Some(&json!({"content": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = call("GET", &server.at("/admin/keys"), Some(&writer_a), None).await;
    assert_eq!(status, 403);

    // Keys over the API: an admin sees and makes its own tenant's only.
    let (status, listed) = call("GET", &server.at("/admin/keys"), Some(&admin_a), None).await;
    assert_eq!(status, 200);
    let tenants: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["team-a", "team-a"], "{listed}");
    assert!(!listed.to_string().contains("digest"));
    let (status, _) = call(
        "POST",
        &server.at("/admin/keys"),
        Some(&admin_a),
        Some(&json!({"tenant": "team-b", "role": "admin"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, made) = call(
        "POST",
        &server.at("/admin/keys"),
        Some(&admin_a),
        Some(&json!({"role": "reader", "name": "dashboard"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let fresh = made["key"].as_str().unwrap();
    let (status, listed) = call("GET", &server.at("/documents"), Some(fresh), None).await;
    assert_eq!(
        (status, listed["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let b_admin_id = keys(&stack, dir, &["list", "--tenant", "team-b"])
        .as_array()
        .unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = call(
        "DELETE",
        &server.at(&format!("/admin/keys/{b_admin_id}")),
        Some(&admin_a),
        None,
    )
    .await;
    assert_eq!(status, 404, "another tenant's key id is an unknown one");

    // The operator manages every tenant's keys and reads a tenant's data
    // only when it names the tenant.
    let (_, all) = call("GET", &server.at("/admin/keys"), Some(&operator), None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 7, "{all}");
    let (status, _) = call("GET", &server.at("/documents"), Some(&operator), None).await;
    assert_eq!(status, 403);
    let (status, listed) = send(
        client()
            .get(server.at("/documents"))
            .bearer_auth(&operator)
            .header("x-tenant-id", "team-a"),
    )
    .await;
    assert_eq!(
        (status, listed["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let (status, _) = send(
        client()
            .get(server.at("/documents"))
            .bearer_auth(&writer_a)
            .header("x-tenant-id", "team-b"),
    )
    .await;
    assert_eq!(status, 403, "a tenant's key cannot name another tenant");

    // The client commands take the key with --api-key (or RAG_AGENT_API_KEY).
    let client_list = |key: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
        command
            .args(["documents", "list", "--json", "--url", &server.url])
            .env_remove("RAG_AGENT_API_KEY")
            .env_remove("RAG_AGENT_HEADERS")
            .stdin(Stdio::null());
        if let Some(key) = key {
            command.args(["--api-key", key]);
        }
        command.output().expect("run rag-agent documents list")
    };
    let listed = client_list(Some(&writer_a));
    assert!(listed.status.success());
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(listed.to_string().contains(&a_doc), "{listed}");
    let refused = client_list(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthenticated"));

    // A key revoked with the CLI while the server runs stops working
    // within five seconds; an expired key is refused as expired.
    let writer_a_id = writer_a[4..20].to_string();
    keys(&stack, dir, &["revoke", &writer_a_id]);
    let revoked_at = Instant::now();
    loop {
        let (status, body) = call("GET", &server.at("/documents"), Some(&writer_a), None).await;
        if status == 401 {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("revoked")
            );
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let short = keys(
        &stack,
        dir,
        &[
            "create",
            "--tenant",
            "team-a",
            "--role",
            "reader",
            "--expires-in",
            "1s",
        ],
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = call("GET", &server.at("/documents"), short["key"].as_str(), None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    server.stop();
}

const SIGNER: &[u8] = include_bytes!("../../../core/tests/fixtures/jwt/signer.test-only.pem");
const OTHER: &[u8] = include_bytes!("../../../core/tests/fixtures/jwt/other.test-only.pem");
const JWKS: &str = include_str!("../../../core/tests/fixtures/jwt/jwks.json");
const ISSUER: &str = "https://idp.example/pool";
const AUDIENCE: &str = "rag-agent";

fn token(tenant: &str, groups: &[&str], pem: &[u8], exp_from_now: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({
        "sub": format!("user-of-{tenant}"), "iss": ISSUER, "aud": AUDIENCE,
        "exp": now + exp_from_now, "custom:tenant": tenant, "cognito:groups": groups,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-signer".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem).unwrap(),
    )
    .unwrap()
}

/// The provider's JWKS endpoint, on a free loopback port.
async fn jwks_server() -> String {
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(|| async { ([("content-type", "application/json")], JWKS) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/.well-known/jwks.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_tokens_carry_tenant_and_role() {
    let data = tempfile::tempdir().unwrap();
    let jwks_url = jwks_server().await;
    let server = Server::start(
        data.path(),
        &Stack::embedded(),
        &[
            ("RAG_AGENT_AUTH", "jwt"),
            ("JWT_JWKS_URL", &jwks_url),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    );
    let writer_a = token("team-a", &["rag-writer"], SIGNER, 600);
    let (status, ingested) = call(
        "POST",
        &server.at("/documents/ingest"),
        Some(&writer_a),
        Some(&json!({"content": "Team A's notes on lifetimes.", "wait": true})),
    )
    .await;
    assert_eq!(status, 201, "{ingested}");
    let id = ingested["document"]["id"].as_str().unwrap().to_string();
    let reader_b = token("team-b", &["rag-reader"], SIGNER, 600);
    let (status, _) = call(
        "GET",
        &server.at(&format!("/documents/{id}")),
        Some(&reader_b),
        None,
    )
    .await;
    assert_eq!(status, 404, "team B does not see team A's document");
    let (status, _) = call(
        "POST",
        &server.at("/documents/ingest"),
        Some(&reader_b),
        Some(&json!({"content": "x"})),
    )
    .await;
    assert_eq!(status, 403);

    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "test-signer"})),
        b64(
            json!({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": 4102444800u64, "custom:tenant": "team-a", "cognito:groups": ["rag-admin"]})
        )
    );
    for (what, bad) in [
        ("expired", token("team-a", &["rag-writer"], SIGNER, -300)),
        (
            "another signer",
            token("team-a", &["rag-writer"], OTHER, 600),
        ),
        ("alg none", unsigned),
    ] {
        let (status, body) = call("GET", &server.at("/documents"), Some(&bad), None).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    let (status, _) = call("GET", &server.at("/documents"), None, None).await;
    assert_eq!(status, 401);
    let (status, listed) = call("GET", &server.at("/documents"), Some(&writer_a), None).await;
    assert_eq!(
        (status, listed["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    server.stop();
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_then_passes_again_embedded() {
    rate_limit_holds(Stack::embedded()).await;
}

/// On DynamoDB the buckets are items, so the limit holds across instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_rate_limit_gets_429_then_passes_again_aws() {
    rate_limit_holds(Stack::aws().await).await;
}

async fn rate_limit_holds(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let key = make_key(&stack, data.path(), "team-a", "reader");
    let other = make_key(&stack, data.path(), "team-a", "reader");
    let server = Server::start(
        data.path(),
        &stack,
        &[
            ("RAG_AGENT_AUTH", "api_key"),
            ("RATE_LIMIT_PER_MINUTE", "60"),
        ],
    );
    let get = |key: String| {
        let url = server.at("/documents");
        async move { client().get(url).bearer_auth(key).send().await.unwrap() }
    };
    let mut passed = 0;
    let limited = loop {
        let response = get(key.clone()).await;
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 200);
        passed += 1;
        // A minute's worth, plus what refilled (one a second) meanwhile.
        assert!(passed <= 90, "no limit after {passed} requests");
    };
    assert!(passed >= 60, "only {passed} passed");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another key of the same tenant has its own bucket.
    assert_eq!(get(other).await.status(), 200);
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    assert_eq!(get(key).await.status(), 200);
    server.stop();
}
