//! Bedrock per use case: which use case a request runs under, and the
//! deployment's parts wired for it (its models, reached through its own
//! role in its own account). The API asks [`UseCaseServices`] for the
//! service of a request's use case and model; the binary builds them from
//! `BEDROCK_ROUTES`.
//!
//! A request's use case is the one it names with `x-use-case-id`, when its
//! principal may use it (its token's use case, its tenant's configured use
//! case or one of the tenant's allowed use cases, or any for an operator);
//! else its token's `use_case` claim; else its tenant's configured use
//! case. Anything else is refused before any model is called.

use std::sync::Arc;

use crate::principal::Principal;
use crate::service::RagService;
use crate::usage::TenantSettings;

/// The most characters of a use case name.
pub const MAX_USE_CASE_LEN: usize = 64;

/// Why a request gets no service. Messages name the use case and the
/// model, never a role or an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No use case could be established for the request.
    #[error(
        "this request runs under no use case: name one with x-use-case-id, or have the operator set the tenant's use_case"
    )]
    NoUseCase,
    /// The principal may not use it, or the deployment has no route for
    /// it; both read the same.
    #[error("use case {0:?} is not available to this caller")]
    UseCaseNotAllowed(String),
    #[error("model {model:?} is not allowed for use case {use_case:?}")]
    ModelNotAllowed { use_case: String, model: String },
    #[error("{0}")]
    InvalidUseCase(String),
}

/// Whether `name` can be a use case: 1 to 64 letters, digits, `-`, `_`.
pub fn valid_use_case(name: &str) -> Result<(), RouteError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USE_CASE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RouteError::InvalidUseCase(format!(
            "a use case is 1 to {MAX_USE_CASE_LEN} letters, digits, '-' or '_'"
        )))
    }
}

/// The use case a request runs under; see the module's rules.
pub fn resolve_use_case(
    principal: &Principal,
    settings: &TenantSettings,
    named: Option<&str>,
) -> Result<String, RouteError> {
    if let Some(named) = named {
        valid_use_case(named)?;
        let allowed = principal.is_operator()
            || principal.use_case.as_deref() == Some(named)
            || settings.use_case.as_deref() == Some(named)
            || settings.allowed_use_cases.iter().any(|u| u == named);
        return if allowed {
            Ok(named.to_string())
        } else {
            Err(RouteError::UseCaseNotAllowed(named.to_string()))
        };
    }
    principal
        .use_case
        .clone()
        .or_else(|| settings.use_case.clone())
        .ok_or(RouteError::NoUseCase)
}

/// The deployment as each use case reaches it.
pub trait UseCaseServices: Send + Sync {
    /// The service whose models run under `use_case`'s route, with `model`
    /// as its chat model (`None`: the route's default). A model outside the
    /// route's allowed list is refused here, before any call.
    fn service(&self, use_case: &str, model: Option<&str>) -> Result<Arc<RagService>, RouteError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{Role, Scope};
    use crate::tenant::Tenant;

    fn principal(use_case: Option<&str>, operator: bool) -> Principal {
        Principal {
            scope: if operator {
                Scope::Operator { acting_for: None }
            } else {
                Scope::Tenant(Tenant::new("team-a").unwrap())
            },
            role: Role::Reader,
            id: "key:test".into(),
            use_case: use_case.map(str::to_string),
        }
    }

    fn settings(use_case: Option<&str>, allowed: &[&str]) -> TenantSettings {
        TenantSettings {
            use_case: use_case.map(str::to_string),
            allowed_use_cases: allowed.iter().map(|s| s.to_string()).collect(),
            ..TenantSettings::default()
        }
    }

    #[test]
    fn the_named_use_case_needs_a_grant() {
        let tenant = settings(Some("search"), &["summaries"]);
        let plain = principal(None, false);
        assert_eq!(
            resolve_use_case(&plain, &tenant, Some("search")).unwrap(),
            "search"
        );
        assert_eq!(
            resolve_use_case(&plain, &tenant, Some("summaries")).unwrap(),
            "summaries"
        );
        assert_eq!(
            resolve_use_case(&plain, &tenant, Some("finance")),
            Err(RouteError::UseCaseNotAllowed("finance".into()))
        );
        let token = principal(Some("finance"), false);
        assert_eq!(
            resolve_use_case(&token, &tenant, Some("finance")).unwrap(),
            "finance"
        );
        let operator = principal(None, true);
        assert_eq!(
            resolve_use_case(&operator, &tenant, Some("finance")).unwrap(),
            "finance"
        );
        assert!(matches!(
            resolve_use_case(&plain, &tenant, Some("no spaces")),
            Err(RouteError::InvalidUseCase(_))
        ));
    }

    #[test]
    fn otherwise_the_token_then_the_tenant_decides() {
        let tenant = settings(Some("search"), &[]);
        assert_eq!(
            resolve_use_case(&principal(Some("finance"), false), &tenant, None).unwrap(),
            "finance"
        );
        assert_eq!(
            resolve_use_case(&principal(None, false), &tenant, None).unwrap(),
            "search"
        );
        assert_eq!(
            resolve_use_case(&principal(None, false), &settings(None, &[]), None),
            Err(RouteError::NoUseCase)
        );
    }
}
