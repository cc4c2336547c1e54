//! Indexing one document under a lease. A worker first takes the
//! document's lease (PENDING, or PROCESSING under an expired lease, to
//! PROCESSING under its own), renews it while it chunks and embeds, and
//! ends it with the document INDEXED, FAILED, or back to PENDING for
//! another attempt. Two workers handed one document never both index it,
//! and a worker that dies loses its lease when it stops renewing, after
//! which a redelivery takes the document over. Chunk ids are derived from
//! the document and the chunk's index, and a new holder first removes
//! whatever an earlier one wrote, so nothing is doubled or orphaned.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::Ingestor;
use super::queue::{Delivery, IngestJob, JobHandler, JobOutcome, MAX_RECEIVES};
use super::upload::TakenUpload;
use crate::backend::{Lease, ListQuery, StatusUpdate};
use crate::catalog::not_found;
use crate::domain::{Document, DocumentStatus};
use crate::error::{ErrorClass, RagError, StoreError};
use crate::telemetry::MetricEvent;
use crate::tenant::Tenant;
use crate::usage::UsageCounts;

/// What one attempt at a document came to.
enum Attempt {
    /// INDEXED, or FAILED for a reason another attempt would not change,
    /// or already in one of those states when the attempt began.
    Settled(Document),
    /// A transient failure; the document is PENDING again for a later
    /// attempt, its error saying why.
    Retrying(Document, String),
    /// A transient failure on the last attempt: FAILED with the reason.
    Exhausted(Document, String),
    /// Another worker holds a live lease on it.
    Busy(Document),
    /// Our lease was taken over mid-way (we stalled past its expiry); the
    /// new holder carries on and nothing we wrote is removed.
    Lost,
}

/// Whether another attempt could succeed where this one failed.
fn is_transient(error: &RagError) -> bool {
    class_of(error) == Some(ErrorClass::Transient)
}

/// The class of a backend's or a parser's error; `None` for the caller's
/// own mistakes.
pub(super) fn class_of(error: &RagError) -> Option<ErrorClass> {
    Some(match error {
        RagError::Store(e) => e.class(),
        RagError::Embed(e) => e.class(),
        RagError::Model(e) => e.class(),
        RagError::Parse(e) => e.class(),
        RagError::Fetch(e) => e.class(),
        _ => return None,
    })
}

/// Why indexing stopped before it finished.
enum Interrupted {
    Failed(RagError),
    LeaseLost(StoreError),
}

impl Ingestor {
    /// Indexes a PENDING document now, as the one and last attempt (the
    /// caller is waiting for it). A document another worker holds, or that
    /// is already settled, is returned as it stands.
    pub async fn process(&self, tenant: &Tenant, id: Uuid) -> Result<Document, RagError> {
        let last = Delivery {
            receive_count: 1,
            max_receives: 1,
        };
        match self.attempt(tenant, id, last).await? {
            Attempt::Settled(doc)
            | Attempt::Busy(doc)
            | Attempt::Retrying(doc, _)
            | Attempt::Exhausted(doc, _) => Ok(doc),
            Attempt::Lost => self
                .stores()
                .metadata
                .get(tenant, id)
                .await?
                .ok_or_else(|| not_found(id)),
        }
    }

