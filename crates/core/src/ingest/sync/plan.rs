//! A job's listing: the source's items compared with the documents an
//! earlier job made from it, into the tasks to hand out and what is
//! counted at once.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::run::{SYNC_SOURCE_KEY, SYNC_VERSION_KEY};
use super::{IngestionJob, JobProgress, SyncSources, SyncTask, matcher, relative_key};
use crate::backend::ListQuery;
use crate::domain::{Document, DocumentStatus};
use crate::error::RagError;
use crate::ingest::Ingestor;
use crate::tenant::Tenant;

/// What the listing decided for one item.
pub(super) struct Known {
    pub id: Uuid,
    pub version: Option<String>,
    pub status: DocumentStatus,
}

impl Ingestor {
    /// Lists the source and compares it with the documents earlier jobs
    /// made from it: the tasks to hand out, and what is counted at once.
    pub(super) async fn plan(
        &self,
        sources: &SyncSources,
        tenant: &Tenant,
        job: &IngestionJob,
    ) -> Result<(Vec<SyncTask>, JobProgress), RagError> {
        let source = sources.for_location(&job.source)?;
        let take = matcher(&job.include, &job.exclude)?;
        let items: Vec<_> = source
            .list(&job.source)
            .await?
            .into_iter()
            .filter(|item| take(relative_key(&job.source, &item.key)))
            .collect();
        let mut known = self.documents_from(tenant, &job.source).await?;
        let mut progress = JobProgress::default();
        progress.counts.scanned = items.len() as u64;
        let mut tasks = Vec::new();
        for item in items {
            let documents = known.remove(&item.key).unwrap_or_default();
            let current = !item.version.is_empty()
                && documents.iter().any(|d| {
                    d.status != DocumentStatus::Failed
                        && d.version.as_deref() == Some(item.version.as_str())
                });
            if current {
                progress.counts.unchanged += 1;
                continue;
            }
            tasks.push(SyncTask::Put {
                tenant: tenant.clone(),
                job_id: job.id,
                key: item.key,
                version: item.version,
                replaces: documents.iter().map(|d| d.id).collect(),
            });
        }
        if job.delete_missing {
            for (key, documents) in known {
                tasks.push(SyncTask::Remove {
                    tenant: tenant.clone(),
                    job_id: job.id,
                    key,
                    documents: documents.into_iter().map(|d| d.id).collect(),
                });
            }
        }
        Ok((tasks, progress))
    }

    /// The tenant's documents an earlier job made from `source`, by key.
    async fn documents_from(
        &self,
        tenant: &Tenant,
        source: &str,
    ) -> Result<BTreeMap<String, Vec<Known>>, RagError> {
        let mut found: BTreeMap<String, Vec<Known>> = BTreeMap::new();
        let mut cursor = None;
        loop {
            let page = self
                .stores()
                .metadata
                .list(
                    tenant,
                    &ListQuery {
                        status: None,
                        limit: crate::catalog::MAX_LIST_LIMIT,
                        cursor,
                    },
                )
                .await?;
            for document in page.items {
                if document.extra_metadata.get(SYNC_SOURCE_KEY)
                    != Some(&serde_json::Value::from(source))
                {
                    continue;
                }
                found
                    .entry(document.source.clone())
                    .or_default()
                    .push(known_of(&document));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(found),
            }
        }
    }
}

fn known_of(document: &Document) -> Known {
    Known {
        id: document.id,
        version: document
            .extra_metadata
            .get(SYNC_VERSION_KEY)
            .and_then(|v| v.as_str())
            .map(str::to_string),
        status: document.status,
    }
}
