//! One agent turn: model call, tools, model call, ... until an answer.

use std::time::Instant;

use chrono::Utc;
use futures::future::join_all;
use tracing::Instrument;
use uuid::Uuid;

use super::memory::{shrink_tool_results, truncate_head_tail, window};
use super::{Agent, Citations, SYSTEM_PROMPT};
use crate::backend::StoredMessage;
use crate::chat::{
    ChatRequest, ContentBlock, InferenceConfig, Message, Role, StopReason, ToolResultStatus,
};
use crate::domain::TokenUsage;
use crate::error::{ModelError, RagError};
use crate::tenant::Tenant;
use crate::tools::{ToolError, ToolOutput};
use crate::turn::{ChatEvent, ChatOutcome, ChatReply, EventSink, ToolCallRecord, fold_stream};

/// A tool use the model asked for.
struct ToolUse {
    id: String,
    name: String,
    input: serde_json::Value,
}

/// What one tool call produced: the block for the model and the record.
struct ToolRun {
    block: ContentBlock,
    record: ToolCallRecord,
    output: Result<ToolOutput, ToolError>,
}

const SUMMARY_CHARS: usize = 200;

impl Agent {
    pub(super) async fn run(
        &self,
        tenant: &Tenant,
        question: &str,
        conversation_id: Uuid,
        max_cycles: u32,
        sink: Option<&EventSink>,
    ) -> Result<ChatReply, RagError> {
        let started = Instant::now();
        let stored = self
            .conversations
            .history(tenant, conversation_id, self.settings.memory_messages)
            .await?;
        let mut history = window(
            stored.into_iter().map(|m| m.message).collect(),
            self.settings.memory_messages,
        );
        let mut turn = vec![Message::user_text(question)];
        let mut citations = Citations::default();
        let mut usage = TokenUsage::default();
        let mut tool_calls = Vec::new();
        let mut cycles = 0;
        let mut trimmed = false;
        let (outcome, stop_reason) = loop {
            if cycles == max_cycles {
                turn.push(Message::assistant_text(format!(
                    "I stopped after {max_cycles} model calls without reaching a final answer. \
                     Ask again more specifically, or allow more steps with max_cycles."
                )));
                break (ChatOutcome::CycleLimit, StopReason::ToolUse);
            }
            cycles += 1;
            let request = ChatRequest {
                system: Some(SYSTEM_PROMPT.to_string()),
                messages: history.iter().chain(&turn).cloned().collect(),
                tools: self.tools.specs(),
                inference: InferenceConfig {
                    max_tokens: Some(self.settings.max_tokens),
                    temperature: Some(self.settings.temperature),
                },
                grounding: None,
            };
            let response = match fold_stream(self.model.as_ref(), request, sink).await {
                Err(ModelError::ContextTooLong) if !trimmed => {
                    // Earlier turns go first; this turn's tool output is cut
                    // to a quarter. One retry: a second overflow is final.
                    tracing::warn!(%conversation_id, "context overflow; trimming history");
                    trimmed = true;
                    history.clear();
                    shrink_tool_results(&mut turn, self.settings.max_tool_result_chars / 4);
                    cycles -= 1;
                    continue;
                }
                other => other?,
            };
            usage = usage + response.usage;
            let mut message = response.message;
            message.role = Role::Assistant;
            let uses = tool_uses(&message);
            if response.stop_reason == StopReason::ToolUse && !uses.is_empty() {
                turn.push(message);
                let runs = join_all(
                    uses.into_iter()
                        .map(|u| self.call_tool(tenant, u, started, sink)),
                )
                .await;
                let mut results = Vec::with_capacity(runs.len());
                for run in runs {
                    if let Ok(ToolOutput::Passages(found)) = run.output {
                        // Numbered here, in the order the model asked, so
                        // citation numbers do not depend on timing.
                        let text = citations.render(found);
                        results.push(ContentBlock::ToolResult {
                            tool_use_id: run.record.id.clone(),
                            status: ToolResultStatus::Success,
                            content: truncate_head_tail(&text, self.settings.max_tool_result_chars),
                        });
                    } else {
                        results.push(run.block);
                    }
                    tool_calls.push(run.record);
                }
                turn.push(Message {
                    role: Role::User,
                    content: results,
                });
                continue;
            }
            // A final message keeps no tool use: unanswered uses would make
            // the stored conversation invalid for the next call.
            message
                .content
                .retain(|b| !matches!(b, ContentBlock::ToolUse { .. }));
            if message.text().trim().is_empty() {
                message.content = vec![ContentBlock::Text {
                    text: "(The model returned no answer.)".to_string(),
                }];
            }
            turn.push(message);
            break (
                ChatOutcome::from_stop(response.stop_reason),
                response.stop_reason,
            );
        };
        let (answer, citation_report) = citations
            .verify(&turn.last().map(Message::text).unwrap_or_default())
            .into_parts();
        self.remember(tenant, conversation_id, turn).await?;
        Ok(ChatReply {
            conversation_id,
            sources: citations.sources(&answer),
            answer,
            citation_report,
            model_id: self.model.model_id().to_string(),
            outcome,
            stop_reason,
            cycles,
            tool_calls,
            token_usage: usage,
            latency_ms: started.elapsed().as_millis() as u64,
            search_mode: None,
            search_query: None,
            rerank: None,
        })
    }

