//! Direct uploads on the in-memory fakes: declared, then sent to this
//! server with a single-use token, or signed into an upload area where a
//! worker takes them when the storage event arrives. Each ends with the
//! promised document INDEXED once, or FAILED with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rag_core::backend::{DocumentStore, MetadataStore, PresignedPut, UploadSigner};
use rag_core::ingest::queue::{Delivery, IngestJob, JobHandler, JobOutcome, upload_object_key};
use rag_core::ingest::{UploadDestination, UploadRequest, Uploads};
use rag_core::test_util::{LetterEmbedder, MemoryStores};
use rag_core::{DocumentStatus, IngestOutcome, Ingestor, RagError, StoreError, Tenant};
use uuid::Uuid;

mod common;
use common::{ingestor, six_chunk_document};

fn tenant() -> Tenant {
    Tenant::new("team-a").unwrap()
}

/// Signs nothing real: the test plays the client and writes the bytes
/// into the area itself, as S3 would on a presigned PUT.
struct AreaSigner;

#[async_trait]
impl UploadSigner for AreaSigner {
    async fn presign_put(
        &self,
        tenant: &Tenant,
        key: &str,
        size: u64,
        content_type: &str,
        _valid_for: Duration,
    ) -> Result<PresignedPut, StoreError> {
        Ok(PresignedPut {
            url: format!("memory://{tenant}/{key}"),
            headers: [
                ("content-length".to_string(), size.to_string()),
                ("content-type".to_string(), content_type.to_string()),
            ]
            .into(),
        })
    }
}

struct Fixture {
    memory: MemoryStores,
    area: MemoryStores,
    ingestor: Arc<Ingestor>,
}

fn fixture(signed: bool) -> Fixture {
    let memory = MemoryStores::default();
    let area = MemoryStores::default();
    let ingestor = ingestor(&memory, LetterEmbedder::default()).with_uploads(Uploads {
        area: Arc::new(area.clone()),
        signer: signed.then(|| Arc::new(AreaSigner) as Arc<dyn UploadSigner>),
    });
    Fixture {
        memory,
        area,
        ingestor,
    }
}

fn six_chunks() -> Bytes {
    six_chunk_document().bytes
}

fn request(bytes: &Bytes) -> UploadRequest {
    UploadRequest {
        filename: "notes.txt".into(),
        content_type: "text/plain".into(),
        size: bytes.len() as u64,
        title: Some("Notes".into()),
        chunking: six_chunk_document().chunking,
        ..UploadRequest::default()
    }
}

async fn status_of(memory: &MemoryStores, id: Uuid) -> Option<rag_core::Document> {
    MetadataStore::get(memory, &tenant(), id).await.unwrap()
}

