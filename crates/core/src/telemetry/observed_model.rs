//! A `ChatModel` that makes each call one span (`chat <model>`, with the
//! OpenTelemetry GenAI attributes) and one [`MetricEvent::ModelCall`].
//! The service wraps every model in it inside the retrying wrapper, so each
//! attempt of a retried call is seen on its own, as the provider bills it.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tracing::Instrument;
use tracing::field::Empty;

use super::{MetricEvent, Metrics};
use crate::chat::{ChatModel, ChatRequest, ChatResponse, ChatStreamEvent, StopReason};
use crate::domain::TokenUsage;
use crate::error::ModelError;

pub struct ObservedChatModel {
    inner: Arc<dyn ChatModel>,
    metrics: Metrics,
}

impl ObservedChatModel {
    pub fn new(inner: Arc<dyn ChatModel>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    fn span(&self, streaming: bool) -> tracing::Span {
        let model = self.inner.model_id();
        tracing::info_span!(
            "chat",
            otel.name = format!("chat {model}"),
            otel.kind = "client",
            otel.status_code = Empty,
            gen_ai.operation.name = "chat",
            gen_ai.request.model = model,
            gen_ai.request.stream = streaming,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            gen_ai.response.finish_reasons = Empty,
            error.type = Empty,
        )
    }
}

/// The `error.type` of a failed call, also the metric's error label.
fn error_type(error: &ModelError) -> &'static str {
    match error {
        ModelError::Invalid(_) => "invalid",
        ModelError::ContextTooLong => "context_too_long",
        ModelError::Throttled { .. } => "throttled",
        ModelError::Transient(_) => "transient",
        ModelError::Permanent(_) => "permanent",
    }
}

fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ContentFiltered => "content_filtered",
    }
}

/// What one call ended with, written to its span and the metrics.
struct CallRecord<'a> {
    span: &'a tracing::Span,
    metrics: &'a Metrics,
    model: &'a str,
    started: Instant,
}

impl CallRecord<'_> {
    fn succeeded(&self, usage: TokenUsage, reason: StopReason) {
        self.span
            // Signed, as OpenTelemetry integers are.
            .record("gen_ai.usage.input_tokens", i64::from(usage.input_tokens))
            .record("gen_ai.usage.output_tokens", i64::from(usage.output_tokens))
            .record("gen_ai.response.finish_reasons", finish_reason(reason));
        self.metrics.record(&MetricEvent::ModelCall {
            model: self.model,
            operation: "chat",
            input_tokens: u64::from(usage.input_tokens),
            output_tokens: u64::from(usage.output_tokens),
            latency: self.started.elapsed(),
            error: None,
        });
    }

    fn failed(&self, error: &ModelError) {
        let kind = error_type(error);
        self.span
            .record("otel.status_code", "ERROR")
            .record("error.type", kind);
        self.metrics.record(&MetricEvent::ModelCall {
            model: self.model,
            operation: "chat",
            input_tokens: 0,
            output_tokens: 0,
            latency: self.started.elapsed(),
            error: Some(kind),
        });
    }
}

#[async_trait]
impl ChatModel for ObservedChatModel {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn supports_tools(&self) -> bool {
        self.inner.supports_tools()
    }

    async fn converse(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let span = self.span(false);
        let record = CallRecord {
            span: &span,
            metrics: &self.metrics,
            model: self.inner.model_id(),
            started: Instant::now(),
        };
        let result = self.inner.converse(request).instrument(span.clone()).await;
        match &result {
            Ok(response) => record.succeeded(response.usage, response.stop_reason),
            Err(e) => record.failed(e),
        }
        result
    }

    /// The span lasts until the stream ends or is dropped; tokens are
    /// recorded from its `Stop` event.
    async fn converse_stream(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatStreamEvent, ModelError>>, ModelError> {
        let span = self.span(true);
        let started = Instant::now();
        let model = self.inner.model_id().to_string();
        let metrics = self.metrics.clone();
        let opened = self
            .inner
            .converse_stream(request)
            .instrument(span.clone())
            .await;
        let stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                CallRecord {
                    span: &span,
                    metrics: &metrics,
                    model: &model,
                    started,
                }
                .failed(&e);
                return Err(e);
            }
        };
        Ok(stream
            .map(move |item| {
                let record = CallRecord {
                    span: &span,
                    metrics: &metrics,
                    model: &model,
                    started,
                };
                match &item {
                    Ok(ChatStreamEvent::Stop { stop_reason, usage }) => {
                        record.succeeded(*usage, *stop_reason)
                    }
                    Err(e) => record.failed(e),
                    Ok(_) => {}
                }
                item
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::chat::Message;
    use crate::telemetry::MetricsSink;

    /// Model, input tokens, output tokens, error.
    type Call = (String, u64, u64, Option<String>);

    #[derive(Default)]
    struct Calls(Mutex<Vec<Call>>);

    impl MetricsSink for Calls {
        fn record(&self, event: &MetricEvent<'_>) {
            if let MetricEvent::ModelCall {
                model,
                input_tokens,
                output_tokens,
                error,
                ..
            } = event
            {
                self.0.lock().unwrap().push((
                    model.to_string(),
                    *input_tokens,
                    *output_tokens,
                    error.map(str::to_string),
                ));
            }
        }
    }

    struct Fixed(Result<TokenUsage, ()>);

    #[async_trait]
    impl ChatModel for Fixed {
        fn model_id(&self) -> &str {
            "fixed-model"
        }
        async fn converse(&self, _request: ChatRequest) -> Result<ChatResponse, ModelError> {
            match self.0 {
                Ok(usage) => Ok(ChatResponse {
                    message: Message::assistant_text("hello"),
                    stop_reason: StopReason::EndTurn,
                    usage,
                }),
                Err(()) => Err(ModelError::Throttled { retry_after: None }),
            }
        }
    }

    fn usage(input: u32, output: u32) -> TokenUsage {
        TokenUsage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: input + output,
        }
    }

    #[tokio::test]
    async fn each_call_is_one_event_with_its_tokens_or_its_error() {
        let calls = Arc::new(Calls::default());
        let metrics = Metrics::new(vec![calls.clone()]);
        let ok = ObservedChatModel::new(Arc::new(Fixed(Ok(usage(12, 5)))), metrics.clone());
        ok.converse(ChatRequest::default()).await.unwrap();
        let mut stream = ok.converse_stream(ChatRequest::default()).await.unwrap();
        while stream.next().await.is_some() {}
        let failing = ObservedChatModel::new(Arc::new(Fixed(Err(()))), metrics);
        assert!(failing.converse(ChatRequest::default()).await.is_err());
        let seen = calls.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("fixed-model".to_string(), 12, 5, None),
                ("fixed-model".to_string(), 12, 5, None),
                (
                    "fixed-model".to_string(),
                    0,
                    0,
                    Some("throttled".to_string())
                ),
            ]
        );
    }
}
