//! The ingest queue as core sees it: a job names one document of one
//! tenant, a queue takes jobs (SQS on AWS, a table in SQLite locally) and
//! delivers each at least once to a worker, and the worker says what the
//! queue should do with the delivery. Delivery itself (polling, batches,
//! visibility, dead letters) is the queue's own business.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
pub use crate::ingest::sync::SyncTask;
use crate::tenant::Tenant;

/// Receives of one message before it goes to the dead-letter queue: the
/// `maxReceiveCount` of the SQS redrive policy, and the local queue's.
pub const MAX_RECEIVES: u32 = 3;

/// One document to index; the body of a queue message, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestJob {
    pub tenant: Tenant,
    pub document_id: Uuid,
}

impl IngestJob {
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a job serialises as JSON")
    }

    pub fn from_body(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// A message of the ingest queue: a document to index, or a task of an
/// ingestion job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMessage {
    Index(IngestJob),
    Sync(SyncTask),
}

impl QueueMessage {
    pub fn from_body(body: &str) -> Result<Self, String> {
        if let Ok(job) = IngestJob::from_body(body) {
            return Ok(QueueMessage::Index(job));
        }
        SyncTask::from_body(body)
            .map(QueueMessage::Sync)
            .map_err(|e| format!("the message is not an ingest job nor a job's task: {e}"))
    }
}

/// Where accepted documents wait for a worker.
#[async_trait]
pub trait IngestQueue: Send + Sync {
    /// Sends one job; once this returns, the job is durable.
    async fn send(&self, job: &IngestJob) -> Result<(), StoreError>;
    /// Sends one task of an ingestion job, as durably.
    async fn send_task(&self, task: &SyncTask) -> Result<(), StoreError>;
    fn backend_name(&self) -> &'static str;
}

/// Which receive of its message a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// 1 on the first receive.
    pub receive_count: u32,
    pub max_receives: u32,
}

impl Delivery {
    pub fn first() -> Self {
        Self {
            receive_count: 1,
            max_receives: MAX_RECEIVES,
        }
    }

    /// No further receive follows this one.
    pub fn is_last(&self) -> bool {
        self.receive_count >= self.max_receives
    }
}

/// What the queue should do with a delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished, or nothing left to do (indexed, failed for good, deleted):
    /// delete the message.
    Done,
    /// A transient failure with receives left: deliver it again later.
    Retry { reason: String },
    /// Another worker holds the document's lease until `until`: deliver it
    /// again after that, without counting this receive as an attempt.
    Busy { until: DateTime<Utc> },
    /// Failed on its last receive; the document is FAILED with `reason`
    /// and the message belongs in the dead-letter queue.
    DeadLetter { reason: String },
}

/// What processes delivered jobs: the ingestor.
#[async_trait]
pub trait JobHandler: Send + Sync {
    async fn handle(&self, job: &IngestJob, delivery: Delivery) -> JobOutcome;
    /// A direct upload arrived in storage (an S3 `ObjectCreated` event):
    /// its document is accepted under the id promised to it, unless an
    /// earlier delivery did so, then indexed as [`JobHandler::handle`]
    /// would. An upload that cannot be accepted leaves its document
    /// FAILED with the reason, so the client that waits on it learns why.
    async fn handle_upload(&self, job: &IngestJob, delivery: Delivery) -> JobOutcome;
    /// A job whose message ran out of receives without settling its
    /// document (its worker was killed or timed out on the last one):
    /// the document is made FAILED with its last error, once no live
    /// lease is on it. `Done` once that is so, `Busy` while a worker
    /// still holds it.
    async fn dead_letter(&self, job: &IngestJob) -> JobOutcome;
    /// Runs one task of an ingestion job (list its source, sync an item).
    async fn handle_sync(&self, task: &SyncTask, delivery: Delivery) -> JobOutcome;
    /// A job's task that ran out of receives: its item counts as failed,
    /// so the job still ends.
    async fn dead_letter_sync(&self, task: &SyncTask) -> JobOutcome;
}

/// The object key, relative to an upload area, that a direct upload's
/// bytes are PUT to. A store that keeps a tenant's keys as
/// `<prefix><tenant>/<key>` (S3) has them at `<prefix><tenant>/<id>/object`,
/// which [`upload_job_of_key`] reads back.
pub fn upload_object_key(document_id: Uuid) -> String {
    format!("{document_id}/{UPLOAD_OBJECT}")
}

const UPLOAD_OBJECT: &str = "object";

/// The job for an uploaded object's key (`<prefix><tenant>/<id>/object`,
/// as an S3 event names it, percent-encoded); `None` for any other key,
/// such as an upload's declaration beside it.
pub fn upload_job_of_key(prefix: &str, encoded_key: &str) -> Option<IngestJob> {
    let key = percent_decode(encoded_key)?;
    let prefix = prefix.trim_matches('/');
    let rest = if prefix.is_empty() {
        key.as_str()
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let mut parts = rest.split('/');
    let (Some(tenant), Some(id), Some(UPLOAD_OBJECT), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(IngestJob {
        tenant: Tenant::new(tenant).ok()?,
        document_id: Uuid::try_parse(id).ok()?,
    })
}

/// S3 event keys are URL-encoded as in a form (`+` for a space).
fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = encoded.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Makes a received message visible again after `delay` rather than after
/// the queue's whole visibility timeout (SQS's `ChangeMessageVisibility`),
/// so a retry's backoff and a busy document's lease decide when it
/// returns.
#[async_trait]
pub trait Redelivery: Send + Sync {
    async fn redeliver_after(&self, receipt: &str, delay: Duration) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_round_trips_through_its_message_body() {
        let job = IngestJob {
            tenant: Tenant::new("team-a").unwrap(),
            document_id: Uuid::nil(),
        };
        assert_eq!(
            job.body(),
            r#"{"tenant":"team-a","document_id":"00000000-0000-0000-0000-000000000000"}"#
        );
        assert_eq!(IngestJob::from_body(&job.body()).unwrap(), job);
        assert!(IngestJob::from_body(r#"{"tenant":"no spaces","document_id":"x"}"#).is_err());
    }

    #[test]
    fn an_uploaded_objects_key_names_its_tenant_and_document() {
        let id = Uuid::new_v4();
        let job = upload_job_of_key("uploads/", &format!("uploads/team.a/{id}/object")).unwrap();
        assert_eq!(job.tenant.as_str(), "team.a");
        assert_eq!(job.document_id, id);
        // Encoded as S3 events encode keys.
        let encoded = format!("uploads%2Fteam-a/{id}%2Fobject");
        assert_eq!(
            upload_job_of_key("uploads", &encoded).unwrap().document_id,
            id
        );
        assert_eq!(
            upload_job_of_key(
                "",
                &upload_object_key(id).replace(&id.to_string(), &format!("t/{id}"))
            )
            .unwrap()
            .document_id,
            id
        );
        for other in [
            format!("uploads/team-a/{id}/declaration.json"),
            format!("documents/team-a/{id}/object"),
            format!("uploads/team-a/{id}/object/more"),
            "uploads/team-a/not-an-id/object".to_string(),
            format!("uploads/bad%20tenant/{id}/object"),
            format!("uploads/team-a/{id}%ZZ/object"),
        ] {
            assert!(upload_job_of_key("uploads/", &other).is_none(), "{other}");
        }
    }

    #[test]
    fn the_last_delivery_is_the_max_receive() {
        let delivery = Delivery::first();
        assert!(!delivery.is_last());
        assert!(
            Delivery {
                receive_count: 3,
                max_receives: 3
            }
            .is_last()
        );
    }
}
