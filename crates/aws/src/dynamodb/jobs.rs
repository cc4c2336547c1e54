//! Ingestion jobs as items of the table: `T#<tenant>#JOB#<id>` / `JOB`,
//! the job's fields as native attributes (its counters a map of numbers).
//! Workers on many instances add to a job at once, each with one
//! `UpdateItem` whose arithmetic DynamoDB applies atomically; a status
//! moves only from the one it is in (a condition). `GSI1PK =
//! T#<tenant>#JOBS`, `GSI1SK = <created_at>#<id>` lists a tenant's jobs
//! newest first.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use rag_core::ingest::sync::{
    IngestionJob, IngestionJobStore, JobProgress, JobStatus, MAX_FAILURES_KEPT,
};
use rag_core::{Page, StoreError, Tenant};
use uuid::Uuid;

use super::attr::{Item, item_to_object, object_to_item, s};
use super::{DynamoDbStore, GSI1, is_condition_failure, timestamp};
use crate::sdk_error::classify;

fn job_pk(tenant: &Tenant, id: Uuid) -> String {
    format!("T#{tenant}#JOB#{id}")
}

fn jobs_pk(tenant: &Tenant) -> String {
    format!("T#{tenant}#JOBS")
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

const COUNTERS: [&str; 6] = [
    "scanned",
    "added",
    "updated",
    "deleted",
    "unchanged",
    "failed",
];

fn job_of(item: &Item) -> Result<IngestionJob, StoreError> {
    let mut value = item_to_object(item);
    if let Some(map) = value.as_object_mut() {
        for key in ["PK", "SK", "GSI1PK", "GSI1SK"] {
            map.remove(key);
        }
        // A task counted twice (delivered again after it finished) can
        // take the outstanding count below zero; none are outstanding.
        if map
            .get("pending")
            .and_then(|p| p.as_i64())
            .is_some_and(|p| p < 0)
        {
            map.insert("pending".into(), 0.into());
        }
        // Failures are kept as JSON strings, a list DynamoDB appends to.
        if let Some(serde_json::Value::Array(failures)) = map.get_mut("failures") {
            for failure in failures.iter_mut() {
                if let serde_json::Value::String(text) = failure {
                    *failure = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
                }
            }
        }
    }
    serde_json::from_value(value)
        .map_err(|e| StoreError::permanent(format!("a damaged ingestion job item: {e}")))
}

/// One write's worth of progress: its update expression, condition, names
/// and values.
struct ProgressUpdate {
    update: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

fn progress_update(progress: &JobProgress, with_failures: bool) -> ProgressUpdate {
    let counts = &progress.counts;
    let added = [
        counts.scanned,
        counts.added,
        counts.updated,
        counts.deleted,
        counts.unchanged,
        counts.failed,
    ];
    let mut sets: Vec<String> = COUNTERS
        .iter()
        .map(|c| format!("#counts.#{c} = #counts.#{c} + :{c}"))
        .collect();
    sets.push("#pending = #pending + :pending".into());
    let mut names: HashMap<String, String> = [
        ("#counts".to_string(), "counts".to_string()),
        ("#pending".to_string(), "pending".to_string()),
    ]
    .into();
    let mut values: HashMap<String, AttributeValue> =
        [(":pending".to_string(), n(progress.pending))].into();
    for (name, value) in COUNTERS.iter().zip(added) {
        names.insert(format!("#{name}"), name.to_string());
        values.insert(format!(":{name}"), n(value as i64));
    }
    if progress.listed {
        sets.push("#listed = :listed".into());
        names.insert("#listed".into(), "listed".into());
        values.insert(":listed".into(), AttributeValue::Bool(true));
    }
    let mut condition = "attribute_exists(PK)".to_string();
    if with_failures && !progress.failures.is_empty() {
        let failures = progress
            .failures
            .iter()
            .map(|f| s(serde_json::to_string(f).expect("a failure serialises")))
            .collect();
        sets.push("#failures = list_append(#failures, :failures)".into());
        condition.push_str(" AND size(#failures) < :max_failures");
        names.insert("#failures".into(), "failures".into());
        values.insert(":failures".into(), AttributeValue::L(failures));
        values.insert(":max_failures".into(), n(MAX_FAILURES_KEPT as i64));
    }
    ProgressUpdate {
        update: format!("SET {}", sets.join(", ")),
        condition,
        names,
        values,
    }
}

/// An item's mark: the key is hashed, since keys may be longer than a
/// sort key may.
fn item_sk(item: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(item.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("ITEM#{hex}")
}

/// How long an item's mark is kept: well past any job's run.
const MARK_DAYS: i64 = 7;

impl DynamoDbStore {
    async fn update_job(
        &self,
        tenant: &Tenant,
        id: Uuid,
        progress: &JobProgress,
        with_failures: bool,
    ) -> Result<Result<IngestionJob, ()>, StoreError> {
        let update = progress_update(progress, with_failures);
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(job_pk(tenant, id)))
            .key("SK", s("JOB"))
            .update_expression(update.update)
            .condition_expression(update.condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match output {
            Ok(output) => Ok(Ok(job_of(output.attributes().unwrap_or(&Item::new()))?)),
            Err(e) => {
                let classified = classify(e);
                if is_condition_failure(&classified) {
                    Ok(Err(()))
                } else {
                    Err(self.err(classified))
                }
            }
        }
    }

    /// Appends failures while fewer than the most kept are there; past
    /// that they are only counted.
    async fn keep_failures(
        &self,
        tenant: &Tenant,
        id: Uuid,
        progress: &JobProgress,
    ) -> Result<(), StoreError> {
        if progress.failures.is_empty() {
            return Ok(());
        }
        let failures = progress
            .failures
            .iter()
            .map(|f| s(serde_json::to_string(f).expect("a failure serialises")))
            .collect();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(job_pk(tenant, id)))
            .key("SK", s("JOB"))
            .update_expression("SET #failures = list_append(#failures, :failures)")
            .condition_expression("attribute_exists(PK) AND size(#failures) < :max")
            .expression_attribute_names("#failures", "failures")
            .expression_attribute_values(":failures", AttributeValue::L(failures))
            .expression_attribute_values(":max", n(MAX_FAILURES_KEPT as i64))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let classified = classify(e);
                if is_condition_failure(&classified) {
                    Ok(())
                } else {
                    Err(self.err(classified))
                }
            }
        }
    }
}

