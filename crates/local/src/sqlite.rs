//! One SQLite file for document metadata, conversations, chunks and their
//! FTS5 (BM25) index. WAL mode; schema versions in `PRAGMA user_version`.
//!
//! Every table has a `tenant` column and every statement names it, so a
//! call for one tenant cannot read or change another's rows; the second
//! migration gave the rows written before tenants existed to `default`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rag_core::backend::{ConversationStore, LexicalIndex, MetadataStore};
use rag_core::text::{is_stop_word, words};
use rag_core::{
    ChunkMetadata, Document, DocumentChunk, DocumentStatus, Lease, ListQuery, Page, SearchFilter,
    StatusUpdate, StoreError, StoredMessage, Tenant, VectorSearchResult,
};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use uuid::Uuid;

/// Each entry upgrades the schema by one version; applied in order, once.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    content_type TEXT NOT NULL,
    status TEXT NOT NULL,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    token_count INTEGER NOT NULL DEFAULT 0,
    chunk_size INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    indexed_at TEXT,
    extra_metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX documents_by_created ON documents (created_at DESC, id DESC);
CREATE INDEX documents_by_status ON documents (status, created_at DESC, id DESC);
CREATE INDEX documents_by_hash ON documents (content_hash);

CREATE TABLE chunks (
    rowid INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX chunks_by_document ON chunks (document_id, chunk_index);

CREATE VIRTUAL TABLE chunks_fts USING fts5(
    content, content='chunks', content_rowid='rowid', tokenize='porter unicode61'
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, content) VALUES (new.rowid, new.content);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
END;
CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
    INSERT INTO chunks_fts (rowid, content) VALUES (new.rowid, new.content);
END;

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
"#,
    r#"
ALTER TABLE documents ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
DROP INDEX documents_by_created;
DROP INDEX documents_by_status;
DROP INDEX documents_by_hash;
CREATE INDEX documents_by_created ON documents (tenant, created_at DESC, id DESC);
CREATE INDEX documents_by_status ON documents (tenant, status, created_at DESC, id DESC);
CREATE INDEX documents_by_hash ON documents (tenant, content_hash);

ALTER TABLE chunks ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
DROP INDEX chunks_by_document;
CREATE INDEX chunks_by_document ON chunks (tenant, document_id, chunk_index);

DROP TRIGGER chunks_ai;
DROP TRIGGER chunks_ad;
DROP TRIGGER chunks_au;
DROP TABLE chunks_fts;
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    content, tenant UNINDEXED, content='chunks', content_rowid='rowid', tokenize='porter unicode61'
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, content, tenant) VALUES (new.rowid, new.content, new.tenant);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content, tenant)
        VALUES ('delete', old.rowid, old.content, old.tenant);
END;
CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content, tenant)
        VALUES ('delete', old.rowid, old.content, old.tenant);
    INSERT INTO chunks_fts (rowid, content, tenant) VALUES (new.rowid, new.content, new.tenant);
END;
INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild');

ALTER TABLE messages ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
DROP INDEX messages_by_conversation;
CREATE INDEX messages_by_conversation ON messages (tenant, conversation_id, id);
"#,
    r#"
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    last_used_at TEXT,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at DESC);
"#,
    r#"
CREATE TABLE usage_daily (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    embedding_calls INTEGER NOT NULL DEFAULT 0,
    documents_ingested INTEGER NOT NULL DEFAULT 0,
    bytes_ingested INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
) WITHOUT ROWID;
CREATE TABLE tenant_settings (
    tenant TEXT PRIMARY KEY,
    monthly_token_budget INTEGER
);
"#,
    // The page, sheet or slide a chunk comes from, as the JSON of its
    // `ChunkLocation`; NULL where the format has none.
    r#"
ALTER TABLE chunks ADD COLUMN location TEXT;
"#,
    // The worker holding a PROCESSING document, and until when (Unix
    // milliseconds, so expiry compares as a number); NULL when none does.
    r#"