async fn wait_settled(memory: &MemoryStores, id: Uuid) -> rag_core::Document {
    let started = Instant::now();
    loop {
        if let Some(doc) = status_of(memory, id).await
            && matches!(doc.status, DocumentStatus::Indexed | DocumentStatus::Failed)
        {
            return doc;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delivery(receive_count: u32) -> Delivery {
    Delivery {
        receive_count,
        max_receives: 3,
    }
}

#[tokio::test]
async fn an_upload_sent_here_is_indexed_under_its_promised_id_and_its_token_works_once() {
    let f = fixture(false);
    let bytes = six_chunks();
    let ticket = f
        .ingestor
        .declare_upload(&tenant(), request(&bytes))
        .await
        .unwrap();
    let UploadDestination::ThisServer { token } = &ticket.destination else {
        panic!("not a token: {:?}", ticket.destination)
    };
    assert!(token.starts_with("team-a~"), "{token}");
    let id = ticket.document_id;
    assert!(
        status_of(&f.memory, id).await.is_none(),
        "no document before the bytes"
    );

    // A wrong secret, another tenant's name and a wrong size are refused;
    // none of them uses the token up.
    let (name, secret) = token.rsplit_once('~').unwrap();
    let wrong = format!("{name}~{}", "0".repeat(secret.len()));
    for bad in [wrong.as_str(), &format!("team-b~{secret}"), "no-tilde"] {
        let refused = f.ingestor.receive_upload(id, bad, bytes.clone()).await;
        assert!(
            matches!(refused, Err(RagError::NotFound { what: "upload", .. })),
            "{bad}: {refused:?}"
        );
    }
    let short = f.ingestor.receive_upload(id, token, bytes.slice(1..)).await;
    assert!(matches!(short, Err(RagError::InvalidInput(_))), "{short:?}");

    let (owner, outcome) = f
        .ingestor
        .receive_upload(id, token, bytes.clone())
        .await
        .unwrap();
    assert_eq!(owner, tenant());
    let IngestOutcome::Created(document) = outcome else {
        panic!("not created")
    };
    assert_eq!(document.id, id);
    assert_eq!(document.title, "Notes");
    let indexed = wait_settled(&f.memory, id).await;
    assert_eq!(indexed.status, DocumentStatus::Indexed, "{indexed:?}");
    assert_eq!(f.memory.chunk_count(id), 6);

    let again = f.ingestor.receive_upload(id, token, bytes).await;
    assert!(matches!(again, Err(RagError::NotFound { .. })), "{again:?}");
}

#[tokio::test]
async fn a_signed_upload_is_accepted_by_the_worker_once_however_often_its_event_comes() {
    let f = fixture(true);
    let bytes = six_chunks();
    let ticket = f
        .ingestor
        .declare_upload(&tenant(), request(&bytes))
        .await
        .unwrap();
    let UploadDestination::Signed(put) = &ticket.destination else {
        panic!("not signed")
    };
    assert_eq!(put.headers["content-length"], bytes.len().to_string());
    let id = ticket.document_id;
    // A token for this server does not exist for a signed upload.
    assert!(
        f.ingestor
            .receive_upload(id, "team-a~00", bytes.clone())
            .await
            .is_err()
    );
    DocumentStore::put(
        &f.area,
        &tenant(),
        &upload_object_key(id),
        bytes.clone(),
        "text/plain",
    )
    .await
    .unwrap();
    let job = IngestJob {
        tenant: tenant(),
        document_id: id,
    };
    assert_eq!(
        f.ingestor.handle_upload(&job, delivery(1)).await,
        JobOutcome::Done
    );
    let indexed = status_of(&f.memory, id).await.unwrap();
    assert_eq!(indexed.status, DocumentStatus::Indexed, "{indexed:?}");
    assert_eq!(f.memory.chunk_count(id), 6);
    // What the upload left is gone: only the document's own files remain.
    assert!(
        !DocumentStore::exists(&f.area, &tenant(), &upload_object_key(id))
            .await
            .unwrap()
    );
    assert!(
        !DocumentStore::exists(&f.area, &tenant(), &format!("{id}/declaration.json"))
            .await
            .unwrap()
    );

    // The event delivered again changes nothing.
    assert_eq!(
        f.ingestor.handle_upload(&job, delivery(2)).await,
        JobOutcome::Done
    );
    let again = status_of(&f.memory, id).await.unwrap();
    assert_eq!(again.updated_at, indexed.updated_at);
    assert_eq!(f.memory.chunk_count(id), 6);
}

#[tokio::test]
async fn a_signed_upload_no_parser_reads_leaves_its_document_failed_with_why() {
    let f = fixture(true);
    let garbage = Bytes::from_static(b"%PDF-1.7 this is not a PDF at all");
    let ticket = f
        .ingestor
        .declare_upload(
            &tenant(),
            UploadRequest {
                filename: "broken.pdf".into(),
                content_type: "application/pdf".into(),
                size: garbage.len() as u64,
                ..UploadRequest::default()
            },
        )
        .await
        .unwrap();
    let id = ticket.document_id;
    DocumentStore::put(
        &f.area,
        &tenant(),
        &upload_object_key(id),
        garbage,
        "application/pdf",
    )
    .await
    .unwrap();
    let job = IngestJob {
        tenant: tenant(),
        document_id: id,
    };
    assert_eq!(
        f.ingestor.handle_upload(&job, delivery(1)).await,
        JobOutcome::Done
    );
    let failed = status_of(&f.memory, id).await.unwrap();
    assert_eq!(failed.status, DocumentStatus::Failed);
    assert_eq!(failed.title, "broken.pdf");
    assert!(
        failed.error.as_deref().unwrap().contains("PDF"),
        "{failed:?}"
    );
    assert_eq!(f.memory.chunk_count(id), 0);
}

#[tokio::test]
async fn a_dead_lettered_upload_that_was_never_accepted_is_failed() {
    let f = fixture(true);
    let bytes = six_chunks();
    let ticket = f
        .ingestor
        .declare_upload(&tenant(), request(&bytes))
        .await
        .unwrap();
    let job = IngestJob {
        tenant: tenant(),
        document_id: ticket.document_id,
    };
    // Its worker never got to it (killed on every receive).
    assert_eq!(f.ingestor.dead_letter(&job).await, JobOutcome::Done);
    let failed = status_of(&f.memory, ticket.document_id).await.unwrap();
    assert_eq!(failed.status, DocumentStatus::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .starts_with("gave up after 3 deliveries"),
        "{failed:?}"
    );
    // An event for an object nobody declared is left alone.
    let stray = IngestJob {
        tenant: tenant(),
        document_id: Uuid::new_v4(),
    };
    assert_eq!(
        f.ingestor.handle_upload(&stray, delivery(1)).await,
        JobOutcome::Done
    );
    assert!(status_of(&f.memory, stray.document_id).await.is_none());
}

#[tokio::test]
async fn a_declaration_is_checked_before_any_bytes_exist() {
    let f = fixture(false);
    let ok = request(&six_chunks());
    let too_large = f
        .ingestor
        .declare_upload(
            &tenant(),
            UploadRequest {
                size: 51 * 1024 * 1024,
                ..ok.clone()
            },
        )
        .await;
    assert!(
        matches!(&too_large, Err(RagError::InvalidInput(m)) if m.contains("at most 52428800")),
        "{too_large:?}"
    );
    for bad in [
        UploadRequest {
            size: 0,
            ..ok.clone()
        },
        UploadRequest {
            filename: " ".into(),
            ..ok.clone()
        },
        UploadRequest {
            title: Some("t".repeat(501)),
            ..ok.clone()
        },
    ] {
        let refused = f.ingestor.declare_upload(&tenant(), bad).await;
        assert!(
            matches!(refused, Err(RagError::InvalidInput(_))),
            "{refused:?}"
        );
    }
    let unsupported = f
        .ingestor
        .declare_upload(
            &tenant(),
            UploadRequest {
                content_type: "image/png".into(),
                ..ok.clone()
            },
        )
        .await;
    assert!(
        matches!(unsupported, Err(RagError::Parse(_))),
        "{unsupported:?}"
    );
    // A type that says nothing leaves the format to the name and bytes.
    f.ingestor
        .declare_upload(
            &tenant(),
            UploadRequest {
                content_type: "application/octet-stream".into(),
                ..ok
            },
        )
        .await
        .unwrap();
}
