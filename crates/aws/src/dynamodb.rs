//! Document metadata and conversations in one DynamoDB table.
//!
//! Every key starts with the tenant (`T#<tenant>#`), so a call for one
//! tenant can only ever name that tenant's items. Items (`PK` / `SK`):
//! - `T#<tenant>#DOC#<id>` / `METADATA`: the document, with
//!   `GSI1PK = T#<tenant>#STATUS#<status>` and `GSI1SK = <created_at>#<id>`
//!   so GSI1 lists a tenant's documents by status, newest first (the id
//!   suffix makes equal timestamps sort and page deterministically).
//!   While a worker indexes it, `lease_owner` and `lease_expires_ms` (Unix
//!   milliseconds, a number so expiry compares in a condition) name the
//!   worker and until when it holds the document.
//! - `T#<tenant>#HASH#<sha256>` / `DOC#<id>`: finds a tenant's documents by
//!   content for duplicate detection without a scan.
//! - `T#<tenant>#STATS` / `DOCUMENTS`: the tenant's document count, kept in
//!   the same transactions that insert and delete documents.
//! - `TENANTS` / `T#<tenant>`: one item per tenant that ever stored a
//!   document, for work that spans tenants (resuming ingestion).
//! - `T#<tenant>#CONV#<id>` / `MESSAGE#<timestamp>#<seq>`: one turn.

mod attr;
mod jobs;
mod keys;
mod rate;
mod usage;