ALTER TABLE documents ADD COLUMN lease_owner TEXT;
ALTER TABLE documents ADD COLUMN lease_expires_ms INTEGER;
"#,
    // Ingestion jobs, each a JSON record updated in a transaction, and the
    // items each job has counted (so a task delivered twice counts once).
    r#"
CREATE TABLE ingestion_jobs (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX ingestion_jobs_by_time ON ingestion_jobs (tenant, created_at DESC, id DESC);
CREATE TABLE ingestion_job_items (
    tenant TEXT NOT NULL,
    job_id TEXT NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (tenant, job_id, item)
) WITHOUT ROWID;
"#,
    // Each chunk's header (its document's title and heading path), indexed
    // as a column of its own so a search can weigh it above body text.
    // Chunks indexed before have an empty header until indexed again.
    r#"
ALTER TABLE chunks ADD COLUMN header TEXT NOT NULL DEFAULT '';
DROP TRIGGER chunks_ai;
DROP TRIGGER chunks_ad;
DROP TRIGGER chunks_au;
DROP TABLE chunks_fts;
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    content, header, tenant UNINDEXED, content='chunks', content_rowid='rowid',
    tokenize='porter unicode61'
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, content, header, tenant)
        VALUES (new.rowid, new.content, new.header, new.tenant);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content, header, tenant)
        VALUES ('delete', old.rowid, old.content, old.header, old.tenant);
END;
CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content, header, tenant)
        VALUES ('delete', old.rowid, old.content, old.header, old.tenant);
    INSERT INTO chunks_fts (rowid, content, header, tenant)
        VALUES (new.rowid, new.content, new.header, new.tenant);
END;
INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild');
"#,
    // A tenant's use case (BEDROCK_ROUTES) and the others it may name, as
    // a JSON array.
    r#"
ALTER TABLE tenant_settings ADD COLUMN use_case TEXT;
ALTER TABLE tenant_settings ADD COLUMN allowed_use_cases TEXT NOT NULL DEFAULT '[]';
"#,
];

/// How much more a query word counts in a chunk's header (title and
/// heading path) than in its body: BM25F's field weight.
const HEADER_WEIGHT: f64 = 2.0;

/// The SQLite-backed metadata store, lexical index and conversation store.
/// One connection behind a mutex: SQLite serialises writers anyway, and the
/// work per call is small; calls run on blocking threads.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

/// Busy and locked databases are transient; every other failure is not.
pub(crate) fn db_error(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(ref f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Transient(Box::new(e))
        }
        other => StoreError::permanent(other),
    }
}

