//! `rag-agent keys create|list|revoke`: key management on the configured
//! metadata store directly, so the first key exists before any server runs
//! and a server that runs sees it at once.

use std::sync::Arc;

use anyhow::{Context, bail};
use rag_core::keys::{ApiKeyView, KeyService, KeyStore, KeyTenant, parse_duration};
use rag_local::SqliteStore;

use crate::aws;
use crate::config::{KeyStoreArgs, KeysCommand, MetadataBackend};

/// Opens the key store `serve` would use with the same settings.
pub async fn open_store(args: &KeyStoreArgs) -> anyhow::Result<Arc<dyn KeyStore>> {
    Ok(match args.aws.metadata_backend {
        MetadataBackend::Sqlite => {
            let data_dir = args.data_dir();
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
            Arc::new(
                SqliteStore::open(&data_dir.join("rag.sqlite3")).context("opening the database")?,
            )
        }
        MetadataBackend::Dynamodb => {
            let sdk = aws::sdk_config(&args.aws).await;
            Arc::new(aws::metadata_store(&sdk, &args.aws)?)
        }
    })
}

fn tenant(raw: &str) -> anyhow::Result<KeyTenant> {
    KeyTenant::parse(raw).map_err(|e| anyhow::anyhow!("--tenant: {e}"))
}

fn print_key(key: &ApiKeyView) {
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    println!(
        "{}  {:<20} {:<7} {:<24} created {}  expires {}  last used {}{}",
        key.id,
        key.tenant,
        key.role.as_str(),
        if key.name.is_empty() { "-" } else { &key.name },
        when(Some(key.created_at)),
        when(key.expires_at),
        when(key.last_used_at),
        if key.revoked { "  REVOKED" } else { "" }
    );
}

pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => {
            let tenant = tenant(&args.tenant)?;
            let role = rag_core::Role::from(args.role);
            if tenant == KeyTenant::All && role != rag_core::Role::Admin {
                bail!("a key of tenant * is a platform operator key and must have --role admin");
            }
            let expires_in = args
                .expires_in
                .as_deref()
                .map(|raw| {
                    parse_duration(raw).with_context(|| {
                        format!("--expires-in {raw:?} is not a duration like 30d, 12h or 90m")
                    })
                })
                .transpose()?;
            let keys = KeyService::new(open_store(&args.store).await?);
            let created = keys
                .create(tenant, role, args.name, expires_in)
                .await
                .context("storing the key")?;
            if args.store.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": created.id, "key": created.key, "tenant": created.tenant,
                        "role": created.role, "expires_at": created.expires_at,
                    })
                );
            } else {
                println!("{}", created.key);
                eprintln!(
                    "key {} for tenant {} ({}); this is the only time it is shown",
                    created.id,
                    created.tenant,
                    created.role.as_str()
                );
            }
        }
        KeysCommand::List(args) => {
            let filter = args.tenant.as_deref().map(tenant).transpose()?;
            let keys = KeyService::new(open_store(&args.store).await?);
            let listed = keys.list(filter.as_ref()).await.context("listing keys")?;
            if args.store.json {
                println!("{}", serde_json::to_string(&listed)?);
            } else if listed.is_empty() {
                eprintln!("no keys");
            } else {
                listed.iter().for_each(print_key);
            }
        }
        KeysCommand::Revoke(args) => {
            let keys = KeyService::new(open_store(&args.store).await?);
            let revoked = keys.revoke(&args.id).await.context("revoking the key")?;
            if !revoked {
                bail!("no key has the id {}", args.id);
            }
            if args.store.json {
                println!("{}", serde_json::json!({"id": args.id, "revoked": true}));
            } else {
                eprintln!(
                    "key {} revoked; servers stop accepting it within five seconds",
                    args.id
                );
            }
        }
    }
    Ok(())
}