pub use rate::DynamoDbRateLimiter;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, Select, TransactWriteItem, Update,
};
use chrono::{SecondsFormat, Utc};
use rag_core::{
    ConversationStore, Document, DocumentStatus, Lease, ListQuery, MetadataStore, Page,
    StatusUpdate, StoreError, StoredMessage, Tenant,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sdk_error::{Classified, classify};
use attr::{Item, item_to_object, object_to_item, s, to_attr};

pub const GSI1: &str = "GSI1";
/// Attributes of a document item that are keys or the worker's lease, not
/// fields of the document.
const KEY_ATTRIBUTES: &[&str] = &[
    "PK",
    "SK",
    "GSI1PK",
    "GSI1SK",
    "lease_owner",
    "lease_expires_ms",
];
/// BatchWriteItem takes at most 25 items.
const WRITE_BATCH: usize = 25;

pub struct DynamoDbStore {
    client: Client,
    table: String,
}

fn doc_pk(tenant: &Tenant, id: Uuid) -> String {
    format!("T#{tenant}#DOC#{id}")
}

fn hash_pk(tenant: &Tenant, content_hash: &str) -> String {
    format!("T#{tenant}#HASH#{content_hash}")
}

fn status_pk(tenant: &Tenant, status: DocumentStatus) -> String {
    format!("T#{tenant}#STATUS#{}", status.as_str())
}

fn stats_pk(tenant: &Tenant) -> String {
    format!("T#{tenant}#STATS")
}

fn conversation_pk(tenant: &Tenant, id: Uuid) -> String {
    format!("T#{tenant}#CONV#{id}")
}

const TENANTS_PK: &str = "TENANTS";

fn gsi1sk(document: &Document) -> String {
    format!("{}#{}", timestamp(&document.created_at), document.id)
}

/// Fixed-width UTC timestamps sort as strings in time order.
fn timestamp(t: &chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn is_condition_failure(c: &Classified) -> bool {
    matches!(
        c.code.as_deref(),
        Some("ConditionalCheckFailedException" | "TransactionCanceledException")
    ) && c.message.contains("ConditionalCheckFailed")
        || c.code.as_deref() == Some("ConditionalCheckFailedException")
}

impl DynamoDbStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbStore {
            client,
            table: table.into(),
        }
    }

    /// Creates the table with GSI1 (on demand, keys as above) when it does
    /// not exist, for local stacks and tests; deployments get it from
    /// template.yaml, which declares the same schema.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
            Projection, ProjectionType, ScalarAttributeType,
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(StoreError::permanent)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(StoreError::permanent)
        };
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key("GSI1PK", KeyType::Hash)?)
            .key_schema(key("GSI1SK", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(StoreError::permanent)?;
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("PK")?)
            .attribute_definitions(attribute("SK")?)
            .attribute_definitions(attribute("GSI1PK")?)
            .attribute_definitions(attribute("GSI1SK")?)
            .key_schema(key("PK", KeyType::Hash)?)
            .key_schema(key("SK", KeyType::Range)?)
            .global_secondary_indexes(gsi)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let c = classify(e);
                if c.code.as_deref() == Some("ResourceInUseException") {
                    Ok(())
                } else {
                    Err(self.err(c))
                }
            }
        }
    }

    fn err(&self, c: Classified) -> StoreError {
        c.into_store_error(|| format!("table {}", self.table))
    }

    fn document_item(&self, tenant: &Tenant, document: &Document) -> Result<Item, StoreError> {
        let mut value = serde_json::to_value(document).map_err(StoreError::permanent)?;
        if let Value::Object(map) = &mut value {
            // Content is never stored in metadata: it lives in the document store.
            map.remove("content");
        }
        let mut item = object_to_item(&value);
        item.insert("PK".into(), s(doc_pk(tenant, document.id)));
        item.insert("SK".into(), s("METADATA"));
        item.insert("GSI1PK".into(), s(status_pk(tenant, document.status)));
        item.insert("GSI1SK".into(), s(gsi1sk(document)));
        Ok(item)
    }

    fn document_from_item(item: &Item) -> Result<Document, StoreError> {
        let mut value = item_to_object(item);
        if let Value::Object(map) = &mut value {
            for key in KEY_ATTRIBUTES {
                map.remove(*key);
            }
        }
        serde_json::from_value(value)
            .map_err(|e| StoreError::permanent(format!("malformed document item: {e}")))
    }

    /// Sends a conditional `UpdateItem` that returns the new item, and
    /// says why when its condition failed: the document is gone, or in a
    /// state the update may not move it from.
    async fn conditional_update(
        &self,
        tenant: &Tenant,
        id: Uuid,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        refusal: &str,
    ) -> Result<Document, StoreError> {
        match request.send().await {
            Ok(output) => match output.attributes() {
                Some(item) => Self::document_from_item(item),
                None => Err(StoreError::permanent("UpdateItem returned no attributes")),
            },
            Err(e) => {
                let c = classify(e);
                if !is_condition_failure(&c) {
                    return Err(self.err(c));
                }
                match self.get(tenant, id).await? {
                    None => Err(StoreError::NotFound {
                        what: format!("document {id}"),
                    }),
                    Some(doc) => Err(StoreError::Conflict(format!(
                        "document {id} is {}, {refusal}",
                        doc.status.as_str()
                    ))),
                }
            }
        }
    }

    fn counter_update(&self, tenant: &Tenant, delta: i64) -> Result<TransactWriteItem, StoreError> {
        Ok(TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .key("PK", s(stats_pk(tenant)))
                    .key("SK", s("DOCUMENTS"))
                    .update_expression("ADD document_count :delta")
                    .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
                    .build()
                    .map_err(StoreError::permanent)?,
            )
            .build())
    }

    /// Up to `limit` documents of one status partition of GSI1, newest
    /// first, strictly older than `before` when given. A Query page stops at
    /// 1 MB, so pages are followed until `limit` is reached or the
    /// partition ends.
    async fn query_status(
        &self,
        tenant: &Tenant,
        status: DocumentStatus,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, StoreError> {
        let mut documents = Vec::new();
        let mut start_key = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .scan_index_forward(false)
                .limit((limit - documents.len()) as i32)
                .set_exclusive_start_key(start_key.take())
                .expression_attribute_values(":pk", s(status_pk(tenant, status)));
            request = match before {
                Some(cursor) => request
                    .key_condition_expression("GSI1PK = :pk AND GSI1SK < :before")
                    .expression_attribute_values(":before", s(cursor)),
                None => request.key_condition_expression("GSI1PK = :pk"),
            };
            let output = request.send().await.map_err(|e| self.err(classify(e)))?;
            for item in output.items() {
                documents.push(Self::document_from_item(item)?);
            }
            match output.last_evaluated_key() {
                Some(key) if documents.len() < limit => start_key = Some(key.clone()),
                _ => return Ok(documents),
            }
        }
    }
}

