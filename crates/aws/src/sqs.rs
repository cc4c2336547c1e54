//! The ingest queue on SQS: one message per accepted document, its body
//! the job's JSON. Delivery, visibility and the dead-letter queue are
//! SQS's (the redrive policy's `maxReceiveCount` is core's
//! `MAX_RECEIVES`); the Lambda event source mapping hands messages to the
//! ingest worker, which reports failed ones back.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use rag_core::StoreError;
use rag_core::ingest::queue::{IngestJob, IngestQueue, Redelivery, SyncTask};

use crate::sdk_error::classify;

/// The longest visibility timeout SQS accepts: 12 hours.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// The queue's name: the last segment of its URL, and of its ARN, which
    /// is how the worker tells this queue's records from others.
    pub fn name(&self) -> &str {
        queue_name(&self.queue_url)
    }

    /// A queue that does not exist is a deployment fault, not a missing
    /// document: every error here is the queue's.
    fn error(&self, error: StoreError) -> StoreError {
        match error {
            StoreError::NotFound { what } | StoreError::Invalid(what) => {
                StoreError::Permanent(Box::new(std::io::Error::other(format!(
                    "the ingest queue {}: {what}",
                    self.queue_url
                ))))
            }
            other => other,
        }
    }
}

/// The last `/` or `:` separated segment: a queue's name in its URL
/// (`https://sqs.<region>.amazonaws.com/<account>/<name>`) and in its ARN
/// (`arn:aws:sqs:<region>:<account>:<name>`).
pub fn queue_name(url_or_arn: &str) -> &str {
    url_or_arn
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default()
}

impl SqsQueue {
    async fn send_body(&self, body: String) -> Result<(), StoreError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| self.error(classify(e).into_store_error(|| self.queue_url.clone())))?;
        Ok(())
    }
}

#[async_trait]
impl IngestQueue for SqsQueue {
    async fn send(&self, job: &IngestJob) -> Result<(), StoreError> {
        self.send_body(job.body()).await
    }

    async fn send_task(&self, task: &SyncTask) -> Result<(), StoreError> {
        self.send_body(task.body()).await
    }

    fn backend_name(&self) -> &'static str {
        "sqs"
    }
}

#[async_trait]
impl Redelivery for SqsQueue {
    async fn redeliver_after(&self, receipt: &str, delay: Duration) -> Result<(), StoreError> {
        let seconds = delay.min(MAX_VISIBILITY).as_secs() as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| self.error(classify(e).into_store_error(|| self.queue_url.clone())))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_named_alike_by_its_url_and_its_arn() {
        assert_eq!(
            queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/rag-ingest"),
            "rag-ingest"
        );
        assert_eq!(
            queue_name("arn:aws:sqs:eu-west-1:123456789012:rag-ingest"),
            "rag-ingest"
        );
        assert_eq!(
            queue_name("http://127.0.0.1:5000/123456789012/rag-ingest-dlq/"),
            "rag-ingest-dlq"
        );
    }
}
