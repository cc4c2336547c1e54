//! A scripted server for the OpenAI chat completions API (what Ollama,
//! llama.cpp's server and vLLM speak), JSON and SSE streaming with tool
//! calls, with the `/v1/embeddings` and `/v1/rerank` APIs beside it, for testing the OpenAI-compatible client and the agent over a
//! real socket. Replies are the same `Reply` scripts as the Bedrock
//! emulator's; unscripted, it behaves like the Bedrock emulator's small agent.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::bedrock::{grounded_answer, split_keeping_spaces};
use crate::{Reply, ReplyBlock, Served};

#[derive(Default)]
struct OpenAiState {
    replies: Mutex<VecDeque<Reply>>,
    /// HTTP statuses the next requests fail with (429, 500, ...).
    failures: Mutex<VecDeque<u16>>,
    requests: Mutex<Vec<Value>>,
}

pub struct OpenAiServer {
    /// Up to and including `/v1`.
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<OpenAiState>,
    _served: Served,
}

impl OpenAiServer {
    pub async fn start() -> std::io::Result<OpenAiServer> {
        let state = Arc::new(OpenAiState::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/rerank", post(rerank))
            .route("/v1/embeddings", post(embeddings))
            .with_state(state.clone());
        let served = Served::start(app).await?;
        Ok(OpenAiServer {
            url: format!("http://{}/v1", served.addr),
            addr: served.addr,
            state,
            _served: served,
        })
    }

    pub fn push_reply(&self, reply: Reply) {
        self.state.replies.lock().unwrap().push_back(reply);
    }

    /// The next request fails with this HTTP status.
    pub fn push_failure(&self, status: u16) {
        self.state.failures.lock().unwrap().push_back(status);
    }

    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }
}

/// Dimensions of the emulated embedding models: a model whose name holds
/// `small` gives this many, so a test can switch to a model of another
/// size; any other model gives `EMBEDDING_DIMENSION`.
pub const SMALL_EMBEDDING_DIMENSION: usize = 64;
pub const EMBEDDING_DIMENSION: usize = 256;

/// The `/v1/embeddings` API: a normalised hashed bag of words per input
/// (texts that share words are similar), in input order with each item's
/// `index`; a queued failure status answers instead.
async fn embeddings(State(state): State<Arc<OpenAiState>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid_request_error", "the body is not JSON");
    };
    state.requests.lock().unwrap().push(request.clone());
    if let Some(status) = state.failures.lock().unwrap().pop_front() {
        return match status {
            429 => error(429, "rate_limit_exceeded", "Rate limit reached"),
            s => error(s, "server_error", "The server had an error"),
        };
    }
    let Some(model) = request["model"].as_str() else {
        return error(400, "invalid_request_error", "`model` is required");
    };
    let inputs: Vec<&str> = match &request["input"] {
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) => match items.iter().map(Value::as_str).collect::<Option<_>>() {
            Some(texts) => texts,
            None => return error(400, "invalid_request_error", "`input` must hold strings"),
        },
        _ => return error(400, "invalid_request_error", "`input` is required"),
    };
    if inputs.is_empty() {
        return error(400, "invalid_request_error", "`input` is empty");
    }
    let dimension = if model.contains("small") {
        SMALL_EMBEDDING_DIMENSION
    } else {
        EMBEDDING_DIMENSION
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let mut vector = crate::bedrock::hashed_bag_of_words(text, dimension);
            let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                vector.iter_mut().for_each(|x| *x /= norm);
            }
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    let reply = json!({
        "object": "list",
        "model": model,
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(reply.to_string()))
        .unwrap_or_default()
}

/// The `/rerank` API: scored like the Bedrock emulator's `Rerank`; a
/// queued failure status answers instead, as for completions.
async fn rerank(State(state): State<Arc<OpenAiState>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid_request_error", "the body is not JSON");
    };
    state.requests.lock().unwrap().push(request.clone());
    if let Some(status) = state.failures.lock().unwrap().pop_front() {
        return error(status, "server_error", "the reranker failed");
    }
    match crate::rerank::http_results(&request) {
        Ok(value) => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(value.to_string()))
            .unwrap_or_default(),
        Err(message) => error(400, "invalid_request_error", &message),
    }
}

