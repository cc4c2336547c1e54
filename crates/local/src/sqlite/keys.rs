//! API keys in the same SQLite file, in their own table apart from every
//! tenant's data. Only digests are stored.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rag_core::keys::{ApiKeyRecord, KeyStore, KeyTenant};
use rag_core::{Role, StoreError};
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, db_error, parse_time, timestamp};

const KEY_COLUMNS: &str =
    "id, tenant, role, name, digest, created_at, expires_at, last_used_at, revoked";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("malformed key {what}").into(),
        )
    };
    let tenant: String = row.get(1)?;
    let role: String = row.get(2)?;
    let optional_time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        row.get::<_, Option<String>>(i)?
            .map(|s| parse_time(&s))
            .transpose()
    };
    Ok(ApiKeyRecord {
        id: row.get(0)?,
        tenant: KeyTenant::parse(&tenant).map_err(|_| bad("tenant"))?,
        role: Role::parse(&role).ok_or_else(|| bad("role"))?,
        name: row.get(3)?,
        digest: row.get(4)?,
        created_at: parse_time(&row.get::<_, String>(5)?)?,
        expires_at: optional_time(6)?,
        last_used_at: optional_time(7)?,
        revoked: row.get::<_, i64>(8)? != 0,
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let k = key.clone();
        self.with(move |conn| {
            let result = conn.execute(
                &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    k.id,
                    k.tenant.as_str(),
                    k.role.as_str(),
                    k.name,
                    k.digest,
                    timestamp(&k.created_at),
                    k.expires_at.as_ref().map(timestamp),
                    k.last_used_at.as_ref().map(timestamp),
                    i64::from(k.revoked),
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::Conflict(format!("key {} already exists", k.id)))
                }
                Err(e) => Err(db_error(e)),
            }
        })
        .await
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            conn.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                [id],
                key_from_row,
            )
            .optional()
            .map_err(db_error)
        })
        .await
    }

    async fn list_keys(&self, tenant: Option<&KeyTenant>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_string());
        self.with(move |conn| {
            let sql = match tenant {
                Some(_) => format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = ?1 ORDER BY created_at DESC, id"
                ),
                None => format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"),
            };
            let mut stmt = conn.prepare(&sql).map_err(db_error)?;
            let rows = match &tenant {
                Some(t) => stmt.query_map([t], key_from_row),
                None => stmt.query_map([], key_from_row),
            }
            .map_err(db_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
        })
        .await
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            conn.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", [id])
                .map(|n| n > 0)
                .map_err(db_error)
        })
        .await
    }

    async fn touch_key(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            conn.execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
                params![id, timestamp(&at)],
            )
            .map(|_| ())
            .map_err(db_error)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::Tenant;

    #[tokio::test]
    async fn keys_round_trip_list_by_tenant_and_revoke() {
        let store = SqliteStore::open_in_memory().unwrap();
        let team = KeyTenant::One(Tenant::new("team").unwrap());
        let key = ApiKeyRecord {
            id: "00ff".into(),
            tenant: team.clone(),
            role: Role::Writer,
            name: "ci".into(),
            digest: "ab".repeat(32),
            // Stored to the microsecond.
            created_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
            expires_at: None,
            last_used_at: None,
            revoked: false,
        };
        store.create_key(&key).await.unwrap();
        assert!(matches!(
            store.create_key(&key).await,
            Err(StoreError::Conflict(_))
        ));
        let operator = ApiKeyRecord {
            id: "01ff".into(),
            tenant: KeyTenant::All,
            ..key.clone()
        };
        store.create_key(&operator).await.unwrap();
        assert_eq!(store.get_key("00ff").await.unwrap().unwrap(), key);
        assert_eq!(
            store.list_keys(Some(&team)).await.unwrap(),
            vec![key.clone()]
        );
        assert_eq!(store.list_keys(None).await.unwrap().len(), 2);
        let at = Utc::now();
        store.touch_key("00ff", at).await.unwrap();
        assert!(
            store
                .get_key("00ff")
                .await
                .unwrap()
                .unwrap()
                .last_used_at
                .is_some()
        );
        assert!(store.revoke_key("00ff").await.unwrap());
        assert!(!store.revoke_key("nope").await.unwrap());
        assert!(store.get_key("00ff").await.unwrap().unwrap().revoked);
    }
}
