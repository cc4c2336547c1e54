//! Bedrock runtime over its wire formats: `InvokeModel` for Titan text
//! embeddings, `Converse` (JSON) and `ConverseStream`
//! (`application/vnd.amazon.eventstream`). Replies are scripted per test; with
//! no script the model behaves like a small agent: offered `vector_search`, it
//! searches for the question, then answers from the first numbered passage it
//! was given, citing it, so retrieval-augmented flows produce a checkable answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{AwsError, EmulatorState, json_response};

/// One block of a scripted model reply.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBlock {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// A scripted model turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub blocks: Vec<ReplyBlock>,
    /// Converse's stop reason: `end_turn`, `tool_use`, `max_tokens`, ...
    pub stop_reason: String,
    /// Pause between streamed deltas, so tests can see the first byte
    /// arrive before the reply is finished.
    pub delta_delay: Duration,
}

impl Reply {
    pub fn text(text: impl Into<String>) -> Reply {
        Reply {
            blocks: vec![ReplyBlock::Text(text.into())],
            stop_reason: "end_turn".into(),
            delta_delay: Duration::ZERO,
        }
    }

    pub fn tool_use(id: &str, name: &str, input: Value) -> Reply {
        Reply {
            blocks: vec![ReplyBlock::ToolUse {
                id: id.into(),
                name: name.into(),
                input,
            }],
            stop_reason: "tool_use".into(),
            delta_delay: Duration::ZERO,
        }
    }
}

/// A failure the next Bedrock call answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    ServiceUnavailable,
    InternalError,
    InputTooLong,
}

impl Fault {
    pub(crate) fn error(self) -> AwsError {
        match self {
            Fault::Throttle => AwsError::new(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            ),
            Fault::ServiceUnavailable => AwsError::new(
                503,
                "ServiceUnavailableException",
                "The service is temporarily unavailable.",
            ),
            Fault::InternalError => AwsError::new(
                500,
                "InternalServerException",
                "An internal server error occurred.",
            ),
            Fault::InputTooLong => AwsError::validation("Input is too long for requested model."),
        }
    }

    fn stream_exception(self) -> &'static str {
        match self {
            Fault::Throttle => "throttlingException",
            Fault::ServiceUnavailable => "serviceUnavailableException",
            Fault::InternalError => "internalServerException",
            Fault::InputTooLong => "validationException",
        }
    }
}

/// Standing fault injection for every Bedrock call, deterministic per seed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share of calls (0-100) answered with `ThrottlingException`.
    pub throttle_percent: u32,
    /// Share of calls (0-100) answered with HTTP 500.
    pub server_error_percent: u32,
    /// Added to every call before it answers.
    pub latency: Duration,
    /// Requests whose JSON exceeds this many bytes are "too long".
    pub max_input_bytes: Option<usize>,
    /// A quota of calls per second, as Bedrock's per-account quotas: a
    /// token bucket holding one second's worth; a call that finds it empty
    /// is throttled.
    pub calls_per_second: Option<u32>,
    /// Every embedding request whose text contains this is throttled: one
    /// document that never gets through while its neighbours do.
    pub throttle_texts_containing: Option<String>,
    pub seed: u64,
}

/// Counters the tests read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BedrockStats {
    pub invoke_calls: usize,
    /// Calls answered `ThrottlingException` because the quota was spent.
    pub over_quota: usize,
    pub embedded_texts: usize,
    pub converse_calls: usize,
    pub stream_calls: usize,
    pub faults_injected: usize,
}

