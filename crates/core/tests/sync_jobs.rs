//! Ingestion jobs on the in-memory fakes, with a source whose items the
//! test sets: exact counts across syncs, old versions removed only once
//! the new one is in, an unreadable item failed with its reason, and a
//! task delivered twice making one document.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rag_core::backend::{ListQuery, MetadataStore};
use rag_core::ingest::queue::{Delivery, JobHandler, JobOutcome};
use rag_core::ingest::sync::memory::MemoryJobStore;
use rag_core::ingest::sync::{
    IngestionJob, IngestionJobStore, JobStatus, SourceItem, SourceObject, SyncRequest, SyncSource,
    SyncSources, SyncTask,
};
use rag_core::test_util::{LetterEmbedder, MemoryStores};
use rag_core::{DocumentStatus, Ingestor, RagError, Tenant};

mod common;
use common::ingestor;

fn tenant() -> Tenant {
    Tenant::new("team-a").unwrap()
}

/// A bucket whose objects the test writes; versions are a counter.
#[derive(Default)]
struct Bucket {
    objects: Mutex<BTreeMap<String, (String, u32)>>,
}

impl Bucket {
    fn put(&self, name: &str, text: &str) {
        let mut objects = self.objects.lock().unwrap();
        let version = objects.get(name).map_or(1, |(_, v)| v + 1);
        objects.insert(name.into(), (text.into(), version));
    }

    fn remove(&self, name: &str) {
        self.objects.lock().unwrap().remove(name);
    }
}

#[async_trait]
impl SyncSource for Bucket {
    async fn list(&self, location: &str) -> Result<Vec<SourceItem>, RagError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .map(|(name, (_, version))| SourceItem {
                key: format!("{location}{name}"),
                version: version.to_string(),
            })
            .collect())
    }

    async fn fetch(&self, key: &str) -> Result<SourceObject, RagError> {
        let name = key.rsplit('/').next().unwrap();
        let objects = self.objects.lock().unwrap();
        let (text, _) = objects.get(name).ok_or_else(|| RagError::invalid("gone"))?;
        Ok(SourceObject {
            bytes: Bytes::from(text.clone()),
            content_type: None,
        })
    }
}

struct Fixture {
    memory: MemoryStores,
    bucket: Arc<Bucket>,
    jobs: Arc<MemoryJobStore>,
    ingestor: Arc<Ingestor>,
}

fn fixture() -> Fixture {
    let memory = MemoryStores::default();
    let bucket = Arc::new(Bucket::default());
    let jobs = Arc::new(MemoryJobStore::default());
    let ingestor = ingestor(&memory, LetterEmbedder::default()).with_sync(SyncSources {
        jobs: jobs.clone(),
        s3: Ok(bucket.clone()),
        files: Err("no roots".into()),
        web: bucket.clone(),
    });
    Fixture {
        memory,
        bucket,
        jobs,
        ingestor,
    }
}

const SOURCE: &str = "s3://docs/notes/";