fn timestamp(t: &DateTime<Utc>) -> String {
    // Fixed width, so text order is time order.
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn parse_uuid(s: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(StoreError::permanent)?;
        }
        let conn = Connection::open(path).map_err(db_error)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(db_error)?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(db_error)?;
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_error)?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::permanent(format!(
                "the database schema is version {version}, newer than this build knows ({})",
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(db_error)?;
            tx.execute_batch(migration).map_err(db_error)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(db_error)?;
            tx.commit().map_err(db_error)?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::permanent("the database lock is poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(StoreError::permanent)?
    }
}

const DOCUMENT_COLUMNS: &str = "id, title, source, content_type, status, chunk_count, token_count, \
     chunk_size, chunk_overlap, size_bytes, content_hash, error, created_at, updated_at, \
     indexed_at, extra_metadata";

fn document_from_row(row: &Row<'_>) -> rusqlite::Result<Document> {
    let status: String = row.get(4)?;
    let extra: String = row.get(15)?;
    Ok(Document {
        id: parse_uuid(&row.get::<_, String>(0)?)?,
        title: row.get(1)?,
        content: None,
        source: row.get(2)?,
        content_type: row.get(3)?,
        status: DocumentStatus::parse(&status).unwrap_or(DocumentStatus::Failed),
        chunk_count: row.get(5)?,
        token_count: row.get::<_, i64>(6)? as u64,
        chunk_size: row.get(7)?,
        chunk_overlap: row.get(8)?,
        size_bytes: row.get::<_, i64>(9)? as u64,
        content_hash: row.get(10)?,
        error: row.get(11)?,
        created_at: parse_time(&row.get::<_, String>(12)?)?,
        updated_at: parse_time(&row.get::<_, String>(13)?)?,
        indexed_at: row
            .get::<_, Option<String>>(14)?
            .map(|s| parse_time(&s))
            .transpose()?,
        extra_metadata: serde_json::from_str(&extra).unwrap_or_default(),
    })
}

fn get_document(conn: &Connection, tenant: &str, id: Uuid) -> Result<Option<Document>, StoreError> {
    conn.query_row(
        &format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant = ?1 AND id = ?2"),
        [tenant.to_string(), id.to_string()],
        document_from_row,
    )
    .optional()
    .map_err(db_error)
}

/// The document a conditional update wrote, or why it wrote nothing.
fn settled(
    changed: usize,
    current: Option<Document>,
    id: Uuid,
    refusal: &str,
) -> Result<Document, StoreError> {
    match (changed, current) {
        (1, Some(doc)) => Ok(doc),
        (_, None) => Err(StoreError::NotFound {
            what: format!("document {id}"),
        }),
        (_, Some(doc)) => Err(StoreError::Conflict(format!(
            "document {id} is {}, {refusal}",
            doc.status.as_str()
        ))),
    }
}

/// Cursors are `<created_at>|<id>` of the last item, hex-encoded so callers
/// treat them as opaque.
fn encode_cursor(doc: &Document) -> String {
    hex::encode(format!("{}|{}", timestamp(&doc.created_at), doc.id))
}

fn decode_cursor(cursor: &str) -> Result<(String, String), StoreError> {
    let invalid = || StoreError::Invalid("invalid cursor".to_string());
    let raw =
        String::from_utf8(hex::decode(cursor).map_err(|_| invalid())?).map_err(|_| invalid())?;
    let (created, id) = raw.split_once('|').ok_or_else(invalid)?;
    Ok((created.to_string(), id.to_string()))
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn insert(&self, tenant: &Tenant, document: &Document) -> Result<(), StoreError> {
        let d = document.clone();
        let tenant = tenant.to_string();
        self.with(move |conn| {
            let extra = serde_json::to_string(&d.extra_metadata).map_err(StoreError::permanent)?;
            let result = conn.execute(
                &format!("INSERT INTO documents ({DOCUMENT_COLUMNS}, tenant) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"),
                params![
                    d.id.to_string(), d.title, d.source, d.content_type, d.status.as_str(),
                    d.chunk_count, d.token_count as i64, d.chunk_size, d.chunk_overlap,
                    d.size_bytes as i64, d.content_hash, d.error, timestamp(&d.created_at),
                    timestamp(&d.updated_at), d.indexed_at.as_ref().map(timestamp), extra, tenant
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::Conflict(format!("document {} already exists", d.id)))
                }
                Err(e) => Err(db_error(e)),
            }
        })
        .await
    }

    async fn get(&self, tenant: &Tenant, id: Uuid) -> Result<Option<Document>, StoreError> {
        let tenant = tenant.to_string();
        self.with(move |conn| get_document(conn, &tenant, id)).await
    }

    async fn lease(
        &self,
        tenant: &Tenant,
        id: Uuid,
        lease: &Lease,
    ) -> Result<Document, StoreError> {
        let tenant = tenant.to_string();
        let lease = lease.clone();
        self.with(move |conn| {
            let now = Utc::now();
            let changed = conn
                .execute(
                    "UPDATE documents SET status = 'PROCESSING', updated_at = ?3,
                        lease_owner = ?4, lease_expires_ms = ?5
                     WHERE tenant = ?1 AND id = ?2 AND (status = 'PENDING'
                        OR (status = 'PROCESSING' AND (lease_owner IS NULL OR lease_owner = ?4
                            OR lease_expires_ms <= ?6)))",
                    params![
                        tenant,
                        id.to_string(),
                        timestamp(&now),
                        lease.owner,
                        lease.expires_at.timestamp_millis(),
                        now.timestamp_millis(),
                    ],
                )
                .map_err(db_error)?;
            settled(
                changed,
                get_document(conn, &tenant, id)?,
                id,
                "not free to lease",
            )
        })
        .await
    }

    async fn release(
        &self,
        tenant: &Tenant,
        id: Uuid,
        owner: &str,
        to: DocumentStatus,
        update: StatusUpdate,
    ) -> Result<Document, StoreError> {
        let tenant = tenant.to_string();
        let owner = owner.to_string();
        self.with(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE documents SET status = ?3, updated_at = ?4,
                        chunk_count = COALESCE(?5, chunk_count),
                        token_count = COALESCE(?6, token_count),
                        error = ?7,
                        indexed_at = COALESCE(?8, indexed_at),
                        lease_owner = NULL, lease_expires_ms = NULL
                     WHERE tenant = ?1 AND id = ?2 AND status = 'PROCESSING' AND lease_owner = ?9",
                    params![
                        tenant,
                        id.to_string(),
                        to.as_str(),
                        timestamp(&Utc::now()),
                        update.chunk_count,
                        update.token_count.map(|t| t as i64),
                        update.error,
                        update.indexed_at.as_ref().map(timestamp),
                        owner,
                    ],
                )
                .map_err(db_error)?;
            settled(
                changed,
                get_document(conn, &tenant, id)?,
                id,
                "not leased by this worker",
            )
        })
        .await
    }

    async fn list(&self, tenant: &Tenant, query: &ListQuery) -> Result<Page<Document>, StoreError> {
        let query = query.clone();
        let tenant = tenant.to_string();
        self.with(move |conn| {
            let mut sql = format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE tenant = ?1");
            let mut args: Vec<String> = vec![tenant];
            if let Some(status) = query.status {
                args.push(status.as_str().to_string());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(cursor) = &query.cursor {
                let (created, id) = decode_cursor(cursor)?;
                args.push(created);
                args.push(id);
                let (c, i) = (args.len() - 1, args.len());
                sql.push_str(&format!(
                    " AND (created_at < ?{c} OR (created_at = ?{c} AND id < ?{i}))"
                ));
            }
            sql.push_str(&format!(
                " ORDER BY created_at DESC, id DESC LIMIT {}",
                query.limit + 1
            ));
            let mut stmt = conn.prepare(&sql).map_err(db_error)?;
            let mut items: Vec<Document> = stmt
                .query_map(params_from_iter(args.iter()), document_from_row)
                .map_err(db_error)?
                .collect::<Result<_, _>>()
                .map_err(db_error)?;
            let next_cursor = if items.len() > query.limit {
                items.truncate(query.limit);
                items.last().map(encode_cursor)
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn delete(&self, tenant: &Tenant, id: Uuid) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        self.with(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM documents WHERE tenant = ?1 AND id = ?2",
                    [tenant, id.to_string()],
                )
                .map_err(db_error)?;
            Ok(n > 0)
        })
        .await
    }

    async fn find_by_hash(
        &self,
        tenant: &Tenant,
        content_hash: &str,
    ) -> Result<Option<Document>, StoreError> {
        let hash = content_hash.to_string();
        let tenant = tenant.to_string();
        self.with(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM documents
                     WHERE tenant = ?1 AND content_hash = ?2 AND status != 'FAILED'
                     ORDER BY created_at DESC LIMIT 1"
                ),
                [tenant, hash],
                document_from_row,
            )
            .optional()
            .map_err(db_error)
        })
        .await
    }

    async fn count(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        let tenant = tenant.to_string();
        self.with(move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM documents WHERE tenant = ?1",
                [tenant],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(db_error)
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT DISTINCT tenant FROM documents ORDER BY tenant")
                .map_err(db_error)?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_error)?;
            names
                .iter()
                .map(|name| Tenant::new(name).map_err(StoreError::permanent))
                .collect()
        })
        .await
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

