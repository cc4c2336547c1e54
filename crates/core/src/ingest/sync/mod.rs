//! Ingestion jobs: a source (an S3 prefix, a directory under the allowed
//! roots, a sitemap) kept in step with a tenant's documents, as a knowledge
//! base's data source is. A job lists the source, compares each item with
//! the documents an earlier job made from it (by key and version: an S3
//! ETag, a file's SHA-256, a sitemap's `lastmod`), and hands one task per
//! item to the ingest queue: add it, index a changed one again as a new
//! version (the old one removed only once the new one is INDEXED), or
//! delete what disappeared. Workers run the tasks and add to the job's
//! counters in the store with one atomic write each; the one that brings
//! the outstanding tasks to zero completes the job. So a job of 10,000
//! objects is 10,000 short tasks on as many workers as the queue feeds,
//! never one long one (`run.rs`).
//!
//! Documents from a job carry `sync_source` (the job's source) and
//! `sync_version` in their metadata, which is how the next job finds them.

#[cfg(any(test, feature = "test-util"))]
pub mod memory;
mod plan;
mod run;
pub mod sitemap;

pub use run::{SYNC_SOURCE_KEY, SYNC_VERSION_KEY};

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Page;
use crate::error::{RagError, StoreError};
use crate::tenant::Tenant;

/// Failures kept on a job for its report; `counts.failed` has them all.
pub const MAX_FAILURES_KEPT: usize = 100;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What a job found and did, item by item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobCounts {
    /// Items the source listed that the filters took.
    pub scanned: u64,
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub failed: u64,
}

impl JobCounts {
    fn add(&mut self, other: &JobCounts) {
        self.scanned += other.scanned;
        self.added += other.added;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
    }
}

/// An item that could not be synced, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobFailure {
    pub item: String,
    pub reason: String,
}

/// An ingestion job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IngestionJob {
    pub id: Uuid,
    /// `s3://bucket/prefix/`, `file:///absolute/path` or a sitemap's URL.
    pub source: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Delete the documents of items that disappeared.
    pub delete_missing: bool,
    pub status: JobStatus,
    pub counts: JobCounts,
    /// The first 100 failures.
    pub failures: Vec<JobFailure>,
    /// Why the job itself failed (its source could not be listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tasks handed to workers and not yet finished.
    pub pending: u64,
    /// Whether the source has been listed and every task handed out.
    pub listed: bool,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl IngestionJob {
    /// Applies `progress` as a store does, in one step.
    pub fn apply(&mut self, progress: &JobProgress) {
        self.counts.add(&progress.counts);
        self.pending = self.pending.saturating_add_signed(progress.pending);
        self.listed |= progress.listed;
        let room = MAX_FAILURES_KEPT.saturating_sub(self.failures.len());
        self.failures
            .extend(progress.failures.iter().take(room).cloned());
    }

    /// Applies a status move as a store does.
    pub fn moved(&mut self, to: JobStatus, at: DateTime<Utc>, error: Option<String>) {
        self.status = to;
        match to {
            JobStatus::Running => self.started_at = Some(at),
            JobStatus::Completed | JobStatus::Failed => self.finished_at = Some(at),
            JobStatus::Queued => {}
        }
        if error.is_some() {
            self.error = error;
        }
    }
}

/// What one step of a job adds to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobProgress {
    pub counts: JobCounts,
    /// Tasks handed out (positive) or finished (negative).
    pub pending: i64,
    /// The listing is done and its tasks handed out.
    pub listed: bool,
    pub failures: Vec<JobFailure>,
}