#[async_trait]
impl MetadataStore for DynamoDbStore {
    async fn insert(&self, tenant: &Tenant, document: &Document) -> Result<(), StoreError> {
        let put_doc = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.document_item(tenant, document)?))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(StoreError::permanent)?;
        let mut hash_item = Item::new();
        hash_item.insert("PK".into(), s(hash_pk(tenant, &document.content_hash)));
        hash_item.insert("SK".into(), s(format!("DOC#{}", document.id)));
        hash_item.insert("document_id".into(), s(document.id.to_string()));
        let put_hash = Put::builder()
            .table_name(&self.table)
            .set_item(Some(hash_item))
            .build()
            .map_err(StoreError::permanent)?;
        let mut tenant_item = Item::new();
        tenant_item.insert("PK".into(), s(TENANTS_PK));
        tenant_item.insert("SK".into(), s(format!("T#{tenant}")));
        tenant_item.insert("tenant".into(), s(tenant.as_str()));
        let put_tenant = Put::builder()
            .table_name(&self.table)
            .set_item(Some(tenant_item))
            .build()
            .map_err(StoreError::permanent)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_doc).build())
            .transact_items(TransactWriteItem::builder().put(put_hash).build())
            .transact_items(TransactWriteItem::builder().put(put_tenant).build())
            .transact_items(self.counter_update(tenant, 1)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let c = classify(e);
                if is_condition_failure(&c) {
                    Err(StoreError::Conflict(format!(
                        "document {} already exists",
                        document.id
                    )))
                } else {
                    Err(self.err(c))
                }
            }
        }
    }

    async fn get(&self, tenant: &Tenant, id: Uuid) -> Result<Option<Document>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(doc_pk(tenant, id)))
            .key("SK", s("METADATA"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(classify(e)))?;
        output.item().map(Self::document_from_item).transpose()
    }

    async fn lease(
        &self,
        tenant: &Tenant,
        id: Uuid,
        lease: &Lease,
    ) -> Result<Document, StoreError> {
        let processing = DocumentStatus::Processing;
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(doc_pk(tenant, id)))
            .key("SK", s("METADATA"))
            .condition_expression(
                "attribute_exists(PK) AND (#status = :pending OR (#status = :processing \
                 AND (attribute_not_exists(lease_owner) OR lease_owner = :owner \
                 OR lease_expires_ms <= :now_ms)))",
            )
            .update_expression(
                "SET #status = :processing, GSI1PK = :gsi1pk, updated_at = :now, \
                 lease_owner = :owner, lease_expires_ms = :expires_ms",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(DocumentStatus::Pending.as_str()))
            .expression_attribute_values(":processing", s(processing.as_str()))
            .expression_attribute_values(":gsi1pk", s(status_pk(tenant, processing)))
            .expression_attribute_values(":now", s(timestamp(&Utc::now())))
            .expression_attribute_values(":owner", s(&lease.owner))
            .expression_attribute_values(
                ":now_ms",
                AttributeValue::N(Utc::now().timestamp_millis().to_string()),
            )
            .expression_attribute_values(
                ":expires_ms",
                AttributeValue::N(lease.expires_at.timestamp_millis().to_string()),
            )
            .return_values(ReturnValue::AllNew);
        self.conditional_update(tenant, id, request, "not free to lease")
            .await
    }

    async fn release(
        &self,
        tenant: &Tenant,
        id: Uuid,
        owner: &str,
        to: DocumentStatus,
        update: StatusUpdate,
    ) -> Result<Document, StoreError> {
        let mut sets = vec![
            "#status = :to",
            "GSI1PK = :gsi1pk",
            "updated_at = :now",
            "#error = :error",
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(doc_pk(tenant, id)))
            .key("SK", s("METADATA"))
            .condition_expression("#status = :processing AND lease_owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":processing", s(DocumentStatus::Processing.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":gsi1pk", s(status_pk(tenant, to)))
            .expression_attribute_values(":now", s(timestamp(&Utc::now())))
            .expression_attribute_values(":error", to_attr(&json!(update.error)))
            .return_values(ReturnValue::AllNew);
        if let Some(chunks) = update.chunk_count {
            sets.push("chunk_count = :chunks");
            request = request
                .expression_attribute_values(":chunks", AttributeValue::N(chunks.to_string()));
        }
        if let Some(tokens) = update.token_count {
            sets.push("token_count = :tokens");
            request = request
                .expression_attribute_values(":tokens", AttributeValue::N(tokens.to_string()));
        }
        if let Some(indexed_at) = update.indexed_at {
            sets.push("indexed_at = :indexed_at");
            request = request.expression_attribute_values(":indexed_at", s(timestamp(&indexed_at)));
        }
        let request = request.update_expression(format!(
            "SET {} REMOVE lease_owner, lease_expires_ms",
            sets.join(", ")
        ));
        self.conditional_update(tenant, id, request, "not leased by this worker")
            .await
    }

    /// Newest first. Each status is its own GSI1 partition; a listing over
    /// all statuses reads one page from each and merges them, and the cursor
    /// is the last item's `GSI1SK`, so pages never skip or repeat.
    async fn list(&self, tenant: &Tenant, query: &ListQuery) -> Result<Page<Document>, StoreError> {
        let statuses: Vec<DocumentStatus> = match query.status {
            Some(status) => vec![status],
            None => DocumentStatus::ALL.to_vec(),
        };
        let limit = query.limit.max(1);
        let pages =
            futures::future::try_join_all(statuses.iter().map(|status| {
                self.query_status(tenant, *status, query.cursor.as_deref(), limit + 1)
            }))
            .await?;
        let mut items: Vec<Document> = pages.into_iter().flatten().collect();
        items.sort_by_key(|d| std::cmp::Reverse(gsi1sk(d)));
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(gsi1sk)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn delete(&self, tenant: &Tenant, id: Uuid) -> Result<bool, StoreError> {
        let Some(document) = self.get(tenant, id).await? else {
            return Ok(false);
        };
        let delete_doc = Delete::builder()
            .table_name(&self.table)
            .key("PK", s(doc_pk(tenant, id)))
            .key("SK", s("METADATA"))
            .condition_expression("attribute_exists(PK)")
            .build()
            .map_err(StoreError::permanent)?;
        let delete_hash = Delete::builder()
            .table_name(&self.table)
            .key("PK", s(hash_pk(tenant, &document.content_hash)))
            .key("SK", s(format!("DOC#{id}")))
            .build()
            .map_err(StoreError::permanent)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete_doc).build())
            .transact_items(TransactWriteItem::builder().delete(delete_hash).build())
            .transact_items(self.counter_update(tenant, -1)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            // Deleted concurrently by another request.
            Err(e) => {
                let c = classify(e);
                if is_condition_failure(&c) {
                    Ok(false)
                } else {
                    Err(self.err(c))
                }
            }
        }
    }

    async fn find_by_hash(
        &self,
        tenant: &Tenant,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(hash_pk(tenant, content_hash)))
            .send()
            .await
            .map_err(|e| self.err(classify(e)))?;
        for item in output.items() {
            let Some(id) = item
                .get("document_id")
                .and_then(|a| a.as_s().ok())
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                continue;
            };
            if let Some(document) = self.get(tenant, id).await?
                && document.status != DocumentStatus::Failed
            {
                return Ok(Some(document));
            }
        }
        Ok(None)
    }

    async fn count(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(stats_pk(tenant)))
            .key("SK", s("DOCUMENTS"))
            .send()
            .await
            .map_err(|e| self.err(classify(e)))?;
        Ok(output
            .item()
            .and_then(|i| i.get("document_count"))
            .and_then(|a| a.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0)
            .max(0) as u64)
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let mut tenants = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk")
                .expression_attribute_values(":pk", s(TENANTS_PK))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| self.err(classify(e)))?;
            for item in output.items() {
                if let Some(name) = item.get("tenant").and_then(|a| a.as_s().ok()) {
                    tenants.push(Tenant::new(name).map_err(StoreError::permanent)?);
                }
            }
            start_key = output.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(tenants);
            }
        }
    }

    fn backend_name(&self) -> &'static str {
        "dynamodb"
    }
}

