//! Bedrock Converse and ConverseStream behind the `ChatModel` trait: system
//! prompt, messages, tool config, inference config, stop reasons and token
//! usage. Throttling and unavailability are retried with jittered backoff;
//! "input is too long" becomes `ModelError::ContextTooLong`.

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::types as br;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use futures::stream::{self, BoxStream, StreamExt};
use rag_core::TokenUsage;
use rag_core::chat::{
    ChatModel, ChatRequest, ChatResponse, ChatStreamEvent, ContentBlock, Message, Role, StopReason,
    ToolResultStatus,
};
use rag_core::error::{ErrorClass, ModelError};

use crate::document::{to_document, to_value};
use crate::sdk_error::{Classified, RawStatus, classify};

/// One attempt per call: throttling and unavailability surface classified,
/// and rag-core's `RetryingChatModel`, which the service wraps every model
/// in, retries them for every provider alike.
pub struct BedrockChatModel {
    client: Client,
    model_id: String,
}

impl BedrockChatModel {
    pub fn new(client: Client, model_id: impl Into<String>) -> Self {
        BedrockChatModel {
            client,
            model_id: model_id.into(),
        }
    }
}

/// Phrases Bedrock models use when the prompt exceeds the context window.
fn is_context_overflow(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "too long",
        "too many tokens",
        "context length",
        "context window",
        "maximum context",
    ]
    .iter()
    .any(|p| m.contains(p))
}

fn model_error(c: Classified) -> ModelError {
    if c.throttled {
        return ModelError::Throttled { retry_after: None };
    }
    match c.class {
        ErrorClass::Invalid if is_context_overflow(&c.message) => ModelError::ContextTooLong,
        ErrorClass::Invalid => ModelError::Invalid(c.message),
        ErrorClass::Transient => ModelError::Transient(c.cause),
        ErrorClass::NotFound | ErrorClass::Permanent => ModelError::Permanent(c.cause),
    }
}

fn sdk_model_error<E, R>(error: aws_sdk_bedrockruntime::error::SdkError<E, R>) -> ModelError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: RawStatus + std::fmt::Debug + Send + Sync + 'static,
{
    model_error(classify(error))
}

/// Errors inside an event stream arrive as typed exceptions whose error
/// metadata carries no code, so they are classified by variant.
fn stream_error(
    error: aws_sdk_bedrockruntime::error::SdkError<
        br::error::ConverseStreamOutputError,
        aws_smithy_types::event_stream::RawMessage,
    >,
) -> ModelError {
    use br::error::ConverseStreamOutputError as E;
    let aws_sdk_bedrockruntime::error::SdkError::ServiceError(service) = &error else {
        return sdk_model_error(error);
    };
    match service.err() {
        E::ThrottlingException(_) => ModelError::Throttled { retry_after: None },
        E::ValidationException(v) => {
            let message = v.message().unwrap_or_default();
            if is_context_overflow(message) {
                ModelError::ContextTooLong
            } else {
                ModelError::Invalid(message.to_string())
            }
        }
        E::ServiceUnavailableException(_)
        | E::InternalServerException(_)
        | E::ModelStreamErrorException(_) => {
            ModelError::Transient(Box::new(std::io::Error::other(
                aws_smithy_types::error::display::DisplayErrorContext(&error).to_string(),
            )))
        }
        _ => sdk_model_error(error),
    }
}

fn build_error(e: aws_smithy_types::error::operation::BuildError) -> ModelError {
    ModelError::Invalid(format!("cannot build the Converse request: {e}"))
}