/// Where jobs are kept, each call within one tenant.
#[async_trait]
pub trait IngestionJobStore: Send + Sync {
    async fn create_job(&self, tenant: &Tenant, job: &IngestionJob) -> Result<(), StoreError>;
    async fn job(&self, tenant: &Tenant, id: Uuid) -> Result<Option<IngestionJob>, StoreError>;
    /// Newest first; `cursor` is a previous page's `next_cursor`.
    async fn jobs(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<IngestionJob>, StoreError>;
    /// Adds `progress` in one atomic write (workers on many machines add
    /// at once) and returns the job as it then stands. NotFound for an
    /// unknown job.
    async fn record_progress(
        &self,
        tenant: &Tenant,
        id: Uuid,
        progress: &JobProgress,
    ) -> Result<IngestionJob, StoreError>;
    /// Adds what one item's task did, once: the item's mark and the
    /// progress go in one atomic write, and an item already marked (its
    /// task delivered again after it was counted) adds nothing and
    /// answers `None`. A job's marks go when it ends.
    async fn record_item(
        &self,
        tenant: &Tenant,
        id: Uuid,
        item: &str,
        progress: &JobProgress,
    ) -> Result<Option<IngestionJob>, StoreError>;
    /// Moves the job from `from` to `to`, stamping `at` (and `error`);
    /// Conflict when it is not in `from`.
    async fn move_job(
        &self,
        tenant: &Tenant,
        id: Uuid,
        from: JobStatus,
        to: JobStatus,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> Result<IngestionJob, StoreError>;
}

/// One item of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceItem {
    /// What its document's `source` is: `s3://bucket/key`,
    /// `file:///path`, or the page's URL.
    pub key: String,
    /// Changes when its content does (an ETag, a SHA-256, a `lastmod`);
    /// empty when the source cannot tell, and the content is compared.
    pub version: String,
}

/// An item's bytes.
#[derive(Debug, Clone)]
pub struct SourceObject {
    pub bytes: Bytes,
    pub content_type: Option<String>,
}

/// A kind of source: S3, local directories, sitemaps.
#[async_trait]
pub trait SyncSource: Send + Sync {
    /// Every item under `location` (the job's source as given).
    async fn list(&self, location: &str) -> Result<Vec<SourceItem>, RagError>;
    /// One item's bytes, by its key.
    async fn fetch(&self, key: &str) -> Result<SourceObject, RagError>;
}

/// What a deployment syncs from. A kind it lacks is refused with the
/// reason, naming what would enable it.
#[derive(Clone)]
pub struct SyncSources {
    pub jobs: Arc<dyn IngestionJobStore>,
    /// `s3://` sources, in the buckets the deployment lists.
    pub s3: Result<Arc<dyn SyncSource>, String>,
    /// `file://` sources, under the roots the deployment lists.
    pub files: Result<Arc<dyn SyncSource>, String>,
    /// Sitemaps, through the address-checking fetcher.
    pub web: Arc<dyn SyncSource>,
}

impl SyncSources {
    /// The source that reads `location`.
    pub fn for_location(&self, location: &str) -> Result<&Arc<dyn SyncSource>, RagError> {
        let refused = |why: &String| RagError::invalid(why.clone());
        if location.starts_with("s3://") {
            self.s3.as_ref().map_err(refused)
        } else if location.starts_with("file://") {
            self.files.as_ref().map_err(refused)
        } else if location.starts_with("https://") || location.starts_with("http://") {
            Ok(&self.web)
        } else {
            Err(RagError::invalid(format!(
                "source must be s3://bucket/prefix/, file:///absolute/path or a sitemap's http(s) URL, not {:?}",
                location.chars().take(200).collect::<String>()
            )))
        }
    }
}

/// A task of a job on the ingest queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum SyncTask {
    /// List the source and hand out the item tasks.
    List { tenant: Tenant, job_id: Uuid },
    /// Fetch one item and index it as a new document; once INDEXED, the
    /// documents it `replaces` (its older versions) are deleted.
    Put {
        tenant: Tenant,
        job_id: Uuid,
        key: String,
        version: String,
        replaces: Vec<Uuid>,
    },
    /// Delete the documents of an item that disappeared.
    Remove {
        tenant: Tenant,
        job_id: Uuid,
        key: String,
        documents: Vec<Uuid>,
    },
}

impl SyncTask {
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a task serialises as JSON")
    }

    pub fn from_body(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }

    pub fn tenant(&self) -> &Tenant {
        match self {
            SyncTask::List { tenant, .. }
            | SyncTask::Put { tenant, .. }
            | SyncTask::Remove { tenant, .. } => tenant,
        }
    }

    pub fn job_id(&self) -> Uuid {
        match self {
            SyncTask::List { job_id, .. }
            | SyncTask::Put { job_id, .. }
            | SyncTask::Remove { job_id, .. } => *job_id,
        }
    }
}

/// A job as a caller starts it.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub source: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub delete_missing: bool,
}

/// Patterns a job may carry, and their length.
const MAX_PATTERNS: usize = 50;
const MAX_PATTERN_CHARS: usize = 512;
const MAX_SOURCE_CHARS: usize = 2048;