#[async_trait]
impl IngestionJobStore for DynamoDbStore {
    async fn create_job(&self, tenant: &Tenant, job: &IngestionJob) -> Result<(), StoreError> {
        let value = serde_json::to_value(job).map_err(StoreError::permanent)?;
        let mut item = object_to_item(&value);
        item.insert("failures".into(), AttributeValue::L(Vec::new()));
        item.insert("PK".into(), s(job_pk(tenant, job.id)));
        item.insert("SK".into(), s("JOB"));
        item.insert("GSI1PK".into(), s(jobs_pk(tenant)));
        item.insert(
            "GSI1SK".into(),
            s(format!("{}#{}", timestamp(&job.created_at), job.id)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await
            .map_err(|e| self.err(classify(e)))?;
        Ok(())
    }

    async fn job(&self, tenant: &Tenant, id: Uuid) -> Result<Option<IngestionJob>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(job_pk(tenant, id)))
            .key("SK", s("JOB"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(classify(e)))?;
        output.item().map(job_of).transpose()
    }

    async fn jobs(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<IngestionJob>, StoreError> {
        let mut jobs = Vec::new();
        let mut start_key = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .scan_index_forward(false)
                .limit((limit + 1 - jobs.len()) as i32)
                .set_exclusive_start_key(start_key.take())
                .expression_attribute_values(":pk", s(jobs_pk(tenant)));
            request = match &cursor {
                Some(before) => request
                    .key_condition_expression("GSI1PK = :pk AND GSI1SK < :before")
                    .expression_attribute_values(":before", s(before)),
                None => request.key_condition_expression("GSI1PK = :pk"),
            };
            let output = request.send().await.map_err(|e| self.err(classify(e)))?;
            for item in output.items() {
                jobs.push(job_of(item)?);
            }
            match output.last_evaluated_key() {
                Some(key) if jobs.len() <= limit => start_key = Some(key.clone()),
                _ => break,
            }
        }
        let next_cursor = if jobs.len() > limit {
            jobs.truncate(limit);
            jobs.last()
                .map(|j| format!("{}#{}", timestamp(&j.created_at), j.id))
        } else {
            None
        };
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
        if let Ok(job) = self.update_job(tenant, id, progress, true).await? {
            return Ok(job);
        }
        // The failures list is full (or the job is gone): count without
        // keeping more of them.
        match self.update_job(tenant, id, progress, false).await? {
            Ok(job) => Ok(job),
            Err(()) => Err(StoreError::NotFound {
                what: format!("ingestion job {id}"),
            }),
        }
    }

    /// The mark and the counters in one transaction; a mark that exists
    /// cancels it.
    async fn record_item(
        &self,
        tenant: &Tenant,
        id: Uuid,
        item: &str,
        progress: &JobProgress,
    ) -> Result<Option<IngestionJob>, StoreError> {
        let expires = (Utc::now() + chrono::Duration::days(MARK_DAYS)).timestamp();
        let mark = Put::builder()
            .table_name(&self.table)
            .item("PK", s(job_pk(tenant, id)))
            .item("SK", s(item_sk(item)))
            .item("ttl", n(expires))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(StoreError::permanent)?;
        let update = progress_update(progress, false);
        let counters = Update::builder()
            .table_name(&self.table)
            .key("PK", s(job_pk(tenant, id)))
            .key("SK", s("JOB"))
            .update_expression(update.update)
            .condition_expression(update.condition)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .build()
            .map_err(StoreError::permanent)?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(mark).build())
            .transact_items(TransactWriteItem::builder().update(counters).build())
            .send()
            .await;
        if let Err(e) = written {
            let classified = classify(e);
            if !is_condition_failure(&classified) {
                return Err(self.err(classified));
            }
            // Either the job is unknown, or the item was counted before.
            return match self.job(tenant, id).await? {
                Some(_) => Ok(None),
                None => Err(StoreError::NotFound {
                    what: format!("ingestion job {id}"),
                }),
            };
        }
        self.keep_failures(tenant, id, progress).await?;
        self.job(tenant, id)
            .await?
            .map(Some)
            .ok_or_else(|| StoreError::NotFound {
                what: format!("ingestion job {id}"),
            })
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
        let stamp = match to {
            JobStatus::Running => "started_at",
            _ => "finished_at",
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(job_pk(tenant, id)))
            .key("SK", s("JOB"))
            .condition_expression("attribute_exists(PK) AND #status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#stamp", stamp)
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":at", s(at.to_rfc3339()))
            .return_values(ReturnValue::AllNew);
        let mut update = "SET #status = :to, #stamp = :at".to_string();
        if let Some(error) = error {
            update.push_str(", #error = :error");
            request = request
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":error", s(error));
        }
        match request.update_expression(update).send().await {
            Ok(output) => job_of(output.attributes().unwrap_or(&Item::new())),
            Err(e) => {
                let classified = classify(e);
                if !is_condition_failure(&classified) {
                    return Err(self.err(classified));
                }
                match self.job(tenant, id).await? {
                    Some(job) => Err(StoreError::Conflict(format!(
                        "the ingestion job is {}, not {}",
                        job.status.as_str(),
                        from.as_str()
                    ))),
                    None => Err(StoreError::NotFound {
                        what: format!("ingestion job {id}"),
                    }),
                }
            }
        }
    }
}
