//! `/usage`: what a tenant used per day, and `/admin/tenants/{tenant}`:
//! what the operator sets per tenant (its monthly token budget). A
//! tenant's admin reads its own tenant's usage; an operator every
//! tenant's, or one it names with `x-tenant-id`.

use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use rag_core::routing::valid_use_case;
use rag_core::usage::{DailyUsage, TenantSettings, UsageCounts, first_of_month, today};
use rag_core::{Principal, RagError, Role, Tenant};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery, whole_number};

/// The longest span one request may ask for.
const MAX_SPAN_DAYS: i64 = 366;
/// Budgets above this are refused: far past any month's use, and within
/// what every store keeps exactly.
pub const MAX_MONTHLY_TOKEN_BUDGET: u64 = 1_000_000_000_000_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// First day (UTC), `YYYY-MM-DD`; default the first of this month.
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day (UTC), included; default today. At most 366 days after `from`.
    #[param(format = Date)]
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsage {
    pub tenant: String,
    /// The span's counters added up.
    pub total: UsageCounts,
    /// The days of the span with any use, oldest first.
    pub days: Vec<DailyUsage>,
    /// Model tokens of the current month, against the budget.
    pub tokens_this_month: u64,
    /// Model tokens a month before requests are refused; absent when none.
    pub monthly_token_budget: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    pub tenants: Vec<TenantUsage>,
}

fn date(raw: Option<&str>, name: &str, default: NaiveDate) -> Result<NaiveDate, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    // A four-digit year only: `%Y` alone would read longer ones.
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|_| raw.len() == 10)
        .ok_or_else(|| {
            ApiError::InvalidParameter(format!("{name} {raw:?} is not a date like 2026-12-01"))
        })
}

fn store_error(e: rag_core::StoreError) -> ApiError {
    ApiError::Rag(RagError::from(e))
}

