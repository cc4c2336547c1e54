//! Raw documents on disk, the local analogue of an S3 bucket. The
//! `default` tenant's files are under `documents/`, where files from
//! before tenants already are; any other tenant's under `tenants/<tenant>/`.

use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use rag_core::{DocumentStore, StoreError, Tenant};

/// Stores each key as a file under `root`. Writes go to a temporary file
/// first and are renamed into place, so a crash never leaves half a file.
pub struct FileDocumentStore {
    root: PathBuf,
}

impl FileDocumentStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(StoreError::permanent)?;
        Ok(Self { root })
    }

    fn path_of(&self, tenant: &Tenant, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        let safe = !key.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(StoreError::Invalid(format!("invalid document key {key:?}")));
        }
        Ok(self.tenant_root(tenant).join(relative))
    }

    fn tenant_root(&self, tenant: &Tenant) -> PathBuf {
        if tenant.is_default() {
            self.root.join("documents")
        } else {
            // A valid tenant id is one plain path segment.
            self.root.join("tenants").join(tenant.as_str())
        }
    }
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::permanent(e)
}

#[async_trait]
impl DocumentStore for FileDocumentStore {
    async fn put(
        &self,
        tenant: &Tenant,
        key: &str,
        bytes: Bytes,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        let path = self.path_of(tenant, key)?;
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(StoreError::permanent)?
        .map_err(io_error)
    }

    async fn get(&self, tenant: &Tenant, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path_of(tenant, key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
                what: format!("object {key}"),
            }),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn delete(&self, tenant: &Tenant, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(tenant, key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        // Keys look like `<id>/original`: drop the emptied folder.
        if let Some(parent) = path.parent()
            && parent != self.tenant_root(tenant)
        {
            let _ = tokio::fs::remove_dir(parent).await;
        }
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "local-files"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Tenant {
        Tenant::default_tenant()
    }

    #[tokio::test]
    async fn round_trips_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileDocumentStore::open(dir.path()).unwrap();
        let key = "a/original";
        store
            .put(&default(), key, Bytes::from_static(b"hello"), "text/plain")
            .await
            .unwrap();
        assert_eq!(&store.get(&default(), key).await.unwrap()[..], b"hello");
        store.delete(&default(), key).await.unwrap();
        assert!(matches!(
            store.get(&default(), key).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(!dir.path().join("documents/a").exists());
        store.delete(&default(), key).await.unwrap();
    }

    #[tokio::test]
    async fn one_tenants_key_never_names_anothers_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileDocumentStore::open(dir.path()).unwrap();
        let (a, b) = (Tenant::new("a").unwrap(), Tenant::new("b").unwrap());
        let key = "x/original";
        store
            .put(&a, key, Bytes::from_static(b"secret"), "text/plain")
            .await
            .unwrap();
        for other in [&b, &default()] {
            assert!(matches!(
                store.get(other, key).await,
                Err(StoreError::NotFound { .. })
            ));
            store.delete(other, key).await.unwrap();
        }
        assert_eq!(&store.get(&a, key).await.unwrap()[..], b"secret");
        assert!(dir.path().join("tenants/a/x/original").exists());
    }

    #[tokio::test]
    async fn refuses_keys_that_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileDocumentStore::open(dir.path()).unwrap();
        for key in ["../x", "/etc/passwd", "", "a/../../b"] {
            assert!(
                matches!(
                    store.get(&default(), key).await,
                    Err(StoreError::Invalid(_))
                ),
                "{key}"
            );
        }
    }
}
