//! A `ChatModel` that retries throttling and unavailability with
//! exponential backoff and jitter. Every model the service holds is wrapped
//! in it, so answering, summarising and the agent loop all retry the same
//! way whatever the backend; adapters themselves make a single attempt.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::chat::{ChatModel, ChatRequest, ChatResponse, ChatStreamEvent};
use crate::error::ModelError;
use crate::retry::RetryPolicy;

pub struct RetryingChatModel {
    inner: Arc<dyn ChatModel>,
    policy: RetryPolicy,
}

impl RetryingChatModel {
    pub fn new(inner: Arc<dyn ChatModel>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

/// The pause a retryable error asks for, `None` for errors not worth
/// repeating (a context overflow is handled by trimming, not retrying).
fn retryable(error: &ModelError) -> Option<Option<Duration>> {
    match error {
        ModelError::Throttled { retry_after } => Some(*retry_after),
        ModelError::Transient(_) => Some(None),
        ModelError::Invalid(_) | ModelError::ContextTooLong | ModelError::Permanent(_) => None,
    }
}

#[async_trait]
impl ChatModel for RetryingChatModel {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn supports_tools(&self) -> bool {
        self.inner.supports_tools()
    }

    async fn converse(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        self.policy
            .run(|| self.inner.converse(request.clone()), retryable)
            .await
    }

    /// Retries opening the stream only: once text has been handed on, a
    /// retry would repeat it.
    async fn converse_stream(
        &self,
        request: ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatStreamEvent, ModelError>>, ModelError> {
        self.policy
            .run(|| self.inner.converse_stream(request.clone()), retryable)
            .await
    }
}