fn to_bedrock_message(message: &Message) -> Result<br::Message, ModelError> {
    let role = match message.role {
        Role::User => br::ConversationRole::User,
        Role::Assistant => br::ConversationRole::Assistant,
    };
    let mut content = Vec::with_capacity(message.content.len());
    for block in &message.content {
        content.push(match block {
            ContentBlock::Text { text } => br::ContentBlock::Text(text.clone()),
            ContentBlock::ToolUse {
                tool_use_id,
                name,
                input,
            } => br::ContentBlock::ToolUse(
                br::ToolUseBlock::builder()
                    .tool_use_id(tool_use_id)
                    .name(name)
                    .input(to_document(input))
                    .build()
                    .map_err(build_error)?,
            ),
            ContentBlock::ToolResult {
                tool_use_id,
                status,
                content,
            } => br::ContentBlock::ToolResult(
                br::ToolResultBlock::builder()
                    .tool_use_id(tool_use_id)
                    .content(br::ToolResultContentBlock::Text(content.clone()))
                    .status(match status {
                        ToolResultStatus::Success => br::ToolResultStatus::Success,
                        ToolResultStatus::Error => br::ToolResultStatus::Error,
                    })
                    .build()
                    .map_err(build_error)?,
            ),
        });
    }
    br::Message::builder()
        .role(role)
        .set_content(Some(content))
        .build()
        .map_err(build_error)
}

fn from_bedrock_block(block: &br::ContentBlock) -> Option<ContentBlock> {
    match block {
        br::ContentBlock::Text(text) => Some(ContentBlock::Text { text: text.clone() }),
        br::ContentBlock::ToolUse(tool) => Some(ContentBlock::ToolUse {
            tool_use_id: tool.tool_use_id().to_string(),
            name: tool.name().to_string(),
            input: to_value(tool.input()),
        }),
        // Reasoning, images and citations carry nothing the agent uses.
        _ => None,
    }
}

fn stop_reason(reason: &br::StopReason) -> StopReason {
    match reason {
        br::StopReason::ToolUse => StopReason::ToolUse,
        br::StopReason::MaxTokens | br::StopReason::ModelContextWindowExceeded => {
            StopReason::MaxTokens
        }
        br::StopReason::StopSequence => StopReason::StopSequence,
        br::StopReason::ContentFiltered | br::StopReason::GuardrailIntervened => {
            StopReason::ContentFiltered
        }
        _ => StopReason::EndTurn,
    }
}

fn usage(usage: Option<&br::TokenUsage>) -> TokenUsage {
    usage.map_or_else(TokenUsage::default, |u| TokenUsage {
        input_tokens: u.input_tokens().max(0) as u32,
        output_tokens: u.output_tokens().max(0) as u32,
        total_tokens: u.total_tokens().max(0) as u32,
    })
}

/// The parts of a Converse request both operations share.
struct Parts {
    messages: Vec<br::Message>,
    system: Option<Vec<br::SystemContentBlock>>,
    inference: Option<br::InferenceConfiguration>,
    tools: Option<br::ToolConfiguration>,
}

fn parts(request: &ChatRequest) -> Result<Parts, ModelError> {
    let messages = request
        .messages
        .iter()
        .map(to_bedrock_message)
        .collect::<Result<Vec<_>, _>>()?;
    let system = request
        .system
        .as_ref()
        .map(|s| vec![br::SystemContentBlock::Text(s.clone())]);
    let inference = (request.inference.max_tokens.is_some()
        || request.inference.temperature.is_some())
    .then(|| {
        br::InferenceConfiguration::builder()
            .set_max_tokens(request.inference.max_tokens.map(|t| t as i32))
            .set_temperature(request.inference.temperature)
            .build()
    });
    let tools = if request.tools.is_empty() {
        None
    } else {
        let mut specs = Vec::new();
        for tool in &request.tools {
            specs.push(br::Tool::ToolSpec(
                br::ToolSpecification::builder()
                    .name(&tool.name)
                    .description(&tool.description)
                    .input_schema(br::ToolInputSchema::Json(to_document(&tool.input_schema)))
                    .build()
                    .map_err(build_error)?,
            ));
        }
        Some(
            br::ToolConfiguration::builder()
                .set_tools(Some(specs))
                .build()
                .map_err(build_error)?,
        )
    };
    Ok(Parts {
        messages,
        system,
        inference,
        tools,
    })
}

#[async_trait]
impl ChatModel for BedrockChatModel {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn supports_tools(&self) -> bool {
        true
    }

