//! Bearer JWTs from an OIDC provider (Cognito user pools or any other):
//! verified against the provider's JWKS, its issuer and audience, with a
//! small leeway on expiry. Only asymmetric algorithms are accepted: `none`
//! cannot even be parsed, and HMAC is refused, since a shared secret in a
//! JWKS would let anyone who reads it sign tokens. The tenant comes from one
//! claim (`custom:tenant` by default), the role from another
//! (`cognito:groups`: the groups `rag-reader`, `rag-writer`, `rag-admin`,
//! the highest winning).

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::principal::{Principal, Role, Scope};
use crate::tenant::Tenant;

/// The JWKS is fetched again after this long even with every `kid` known.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

/// Where the provider's keys are published.
pub enum JwksSource {
    /// `JWT_JWKS_URL`, e.g. Cognito's
    /// `https://cognito-idp.<region>.amazonaws.com/<pool id>/.well-known/jwks.json`.
    Url {
        client: reqwest::Client,
        url: String,
    },
    /// `JWT_JWKS_FILE`: a JWKS document on disk, read again on an unknown `kid`.
    File(PathBuf),
}

/// What a token must say, and where its tenant and role are.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub tenant_claim: String,
    pub role_claim: String,
    /// The claim naming the use case the token's requests run under
    /// (`BEDROCK_ROUTES`); a token without it has none of its own.
    pub use_case_claim: String,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// How often an unknown `kid` may make the verifier read the JWKS
    /// again, so tokens with made-up key ids cannot make it hammer the
    /// provider (30 s).
    pub refresh_at_most_every: Duration,
}

impl JwtSettings {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            tenant_claim: "custom:tenant".to_string(),
            role_claim: "cognito:groups".to_string(),
            use_case_claim: "use_case".to_string(),
            leeway_secs: 30,
            refresh_at_most_every: Duration::from_secs(30),
        }
    }
}

/// Why a token proves nothing (`Forbidden`: it proves someone, with no
/// tenant or role here). Messages never repeat the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the bearer token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted (only RS*, PS*, ES* and EdDSA)")]
    Algorithm,
    #[error("the token was signed by a key the identity provider does not publish")]
    UnknownKey,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("{0}")]
    Forbidden(String),
    #[error("the identity provider's keys could not be read")]
    Unavailable,
}

struct Keys {
    set: JwkSet,
    read_at: Instant,
}

/// Verifies tokens and turns them into principals.
pub struct JwtVerifier {
    settings: JwtSettings,
    source: JwksSource,
    keys: RwLock<Option<Keys>>,
    refreshing: tokio::sync::Mutex<()>,
}

fn asymmetric(alg: Algorithm) -> bool {
    use Algorithm::*;
    matches!(
        alg,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA
    )
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings, source: JwksSource) -> Self {
        Self {
            settings,
            source,
            keys: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads the JWKS now, so a wrong URL or file stops start-up.
    pub async fn load(&self) -> Result<(), String> {
        let set = self.fetch().await?;
        self.store(set);
        Ok(())
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let bytes = match &self.source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
            JwksSource::Url { client, url } => {
                let response = client
                    .get(url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| format!("fetching {url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("fetching {url}: status {}", response.status()));
                }
                response
                    .bytes()
                    .await
                    .map_err(|e| format!("fetching {url}: {e}"))?
                    .to_vec()
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| format!("the JWKS is not valid: {e}"))
    }

    fn store(&self, set: JwkSet) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(Keys {
            set,
            read_at: Instant::now(),
        });
    }

    fn key(&self, kid: &str) -> (Option<DecodingKey>, bool) {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let Some(keys) = keys.as_ref() else {
            return (None, true);
        };
        let stale = keys.read_at.elapsed() > JWKS_MAX_AGE;
        let found = keys
            .set
            .find(kid)
            .and_then(|jwk| DecodingKey::from_jwk(jwk).ok());
        let may_refresh = stale || keys.read_at.elapsed() >= self.settings.refresh_at_most_every;
        (found.filter(|_| !stale), may_refresh)
    }

    /// The key for `kid`, fetching the JWKS again (at most every 30 s) when
    /// it is unknown, since providers rotate keys by publishing new ones.
    async fn decoding_key(&self, kid: &str) -> Result<DecodingKey, JwtError> {
        let (found, may_refresh) = self.key(kid);
        if let Some(key) = found {
            return Ok(key);
        }
        if !may_refresh {
            return Err(JwtError::UnknownKey);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if let (Some(key), _) = self.key(kid) {
            return Ok(key);
        }
        match self.fetch().await {
            Ok(set) => self.store(set),
            Err(e) => {
                tracing::error!(error = %e, "refreshing the JWKS failed");
                return Err(JwtError::Unavailable);
            }
        }
        self.key(kid).0.ok_or(JwtError::UnknownKey)
    }

    /// The principal a token proves. `acting_for` is the tenant an
    /// operator (tenant claim `*`) names with `x-tenant-id`.
    pub async fn verify(
        &self,
        token: &str,
        acting_for: Option<Tenant>,
    ) -> Result<Principal, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if !asymmetric(header.alg) {
            return Err(JwtError::Algorithm);
        }
        let kid = header.kid.ok_or(JwtError::UnknownKey)?;
        let key = self.decoding_key(&kid).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.leeway = self.settings.leeway_secs;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => JwtError::Expired,
                    ErrorKind::InvalidIssuer => JwtError::Invalid("wrong issuer".into()),
                    ErrorKind::InvalidAudience => JwtError::Invalid("wrong audience".into()),
                    ErrorKind::InvalidSignature => JwtError::Invalid("bad signature".into()),
                    ErrorKind::ImmatureSignature => JwtError::Invalid("not valid yet".into()),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        JwtError::Invalid(format!("no {claim} claim"))
                    }
                    _ => JwtError::Invalid("rejected".into()),
                }
            })?
            .claims;
        self.principal(&claims, acting_for)
    }

    fn principal(&self, claims: &Value, acting_for: Option<Tenant>) -> Result<Principal, JwtError> {
        let tenant = claims
            .get(&self.settings.tenant_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                JwtError::Forbidden(format!(
                    "the token has no {} claim naming its tenant",
                    self.settings.tenant_claim
                ))
            })?;
        let scope = if tenant == "*" {
            Scope::Operator { acting_for }
        } else {
            Scope::Tenant(Tenant::new(tenant).map_err(|e| JwtError::Forbidden(e.to_string()))?)
        };
        let groups: Vec<&str> = match claims.get(&self.settings.role_claim) {
            Some(Value::String(one)) => one.split([' ', ',']).collect(),
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let role = groups
            .iter()
            .filter_map(|g| Role::parse(g.strip_prefix("rag-")?))
            .max()
            .ok_or_else(|| {
                JwtError::Forbidden(format!(
                    "the token's {} claim has none of rag-reader, rag-writer, rag-admin",
                    self.settings.role_claim
                ))
            })?;
        if matches!(scope, Scope::Operator { .. }) && role != Role::Admin {
            return Err(JwtError::Forbidden(
                "a token of tenant * must carry rag-admin".into(),
            ));
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let use_case = match claims.get(&self.settings.use_case_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) if crate::routing::valid_use_case(name).is_ok() => {
                Some(name.clone())
            }
            Some(_) => {
                return Err(JwtError::Forbidden(format!(
                    "the token's {} claim is not a use case name",
                    self.settings.use_case_claim
                )));
            }
        };
        Ok(Principal {
            scope,
            role,
            id: format!("sub:{subject}"),
            use_case,
        })
    }
}
