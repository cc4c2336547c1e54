//! The ingestion state machine on the in-memory fakes: PENDING ->
//! PROCESSING -> INDEXED, FAILED with the document's own reason, and
//! recovery of a document an interruption left PROCESSING with half of its
//! chunks written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rag_core::backend::MetadataStore;
use rag_core::catalog::Catalog;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::ingest::{IngestSettings, raw_key};
use rag_core::parse::{ParseLimits, ThreadParser};
use rag_core::test_util::{Gate, LetterEmbedder, MemoryStores};
use rag_core::{
    Document, DocumentStatus, IngestInput, IngestOutcome, Ingestor, ParseError, RagError, Tenant,
};
use uuid::Uuid;

mod common;
use common::{ingestor, six_chunk_document};

fn tenant() -> Tenant {
    Tenant::default_tenant()
}

async fn status(memory: &MemoryStores, id: Uuid) -> Document {
    MetadataStore::get(memory, &tenant(), id)
        .await
        .unwrap()
        .unwrap()
}

async fn until_status(memory: &MemoryStores, id: Uuid, wanted: DocumentStatus) -> Document {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let document = status(memory, id).await;
        if document.status == wanted {
            return document;
        }
        assert!(Instant::now() < deadline, "still {:?}", document.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Embedding runs two batches ahead of storing, so a batch can be held at
/// the gate a moment before the one before it is stored.
async fn until_chunks(memory: &MemoryStores, id: Uuid, wanted: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while memory.chunk_count(id) != wanted {
        assert!(
            Instant::now() < deadline,
            "{} chunks stored",
            memory.chunk_count(id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_goes_pending_processing_indexed() {
    let memory = MemoryStores::default();
    let gate = Gate::closed_after(1);
    let ingestor = ingestor(&memory, LetterEmbedder::gated(gate.clone()));
    let held = gate.held();
    let IngestOutcome::Created(document) = ingestor
        .ingest(&tenant(), six_chunk_document(), false)
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    assert_eq!(document.status, DocumentStatus::Pending);
    held.await;
    // The second batch is held: the first is stored, the document claimed.
    until_chunks(&memory, document.id, 2).await;
    assert_eq!(
        status(&memory, document.id).await.status,
        DocumentStatus::Processing
    );
    gate.open();
    let indexed = until_status(&memory, document.id, DocumentStatus::Indexed).await;
    assert_eq!(indexed.chunk_count, 6);
    assert_eq!(memory.chunk_count(document.id), 6);
    assert!(indexed.indexed_at.is_some() && indexed.error.is_none());
}

#[tokio::test]
async fn the_same_bytes_again_are_a_duplicate_unless_a_new_version_is_asked() {
    let memory = MemoryStores::default();
    let ingestor = ingestor(&memory, LetterEmbedder::default());
    let first = ingestor
        .ingest(&tenant(), six_chunk_document(), true)
        .await
        .unwrap();
    let again = ingestor
        .ingest(&tenant(), six_chunk_document(), true)
        .await
        .unwrap();
    assert!(matches!(again, IngestOutcome::Duplicate(ref d) if d.id == first.document().id));
    let version = IngestInput {
        new_version: true,
        ..six_chunk_document()
    };
    let second = ingestor.ingest(&tenant(), version, true).await.unwrap();
    assert!(matches!(second, IngestOutcome::Created(ref d) if d.status == DocumentStatus::Indexed));
}

/// A process that stops mid-document (the task dropped at the gate, as a
/// crash would stop it) leaves it PROCESSING with two of six chunks
/// written; recovery on a fresh ingestor indexes it once, with no chunk
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_resumes_a_document_left_processing_with_half_its_chunks() {
    let memory = MemoryStores::default();
    let gate = Gate::closed_after(1);
    let interrupted = ingestor(&memory, LetterEmbedder::gated(gate.clone()));
    let IngestOutcome::Created(document) = interrupted
        .accept(&tenant(), six_chunk_document())
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    let held = gate.held();
    let running = tokio::spawn({
        let interrupted = interrupted.clone();
        async move { interrupted.process(&tenant(), document.id).await }
    });
    held.await;
    until_chunks(&memory, document.id, 2).await;
    assert_eq!(
        status(&memory, document.id).await.status,
        DocumentStatus::Processing
    );
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());

    let restarted = ingestor(&memory, LetterEmbedder::default());
    assert_eq!(restarted.recover().await.unwrap(), 1);
    let indexed = until_status(&memory, document.id, DocumentStatus::Indexed).await;
    assert_eq!(indexed.chunk_count, 6);
    assert_eq!(memory.chunk_count(document.id), 6);
}

#[tokio::test]
async fn a_corrupt_pdf_is_the_documents_fault_when_accepted_and_when_recovered() {
    let memory = MemoryStores::default();
    let ingestor = ingestor(&memory, LetterEmbedder::default());
    let corrupt = bytes::Bytes::from_static(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF");
    let error = ingestor
        .ingest(
            &tenant(),
            IngestInput {
                bytes: corrupt.clone(),
                declared_content_type: Some("application/pdf".into()),
                ..IngestInput::default()
            },
            true,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RagError::Parse(ParseError::Malformed { .. } | ParseError::Empty)
        ),
        "{error:?}"
    );

    // The same bytes as the only file of a PENDING document (its text
    // never written): processing fails it with the parser's reason.
    let IngestOutcome::Created(document) = ingestor
        .accept(&tenant(), six_chunk_document())
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    memory.remove_file(&tenant(), &rag_core::ingest::text_key(document.id));
    use rag_core::backend::DocumentStore;
    DocumentStore::put(
        &memory,
        &tenant(),
        &raw_key(document.id),
        corrupt,
        "application/pdf",
    )
    .await
    .unwrap();
    let mut row = status(&memory, document.id).await;
    row.content_type = "application/pdf".into();
    MetadataStore::delete(&memory, &tenant(), document.id)
        .await
        .unwrap();
    MetadataStore::insert(&memory, &tenant(), &row)
        .await
        .unwrap();
    let failed = ingestor.process(&tenant(), document.id).await.unwrap();
    assert_eq!(failed.status, DocumentStatus::Failed);
    let reason = failed.error.unwrap();
    assert!(
        reason.contains("PDF") || reason.contains("no text"),
        "{reason}"
    );
    assert_eq!(memory.chunk_count(document.id), 0);
}

#[tokio::test]
async fn a_document_over_the_chunk_cap_is_refused_before_anything_is_stored() {
    let memory = MemoryStores::default();
    let ingestor = Ingestor::new(
        Catalog::new(memory.stores()),
        None,
        Arc::new(ThreadParser::new(ParseLimits::default())),
        UrlFetcher::new(FetchPolicy::default()).unwrap(),
        IngestSettings {
            max_chunks_per_document: 5,
            ..IngestSettings::default()
        },
    );
    let error = ingestor
        .ingest(&tenant(), six_chunk_document(), true)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RagError::TooManyChunks { count: 6, limit: 5 }),
        "{error}"
    );
    assert_eq!(MetadataStore::count(&memory, &tenant()).await.unwrap(), 0);
}

/// Duplicates are found within a tenant only: the same bytes in another
/// tenant are a new document of its own, and recovery resumes interrupted
/// work of every tenant under that tenant.
#[tokio::test]
async fn duplicates_and_recovery_stay_within_each_tenant() {
    let memory = MemoryStores::default();
    let ingestor = ingestor(&memory, LetterEmbedder::default());
    let (a, b) = (
        Tenant::new("team-a").unwrap(),
        Tenant::new("team-b").unwrap(),
    );
    let first = ingestor
        .ingest(&a, six_chunk_document(), true)
        .await
        .unwrap();
    let other = ingestor
        .ingest(&b, six_chunk_document(), true)
        .await
        .unwrap();
    assert!(matches!(other, IngestOutcome::Created(ref d) if d.id != first.document().id));
    assert!(
        MetadataStore::get(&memory, &b, first.document().id)
            .await
            .unwrap()
            .is_none()
    );

    let IngestOutcome::Created(pending_a) = ingestor
        .accept(
            &a,
            IngestInput {
                new_version: true,
                ..six_chunk_document()
            },
        )
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    let IngestOutcome::Created(pending_b) = ingestor
        .accept(
            &b,
            IngestInput {
                new_version: true,
                ..six_chunk_document()
            },
        )
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    let restarted = self::ingestor(&memory, LetterEmbedder::default());
    assert_eq!(restarted.recover().await.unwrap(), 2);
    for (tenant, id) in [(&a, pending_a.id), (&b, pending_b.id)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let doc = MetadataStore::get(&memory, tenant, id)
                .await
                .unwrap()
                .unwrap();
            if doc.status == DocumentStatus::Indexed {
                break;
            }
            assert!(Instant::now() < deadline, "still {:?}", doc.status);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
