//! Daily usage counters and per-tenant settings in the same SQLite file.
//! Counts are added with an upsert, so each flush adds to the day.

use async_trait::async_trait;
use chrono::NaiveDate;
use rag_core::usage::{DailyUsage, TenantSettings, TenantSettingsStore, UsageCounts, UsageStore};
use rag_core::{StoreError, Tenant};
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, db_error};

const COUNT_COLUMNS: &str =
    "requests, input_tokens, output_tokens, embedding_calls, documents_ingested, bytes_ingested";

/// SQLite integers are signed; counters past `i64::MAX` stay there.
fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn day_from_row(row: &Row<'_>) -> rusqlite::Result<(String, DailyUsage)> {
    let count = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
    let day: String = row.get(1)?;
    let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
    })?;
    Ok((
        row.get(0)?,
        DailyUsage {
            date,
            counts: UsageCounts {
                requests: count(2)?,
                input_tokens: count(3)?,
                output_tokens: count(4)?,
                embedding_calls: count(5)?,
                documents_ingested: count(6)?,
                bytes_ingested: count(7)?,
            },
        },
    ))
}

impl SqliteStore {
    /// Days in the span, of one tenant or of all.
    async fn usage_rows(
        &self,
        tenant: Option<&Tenant>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Tenant, DailyUsage)>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_string());
        let (from, to) = (from.to_string(), to.to_string());
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT tenant, day, {COUNT_COLUMNS} FROM usage_daily
                     WHERE (?1 IS NULL OR tenant = ?1) AND day >= ?2 AND day <= ?3
                     ORDER BY tenant, day"
                ))
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![tenant, from, to], day_from_row)
                .map_err(db_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_error)?;
            rows.into_iter()
                .map(|(name, day)| {
                    Tenant::new(&name)
                        .map(|t| (t, day))
                        .map_err(|e| StoreError::permanent(format!("stored usage: {e}")))
                })
                .collect()
        })
        .await
    }
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn add_usage(
        &self,
        tenant: &Tenant,
        day: NaiveDate,
        counts: &UsageCounts,
    ) -> Result<(), StoreError> {
        let tenant = tenant.as_str().to_string();
        let c = *counts;
        self.with(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO usage_daily (tenant, day, {COUNT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (tenant, day) DO UPDATE SET
                       requests = requests + excluded.requests,
                       input_tokens = input_tokens + excluded.input_tokens,
                       output_tokens = output_tokens + excluded.output_tokens,
                       embedding_calls = embedding_calls + excluded.embedding_calls,
                       documents_ingested = documents_ingested + excluded.documents_ingested,
                       bytes_ingested = bytes_ingested + excluded.bytes_ingested"
                ),
                params![
                    tenant,
                    day.to_string(),
                    to_sql(c.requests),
                    to_sql(c.input_tokens),
                    to_sql(c.output_tokens),
                    to_sql(c.embedding_calls),
                    to_sql(c.documents_ingested),
                    to_sql(c.bytes_ingested),
                ],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn usage(
        &self,
        tenant: &Tenant,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyUsage>, StoreError> {
        Ok(self
            .usage_rows(Some(tenant), from, to)
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
        self.usage_rows(None, from, to).await
    }
}

#[async_trait]
impl TenantSettingsStore for SqliteStore {
    async fn tenant_settings(&self, tenant: &Tenant) -> Result<TenantSettings, StoreError> {
        let tenant = tenant.as_str().to_string();
        self.with(move |conn| {
            let row: Option<(Option<i64>, Option<String>, String)> = conn
                .query_row(
                    "SELECT monthly_token_budget, use_case, allowed_use_cases
                     FROM tenant_settings WHERE tenant = ?1",
                    params![tenant],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(db_error)?;
            let Some((budget, use_case, allowed)) = row else {
                return Ok(TenantSettings::default());
            };
            Ok(TenantSettings {
                monthly_token_budget: budget.map(|b| b.max(0) as u64),
                use_case,
                allowed_use_cases: serde_json::from_str(&allowed).map_err(|e| {
                    StoreError::permanent(format!(
                        "a tenant's allowed_use_cases is not a JSON list: {e}"
                    ))
                })?,
            })
        })
        .await
    }

    async fn put_tenant_settings(
        &self,
        tenant: &Tenant,
        settings: &TenantSettings,
    ) -> Result<(), StoreError> {
        let tenant = tenant.as_str().to_string();
        let budget = settings.monthly_token_budget.map(to_sql);
        let use_case = settings.use_case.clone();
        let allowed = serde_json::to_string(&settings.allowed_use_cases)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO tenant_settings (tenant, monthly_token_budget, use_case, allowed_use_cases)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant) DO UPDATE SET
                     monthly_token_budget = excluded.monthly_token_budget,
                     use_case = excluded.use_case,
                     allowed_use_cases = excluded.allowed_use_cases",
                params![tenant, budget, use_case, allowed],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn days_add_up_per_tenant_and_settings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        let (a, b) = (Tenant::new("a").unwrap(), Tenant::new("b").unwrap());
        let d1 = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let d2 = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let some = UsageCounts {
            requests: 2,
            input_tokens: 10,
            output_tokens: 5,
            embedding_calls: 3,
            documents_ingested: 1,
            bytes_ingested: 400,
        };
        store.add_usage(&a, d1, &some).await.unwrap();
        store.add_usage(&a, d2, &some).await.unwrap();
        store.add_usage(&a, d2, &some).await.unwrap();
        store
            .add_usage(&b, d2, &UsageCounts::request())
            .await
            .unwrap();

        let days = store.usage(&a, d1, d2).await.unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].counts, some);
        assert_eq!(days[1].counts.requests, 4);
        assert_eq!(days[1].counts.bytes_ingested, 800);
        assert_eq!(store.usage(&a, d2, d2).await.unwrap().len(), 1);
        let b_days = store.usage(&b, d1, d2).await.unwrap();
        assert_eq!(b_days.len(), 1);
        assert_eq!(b_days[0].counts, UsageCounts::request());
        let every = store.usage_of_every_tenant(d2, d2).await.unwrap();
        assert_eq!(every.len(), 2);

        assert_eq!(
            store.tenant_settings(&a).await.unwrap(),
            TenantSettings::default()
        );
        let own = TenantSettings {
            monthly_token_budget: Some(5000),
            use_case: Some("search".into()),
            allowed_use_cases: vec!["summaries".into(), "finance".into()],
        };
        store.put_tenant_settings(&a, &own).await.unwrap();
        assert_eq!(store.tenant_settings(&a).await.unwrap(), own);
        store
            .put_tenant_settings(&a, &TenantSettings::default())
            .await
            .unwrap();
        assert_eq!(
            store.tenant_settings(&a).await.unwrap(),
            TenantSettings::default()
        );
        assert_eq!(
            store.tenant_settings(&b).await.unwrap(),
            TenantSettings::default()
        );
    }
}