/// An FTS5 query matching any of the question's content words. Each word is
/// quoted, so FTS5 syntax in user input (`AND`, `*`, `:`, quotes) is inert.
pub fn fts_query(text: &str) -> Option<String> {
    let all: Vec<String> = words(text).collect();
    let content: Vec<&String> = all.iter().filter(|w| !is_stop_word(w)).collect();
    let chosen: Vec<&String> = if content.is_empty() {
        all.iter().collect()
    } else {
        content
    };
    let mut terms: Vec<String> = Vec::new();
    for word in chosen {
        let quoted = format!("\"{}\"", word.replace('"', ""));
        if !terms.contains(&quoted) {
            terms.push(quoted);
        }
    }
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

fn hit_from_row(row: &Row<'_>, score: f32) -> rusqlite::Result<VectorSearchResult> {
    let chunk_id: String = row.get(0)?;
    let document_id = parse_uuid(&row.get::<_, String>(1)?)?;
    Ok(VectorSearchResult {
        document_id,
        chunk_id: chunk_id.clone(),
        score,
        content: row.get(6)?,
        metadata: ChunkMetadata {
            chunk_id,
            document_id,
            chunk_index: row.get(2)?,
            start_char: row.get::<_, i64>(3)? as u64,
            end_char: row.get::<_, i64>(4)? as u64,
            token_count: row.get(5)?,
            location: row
                .get::<_, Option<String>>(7)?
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
        },
    })
}

#[async_trait]
impl LexicalIndex for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite-fts5"
    }

    async fn index_chunks(
        &self,
        tenant: &Tenant,
        chunks: &[DocumentChunk],
    ) -> Result<(), StoreError> {
        let tenant = tenant.to_string();
        let rows: Vec<(ChunkMetadata, String, String)> = chunks
            .iter()
            .map(|c| (c.metadata.clone(), c.content.clone(), c.header.clone()))
            .collect();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            {
                let mut stmt = tx
                    .prepare(
                        "INSERT INTO chunks (chunk_id, document_id, chunk_index, start_char, end_char, token_count, content, tenant, location, header)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (chunk_id) DO UPDATE SET content = excluded.content, header = excluded.header,
                            start_char = excluded.start_char, end_char = excluded.end_char,
                            token_count = excluded.token_count, location = excluded.location
                         WHERE chunks.tenant = excluded.tenant",
                    )
                    .map_err(db_error)?;
                for (m, content, header) in &rows {
                    stmt.execute(params![
                        m.chunk_id,
                        m.document_id.to_string(),
                        m.chunk_index,
                        m.start_char as i64,
                        m.end_char as i64,
                        m.token_count,
                        content,
                        tenant,
                        (!m.location.is_empty()).then(|| {
                            serde_json::to_string(&m.location).expect("a location serialises")
                        }),
                        header
                    ])
                    .map_err(db_error)?;
                }
            }
            tx.commit().map_err(db_error)
        })
        .await
    }

    async fn search(
        &self,
        tenant: &Tenant,
        query: &str,
        top_k: usize,
        filter: &SearchFilter,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let tenant = tenant.to_string();
        let ids: Vec<String> = filter.document_ids.iter().map(Uuid::to_string).collect();
        self.with(move |conn| {
            let mut sql = format!(
                "SELECT c.chunk_id, c.document_id, c.chunk_index, c.start_char, c.end_char,
                        c.token_count, c.content, c.location, bm25(chunks_fts, 1.0, {HEADER_WEIGHT}) AS rank
                 FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid
                 WHERE chunks_fts MATCH ?1 AND chunks_fts.tenant = ?2",
            );
            let mut args = vec![fts, tenant];
            if !ids.is_empty() {
                let placeholders: Vec<String> =
                    (0..ids.len()).map(|i| format!("?{}", i + 3)).collect();
                sql.push_str(&format!(
                    " AND c.document_id IN ({})",
                    placeholders.join(", ")
                ));
                args.extend(ids);
            }
            sql.push_str(&format!(" ORDER BY rank LIMIT {top_k}"));
            let mut stmt = conn.prepare(&sql).map_err(db_error)?;
            // FTS5's bm25() is lower-is-better; negate so higher is better.
            let hits = stmt
                .query_map(params_from_iter(args.iter()), |row| {
                    let rank: f64 = row.get(8)?;
                    hit_from_row(row, -rank as f32)
                })
                .map_err(db_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_error)?;
            Ok(hits)
        })
        .await
    }

    async fn delete_document(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<usize, StoreError> {
        let tenant = tenant.to_string();
        self.with(move |conn| {
            conn.execute(
                "DELETE FROM chunks WHERE tenant = ?1 AND document_id = ?2",
                [tenant, document_id.to_string()],
            )
            .map_err(db_error)
        })
        .await
    }

    async fn chunks_of(
        &self,
        tenant: &Tenant,
        document_id: Uuid,
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        let tenant = tenant.to_string();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT chunk_id, document_id, chunk_index, start_char, end_char, token_count, content, location
                     FROM chunks WHERE tenant = ?1 AND document_id = ?2 ORDER BY chunk_index",
                )
                .map_err(db_error)?;
            let hits = stmt
                .query_map([tenant, document_id.to_string()], |row| hit_from_row(row, 0.0))
                .map_err(db_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_error)?;
            Ok(hits)
        })
        .await
    }

    async fn chunks_by_id(
        &self,
        tenant: &Tenant,
        chunk_ids: &[String],
    ) -> Result<Vec<VectorSearchResult>, StoreError> {
        if chunk_ids.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = tenant.to_string();
        let ids = chunk_ids.to_vec();
        self.with(move |conn| {
            // One statement per id keeps the parameter count fixed; the
            // unique index on chunk_id makes each a single lookup.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT chunk_id, document_id, chunk_index, start_char, end_char, token_count, content, location
                     FROM chunks WHERE tenant = ?1 AND chunk_id = ?2",
                )
                .map_err(db_error)?;
            let mut found = Vec::with_capacity(ids.len());
            for id in &ids {
                let mut rows = stmt
                    .query_map([tenant.as_str(), id.as_str()], |row| hit_from_row(row, 0.0))
                    .map_err(db_error)?;
                if let Some(hit) = rows.next() {
                    found.push(hit.map_err(db_error)?);
                }
            }
            Ok(found)
        })
        .await
    }
}

