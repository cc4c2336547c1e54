//! The agent behind `/chat` and `/chat/stream`, over a real socket against
//! the real binary: with Bedrock (the emulator scripted as the model) on the
//! AWS stack, and with the in-repo OpenAI-compatible server on the embedded
//! stack. One scenario, two models. Also: `/tools` schemas are valid JSON
//! Schema, checked by a JSON Schema validator.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rag_aws_emulator::{OpenAiServer, Reply};
use serde_json::{Value, json};

use crate::support::{Server, Stack, client, get_json, list_tools, post_json};

const DOCUMENTS: [(&str, &str); 3] = [
    (
        "Ownership",
        "Ownership is a set of rules that govern how a Rust program manages memory. \
         Each value in Rust has an owner. When the owner goes out of scope, the value will be dropped.",
    ),
    (
        "References and Borrowing",
        "A reference is like a pointer: it is an address we can follow to access data owned by \
         some other variable. At any given time, you can have either one mutable reference or \
         any number of immutable references.",
    ),
    (
        "Lifetimes",
        "Lifetimes ensure that references are valid as long as we need them to be. Every \
         reference in Rust has a lifetime, which is the scope for which that reference is valid.",
    ),
];

/// The model the binary talks to, scripted by the test.
enum Model<'a> {
    Bedrock(&'a rag_aws_emulator::Emulator),
    OpenAi(&'a OpenAiServer),
}

impl Model<'_> {
    fn push(&self, reply: Reply) {
        match self {
            Model::Bedrock(e) => e.push_reply(reply),
            Model::OpenAi(s) => s.push_reply(reply),
        }
    }

    fn requests(&self) -> Vec<Value> {
        match self {
            Model::Bedrock(e) => e.converse_requests(),
            Model::OpenAi(s) => s.requests(),
        }
    }

    /// The tool results at the end of a request, as (tool use id, text).
    fn last_tool_results(&self, request: &Value) -> Vec<(String, String)> {
        let messages = request["messages"].as_array().unwrap();
        match self {
            Model::Bedrock(_) => messages.last().unwrap()["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|b| b.get("toolResult"))
                .map(|r| {
                    (
                        r["toolUseId"].as_str().unwrap().to_string(),
                        r["content"][0]["text"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            Model::OpenAi(_) => {
                let mut out: Vec<(String, String)> = messages
                    .iter()
                    .rev()
                    .take_while(|m| m["role"] == "tool")
                    .map(|m| {
                        (
                            m["tool_call_id"].as_str().unwrap().to_string(),
                            m["content"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                out.reverse();
                out
            }
        }
    }
}

async fn ingest_documents(server: &Server) -> Vec<String> {
    let mut ids = Vec::new();
    for (title, content) in DOCUMENTS {
        let (status, body) = post_json(
            &server.at("/documents/ingest"),
            &json!({"content": content, "title": title, "source": format!("book/{title}.md"),
                    "content_type": "text/plain", "wait": true}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["document"]["status"], "INDEXED", "{body}");
        ids.push(body["document"]["id"].as_str().unwrap().to_string());
    }
    ids
}

/// list_documents -> vector_search -> answer, then a second turn on the
/// same conversation, then the same over the stream.
async fn scenario(server: &Server, model: Model<'_>, expected_model_id: &str) {
    ingest_documents(server).await;
    let before = model.requests().len();
    model.push(Reply::tool_use(
        "call-list",
        "list_documents",
        json!({"status": "INDEXED", "limit": 10}),
    ));
    model.push(Reply::tool_use(
        "call-search",
        "vector_search",
        json!({"query": "what happens when the owner goes out of scope", "top_k": 3}),
    ));
    model.push(Reply::text(
        "When its owner goes out of scope, the value is dropped [1].",
    ));
    let question = "What happens to a value when its owner goes out of scope?";
    let (status, reply) = post_json(&server.at("/chat"), &json!({"message": question})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["answer"],
        "When its owner goes out of scope, the value is dropped [1]."
    );
    assert_eq!(reply["model_id"], expected_model_id);
    assert_eq!(reply["outcome"], "completed");
    assert_eq!(reply["cycles"], 3);
    let calls = reply["tool_calls"].as_array().unwrap();
    let names: Vec<&str> = calls.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["list_documents", "vector_search"]);
    assert_eq!(calls[0]["input"], json!({"status": "INDEXED", "limit": 10}));
    assert_eq!(calls[1]["input"]["top_k"], 3);
    assert!(calls.iter().all(|c| c["status"] == "success"), "{reply:#}");
    // The answer cites [1]: the one source is the passage numbered 1.
    let sources = reply["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{reply:#}");
    assert_eq!(sources[0]["citation"], 1);
    assert_eq!(sources[0]["title"], "Ownership");
    assert_eq!(sources[0]["source"], "book/Ownership.md");
    assert!(
        sources[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("owner goes out of scope")
    );
    assert!(sources[0]["score"].as_f64().unwrap() > 0.0);
    assert!(sources[0]["chunk_id"].as_str().is_some());

    let requests = model.requests()[before..].to_vec();
    assert_eq!(requests.len(), 3);
    let listed = model.last_tool_results(&requests[1]);
    assert_eq!(listed[0].0, "call-list");
    for (title, _) in DOCUMENTS {
        assert!(listed[0].1.contains(title), "{listed:?}");
    }
    let found = model.last_tool_results(&requests[2]);
    assert_eq!(found[0].0, "call-search");
    assert!(found[0].1.contains("\n[1] Ownership"), "{found:?}");

    // Stored: question, two tool exchanges, answer.
    let conversation_id = reply["conversation_id"].as_str().unwrap().to_string();
    let (status, conversation) =
        get_json(&server.at(&format!("/conversations/{conversation_id}"))).await;
    assert_eq!(status, 200);
    let messages = conversation["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant"
        ]
    );
    assert_eq!(messages[1]["tool_uses"][0]["name"], "list_documents");
    assert_eq!(messages[4]["tool_results"][0]["id"], "call-search");

    // A second turn sends the first to the model.
    model.push(Reply::text("Yes: dropping frees its memory [1]."));
    let (status, second) = post_json(
        &server.at("/chat"),
        &json!({"message": "Is its memory freed then?", "conversation_id": conversation_id}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["conversation_id"], conversation_id.as_str());
    assert_eq!(second["cycles"], 1);
    let sent = model.requests().last().unwrap().to_string();
    assert!(
        sent.contains(question) && sent.contains("call-search"),
        "{sent}"
    );
    assert!(sent.contains("the value is dropped [1]"));

    // The stream: tool activity as it happens, then text that arrives
    // while the model is still writing, then sources and done.
    model.push(Reply::tool_use(
        "call-stream",
        "vector_search",
        json!({"query": "mutable references"}),
    ));
    let words = "You can have one mutable reference or any number of immutable ones [1].";
    model.push(Reply {
        delta_delay: Duration::from_millis(60),
        ..Reply::text(words)
    });
    let started = Instant::now();
    let response = client()
        .post(server.at("/chat/stream"))
        .json(&json!({"message": "How many mutable references can I have?", "conversation_id": conversation_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = String::new();
    let mut first_delta_at = None;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if first_delta_at.is_none() && body.contains("event: delta") {
            first_delta_at = Some(started.elapsed());
        }
    }
    let finished_at = started.elapsed();
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    let first_delta = events.iter().position(|e| *e == "delta").unwrap();
    assert_eq!(&events[..2], ["tool_use", "tool_result"], "{body}");
    assert!(
        events[first_delta..events.len() - 3]
            .iter()
            .all(|e| *e == "delta"),
        "{body}"
    );
    assert_eq!(
        &events[events.len() - 3..],
        ["sources", "citations", "done"],
        "{body}"
    );
    // 14 words 60 ms apart: the first is out long before the last.
    let first_delta_at = first_delta_at.unwrap();
    assert!(
        finished_at - first_delta_at >= Duration::from_millis(500),
        "first delta at {first_delta_at:?}, done at {finished_at:?}"
    );
    let data: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data[0]["name"], "vector_search");
    assert_eq!(data[0]["input"]["query"], "mutable references");
    assert_eq!(data[1]["status"], "success");
    let text: String = data[first_delta..events.len() - 3]
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, words);
    let done = data.last().unwrap();
    assert_eq!(done["outcome"], "completed");
    assert_eq!(done["cycles"], 2);
    assert_eq!(done["conversation_id"], conversation_id.as_str());
    assert!(done["token_usage"]["input_tokens"].as_u64().unwrap() > 0);
    let sources = &data[data.len() - 3]["sources"];
    assert_eq!(sources[0]["title"], "References and Borrowing", "{body}");
    // The checked answer is the streamed text (it cites nothing missing).
    let citations = &data[data.len() - 2];
    assert_eq!(citations["answer"], words, "{body}");
    assert_eq!(citations["removed_citations"], json!([]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_bedrock_aws() {
    let stack = Stack::aws().await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    let emulator = stack.emulator().unwrap();
    scenario(&server, Model::Bedrock(emulator), stack.model_id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_openai_compatible_server_embedded() {
    let stack = Stack::embedded();
    let openai = OpenAiServer::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &stack,
        &[
            ("LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", &openai.url),
            ("OPENAI_MODEL", "emulated"),
        ],
    );
    scenario(&server, Model::OpenAi(&openai), "openai:emulated").await;
    // Throttling is retried; a reply's invalid tool JSON goes back to the
    // model as an error result.
    openai.push_failure(429);
    openai.push_reply(Reply::tool_use(
        "call-bad",
        "vector_search",
        json!("{\"query\": "),
    ));
    openai.push_reply(Reply::text("I could not search."));
    let (status, reply) =
        post_json(&server.at("/chat"), &json!({"message": "Search badly."})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["tool_calls"][0]["status"], "error");
    assert!(
        reply["tool_calls"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("must be a JSON object"),
        "{reply}"
    );
    assert_eq!(reply["answer"], "I could not search.");
}

/// Without a tool-calling model, `/chat` still answers (retrieve, then
/// answer) and says which model did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_without_a_model_retrieves_then_answers_embedded() {
    let stack = Stack::embedded();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    ingest_documents(&server).await;
    let (status, reply) = post_json(
        &server.at("/chat"),
        &json!({"message": "What happens when the owner goes out of scope?"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model_id"], stack.model_id());
    assert_eq!(reply["tool_calls"], json!([]));
    assert_eq!(reply["search_mode"], "hybrid");
    assert_eq!(reply["sources"][0]["title"], "Ownership");
    // Agent-only settings are refused with a clear message.
    let (status, error) = post_json(
        &server.at("/chat"),
        &json!({"message": "x", "max_cycles": 3}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot call tools")
    );

    // Every tool's input schema is a valid JSON Schema, and it accepts and
    // rejects what the tool does.
    let (tools, names) = list_tools(&server).await;
    assert_eq!(
        names,
        [
            "vector_search",
            "get_document",
            "list_documents",
            "summarize_document",
            "fetch_url"
        ]
    );
    let cases = json!([
        ["vector_search", {"query": "x"}, true],
        ["vector_search", {"query": "x", "top_k": 5, "filter_document_id": "8c1f4a7e-1b2c-4d5e-8f90-123456789abc"}, true],
        ["vector_search", {"top_k": 5}, false],
        ["vector_search", {"query": "x", "top_k": 0}, false],
        ["vector_search", {"query": "x", "colour": "red"}, false],
        ["list_documents", {}, true],
        ["list_documents", {"status": "INDEXED"}, true],
        ["list_documents", {"status": "DONE"}, false],
        ["get_document", {"document_id": "8c1f4a7e-1b2c-4d5e-8f90-123456789abc", "include_content": true}, true],
        ["get_document", {"include_content": true}, false],
        ["summarize_document", {"document_id": "8c1f4a7e-1b2c-4d5e-8f90-123456789abc"}, true],
        ["fetch_url", {"url": "https://example.com"}, true],
        ["fetch_url", {}, false],
    ]);
    validate_schemas(&tools, &cases);
}

/// Checks every schema against the JSON Schema meta-schema, then each case,
/// with Python's `jsonschema` from the test tools' environment.
fn validate_schemas(tools: &Value, cases: &Value) {
    let python = std::env::var("RAG_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import json, sys
from jsonschema import validators, FormatChecker
data = json.load(sys.stdin)
schemas = {t["name"]: t["input_schema"] for t in data["tools"]}
for name, schema in schemas.items():
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    assert schema.get("type") == "object", name
for name, instance, valid in data["cases"]:
    cls = validators.validator_for(schemas[name])
    errors = list(cls(schemas[name], format_checker=FormatChecker()).iter_errors(instance))
    if bool(errors) == valid:
        sys.exit(f"{name} {json.dumps(instance)}: expected valid={valid}, errors={[e.message for e in errors]}")
print(f"{len(schemas)} schemas valid, {len(data['cases'])} cases as expected")
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python with jsonschema (RAG_TEST_PYTHON)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({"tools": tools, "cases": cases})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
