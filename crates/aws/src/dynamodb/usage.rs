//! Daily usage counters and per-tenant settings as items of the table:
//! - `T#<tenant>#USAGE` / `DAY#<yyyy-mm-dd>`: one number attribute per
//!   counter, added to with `ADD`, so concurrent instances count into the
//!   same day without reading it. `GSI1PK = USAGE`, `GSI1SK =
//!   <day>#<tenant>` lets the operator read every tenant's days in a span
//!   with one query.
//! - `T#<tenant>#SETTINGS` / `TENANT`: what an operator set for the tenant.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::NaiveDate;
use rag_core::usage::{DailyUsage, TenantSettings, TenantSettingsStore, UsageCounts, UsageStore};
use rag_core::{StoreError, Tenant};

use super::attr::{Item, s};
use super::{DynamoDbStore, GSI1};
use crate::sdk_error::classify;

const USAGE_GSI1PK: &str = "USAGE";
const COUNTERS: [&str; 6] = [
    "requests",
    "input_tokens",
    "output_tokens",
    "embedding_calls",
    "documents_ingested",
    "bytes_ingested",
];

fn usage_pk(tenant: &Tenant) -> String {
    format!("T#{tenant}#USAGE")
}

fn settings_pk(tenant: &Tenant) -> String {
    format!("T#{tenant}#SETTINGS")
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn counter(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|a| a.as_n().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
}

fn day_of(item: &Item) -> Result<(Tenant, DailyUsage), StoreError> {
    let text = |name: &str| {
        item.get(name)
            .and_then(|a| a.as_s().ok())
            .ok_or_else(|| StoreError::permanent(format!("usage item without {name}")))
    };
    let date = NaiveDate::parse_from_str(text("day")?, "%Y-%m-%d")
        .map_err(|e| StoreError::permanent(format!("usage item day: {e}")))?;
    let tenant = Tenant::new(text("tenant")?).map_err(StoreError::permanent)?;
    let counts = UsageCounts {
        requests: counter(item, "requests"),
        input_tokens: counter(item, "input_tokens"),
        output_tokens: counter(item, "output_tokens"),
        embedding_calls: counter(item, "embedding_calls"),
        documents_ingested: counter(item, "documents_ingested"),
        bytes_ingested: counter(item, "bytes_ingested"),
    };
    Ok((tenant, DailyUsage { date, counts }))
}

impl DynamoDbStore {
    /// Every page of a query over usage items, on the table or on GSI1.
    async fn usage_query(
        &self,
        on_gsi1: bool,
        pk: String,
        low: String,
        high: String,
    ) -> Result<Vec<(Tenant, DailyUsage)>, StoreError> {
        let (pk_name, sk_name) = if on_gsi1 {
            ("GSI1PK", "GSI1SK")
        } else {
            ("PK", "SK")
        };
        let mut days = Vec::new();
        let mut start_key = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                .expression_attribute_names("#pk", pk_name)
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":low", s(&low))
                .expression_attribute_values(":high", s(&high))
                .set_exclusive_start_key(start_key);
            if on_gsi1 {
                query = query.index_name(GSI1);
            }
            let output = query.send().await.map_err(|e| self.err(classify(e)))?;
            for item in output.items() {
                days.push(day_of(item)?);
            }
            start_key = output.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(days);
            }
        }
    }
}

#[async_trait]
impl UsageStore for DynamoDbStore {
    async fn add_usage(
        &self,
        tenant: &Tenant,
        day: NaiveDate,
        counts: &UsageCounts,
    ) -> Result<(), StoreError> {
        let values = [
            counts.requests,
            counts.input_tokens,
            counts.output_tokens,
            counts.embedding_calls,
            counts.documents_ingested,
            counts.bytes_ingested,
        ];
        let adds: Vec<String> = COUNTERS.iter().map(|c| format!("{c} :{c}")).collect();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", s(usage_pk(tenant)))
            .key("SK", s(format!("DAY#{day}")))
            .update_expression(format!(
                "ADD {} SET GSI1PK = :g, GSI1SK = :gs, tenant = :t, #day = :d",
                adds.join(", ")
            ))
            .expression_attribute_names("#day", "day")
            .expression_attribute_values(":g", s(USAGE_GSI1PK))
            .expression_attribute_values(":gs", s(format!("{day}#{tenant}")))
            .expression_attribute_values(":t", s(tenant.as_str()))
            .expression_attribute_values(":d", s(day.to_string()));
        for (name, value) in COUNTERS.iter().zip(values) {
            update = update.expression_attribute_values(format!(":{name}"), n(value));
        }
        update.send().await.map_err(|e| self.err(classify(e)))?;
        Ok(())
    }

    async fn usage(
        &self,
        tenant: &Tenant,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyUsage>, StoreError> {
        Ok(self
            .usage_query(
                false,
                usage_pk(tenant),
                format!("DAY#{from}"),
                format!("DAY#{to}"),
            )
            .await?
            .into_iter()
            .map(|(_, day)| day)
            .collect())
    }

    async fn usage_of_every_tenant(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Tenant, DailyUsage)>, StoreError> {
        // `~` sorts after every character a tenant id may hold.
        let mut days = self
            .usage_query(
                true,
                USAGE_GSI1PK.to_string(),
                format!("{from}#"),
                format!("{to}#~"),
            )
            .await?;
        days.sort_by(|a, b| (&a.0, a.1.date).cmp(&(&b.0, b.1.date)));
        Ok(days)
    }
}

#[async_trait]
impl TenantSettingsStore for DynamoDbStore {
    async fn tenant_settings(&self, tenant: &Tenant) -> Result<TenantSettings, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", s(settings_pk(tenant)))
            .key("SK", s("TENANT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(classify(e)))?;
        let item = output.item();
        Ok(TenantSettings {
            monthly_token_budget: item
                .and_then(|item| item.get("monthly_token_budget"))
                .and_then(|a| a.as_n().ok())
                .and_then(|v| v.parse().ok()),
            use_case: item
                .and_then(|item| item.get("use_case"))
                .and_then(|a| a.as_s().ok())
                .cloned(),
            // A set comes back in no particular order.
            allowed_use_cases: item
                .and_then(|item| item.get("allowed_use_cases"))
                .and_then(|a| a.as_ss().ok())
                .map(|names| {
                    let mut names = names.clone();
                    names.sort();
                    names
                })
                .unwrap_or_default(),
        })
    }

    async fn put_tenant_settings(
        &self,
        tenant: &Tenant,
        settings: &TenantSettings,
    ) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", s(settings_pk(tenant)))
            .item("SK", s("TENANT"))
            .item("tenant", s(tenant.as_str()));
        if let Some(budget) = settings.monthly_token_budget {
            put = put.item("monthly_token_budget", n(budget));
        }
        if let Some(use_case) = &settings.use_case {
            put = put.item("use_case", s(use_case));
        }
        // A string set cannot be empty: no attribute means none.
        if !settings.allowed_use_cases.is_empty() {
            put = put.item(
                "allowed_use_cases",
                AttributeValue::Ss(settings.allowed_use_cases.clone()),
            );
        }
        put.send().await.map_err(|e| self.err(classify(e)))?;
        Ok(())
    }
}
