//! Delivery of ingest jobs as a queue makes it, at least once, on the
//! in-memory fakes: a job delivered twice, two workers given one document
//! at once, a worker killed mid-document, and transient failures retried
//! up to the last receive. Each must leave exactly one set of chunks.

use std::time::{Duration, Instant};

use rag_core::backend::MetadataStore;
use rag_core::ingest::queue::{Delivery, IngestJob, JobHandler, JobOutcome, MAX_RECEIVES};
use rag_core::test_util::{Gate, LetterEmbedder, MemoryStores};
use rag_core::{Document, DocumentStatus, IngestOutcome, Ingestor, Tenant};

mod common;
use common::{LEASE, ingestor, six_chunk_document as six_chunks};

fn tenant() -> Tenant {
    Tenant::new("team-a").unwrap()
}

/// A PENDING document and the job that names it.
async fn accepted(ingestor: &Ingestor) -> (Document, IngestJob) {
    let IngestOutcome::Created(document) = ingestor.accept(&tenant(), six_chunks()).await.unwrap()
    else {
        panic!("not created")
    };
    let job = IngestJob {
        tenant: tenant(),
        document_id: document.id,
    };
    (document, job)
}

async fn current(memory: &MemoryStores, document: &Document) -> Document {
    MetadataStore::get(memory, &tenant(), document.id)
        .await
        .unwrap()
        .unwrap()
}

fn delivery(receive_count: u32) -> Delivery {
    Delivery {
        receive_count,
        max_receives: MAX_RECEIVES,
    }
}

