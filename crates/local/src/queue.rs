//! `SqliteQueue`: the ingest queue of the embedded default, a table in its
//! own SQLite file with the delivery rules of SQS. A received message is
//! invisible to other workers for a visibility timeout; a failed one
//! comes back after a backoff; after [`MAX_RECEIVES`] receives it moves to
//! a dead-letter table. Messages survive a restart, so a crash loses
//! nothing queued or half done: this process is the file's only consumer,
//! so at open every message in flight becomes visible again (its
//! document's lease decides when it may be taken over).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rag_core::StoreError;
use rag_core::ingest::queue::{
    Delivery, IngestJob, IngestQueue, JobHandler, JobOutcome, MAX_RECEIVES, QueueMessage, SyncTask,
};
use rag_core::ingest::retry_delay;
use rusqlite::{Connection, OptionalExtension, params};

use crate::sqlite::db_error;
use tokio::sync::Notify;

/// An idle worker looks again at least this often, so a message whose
/// backoff ends is picked up without a send to wake it.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(5);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL UNIQUE,
    receive_count INTEGER NOT NULL DEFAULT 0,
    in_flight INTEGER NOT NULL DEFAULT 0,
    visible_at_ms INTEGER NOT NULL,
    sent_at TEXT NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (visible_at_ms, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    reason TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    dead_at TEXT NOT NULL
);
"#;

/// A message that failed its last receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub body: String,
    pub receive_count: u32,
    pub reason: String,
}

/// Messages by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting for a worker (including those backing off).
    pub queued: u64,
    /// Received and not yet settled.
    pub in_flight: u64,
    pub dead: u64,
}

/// How the workers of a queue run.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Messages handled at once.
    pub workers: usize,
    /// How long a received message stays invisible to other workers.
    pub visibility_timeout: Duration,
}

struct Received {
    id: i64,
    body: String,
    receive_count: u32,
}

