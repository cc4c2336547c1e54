//! Credentials of an assumed role, for calling Bedrock in another account:
//! `AssumeRole` from this function's or task's own credentials, or
//! `AssumeRoleWithWebIdentity` with a token read from a file (as EKS, or an
//! OIDC federation of the central account, provides it).
//!
//! The credentials are cached here, not in the SDK client (which is built
//! with no identity cache of its own), so the refresh policy is ours: a
//! call is answered from the cache at once while the credentials are valid
//! for longer than the refresh margin; within the margin, from the cache
//! still, while one refresh runs in the background; only expired or
//! missing credentials make a call wait for STS. Concurrent refreshes of
//! one role are one STS call.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError};
use aws_sdk_sts::Client;

/// How the role is assumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSource {
    /// `sts:AssumeRole` with the process's own credentials.
    AssumeRole { external_id: Option<String> },
    /// `sts:AssumeRoleWithWebIdentity` with the token this file holds, read
    /// again at each refresh (the file is rotated by whoever writes it).
    WebIdentityTokenFile(PathBuf),
}

/// One role to assume.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    pub role_arn: String,
    /// Shown in the account's CloudTrail as who called.
    pub session_name: String,
    pub source: RoleSource,
    /// Asked of STS (900 s at least, the role's maximum at most).
    pub duration: Duration,
    /// Credentials closer than this to expiry are refreshed.
    pub refresh_margin: Duration,
}

/// The most characters STS takes in a session name.
pub const MAX_SESSION_NAME: usize = 64;

/// `parts` joined by `-`, with what STS refuses replaced by `_`, cut to
/// its 64 characters.
pub fn session_name(parts: &[&str]) -> String {
    let joined = parts.join("-");
    joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_SESSION_NAME)
        .collect()
}

#[derive(Default)]
struct Cache {
    credentials: Option<Credentials>,
    /// A background refresh is running.
    refreshing: bool,
    /// STS calls made, for tests and metrics.
    fetches: u64,
}

struct Inner {
    sts: Client,
    spec: RoleSpec,
    cache: Mutex<Cache>,
    /// Serialises the refreshes that callers wait for.
    refresh: tokio::sync::Mutex<()>,
}

/// A role's credentials, cached; cheap to clone.
#[derive(Clone)]
pub struct RoleCredentials(Arc<Inner>);

impl std::fmt::Debug for RoleCredentials {
    // Never the credentials themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCredentials")
            .field("role_arn", &self.0.spec.role_arn)
            .field("session_name", &self.0.spec.session_name)
            .finish()
    }
}

fn remaining(credentials: &Credentials, now: SystemTime) -> Duration {
    credentials
        .expiry()
        .and_then(|expiry| expiry.duration_since(now).ok())
        .unwrap_or(Duration::ZERO)
}

impl RoleCredentials {
    pub fn new(sts: Client, spec: RoleSpec) -> Self {
        Self(Arc::new(Inner {
            sts,
            spec,
            cache: Mutex::new(Cache::default()),
            refresh: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn role_arn(&self) -> &str {
        &self.0.spec.role_arn
    }

    /// How many times STS was asked.
    pub fn fetches(&self) -> u64 {
        self.lock().fetches
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.0.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached credentials if they are still valid, starting a
    /// background refresh when they are within the margin.
    fn cached(&self) -> Option<Credentials> {
        let mut cache = self.lock();
        let credentials = cache.credentials.clone()?;
        let left = remaining(&credentials, SystemTime::now());
        if left.is_zero() {
            return None;
        }
        if left <= self.0.spec.refresh_margin && !cache.refreshing {
            cache.refreshing = true;
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.refresh().await {
                    tracing::warn!(role = %this.0.spec.role_arn, error = %e, "refreshing role credentials failed; the cached ones are used until they expire");
                }
                this.lock().refreshing = false;
            });
        }
        Some(credentials)
    }

    async fn credentials(&self) -> provider::Result {
        if let Some(credentials) = self.cached() {
            return Ok(credentials);
        }
        let _one_at_a_time = self.0.refresh.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(credentials) = self.cached() {
            return Ok(credentials);
        }
        self.refresh().await
    }

    async fn refresh(&self) -> provider::Result {
        let spec = &self.0.spec;
        let seconds = i32::try_from(spec.duration.as_secs()).unwrap_or(i32::MAX);
        let issued = match &spec.source {
            RoleSource::AssumeRole { external_id } => {
                self.0
                    .sts
                    .assume_role()
                    .role_arn(&spec.role_arn)
                    .role_session_name(&spec.session_name)
                    .duration_seconds(seconds)
                    .set_external_id(external_id.clone())
                    .send()
                    .await
                    .map_err(|e| CredentialsError::provider_error(describe(&e)))?
                    .credentials
            }
            RoleSource::WebIdentityTokenFile(path) => {
                let token = tokio::fs::read_to_string(path).await.map_err(|e| {
                    CredentialsError::invalid_configuration(format!(
                        "reading the web identity token file {}: {e}",
                        path.display()
                    ))
                })?;
                self.0
                    .sts
                    .assume_role_with_web_identity()
                    .role_arn(&spec.role_arn)
                    .role_session_name(&spec.session_name)
                    .duration_seconds(seconds)
                    .web_identity_token(token.trim())
                    .send()
                    .await
                    .map_err(|e| CredentialsError::provider_error(describe(&e)))?
                    .credentials
            }
        };
        let issued = issued
            .ok_or_else(|| CredentialsError::unhandled("STS answered without credentials"))?;
        let expiry = SystemTime::try_from(*issued.expiration()).map_err(|e| {
            CredentialsError::unhandled(format!("STS gave an expiry out of range: {e}"))
        })?;
        let credentials = Credentials::new(
            issued.access_key_id(),
            issued.secret_access_key(),
            Some(issued.session_token().to_string()),
            Some(expiry),
            "rag-agent-assumed-role",
        );
        let mut cache = self.lock();
        cache.fetches += 1;
        cache.credentials = Some(credentials.clone());
        Ok(credentials)
    }
}

/// An STS error as a line: its code and message, never a credential.
fn describe<E, R>(error: &aws_sdk_sts::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error,
    R: std::fmt::Debug,
{
    match error.as_service_error() {
        Some(service) => format!(
            "STS refused: {} {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or_default()
        ),
        None => format!("STS unreachable: {error}"),
    }
}

impl ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.credentials())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_keep_to_what_sts_takes() {
        assert_eq!(
            session_name(&["rag-agent", "use-case-a"]),
            "rag-agent-use-case-a"
        );
        assert_eq!(
            session_name(&["rag-agent", "team a/b"]),
            "rag-agent-team_a_b"
        );
        let long = session_name(&["rag-agent", &"x".repeat(100)]);
        assert_eq!(long.len(), MAX_SESSION_NAME);
    }
}
