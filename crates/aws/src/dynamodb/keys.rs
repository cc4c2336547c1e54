//! API keys as their own items in the table, apart from every tenant's
//! data: `KEY#<id>` / `KEY`, with `GSI1PK = KEYS` and
//! `GSI1SK = <created_at>#<id>` so every key lists newest first from one
//! GSI1 partition. Only digests are stored.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use rag_core::keys::{ApiKeyRecord, KeyStore, KeyTenant};
use rag_core::{Role, StoreError};

use super::attr::{Item, s};
use super::{DynamoDbStore, GSI1, is_condition_failure, timestamp};
use crate::sdk_error::classify;

fn key_pk(id: &str) -> String {
    format!("KEY#{id}")
}

const KEYS_GSI1PK: &str = "KEYS";

fn key_item(key: &ApiKeyRecord) -> Item {
    let mut item = Item::new();
    item.insert("PK".into(), s(key_pk(&key.id)));
    item.insert("SK".into(), s("KEY"));
    item.insert("GSI1PK".into(), s(KEYS_GSI1PK));
    item.insert(
        "GSI1SK".into(),
        s(format!("{}#{}", timestamp(&key.created_at), key.id)),
    );
    item.insert("key_id".into(), s(&key.id));
    item.insert("tenant".into(), s(key.tenant.as_str()));
    item.insert("role".into(), s(key.role.as_str()));
    item.insert("name".into(), s(&key.name));
    item.insert("digest".into(), s(&key.digest));
    item.insert("created_at".into(), s(timestamp(&key.created_at)));
    if let Some(at) = &key.expires_at {
        item.insert("expires_at".into(), s(timestamp(at)));
    }
    if let Some(at) = &key.last_used_at {
        item.insert("last_used_at".into(), s(timestamp(at)));
    }
    item.insert("revoked".into(), AttributeValue::Bool(key.revoked));
    item
}

fn key_from_item(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    let malformed = |what: &str| StoreError::permanent(format!("malformed key item: {what}"));
    let text = |name: &str| item.get(name).and_then(|a| a.as_s().ok()).cloned();
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        text(name)
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| malformed(name))
            })
            .transpose()
    };
    Ok(ApiKeyRecord {
        id: text("key_id").ok_or_else(|| malformed("key_id"))?,
        tenant: KeyTenant::parse(&text("tenant").ok_or_else(|| malformed("tenant"))?)
            .map_err(|_| malformed("tenant"))?,
        role: Role::parse(&text("role").unwrap_or_default()).ok_or_else(|| malformed("role"))?,
        name: text("name").unwrap_or_default(),
        digest: text("digest").ok_or_else(|| malformed("digest"))?,
        created_at: time("created_at")?.ok_or_else(|| malformed("created_at"))?,
        expires_at: time("expires_at")?,
        last_used_at: time("last_used_at")?,
        revoked: item
            .get("revoked")
            .and_then(|a| a.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}

#[async_trait]
impl KeyStore for DynamoDbStore {
    async fn create_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(key_item(key)))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let c = classify(e);
                if is_condition_failure(&c) {
                    Err(StoreError::Conflict(format!(
                        "key {} already exists",
                        key.id
                    )))
                } else {
                    Err(self.err(c))
                }
            }
        }
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(key_pk(id)))
            .key("SK", s("KEY"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(classify(e)))?;
        output.item().map(key_from_item).transpose()
    }

    async fn list_keys(&self, tenant: Option<&KeyTenant>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut keys = Vec::new();
        let mut start_key = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("GSI1PK = :pk")
                .expression_attribute_values(":pk", s(KEYS_GSI1PK))
                .scan_index_forward(false)
                .set_exclusive_start_key(start_key);
            if let Some(tenant) = tenant {
                request = request
                    .filter_expression("tenant = :tenant")
                    .expression_attribute_values(":tenant", s(tenant.as_str()));
            }
            let output = request.send().await.map_err(|e| self.err(classify(e)))?;
            for item in output.items() {
                keys.push(key_from_item(item)?);
            }
            start_key = output.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(key_pk(id)))
            .key("SK", s("KEY"))
            .condition_expression("attribute_exists(PK)")
            .update_expression("SET revoked = :true")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
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

    async fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(key_pk(id)))
            .key("SK", s("KEY"))
            .condition_expression("attribute_exists(PK)")
            .update_expression("SET last_used_at = :at")
            .expression_attribute_values(":at", s(timestamp(&at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let c = classify(e);
                // A key deleted meanwhile has no use to record.
                if is_condition_failure(&c) {
                    Ok(())
                } else {
                    Err(self.err(c))
                }
            }
        }
    }
}