    /// Runs one tool as the caller: the tool sees `tenant`'s data only,
    /// whatever ids the model put in its input.
    async fn call_tool(
        &self,
        tenant: &Tenant,
        call: ToolUse,
        started: Instant,
        sink: Option<&EventSink>,
    ) -> ToolRun {
        if let Some(sink) = sink {
            sink.send(ChatEvent::ToolUse {
                id: call.id.clone(),
                name: call.name.clone(),
                input: call.input.clone(),
            })
            .await;
        }
        let started_ms = started.elapsed().as_millis() as u64;
        let output = match self.tools.get(&call.name) {
            None => Err(ToolError::InvalidInput(format!(
                "there is no tool named {:?}; the tools are: {}",
                call.name,
                self.tools
                    .specs()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            Some(_) if !call.input.is_object() => Err(ToolError::InvalidInput(format!(
                "the input must be a JSON object matching the tool's schema, not {}",
                truncate_head_tail(&call.input.to_string(), 200)
            ))),
            Some(tool) => {
                let span = tracing::info_span!(
                    "execute_tool",
                    otel.name = format!("execute_tool {}", call.name),
                    gen_ai.operation.name = "execute_tool",
                    gen_ai.tool.name = call.name.as_str(),
                    gen_ai.tool.call.id = call.id.as_str(),
                );
                match tokio::time::timeout(
                    self.settings.tool_timeout,
                    tool.call(tenant, call.input.clone()).instrument(span),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(ToolError::Failed(format!(
                        "the tool did not finish within {} s",
                        self.settings.tool_timeout.as_secs()
                    ))),
                }
            }
        };
        let finished_ms = started.elapsed().as_millis() as u64;
        let (status, content, summary) = match &output {
            Ok(ToolOutput::Text(text)) => (
                ToolResultStatus::Success,
                truncate_head_tail(text, self.settings.max_tool_result_chars),
                text.chars().take(SUMMARY_CHARS).collect(),
            ),
            Ok(ToolOutput::Passages(found)) => (
                ToolResultStatus::Success,
                String::new(),
                match found.len() {
                    1 => "1 passage".to_string(),
                    n => format!("{n} passages"),
                },
            ),
            Err(e) => {
                tracing::info!(tool = %call.name, error = %e, "tool call failed");
                (ToolResultStatus::Error, e.to_string(), e.to_string())
            }
        };
        let record = ToolCallRecord {
            id: call.id.clone(),
            name: call.name,
            input: call.input,
            status,
            summary,
            started_ms,
            finished_ms,
        };
        if let Some(sink) = sink {
            sink.send(ChatEvent::ToolResult {
                id: record.id.clone(),
                name: record.name.clone(),
                status: record.status,
                summary: record.summary.clone(),
            })
            .await;
        }
        ToolRun {
            block: ContentBlock::ToolResult {
                tool_use_id: call.id,
                status,
                content,
            },
            record,
            output,
        }
    }

    async fn remember(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        turn: Vec<Message>,
    ) -> Result<(), RagError> {
        let now = Utc::now();
        let messages: Vec<StoredMessage> = turn
            .into_iter()
            .map(|message| StoredMessage {
                message,
                created_at: now,
            })
            .collect();
        self.conversations
            .append(tenant, conversation_id, &messages)
            .await?;
        Ok(())
    }
}

fn tool_uses(message: &Message) -> Vec<ToolUse> {
    message
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::ToolUse {
                tool_use_id,
                name,
                input,
            } => Some(ToolUse {
                id: tool_use_id.clone(),
                name: name.clone(),
                input: input.clone(),
            }),
            _ => None,
        })
        .collect()
}