    async fn attempt(
        &self,
        tenant: &Tenant,
        id: Uuid,
        delivery: Delivery,
    ) -> Result<Attempt, RagError> {
        let metadata = &self.stores().metadata;
        let owner = format!("worker-{}", Uuid::new_v4());
        let lease = self.settings.lease;
        let document = match metadata
            .lease(tenant, id, &Lease::for_next(&owner, lease))
            .await
        {
            Ok(document) => document,
            Err(StoreError::Conflict(_)) => {
                let current = metadata
                    .get(tenant, id)
                    .await?
                    .ok_or_else(|| not_found(id))?;
                return Ok(match current.status {
                    DocumentStatus::Processing | DocumentStatus::Pending => Attempt::Busy(current),
                    DocumentStatus::Indexed | DocumentStatus::Failed => Attempt::Settled(current),
                });
            }
            Err(StoreError::NotFound { .. }) => return Err(not_found(id)),
            Err(e) => return Err(e.into()),
        };
        let started = std::time::Instant::now();
        let indexed = tokio::select! {
            indexed = self.index_document(tenant, &document) => indexed.map_err(Interrupted::Failed),
            lost = self.keep_lease(tenant, id, &owner) => Err(Interrupted::LeaseLost(lost)),
        };
        match indexed {
            Ok((chunk_count, token_count)) => {
                let done = metadata
                    .release(
                        tenant,
                        id,
                        &owner,
                        DocumentStatus::Indexed,
                        StatusUpdate {
                            chunk_count: Some(chunk_count),
                            token_count: Some(token_count),
                            error: None,
                            indexed_at: Some(Utc::now()),
                        },
                    )
                    .await;
                match done {
                    Ok(doc) => {
                        tracing::info!(%id, chunk_count, elapsed_ms = started.elapsed().as_millis() as u64, "document indexed");
                        self.count_usage(tenant, &doc, chunk_count);
                        Ok(Attempt::Settled(doc))
                    }
                    Err(e) => self.lost_lease(tenant, id, e).await,
                }
            }
            Err(Interrupted::LeaseLost(e)) => self.lost_lease(tenant, id, e).await,
            Err(Interrupted::Failed(error)) => {
                // What this attempt wrote is removed only while the lease
                // is surely ours: renewed first, so a worker that took an
                // expired lease over never loses its own writes to it.
                if let Err(e) = metadata
                    .lease(tenant, id, &Lease::for_next(&owner, lease))
                    .await
                {
                    return self.lost_lease(tenant, id, e).await;
                }
                self.catalog.remove_index_entries(tenant, id).await;
                let transient = is_transient(&error);
                let retry = transient && !delivery.is_last();
                let reason = error.to_string();
                let (to, recorded) = if retry {
                    tracing::warn!(%id, %error, attempt = delivery.receive_count, "ingestion attempt failed; it will be retried");
                    (
                        DocumentStatus::Pending,
                        format!(
                            "attempt {} of {} failed and will be retried: {reason}",
                            delivery.receive_count, delivery.max_receives
                        ),
                    )
                } else {
                    tracing::warn!(%id, %error, "ingestion failed");
                    (DocumentStatus::Failed, reason.clone())
                };
                let update = StatusUpdate {
                    error: Some(recorded),
                    ..StatusUpdate::default()
                };
                let released = match metadata.release(tenant, id, &owner, to, update).await {
                    Ok(doc) => doc,
                    Err(e) => return self.lost_lease(tenant, id, e).await,
                };
                Ok(match (retry, transient) {
                    (true, _) => Attempt::Retrying(released, reason),
                    (false, true) => Attempt::Exhausted(released, reason),
                    (false, false) => Attempt::Settled(released),
                })
            }
        }
    }

    /// Renews the lease a third of its length before it would expire, for
    /// as long as it is awaited; returns only when the lease is gone. A
    /// renewal that fails for a passing reason is tried again next time.
    async fn keep_lease(&self, tenant: &Tenant, id: Uuid, owner: &str) -> StoreError {
        let lease = self.settings.lease;
        loop {
            tokio::time::sleep(lease / 3).await;
            match self
                .stores()
                .metadata
                .lease(tenant, id, &Lease::for_next(owner, lease))
                .await
            {
                Ok(_) => {}
                Err(e @ (StoreError::Conflict(_) | StoreError::NotFound { .. })) => return e,
                Err(e) => tracing::warn!(%id, error = %e, "renewing the lease failed"),
            }
        }
    }

    /// The document changed hands while we worked. Deleted: what we wrote
    /// is taken back. Taken over by another worker: it is theirs now.
    async fn lost_lease(
        &self,
        tenant: &Tenant,
        id: Uuid,
        error: StoreError,
    ) -> Result<Attempt, RagError> {
        match error {
            StoreError::NotFound { .. } => {
                self.catalog.remove_index_entries(tenant, id).await;
                Err(not_found(id))
            }
            StoreError::Conflict(reason) => {
                tracing::warn!(%id, reason, "the lease was taken over; the new holder finishes the document");
                Ok(Attempt::Lost)
            }
            other => Err(other.into()),
        }
    }

    fn count_usage(&self, tenant: &Tenant, document: &Document, chunk_count: u32) {
        if let Some(usage) = &self.usage {
            usage.record(
                tenant,
                UsageCounts {
                    documents_ingested: 1,
                    bytes_ingested: document.size_bytes,
                    embedding_calls: if self.embedder.is_some() {
                        u64::from(chunk_count)
                    } else {
                        0
                    },
                    ..UsageCounts::default()
                },
            );
            usage.metrics().record(&MetricEvent::Ingested {
                documents: 1,
                chunks: u64::from(chunk_count),
            });
        }
    }

