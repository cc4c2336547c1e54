//! Ingestion jobs as items of the table: `T#<tenant>#JOB#<id>` / `JOB`,
//! the job's fields as native attributes (its counters a map of numbers).
//! Workers on many instances add to a job at once, each with one
//! `UpdateItem` whose arithmetic DynamoDB applies atomically; a status
//! moves only from the one it is in (a condition). `GSI1PK =
//! T#<tenant>#JOBS`, `GSI1SK = <created_at>#<id>` lists a tenant's jobs
//! newest first.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
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

impl DynamoDbStore {
    async fn update_job(
        &self,
        tenant: &Tenant,
        id: Uuid,
        progress: &JobProgress,
        with_failures: bool,
    ) -> Result<Result<IngestionJob, ()>, StoreError> {
        let mut sets: Vec<String> = COUNTERS
            .iter()
            .map(|c| format!("#counts.#{c} = #counts.#{c} + :{c}"))
            .collect();
        sets.push("#pending = #pending + :pending".into());
        let counts = &progress.counts;
        let values = [
            counts.scanned,
            counts.added,
            counts.updated,
            counts.deleted,
            counts.unchanged,
            counts.failed,
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(job_pk(tenant, id)))
            .key("SK", s("JOB"))
            .expression_attribute_names("#counts", "counts")
            .expression_attribute_names("#pending", "pending")
            .expression_attribute_values(":pending", n(progress.pending))
            .return_values(ReturnValue::AllNew);
        for (name, value) in COUNTERS.iter().zip(values) {
            request = request
                .expression_attribute_names(format!("#{name}"), *name)
                .expression_attribute_values(format!(":{name}"), n(value as i64));
        }
        if progress.listed {
            sets.push("#listed = :listed".into());
            request = request
                .expression_attribute_names("#listed", "listed")
                .expression_attribute_values(":listed", AttributeValue::Bool(true));
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
            request = request
                .expression_attribute_names("#failures", "failures")
                .expression_attribute_values(":failures", AttributeValue::L(failures))
                .expression_attribute_values(":max_failures", n(MAX_FAILURES_KEPT as i64));
        }
        let output = request
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(condition)
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