#[derive(Default)]
pub struct BedrockState {
    pub(crate) replies: Mutex<VecDeque<Reply>>,
    pub(crate) queued_faults: Mutex<VecDeque<Fault>>,
    pub(crate) stream_faults: Mutex<VecDeque<Fault>>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) stats: Mutex<BedrockStats>,
    pub(crate) converse_requests: Mutex<Vec<Value>>,
    pub(crate) rerank_requests: Mutex<Vec<Value>>,
    pub(crate) signed_calls: Mutex<Vec<crate::SignedCall>>,
    pub(crate) call_counter: Mutex<u64>,
    /// The quota's bucket: calls left, and when it was last refilled.
    pub(crate) quota: Mutex<Option<(f64, std::time::Instant)>>,
    pub(crate) embedder: Option<Arc<dyn rag_core::Embedder>>,
    /// Knowledge base id -> (source URI, text) passages.
    pub(crate) knowledge_bases: Mutex<std::collections::HashMap<String, Vec<KnowledgeBasePassage>>>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl BedrockState {
    /// Takes one call from the quota's bucket; false when it is empty.
    fn take_from_quota(&self, rate: u32) -> bool {
        let rate = f64::from(rate.max(1));
        let now = std::time::Instant::now();
        let mut quota = self.quota.lock().unwrap();
        let (left, refilled) = quota.get_or_insert((rate, now));
        *left = (*left + now.duration_since(*refilled).as_secs_f64() * rate).min(rate);
        *refilled = now;
        if *left >= 1.0 {
            *left -= 1.0;
            true
        } else {
            false
        }
    }

    /// Applies latency, then the queued or random fault for this call.
    pub(crate) async fn before_call(&self, request_bytes: usize) -> Result<(), Fault> {
        let faults = self.faults.lock().unwrap().clone();
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        let queued = self.queued_faults.lock().unwrap().pop_front();
        let over_quota = faults
            .calls_per_second
            .is_some_and(|rate| !self.take_from_quota(rate));
        let fault = queued
            .or(over_quota.then_some(Fault::Throttle))
            .or_else(|| {
                if faults
                    .max_input_bytes
                    .is_some_and(|max| request_bytes > max)
                {
                    return Some(Fault::InputTooLong);
                }
                let n = {
                    let mut counter = self.call_counter.lock().unwrap();
                    *counter += 1;
                    *counter
                };
                let roll =
                    (splitmix(faults.seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D)) % 100) as u32;
                if roll < faults.throttle_percent {
                    Some(Fault::Throttle)
                } else if roll < faults.throttle_percent + faults.server_error_percent {
                    Some(Fault::InternalError)
                } else {
                    None
                }
            });
        match fault {
            Some(fault) => {
                let mut stats = self.stats.lock().unwrap();
                stats.faults_injected += 1;
                stats.over_quota += usize::from(over_quota && queued.is_none());
                Err(fault)
            }
            None => Ok(()),
        }
    }
}

pub async fn invoke_model(
    State(state): State<Arc<EmulatorState>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Response {
    let bedrock = &state.bedrock;
    bedrock.stats.lock().unwrap().invoke_calls += 1;
    if let Err(fault) = bedrock.before_call(body.len()).await {
        return fault.error().into_response();
    }
    let marker = bedrock
        .faults
        .lock()
        .unwrap()
        .throttle_texts_containing
        .clone();
    if let Some(marker) = marker
        && String::from_utf8_lossy(&body).contains(&marker)
    {
        bedrock.stats.lock().unwrap().faults_injected += 1;
        return Fault::Throttle.error().into_response();
    }
    match titan_embedding(bedrock, &model_id, &body).await {
        Ok(value) => {
            bedrock.stats.lock().unwrap().embedded_texts += 1;
            json_response(200, &value)
        }
        Err(e) => e.into_response(),
    }
}

async fn titan_embedding(
    state: &BedrockState,
    model_id: &str,
    body: &[u8],
) -> Result<Value, AwsError> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| AwsError::validation(format!("Malformed input request: {e}")))?;
    let text = request
        .get("inputText")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            AwsError::validation(
                "Malformed input request: inputText is required and must not be empty",
            )
        })?;
    let dimension = match model_id {
        "amazon.titan-embed-text-v2:0" => match request.get("dimensions") {
            None => 1024,
            Some(d) => match d.as_u64() {
                Some(d @ (256 | 512 | 1024)) => d as usize,
                _ => {
                    return Err(AwsError::validation(
                        "Malformed input request: dimensions must be one of 256, 512, 1024",
                    ));
                }
            },
        },
        "amazon.titan-embed-text-v1" => {
            if request.get("dimensions").is_some() || request.get("normalize").is_some() {
                return Err(AwsError::validation(
                    "Malformed input request: extraneous key is not permitted",
                ));
            }
            1536
        }
        other => {
            return Err(AwsError::validation(format!(
                "The provided model identifier {other} is invalid."
            )));
        }
    };
    let mut vector = match &state.embedder {
        Some(embedder) => {
            let mut v = embedder
                .embed(&[text.to_string()])
                .await
                .map_err(|e| AwsError::new(500, "InternalServerException", e.to_string()))?
                .pop()
                .unwrap_or_default();
            // Zero padding keeps cosine similarities exactly as the source
            // model computed them.
            v.resize(dimension, 0.0);
            v
        }
        None => hashed_bag_of_words(text, dimension),
    };
    let normalize = request
        .get("normalize")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if normalize {
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
    }
    let tokens = text.split_whitespace().count();
    Ok(json!({"embedding": vector, "inputTextTokenCount": tokens}))
}

