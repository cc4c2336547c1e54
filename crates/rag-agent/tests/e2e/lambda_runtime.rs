//! The binary under the Lambda runtime: `AWS_LAMBDA_RUNTIME_API` points at
//! a Runtime API served by this test, which hands out API Gateway events
//! and collects the function's responses, buffered and streamed.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::*;

/// The X-Ray trace header every invocation carries.
pub(crate) const XRAY_TRACE_HEADER: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

#[derive(Default)]
pub(crate) struct RuntimeApi {
    pub(crate) events: Mutex<VecDeque<(String, Value)>>,
    /// Request id, response headers, body.
    pub(crate) responses: Mutex<Vec<(String, HeaderMap, Bytes)>>,
    pub(crate) errors: Mutex<Vec<String>>,
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> Response {
    loop {
        let event = api.events.lock().unwrap().pop_front();
        if let Some((id, event)) = event {
            return (
                [
                    ("lambda-runtime-aws-request-id", id.as_str()),
                    ("lambda-runtime-deadline-ms", "4102444800000"),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:rag-agent",
                    ),
                    ("content-type", "application/json"),
                    // What Lambda passes when X-Ray tracing is active.
                    ("lambda-runtime-trace-id", XRAY_TRACE_HEADER),
                ],
                event.to_string(),
            )
                .into_response();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn respond(
    State(api): State<Arc<RuntimeApi>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    api.responses.lock().unwrap().push((id, headers, body));
    StatusCode::ACCEPTED
}

async fn error(State(api): State<Arc<RuntimeApi>>, body: Bytes) -> StatusCode {
    api.errors
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

pub(crate) async fn start_runtime_api() -> (Arc<RuntimeApi>, String) {
    let api = Arc::new(RuntimeApi::default());
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, addr.to_string())
}

/// An API Gateway event, with the key as a bearer token when given.
pub(crate) fn rest_event(
    method: &str,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> Value {
    let mut headers = json!({"Host": "abc.execute-api.us-east-1.amazonaws.com", "Content-Type": "application/json"});
    if let Some(key) = key {
        headers["Authorization"] = json!(format!("Bearer {key}"));
    }
    let multi: serde_json::Map<String, Value> = headers
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect();
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": null,
        "requestContext": {"stage": "Prod", "requestId": "r", "httpMethod": method, "path": format!("/Prod{path}"), "accountId": "123456789012", "apiId": "abc", "resourcePath": "/{proxy+}", "identity": {"sourceIp": "203.0.113.7"}},
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// A Function URL event as an IAM-signed request arrives: `Authorization`
/// is the SigV4 signature, so the key rides in `x-api-key`.
fn url_event(method: &str, path: &str, body: Value, key: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "xyz.lambda-url.us-east-1.on.aws", "content-type": "application/json", "x-api-key": key, "authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123abcd"},
        "requestContext": {"accountId": "123456789012", "apiId": "xyz", "domainName": "xyz.lambda-url.us-east-1.on.aws", "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"}, "requestId": "u", "routeKey": "$default", "stage": "$default", "time": "26/Nov/2026:18:00:00 +0000", "timeEpoch": 1764180000000u64},
        "body": body.to_string(),
        "isBase64Encoded": false
    })
}

/// Starts the binary as Lambda would (no arguments) on the AWS stack.
pub(crate) fn start_function(
    stack: &Stack,
    runtime_api: &str,
    streaming: bool,
) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "rag-agent")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RAG_AGENT_AUTH", "api_key")
        .env(
            "RAG_AGENT_LAMBDA_STREAMING",
            if streaming { "true" } else { "false" },
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in stack.env() {
        command.env(k, v);
    }
    command.spawn().expect("start rag-agent")
}

