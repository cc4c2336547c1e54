//! SQS events for the ingest worker: each record is one job, handed to
//! the job handler with its receive count, and the ones that did not
//! finish are reported back as `batchItemFailures`, so SQS deletes the
//! rest of the batch and delivers only those again. A record is either a
//! job the API function sent, or an S3 event notification for objects
//! created under the upload prefix (direct uploads), each of which names
//! its tenant and promised document in its key. Records from the
//! dead-letter queue are jobs that ran out of receives; the handler fails
//! their documents.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use futures::future::join_all;
use rag_core::ingest::queue::{
    Delivery, IngestJob, JobHandler, JobOutcome, MAX_RECEIVES, QueueMessage, Redelivery, SyncTask,
    upload_job_of_key,
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
    /// The key prefix direct uploads land under in the bucket whose
    /// `ObjectCreated` notifications reach the ingest queue; without one,
    /// S3 events are not expected.
    pub uploads_prefix: Option<String>,
}

/// What one record's body asks for.
#[derive(Debug, PartialEq)]
enum Work {
    /// A job the API function queued.
    Job(IngestJob),
    /// A task of an ingestion job.
    Task(SyncTask),
    /// Direct uploads that arrived (an S3 event; S3's test event names
    /// none).
    Uploads(Vec<IngestJob>),
}

/// Reads a record's body: a job, or an S3 event notification.
fn work_of(body: &str, uploads_prefix: Option<&str>) -> Result<Work, String> {
    match QueueMessage::from_body(body) {
        Ok(QueueMessage::Index(job)) => return Ok(Work::Job(job)),
        Ok(QueueMessage::Sync(task)) => return Ok(Work::Task(task)),
        Err(_) => {}
    }
    let event: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Work::Uploads(Vec::new()));
    }
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .filter(|records| {
            records
                .iter()
                .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:s3"))
        })
        .ok_or("neither an ingest job nor an S3 event notification")?;
    let prefix = uploads_prefix.ok_or("an S3 event, but this function takes no uploads")?;
    let mut jobs = Vec::new();
    for record in records {
        let created = record
            .get("eventName")
            .and_then(Value::as_str)
            .is_some_and(|name| name.starts_with("ObjectCreated:"));
        let key = record
            .pointer("/s3/object/key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match upload_job_of_key(prefix, key) {
            Some(job) if created => jobs.push(job),
            _ => tracing::info!(key, "an S3 event that names no upload; ignored"),
        }
    }
    Ok(Work::Uploads(jobs))
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
        let work = match work_of(body, self.uploads_prefix.as_deref()) {
            Ok(work) => work,
            Err(e) => {
                // Reported as failed, it reaches the dead-letter queue after
                // its last receive, where it can be looked at.
                tracing::error!(message_id, source, error = %e, "an SQS message is not an ingest job");
                return self.queues.dead_letter.as_deref() == Some(queue);
            }
        };
        if let Work::Task(task) = &work {
            return self.handle_task(record, queue, task).await;
        }
        let jobs = match &work {
            Work::Job(job) => std::slice::from_ref(job),
            Work::Uploads(jobs) => jobs.as_slice(),
            Work::Task(_) => unreachable!("handled above"),
        };
        if self.queues.dead_letter.as_deref() == Some(queue) {
            let mut finished = true;
            for job in jobs {
                match self.handler.dead_letter(job).await {
                    JobOutcome::Done => {}
                    outcome => {
                        tracing::warn!(message_id, tenant = %job.tenant, id = %job.document_id, ?outcome, "a dead letter will be looked at again");
                        finished = false;
                    }
                }
            }
            return finished;
        }
        if queue != self.queues.ingest {
            tracing::error!(
                message_id,
                source,
                "an SQS record from a queue this function was not configured for"
            );
            return false;
        }
        let receive_count = receive_count(record);
        let delivery = Delivery {
            receive_count,
            max_receives: MAX_RECEIVES,
        };
        let outcome = match &work {
            Work::Job(job) => self.handler.handle(job, delivery).await,
            Work::Task(_) => unreachable!("handled above"),
            Work::Uploads(jobs) => {
                // S3 puts one object in each event; should one hold more,
                // the message is done once all of them are.
                let mut outcome = JobOutcome::Done;
                for job in jobs {
                    let this = self.handler.handle_upload(job, delivery).await;
                    if outcome == JobOutcome::Done {
                        outcome = this;
                    }
                }
                outcome
            }
        };
        let job = jobs.first();
        let (tenant, id) = (
            job.map(|j| j.tenant.to_string()).unwrap_or_default(),
            job.map(|j| j.document_id.to_string()).unwrap_or_default(),
        );
        self.settle(record, outcome, receive_count, &tenant, &id)
            .await
    }

    /// A task of an ingestion job, from the ingest queue or its dead
    /// letters.
    async fn handle_task(&self, record: &SqsMessage, queue: &str, task: &SyncTask) -> bool {
        if self.queues.dead_letter.as_deref() == Some(queue) {
            return self.handler.dead_letter_sync(task).await == JobOutcome::Done;
        }
        if queue != self.queues.ingest {
            tracing::error!(
                queue,
                "an SQS record from a queue this function was not configured for"
            );
            return false;
        }
        let receive_count = receive_count(record);
        let delivery = Delivery {
            receive_count,
            max_receives: MAX_RECEIVES,
        };
        let outcome = self.handler.handle_sync(task, delivery).await;
        let (tenant, id) = (task.tenant().to_string(), task.job_id().to_string());
        self.settle(record, outcome, receive_count, &tenant, &id)
            .await
    }

    /// Whether the record is done with; if not, when it comes back.
    async fn settle(
        &self,
        record: &SqsMessage,
        outcome: JobOutcome,
        receive_count: u32,
        tenant: &str,
        id: &str,
    ) -> bool {
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let delay = match outcome {
            JobOutcome::Done => return true,
            JobOutcome::Retry { reason } => {
                tracing::warn!(
                    message_id,
                    tenant,
                    id,
                    receive_count,
                    reason,
                    "the job will be delivered again"
                );
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

/// `ApproximateReceiveCount`, 1 when SQS did not say.
fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// The queue's name in an `eventSourceARN`.
fn source_queue(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_is_a_job_an_upload_event_or_neither() {
        let id = uuid::Uuid::new_v4();
        let job = IngestJob {
            tenant: rag_core::Tenant::new("team-a").unwrap(),
            document_id: id,
        };
        assert_eq!(work_of(&job.body(), None), Ok(Work::Job(job.clone())));
        let event = json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "docs"}, "object": {"key": format!("uploads/team-a/{id}/object"), "size": 5}}
        }]})
        .to_string();
        assert_eq!(
            work_of(&event, Some("uploads/")),
            Ok(Work::Uploads(vec![job.clone()]))
        );
        assert!(work_of(&event, None).is_err(), "uploads are not configured");
        let removed = event.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert_eq!(
            work_of(&removed, Some("uploads/")),
            Ok(Work::Uploads(vec![]))
        );
        let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "docs"});
        assert_eq!(
            work_of(&test_event.to_string(), Some("uploads/")),
            Ok(Work::Uploads(vec![]))
        );
        assert!(work_of("{\"hello\": 1}", Some("uploads/")).is_err());
        assert!(work_of("not json", Some("uploads/")).is_err());
    }
}
