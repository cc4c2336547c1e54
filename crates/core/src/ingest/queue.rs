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

/// Where accepted documents wait for a worker.
#[async_trait]
pub trait IngestQueue: Send + Sync {
    /// Sends one job; once this returns, the job is durable.
    async fn send(&self, job: &IngestJob) -> Result<(), StoreError>;
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
    /// A job whose message ran out of receives without settling its
    /// document (its worker was killed or timed out on the last one):
    /// the document is made FAILED with its last error, once no live
    /// lease is on it. `Done` once that is so, `Busy` while a worker
    /// still holds it.
    async fn dead_letter(&self, job: &IngestJob) -> JobOutcome;
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
