//! The log's wire format and its replay: a header (magic, dimension),
//! then records of `len | checksum | payload`, each payload an upsert of
//! one chunk or the deletion of a document's rows. Replay stops at the
//! first torn or malformed record, which is where a crash cut the log.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use rag_core::{ChunkMetadata, StoreError};
use uuid::Uuid;

use super::io;
use super::rows::Rows;

pub(super) const MAGIC: &[u8; 8] = b"RAGVEC1\n";
const OP_UPSERT: u8 = 1;
const OP_DELETE_DOCUMENT: u8 = 2;
/// Bytes before the first record.
pub(super) const HEADER_LEN: u64 = (MAGIC.len() + 4) as u64;

pub(super) fn checksum(bytes: &[u8]) -> u32 {
    // FNV-1a: enough to detect a torn or garbled tail record.
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= b as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

pub(super) fn encode_upsert(
    dimension: usize,
    metadata: &ChunkMetadata,
    content: &str,
    vector: &[f32],
) -> Vec<u8> {
    let json = serde_json::to_vec(&(metadata, content)).expect("chunk metadata serialises");
    let mut payload = Vec::with_capacity(1 + 4 + json.len() + dimension * 4);
    payload.push(OP_UPSERT);
    payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
    payload.extend_from_slice(&json);
    for x in vector {
        payload.extend_from_slice(&x.to_le_bytes());
    }
    payload
}

pub(super) fn encode_delete(document_id: Uuid) -> Vec<u8> {
    let mut payload = vec![OP_DELETE_DOCUMENT];
    payload.extend_from_slice(document_id.as_bytes());
    payload
}

pub(super) fn write_record(writer: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    writer.write_all(&(payload.len() as u32).to_le_bytes())?;
    writer.write_all(&checksum(payload).to_le_bytes())?;
    writer.write_all(payload)
}

/// Applies one record; `None` if it is malformed.
fn apply(rows: &mut Rows, dimension: usize, payload: &[u8]) -> Option<()> {
    match *payload.first()? {
        OP_UPSERT => {
            let json_len = u32::from_le_bytes(payload.get(1..5)?.try_into().ok()?) as usize;
            let json = payload.get(5..5 + json_len)?;
            let (metadata, content): (ChunkMetadata, String) = serde_json::from_slice(json).ok()?;
            let floats = payload.get(5 + json_len..)?;
            if floats.len() != dimension * 4 {
                return None;
            }
            let vector: Vec<f32> = floats
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            rows.upsert(dimension, metadata, content, &vector);
        }
        OP_DELETE_DOCUMENT => {
            let id = Uuid::from_slice(payload.get(1..17)?).ok()?;
            rows.delete_document(dimension, id);
        }
        _ => return None,
    }
    Some(())
}

/// What replaying a log found.
pub(super) struct Replayed {
    pub rows: Rows,
    pub records: usize,
    /// Length of the log up to its last good record.
    pub valid_len: u64,
    /// The rows' length and generation right after the record that a saved
    /// graph names (`saved_records`): the graph fits the rows only if
    /// neither moved since.
    pub at_saved: Option<(usize, u64)>,
}

/// Replays the log at `path` (none yet is an empty index). A log of
/// another dimension is refused.
pub(super) fn replay(
    path: &Path,
    dimension: usize,
    saved_records: Option<u64>,
) -> Result<Replayed, StoreError> {
    let mut at_saved = None;
    let mut rows = Rows::default();
    let mut records = 0usize;
    let mut valid_len = HEADER_LEN;
    if path.exists() {
        let mut reader = BufReader::new(File::open(path).map_err(io)?);
        let mut header = [0u8; 12];
        reader.read_exact(&mut header).map_err(io)?;
        if &header[..8] != MAGIC {
            return Err(StoreError::permanent(format!(
                "{} is not a rag-agent vector index",
                path.display()
            )));
        }
        let stored = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        if stored != dimension {
            return Err(StoreError::Invalid(format!(
                "the vector index at {} holds {stored}-dimensional vectors but the embedding model produces {dimension}; use another data directory or delete the index to rebuild it",
                path.display()
            )));
        }
        loop {
            let mut head = [0u8; 8];
            if reader.read_exact(&mut head).is_err() {
                break;
            }
            let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
            let sum = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
            let mut payload = vec![0u8; len];
            if reader.read_exact(&mut payload).is_err() || checksum(&payload) != sum {
                tracing::warn!(path = %path.display(), "dropping a torn record at the end of the vector index");
                break;
            }
            if apply(&mut rows, dimension, &payload).is_none() {
                tracing::warn!(path = %path.display(), "dropping a malformed record at the end of the vector index");
                break;
            }
            records += 1;
            valid_len += 8 + len as u64;
            if saved_records == Some(rows.applied) {
                at_saved = Some((rows.entries.len(), rows.generation));
            }
        }
    }
    Ok(Replayed {
        rows,
        records,
        valid_len,
        at_saved,
    })
}
