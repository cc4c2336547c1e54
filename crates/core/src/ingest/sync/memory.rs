//! Ingestion jobs in memory, for tests, and the rules every job store
//! keeps, checked against each of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    IngestionJob, IngestionJobStore, JobCounts, JobFailure, JobProgress, JobStatus,
    MAX_FAILURES_KEPT,
};
use crate::domain::Page;
use crate::error::StoreError;
use crate::tenant::Tenant;

#[derive(Default)]
pub struct MemoryJobStore {
    jobs: Mutex<BTreeMap<(Tenant, Uuid), IngestionJob>>,
    marks: Mutex<BTreeSet<(Tenant, Uuid, String)>>,
}

fn not_found(id: Uuid) -> StoreError {
    StoreError::NotFound {
        what: format!("ingestion job {id}"),
    }
}

#[async_trait]
impl IngestionJobStore for MemoryJobStore {
    async fn create_job(&self, tenant: &Tenant, job: &IngestionJob) -> Result<(), StoreError> {
        self.jobs
            .lock()
            .unwrap()
            .insert((tenant.clone(), job.id), job.clone());
        Ok(())
    }

    async fn job(&self, tenant: &Tenant, id: Uuid) -> Result<Option<IngestionJob>, StoreError> {
        Ok(self
            .jobs
            .lock()
            .unwrap()
            .get(&(tenant.clone(), id))
            .cloned())
    }

    async fn jobs(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<IngestionJob>, StoreError> {
        let mut jobs: Vec<IngestionJob> = self
            .jobs
            .lock()
            .unwrap()
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, job)| job.clone())
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        if let Some(cursor) = cursor {
            let after = jobs
                .iter()
                .position(|j| j.id.to_string() == cursor)
                .ok_or_else(|| StoreError::Invalid("invalid cursor".into()))?;
            jobs.drain(..=after);
        }
        let next_cursor = (jobs.len() > limit).then(|| jobs[limit - 1].id.to_string());
        jobs.truncate(limit);
        Ok(Page {
            items: jobs,
            next_cursor,
        })
    }

    async fn record_progress(
        &self,
        tenant: &Tenant,
        id: Uuid,
        progress: &JobProgress,
    ) -> Result<IngestionJob, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs
            .get_mut(&(tenant.clone(), id))
            .ok_or_else(|| not_found(id))?;
        job.apply(progress);
        Ok(job.clone())
    }

    async fn record_item(
        &self,
        tenant: &Tenant,
        id: Uuid,
        item: &str,
        progress: &JobProgress,
    ) -> Result<Option<IngestionJob>, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs
            .get_mut(&(tenant.clone(), id))
            .ok_or_else(|| not_found(id))?;
        if !self
            .marks
            .lock()
            .unwrap()
            .insert((tenant.clone(), id, item.to_string()))
        {
            return Ok(None);
        }
        job.apply(progress);
        Ok(Some(job.clone()))
    }

    async fn move_job(
        &self,
        tenant: &Tenant,
        id: Uuid,
        from: JobStatus,
        to: JobStatus,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<IngestionJob, StoreError> {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs
            .get_mut(&(tenant.clone(), id))
            .ok_or_else(|| not_found(id))?;
        if job.status != from {
            return Err(StoreError::Conflict(format!(
                "the ingestion job is {}",
                job.status.as_str()
            )));
        }
        job.moved(to, at, error);
        Ok(job.clone())
    }
}

fn new_job(source: &str, created_at: DateTime<Utc>) -> IngestionJob {
    IngestionJob {
        id: Uuid::new_v4(),
        source: source.into(),
        include: vec!["*.md".into()],
        exclude: vec![],
        delete_missing: true,
        status: JobStatus::Queued,
        counts: JobCounts::default(),
        failures: vec![],
        error: None,
        pending: 0,
        listed: false,
        created_at,
        started_at: None,
        finished_at: None,
    }
}