async fn sync(f: &Fixture) -> IngestionJob {
    let job = f
        .ingestor
        .start_sync(
            &tenant(),
            SyncRequest {
                source: SOURCE.into(),
                exclude: vec!["drafts/**".into()],
                delete_missing: true,
                ..SyncRequest::default()
            },
        )
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let now = f.ingestor.sync_job(&tenant(), job.id).await.unwrap();
        if matches!(now.status, JobStatus::Completed | JobStatus::Failed) {
            return now;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{now:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sources(memory: &MemoryStores) -> Vec<(String, DocumentStatus)> {
    let page = MetadataStore::list(
        memory,
        &tenant(),
        &ListQuery {
            status: None,
            limit: 100,
            cursor: None,
        },
    )
    .await
    .unwrap();
    let mut found: Vec<_> = page
        .items
        .into_iter()
        .map(|d| (d.source, d.status))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn text(subject: &str) -> String {
    format!("Notes on {subject}. These notes about {subject} are long enough to index.\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_syncs_adds_updates_and_deletes_with_exact_counts() {
    let f = fixture();
    for name in ["a.md", "b.md", "c.md"] {
        f.bucket.put(name, &text(name));
    }
    let first = sync(&f).await;
    assert_eq!(first.status, JobStatus::Completed, "{first:?}");
    assert_eq!((first.counts.scanned, first.counts.added), (3, 3));
    assert_eq!(first.pending, 0);
    assert_eq!(sync(&f).await.counts.unchanged, 3);

    f.bucket.put("b.md", &text("borrowing, revised"));
    f.bucket.remove("c.md");
    f.bucket.put("d.md", &text("drop order"));
    let third = sync(&f).await;
    let c = third.counts;
    assert_eq!(
        (
            c.scanned,
            c.added,
            c.updated,
            c.deleted,
            c.unchanged,
            c.failed
        ),
        (3, 1, 1, 1, 1, 0),
        "{third:?}"
    );
    let indexed = |name: &str| (format!("{SOURCE}{name}"), DocumentStatus::Indexed);
    assert_eq!(
        sources(&f.memory).await,
        [indexed("a.md"), indexed("b.md"), indexed("d.md")],
        "one document per object, the old version of b.md gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_item_fails_with_its_reason_and_the_job_still_completes() {
    let f = fixture();
    f.bucket.put("good.md", &text("good"));
    // Declared nothing, and no parser reads these bytes as text.
    f.bucket.put("broken.pdf", "%PDF-1.7 not really a PDF");
    let job = sync(&f).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!((job.counts.added, job.counts.failed), (1, 1), "{job:?}");
    assert_eq!(job.failures.len(), 1);
    assert_eq!(job.failures[0].item, format!("{SOURCE}broken.pdf"));
    assert!(job.failures[0].reason.contains("PDF"), "{job:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_delivered_twice_makes_one_document_and_counts_once() {
    let f = fixture();
    f.bucket.put("a.md", &text("a"));
    f.bucket.put("b.md", &text("b"));
    // A job its listing handed two tasks, as a queue holds them.
    let mut job = IngestionJob {
        id: uuid::Uuid::new_v4(),
        source: SOURCE.into(),
        include: vec![],
        exclude: vec![],
        delete_missing: true,
        status: JobStatus::Running,
        counts: Default::default(),
        failures: vec![],
        error: None,
        pending: 2,
        listed: true,
        created_at: chrono::Utc::now(),
        started_at: None,
        finished_at: None,
    };
    job.counts.scanned = 2;
    f.jobs.create_job(&tenant(), &job).await.unwrap();
    let put = |name: &str| SyncTask::Put {
        tenant: tenant(),
        job_id: job.id,
        key: format!("{SOURCE}{name}"),
        version: "1".into(),
        replaces: vec![],
    };
    let delivery = |receive_count| Delivery {
        receive_count,
        max_receives: 3,
    };
    // SQS delivers the first task twice before the job ends.
    for receive_count in [1, 2] {
        assert_eq!(
            f.ingestor
                .handle_sync(&put("a.md"), delivery(receive_count))
                .await,
            JobOutcome::Done
        );
    }
    let between = f.ingestor.sync_job(&tenant(), job.id).await.unwrap();
    assert_eq!(
        (between.counts.added, between.pending),
        (1, 1),
        "{between:?}"
    );
    assert_eq!(between.status, JobStatus::Running);
    assert_eq!(sources(&f.memory).await.len(), 1, "one document");

    assert_eq!(
        f.ingestor.handle_sync(&put("b.md"), delivery(1)).await,
        JobOutcome::Done
    );
    let done = f.ingestor.sync_job(&tenant(), job.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert_eq!((done.counts.added, done.pending), (2, 0));
    // And once the job has ended, a late delivery changes nothing.
    assert_eq!(
        f.ingestor.handle_sync(&put("a.md"), delivery(3)).await,
        JobOutcome::Done
    );
    assert_eq!(f.ingestor.sync_job(&tenant(), job.id).await.unwrap(), done);
    assert_eq!(sources(&f.memory).await.len(), 2);
}

#[tokio::test]
async fn a_source_this_deployment_does_not_read_is_refused_at_once() {
    let f = fixture();
    for (source, why) in [
        ("file:///srv/docs", "no roots"),
        ("gopher://x", "source must be"),
        ("", "source must be"),
    ] {
        let refused = f
            .ingestor
            .start_sync(
                &tenant(),
                SyncRequest {
                    source: source.into(),
                    ..SyncRequest::default()
                },
            )
            .await;
        assert!(
            matches!(&refused, Err(RagError::InvalidInput(m)) if m.contains(why)),
            "{source}: {refused:?}"
        );
    }
    let bad_glob = f
        .ingestor
        .start_sync(
            &tenant(),
            SyncRequest {
                source: SOURCE.into(),
                include: vec!["[".into()],
                ..SyncRequest::default()
            },
        )
        .await;
    assert!(matches!(bad_glob, Err(RagError::InvalidInput(_))));
}