#[derive(Clone)]
pub struct SqliteQueue {
    conn: Arc<Mutex<Connection>>,
    sent: Arc<Notify>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl SqliteQueue {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(StoreError::permanent)?;
        }
        let conn = Connection::open(path).map_err(db_error)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(db_error)?;
        conn.execute_batch(SCHEMA).map_err(db_error)?;
        // Whoever received these is gone with the previous process.
        conn.execute(
            "UPDATE messages SET visible_at_ms = ?1, in_flight = 0 WHERE in_flight = 1",
            [now_ms()],
        )
        .map_err(db_error)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            sent: Arc::new(Notify::new()),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::permanent("the queue's lock is poisoned"))?;
            f(&mut guard).map_err(db_error)
        })
        .await
        .map_err(StoreError::permanent)?
    }

    /// Starts `settings.workers` tasks that receive messages and hand
    /// each to `handler` until the runtime stops.
    pub fn spawn_workers(&self, handler: Arc<dyn JobHandler>, settings: WorkerSettings) {
        for _ in 0..settings.workers.max(1) {
            let queue = self.clone();
            let handler = handler.clone();
            tokio::spawn(async move { queue.work(handler, settings.visibility_timeout).await });
        }
    }

    async fn work(&self, handler: Arc<dyn JobHandler>, visibility: Duration) {
        loop {
            match self.receive(visibility).await {
                Ok(Ok(message)) => {
                    let delivery = Delivery {
                        receive_count: message.receive_count,
                        max_receives: MAX_RECEIVES,
                    };
                    let outcome = match QueueMessage::from_body(&message.body) {
                        Ok(QueueMessage::Index(job)) => {
                            let outcome = handler.handle(&job, delivery).await;
                            if delivery.is_last() && matches!(outcome, JobOutcome::Retry { .. }) {
                                // The queue gives up on the message here, so
                                // its document must not stay PENDING.
                                handler.dead_letter(&job).await;
                            }
                            outcome
                        }
                        Ok(QueueMessage::Sync(task)) => {
                            let outcome = handler.handle_sync(&task, delivery).await;
                            if delivery.is_last() && matches!(outcome, JobOutcome::Retry { .. }) {
                                // Likewise its job must still end.
                                handler.dead_letter_sync(&task).await;
                            }
                            outcome
                        }
                        Err(reason) => JobOutcome::DeadLetter { reason },
                    };
                    if let Err(e) = self.settle(&message, outcome).await {
                        tracing::error!(error = %e, "settling a queue message failed");
                    }
                }
                Ok(Err(next_visible)) => {
                    let wait = next_visible
                        .and_then(|at| (at - Utc::now()).to_std().ok())
                        .unwrap_or(MAX_IDLE_WAIT)
                        .min(MAX_IDLE_WAIT);
                    tokio::select! {
                        _ = self.sent.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "receiving from the ingest queue failed");
                    tokio::time::sleep(MAX_IDLE_WAIT).await;
                }
            }
        }
    }

    /// The oldest visible message, made invisible for `visibility`; or,
    /// when none is visible, when the next one will be.
    async fn receive(
        &self,
        visibility: Duration,
    ) -> Result<Result<Received, Option<DateTime<Utc>>>, StoreError> {
        let visibility_ms = visibility.as_millis() as i64;
        self.with(move |conn| {
            let now = now_ms();
            let received = conn
                .query_row(
                    "UPDATE messages SET receive_count = receive_count + 1, in_flight = 1,
                        visible_at_ms = ?1 + ?2
                     WHERE id = (SELECT id FROM messages WHERE visible_at_ms <= ?1
                                 ORDER BY visible_at_ms, id LIMIT 1)
                     RETURNING id, body, receive_count",
                    params![now, visibility_ms],
                    |row| {
                        Ok(Received {
                            id: row.get(0)?,
                            body: row.get(1)?,
                            receive_count: row.get(2)?,
                        })
                    },
                )
                .optional()?;
            if let Some(received) = received {
                return Ok(Ok(received));
            }
            let next: Option<i64> =
                conn.query_row("SELECT MIN(visible_at_ms) FROM messages", [], |r| r.get(0))?;
            Ok(Err(next.and_then(DateTime::from_timestamp_millis)))
        })
        .await
    }

    async fn settle(&self, message: &Received, outcome: JobOutcome) -> Result<(), StoreError> {
        let (id, receive_count) = (message.id, message.receive_count);
        match outcome {
            JobOutcome::Done => {
                self.with(move |conn| conn.execute("DELETE FROM messages WHERE id = ?1", [id]))
                    .await?;
            }
            JobOutcome::Busy { until } => {
                // Waiting out another worker's lease is not an attempt.
                let until = until.timestamp_millis();
                self.with(move |conn| {
                    conn.execute(
                        "UPDATE messages SET visible_at_ms = ?2, in_flight = 0,
                            receive_count = MAX(receive_count - 1, 0) WHERE id = ?1",
                        params![id, until],
                    )
                })
                .await?;
            }
            JobOutcome::Retry { reason } if receive_count < MAX_RECEIVES => {
                let at = now_ms() + retry_delay(receive_count).as_millis() as i64;
                self.with(move |conn| {
                    conn.execute(
                        "UPDATE messages SET visible_at_ms = ?2, in_flight = 0, last_error = ?3
                         WHERE id = ?1",
                        params![id, at, reason],
                    )
                })
                .await?;
            }
            JobOutcome::Retry { reason } | JobOutcome::DeadLetter { reason } => {
                let recorded = reason.clone();
                self.with(move |conn| {
                    let tx = conn.transaction()?;
                    tx.execute(
                        "INSERT INTO dead_letters (id, body, receive_count, reason, sent_at, dead_at)
                         SELECT id, body, receive_count, ?2, sent_at, ?3 FROM messages WHERE id = ?1",
                        params![id, recorded, Utc::now().to_rfc3339()],
                    )?;
                    tx.execute("DELETE FROM messages WHERE id = ?1", [id])?;
                    tx.commit()
                })
                .await?;
                tracing::error!(body = %message.body, receive_count, reason, "an ingest message went to the dead-letter table");
            }
        }
        Ok(())
    }

    /// Messages that failed their last receive, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.with(|conn| {
            let mut statement = conn.prepare(
                "SELECT body, receive_count, reason FROM dead_letters ORDER BY dead_at, id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(DeadLetter {
                    body: row.get(0)?,
                    receive_count: row.get(1)?,
                    reason: row.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn depth(&self) -> Result<QueueDepth, StoreError> {
        self.with(|conn| {
            let (queued, in_flight): (u64, u64) = conn.query_row(
                "SELECT COUNT(*) - COALESCE(SUM(in_flight), 0), COALESCE(SUM(in_flight), 0)
                 FROM messages",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let dead = conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
            Ok(QueueDepth {
                queued,
                in_flight,
                dead,
            })
        })
        .await
    }
}

#[async_trait]
impl IngestQueue for SqliteQueue {
    /// A job already waiting (the same document queued twice, as recovery
    /// may) is not queued again.
    async fn send(&self, job: &IngestJob) -> Result<(), StoreError> {
        self.send_body(job.body()).await
    }

    /// A task already waiting is not queued twice either.
    async fn send_task(&self, task: &SyncTask) -> Result<(), StoreError> {
        self.send_body(task.body()).await
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

impl SqliteQueue {
    async fn send_body(&self, body: String) -> Result<(), StoreError> {
        self.with(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO messages (body, visible_at_ms, sent_at) VALUES (?1, ?2, ?3)",
                params![body, now_ms(), Utc::now().to_rfc3339()],
            )
        })
        .await?;
        self.sent.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
