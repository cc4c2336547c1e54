use rag_core::Tenant;
use uuid::Uuid;

use super::*;

fn job(n: u128) -> IngestJob {
    IngestJob {
        tenant: Tenant::new("team-a").unwrap(),
        document_id: Uuid::from_u128(n),
    }
}

fn open(dir: &tempfile::TempDir) -> SqliteQueue {
    SqliteQueue::open(&dir.path().join("queue.sqlite3")).unwrap()
}

const VISIBILITY: Duration = Duration::from_secs(600);

/// Makes every message visible now, as if its backoff had passed.
async fn skip_time(queue: &SqliteQueue) {
    queue
        .with(|conn| conn.execute("UPDATE messages SET visible_at_ms = 0", []))
        .await
        .unwrap();
}

async fn receive(queue: &SqliteQueue) -> Option<Received> {
    queue.receive(VISIBILITY).await.unwrap().ok()
}

#[tokio::test]
async fn a_job_sent_twice_while_waiting_is_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir);
    queue.send(&job(1)).await.unwrap();
    queue.send(&job(1)).await.unwrap();
    queue.send(&job(2)).await.unwrap();
    assert_eq!(queue.depth().await.unwrap().queued, 2);
    let first = receive(&queue).await.unwrap();
    assert_eq!(IngestJob::from_body(&first.body).unwrap(), job(1));
    assert_eq!(first.receive_count, 1);
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.queued, depth.in_flight), (1, 1));
    queue.settle(&first, JobOutcome::Done).await.unwrap();
    let second = receive(&queue).await.unwrap();
    assert_eq!(IngestJob::from_body(&second.body).unwrap(), job(2));
    // A received message is invisible to every other receive.
    assert!(receive(&queue).await.is_none());
}

#[tokio::test]
async fn a_retried_message_backs_off_and_goes_to_the_dead_letters_after_its_last_receive() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir);
    queue.send(&job(1)).await.unwrap();
    for attempt in 1..=MAX_RECEIVES {
        let message = receive(&queue).await.expect("delivered again");
        assert_eq!(message.receive_count, attempt);
        let reason = format!("attempt {attempt} throttled");
        queue
            .settle(&message, JobOutcome::Retry { reason })
            .await
            .unwrap();
        // Backing off: not visible until its delay passes.
        assert!(receive(&queue).await.is_none());
        skip_time(&queue).await;
    }
    assert!(receive(&queue).await.is_none());
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].receive_count, MAX_RECEIVES);
    assert_eq!(dead[0].reason, format!("attempt {MAX_RECEIVES} throttled"));
    assert_eq!(IngestJob::from_body(&dead[0].body).unwrap(), job(1));
    assert_eq!(queue.depth().await.unwrap().dead, 1);
}

#[tokio::test]
async fn waiting_out_another_workers_lease_is_not_an_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir);
    queue.send(&job(1)).await.unwrap();
    for _ in 0..5 {
        let message = receive(&queue).await.unwrap();
        assert_eq!(message.receive_count, 1);
        let until = Utc::now() + chrono::Duration::milliseconds(50);
        queue
            .settle(&message, JobOutcome::Busy { until })
            .await
            .unwrap();
        assert!(receive(&queue).await.is_none());
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(queue.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_message_in_flight_when_the_process_died_is_delivered_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir);
    queue.send(&job(1)).await.unwrap();
    queue.send(&job(2)).await.unwrap();
    let taken = receive(&queue).await.unwrap();
    drop(queue);

    let reopened = open(&dir);
    assert_eq!(reopened.depth().await.unwrap().in_flight, 0);
    let mut delivered = [
        receive(&reopened).await.unwrap(),
        receive(&reopened).await.unwrap(),
    ];
    delivered.sort_by_key(|m| m.id);
    assert_eq!(delivered[0].body, taken.body);
    assert_eq!(delivered[0].receive_count, 2);
    assert_eq!(IngestJob::from_body(&delivered[1].body).unwrap(), job(2));
    assert_eq!(delivered[1].receive_count, 1);
}

/// Finishes every delivery, recording it.
struct Recording {
    seen: Mutex<Vec<(IngestJob, Delivery)>>,
}

#[async_trait]
impl JobHandler for Recording {
    async fn handle(&self, job: &IngestJob, delivery: Delivery) -> JobOutcome {
        self.seen.lock().unwrap().push((job.clone(), delivery));
        JobOutcome::Done
    }

    async fn handle_upload(&self, job: &IngestJob, delivery: Delivery) -> JobOutcome {
        self.handle(job, delivery).await
    }

    async fn dead_letter(&self, _job: &IngestJob) -> JobOutcome {
        JobOutcome::Done
    }

    async fn handle_sync(&self, _task: &SyncTask, _delivery: Delivery) -> JobOutcome {
        JobOutcome::Done
    }

    async fn dead_letter_sync(&self, _task: &SyncTask) -> JobOutcome {
        JobOutcome::Done
    }
}

/// Starts `workers` workers on a handler that finishes every job.
fn start_workers(queue: &SqliteQueue, workers: usize) -> Arc<Recording> {
    let handler = Arc::new(Recording {
        seen: Mutex::new(Vec::new()),
    });
    queue.spawn_workers(
        handler.clone(),
        WorkerSettings {
            workers,
            visibility_timeout: VISIBILITY,
        },
    );
    handler
}

#[tokio::test]
async fn workers_hand_each_message_to_the_handler_and_delete_it_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir);
    let handler = start_workers(&queue, 2);
    for n in 0..20 {
        queue.send(&job(n)).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while queue.depth().await.unwrap() != QueueDepth::default() {
        assert!(std::time::Instant::now() < deadline, "still queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen: Vec<u128> = handler
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(job, delivery)| {
            assert_eq!(*delivery, Delivery::first());
            job.document_id.as_u128()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_message_that_is_not_a_job_goes_to_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(&dir);
    queue
        .with(|conn| {
            conn.execute(
                "INSERT INTO messages (body, visible_at_ms, sent_at) VALUES ('{\"x\": 1}', 0, 'then')",
                [],
            )
        })
        .await
        .unwrap();
    let handler = start_workers(&queue, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while queue.dead_letters().await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(handler.seen.lock().unwrap().is_empty());
    let dead = queue.dead_letters().await.unwrap();
    assert!(dead[0].reason.contains("not an ingest job"), "{dead:?}");
}