    /// Hands the document to the queue, or, with none, to a task of this
    /// process that makes the queue's attempts itself.
    pub(super) async fn dispatch(self: &Arc<Self>, job: IngestJob) -> Result<(), StoreError> {
        match &self.queue {
            Some(queue) => queue.send(&job).await,
            None => {
                self.spawn_attempts(job);
                Ok(())
            }
        }
    }

    /// Hands a job's task to the queue, or, with none, to a task of this
    /// process that makes the queue's attempts itself.
    pub(super) async fn dispatch_task(
        &self,
        task: crate::ingest::sync::SyncTask,
    ) -> Result<(), StoreError> {
        match &self.queue {
            Some(queue) => queue.send_task(&task).await,
            None => {
                // Every part of an ingestor is shared, so a copy is the
                // same ingestor.
                let ingestor = Arc::new(self.clone());
                tokio::spawn(async move {
                    for receive_count in 1..=MAX_RECEIVES {
                        let delivery = Delivery {
                            receive_count,
                            max_receives: MAX_RECEIVES,
                        };
                        match ingestor.handle_sync(&task, delivery).await {
                            JobOutcome::Retry { .. } if receive_count < MAX_RECEIVES => {
                                tokio::time::sleep(retry_delay(receive_count)).await;
                            }
                            JobOutcome::Retry { .. } | JobOutcome::DeadLetter { .. } => {
                                ingestor.dead_letter_sync(&task).await;
                                return;
                            }
                            JobOutcome::Done | JobOutcome::Busy { .. } => return,
                        }
                    }
                });
                Ok(())
            }
        }
    }

    /// Up to [`MAX_RECEIVES`] attempts in a task, waiting out another
    /// worker's lease and backing off between transient failures.
    fn spawn_attempts(self: &Arc<Self>, job: IngestJob) {
        let ingestor = self.clone();
        tokio::spawn(async move {
            let mut receive_count = 1;
            loop {
                let delivery = Delivery {
                    receive_count,
                    max_receives: MAX_RECEIVES,
                };
                match ingestor.handle(&job, delivery).await {
                    JobOutcome::Done => return,
                    JobOutcome::DeadLetter { reason } => {
                        tracing::error!(tenant = %job.tenant, id = %job.document_id, reason, "ingestion failed on its last attempt");
                        return;
                    }
                    JobOutcome::Busy { until } => {
                        let wait = (until - Utc::now()).to_std().unwrap_or_default();
                        tokio::time::sleep(wait).await;
                    }
                    JobOutcome::Retry { reason } if receive_count >= MAX_RECEIVES => {
                        tracing::error!(tenant = %job.tenant, id = %job.document_id, reason, "ingestion gave up after its last attempt");
                        ingestor.dead_letter(&job).await;
                        return;
                    }
                    JobOutcome::Retry { .. } => {
                        tokio::time::sleep(retry_delay(receive_count)).await;
                        receive_count += 1;
                    }
                }
            }
        });
    }

    /// Finds documents a crash left PENDING or PROCESSING, in every
    /// tenant, and hands each to the queue again (a PROCESSING one is
    /// taken over once its lease expires). Returns how many.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, RagError> {
        let metadata = &self.stores().metadata;
        let mut resumed = std::collections::HashSet::new();
        for tenant in metadata.tenants().await? {
            for status in [DocumentStatus::Processing, DocumentStatus::Pending] {
                let mut cursor = None;
                loop {
                    let page = metadata
                        .list(
                            &tenant,
                            &ListQuery {
                                status: Some(status),
                                limit: 100,
                                cursor,
                            },
                        )
                        .await?;
                    for doc in &page.items {
                        if !resumed.insert(doc.id) {
                            continue;
                        }
                        tracing::info!(%tenant, id = %doc.id, title = %doc.title, "resuming interrupted ingestion");
                        self.dispatch(IngestJob {
                            tenant: tenant.clone(),
                            document_id: doc.id,
                        })
                        .await?;
                    }
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
        }
        Ok(resumed.len())
    }
}

/// How long a failed attempt waits before the next: 2 s, then 4 s, ...,
/// at most a minute, as a queue's redelivery would.
pub fn retry_delay(receive_count: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(receive_count.min(6)).min(60))
}