/// `rag-agent keys create --json` on the stack's metadata store.
pub(crate) fn make_key(stack: &Stack, tenant: &str, role: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
    command
        .args([
            "keys", "create", "--tenant", tenant, "--role", role, "--json",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in stack.env() {
        command.env(k, v);
    }
    let output = command.output().expect("run rag-agent keys create");
    assert!(output.status.success(), "keys create failed");
    let made: Value = serde_json::from_slice(&output.stdout).expect("keys create --json");
    assert_eq!(made["tenant"], tenant);
    made["key"].as_str().expect("a key").to_string()
}

pub(crate) async fn wait_for_responses(api: &RuntimeApi, count: usize) {
    let started = Instant::now();
    while api.responses.lock().unwrap().len() < count {
        assert!(
            api.errors.lock().unwrap().is_empty(),
            "{:?}",
            api.errors.lock().unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no response");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_api_gateway_events_and_streams_through_a_function_url() {
    let stack = Stack::aws().await;
    // The first key, made on the stack's DynamoDB table before any function runs.
    let key = make_key(&stack, "default", "writer");

    // Buffered, behind API Gateway: ingest, then ask.
    let (api, addr) = start_runtime_api().await;
    api.events.lock().unwrap().extend([
        ("1".to_string(), rest_event("GET", "/health", None, None)),
        (
            "2".to_string(),
            rest_event(
                "POST",
                "/documents/ingest",
                Some(json!({"title": "Slices", "content": "A slice is a reference to a contiguous sequence of elements in a collection. Slices do not have ownership."})),
                Some(&key),
            ),
        ),
        (
            "3".to_string(),
            rest_event(
                "POST",
                "/query",
                Some(json!({"query": "What is a slice?"})),
                Some(&key),
            ),
        ),
        (
            "5".to_string(),
            rest_event(
                "POST",
                "/query",
                Some(json!({"query": "What is a slice?"})),
                None,
            ),
        ),
    ]);
    let mut child = start_function(&stack, &addr, false);
    wait_for_responses(&api, 4).await;
    let _ = child.kill();
    let _ = child.wait();
    let responses = api.responses.lock().unwrap().clone();
    let bodies: Vec<Value> = responses
        .iter()
        .map(|(_, _, body)| serde_json::from_slice(body).unwrap())
        .collect();
    assert_eq!(responses[0].0, "1");
    assert_eq!(bodies[0]["statusCode"], 200, "{}", bodies[0]);
    // Under Lambda, ingestion finishes before it answers.
    assert_eq!(bodies[1]["statusCode"], 201, "{}", bodies[1]);
    let document: Value = serde_json::from_str(bodies[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(document["document"]["status"], "INDEXED");
    assert_eq!(bodies[2]["statusCode"], 200, "{}", bodies[2]);
    let answer: Value = serde_json::from_str(bodies[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["sources"][0]["title"], "Slices");
    assert!(
        answer["answer"].as_str().unwrap().contains("[1]"),
        "{answer}"
    );
    // Without a key the function answers 401.
    assert_eq!(bodies[3]["statusCode"], 401, "{}", bodies[3]);
    // Under Lambda each request writes its usage before it answers: the
    // function was killed, and the table holds the ingest and the question
    // (not /health, not the request without a key).
    let days = stack.stored_usage("default").await;
    let requests: u64 = days.iter().map(|d| d.counts.requests).sum();
    let ingested: u64 = days.iter().map(|d| d.counts.documents_ingested).sum();
    let tokens: u64 = days.iter().map(|d| d.counts.model_tokens()).sum();
    assert_eq!((requests, ingested), (2, 1), "{days:?}");
    assert_eq!(
        tokens,
        answer["token_usage"]["total_tokens"].as_u64().unwrap(),
        "{days:?}"
    );

    // Streamed, behind a Function URL: the SSE body goes out in streaming mode.
    let (api, addr) = start_runtime_api().await;
    api.events.lock().unwrap().push_back((
        "4".to_string(),
        url_event(
            "POST",
            "/chat/stream",
            json!({"message": "What is a slice?"}),
            &key,
        ),
    ));
    let mut child = start_function(&stack, &addr, true);
    wait_for_responses(&api, 1).await;
    let _ = child.kill();
    let _ = child.wait();
    let (id, headers, body) = api.responses.lock().unwrap()[0].clone();
    assert_eq!(id, "4");
    assert_eq!(
        headers["lambda-runtime-function-response-mode"], "streaming",
        "{headers:?}"
    );
    // A JSON prelude with status and headers, eight zero bytes, then the body.
    let split = body
        .windows(8)
        .position(|w| w == [0u8; 8])
        .expect("the streaming prelude separator");
    let prelude: Value = serde_json::from_slice(&body[..split]).unwrap();
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "text/event-stream");
    let events = String::from_utf8_lossy(&body[split + 8..]).into_owned();
    let names: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    // Bedrock makes /chat the agent: it searches, then answers.
    assert_eq!(&names[..2], ["tool_use", "tool_result"], "{events}");
    assert!(
        names.contains(&"delta") && names.contains(&"sources"),
        "{events}"
    );
    assert_eq!(names.last(), Some(&"done"), "{events}");
}
