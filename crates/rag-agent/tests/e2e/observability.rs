//! What an operator sees of the running binary: JSON log lines with the
//! request's id, tenant, route, status and latency; `/metrics` read by the
//! Prometheus reference parser; and EMF lines and spans from Lambda
//! invocations.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lambda_runtime::{
    XRAY_TRACE_HEADER, make_key, rest_event, start_runtime_api, wait_for_responses,
};
use crate::support::*;

/// The samples of a Prometheus text page as `prometheus_client`'s parser
/// reads them (it fails on anything the format does not allow).
fn parse_prometheus(text: &str) -> Vec<Value> {
    let python = std::env::var("RAG_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python with prometheus_client (RAG_TEST_PYTHON)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn sample<'a>(samples: &'a [Value], name: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_request_ids_and_prometheus_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = Server::start_logged(
        dir.path(),
        &Stack::embedded(),
        &[("LOG_FORMAT", "json"), ("RUST_LOG", "info")],
    );
    let (status, _) = post_json(
        &server.at("/documents/ingest"),
        &json!({"title": "Ferris", "content": "Ferris the crab is the unofficial mascot of the Rust language.", "wait": true}),
    )
    .await;
    assert_eq!(status, 201);
    let response = client()
        .post(server.at("/query"))
        .header("x-request-id", "e2e-query-1")
        .json(&json!({"query": "Who is Ferris?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "e2e-query-1");
    let response = client()
        .get(server.at("/documents/not-an-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let failed_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let response = client().get(server.at("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let samples = parse_prometheus(&text);
    let queries = sample(
        &samples,
        "rag_http_requests_total",
        &[("route", "/query"), ("status", "200")],
    );
    assert_eq!(
        queries.map(|s| s["value"].as_f64().unwrap()),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &samples,
            "rag_http_errors_total",
            &[("route", "/documents/{id}"), ("code", "invalid_parameter")]
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &samples,
            "rag_http_request_duration_seconds_bucket",
            &[("route", "/query"), ("le", "+Inf")]
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &samples,
            "rag_model_tokens_total",
            &[("model", "extractive"), ("type", "output")]
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &samples,
            "rag_retrieval_top_score_count",
            &[("mode", "hybrid")]
        )
        .is_some(),
        "{text}"
    );
    let chunks =
        sample(&samples, "rag_ingested_chunks_total", &[]).map(|s| s["value"].as_f64().unwrap());
    assert!(chunks.unwrap_or(0.0) >= 1.0, "{text}");

    // Every line is one JSON object; the request's line has its id,
    // tenant, route, status and latency.
    let deadline = Instant::now() + Duration::from_secs(10);
    let access_line = |id: &str| -> Option<Value> {
        log.lock().unwrap().iter().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v["message"] == "request" && v["request_id"] == id).then_some(v)
        })
    };
    while access_line(&failed_id).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = access_line("e2e-query-1").expect("an access line for e2e-query-1");
    assert_eq!(line["route"], "/query", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["tenant"], "default", "{line}");
    assert_eq!(line["span"]["request_id"], "e2e-query-1", "{line}");
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0, "{line}");
    let failed = access_line(&failed_id).expect("an access line for the refused request");
    assert_eq!(failed["status"], 400, "{failed}");
    assert_eq!(failed["error_code"], "invalid_parameter", "{failed}");
    for line in log.lock().unwrap().iter() {
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed.is_object() && parsed["level"].is_string(), "{line}");
    }
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_invocation_writes_emf_metrics_and_sends_its_spans() {
    let receiver = rag_aws_emulator::OtlpReceiver::start().await.unwrap();
    let stack = Stack::aws_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url),
        // Far past the test: only the flush at the end of each invocation
        // can have sent the spans.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("METRICS", "emf"),
        ("METRICS_NAMESPACE", "RagAgentTest"),
        ("MODEL_PRICES", r#"{"anthropic.claude-emulated-v1:0": {"input_per_million": 3, "output_per_million": 15}}"#),
    ])
    .await;
    let key = make_key(&stack, "default", "writer");
    let (api, addr) = start_runtime_api().await;
    api.events.lock().unwrap().extend([
        (
            "1".to_string(),
            rest_event(
                "POST",
                "/documents/ingest",
                Some(json!({"title": "Slices", "content": "A slice is a reference to a contiguous sequence of elements in a collection."})),
                Some(&key),
            ),
        ),
        ("2".to_string(), rest_event("POST", "/query", Some(json!({"query": "What is a slice?"})), Some(&key))),
        ("3".to_string(), rest_event("GET", "/documents/not-an-id", None, Some(&key))),
    ]);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rag-agent"));
    command
        .env("AWS_LAMBDA_RUNTIME_API", &addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", "rag-agent")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RAG_AGENT_AUTH", "api_key")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in stack.env() {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start rag-agent");
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let kept = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    wait_for_responses(&api, 3).await;
    // The lines are written, and the spans sent, before each response: the
    // function is killed as a frozen one would be lost.
    let _ = child.kill();
    let _ = child.wait();
    let spans = receiver.spans();
    let requests: Vec<_> = spans.iter().filter(|s| s.kind == 2).collect();
    assert_eq!(requests.len(), 3, "{spans:#?}");
    for request in &requests {
        // Each joined the invocation's X-Ray trace.
        assert_eq!(
            request.trace_id, "5759e988bd862e3fe1be46a994272793",
            "{XRAY_TRACE_HEADER}"
        );
        assert_eq!(request.parent_span_id, "53995c3f42cd8ad8");
    }
    assert!(
        spans
            .iter()
            .any(|s| s.attributes.get("gen_ai.operation.name") == Some(&json!("chat")))
    );
    let documents: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect();
    for doc in &documents {
        for directive in doc["_aws"]["CloudWatchMetrics"]
            .as_array()
            .expect("an EMF document")
        {
            assert_eq!(directive["Namespace"], "RagAgentTest");
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(doc[metric["Name"].as_str().unwrap()].is_number(), "{doc}");
            }
        }
    }
    let find = |pred: &dyn Fn(&Value) -> bool| documents.iter().find(|d| pred(d)).cloned();
    let query = find(&|d| d["Route"] == "POST /query").expect("the /query request's metrics");
    assert!(query["Latency"].as_f64().unwrap() > 0.0, "{query}");
    let refused =
        find(&|d| d["Route"] == "GET /documents/{id}").expect("the refused request's metrics");
    assert_eq!(refused["ErrorCode"], "invalid_parameter", "{refused}");
    assert_eq!(refused["Errors"], 1);
    let model = find(&|d| d["Model"] == "anthropic.claude-emulated-v1:0")
        .expect("the model call's metrics");
    let input = model["InputTokens"].as_f64().unwrap();
    let output = model["OutputTokens"].as_f64().unwrap();
    assert!(input > 0.0, "{model}");
    let cost = model["EstimatedCost"]
        .as_f64()
        .expect("a priced model has a cost");
    assert!(
        (cost - (input * 3.0 + output * 15.0) / 1e6).abs() < 1e-12,
        "{model}"
    );
    let retrieval = find(&|d| d["SearchMode"] == "dense").expect("the search's metrics");
    assert!(retrieval["TopScore"].as_f64().unwrap() > 0.2, "{retrieval}");
    let ingested = find(&|d| d.get("IngestedChunks").is_some()).expect("the ingestion's metrics");
    assert_eq!(ingested["IngestedDocuments"], 1);
}