#[async_trait]
impl JobHandler for Ingestor {
    /// Waits for one of the ingestor's permits first, so queue workers and
    /// requests that wait for indexing together index at most
    /// `RAG_AGENT_INGEST_CONCURRENCY` documents at once.
    async fn handle(&self, job: &IngestJob, delivery: Delivery) -> JobOutcome {
        let _permit = self.permits.acquire().await;
        let (tenant, id) = (&job.tenant, job.document_id);
        match self.attempt(tenant, id, delivery).await {
            Ok(Attempt::Settled(_) | Attempt::Lost) => JobOutcome::Done,
            Ok(Attempt::Retrying(_, reason)) => JobOutcome::Retry { reason },
            Ok(Attempt::Exhausted(_, reason)) => JobOutcome::DeadLetter { reason },
            Ok(Attempt::Busy(_)) => JobOutcome::Busy {
                until: Utc::now()
                    + chrono::Duration::from_std(self.settings.lease).unwrap_or_default(),
            },
            // Deleted before its turn came: nothing to do.
            Err(RagError::NotFound { .. }) => JobOutcome::Done,
            Err(error) => {
                tracing::warn!(%tenant, %id, %error, "the job could not be attempted");
                JobOutcome::Retry {
                    reason: error.to_string(),
                }
            }
        }
    }

    async fn handle_sync(
        &self,
        task: &crate::ingest::sync::SyncTask,
        delivery: Delivery,
    ) -> JobOutcome {
        self.run_sync_task(task, delivery).await
    }

    async fn dead_letter_sync(&self, task: &crate::ingest::sync::SyncTask) -> JobOutcome {
        self.dead_sync_task(task).await
    }

    async fn handle_upload(&self, job: &IngestJob, delivery: Delivery) -> JobOutcome {
        match self.take_upload(job, delivery).await {
            TakenUpload::Accepted => self.handle(job, delivery).await,
            TakenUpload::Finished(outcome) => outcome,
        }
    }

    /// Takes the document's lease as any worker would, so a worker still
    /// indexing it is never overruled, then removes what a killed worker
    /// may have written and fails the document with its last error.
    async fn dead_letter(&self, job: &IngestJob) -> JobOutcome {
        let (tenant, id) = (&job.tenant, job.document_id);
        let metadata = &self.stores().metadata;
        let owner = format!("dead-letter-{}", Uuid::new_v4());
        let lease = self.settings.lease;
        let document = match metadata
            .lease(tenant, id, &Lease::for_next(&owner, lease))
            .await
        {
            Ok(document) => document,
            Err(StoreError::Conflict(_)) => {
                return match metadata.get(tenant, id).await {
                    Ok(Some(doc)) if doc.status == DocumentStatus::Processing => JobOutcome::Busy {
                        until: Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default(),
                    },
                    Ok(_) => JobOutcome::Done,
                    Err(e) => JobOutcome::Retry {
                        reason: e.to_string(),
                    },
                };
            }
            Err(StoreError::NotFound { .. }) => {
                // An upload that was never accepted has no document yet;
                // whoever waits on the id it was promised learns it failed.
                let reason = format!(
                    "gave up after {MAX_RECEIVES} deliveries: the upload could not be accepted"
                );
                return match self.fail_abandoned_upload(tenant, id, reason).await {
                    Some(Err(e)) => JobOutcome::Retry {
                        reason: e.to_string(),
                    },
                    Some(Ok(())) | None => JobOutcome::Done,
                };
            }
            Err(e) => {
                return JobOutcome::Retry {
                    reason: e.to_string(),
                };
            }
        };
        self.catalog.remove_index_entries(tenant, id).await;
        let reason = dead_letter_reason(document.error.as_deref());
        tracing::error!(%tenant, %id, reason, "the document's message ran out of deliveries");
        let update = StatusUpdate {
            error: Some(reason),
            ..StatusUpdate::default()
        };
        match metadata
            .release(tenant, id, &owner, DocumentStatus::Failed, update)
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict(_)) => JobOutcome::Done,
            Err(e) => JobOutcome::Retry {
                reason: e.to_string(),
            },
        }
    }
}

/// What a dead-lettered document records: its last attempt's error without
/// the promise of another attempt, or, when no attempt recorded one, that
/// its worker stopped (killed, or past the function's timeout).
fn dead_letter_reason(last_error: Option<&str>) -> String {
    let last = last_error.map(|e| match e.split_once(" and will be retried: ") {
        Some((_, cause)) => cause,
        None => e,
    });
    match last {
        Some(cause) => format!("gave up after {MAX_RECEIVES} deliveries: {cause}"),
        None => format!(
            "gave up after {MAX_RECEIVES} deliveries: the worker stopped before finishing (killed, or past its time limit)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_last_cause_without_the_retry_promise() {
        assert_eq!(
            dead_letter_reason(Some(
                "attempt 2 of 3 failed and will be retried: embedding throttled"
            )),
            "gave up after 3 deliveries: embedding throttled"
        );
        assert!(dead_letter_reason(None).contains("worker stopped"));
    }
}
