//! Running a job: `start_sync` stores it QUEUED and queues its `List`
//! task; the worker that takes that task lists the source, compares, and
//! hands out one `Put` or `Remove` task per item that needs work; each
//! task's worker adds what it did to the job in one atomic write, and the
//! one whose write leaves no task outstanding completes the job.

use bytes::Bytes;
use chrono::Utc;
use uuid::Uuid;

use super::{
    IngestionJob, JobCounts, JobFailure, JobProgress, JobStatus, SyncRequest, SyncSources,
    SyncTask, check_request,
};
use crate::domain::{DocumentStatus, Page};
use crate::error::{ErrorClass, RagError, StoreError};
use crate::ingest::queue::{Delivery, JobOutcome, MAX_RECEIVES};
use crate::ingest::worker::class_of;
use crate::ingest::{IngestInput, Ingestor};
use crate::tenant::Tenant;

/// Metadata keys a job's documents carry.
pub const SYNC_SOURCE_KEY: &str = "sync_source";
pub const SYNC_VERSION_KEY: &str = "sync_version";

fn job_not_found(id: Uuid) -> RagError {
    RagError::NotFound {
        what: "ingestion_job",
        id: id.to_string(),
    }
}

impl Ingestor {
    fn sync_sources(&self) -> Result<&SyncSources, RagError> {
        self.sync.as_ref().ok_or_else(|| {
            RagError::Unavailable(
                "ingestion jobs need a queue their tasks can wait in (under Lambda, INGEST_QUEUE_URL)"
                    .into(),
            )
        })
    }

    /// Starts a job: checks the request and that this deployment reads
    /// such a source, stores the job QUEUED and queues its listing.
    pub async fn start_sync(
        &self,
        tenant: &Tenant,
        request: SyncRequest,
    ) -> Result<IngestionJob, RagError> {
        let sources = self.sync_sources()?;
        check_request(&request)?;
        sources.for_location(&request.source)?;
        let job = IngestionJob {
            id: Uuid::new_v4(),
            source: request.source,
            include: request.include,
            exclude: request.exclude,
            delete_missing: request.delete_missing,
            status: JobStatus::Queued,
            counts: JobCounts::default(),
            failures: Vec::new(),
            error: None,
            pending: 0,
            listed: false,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
        };
        sources.jobs.create_job(tenant, &job).await?;
        let task = SyncTask::List {
            tenant: tenant.clone(),
            job_id: job.id,
        };
        if let Err(e) = self.dispatch_task(task).await {
            let reason = format!("the job could not be queued: {e}");
            let _ = sources
                .jobs
                .move_job(
                    tenant,
                    job.id,
                    JobStatus::Queued,
                    JobStatus::Failed,
                    Utc::now(),
                    Some(reason),
                )
                .await;
            return Err(e.into());
        }
        Ok(job)
    }

    pub async fn sync_job(&self, tenant: &Tenant, id: Uuid) -> Result<IngestionJob, RagError> {
        self.sync_sources()?
            .jobs
            .job(tenant, id)
            .await?
            .ok_or_else(|| job_not_found(id))
    }

