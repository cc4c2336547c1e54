//! API keys: `rag_<key id>_<secret>`, 256 bits of secret, stored only as a
//! SHA-256 digest beside the key's tenant, role, name and times. The
//! [`KeyService`] makes and revokes keys and turns a presented key into a
//! [`Principal`], comparing digests in constant time, caching what it read
//! for at most [`KEY_CACHE_TTL`] (so a revocation holds on every instance
//! within five seconds) and writing `last_used_at` at most once a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::principal::{Principal, Role, Scope};
use crate::tenant::Tenant;

/// How long a key read from the store is trusted before it is read again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(4);
/// `last_used_at` moves at most this often per key.
pub const LAST_USED_INTERVAL: Duration = Duration::from_secs(60);
/// Every key starts with this, so scanners and people can tell one.
pub const KEY_PREFIX: &str = "rag_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
/// The longest key name.
pub const MAX_KEY_NAME_CHARS: usize = 200;

/// Whose data a key reaches: one tenant, or every tenant (`*`) for a
/// platform operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyTenant {
    One(Tenant),
    All,
}

impl KeyTenant {
    pub fn parse(s: &str) -> Result<Self, crate::tenant::InvalidTenant> {
        if s == "*" {
            Ok(KeyTenant::All)
        } else {
            Tenant::new(s).map(KeyTenant::One)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            KeyTenant::One(t) => t.as_str(),
            KeyTenant::All => "*",
        }
    }
}

/// A stored key: everything but its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: KeyTenant,
    pub role: Role,
    pub name: String,
    /// Hex SHA-256 of the whole key.
    pub digest: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

/// What a listing shows of a key: never its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub tenant: String,
    #[schema(value_type = String)]
    pub role: Role,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(r: &ApiKeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            tenant: r.tenant.as_str().to_string(),
            role: r.role,
            name: r.name.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked: r.revoked,
        }
    }
}

/// A key just made: the only time its secret exists outside the caller.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub id: String,
    /// The key itself; shown once, never stored.
    pub key: String,
    pub tenant: String,
    #[schema(value_type = String)]
    pub role: Role,
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where keys are kept (SQLite rows, DynamoDB items), apart from any
/// tenant's data.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Fails with `Conflict` if the id exists.
    async fn create_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Newest first; only `tenant`'s keys when given (`KeyTenant::All`
    /// lists the operator keys).
    async fn list_keys(&self, tenant: Option<&KeyTenant>) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks the key revoked; returns whether it existed.
    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError>;
    async fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
}

/// Why a presented key proves nothing. The message is safe to show: it
/// never repeats the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the API key is malformed")]
    Malformed,
    /// Unknown id or wrong secret: the same answer for both.
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key has expired")]
    Expired,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the key store is unavailable")]
    Unavailable,
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Equal-length byte strings compared without an early exit, so the time
/// taken says nothing about where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key id of a well-formed key.
fn key_id(key: &str) -> Result<&str, KeyError> {
    let rest = key.strip_prefix(KEY_PREFIX).ok_or(KeyError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(KeyError::Malformed)?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(id, ID_BYTES * 2) || !hex(secret, SECRET_BYTES * 2) {
        return Err(KeyError::Malformed);
    }
    Ok(id)
}

struct Cached {
    record: ApiKeyRecord,
    read_at: Instant,
}

/// Makes, lists, revokes and checks keys over a [`KeyStore`].
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    cache: Mutex<HashMap<String, Cached>>,
    touched: Mutex<HashMap<String, Instant>>,
}