/// A deterministic embedding where texts sharing words are similar, for
/// tests that run without the real model.
pub fn hashed_bag_of_words(text: &str, dimension: usize) -> Vec<f32> {
    let mut v = vec![0f32; dimension];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let digest = Sha256::digest(word.to_lowercase().as_bytes());
        let h = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
        let sign = if digest[8] & 1 == 0 { 1.0 } else { -1.0 };
        v[(h % dimension as u64) as usize] += sign;
    }
    v
}

/// One passage of an emulated knowledge base, with the metadata
/// attributes a `Retrieve` filter is evaluated against.
#[derive(Debug, Clone)]
pub(crate) struct KnowledgeBasePassage {
    pub uri: String,
    pub text: String,
    pub attributes: serde_json::Map<String, Value>,
}

/// Whether a passage's attributes satisfy a `RetrievalFilter`. The
/// emulator knows `equals` and `andAll`, the forms rag-agent sends; any
/// other is refused rather than silently ignored.
fn kb_filter_matches(
    filter: &Value,
    attributes: &serde_json::Map<String, Value>,
) -> Result<bool, String> {
    if let Some(equals) = filter.get("equals") {
        let key = equals
            .get("key")
            .and_then(Value::as_str)
            .ok_or("equals.key is required")?;
        let value = equals.get("value").ok_or("equals.value is required")?;
        return Ok(attributes.get(key) == Some(value));
    }
    if let Some(all) = filter.get("andAll").and_then(Value::as_array) {
        for sub in all {
            if !kb_filter_matches(sub, attributes)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    Err(format!(
        "the emulator does not evaluate this filter: {filter}"
    ))
}

/// Bedrock Knowledge Bases `Retrieve`: passages ranked by the cosine of
/// hashed bags of words, so a test can predict the order; a filter keeps
/// only the passages whose attributes match it.
pub async fn retrieve(
    State(state): State<Arc<EmulatorState>>,
    Path(knowledge_base_id): Path<String>,
    body: Bytes,
) -> Response {
    let bedrock = &state.bedrock;
    if let Err(fault) = bedrock.before_call(body.len()).await {
        return fault.error().into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return AwsError::validation(format!("malformed request: {e}")).into_response(),
    };
    let Some(query) = request
        .pointer("/retrievalQuery/text")
        .and_then(Value::as_str)
    else {
        return AwsError::validation("retrievalQuery.text is required").into_response();
    };
    let wanted = request
        .pointer("/retrievalConfiguration/vectorSearchConfiguration/numberOfResults")
        .and_then(Value::as_u64)
        .unwrap_or(5);
    if !(1..=100).contains(&wanted) {
        return AwsError::validation("numberOfResults must be between 1 and 100").into_response();
    }
    let knowledge_bases = bedrock.knowledge_bases.lock().unwrap();
    let Some(passages) = knowledge_bases.get(&knowledge_base_id) else {
        return AwsError::new(
            404,
            "ResourceNotFoundException",
            format!("knowledge base {knowledge_base_id} not found"),
        )
        .into_response();
    };
    let filter = request.pointer("/retrievalConfiguration/vectorSearchConfiguration/filter");
    let mut kept = Vec::with_capacity(passages.len());
    for passage in passages {
        match filter.map(|f| kb_filter_matches(f, &passage.attributes)) {
            None | Some(Ok(true)) => kept.push(passage),
            Some(Ok(false)) => {}
            Some(Err(message)) => return AwsError::validation(message).into_response(),
        }
    }
    let q = hashed_bag_of_words(query, 512);
    let mut scored: Vec<(f32, &String, &String)> = kept
        .into_iter()
        .map(|p| {
            (
                cosine(&q, &hashed_bag_of_words(&p.text, 512)),
                &p.uri,
                &p.text,
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let results: Vec<Value> = scored
        .into_iter()
        .take(wanted as usize)
        .map(|(score, uri, text)| {
            json!({
                "content": {"type": "TEXT", "text": text},
                "location": {"type": "S3", "s3Location": {"uri": uri}},
                "score": score,
            })
        })
        .collect();
    json_response(200, &json!({"retrievalResults": results}))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm =
        a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 { 0.0 } else { dot / norm }
}

pub async fn converse(
    State(state): State<Arc<EmulatorState>>,
    Path(_model_id): Path<String>,
    body: Bytes,
) -> Response {
    let bedrock = &state.bedrock;
    let request = match parse_converse(bedrock, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    bedrock.stats.lock().unwrap().converse_calls += 1;
    if let Err(fault) = bedrock.before_call(body.len()).await {
        return fault.error().into_response();
    }
    let reply = next_reply(bedrock, &request);
    let content: Vec<Value> = reply
        .blocks
        .iter()
        .map(|block| match block {
            ReplyBlock::Text(text) => json!({"text": text}),
            ReplyBlock::ToolUse { id, name, input } => {
                json!({"toolUse": {"toolUseId": id, "name": name, "input": input}})
            }
        })
        .collect();
    let usage = usage(&request, &reply);
    json_response(
        200,
        &json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": reply.stop_reason,
            "usage": usage,
            "metrics": {"latencyMs": 1},
        }),
    )
}

pub async fn converse_stream(
    State(state): State<Arc<EmulatorState>>,
    Path(_model_id): Path<String>,
    body: Bytes,
) -> Response {
    let request = match parse_converse(&state.bedrock, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    state.bedrock.stats.lock().unwrap().stream_calls += 1;
    if let Err(fault) = state.bedrock.before_call(body.len()).await {
        return fault.error().into_response();
    }
    let reply = next_reply(&state.bedrock, &request);
    let usage = usage(&request, &reply);
    // Raised after the first events, the way a real stream fails mid-reply.
    let mid_stream_fault = state.bedrock.stream_faults.lock().unwrap().pop_front();
    let frames = stream_frames(reply, usage, mid_stream_fault);
    let body = futures::stream::iter(frames).then(|(delay, frame)| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<Bytes, std::convert::Infallible>(frame)
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/vnd.amazon.eventstream")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

fn event(event_type: &'static str, payload: Value) -> Bytes {
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    encode(&message)
}

fn exception(exception_type: &'static str, message: &str) -> Bytes {
    let message = Message::new(Bytes::from(json!({"message": message}).to_string()))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("exception".into()),
        ))
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(exception_type.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    encode(&message)
}

fn encode(message: &Message) -> Bytes {
    let mut buffer = Vec::new();
    write_message_to(message, &mut buffer).expect("an event-stream frame always encodes");
    Bytes::from(buffer)
}

/// The frames of one streamed reply, each with the pause before it.
fn stream_frames(reply: Reply, usage: Value, fault: Option<Fault>) -> Vec<(Duration, Bytes)> {
    let delay = reply.delta_delay;
    let mut frames = vec![(
        Duration::ZERO,
        event("messageStart", json!({"role": "assistant"})),
    )];
    for (index, block) in reply.blocks.iter().enumerate() {
        match block {
            ReplyBlock::Text(text) => {
                for (n, piece) in split_keeping_spaces(text).into_iter().enumerate() {
                    frames.push((
                        if n == 0 { Duration::ZERO } else { delay },
                        event(
                            "contentBlockDelta",
                            json!({"contentBlockIndex": index, "delta": {"text": piece}}),
                        ),
                    ));
                    if n == 1
                        && let Some(fault) = fault
                    {
                        frames.push((
                            Duration::ZERO,
                            exception(fault.stream_exception(), "injected mid-stream fault"),
                        ));
                        return frames;
                    }
                }
            }
            ReplyBlock::ToolUse { id, name, input } => {
                frames.push((
                    delay,
                    event(
                        "contentBlockStart",
                        json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                    ),
                ));
                // The input arrives as JSON text split across deltas.
                let input = input.to_string();
                let middle = input
                    .char_indices()
                    .nth(input.chars().count() / 2)
                    .map_or(0, |(i, _)| i);
                for part in [&input[..middle], &input[middle..]] {
                    frames.push((
                        Duration::ZERO,
                        event("contentBlockDelta", json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}})),
                    ));
                }
            }
        }
        frames.push((
            Duration::ZERO,
            event("contentBlockStop", json!({"contentBlockIndex": index})),
        ));
    }
    if let Some(fault) = fault {
        frames.push((
            Duration::ZERO,
            exception(fault.stream_exception(), "injected mid-stream fault"),
        ));
        return frames;
    }
    frames.push((
        Duration::ZERO,
        event("messageStop", json!({"stopReason": reply.stop_reason})),
    ));
    frames.push((
        Duration::ZERO,
        event(
            "metadata",
            json!({"usage": usage, "metrics": {"latencyMs": 1}}),
        ),
    ));
    frames
}

pub(crate) fn split_keeping_spaces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if c == ' ' {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() || pieces.is_empty() {
        pieces.push(current);
    }
    pieces
}

fn parse_converse(state: &BedrockState, body: &[u8]) -> Result<Value, AwsError> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| AwsError::validation(format!("malformed request: {e}")))?;
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| AwsError::validation("messages must not be empty"))?;
    if messages
        .first()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        != Some("user")
    {
        return Err(AwsError::validation(
            "A conversation must start with a user message.",
        ));
    }
    for pair in messages.windows(2) {
        if pair[0].get("role") == pair[1].get("role") {
            return Err(AwsError::validation(
                "A conversation must alternate between user and assistant roles.",
            ));
        }
    }
    state
        .converse_requests
        .lock()
        .unwrap()
        .push(request.clone());
    Ok(request)
}

