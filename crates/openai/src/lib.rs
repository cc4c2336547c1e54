//! rag-openai: a `ChatModel` for servers that speak the OpenAI chat
//! completions API — Ollama, llama.cpp's server, vLLM — with streaming,
//! an `Embedder` for their `/v1/embeddings` API, and a `Reranker` for the
//! `/rerank` API those servers and others share.
//!
//! It depends on rag-core only; it is handed a base URL, model name and key
//! by the binary and reads no configuration itself.

mod embed;
mod http;
mod rerank;

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use rag_core::ModelError;
use rag_core::chat::{
    ChatModel, ChatRequest, ChatResponse, ChatStreamEvent, ContentBlock, Message, Role, StopReason,
    ToolResultStatus,
};
use rag_core::domain::TokenUsage;
use serde_json::{Value, json};

pub use embed::{OpenAiEmbedConfig, OpenAiEmbedder};
pub use rerank::{HttpRerankConfig, HttpReranker};

/// Where the server is and which model to ask.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Up to and including `/v1`, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

pub struct OpenAiChatModel {
    client: reqwest::Client,
    config: OpenAiConfig,
    model_id: String,
}

impl OpenAiChatModel {
    pub fn new(client: reqwest::Client, config: OpenAiConfig) -> Self {
        let model_id = format!("openai:{}", config.model);
        Self {
            client,
            config,
            model_id,
        }
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for message in &request.messages {
            messages.extend(wire_messages(message));
        }
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "stream": stream,
        });
        if let Some(max) = request.inference.max_tokens {
            body["max_tokens"] = json!(max);
        }
        if let Some(t) = request.inference.temperature {
            body["temperature"] = json!(t);
        }
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if !request.tools.is_empty() {
            body["tools"] = Value::Array(
                request
                    .tools
                    .iter()
                    .map(|t| {
                        json!({"type": "function", "function": {
                            "name": t.name, "description": t.description, "parameters": t.input_schema,
                        }})
                    })
                    .collect(),
            );
        }
        body
    }

    async fn post(&self, body: &Value) -> Result<reqwest::Response, ModelError> {
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let mut builder = self
            .client
            .post(url)
            .timeout(self.config.timeout)
            .json(body);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.map_err(|e| {
            if e.is_timeout() || e.is_connect() {
                ModelError::Transient(Box::new(e))
            } else {
                ModelError::permanent(e)
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_from_response(response).await)
    }
}

/// Converse messages to OpenAI messages: tool uses become `tool_calls`, and
/// each tool result its own `tool` message.
fn wire_messages(message: &Message) -> Vec<Value> {
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut tool_results = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::Text { text: t } => text.push_str(t),
            ContentBlock::ToolUse {
                tool_use_id,
                name,
                input,
            } => tool_calls.push(json!({
                "id": tool_use_id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            // The chat completions API has no error status for tool
            // results, so a failure says so in its text.
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                status,
            } => {
                let content = match status {
                    ToolResultStatus::Success => content.clone(),
                    ToolResultStatus::Error => format!("Error: {content}"),
                };
                tool_results.push(json!({
                    "role": "tool", "tool_call_id": tool_use_id, "content": content,
                }));
            }
        }
    }
    let mut out = Vec::new();
    if !text.is_empty() || !tool_calls.is_empty() {
        let mut m = json!({"role": role, "content": text});
        if !tool_calls.is_empty() {
            m["tool_calls"] = Value::Array(tool_calls);
        }
        out.push(m);
    }
    out.extend(tool_results);
    out
}

async fn error_from_response(response: reqwest::Response) -> ModelError {
    let status = response.status();
    let retry_after = http::retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let lowered = body.to_ascii_lowercase();
    if status.as_u16() == 429 {
        return ModelError::Throttled { retry_after };
    }
    if lowered.contains("context_length_exceeded")
        || lowered.contains("maximum context length")
        || lowered.contains("context window")
    {
        return ModelError::ContextTooLong;
    }
    let summary = format!(
        "HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    );
    if status.is_server_error() {
        ModelError::Transient(summary.into())
    } else if status.as_u16() == 400 || status.as_u16() == 422 {
        ModelError::Invalid(summary)
    } else {
        ModelError::permanent(summary)
    }
}

/// A tool call's arguments. Models do emit invalid JSON; it is kept as a
/// string so the agent loop can tell the model what was wrong. No arguments
/// at all means an empty object.
fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(arguments).unwrap_or(Value::String(arguments.to_string()))
}

fn stop_reason(finish_reason: Option<&str>) -> StopReason {
    match finish_reason {
        Some("length") => StopReason::MaxTokens,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("content_filter") => StopReason::ContentFiltered,
        _ => StopReason::EndTurn,
    }
}

fn usage(value: &Value) -> TokenUsage {
    TokenUsage::new(
        value["prompt_tokens"].as_u64().unwrap_or(0) as u32,
        value["completion_tokens"].as_u64().unwrap_or(0) as u32,
    )
}

#[async_trait]
impl ChatModel for OpenAiChatModel {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn supports_tools(&self) -> bool {
        true
    }

    async fn converse(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let response = self.post(&self.body(&request, false)).await?;
        let value: Value = response.json().await.map_err(ModelError::permanent)?;
        let choice = &value["choices"][0];
        let message = &choice["message"];
        let mut content = Vec::new();
        if let Some(text) = message["content"].as_str()
            && !text.is_empty()
        {
            content.push(ContentBlock::Text {
                text: text.to_string(),
            });
        }
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            content.push(ContentBlock::ToolUse {
                tool_use_id: call["id"].as_str().unwrap_or_default().to_string(),
                name: call["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                input: tool_input(call["function"]["arguments"].as_str().unwrap_or("{}")),
            });
        }
        if choice.is_null() {
            return Err(ModelError::permanent("the server's reply has no choices"));
        }
        Ok(ChatResponse {
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason: stop_reason(choice["finish_reason"].as_str()),
            usage: usage(&value["usage"]),
        })
    }

    async fn converse_stream(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatStreamEvent, ModelError>>, ModelError> {
        let response = self.post(&self.body(&request, true)).await?;
        let bytes = response.bytes_stream();
        let events = futures::stream::unfold(
            SseState {
                bytes: Box::pin(bytes),
                buffer: String::new(),
                finish: None,
                usage: TokenUsage::default(),
                done: false,
                queue: Vec::new(),
                tool_calls: std::collections::BTreeMap::new(),
            },
            |mut state| async move {
                loop {
                    if let Some(event) = state.queue.pop() {
                        return Some((event, state));
                    }
                    if state.done {
                        return None;
                    }
                    if let Some(pos) = state.buffer.find('\n') {
                        let line = state.buffer[..pos].trim_end_matches('\r').to_string();
                        state.buffer.drain(..=pos);
                        state.handle_line(&line);
                        continue;
                    }
                    match state.bytes.next().await {
                        Some(Ok(chunk)) => state.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                        Some(Err(e)) => {
                            state.done = true;
                            return Some((Err(ModelError::Transient(Box::new(e))), state));
                        }
                        None => {
                            // A server that closes without [DONE] still ends the turn.
                            state.finish_stream();
                        }
                    }
                }
            },
        );
        Ok(events.boxed())
    }
}

struct SseState {
    bytes: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    finish: Option<String>,
    usage: TokenUsage,
    done: bool,
    /// Events ready to hand out, last first.
    queue: Vec<Result<ChatStreamEvent, ModelError>>,
    /// Tool calls being assembled from deltas, by their `index`: the id and
    /// name come in the first delta, the arguments in pieces.
    tool_calls: std::collections::BTreeMap<u64, PartialToolCall>,
}

#[derive(Default)]
struct PartialToolCall {
    id: String,
    name: String,
    arguments: String,
}

impl SseState {
    fn handle_line(&mut self, line: &str) {
        let Some(data) = line.strip_prefix("data:") else {
            return;
        };
        let data = data.trim();
        if data == "[DONE]" {
            self.finish_stream();
            return;
        }
        let Ok(value) = serde_json::from_str::<Value>(data) else {
            self.queue.insert(
                0,
                Err(ModelError::permanent(format!(
                    "unreadable stream chunk: {data}"
                ))),
            );
            self.done = true;
            return;
        };
        if value["usage"].is_object() {
            self.usage = usage(&value["usage"]);
        }
        if let Some(choice) = value["choices"].get(0) {
            if let Some(text) = choice["delta"]["content"].as_str()
                && !text.is_empty()
            {
                self.queue
                    .insert(0, Ok(ChatStreamEvent::TextDelta(text.to_string())));
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let index = call["index"].as_u64().unwrap_or(0);
                let partial = self.tool_calls.entry(index).or_default();
                if let Some(id) = call["id"].as_str() {
                    partial.id = id.to_string();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    partial.name.push_str(name);
                }
                if let Some(arguments) = call["function"]["arguments"].as_str() {
                    partial.arguments.push_str(arguments);
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finish = Some(reason.to_string());
            }
        }
    }

    fn finish_stream(&mut self) {
        if !self.done {
            self.done = true;
            for (_, call) in std::mem::take(&mut self.tool_calls) {
                self.queue.insert(
                    0,
                    Ok(ChatStreamEvent::ToolUse {
                        tool_use_id: call.id,
                        name: call.name,
                        input: tool_input(&call.arguments),
                    }),
                );
            }
            self.queue.insert(
                0,
                Ok(ChatStreamEvent::Stop {
                    stop_reason: stop_reason(self.finish.as_deref()),
                    usage: self.usage,
                }),
            );
        }
    }
}