impl KeyService {
    pub fn new(store: Arc<dyn KeyStore>) -> Arc<Self> {
        Arc::new(Self {
            store,
            cache: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    /// Makes a key and stores its digest; the returned key is the only copy.
    pub async fn create(
        &self,
        tenant: KeyTenant,
        role: Role,
        name: Option<String>,
        expires_in: Option<chrono::Duration>,
    ) -> Result<CreatedKey, StoreError> {
        let name = name.unwrap_or_default();
        if name.chars().count() > MAX_KEY_NAME_CHARS {
            return Err(StoreError::Invalid(format!(
                "a key name has at most {MAX_KEY_NAME_CHARS} characters"
            )));
        }
        if expires_in.is_some_and(|d| d <= chrono::Duration::zero()) {
            return Err(StoreError::Invalid(
                "expires_in must be positive".to_string(),
            ));
        }
        let mut id = [0u8; ID_BYTES];
        let mut secret = [0u8; SECRET_BYTES];
        // ThreadRng is a CSPRNG seeded from the OS; dropped before any
        // await, since it cannot cross threads.
        {
            let mut rng = rand::rng();
            rng.fill_bytes(&mut id);
            rng.fill_bytes(&mut secret);
        }
        let id = hex::encode(id);
        let key = format!("{KEY_PREFIX}{id}_{}", hex::encode(secret));
        let now = Utc::now();
        let record = ApiKeyRecord {
            id: id.clone(),
            tenant,
            role,
            name,
            digest: digest(&key),
            created_at: now,
            expires_at: match expires_in {
                // Past year 9999 a timestamp no longer reads back as RFC 3339.
                Some(d) => Some(
                    now.checked_add_signed(d)
                        .filter(|at| chrono::Datelike::year(at) <= 9999)
                        .ok_or_else(|| {
                            StoreError::Invalid("expires_in is too far in the future".to_string())
                        })?,
                ),
                None => None,
            },
            last_used_at: None,
            revoked: false,
        };
        self.store.create_key(&record).await?;
        Ok(CreatedKey {
            id,
            key,
            tenant: record.tenant.as_str().to_string(),
            role,
            name: record.name,
            expires_at: record.expires_at,
        })
    }

    pub async fn list(&self, tenant: Option<&KeyTenant>) -> Result<Vec<ApiKeyView>, StoreError> {
        Ok(self
            .store
            .list_keys(tenant)
            .await?
            .iter()
            .map(ApiKeyView::from)
            .collect())
    }

    /// One key's record, for the admin routes to check whose it is.
    pub async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.store.get_key(id).await
    }

    /// Revokes a key; this instance stops accepting it at once, others
    /// within [`KEY_CACHE_TTL`].
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let existed = self.store.revoke_key(id).await?;
        self.lock_cache().remove(id);
        Ok(existed)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn record(&self, id: &str) -> Result<ApiKeyRecord, KeyError> {
        if let Some(cached) = self.lock_cache().get(id)
            && cached.read_at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(cached.record.clone());
        }
        let record = self
            .store
            .get_key(id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading an API key failed");
                KeyError::Unavailable
            })?
            .ok_or(KeyError::Invalid)?;
        self.lock_cache().insert(
            id.to_string(),
            Cached {
                record: record.clone(),
                read_at: Instant::now(),
            },
        );
        Ok(record)
    }

    /// The principal a presented key proves. `acting_for` is the tenant an
    /// operator key names (`x-tenant-id`); other keys ignore it.
    pub async fn authenticate(
        self: &Arc<Self>,
        key: &str,
        acting_for: Option<Tenant>,
    ) -> Result<Principal, KeyError> {
        let id = key_id(key)?;
        let record = self.record(id).await?;
        if !constant_time_eq(digest(key).as_bytes(), record.digest.as_bytes()) {
            return Err(KeyError::Invalid);
        }
        if record.revoked {
            return Err(KeyError::Revoked);
        }
        let now = Utc::now();
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyError::Expired);
        }
        self.note_use(&record, now);
        let scope = match record.tenant {
            KeyTenant::One(tenant) => Scope::Tenant(tenant),
            KeyTenant::All => Scope::Operator { acting_for },
        };
        Ok(Principal {
            scope,
            role: record.role,
            id: format!("key:{}", record.id),
            use_case: None,
        })
    }

    /// Writes `last_used_at` in the background, at most once a minute per
    /// key on this instance and not when the stored time is that recent.
    fn note_use(self: &Arc<Self>, record: &ApiKeyRecord, now: DateTime<Utc>) {
        let recent = record.last_used_at.is_some_and(|at| {
            (now - at)
                .to_std()
                .is_ok_and(|since| since < LAST_USED_INTERVAL)
        });
        if recent {
            return;
        }
        {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched
                .get(&record.id)
                .is_some_and(|at| at.elapsed() < LAST_USED_INTERVAL)
            {
                return;
            }
            touched.insert(record.id.clone(), Instant::now());
        }
        let (service, id) = (self.clone(), record.id.clone());
        tokio::spawn(async move {
            if let Err(e) = service.store.touch_key(&id, now).await {
                tracing::warn!(key_id = %id, error = %e, "could not record a key's last use");
            }
        });
    }
}