#[async_trait]
impl ConversationStore for SqliteStore {
    async fn append(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        messages: &[StoredMessage],
    ) -> Result<(), StoreError> {
        let tenant = tenant.to_string();
        let rows: Vec<(String, String)> = messages
            .iter()
            .map(|m| {
                serde_json::to_string(&m.message)
                    .map(|json| (timestamp(&m.created_at), json))
                    .map_err(StoreError::permanent)
            })
            .collect::<Result<_, _>>()?;
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db_error)?;
            for (created_at, json) in &rows {
                tx.execute(
                    "INSERT INTO messages (conversation_id, created_at, message, tenant)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![conversation_id.to_string(), created_at, json, tenant],
                )
                .map_err(db_error)?;
            }
            tx.commit().map_err(db_error)
        })
        .await
    }

    async fn history(
        &self,
        tenant: &Tenant,
        conversation_id: Uuid,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let tenant = tenant.to_string();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT created_at, message FROM messages WHERE tenant = ?1 AND conversation_id = ?2
                     ORDER BY id DESC LIMIT ?3",
                )
                .map_err(db_error)?;
            let mut messages = stmt
                .query_map(params![tenant, conversation_id.to_string(), limit as i64], |row| {
                    let created_at = parse_time(&row.get::<_, String>(0)?)?;
                    let json: String = row.get(1)?;
                    Ok((created_at, json))
                })
                .map_err(db_error)?
                .map(|r| {
                    let (created_at, json) = r.map_err(db_error)?;
                    let message = serde_json::from_str(&json).map_err(StoreError::permanent)?;
                    Ok(StoredMessage {
                        message,
                        created_at,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            messages.reverse();
            Ok(messages)
        })
        .await
    }
}

mod jobs;
mod keys;
mod usage;

#[cfg(test)]
mod tests;
