//! The `ChatModel` trait, modelled on Bedrock Converse: messages of content
//! blocks, a system prompt, tool specs, a stop reason and token usage.

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::TokenUsage;
use crate::error::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One block of a message, as Converse defines them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        tool_use_id: String,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        tool_use_id: String,
        status: ToolResultStatus,
        content: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolResultStatus {
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    pub fn assistant_text(text: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// The concatenated text blocks.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for block in &self.content {
            if let ContentBlock::Text { text } = block {
                out.push_str(text);
            }
        }
        out
    }
}

/// A tool the model may call: name, description and JSON Schema of its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub input_schema: serde_json::Value,
}

/// A numbered passage the answer may cite as `[number]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub number: usize,
    pub title: String,
    pub text: String,
}

/// The question and passages behind a retrieval-augmented request, kept in
/// structured form beside the rendered prompt so that non-generative models
/// (the extractive answerer) need not parse the prompt back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grounding {
    pub question: String,
    pub passages: Vec<Passage>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferenceConfig {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub inference: InferenceConfig,
    pub grounding: Option<Grounding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    ContentFiltered,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub message: Message,
    pub stop_reason: StopReason,
    pub usage: TokenUsage,
}

/// What a streaming model emits, in order: text deltas and tool uses, then
/// exactly one `Stop`.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatStreamEvent {
    TextDelta(String),
    ToolUse {
        tool_use_id: String,
        name: String,
        input: serde_json::Value,
    },
    Stop {
        stop_reason: StopReason,
        usage: TokenUsage,
    },
}

/// A conversational model.
#[async_trait]
pub trait ChatModel: Send + Sync {
    fn model_id(&self) -> &str;
    /// Whether the model can take `tools` and answer with tool uses.
    fn supports_tools(&self) -> bool {
        false
    }
    async fn converse(&self, request: ChatRequest) -> Result<ChatResponse, ModelError>;
    /// Streams the reply. The default runs `converse` and replays its result,
    /// for models that cannot stream; real streaming backends override it.
    async fn converse_stream(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatStreamEvent, ModelError>>, ModelError> {
        let response = self.converse(request).await?;
        let mut events = Vec::new();
        for block in response.message.content {
            match block {
                ContentBlock::Text { text } => events.push(Ok(ChatStreamEvent::TextDelta(text))),
                ContentBlock::ToolUse {
                    tool_use_id,
                    name,
                    input,
                } => events.push(Ok(ChatStreamEvent::ToolUse {
                    tool_use_id,
                    name,
                    input,
                })),
                ContentBlock::ToolResult { .. } => {}
            }
        }
        events.push(Ok(ChatStreamEvent::Stop {
            stop_reason: response.stop_reason,
            usage: response.usage,
        }));
        Ok(stream::iter(events).boxed())
    }
}
