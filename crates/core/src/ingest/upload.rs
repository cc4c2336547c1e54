//! Direct uploads, for files past the API's request size limit. A client
//! declares a file (name, type, size and the usual descriptors) and is
//! answered with a document id and a URL to PUT the bytes to, valid for
//! [`UPLOAD_VALIDITY`]. The declaration is kept in the upload area until
//! the bytes arrive:
//!
//! - where the area can sign uploads (S3), the URL is a presigned PUT with
//!   the declared size and type bound into its signature, and the object's
//!   creation reaches the ingest queue (an S3 event notification), whose
//!   worker accepts the document under the promised id
//!   ([`JobHandler::handle_upload`](super::queue::JobHandler::handle_upload));
//! - otherwise the URL points at this server with a single-use token whose
//!   digest only the declaration holds, and the PUT is accepted there and
//!   then, entering the same queue as any other document.
//!
//! Either way the document then goes through the steps every document
//! does. An upload that cannot be accepted in the worker leaves its
//! document FAILED with the reason, so whoever waits on the promised id
//! learns why.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::queue::{Delivery, IngestJob, JobOutcome, upload_object_key};
use super::{IngestInput, IngestOutcome, Ingestor, content_hash, limits};
use crate::backend::{DocumentStore, PresignedPut, UploadSigner};
use crate::chunk::ChunkingOptions;
use crate::domain::{Document, DocumentStatus};
use crate::error::{ErrorClass, RagError, StoreError};
use crate::parse;
use crate::tenant::Tenant;

/// How long an upload URL stays valid.
pub const UPLOAD_VALIDITY: Duration = Duration::from_secs(15 * 60);

/// Where uploads are declared and, when signed, land.
#[derive(Clone)]
pub struct Uploads {
    /// Holds each upload's declaration and, for signed uploads, its bytes
    /// until the document is accepted.
    pub area: Arc<dyn DocumentStore>,
    /// Signs PUTs straight into `area`. Without one, the bytes come to this
    /// server, with a single-use token.
    pub signer: Option<Arc<dyn UploadSigner>>,
}

/// A file a client is about to upload.
#[derive(Debug, Clone, Default)]
pub struct UploadRequest {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub title: Option<String>,
    pub source: Option<String>,
    pub metadata: BTreeMap<String, serde_json::Value>,
    pub chunking: Option<ChunkingOptions>,
    pub new_version: bool,
}

/// Where the client sends the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadDestination {
    /// Straight to storage.
    Signed(PresignedPut),
    /// To this server's `PUT /documents/uploads/{id}?token=`.
    ThisServer { token: String },
}

/// The answer to a declared upload.
#[derive(Debug, Clone)]
pub struct UploadTicket {
    /// The document the upload becomes.
    pub document_id: Uuid,
    pub destination: UploadDestination,
    pub expires_at: DateTime<Utc>,
}

/// What a declared upload will be, kept until its bytes arrive.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Declaration {
    filename: String,
    content_type: String,
    size: u64,
    title: Option<String>,
    source: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
    chunking: Option<(usize, usize)>,
    new_version: bool,
    expires_at: DateTime<Utc>,
    /// Hex SHA-256 of the token's secret, for uploads sent to this server.
    token_sha256: Option<String>,
}

impl Declaration {
    fn input(&self, bytes: Bytes) -> IngestInput {
        IngestInput {
            bytes,
            declared_content_type: Some(self.content_type.clone()),
            filename: Some(self.filename.clone()),
            title: self.title.clone(),
            source: self.source.clone(),
            metadata: self.metadata.clone(),
            chunking: self
                .chunking
                .map(|(chunk_size, chunk_overlap)| ChunkingOptions {
                    chunk_size,
                    chunk_overlap,
                }),
            new_version: self.new_version,
        }
    }
}

fn declaration_key(id: Uuid) -> String {
    format!("{id}/declaration.json")
}

fn unknown_upload(id: Uuid) -> RagError {
    RagError::NotFound {
        what: "upload",
        id: id.to_string(),
    }
}

