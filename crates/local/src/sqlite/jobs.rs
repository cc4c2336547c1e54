//! Ingestion jobs in the same SQLite file: one row a job, its record as
//! JSON. Progress is read, added to and written back in one transaction,
//! which SQLite serialises, so workers adding at once lose nothing.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rag_core::ingest::sync::{IngestionJob, IngestionJobStore, JobProgress, JobStatus};
use rag_core::{Page, StoreError, Tenant};
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::{SqliteStore, db_error};

fn created(job: &IngestionJob) -> String {
    job.created_at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn decode(body: &str) -> Result<IngestionJob, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::permanent(format!("a damaged ingestion job record: {e}")))
}

fn encode(job: &IngestionJob) -> String {
    serde_json::to_string(job).expect("a job serialises as JSON")
}

fn not_found(id: Uuid) -> StoreError {
    StoreError::NotFound {
        what: format!("ingestion job {id}"),
    }
}

impl SqliteStore {
    /// Reads a job, changes it with `change`, and writes it back, all in
    /// one transaction.
    async fn change_job(
        &self,
        tenant: &Tenant,
        id: Uuid,
        change: impl FnOnce(&mut IngestionJob) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<IngestionJob, StoreError> {
        self.change_job_marking(tenant, id, None, change)
            .await
            .map(|changed| changed.expect("no mark to find taken"))
    }

    /// As `change_job`, marking `item` counted in the same transaction;
    /// `None`, and no change, when it already was.
    async fn change_job_marking(
        &self,
        tenant: &Tenant,
        id: Uuid,
        item: Option<String>,
        change: impl FnOnce(&mut IngestionJob) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<Option<IngestionJob>, StoreError> {
        let tenant = tenant.as_str().to_string();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            let body: Option<String> = tx
                .query_row(
                    "SELECT body FROM ingestion_jobs WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id.to_string()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db_error)?;
            let mut job = decode(&body.ok_or_else(|| not_found(id))?)?;
            if let Some(item) = item {
                let marked = tx
                    .execute(
                        "INSERT OR IGNORE INTO ingestion_job_items (tenant, job_id, item) VALUES (?1, ?2, ?3)",
                        params![tenant, id.to_string(), item],
                    )
                    .map_err(db_error)?;
                if marked == 0 {
                    return Ok(None);
                }
            }
            change(&mut job)?;
            tx.execute(
                "UPDATE ingestion_jobs SET body = ?3 WHERE tenant = ?1 AND id = ?2",
                params![tenant, id.to_string(), encode(&job)],
            )
            .map_err(db_error)?;
            // An ended job's marks are of no more use: a task delivered
            // after it ended finds the job ended.
            if matches!(job.status, JobStatus::Completed | JobStatus::Failed) {
                tx.execute(
                    "DELETE FROM ingestion_job_items WHERE tenant = ?1 AND job_id = ?2",
                    params![tenant, id.to_string()],
                )
                .map_err(db_error)?;
            }
            tx.commit().map_err(db_error)?;
            Ok(Some(job))
        })
        .await
    }
}

#[async_trait]
impl IngestionJobStore for SqliteStore {
    async fn create_job(&self, tenant: &Tenant, job: &IngestionJob) -> Result<(), StoreError> {
        let (tenant, id, at, body) = (
            tenant.as_str().to_string(),
            job.id.to_string(),
            created(job),
            encode(job),
        );
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO ingestion_jobs (tenant, id, created_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![tenant, id, at, body],
            )
            .map_err(db_error)
        })
        .await?;
        Ok(())
    }

    async fn job(&self, tenant: &Tenant, id: Uuid) -> Result<Option<IngestionJob>, StoreError> {
        let tenant = tenant.as_str().to_string();
        let body: Option<String> = self
            .with(move |conn| {
                conn.query_row(
                    "SELECT body FROM ingestion_jobs WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id.to_string()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db_error)
            })
            .await?;
        body.as_deref().map(decode).transpose()
    }

    async fn jobs(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<IngestionJob>, StoreError> {
        // The cursor is the last job's `<created_at>#<id>`.
        let (before_at, before_id) = match &cursor {
            Some(cursor) => {
                let (at, id) = cursor
                    .split_once('#')
                    .filter(|(at, id)| {
                        DateTime::parse_from_rfc3339(at).is_ok() && Uuid::try_parse(id).is_ok()
                    })
                    .ok_or_else(|| StoreError::Invalid("invalid cursor".to_string()))?;
                (Some(at.to_string()), Some(id.to_string()))
            }
            None => (None, None),
        };
        let tenant = tenant.as_str().to_string();
        let bodies: Vec<String> = self
            .with(move |conn| {
                let mut stmt = conn
                    .prepare(
                        "SELECT body FROM ingestion_jobs WHERE tenant = ?1
                           AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND id < ?3))
                         ORDER BY created_at DESC, id DESC LIMIT ?4",
                    )
                    .map_err(db_error)?;
                let rows = stmt
                    .query_map(
                        params![tenant, before_at, before_id, limit as i64 + 1],
                        |row| row.get(0),
                    )
                    .map_err(db_error)?;
                rows.collect::<Result<_, _>>().map_err(db_error)
            })
            .await?;
        let mut items = bodies
            .iter()
            .map(|b| decode(b))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|j| format!("{}#{}", created(j), j.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn record_progress(
        &self,
        tenant: &Tenant,
        id: Uuid,
        progress: &JobProgress,
    ) -> Result<IngestionJob, StoreError> {
        let progress = progress.clone();
        self.change_job(tenant, id, move |job| {
            job.apply(&progress);
            Ok(())
        })
        .await
    }

    async fn record_item(
        &self,
        tenant: &Tenant,
        id: Uuid,
        item: &str,
        progress: &JobProgress,
    ) -> Result<Option<IngestionJob>, StoreError> {
        let progress = progress.clone();
        self.change_job_marking(tenant, id, Some(item.to_string()), move |job| {
            job.apply(&progress);
            Ok(())
        })
        .await
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
        self.change_job(tenant, id, move |job| {
            if job.status != from {
                return Err(StoreError::Conflict(format!(
                    "the ingestion job is {}, not {}",
                    job.status.as_str(),
                    from.as_str()
                )));
            }
            job.moved(to, at, error);
            Ok(())
        })
        .await
    }
}