async fn completions(State(state): State<Arc<OpenAiState>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid_request_error", "the body is not JSON");
    };
    state.requests.lock().unwrap().push(request.clone());
    if let Some(status) = state.failures.lock().unwrap().pop_front() {
        return match status {
            429 => error(429, "rate_limit_exceeded", "Rate limit reached"),
            400 => error(
                400,
                "context_length_exceeded",
                "This model's maximum context length is 4096 tokens",
            ),
            s => error(s, "server_error", "The server had an error"),
        };
    }
    let reply = state
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| unscripted_reply(&request));
    let prompt_tokens = request.to_string().len().div_ceil(4);
    let completion_tokens = reply_chars(&reply).div_ceil(4);
    let usage = json!({
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    if request["stream"].as_bool() == Some(true) {
        stream_reply(reply, usage)
    } else {
        json_reply(&reply, usage)
    }
}

fn finish_reason(reply: &Reply) -> &'static str {
    match reply.stop_reason.as_str() {
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        "content_filtered" => "content_filter",
        _ => "stop",
    }
}

fn reply_chars(reply: &Reply) -> usize {
    reply
        .blocks
        .iter()
        .map(|b| match b {
            ReplyBlock::Text(t) => t.len(),
            ReplyBlock::ToolUse { input, .. } => input.to_string().len(),
        })
        .sum()
}

fn json_reply(reply: &Reply, usage: Value) -> Response {
    let text: String = reply
        .blocks
        .iter()
        .filter_map(|b| match b {
            ReplyBlock::Text(t) => Some(t.as_str()),
            ReplyBlock::ToolUse { .. } => None,
        })
        .collect();
    let tool_calls: Vec<Value> = reply
        .blocks
        .iter()
        .filter_map(|b| match b {
            ReplyBlock::ToolUse { id, name, input } => Some(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments(input)},
            })),
            ReplyBlock::Text(_) => None,
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": text});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let body = json!({
        "id": "chatcmpl-emulated", "object": "chat.completion", "model": "emulated",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reply)}],
        "usage": usage,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A tool input as the wire carries it: a JSON string, or, for a script
/// that wants to send invalid JSON, the string itself.
fn arguments(input: &Value) -> String {
    match input {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let body = json!({
        "id": "chatcmpl-emulated", "object": "chat.completion.chunk", "model": "emulated",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {body}\n\n"))
}

/// Text in word-sized deltas and each tool call's arguments in two pieces,
/// as real servers split them, then the finish reason, usage and `[DONE]`.
fn stream_reply(reply: Reply, usage: Value) -> Response {
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let mut index = 0;
    for block in &reply.blocks {
        match block {
            ReplyBlock::Text(text) => {
                for piece in split_keeping_spaces(text) {
                    frames.push(chunk(json!({"content": piece}), None));
                }
            }
            ReplyBlock::ToolUse { id, name, input } => {
                let args = arguments(input);
                let cut = args
                    .char_indices()
                    .nth(args.chars().count() / 2)
                    .map_or(0, |(i, _)| i);
                frames.push(chunk(
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                        "function": {"name": name, "arguments": &args[..cut]}}]}),
                    None,
                ));
                frames.push(chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": &args[cut..]}}]}),
                    None,
                ));
                index += 1;
            }
        }
    }
    frames.push(chunk(json!({}), Some(finish_reason(&reply))));
    let usage_frame = json!({
        "id": "chatcmpl-emulated", "object": "chat.completion.chunk", "model": "emulated",
        "choices": [], "usage": usage,
    });
    frames.push(Bytes::from(format!("data: {usage_frame}\n\n")));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let delay = reply.delta_delay;
    let stream = futures::stream::iter(frames).then(move |frame| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, Infallible>(frame)
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"error": {"message": message, "type": code, "code": code}}).to_string(),
        ))
        .unwrap()
}

/// Offered `vector_search` and asked a question, search for it; handed
/// tool results, answer from passage [1] of the first, cited.
fn unscripted_reply(request: &Value) -> Reply {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let Some(last) = messages.last() else {
        return Reply::text("No question was asked.");
    };
    if last["role"] == "tool" {
        let results: Vec<&str> = messages
            .iter()
            .rev()
            .take_while(|m| m["role"] == "tool")
            .filter_map(|m| m["content"].as_str())
            .collect();
        let first = results.last().copied().unwrap_or_default();
        return Reply::text(grounded_answer(&format!("\n{first}")));
    }
    let question = last["content"].as_str().unwrap_or_default();
    let offers_search = request["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == "vector_search"));
    if offers_search {
        return Reply::tool_use(
            &format!("call_{}", question.len()),
            "vector_search",
            json!({"query": question}),
        );
    }
    Reply::text(grounded_answer(question))
}