/// What became of an uploaded object handed to a worker.
pub(super) enum TakenUpload {
    /// Its document exists (now, or since an earlier delivery): index it.
    Accepted,
    /// Nothing more to do with this delivery, or do it again later.
    Finished(JobOutcome),
}

impl Ingestor {
    /// Declares an upload: checks what can be checked before the bytes
    /// exist, keeps the declaration and says where to send them.
    pub async fn declare_upload(
        &self,
        tenant: &Tenant,
        request: UploadRequest,
    ) -> Result<UploadTicket, RagError> {
        let uploads = self.upload_area()?;
        let limit = self.settings.max_upload_bytes;
        if request.filename.trim().is_empty() {
            return Err(RagError::invalid("filename must not be empty"));
        }
        if request.size == 0 {
            return Err(RagError::invalid("the document is empty"));
        }
        // The declaration itself is small and well formed; what it
        // declares is out of bounds, so this is the request's fault (400),
        // not a body too large to read (413).
        if request.size > limit {
            return Err(RagError::invalid(format!(
                "size: the file has {} bytes; an upload may have at most {limit} (RAG_AGENT_MAX_UPLOAD_BYTES)",
                request.size
            )));
        }
        // The type must be one a parser takes, or say nothing (left to the
        // file name and, once they arrive, the bytes).
        let essence = request
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            essence.as_str(),
            "" | "application/octet-stream" | "binary/octet-stream"
        ) {
            parse::detect_kind(Some(&request.content_type), Some(&request.filename), &[])?;
        }
        if let Some(chunking) = request.chunking {
            chunking.validate()?;
        }
        let declaration = Declaration {
            filename: request.filename,
            content_type: if request.content_type.trim().is_empty() {
                "application/octet-stream".to_string()
            } else {
                request.content_type
            },
            size: request.size,
            title: request.title,
            source: request.source,
            metadata: request.metadata,
            chunking: request.chunking.map(|c| (c.chunk_size, c.chunk_overlap)),
            new_version: request.new_version,
            expires_at: Utc::now()
                + chrono::Duration::from_std(UPLOAD_VALIDITY).expect("fifteen minutes"),
            token_sha256: None,
        };
        limits::check_descriptors(&declaration.input(Bytes::new()))?;
        let id = Uuid::new_v4();
        let (destination, declaration) = match &uploads.signer {
            Some(signer) => (
                UploadDestination::Signed(
                    signer
                        .presign_put(
                            tenant,
                            &upload_object_key(id),
                            declaration.size,
                            &declaration.content_type,
                            UPLOAD_VALIDITY,
                        )
                        .await?,
                ),
                declaration,
            ),
            None => {
                let mut secret = [0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                let secret = hex::encode(secret);
                // The tenant travels in the token ('~' is in no tenant id),
                // so the PUT needs no other credential, as a presigned URL
                // needs none.
                (
                    UploadDestination::ThisServer {
                        token: format!("{tenant}~{secret}"),
                    },
                    Declaration {
                        token_sha256: Some(hex::encode(Sha256::digest(secret.as_bytes()))),
                        ..declaration
                    },
                )
            }
        };
        let json = serde_json::to_vec(&declaration).expect("a declaration serialises as JSON");
        uploads
            .area
            .put(
                tenant,
                &declaration_key(id),
                Bytes::from(json),
                "application/json",
            )
            .await?;
        Ok(UploadTicket {
            document_id: id,
            destination,
            expires_at: declaration.expires_at,
        })
    }

