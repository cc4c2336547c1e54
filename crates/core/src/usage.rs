//! What each tenant used, per UTC day, and its monthly token budget.
//!
//! [`UsageMeter`] counts as work happens: the API counts requests and the
//! model tokens of answers, the retriever counts query embeddings, the
//! ingestor counts documents, bytes and chunk embeddings. Counts gather in
//! memory and are added to the [`UsageStore`] at most every
//! `flush_every` (at once under Lambda, whose process is frozen between
//! invocations), so a request pays no store write of its own. The store
//! adds them atomically (an upsert, a DynamoDB `ADD`), so any number of
//! instances count into the same day.
//!
//! A budget (`TENANT_MONTHLY_TOKEN_BUDGET`, or a tenant's own, set by the
//! operator) is checked before a request that runs the model: once the
//! tenant's input and output tokens this month reach it, the request is
//! refused with `quota_exceeded` until the month ends. The month's total
//! is read from the store at most every `cache_for` and what this
//! instance records meanwhile is added to it, so one instance stops a
//! tenant at once and several within `cache_for`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::TokenUsage;
use crate::error::{RagError, StoreError};
use crate::telemetry::Metrics;
use crate::tenant::Tenant;

/// Counters of one tenant over some span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageCounts {
    /// Authenticated API requests.
    pub requests: u64,
    /// Model input tokens of answers, chats and the agent's tools.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Texts embedded: each chunk ingested and each question searched densely.
    pub embedding_calls: u64,
    /// Documents indexed.
    pub documents_ingested: u64,
    /// Bytes of the documents indexed, as uploaded.
    pub bytes_ingested: u64,
}

impl UsageCounts {
    pub fn request() -> Self {
        Self {
            requests: 1,
            ..Self::default()
        }
    }

    pub fn tokens(usage: TokenUsage) -> Self {
        Self {
            input_tokens: u64::from(usage.input_tokens),
            output_tokens: u64::from(usage.output_tokens),
            ..Self::default()
        }
    }

    pub fn embeddings(count: u64) -> Self {
        Self {
            embedding_calls: count,
            ..Self::default()
        }
    }

    /// Model tokens, which the budget counts.
    pub fn model_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl std::ops::AddAssign for UsageCounts {
    fn add_assign(&mut self, other: Self) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.embedding_calls = self.embedding_calls.saturating_add(other.embedding_calls);
        self.documents_ingested = self
            .documents_ingested
            .saturating_add(other.documents_ingested);
        self.bytes_ingested = self.bytes_ingested.saturating_add(other.bytes_ingested);
    }
}

/// One tenant's counters on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DailyUsage {
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// What an operator sets per tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    /// Model tokens a month; `None` takes `TENANT_MONTHLY_TOKEN_BUDGET`,
    /// `Some(0)` means no budget for this tenant.
    pub monthly_token_budget: Option<u64>,
    /// The use case the tenant's requests run under (`BEDROCK_ROUTES`)
    /// unless they name another.
    #[serde(default)]
    pub use_case: Option<String>,
    /// Further use cases its requests may name with `x-use-case-id`.
    #[serde(default)]
    pub allowed_use_cases: Vec<String>,
}

/// Daily counters, added to atomically.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds `counts` to `tenant`'s counters of `day`.
    async fn add_usage(
        &self,
        tenant: &Tenant,
        day: NaiveDate,
        counts: &UsageCounts,
    ) -> Result<(), StoreError>;

    /// `tenant`'s days from `from` to `to`, both included, oldest first;
    /// days without use are left out.
    async fn usage(
        &self,
        tenant: &Tenant,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyUsage>, StoreError>;

    /// Every tenant's days in the span, for the operator.
    async fn usage_of_every_tenant(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Tenant, DailyUsage)>, StoreError>;
}

