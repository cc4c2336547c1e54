//! The one fold of a model's `ConverseStream` into a whole response, used
//! by both kinds of turn: text deltas are passed on as they arrive and
//! joined, tool uses collected, the stop event ends it.

use futures::StreamExt;

use super::{ChatEvent, EventSink};
use crate::chat::{
    ChatModel, ChatRequest, ChatResponse, ChatStreamEvent, ContentBlock, Message, Role,
};
use crate::error::ModelError;

/// One model call; with a sink, streamed, its text passed on as it
/// arrives; without one, a plain call.
pub(crate) async fn fold_stream(
    model: &dyn ChatModel,
    request: ChatRequest,
    sink: Option<&EventSink>,
) -> Result<ChatResponse, ModelError> {
    let Some(sink) = sink else {
        return model.converse(request).await;
    };
    let mut stream = model.converse_stream(request).await?;
    let mut content: Vec<ContentBlock> = Vec::new();
    while let Some(event) = stream.next().await {
        match event? {
            ChatStreamEvent::TextDelta(text) => {
                sink.send(ChatEvent::Delta { text: text.clone() }).await;
                match content.last_mut() {
                    Some(ContentBlock::Text { text: existing }) => existing.push_str(&text),
                    _ => content.push(ContentBlock::Text { text }),
                }
            }
            ChatStreamEvent::ToolUse {
                tool_use_id,
                name,
                input,
            } => content.push(ContentBlock::ToolUse {
                tool_use_id,
                name,
                input,
            }),
            ChatStreamEvent::Stop { stop_reason, usage } => {
                return Ok(ChatResponse {
                    message: Message {
                        role: Role::Assistant,
                        content,
                    },
                    stop_reason,
                    usage,
                });
            }
        }
    }
    Err(ModelError::permanent(
        "the model's stream ended without a stop event",
    ))
}