    /// The bytes of an upload declared without a signer, PUT to this
    /// server with its token: accepted under the promised id and queued,
    /// as an ingest that does not wait. The token works once: a second PUT
    /// finds no declaration. Returns the tenant the token named.
    pub async fn receive_upload(
        self: &Arc<Self>,
        id: Uuid,
        token: &str,
        bytes: Bytes,
    ) -> Result<(Tenant, IngestOutcome), RagError> {
        let uploads = self.upload_area()?;
        let (tenant, secret) = token.rsplit_once('~').ok_or_else(|| unknown_upload(id))?;
        let tenant = Tenant::new(tenant).map_err(|_| unknown_upload(id))?;
        let declaration = self
            .declaration(uploads, &tenant, id)
            .await?
            .ok_or_else(|| unknown_upload(id))?;
        let presented = hex::encode(Sha256::digest(secret.as_bytes()));
        // A wrong token, an expired one, and a signed upload (which is
        // never PUT here) all look like an unknown upload.
        let matches = declaration
            .token_sha256
            .as_deref()
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), presented.as_bytes()));
        if !matches || Utc::now() > declaration.expires_at {
            return Err(unknown_upload(id));
        }
        if bytes.len() as u64 != declaration.size {
            return Err(RagError::invalid(format!(
                "the upload was declared as {} bytes, and {} arrived",
                declaration.size,
                bytes.len()
            )));
        }
        let limit = self.settings.max_upload_bytes;
        let outcome = self
            .accept_as(&tenant, declaration.input(bytes), id, limit)
            .await?;
        if let Err(e) = uploads.area.delete(&tenant, &declaration_key(id)).await {
            tracing::warn!(%id, error = %e, "could not remove an accepted upload's declaration");
        }
        let outcome = self.index_accepted(&tenant, outcome, false).await?;
        Ok((tenant, outcome))
    }

    /// Accepts the document of an upload that arrived in the upload area,
    /// unless an earlier delivery already did.
    pub(super) async fn take_upload(&self, job: &IngestJob, delivery: Delivery) -> TakenUpload {
        let (tenant, id) = (&job.tenant, job.document_id);
        let retry = |e: &dyn std::fmt::Display| {
            TakenUpload::Finished(JobOutcome::Retry {
                reason: e.to_string(),
            })
        };
        let Ok(uploads) = self.upload_area() else {
            tracing::error!(%tenant, %id, "an upload reached a worker that has no upload area");
            return retry(&"this worker has no upload area");
        };
        match self.stores().metadata.get(tenant, id).await {
            Ok(Some(_)) => return TakenUpload::Accepted,
            Ok(None) => {}
            Err(e) => return retry(&e),
        }
        let declaration = match self.declaration(uploads, tenant, id).await {
            Ok(Some(declaration)) => declaration,
            Ok(None) => {
                tracing::warn!(%tenant, %id, "an uploaded object that no declaration awaits (never declared, or already taken); left alone");
                return TakenUpload::Finished(JobOutcome::Done);
            }
            Err(e) => return retry(&e),
        };
        let bytes = match uploads.area.get(tenant, &upload_object_key(id)).await {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound { .. }) => {
                tracing::warn!(%tenant, %id, "an upload event for an object that is gone");
                return TakenUpload::Finished(JobOutcome::Done);
            }
            Err(e) => return retry(&e),
        };
        let hash = content_hash(&bytes);
        let accepted = if bytes.len() as u64 == declaration.size {
            let limit = self.settings.max_upload_bytes;
            self.accept_as(tenant, declaration.input(bytes), id, limit)
                .await
        } else {
            Err(RagError::invalid(format!(
                "the upload was declared as {} bytes, and {} arrived",
                declaration.size,
                bytes.len()
            )))
        };
        let reason = match accepted {
            Ok(IngestOutcome::Created(_)) => {
                self.discard_upload(uploads, tenant, id).await;
                return TakenUpload::Accepted;
            }
            // Another worker accepted it meanwhile.
            Err(RagError::Store(StoreError::Conflict(_))) => return TakenUpload::Accepted,
            Ok(IngestOutcome::Duplicate(existing)) => format!(
                "the same bytes are already document {}; declare the upload with new_version to index them again",
                existing.id
            ),
            Err(e) if is_transient(&e) && !delivery.is_last() => return retry(&e),
            Err(e) => e.to_string(),
        };
        TakenUpload::Finished(
            match self
                .fail_upload(uploads, tenant, id, &declaration, hash, reason)
                .await
            {
                Ok(()) => JobOutcome::Done,
                Err(e) => JobOutcome::Retry {
                    reason: e.to_string(),
                },
            },
        )
    }

    /// A dead-lettered upload whose document was never accepted: FAILED
    /// with `reason`, from its declaration. `None` when there is no such
    /// upload.
    pub(super) async fn fail_abandoned_upload(
        &self,
        tenant: &Tenant,
        id: Uuid,
        reason: String,
    ) -> Option<Result<(), RagError>> {
        let uploads = self.upload_area().ok()?;
        let declaration = match self.declaration(uploads, tenant, id).await {
            Ok(declaration) => declaration?,
            Err(e) => return Some(Err(e)),
        };
        Some(
            self.fail_upload(uploads, tenant, id, &declaration, String::new(), reason)
                .await,
        )
    }

    /// Records the promised document as FAILED with `reason` and removes
    /// what the upload left.
    async fn fail_upload(
        &self,
        uploads: &Uploads,
        tenant: &Tenant,
        id: Uuid,
        declaration: &Declaration,
        hash: String,
        reason: String,
    ) -> Result<(), RagError> {
        tracing::warn!(%tenant, %id, reason, "an upload could not be accepted");
        let now = Utc::now();
        let chunking = declaration
            .input(Bytes::new())
            .chunking
            .unwrap_or(self.settings.chunking);
        let document = Document {
            id,
            title: declaration
                .title
                .clone()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| declaration.filename.clone()),
            content: None,
            source: declaration
                .source
                .clone()
                .unwrap_or_else(|| declaration.filename.clone()),
            content_type: declaration.content_type.clone(),
            status: DocumentStatus::Failed,
            chunk_count: 0,
            token_count: 0,
            chunk_size: chunking.chunk_size as u32,
            chunk_overlap: chunking.chunk_overlap as u32,
            size_bytes: declaration.size,
            content_hash: hash,
            error: Some(reason),
            created_at: now,
            updated_at: now,
            indexed_at: None,
            extra_metadata: declaration.metadata.clone(),
        };
        match self.stores().metadata.insert(tenant, &document).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.discard_upload(uploads, tenant, id).await;
        Ok(())
    }

    /// Removes an upload's declaration and bytes once its document exists.
    async fn discard_upload(&self, uploads: &Uploads, tenant: &Tenant, id: Uuid) {
        for key in [declaration_key(id), upload_object_key(id)] {
            if let Err(e) = uploads.area.delete(tenant, &key).await {
                tracing::warn!(%tenant, %id, key, error = %e, "could not remove what an upload left");
            }
        }
    }

    async fn declaration(
        &self,
        uploads: &Uploads,
        tenant: &Tenant,
        id: Uuid,
    ) -> Result<Option<Declaration>, RagError> {
        match uploads.area.get(tenant, &declaration_key(id)).await {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(declaration) => Ok(Some(declaration)),
                Err(e) => {
                    tracing::error!(%tenant, %id, error = %e, "an upload's declaration is damaged");
                    Ok(None)
                }
            },
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn upload_area(&self) -> Result<&Uploads, RagError> {
        self.uploads.as_ref().ok_or_else(|| {
            RagError::Unavailable("direct uploads are not configured on this deployment".into())
        })
    }
}

fn is_transient(error: &RagError) -> bool {
    super::worker::class_of(error) == Some(ErrorClass::Transient)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_round_trips_into_the_input_it_describes() {
        let declaration = Declaration {
            filename: "manual.pdf".into(),
            content_type: "application/pdf".into(),
            size: 3,
            title: Some("Manual".into()),
            source: None,
            metadata: BTreeMap::from([("team".into(), serde_json::json!("ops"))]),
            chunking: Some((500, 50)),
            new_version: true,
            expires_at: Utc::now(),
            token_sha256: None,
        };
        let json = serde_json::to_vec(&declaration).unwrap();
        let back: Declaration = serde_json::from_slice(&json).unwrap();
        let input = back.input(Bytes::from_static(b"abc"));
        assert_eq!(input.filename.as_deref(), Some("manual.pdf"));
        assert_eq!(input.chunking.unwrap().chunk_size, 500);
        assert!(input.new_version);
        assert_eq!(input.metadata["team"], "ops");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