/// Per-tenant settings an operator manages.
#[async_trait]
pub trait TenantSettingsStore: Send + Sync {
    /// The tenant's settings; the defaults when none were set.
    async fn tenant_settings(&self, tenant: &Tenant) -> Result<TenantSettings, StoreError>;

    async fn put_tenant_settings(
        &self,
        tenant: &Tenant,
        settings: &TenantSettings,
    ) -> Result<(), StoreError>;
}

/// How the meter writes and how fresh its budget view is.
#[derive(Debug, Clone, Copy)]
pub struct UsageSettings {
    /// `TENANT_MONTHLY_TOKEN_BUDGET`; `None` or 0 for no budget.
    pub default_monthly_token_budget: Option<u64>,
    /// Counts gathered in memory are written at most this often.
    pub flush_every: Duration,
    /// A month's total and a tenant's settings are read again after this.
    pub cache_for: Duration,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            default_monthly_token_budget: None,
            flush_every: Duration::from_secs(5),
            cache_for: Duration::from_secs(5),
        }
    }
}

/// What this instance knows of a tenant's month.
struct MonthView {
    month: (i32, u32),
    read_at: Instant,
    tokens: u64,
    budget: Option<u64>,
}

struct MeterState {
    pending: HashMap<(Tenant, NaiveDate), UsageCounts>,
    last_flush: Instant,
    months: HashMap<Tenant, MonthView>,
    /// Tenants' settings as last read, and when.
    settings: HashMap<Tenant, (Instant, TenantSettings)>,
}

/// A tenant's month against its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthStanding {
    pub tokens_this_month: u64,
    /// `None` when the tenant has no budget.
    pub monthly_token_budget: Option<u64>,
}