#[async_trait]
impl ConversationStore for DynamoDbStore {
    async fn append(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        messages: &[StoredMessage],
    ) -> Result<(), StoreError> {
        let pk = conversation_pk(tenant, conversation_id);
        let items: Vec<Item> = messages
            .iter()
            .enumerate()
            .map(|(seq, stored)| {
                let mut item = Item::new();
                item.insert("PK".into(), s(pk.clone()));
                // The sequence number keeps messages written in the same
                // microsecond distinct and in order.
                item.insert(
                    "SK".into(),
                    s(format!(
                        "MESSAGE#{}#{seq:04}",
                        timestamp(&stored.created_at)
                    )),
                );
                item.insert("created_at".into(), s(timestamp(&stored.created_at)));
                item.insert(
                    "message".into(),
                    to_attr(&serde_json::to_value(&stored.message).unwrap_or(Value::Null)),
                );
                item
            })
            .collect();
        for batch in items.chunks(WRITE_BATCH) {
            let mut pending: Vec<aws_sdk_dynamodb::types::WriteRequest> = batch
                .iter()
                .map(|item| {
                    aws_sdk_dynamodb::types::PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| {
                            aws_sdk_dynamodb::types::WriteRequest::builder()
                                .put_request(put)
                                .build()
                        })
                        .map_err(StoreError::permanent)
                })
                .collect::<Result<_, _>>()?;
            // BatchWriteItem may hand back unprocessed items under load.
            for attempt in 0..8u32 {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| self.err(classify(e)))?;
                pending = output
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt == 7 {
                    return Err(StoreError::Transient(
                        "DynamoDB left conversation messages unprocessed".into(),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }

    async fn history(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Newest first, page by page: a page stops at 1 MB, which a window
        // of long tool results can exceed.
        let mut items = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", s(conversation_pk(tenant, conversation_id)))
                .expression_attribute_values(":prefix", s("MESSAGE#"))
                .scan_index_forward(false)
                .limit((limit - items.len()) as i32)
                .set_exclusive_start_key(start_key)
                .select(Select::AllAttributes)
                .send()
                .await
                .map_err(|e| self.err(classify(e)))?;
            items.extend(output.items().iter().cloned());
            start_key = output.last_evaluated_key().cloned();
            if items.len() >= limit || start_key.is_none() {
                break;
            }
        }
        let mut messages = items
            .iter()
            .map(|item| {
                let message = item
                    .get("message")
                    .map(attr::to_json)
                    .ok_or_else(|| StoreError::permanent("conversation item without message"))?;
                let created_at = item
                    .get("created_at")
                    .and_then(|a| a.as_s().ok())
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(Utc::now);
                Ok(StoredMessage {
                    message: serde_json::from_value(message).map_err(|e| {
                        StoreError::permanent(format!("malformed conversation message: {e}"))
                    })?,
                    created_at,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        messages.reverse();
        Ok(messages)
    }
}