/// The job's include and exclude patterns, checked.
pub(crate) fn matcher(
    include: &[String],
    exclude: &[String],
) -> Result<impl Fn(&str) -> bool + use<>, RagError> {
    let set = |patterns: &[String], what: &str| {
        if patterns.len() > MAX_PATTERNS {
            return Err(RagError::invalid(format!(
                "{what} has more than {MAX_PATTERNS} patterns"
            )));
        }
        let mut builder = globset::GlobSetBuilder::new();
        for pattern in patterns {
            if pattern.is_empty() || pattern.chars().count() > MAX_PATTERN_CHARS {
                return Err(RagError::invalid(format!(
                    "{what} patterns must be 1 to {MAX_PATTERN_CHARS} characters"
                )));
            }
            let glob = globset::Glob::new(pattern)
                .map_err(|e| RagError::invalid(format!("{what} {pattern:?}: {e}")))?;
            builder.add(glob);
        }
        builder
            .build()
            .map_err(|e| RagError::invalid(format!("{what}: {e}")))
    };
    let include = set(include, "include")?;
    let exclude = set(exclude, "exclude")?;
    let everything = include.is_empty();
    Ok(move |relative: &str| {
        (everything || include.is_match(relative)) && !exclude.is_match(relative)
    })
}

fn check_request(request: &SyncRequest) -> Result<(), RagError> {
    if request.source.trim().is_empty() || request.source.chars().count() > MAX_SOURCE_CHARS {
        return Err(RagError::invalid(format!(
            "source must be 1 to {MAX_SOURCE_CHARS} characters"
        )));
    }
    matcher(&request.include, &request.exclude).map(|_| ())
}

/// An item's key relative to the job's source, which the patterns match.
fn relative_key<'a>(location: &str, key: &'a str) -> &'a str {
    let trimmed = location.trim_end_matches('/');
    key.strip_prefix(trimmed)
        .map(|rest| rest.trim_start_matches('/'))
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_keys_relative_to_the_source() {
        let take = matcher(&["**/*.md".into(), "*.md".into()], &["drafts/**".into()]).unwrap();
        let key = |k: &str| relative_key("s3://docs/handbook/", k).to_string();
        assert!(take(&key("s3://docs/handbook/intro.md")));
        assert!(take(&key("s3://docs/handbook/ops/keys.md")));
        assert!(!take(&key("s3://docs/handbook/drafts/wip.md")));
        assert!(!take(&key("s3://docs/handbook/logo.png")));
        let all = matcher(&[], &[]).unwrap();
        assert!(all("anything"));
        assert!(matcher(&["[".into()], &[]).is_err());
    }

    #[test]
    fn a_task_round_trips_through_its_body_and_is_no_ingest_job() {
        let task = SyncTask::Put {
            tenant: Tenant::new("team-a").unwrap(),
            job_id: Uuid::nil(),
            key: "s3://docs/a.md".into(),
            version: "\"etag\"".into(),
            replaces: vec![Uuid::nil()],
        };
        assert_eq!(SyncTask::from_body(&task.body()).unwrap(), task);
        assert!(crate::ingest::queue::IngestJob::from_body(&task.body()).is_err());
    }

    #[test]
    fn progress_adds_up_and_keeps_the_first_failures() {
        let mut job = IngestionJob {
            id: Uuid::nil(),
            source: "s3://b/p/".into(),
            include: vec![],
            exclude: vec![],
            delete_missing: true,
            status: JobStatus::Running,
            counts: JobCounts::default(),
            failures: vec![],
            error: None,
            pending: 0,
            listed: false,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
        };
        job.apply(&JobProgress {
            counts: JobCounts {
                scanned: 3,
                unchanged: 1,
                ..JobCounts::default()
            },
            pending: 2,
            listed: true,
            failures: vec![],
        });
        let failure = JobFailure {
            item: "x".into(),
            reason: "y".into(),
        };
        for _ in 0..MAX_FAILURES_KEPT + 5 {
            job.apply(&JobProgress {
                counts: JobCounts {
                    failed: 1,
                    ..JobCounts::default()
                },
                failures: vec![failure.clone()],
                ..JobProgress::default()
            });
        }
        job.apply(&JobProgress {
            pending: -2,
            ..JobProgress::default()
        });
        assert_eq!(job.counts.scanned, 3);
        assert_eq!(job.counts.failed, MAX_FAILURES_KEPT as u64 + 5);
        assert_eq!(job.failures.len(), MAX_FAILURES_KEPT);
        assert_eq!(job.pending, 0);
        assert!(job.listed);
    }
}