/// `30d`, `12h`, `90m`, `3600s` (or a bare number of seconds) as a duration.
pub fn parse_duration(s: &str) -> Option<chrono::Duration> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = number.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    chrono::Duration::try_seconds(n.checked_mul(seconds)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, ApiKeyRecord>>);

    #[async_trait]
    impl KeyStore for Memory {
        async fn create_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
            self.0.lock().unwrap().insert(key.id.clone(), key.clone());
            Ok(())
        }
        async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
            Ok(self.0.lock().unwrap().get(id).cloned())
        }
        async fn list_keys(
            &self,
            tenant: Option<&KeyTenant>,
        ) -> Result<Vec<ApiKeyRecord>, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .values()
                .filter(|k| tenant.is_none_or(|t| &k.tenant == t))
                .cloned()
                .collect())
        }
        async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .get_mut(id)
                .map(|k| k.revoked = true)
                .is_some())
        }
        async fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
            if let Some(k) = self.0.lock().unwrap().get_mut(id) {
                k.last_used_at = Some(at);
            }
            Ok(())
        }
    }

    fn team() -> KeyTenant {
        KeyTenant::One(Tenant::new("team").unwrap())
    }

    #[tokio::test]
    async fn a_key_proves_its_tenant_and_role_and_nothing_else_does() {
        let store = Arc::new(Memory::default());
        let keys = KeyService::new(store.clone());
        let made = keys.create(team(), Role::Writer, None, None).await.unwrap();
        assert!(made.key.starts_with("rag_") && made.key.len() == 4 + 16 + 1 + 64);
        let stored = store.get_key(&made.id).await.unwrap().unwrap();
        assert!(
            !stored.digest.contains(&made.key[21..]),
            "only a digest is kept"
        );
        let principal = keys.authenticate(&made.key, None).await.unwrap();
        assert_eq!(principal.role, Role::Writer);
        assert_eq!(principal.scope, Scope::Tenant(Tenant::new("team").unwrap()));

        let mut wrong = made.key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            keys.authenticate(&wrong, None).await,
            Err(KeyError::Invalid)
        );
        let unknown = format!("rag_{}_{}", "0".repeat(16), "0".repeat(64));
        assert_eq!(
            keys.authenticate(&unknown, None).await,
            Err(KeyError::Invalid)
        );
        for malformed in [
            "",
            "rag_",
            "Bearer x",
            &made.key[..made.key.len() - 1],
            "rag_zz_zz",
        ] {
            assert_eq!(
                keys.authenticate(malformed, None).await,
                Err(KeyError::Malformed),
                "{malformed}"
            );
        }
        assert!(keys.revoke(&made.id).await.unwrap());
        assert_eq!(
            keys.authenticate(&made.key, None).await,
            Err(KeyError::Revoked)
        );
    }

    #[tokio::test]
    async fn expired_keys_fail_and_operators_act_for_the_tenant_they_name() {
        let keys = KeyService::new(Arc::new(Memory::default()));
        let short = keys
            .create(
                team(),
                Role::Reader,
                None,
                Some(chrono::Duration::milliseconds(1)),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            keys.authenticate(&short.key, None).await,
            Err(KeyError::Expired)
        );
        let operator = keys
            .create(KeyTenant::All, Role::Admin, None, None)
            .await
            .unwrap();
        let named = Tenant::new("x").unwrap();
        let principal = keys
            .authenticate(&operator.key, Some(named.clone()))
            .await
            .unwrap();
        assert_eq!(
            principal.scope,
            Scope::Operator {
                acting_for: Some(named)
            }
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30d"), Some(chrono::Duration::days(30)));
        assert_eq!(parse_duration("12h"), Some(chrono::Duration::hours(12)));
        assert_eq!(parse_duration("90"), Some(chrono::Duration::seconds(90)));
        for bad in ["", "0d", "-1d", "3y", "d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
