//! Bounds on what describes a document, checked before anything is
//! stored: every listing page carries titles, sources and metadata, so a
//! 1 MiB title would make each page megabytes.

use super::IngestInput;
use crate::error::RagError;

pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_SOURCE_CHARS: usize = 2048;
pub const MAX_METADATA_KEYS: usize = 32;
pub const MAX_METADATA_KEY_CHARS: usize = 64;
pub const MAX_METADATA_BYTES: usize = 8 * 1024;

pub(super) fn check_descriptors(input: &IngestInput) -> Result<(), RagError> {
    let too_long = |what: &str, value: &Option<String>, limit: usize| match value {
        Some(v) if v.chars().count() > limit => Err(RagError::invalid(format!(
            "{what} is longer than {limit} characters"
        ))),
        _ => Ok(()),
    };
    too_long("title", &input.title, MAX_TITLE_CHARS)?;
    too_long("source", &input.source, MAX_SOURCE_CHARS)?;
    too_long("the file name", &input.filename, MAX_SOURCE_CHARS)?;
    if input.metadata.len() > MAX_METADATA_KEYS {
        return Err(RagError::invalid(format!(
            "metadata has {} keys; at most {MAX_METADATA_KEYS} are allowed",
            input.metadata.len()
        )));
    }
    if let Some(key) = input
        .metadata
        .keys()
        .find(|k| k.is_empty() || k.chars().count() > MAX_METADATA_KEY_CHARS)
    {
        return Err(RagError::invalid(format!(
            "metadata keys must be 1 to {MAX_METADATA_KEY_CHARS} characters, not {:?}",
            key.chars()
                .take(MAX_METADATA_KEY_CHARS + 1)
                .collect::<String>()
        )));
    }
    let size = serde_json::to_vec(&input.metadata)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(RagError::invalid(format!(
            "metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed"
        )));
    }
    Ok(())
}

pub(super) fn check_chunk_count(count: usize, limit: usize) -> Result<(), RagError> {
    if count > limit {
        return Err(RagError::TooManyChunks { count, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_past_their_limits_are_refused() {
        let ok = IngestInput {
            title: Some("t".repeat(MAX_TITLE_CHARS)),
            ..IngestInput::default()
        };
        assert!(check_descriptors(&ok).is_ok());
        let long_title = IngestInput {
            title: Some("t".repeat(MAX_TITLE_CHARS + 1)),
            ..IngestInput::default()
        };
        assert!(check_descriptors(&long_title).is_err());
        let mut many = IngestInput::default();
        for i in 0..=MAX_METADATA_KEYS {
            many.metadata
                .insert(format!("k{i}"), serde_json::Value::Null);
        }
        assert!(check_descriptors(&many).is_err());
        let mut empty_key = IngestInput::default();
        empty_key
            .metadata
            .insert(String::new(), serde_json::Value::Null);
        assert!(check_descriptors(&empty_key).is_err());
    }

    #[test]
    fn the_chunk_cap_is_inclusive() {
        assert!(check_chunk_count(10, 10).is_ok());
        assert!(matches!(
            check_chunk_count(11, 10),
            Err(RagError::TooManyChunks {
                count: 11,
                limit: 10
            })
        ));
    }
}