/// What every job store must do: keep a job as created, per tenant; add
/// progress from many writers at once without losing any; keep at most
/// [`MAX_FAILURES_KEPT`] failures while counting all; move a status only
/// from the one it is in; list newest first, a page at a time.
/// `concurrent`: the writers add at once (a stand-in whose writes are not
/// atomic across threads, as moto's are not, adds them one at a time).
pub async fn check_job_store_rules(store: &dyn IngestionJobStore, concurrent: bool) {
    let (a, b) = (
        Tenant::new("team-a").unwrap(),
        Tenant::new("team-b").unwrap(),
    );
    let now = Utc::now();
    let job = new_job("s3://docs/handbook/", now);
    store.create_job(&a, &job).await.unwrap();
    assert_eq!(store.job(&a, job.id).await.unwrap().unwrap(), job);
    assert!(
        store.job(&b, job.id).await.unwrap().is_none(),
        "another tenant's job is unknown"
    );
    assert!(matches!(
        store
            .record_progress(&b, job.id, &JobProgress::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));

    let running = store
        .move_job(&a, job.id, JobStatus::Queued, JobStatus::Running, now, None)
        .await
        .unwrap();
    assert_eq!(running.status, JobStatus::Running);
    assert!(running.started_at.is_some());
    assert!(matches!(
        store
            .move_job(&a, job.id, JobStatus::Queued, JobStatus::Running, now, None)
            .await,
        Err(StoreError::Conflict(_))
    ));

    store
        .record_progress(
            &a,
            job.id,
            &JobProgress {
                counts: JobCounts {
                    scanned: 20,
                    unchanged: 5,
                    ..JobCounts::default()
                },
                pending: 15,
                listed: true,
                failures: vec![
                    JobFailure {
                        item: "earlier".into(),
                        reason: "kept".into(),
                    };
                    MAX_FAILURES_KEPT - 1
                ],
            },
        )
        .await
        .unwrap();
    // Fifteen workers finish at once, each failing its item.
    let progresses: Vec<JobProgress> = (0..15)
        .map(|i| JobProgress {
            counts: JobCounts {
                failed: 1,
                ..JobCounts::default()
            },
            pending: -1,
            listed: false,
            failures: vec![JobFailure {
                item: format!("item-{i}"),
                reason: "no parser reads it".into(),
            }],
        })
        .collect();
    let finishing = progresses
        .iter()
        .map(|progress| store.record_progress(&a, job.id, progress));
    if concurrent {
        for result in futures::future::join_all(finishing).await {
            result.unwrap();
        }
    } else {
        for write in finishing {
            write.await.unwrap();
        }
    }
    let after = store.job(&a, job.id).await.unwrap().unwrap();
    assert_eq!(after.pending, 0);
    assert!(after.listed);
    assert_eq!(after.counts.failed, 15);
    assert_eq!(after.counts.scanned, 20);
    // One more was kept, the rest only counted.
    assert_eq!(after.failures.len(), MAX_FAILURES_KEPT);

    // An item is counted once, however often its task reports.
    let one = JobProgress {
        counts: JobCounts {
            added: 1,
            ..JobCounts::default()
        },
        ..JobProgress::default()
    };
    let counted = store
        .record_item(&a, job.id, "s3://docs/a.md", &one)
        .await
        .unwrap();
    assert_eq!(counted.unwrap().counts.added, 1);
    assert!(
        store
            .record_item(&a, job.id, "s3://docs/a.md", &one)
            .await
            .unwrap()
            .is_none()
    );
    let other = store
        .record_item(&a, job.id, "s3://docs/b.md", &one)
        .await
        .unwrap();
    assert_eq!(other.unwrap().counts.added, 2);
    assert!(matches!(
        store.record_item(&b, job.id, "s3://docs/c.md", &one).await,
        Err(StoreError::NotFound { .. })
    ));

    let done = store
        .move_job(
            &a,
            job.id,
            JobStatus::Running,
            JobStatus::Failed,
            now,
            Some("the bucket is gone".into()),
        )
        .await
        .unwrap();
    assert_eq!(done.error.as_deref(), Some("the bucket is gone"));
    assert!(done.finished_at.is_some());

    // Newest first, a page at a time.
    let mut made = vec![job.id];
    for i in 1..=4 {
        let next = new_job("file:///srv/docs/", now + chrono::Duration::seconds(i));
        store.create_job(&a, &next).await.unwrap();
        made.push(next.id);
    }
    store
        .create_job(&b, &new_job("file:///srv/other/", now))
        .await
        .unwrap();
    made.reverse();
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.jobs(&a, 2, cursor).await.unwrap();
        listed.extend(page.items.iter().map(|j| j.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, made);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_keeps_the_rules() {
        check_job_store_rules(&MemoryJobStore::default(), true).await;
    }
}
