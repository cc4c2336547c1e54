//! SQS events for the ingest worker: each record is one job, handed to
//! the job handler with its receive count, and the ones that did not
//! finish are reported back as `batchItemFailures`, so SQS deletes the
//! rest of the batch and delivers only those again. Records from the
//! dead-letter queue are jobs that ran out of receives; the handler fails
//! their documents.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use futures::future::join_all;
use rag_core::ingest::queue::{
    Delivery, IngestJob, JobHandler, JobOutcome, MAX_RECEIVES, Redelivery,
};
use rag_core::ingest::retry_delay;
use serde_json::Value;

/// Which queue a record came from, by the queue's name (the last segment
/// of its URL and of the record's `eventSourceARN`).
#[derive(Debug, Clone)]
pub struct QueueNames {
    pub ingest: String,
    pub dead_letter: Option<String>,
}

/// What the function does with SQS events.
#[derive(Clone)]
pub struct IngestWorker {
    pub handler: Arc<dyn JobHandler>,
    /// Brings a retried or busy message back sooner than the queue's
    /// visibility timeout, which is six times the function's.
    pub redelivery: Arc<dyn Redelivery>,
    pub queues: QueueNames,
}

/// Whether an event is an SQS batch, told before any HTTP parsing: an
/// API Gateway request's fields are all optional, so an SQS event would
/// otherwise pass for one.
pub fn is_sqs_event(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|record| record.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// The longest a busy document's message is held back: a lease is renewed
/// for as long as its worker lives, so this only paces the next look.
const MAX_BUSY_WAIT: Duration = Duration::from_secs(15 * 60);

impl IngestWorker {
    /// Handles every record of the batch at once (the handler's permits
    /// bound how many index together) and lists the ones to deliver again.
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let outcomes = join_all(event.records.iter().map(|r| self.handle_record(r))).await;
        let mut response = SqsBatchResponse::default();
        for (record, finished) in event.records.iter().zip(outcomes) {
            if finished {
                continue;
            }
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// Whether the record is done with and may be deleted.
    async fn handle_record(&self, record: &SqsMessage) -> bool {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let source = record.event_source_arn.as_deref().unwrap_or_default();
        let queue = source_queue(source);
        let body = record.body.as_deref().unwrap_or_default();
        let job = match IngestJob::from_body(body) {
            Ok(job) => job,
            Err(e) => {
                // Reported as failed, it reaches the dead-letter queue after
                // its last receive, where it can be looked at.
                tracing::error!(message_id, source, error = %e, "an SQS message is not an ingest job");
                return self.queues.dead_letter.as_deref() == Some(queue);
            }
        };
        if self.queues.dead_letter.as_deref() == Some(queue) {
            return match self.handler.dead_letter(&job).await {
                JobOutcome::Done => true,
                outcome => {
                    tracing::warn!(message_id, tenant = %job.tenant, id = %job.document_id, ?outcome, "a dead letter will be looked at again");
                    false
                }
            };
        }
        if queue != self.queues.ingest {
            tracing::error!(
                message_id,
                source,
                "an SQS record from a queue this function was not configured for"
            );
            return false;
        }
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        let delivery = Delivery {
            receive_count,
            max_receives: MAX_RECEIVES,
        };
        let delay = match self.handler.handle(&job, delivery).await {
            JobOutcome::Done => return true,
            JobOutcome::Retry { reason } => {
                tracing::warn!(message_id, tenant = %job.tenant, id = %job.document_id, receive_count, reason, "the job will be delivered again");
                retry_delay(receive_count)
            }
            JobOutcome::Busy { until } => (until - Utc::now())
                .to_std()
                .unwrap_or_default()
                .min(MAX_BUSY_WAIT),
            // Visible again at once, so SQS moves it to the dead-letter
            // queue on its next receive.
            JobOutcome::DeadLetter { .. } => Duration::ZERO,
        };
        if let Some(receipt) = record.receipt_handle.as_deref()
            && let Err(e) = self.redelivery.redeliver_after(receipt, delay).await
        {
            // The queue's own visibility timeout brings it back instead.
            tracing::warn!(message_id, error = %e, "changing the message's visibility failed");
        }
        false
    }
}

/// The queue's name in an `eventSourceARN`.
fn source_queue(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or_default()
}