    async fn converse(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let parts = parts(&request)?;
        let output = self
            .client
            .converse()
            .model_id(&self.model_id)
            .set_messages(Some(parts.messages))
            .set_system(parts.system)
            .set_inference_config(parts.inference)
            .set_tool_config(parts.tools)
            .send()
            .await
            .map_err(sdk_model_error)?;
        let content = match output.output() {
            Some(br::ConverseOutput::Message(message)) => message
                .content()
                .iter()
                .filter_map(from_bedrock_block)
                .collect(),
            _ => Vec::new(),
        };
        Ok(ChatResponse {
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason: stop_reason(output.stop_reason()),
            usage: usage(output.usage()),
        })
    }

    async fn converse_stream(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatStreamEvent, ModelError>>, ModelError> {
        let parts = parts(&request)?;
        let output = self
            .client
            .converse_stream()
            .model_id(&self.model_id)
            .set_messages(Some(parts.messages))
            .set_system(parts.system)
            .set_inference_config(parts.inference)
            .set_tool_config(parts.tools)
            .send()
            .await
            .map_err(sdk_model_error)?;
        let state = StreamState {
            receiver: output.stream,
            tool: None,
            stop: None,
            usage: None,
            finished: false,
        };
        Ok(stream::unfold(state, next_event).boxed())
    }
}

struct StreamState {
    receiver: aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
        br::ConverseStreamOutput,
        br::error::ConverseStreamOutputError,
    >,
    /// The tool use being streamed: id, name and the input JSON so far.
    tool: Option<(String, String, String)>,
    stop: Option<StopReason>,
    usage: Option<TokenUsage>,
    finished: bool,
}

/// Turns the next Bedrock events into at most one `ChatStreamEvent`.
async fn next_event(
    mut state: StreamState,
) -> Option<(Result<ChatStreamEvent, ModelError>, StreamState)> {
    if state.finished {
        return None;
    }
    loop {
        let event = match state.receiver.recv().await {
            Ok(Some(event)) => event,
            Ok(None) => {
                state.finished = true;
                return Some((
                    Ok(ChatStreamEvent::Stop {
                        stop_reason: state.stop.unwrap_or(StopReason::EndTurn),
                        usage: state.usage.unwrap_or_default(),
                    }),
                    state,
                ));
            }
            Err(e) => {
                state.finished = true;
                return Some((Err(stream_error(e)), state));
            }
        };
        match event {
            br::ConverseStreamOutput::ContentBlockStart(start) => {
                if let Some(br::ContentBlockStart::ToolUse(tool)) = start.start() {
                    state.tool = Some((
                        tool.tool_use_id().to_string(),
                        tool.name().to_string(),
                        String::new(),
                    ));
                }
            }
            br::ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta() {
                Some(br::ContentBlockDelta::Text(text)) => {
                    return Some((Ok(ChatStreamEvent::TextDelta(text.clone())), state));
                }
                Some(br::ContentBlockDelta::ToolUse(tool)) => {
                    if let Some((_, _, input)) = &mut state.tool {
                        input.push_str(tool.input());
                    }
                }
                _ => {}
            },
            br::ConverseStreamOutput::ContentBlockStop(_) => {
                if let Some((tool_use_id, name, input)) = state.tool.take() {
                    let input = if input.trim().is_empty() {
                        serde_json::json!({})
                    } else {
                        match serde_json::from_str(&input) {
                            Ok(v) => v,
                            Err(e) => {
                                state.finished = true;
                                return Some((
                                    Err(ModelError::Invalid(format!(
                                        "the model streamed invalid tool input JSON: {e}"
                                    ))),
                                    state,
                                ));
                            }
                        }
                    };
                    return Some((
                        Ok(ChatStreamEvent::ToolUse {
                            tool_use_id,
                            name,
                            input,
                        }),
                        state,
                    ));
                }
            }
            br::ConverseStreamOutput::MessageStop(stop) => {
                state.stop = Some(stop_reason(stop.stop_reason()));
            }
            br::ConverseStreamOutput::Metadata(metadata) => {
                state.usage = Some(usage(metadata.usage()));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_context_overflow_messages() {
        assert!(is_context_overflow(
            "Input is too long for requested model."
        ));
        assert!(is_context_overflow(
            "prompt is too long: 210000 tokens > 200000 maximum"
        ));
        assert!(!is_context_overflow("Malformed input request"));
    }
}
