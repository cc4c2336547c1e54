//! Who a request acts for. A layer resolves one [`Principal`] per request
//! and puts it in the request's extensions; handlers take it with the
//! [`Caller`] extractor, which also checks the role a route needs, and
//! pass its tenant to the service, which hands it to every store call.
//!
//! `RAG_AGENT_AUTH=none` makes every request the default tenant's admin
//! (the binary allows it only on a loopback address). `api_key` takes a
//! key from `Authorization: Bearer <key>` or `x-api-key: <key>`; a request
//! without one goes on with no principal, so only the routes that answer
//! anyone (`/health`, the UI's files, the OpenAPI document) serve it, and
//! the rest answer 401. A key that proves nothing is 401 at once. `jwt`
//! takes a bearer JWT the same way (see `rag_core::jwt`). Nothing about a
//! credential is ever logged.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use rag_core::RagError;
use rag_core::jwt::{JwtError, JwtVerifier};
use rag_core::keys::{KeyError, KeyService};
use rag_core::ratelimit::{RateDecision, RateLimiter};
use rag_core::{Principal, Role, Tenant};

use crate::error::ApiError;
use crate::observe::ResponseTenant;

/// How the principal of a request is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// No credential: the default tenant's admin.
    #[default]
    None,
    /// API keys, checked against the key store.
    ApiKey,
    /// Bearer JWTs from an OIDC provider, checked against its JWKS.
    Jwt,
}

/// What the resolver needs: the mode and, for `api_key`, the keys.
#[derive(Clone, Default)]
pub struct Authenticator {
    pub mode: AuthMode,
    pub keys: Option<Arc<KeyService>>,
    pub jwt: Option<Arc<JwtVerifier>>,
}

/// The header an operator key names the tenant it acts for with.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// The presented key: `x-api-key`, else `Authorization: Bearer <key>`.
/// `x-api-key` comes first because behind an IAM-authorised Function URL
/// `Authorization` holds the SigV4 signature, not a key. `Err` only for an
/// `Authorization` of another scheme with no `x-api-key` beside it.
fn presented_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(value) = headers.get("x-api-key") {
        return Ok(Some(value.to_str().unwrap_or_default().trim().to_string()));
    }
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    match value.to_str().unwrap_or_default().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(token.trim().to_string()))
        }
        _ => Err(ApiError::Unauthenticated(
            "send the key as `Authorization: Bearer <key>` or `x-api-key: <key>`".to_string(),
        )),
    }
}

fn named_tenant(headers: &HeaderMap) -> Result<Option<Tenant>, ApiError> {
    headers
        .get(TENANT_HEADER)
        .map(|v| {
            Tenant::new(v.to_str().unwrap_or_default())
                .map_err(|e| ApiError::InvalidParameter(format!("{TENANT_HEADER}: {e}")))
        })
        .transpose()
}

async fn principal_of(
    auth: &Authenticator,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let keys = match auth.mode {
        AuthMode::None => return Ok(Some(Principal::unauthenticated())),
        AuthMode::Jwt => return jwt_principal(auth, headers).await,
        AuthMode::ApiKey => auth.keys.as_ref().ok_or_else(|| {
            ApiError::Rag(RagError::Unavailable(
                "API keys are on but no key store is configured".into(),
            ))
        })?,
    };
    let Some(key) = presented_key(headers)? else {
        return Ok(None);
    };
    let named = named_tenant(headers)?;
    let principal = keys
        .authenticate(&key, named.clone())
        .await
        .map_err(|e| match e {
            KeyError::Unavailable => ApiError::Rag(RagError::Unavailable(e.to_string())),
            other => ApiError::Unauthenticated(other.to_string()),
        })?;
    if let (Some(named), Some(own)) = (&named, principal.tenant())
        && !principal.is_operator()
        && named != own
    {
        return Err(ApiError::Forbidden(format!(
            "this key belongs to another tenant than {TENANT_HEADER} names"
        )));
    }
    Ok(Some(principal))
}

async fn jwt_principal(
    auth: &Authenticator,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let jwt = auth.jwt.as_ref().ok_or_else(|| {
        ApiError::Rag(RagError::Unavailable(
            "JWTs are on but no verifier is configured".into(),
        ))
    })?;
    let Some(token) = presented_key(headers)? else {
        return Ok(None);
    };
    jwt.verify(&token, named_tenant(headers)?)
        .await
        .map(Some)
        .map_err(|e| match e {
            JwtError::Unavailable => ApiError::Rag(RagError::Unavailable(e.to_string())),
            JwtError::Forbidden(m) => ApiError::Forbidden(m),
            other => ApiError::Unauthenticated(other.to_string()),
        })
}

/// Puts the request's principal, if it proves one, in its extensions.
pub async fn resolve(
    axum::extract::State(auth): axum::extract::State<Authenticator>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let tenant = match principal_of(&auth, request.headers()).await {
        Ok(Some(principal)) => {
            // An operator acting for no tenant is `*`, as its keys say.
            let tenant = principal
                .tenant()
                .map_or_else(|| "*".to_string(), |t| t.as_str().to_string());
            tracing::Span::current().record("tenant", tenant.as_str());
            request.extensions_mut().insert(principal);
            Some(tenant)
        }
        Ok(None) => None,
        Err(refusal) => return refusal.into_response(),
    };
    let mut response = next.run(request).await;
    if let Some(tenant) = tenant {
        response.extensions_mut().insert(ResponseTenant(tenant));
    }
    response
}

/// The principal a handler acts for.
pub struct Caller(pub Principal);

impl Caller {
    /// The role check alone, for routes that reach no tenant's data.
    pub fn require_role(&self, needed: Role) -> Result<&Principal, ApiError> {
        if self.0.role.allows(needed) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role; the credential has {}",
                needed.as_str(),
                self.0.role.as_str()
            )))
        }
    }

    /// The tenant whose data the request reaches, if the role includes
    /// `needed`; else 403. An operator names the tenant with `x-tenant-id`.
    pub fn require(&self, needed: Role) -> Result<&Tenant, ApiError> {
        self.require_role(needed)?.tenant().ok_or_else(|| {
            ApiError::Forbidden(
                "an operator key reads a tenant's data only when the request names it with x-tenant-id"
                    .to_string(),
            )
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::Unauthenticated("a credential is required".to_string()))
    }
}

/// `Option<Caller>`: `None` when no principal was resolved, for the routes
/// that answer anyone (`/health`).
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned().map(Caller))
    }
}

/// Spends one of the principal's requests (`RATE_LIMIT_PER_MINUTE`); 429
/// with `Retry-After` when none is left. Runs after [`resolve`], so it
/// counts per key or token subject; requests without a principal (the
/// open routes) are not counted.
pub async fn rate_limit(
    axum::extract::State(limiter): axum::extract::State<Option<Arc<dyn RateLimiter>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let (Some(limiter), Some(principal)) = (&limiter, request.extensions().get::<Principal>()) {
        match limiter.acquire(&principal.id).await {
            Ok(RateDecision::Allowed) => {}
            Ok(RateDecision::Limited { retry_after }) => {
                let retry_after_secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                return ApiError::RateLimited { retry_after_secs }.into_response();
            }
            // A limiter that cannot count lets the request through: the
            // limit protects the service, an outage of it should not stop it.
            Err(e) => tracing::warn!(error = %e, "the rate limiter failed; request allowed"),
        }
    }
    next.run(request).await
}