/// What each tenant used per day (UTC), with its month against its budget.
#[utoipa::path(get, path = "/usage", tag = "admin", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    AppQuery(params): AppQuery<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let principal = caller.require_role(Role::Admin)?;
    let now = today();
    let from = date(params.from.as_deref(), "from", first_of_month(now))?;
    let to = date(params.to.as_deref(), "to", now)?;
    if to < from || (to - from).num_days() >= MAX_SPAN_DAYS {
        return Err(ApiError::InvalidParameter(format!(
            "from must not be after to, and the span at most {MAX_SPAN_DAYS} days"
        )));
    }
    let meter = state.service.usage();
    let mut by_tenant: Vec<(Tenant, Vec<DailyUsage>)> = match principal.tenant() {
        Some(tenant) => vec![(
            tenant.clone(),
            meter.usage(tenant, from, to).await.map_err(store_error)?,
        )],
        None => {
            let mut grouped: Vec<(Tenant, Vec<DailyUsage>)> = Vec::new();
            for (tenant, day) in meter
                .usage_of_every_tenant(from, to)
                .await
                .map_err(store_error)?
            {
                match grouped.last_mut() {
                    Some((last, days)) if *last == tenant => days.push(day),
                    _ => grouped.push((tenant, vec![day])),
                }
            }
            grouped
        }
    };
    by_tenant.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tenants = Vec::with_capacity(by_tenant.len());
    for (tenant, days) in by_tenant {
        let standing = meter.standing(&tenant).await.map_err(store_error)?;
        let mut total = UsageCounts::default();
        for day in &days {
            total += day.counts;
        }
        tenants.push(TenantUsage {
            tenant: tenant.to_string(),
            total,
            days,
            tokens_this_month: standing.tokens_this_month,
            monthly_token_budget: standing.monthly_token_budget,
        });
    }
    Ok(Json(UsageReport { from, to, tenants }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSettingsRequest {
    /// Model tokens a month for this tenant; `0` for no budget, `null` (or
    /// absent) for `TENANT_MONTHLY_TOKEN_BUDGET`.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_u64)]
    pub monthly_token_budget: Option<u64>,
    /// The use case the tenant's requests run under (`BEDROCK_ROUTES`)
    /// unless they name another with `x-use-case-id`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub use_case: Option<String>,
    /// Further use cases the tenant's requests may name (at most 32).
    #[serde(default)]
    #[schema(max_items = 32)]
    pub allowed_use_cases: Vec<String>,
}

/// The most use cases one tenant may be allowed besides its own.
const MAX_ALLOWED_USE_CASES: usize = 32;

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSettingsView {
    pub tenant: String,
    /// What the operator set; absent when the default applies.
    pub monthly_token_budget: Option<u64>,
    /// The budget that applies; absent when there is none.
    pub effective_monthly_token_budget: Option<u64>,
    pub use_case: Option<String>,
    pub allowed_use_cases: Vec<String>,
}

fn operator(caller: &Caller) -> Result<&Principal, ApiError> {
    let principal = caller.require_role(Role::Admin)?;
    if principal.is_operator() {
        Ok(principal)
    } else {
        Err(ApiError::Forbidden(
            "only an operator key (tenant *) manages tenant settings".to_string(),
        ))
    }
}

fn tenant_of_path(raw: &str) -> Result<Tenant, ApiError> {
    Tenant::new(raw).map_err(|e| ApiError::InvalidParameter(e.to_string()))
}

fn view(state: &AppState, tenant: &Tenant, settings: &TenantSettings) -> TenantSettingsView {
    TenantSettingsView {
        tenant: tenant.to_string(),
        monthly_token_budget: settings.monthly_token_budget,
        effective_monthly_token_budget: state.service.usage().budget_of(settings),
        use_case: settings.use_case.clone(),
        allowed_use_cases: settings.allowed_use_cases.clone(),
    }
}

/// A tenant's settings (operator only).
#[utoipa::path(get, path = "/admin/tenants/{tenant}", tag = "admin",
    params(("tenant" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    responses((status = 200, body = TenantSettingsView), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(tenant): AppPath<String>,
) -> Result<Json<TenantSettingsView>, ApiError> {
    operator(&caller)?;
    let tenant = tenant_of_path(&tenant)?;
    let settings = state
        .service
        .usage()
        .tenant_settings(&tenant)
        .await
        .map_err(store_error)?;
    Ok(Json(view(&state, &tenant, &settings)))
}

/// Set a tenant's settings (operator only); every instance applies them
/// within seconds.
#[utoipa::path(put, path = "/admin/tenants/{tenant}", tag = "admin",
    params(("tenant" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")),
    request_body = TenantSettingsRequest,
    responses((status = 200, body = TenantSettingsView), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(tenant): AppPath<String>,
    AppJson(body): AppJson<TenantSettingsRequest>,
) -> Result<Json<TenantSettingsView>, ApiError> {
    operator(&caller)?;
    let tenant = tenant_of_path(&tenant)?;
    if body
        .monthly_token_budget
        .is_some_and(|b| b > MAX_MONTHLY_TOKEN_BUDGET)
    {
        return Err(ApiError::InvalidBody(format!(
            "monthly_token_budget is at most {MAX_MONTHLY_TOKEN_BUDGET}"
        )));
    }
    let mut allowed_use_cases = body.allowed_use_cases;
    if allowed_use_cases.len() > MAX_ALLOWED_USE_CASES {
        return Err(ApiError::InvalidBody(format!(
            "allowed_use_cases has at most {MAX_ALLOWED_USE_CASES} names"
        )));
    }
    for name in body.use_case.iter().chain(&allowed_use_cases) {
        valid_use_case(name).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    }
    allowed_use_cases.sort();
    allowed_use_cases.dedup();
    let settings = TenantSettings {
        monthly_token_budget: body.monthly_token_budget,
        use_case: body.use_case,
        allowed_use_cases,
    };
    state
        .service
        .usage()
        .put_tenant_settings(&tenant, &settings)
        .await
        .map_err(store_error)?;
    Ok(Json(view(&state, &tenant, &settings)))
}