    pub async fn sync_jobs(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<IngestionJob>, RagError> {
        if !(1..=crate::catalog::MAX_LIST_LIMIT).contains(&limit) {
            return Err(RagError::invalid(format!(
                "limit must be between 1 and {}",
                crate::catalog::MAX_LIST_LIMIT
            )));
        }
        Ok(self
            .sync_sources()?
            .jobs
            .jobs(tenant, limit, cursor)
            .await?)
    }

    /// Runs one task of a job, as a queue delivered it.
    pub(crate) async fn run_sync_task(&self, task: &SyncTask, delivery: Delivery) -> JobOutcome {
        let Ok(sources) = self.sync_sources() else {
            return JobOutcome::DeadLetter {
                reason: "this worker runs no ingestion jobs".into(),
            };
        };
        let outcome = match task {
            SyncTask::List { tenant, job_id } => self.list_job(sources, tenant, *job_id).await,
            SyncTask::Put {
                tenant,
                job_id,
                key,
                version,
                replaces,
            } => {
                self.put_item(sources, tenant, *job_id, key, version, replaces, delivery)
                    .await
            }
            SyncTask::Remove {
                tenant,
                job_id,
                key,
                documents,
            } => {
                let progress = match self.remove_all(tenant, documents).await {
                    Ok(()) => counted(|c| c.deleted = 1),
                    Err(e) if transient(&e) && !delivery.is_last() => {
                        return JobOutcome::Retry {
                            reason: e.to_string(),
                        };
                    }
                    Err(e) => failed(key, e.to_string()),
                };
                self.finish_task(sources, tenant, *job_id, key, progress)
                    .await
            }
        };
        outcome.unwrap_or_else(|e| JobOutcome::Retry {
            reason: e.to_string(),
        })
    }

    /// A task that ran out of deliveries: its item counts as failed (or,
    /// for the listing, the job fails), so the job still ends.
    pub(crate) async fn dead_sync_task(&self, task: &SyncTask) -> JobOutcome {
        let Ok(sources) = self.sync_sources() else {
            return JobOutcome::Done;
        };
        let reason = format!("gave up after {MAX_RECEIVES} deliveries");
        let result = match task {
            SyncTask::List { tenant, job_id } => {
                self.fail_job(sources, tenant, *job_id, JobStatus::Running, reason)
                    .await;
                self.fail_job(
                    sources,
                    tenant,
                    *job_id,
                    JobStatus::Queued,
                    format!("gave up after {MAX_RECEIVES} deliveries"),
                )
                .await;
                Ok(JobOutcome::Done)
            }
            SyncTask::Put {
                tenant,
                job_id,
                key,
                ..
            }
            | SyncTask::Remove {
                tenant,
                job_id,
                key,
                ..
            } => {
                self.finish_task(sources, tenant, *job_id, key, failed(key, reason))
                    .await
            }
        };
        result.unwrap_or_else(|e| JobOutcome::Retry {
            reason: e.to_string(),
        })
    }

    async fn list_job(
        &self,
        sources: &SyncSources,
        tenant: &Tenant,
        id: Uuid,
    ) -> Result<JobOutcome, RagError> {
        let Some(job) = sources.jobs.job(tenant, id).await? else {
            return Ok(JobOutcome::Done);
        };
        match job.status {
            JobStatus::Queued => {}
            // A listing whose worker died part-way: what it handed out is
            // unknown, so the job cannot finish correctly. A new job
            // skips whatever this one already did.
            JobStatus::Running if !job.listed => {
                self.fail_job(
                    sources,
                    tenant,
                    id,
                    JobStatus::Running,
                    "the listing stopped before it finished; start the job again (what it synced is kept)".into(),
                )
                .await;
                return Ok(JobOutcome::Done);
            }
            _ => return Ok(JobOutcome::Done),
        }
        match sources
            .jobs
            .move_job(
                tenant,
                id,
                JobStatus::Queued,
                JobStatus::Running,
                Utc::now(),
                None,
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Ok(JobOutcome::Done),
            Err(e) => return Err(e.into()),
        }
        let tasks = match self.plan(sources, tenant, &job).await {
            Ok(planned) => planned,
            Err(e) => {
                tracing::warn!(%tenant, job = %id, error = %e, "an ingestion job could not list its source");
                self.fail_job(sources, tenant, id, JobStatus::Running, e.to_string())
                    .await;
                return Ok(JobOutcome::Done);
            }
        };
        let (tasks, progress) = tasks;
        // The outstanding count goes up before any task can finish, so
        // none of them can see zero early.
        let handed = tasks.len() as i64;
        let job = sources
            .jobs
            .record_progress(
                tenant,
                id,
                &JobProgress {
                    pending: handed,
                    listed: true,
                    ..progress
                },
            )
            .await?;
        tracing::info!(%tenant, job = %id, tasks = handed, scanned = job.counts.scanned, "an ingestion job listed its source");
        let mut unsent = JobProgress::default();
        for task in tasks {
            if let Err(e) = self.dispatch_task(task.clone()).await {
                let key = match &task {
                    SyncTask::Put { key, .. } | SyncTask::Remove { key, .. } => key.clone(),
                    SyncTask::List { .. } => String::new(),
                };
                unsent.counts.failed += 1;
                unsent.pending -= 1;
                unsent.failures.push(JobFailure {
                    item: key,
                    reason: format!("could not be queued: {e}"),
                });
            }
        }
        if handed == 0 || unsent.pending != 0 {
            self.settle(sources, tenant, id, unsent).await?;
        }
        Ok(JobOutcome::Done)
    }

    /// Fetches one item and indexes it under this worker; once INDEXED,
    /// its older versions go.
    #[allow(clippy::too_many_arguments)]
    async fn put_item(
        &self,
        sources: &SyncSources,
        tenant: &Tenant,
        job_id: Uuid,
        key: &str,
        version: &str,
        replaces: &[Uuid],
        delivery: Delivery,
    ) -> Result<JobOutcome, RagError> {
        let Some(job) = sources.jobs.job(tenant, job_id).await? else {
            return Ok(JobOutcome::Done);
        };
        if job.status != JobStatus::Running {
            return Ok(JobOutcome::Done);
        }
        let attempt = async {
            let source = sources.for_location(&job.source)?;
            let object = source.fetch(key).await?;
            // A source without versions: the bytes tell.
            if version.is_empty()
                && self
                    .unchanged_content(tenant, replaces, &object.bytes)
                    .await?
            {
                return Ok(counted(|c| c.unchanged = 1));
            }
            let filename = key
                .rsplit('/')
                .next()
                .filter(|name| !name.is_empty())
                .map(str::to_string);
            let input = IngestInput {
                bytes: object.bytes,
                declared_content_type: object.content_type.filter(|t| {
                    // Storage often says nothing useful; then the name and
                    // bytes decide.
                    !t.starts_with("application/octet-stream") && !t.starts_with("binary/")
                }),
                filename,
                source: Some(key.to_string()),
                metadata: [
                    (SYNC_SOURCE_KEY.to_string(), serde_json::json!(job.source)),
                    (SYNC_VERSION_KEY.to_string(), serde_json::json!(version)),
                ]
                .into(),
                // Each item is its own document, even where another holds
                // the same bytes, so the next job finds it by its key.
                new_version: true,
                ..IngestInput::default()
            };
            // The item's document id follows from the job and the key, so a
            // task delivered twice finds the document the first made.
            let id = item_document_id(job_id, key);
            let limit = self.settings.max_document_bytes;
            match self.accept_as(tenant, input, id, limit).await {
                Ok(_) | Err(RagError::Store(StoreError::Conflict(_))) => {}
                Err(e) => return Err(e),
            }
            let _permit = self.permits.acquire().await;
            let document = self.process(tenant, id).await?;
            match document.status {
                DocumentStatus::Indexed => {
                    self.remove_all(tenant, replaces).await?;
                    Ok(if replaces.is_empty() {
                        counted(|c| c.added = 1)
                    } else {
                        counted(|c| c.updated = 1)
                    })
                }
                _ => Ok(failed(
                    key,
                    document
                        .error
                        .unwrap_or_else(|| "indexing did not finish".into()),
                )),
            }
        };
        let progress = match attempt.await {
            Ok(progress) => progress,
            Err(e) if transient(&e) && !delivery.is_last() => {
                return Ok(JobOutcome::Retry {
                    reason: e.to_string(),
                });
            }
            Err(e) => failed(key, e.to_string()),
        };
        self.finish_task(sources, tenant, job_id, key, progress)
            .await
    }

    async fn unchanged_content(
        &self,
        tenant: &Tenant,
        documents: &[Uuid],
        bytes: &Bytes,
    ) -> Result<bool, RagError> {
        let hash = crate::ingest::content_hash(bytes);
        for id in documents {
            if let Some(document) = self.stores().metadata.get(tenant, *id).await?
                && document.content_hash == hash
                && document.status == DocumentStatus::Indexed
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn remove_all(&self, tenant: &Tenant, documents: &[Uuid]) -> Result<(), RagError> {
        for id in documents {
            match self.catalog.delete_document(tenant, *id).await {
                Ok(()) | Err(RagError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Adds a finished item's task to its job, once however often it is
    /// delivered; the write that leaves nothing outstanding completes it.
    async fn finish_task(
        &self,
        sources: &SyncSources,
        tenant: &Tenant,
        job_id: Uuid,
        item: &str,
        progress: JobProgress,
    ) -> Result<JobOutcome, RagError> {
        let progress = JobProgress {
            pending: progress.pending - 1,
            ..progress
        };
        match sources
            .jobs
            .record_item(tenant, job_id, item, &progress)
            .await
        {
            Ok(Some(job)) => self.complete_if_done(sources, tenant, job).await,
            // Counted by an earlier delivery, or the job is gone.
            Ok(None) | Err(StoreError::NotFound { .. }) => Ok(JobOutcome::Done),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds `progress` to the job; the write that leaves nothing
    /// outstanding after the listing completes it.
    async fn settle(
        &self,
        sources: &SyncSources,
        tenant: &Tenant,
        job_id: Uuid,
        progress: JobProgress,
    ) -> Result<JobOutcome, RagError> {
        match sources
            .jobs
            .record_progress(tenant, job_id, &progress)
            .await
        {
            Ok(job) => self.complete_if_done(sources, tenant, job).await,
            Err(StoreError::NotFound { .. }) => Ok(JobOutcome::Done),
            Err(e) => Err(e.into()),
        }
    }

    /// Completes a job that was listed and has nothing outstanding.
    async fn complete_if_done(
        &self,
        sources: &SyncSources,
        tenant: &Tenant,
        job: IngestionJob,
    ) -> Result<JobOutcome, RagError> {
        let job_id = job.id;
        if job.listed && job.pending == 0 && job.status == JobStatus::Running {
            match sources
                .jobs
                .move_job(
                    tenant,
                    job_id,
                    JobStatus::Running,
                    JobStatus::Completed,
                    Utc::now(),
                    None,
                )
                .await
            {
                Ok(done) => {
                    tracing::info!(%tenant, job = %job_id, counts = ?done.counts, "an ingestion job completed")
                }
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(JobOutcome::Done)
    }

    async fn fail_job(
        &self,
        sources: &SyncSources,
        tenant: &Tenant,
        id: Uuid,
        from: JobStatus,
        reason: String,
    ) {
        match sources
            .jobs
            .move_job(
                tenant,
                id,
                from,
                JobStatus::Failed,
                Utc::now(),
                Some(reason),
            )
            .await
        {
            Ok(_) | Err(StoreError::Conflict(_) | StoreError::NotFound { .. }) => {}
            Err(e) => {
                tracing::error!(%tenant, job = %id, error = %e, "could not mark an ingestion job FAILED")
            }
        }
    }
}

/// The id of the document a job makes from an item: the same for every
/// delivery of its task, different for every job and key.
fn item_document_id(job_id: Uuid, key: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(job_id.as_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn counted(set: impl FnOnce(&mut JobCounts)) -> JobProgress {
    let mut progress = JobProgress::default();
    set(&mut progress.counts);
    progress
}

fn failed(item: &str, reason: String) -> JobProgress {
    JobProgress {
        counts: JobCounts {
            failed: 1,
            ..JobCounts::default()
        },
        failures: vec![JobFailure {
            item: item.to_string(),
            reason,
        }],
        ..JobProgress::default()
    }
}

fn transient(error: &RagError) -> bool {
    class_of(error) == Some(ErrorClass::Transient)
}