fn next_reply(state: &BedrockState, request: &Value) -> Reply {
    state
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| unscripted_reply(request))
}

/// What the model does with no script. Offered `vector_search` and asked a
/// question, it searches for the question; handed tool results, or passages
/// in the prompt, it answers with the first sentence of passage [1], cited.
fn unscripted_reply(request: &Value) -> Reply {
    let last_blocks = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tool_results: Vec<&str> = last_blocks
        .iter()
        .filter_map(|b| b.pointer("/toolResult/content"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect();
    let texts: Vec<&str> = last_blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let offers_search = request
        .pointer("/toolConfig/tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| {
            tools
                .iter()
                .any(|t| t.pointer("/toolSpec/name") == Some(&json!("vector_search")))
        });
    if !tool_results.is_empty() {
        return Reply::text(grounded_answer(&format!("\n{}", tool_results.join("\n"))));
    }
    if offers_search {
        // Unique within a conversation: the request grows every turn.
        let id = format!(
            "tooluse_{:016x}",
            splitmix(request.to_string().len() as u64)
        );
        return Reply::tool_use(&id, "vector_search", json!({"query": texts.join(" ")}));
    }
    Reply::text(grounded_answer(&texts.join("\n")))
}

/// The first sentence of passage [1] in `last`, cited.
pub(crate) fn grounded_answer(last: &str) -> String {
    match last.split_once("\n[1] ") {
        Some((_, rest)) => {
            let body = rest.split_once('\n').map_or("", |(_, b)| b);
            let sentence: String = body
                .split_inclusive(". ")
                .next()
                .unwrap_or(body)
                .chars()
                .take(300)
                .collect();
            format!("{} [1]", sentence.trim())
        }
        None => "The documents do not cover this question.".to_string(),
    }
}

fn usage(request: &Value, reply: &Reply) -> Value {
    let input = request.to_string().len().div_ceil(4);
    let output: usize = reply
        .blocks
        .iter()
        .map(|b| match b {
            ReplyBlock::Text(t) => t.len().div_ceil(4),
            ReplyBlock::ToolUse { input, .. } => input.to_string().len().div_ceil(4),
        })
        .sum();
    json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output})
}
