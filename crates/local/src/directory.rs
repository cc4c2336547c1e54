//! Local directories as a source of ingestion jobs (`file:///path`), read
//! only under the roots the deployment lists: the location and every item
//! are resolved (`..` and symbolic links followed) and must stay under a
//! root, so no API caller can make the server read another file. Each
//! file's version is its SHA-256, the same hash its document keeps.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use rag_core::RagError;
use rag_core::ingest::sync::{SourceItem, SourceObject, SyncSource};
use sha2::{Digest, Sha256};

/// The most files one job may list.
const MAX_FILES: usize = 100_000;

pub struct DirectorySource {
    /// Resolved at construction.
    roots: Vec<PathBuf>,
    /// A larger file fails its item without being read.
    max_file_bytes: u64,
}

impl DirectorySource {
    /// `roots` must exist; they are resolved now.
    pub fn new(roots: &[PathBuf], max_file_bytes: u64) -> std::io::Result<Self> {
        Ok(Self {
            roots: roots
                .iter()
                .map(std::fs::canonicalize)
                .collect::<Result<_, _>>()?,
            max_file_bytes,
        })
    }

    /// The resolved path `location` or a key names, if it is under a root.
    fn allowed(&self, location: &str) -> Result<PathBuf, RagError> {
        let raw = location
            .strip_prefix("file://")
            .filter(|path| path.starts_with('/'))
            .ok_or_else(|| {
                RagError::invalid(format!("{location:?} is not file:///absolute/path"))
            })?;
        let refused = || {
            RagError::invalid(format!(
                "{raw} is not under a directory of RAG_AGENT_SYNC_ROOTS"
            ))
        };
        let resolved = std::fs::canonicalize(raw).map_err(|_| refused())?;
        if self.roots.iter().any(|root| resolved.starts_with(root)) {
            Ok(resolved)
        } else {
            Err(refused())
        }
    }

    fn list_blocking(&self, location: &str) -> Result<Vec<SourceItem>, RagError> {
        let root = self.allowed(location)?;
        let mut items = Vec::new();
        let walk = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with('.')
            });
        for entry in walk {
            let entry = entry.map_err(|e| RagError::invalid(format!("listing {location}: {e}")))?;
            // Links are not followed: one could point outside the roots.
            if !entry.file_type().is_file() {
                continue;
            }
            if items.len() == MAX_FILES {
                return Err(RagError::invalid(format!(
                    "{location} holds more than {MAX_FILES} files; sync a narrower directory"
                )));
            }
            items.push(SourceItem {
                key: format!("file://{}", entry.path().display()),
                version: hash_file(entry.path())?,
            });
        }
        Ok(items)
    }

    fn fetch_blocking(&self, key: &str) -> Result<SourceObject, RagError> {
        let path = self.allowed(key)?;
        let size = std::fs::metadata(&path)
            .map_err(|e| RagError::invalid(format!("{key}: {e}")))?
            .len();
        if size > self.max_file_bytes {
            return Err(RagError::PayloadTooLarge {
                limit_bytes: self.max_file_bytes,
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| RagError::invalid(format!("{key}: {e}")))?;
        Ok(SourceObject {
            bytes: Bytes::from(bytes),
            content_type: None,
        })
    }
}

fn hash_file(path: &Path) -> Result<String, RagError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| RagError::invalid(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| RagError::invalid(format!("{}: {e}", path.display())))?;
    Ok(hex::encode(hasher.finalize()))
}

#[async_trait]
impl SyncSource for DirectorySource {
    /// Walks and hashes on a blocking thread.
    async fn list(&self, location: &str) -> Result<Vec<SourceItem>, RagError> {
        let this = Self {
            roots: self.roots.clone(),
            max_file_bytes: self.max_file_bytes,
        };
        let location = location.to_string();
        tokio::task::spawn_blocking(move || this.list_blocking(&location))
            .await
            .map_err(|e| RagError::invalid(format!("listing stopped: {e}")))?
    }

    async fn fetch(&self, key: &str) -> Result<SourceObject, RagError> {
        let this = Self {
            roots: self.roots.clone(),
            max_file_bytes: self.max_file_bytes,
        };
        let key = key.to_string();
        tokio::task::spawn_blocking(move || this.fetch_blocking(&key))
            .await
            .map_err(|e| RagError::invalid(format!("reading stopped: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_what_is_under_a_root_is_listed_or_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("docs");
        std::fs::create_dir_all(root.join("guide")).unwrap();
        std::fs::write(root.join("guide/a.md"), "alpha").unwrap();
        std::fs::write(root.join(".hidden.md"), "hidden").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "not yours").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
        let source = DirectorySource::new(std::slice::from_ref(&root), 1 << 20).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let location = format!("file://{}", root.display());

        let items = source.list(&location).await.unwrap();
        let keys: Vec<_> = items.iter().map(|i| i.key.clone()).collect();
        assert_eq!(keys, [format!("file://{}/guide/a.md", root.display())]);
        assert_eq!(items[0].version, hex::encode(Sha256::digest(b"alpha")));
        assert_eq!(&source.fetch(&keys[0]).await.unwrap().bytes[..], b"alpha");

        // Outside the roots, by path, by `..` or through a link: refused.
        let secret = std::fs::canonicalize(dir.path().join("secret.txt")).unwrap();
        for refused in [
            format!("file://{}", secret.display()),
            format!("file://{}/../secret.txt", root.display()),
            format!("file://{}/link.txt", root.display()),
            format!("file://{}", dir.path().display()),
            "file://relative/path".to_string(),
        ] {
            assert!(source.fetch(&refused).await.is_err(), "{refused}");
            assert!(source.list(&refused).await.is_err(), "{refused}");
        }
    }
}