#[tokio::test]
async fn a_message_delivered_twice_indexes_its_document_once() {
    let memory = MemoryStores::default();
    let worker = ingestor(&memory, LetterEmbedder::default());
    let (document, job) = accepted(&worker).await;
    assert_eq!(worker.handle(&job, delivery(1)).await, JobOutcome::Done);
    let indexed = current(&memory, &document).await;
    assert_eq!(indexed.status, DocumentStatus::Indexed);
    assert_eq!(memory.chunk_count(document.id), 6);

    assert_eq!(worker.handle(&job, delivery(2)).await, JobOutcome::Done);
    let again = current(&memory, &document).await;
    assert_eq!(again.updated_at, indexed.updated_at, "nothing was touched");
    assert_eq!(memory.chunk_count(document.id), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_given_one_document_at_once_index_it_once() {
    let memory = MemoryStores::default();
    let gate = Gate::closed_after(1);
    let first = ingestor(&memory, LetterEmbedder::gated(gate.clone()));
    let second = ingestor(&memory, LetterEmbedder::default());
    let (document, job) = accepted(&first).await;
    let held = gate.held();
    let running = tokio::spawn({
        let (first, job) = (first.clone(), job.clone());
        async move { first.handle(&job, delivery(1)).await }
    });
    held.await;
    // Held past several lease lengths: the first worker keeps renewing,
    // so the second is told to come back later every time.
    for _ in 0..4 {
        let outcome = second.handle(&job, delivery(1)).await;
        assert!(matches!(outcome, JobOutcome::Busy { .. }), "{outcome:?}");
        tokio::time::sleep(LEASE / 2).await;
    }
    gate.open();
    assert_eq!(running.await.unwrap(), JobOutcome::Done);
    assert_eq!(second.handle(&job, delivery(2)).await, JobOutcome::Done);
    assert_eq!(
        current(&memory, &document).await.status,
        DocumentStatus::Indexed
    );
    assert_eq!(memory.chunk_count(document.id), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_document_is_taken_over_once_its_lease_expires() {
    let memory = MemoryStores::default();
    let gate = Gate::closed_after(1);
    let doomed = ingestor(&memory, LetterEmbedder::gated(gate.clone()));
    let (document, job) = accepted(&doomed).await;
    let held = gate.held();
    let running = tokio::spawn({
        let (doomed, job) = (doomed.clone(), job.clone());
        async move { doomed.handle(&job, delivery(1)).await }
    });
    held.await;
    let killed_at = Instant::now();
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    assert_eq!(memory.chunk_count(document.id), 2, "the first batch stayed");

    let successor = ingestor(&memory, LetterEmbedder::default());
    let early = successor.handle(&job, delivery(2)).await;
    if killed_at.elapsed() < LEASE {
        assert!(matches!(early, JobOutcome::Busy { .. }), "{early:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while successor.handle(&job, delivery(2)).await != JobOutcome::Done {
        assert!(Instant::now() < deadline, "never taken over");
        tokio::time::sleep(LEASE / 3).await;
    }
    assert!(killed_at.elapsed() >= LEASE / 2);
    let indexed = current(&memory, &document).await;
    assert_eq!(indexed.status, DocumentStatus::Indexed);
    assert_eq!(indexed.chunk_count, 6);
    assert_eq!(memory.chunk_count(document.id), 6, "none doubled");
}

#[tokio::test]
async fn a_throttled_document_is_retried_then_fails_on_its_last_receive() {
    let memory = MemoryStores::default();
    // Throttled on every call of every attempt.
    let worker = ingestor(&memory, LetterEmbedder::throttled_for(usize::MAX));
    let (document, job) = accepted(&worker).await;
    for receive in 1..MAX_RECEIVES {
        let outcome = worker.handle(&job, delivery(receive)).await;
        assert!(matches!(outcome, JobOutcome::Retry { .. }), "{outcome:?}");
        let waiting = current(&memory, &document).await;
        assert_eq!(waiting.status, DocumentStatus::Pending);
        let error = waiting.error.unwrap();
        assert!(
            error.starts_with(&format!(
                "attempt {receive} of {MAX_RECEIVES} failed and will be retried"
            )),
            "{error}"
        );
        assert_eq!(memory.chunk_count(document.id), 0);
    }
    let last = worker.handle(&job, delivery(MAX_RECEIVES)).await;
    let JobOutcome::DeadLetter { reason } = last else {
        panic!("{last:?}")
    };
    let failed = current(&memory, &document).await;
    assert_eq!(failed.status, DocumentStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some(reason.as_str()));
    assert!(reason.contains("throttled"), "{reason}");
}

#[tokio::test]
async fn a_throttle_that_passes_is_indexed_on_the_next_receive() {
    let memory = MemoryStores::default();
    let worker = ingestor(&memory, LetterEmbedder::throttled_for(1));
    let (document, job) = accepted(&worker).await;
    let outcome = worker.handle(&job, delivery(1)).await;
    assert!(matches!(outcome, JobOutcome::Retry { .. }), "{outcome:?}");
    assert_eq!(worker.handle(&job, delivery(2)).await, JobOutcome::Done);
    let indexed = current(&memory, &document).await;
    assert_eq!(indexed.status, DocumentStatus::Indexed);
    assert!(indexed.error.is_none());
    assert_eq!(memory.chunk_count(document.id), 6);
}

#[tokio::test]
async fn a_job_for_a_deleted_document_is_done() {
    let memory = MemoryStores::default();
    let worker = ingestor(&memory, LetterEmbedder::default());
    let (document, job) = accepted(&worker).await;
    MetadataStore::delete(&memory, &tenant(), document.id)
        .await
        .unwrap();
    assert_eq!(worker.handle(&job, delivery(1)).await, JobOutcome::Done);
    assert_eq!(memory.chunk_count(document.id), 0);
}

/// With no queue (a Lambda function without one), a task of the process
/// makes the queue's attempts itself: a document throttled every time is
/// tried three times, backing off between, and then FAILED.
#[tokio::test]
async fn without_a_queue_a_throttled_document_is_attempted_three_times_then_failed() {
    let memory = MemoryStores::default();
    let embedder = LetterEmbedder::throttled_for(usize::MAX);
    let worker = ingestor(&memory, embedder);
    let IngestOutcome::Created(document) =
        worker.ingest(&tenant(), six_chunks(), false).await.unwrap()
    else {
        panic!("not created")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_retrying = false;
    let failed = loop {
        let now = current(&memory, &document).await;
        seen_retrying |= now.status == DocumentStatus::Pending
            && now
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("attempt 2 of 3 failed"));
        if now.status == DocumentStatus::Failed {
            break now;
        }
        assert!(Instant::now() < deadline, "still {:?}", now.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        seen_retrying,
        "the second attempt's failure was not recorded"
    );
    assert!(failed.error.unwrap().contains("throttled"));
    assert_eq!(memory.chunk_count(document.id), 0);
}