pub struct UsageMeter {
    store: Arc<dyn UsageStore>,
    tenant_settings: Arc<dyn TenantSettingsStore>,
    settings: UsageSettings,
    state: Mutex<MeterState>,
    /// The operator's view of the same work, across tenants.
    metrics: Metrics,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn month_of(day: NaiveDate) -> (i32, u32) {
    (day.year(), day.month())
}

pub fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

fn first_of_next_month(day: NaiveDate) -> NaiveDate {
    let (year, month) = if day.month() == 12 {
        (day.year() + 1, 1)
    } else {
        (day.year(), day.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(day)
}

pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

impl UsageMeter {
    pub fn new(
        store: Arc<dyn UsageStore>,
        tenant_settings: Arc<dyn TenantSettingsStore>,
        settings: UsageSettings,
    ) -> Self {
        Self {
            store,
            tenant_settings,
            settings,
            state: Mutex::new(MeterState {
                pending: HashMap::new(),
                last_flush: Instant::now(),
                months: HashMap::new(),
                settings: HashMap::new(),
            }),
            metrics: Metrics::default(),
        }
    }

    /// The same meter, also handing metric events to `metrics`: whatever
    /// counts usage can report the operator's metrics beside it.
    pub fn reporting_to(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts `counts` for `tenant` today.
    pub fn record(&self, tenant: &Tenant, counts: UsageCounts) {
        if counts.is_zero() {
            return;
        }
        let day = today();
        let mut state = lock(&self.state);
        *state.pending.entry((tenant.clone(), day)).or_default() += counts;
        if let Some(view) = state.months.get_mut(tenant)
            && view.month == month_of(day)
        {
            view.tokens = view.tokens.saturating_add(counts.model_tokens());
        }
    }

    /// Whether what is gathered should be written now.
    pub fn flush_due(&self) -> bool {
        let state = lock(&self.state);
        !state.pending.is_empty() && state.last_flush.elapsed() >= self.settings.flush_every
    }

    /// Writes what is gathered. What cannot be written stays gathered for
    /// the next flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let pending = {
            let mut state = lock(&self.state);
            state.last_flush = Instant::now();
            std::mem::take(&mut state.pending)
        };
        let mut first_error = None;
        let mut unwritten = Vec::new();
        for ((tenant, day), counts) in pending {
            if first_error.is_some() {
                unwritten.push(((tenant, day), counts));
                continue;
            }
            if let Err(e) = self.store.add_usage(&tenant, day, &counts).await {
                first_error = Some(e);
                unwritten.push(((tenant, day), counts));
            }
        }
        if !unwritten.is_empty() {
            let mut state = lock(&self.state);
            for (key, counts) in unwritten {
                *state.pending.entry(key).or_default() += counts;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes what is gathered if it is due, logging a failure: the
    /// request that triggers it does not fail for its accounting.
    pub async fn flush_if_due(&self) {
        if self.flush_due()
            && let Err(e) = self.flush().await
        {
            tracing::warn!(error = %e, "writing usage counts failed; kept for the next flush");
        }
    }

    fn pending_tokens(state: &MeterState, tenant: &Tenant, month: (i32, u32)) -> u64 {
        state
            .pending
            .iter()
            .filter(|((t, day), _)| t == tenant && month_of(*day) == month)
            .map(|(_, c)| c.model_tokens())
            .sum()
    }

    /// The tenant's tokens this month and its budget, from the cache when
    /// it is fresh.
    pub async fn standing(&self, tenant: &Tenant) -> Result<MonthStanding, StoreError> {
        let day = today();
        let month = month_of(day);
        {
            let state = lock(&self.state);
            if let Some(view) = state.months.get(tenant)
                && view.month == month
                && view.read_at.elapsed() < self.settings.cache_for
            {
                return Ok(MonthStanding {
                    tokens_this_month: view.tokens,
                    monthly_token_budget: view.budget,
                });
            }
        }
        let budget = self.budget_of(&self.tenant_settings.tenant_settings(tenant).await?);
        let stored: u64 = self
            .store
            .usage(tenant, first_of_month(day), day)
            .await?
            .iter()
            .map(|d| d.counts.model_tokens())
            .sum();
        let mut state = lock(&self.state);
        let tokens = stored.saturating_add(Self::pending_tokens(&state, tenant, month));
        state.months.insert(
            tenant.clone(),
            MonthView {
                month,
                read_at: Instant::now(),
                tokens,
                budget,
            },
        );
        Ok(MonthStanding {
            tokens_this_month: tokens,
            monthly_token_budget: budget,
        })
    }

    /// The budget that applies under these settings.
    pub fn budget_of(&self, settings: &TenantSettings) -> Option<u64> {
        settings
            .monthly_token_budget
            .or(self.settings.default_monthly_token_budget)
            .filter(|&b| b > 0)
    }

    /// `Err(QuotaExceeded)` when the tenant's tokens this month have
    /// reached its budget. A store that cannot answer lets the request
    /// through: the budget guards cost, an outage of the counters should
    /// not stop the service.
    pub async fn check_budget(&self, tenant: &Tenant) -> Result<(), RagError> {
        let standing = match self.standing(tenant).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading usage for the budget failed; request allowed");
                return Ok(());
            }
        };
        match standing.monthly_token_budget {
            Some(budget) if standing.tokens_this_month >= budget => {
                let now = Utc::now();
                let next = first_of_next_month(now.date_naive())
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc())
                    .unwrap_or(now);
                Err(RagError::QuotaExceeded {
                    message: format!(
                        "this tenant has used {} of its {budget} model tokens this month; the budget renews at the start of next month (UTC)",
                        standing.tokens_this_month
                    ),
                    retry_after_secs: (next - now).num_seconds().max(1) as u64,
                })
            }
            _ => Ok(()),
        }
    }

    /// `tenant`'s days, after writing what this instance gathered.
    pub async fn usage(
        &self,
        tenant: &Tenant,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyUsage>, StoreError> {
        self.flush().await?;
        self.store.usage(tenant, from, to).await
    }

    pub async fn usage_of_every_tenant(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Tenant, DailyUsage)>, StoreError> {
        self.flush().await?;
        self.store.usage_of_every_tenant(from, to).await
    }

    pub async fn tenant_settings(&self, tenant: &Tenant) -> Result<TenantSettings, StoreError> {
        self.tenant_settings.tenant_settings(tenant).await
    }

    /// The tenant's settings, read from the store at most every
    /// `cache_for`, for what every request consults (its use case).
    pub async fn cached_tenant_settings(
        &self,
        tenant: &Tenant,
    ) -> Result<TenantSettings, StoreError> {
        if let Some((read_at, settings)) = lock(&self.state).settings.get(tenant)
            && read_at.elapsed() < self.settings.cache_for
        {
            return Ok(settings.clone());
        }
        let settings = self.tenant_settings.tenant_settings(tenant).await?;
        lock(&self.state)
            .settings
            .insert(tenant.clone(), (Instant::now(), settings.clone()));
        Ok(settings)
    }

    /// Stores `settings` and forgets the cached month and settings, so
    /// this instance applies them at once (others within `cache_for`).
    pub async fn put_tenant_settings(
        &self,
        tenant: &Tenant,
        settings: &TenantSettings,
    ) -> Result<(), StoreError> {
        self.tenant_settings
            .put_tenant_settings(tenant, settings)
            .await?;
        let mut state = lock(&self.state);
        state.months.remove(tenant);
        state.settings.remove(tenant);
        Ok(())
    }
}

/// Counters and settings in memory, for tests of what builds on them.
#[cfg(any(test, feature = "test-util"))]
#[derive(Default)]
pub struct MemoryUsageStore {
    days: Mutex<std::collections::BTreeMap<(Tenant, NaiveDate), UsageCounts>>,
    settings: Mutex<HashMap<Tenant, TenantSettings>>,
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait]
impl UsageStore for MemoryUsageStore {
    async fn add_usage(
        &self,
        tenant: &Tenant,
        day: NaiveDate,
        counts: &UsageCounts,
    ) -> Result<(), StoreError> {
        *lock(&self.days).entry((tenant.clone(), day)).or_default() += *counts;
        Ok(())
    }

    async fn usage(
        &self,
        tenant: &Tenant,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyUsage>, StoreError> {
        Ok(self
            .usage_of_every_tenant(from, to)
            .await?
            .into_iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, d)| d)
            .collect())
    }

    async fn usage_of_every_tenant(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Tenant, DailyUsage)>, StoreError> {
        Ok(lock(&self.days)
            .iter()
            .filter(|((_, day), _)| (from..=to).contains(day))
            .map(|((tenant, date), counts)| {
                (
                    tenant.clone(),
                    DailyUsage {
                        date: *date,
                        counts: *counts,
                    },
                )
            })
            .collect())
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait]
impl TenantSettingsStore for MemoryUsageStore {
    async fn tenant_settings(&self, tenant: &Tenant) -> Result<TenantSettings, StoreError> {
        Ok(lock(&self.settings)
            .get(tenant)
            .cloned()
            .unwrap_or_default())
    }

    async fn put_tenant_settings(
        &self,
        tenant: &Tenant,
        settings: &TenantSettings,
    ) -> Result<(), StoreError> {
        lock(&self.settings).insert(tenant.clone(), settings.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_month_rolls_over_the_year() {
        let dec = NaiveDate::from_ymd_opt(2026, 12, 17).unwrap();
        assert_eq!(
            first_of_next_month(dec),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        assert_eq!(
            first_of_month(dec),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
    }

    #[test]
    fn counts_add_and_saturate() {
        let mut a = UsageCounts::tokens(TokenUsage::new(10, 5));
        a += UsageCounts::request();
        a += UsageCounts {
            bytes_ingested: u64::MAX,
            ..UsageCounts::default()
        };
        a += UsageCounts {
            bytes_ingested: 1,
            ..UsageCounts::default()
        };
        assert_eq!(a.model_tokens(), 15);
        assert_eq!(a.requests, 1);
        assert_eq!(a.bytes_ingested, u64::MAX);
    }

    fn meter(budget: Option<u64>, flush_every: Duration) -> (Arc<MemoryUsageStore>, UsageMeter) {
        let store = Arc::new(MemoryUsageStore::default());
        let meter = UsageMeter::new(
            store.clone(),
            store.clone(),
            UsageSettings {
                default_monthly_token_budget: budget,
                flush_every,
                cache_for: Duration::from_secs(60),
            },
        );
        (store, meter)
    }

    #[tokio::test]
    async fn settings_are_cached_and_a_change_here_applies_at_once() {
        let (store, meter) = meter(None, Duration::from_secs(3600));
        let a = Tenant::new("a").unwrap();
        assert_eq!(
            meter.cached_tenant_settings(&a).await.unwrap().use_case,
            None
        );
        let search = TenantSettings {
            use_case: Some("search".into()),
            ..TenantSettings::default()
        };
        // Another instance's change is seen once the cache ages out.
        store.put_tenant_settings(&a, &search).await.unwrap();
        assert_eq!(
            meter.cached_tenant_settings(&a).await.unwrap().use_case,
            None
        );
        // This instance's own change at once.
        meter.put_tenant_settings(&a, &search).await.unwrap();
        assert_eq!(
            meter
                .cached_tenant_settings(&a)
                .await
                .unwrap()
                .use_case
                .as_deref(),
            Some("search")
        );
    }

    #[tokio::test]
    async fn counts_gather_until_flushed_and_then_add_up() {
        let (store, meter) = meter(None, Duration::from_secs(3600));
        let a = Tenant::new("a").unwrap();
        meter.record(&a, UsageCounts::request());
        meter.record(&a, UsageCounts::tokens(TokenUsage::new(3, 4)));
        assert!(!meter.flush_due(), "not due for an hour");
        let day = today();
        assert!(store.usage(&a, day, day).await.unwrap().is_empty());
        let days = meter.usage(&a, day, day).await.unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].counts.requests, 1);
        assert_eq!(days[0].counts.model_tokens(), 7);
        meter.record(&a, UsageCounts::request());
        meter.flush().await.unwrap();
        let days = store.usage(&a, day, day).await.unwrap();
        assert_eq!(
            days[0].counts.requests, 2,
            "the second flush adds to the first"
        );
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_until_the_month_ends_and_an_own_budget_overrides() {
        let (_, meter) = meter(Some(10), Duration::ZERO);
        let a = Tenant::new("a").unwrap();
        let b = Tenant::new("b").unwrap();
        meter.check_budget(&a).await.unwrap();
        meter.record(&a, UsageCounts::tokens(TokenUsage::new(8, 2)));
        // The month's view is cached, and what this instance records
        // joins it at once.
        match meter.check_budget(&a).await {
            Err(RagError::QuotaExceeded {
                retry_after_secs, ..
            }) => assert!(retry_after_secs > 0 && retry_after_secs <= 31 * 86_400),
            other => panic!("expected quota_exceeded, got {other:?}"),
        }
        meter
            .check_budget(&b)
            .await
            .expect("another tenant is not affected");
        meter
            .put_tenant_settings(
                &a,
                &TenantSettings {
                    monthly_token_budget: Some(100),
                    ..TenantSettings::default()
                },
            )
            .await
            .unwrap();
        meter.check_budget(&a).await.expect("a larger own budget");
        meter
            .put_tenant_settings(
                &b,
                &TenantSettings {
                    monthly_token_budget: Some(0),
                    ..TenantSettings::default()
                },
            )
            .await
            .unwrap();
        meter.record(&b, UsageCounts::tokens(TokenUsage::new(50, 50)));
        meter.check_budget(&b).await.expect("0 is no budget");
    }
}
