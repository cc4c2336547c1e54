use super::*;
use chrono::Duration;

fn t() -> Tenant {
    Tenant::default_tenant()
}

use rag_core::test_util::document;

fn chunk(doc: Uuid, index: u32, content: &str) -> DocumentChunk {
    DocumentChunk {
        metadata: ChunkMetadata {
            chunk_id: ChunkMetadata::chunk_id_for(doc, index),
            document_id: doc,
            chunk_index: index,
            start_char: 0,
            end_char: content.chars().count() as u64,
            token_count: 3,
            location: Default::default(),
        },
        content: content.to_string(),
        header: String::new(),
        embedding: Vec::new(),
    }
}

#[tokio::test]
async fn documents_round_trip_and_list_newest_first_with_cursors() {
    let store = SqliteStore::open_in_memory().unwrap();
    let start = Utc::now();
    let mut ids = Vec::new();
    for i in 0..5 {
        let status = if i % 2 == 0 {
            DocumentStatus::Indexed
        } else {
            DocumentStatus::Pending
        };
        let doc = document(&format!("d{i}"), start + Duration::seconds(i), status);
        store.insert(&t(), &doc).await.unwrap();
        ids.push(doc.id);
    }
    let first = store.get(&t(), ids[0]).await.unwrap().unwrap();
    assert_eq!(first.extra_metadata["team"], "docs");
    assert!(matches!(
        store.insert(&t(), &first).await,
        Err(StoreError::Conflict(_))
    ));

    let page1 = store
        .list(
            &t(),
            &ListQuery {
                status: None,
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page1.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[4], ids[3]]
    );
    let page2 = store
        .list(
            &t(),
            &ListQuery {
                status: None,
                limit: 2,
                cursor: page1.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page2.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    let page3 = store
        .list(
            &t(),
            &ListQuery {
                status: None,
                limit: 2,
                cursor: page2.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(page3.items.len(), 1);
    assert!(page3.next_cursor.is_none());

    let indexed = store
        .list(
            &t(),
            &ListQuery {
                status: Some(DocumentStatus::Indexed),
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(indexed.items.len(), 3);
    assert!(matches!(
        store
            .list(
                &t(),
                &ListQuery {
                    status: None,
                    limit: 2,
                    cursor: Some("zz".into())
                }
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn ingestion_jobs_keep_the_store_rules() {
    let store = SqliteStore::open_in_memory().unwrap();
    rag_core::ingest::sync::memory::check_job_store_rules(&store, true).await;
}

#[tokio::test]
async fn leases_are_exclusive_expire_and_end_with_their_holder() {
    let store = SqliteStore::open_in_memory().unwrap();
    rag_core::test_util::check_lease_rules(
        &store,
        &t(),
        &Tenant::new("someone-else").unwrap(),
        rag_core::test_util::pending_document("leased"),
    )
    .await;
}

#[tokio::test]
async fn a_document_is_found_by_its_hash_and_deleted() {
    let store = SqliteStore::open_in_memory().unwrap();
    let doc = document("t", Utc::now(), DocumentStatus::Indexed);
    store.insert(&t(), &doc).await.unwrap();
    assert_eq!(
        store
            .find_by_hash(&t(), "hash-t")
            .await
            .unwrap()
            .unwrap()
            .id,
        doc.id
    );
    assert!(store.delete(&t(), doc.id).await.unwrap());
    assert!(!store.delete(&t(), doc.id).await.unwrap());
    assert_eq!(store.count(&t()).await.unwrap(), 0);
}

#[tokio::test]
async fn lexical_search_ranks_by_bm25_filters_and_deletes() {
    let store = SqliteStore::open_in_memory().unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .index_chunks(
            &t(),
            &[
                chunk(
                    a,
                    0,
                    "The question mark operator propagates errors to the caller.",
                ),
                chunk(a, 1, "Closures capture values from their environment."),
                chunk(
                    b,
                    0,
                    "Operators can be overloaded with traits; errors are values.",
                ),
            ],
        )
        .await
        .unwrap();
    let hits = store
        .search(
            &t(),
            "What does the question mark operator do?",
            10,
            &SearchFilter::default(),
        )
        .await
        .unwrap();
    assert_eq!(hits[0].chunk_id, ChunkMetadata::chunk_id_for(a, 0));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(
        hits.iter()
            .all(|h| h.chunk_id != ChunkMetadata::chunk_id_for(a, 1))
    );

    let only_b = store
        .search(
            &t(),
            "errors",
            10,
            &SearchFilter {
                document_ids: vec![b],
            },
        )
        .await
        .unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].document_id, b);

    // FTS5 syntax in user input is treated as words.
    assert!(
        store
            .search(
                &t(),
                "\"unbalanced AND * NEAR(",
                5,
                &SearchFilter::default()
            )
            .await
            .is_ok()
    );

    assert_eq!(store.delete_document(&t(), a).await.unwrap(), 2);
    assert!(
        store
            .search(&t(), "question mark", 10, &SearchFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.chunks_of(&t(), b).await.unwrap().len(), 1);
}

#[tokio::test]
async fn conversations_keep_order_and_limit() {
    let store = SqliteStore::open_in_memory().unwrap();
    let id = Uuid::new_v4();
    let now = Utc::now();
    let messages: Vec<StoredMessage> = (0..5)
        .map(|i| StoredMessage {
            message: rag_core::chat::Message::user_text(format!("m{i}")),
            created_at: now,
        })
        .collect();
    store.append(&t(), id, &messages).await.unwrap();
    let last3 = store.history(&t(), id, 3).await.unwrap();
    assert_eq!(
        last3.iter().map(|m| m.message.text()).collect::<Vec<_>>(),
        ["m2", "m3", "m4"]
    );
    assert!(
        store
            .history(&t(), Uuid::new_v4(), 3)
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn schema_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rag.sqlite3");
    drop(SqliteStore::open(&path).unwrap());
    drop(SqliteStore::open(&path).unwrap());
}

/// Two tenants with the same documents, chunks and conversation id: each
/// call sees its own tenant's rows only, and nothing one tenant does
/// changes the other's.
#[tokio::test]
async fn every_table_is_partitioned_by_tenant() {
    let store = SqliteStore::open_in_memory().unwrap();
    let (a, b) = (Tenant::new("a").unwrap(), Tenant::new("b").unwrap());
    let doc = document("shared", Utc::now(), DocumentStatus::Pending);
    store.insert(&a, &doc).await.unwrap();
    store
        .index_chunks(&a, &[chunk(doc.id, 0, "ownership moves values")])
        .await
        .unwrap();
    let conversation = Uuid::new_v4();
    let said = StoredMessage {
        message: rag_core::chat::Message::user_text("a's secret"),
        created_at: Utc::now(),
    };
    store.append(&a, conversation, &[said]).await.unwrap();

    let all = ListQuery {
        status: None,
        limit: 10,
        cursor: None,
    };
    assert!(store.get(&b, doc.id).await.unwrap().is_none());
    assert!(store.list(&b, &all).await.unwrap().items.is_empty());
    assert!(
        store
            .find_by_hash(&b, &doc.content_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.count(&b).await.unwrap(), 0);
    assert!(matches!(
        store
            .lease(
                &b,
                doc.id,
                &rag_core::Lease::for_next("w", std::time::Duration::from_secs(60))
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .search(&b, "ownership", 10, &SearchFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.chunks_of(&b, doc.id).await.unwrap().is_empty());
    let a_chunk = vec![ChunkMetadata::chunk_id_for(doc.id, 0)];
    assert!(store.chunks_by_id(&b, &a_chunk).await.unwrap().is_empty());
    assert_eq!(store.chunks_by_id(&a, &a_chunk).await.unwrap().len(), 1);
    assert!(
        store
            .history(&b, conversation, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // What b writes and deletes under a's ids touches nothing of a's.
    assert!(!store.delete(&b, doc.id).await.unwrap());
    assert_eq!(store.delete_document(&b, doc.id).await.unwrap(), 0);
    store
        .index_chunks(&b, &[chunk(doc.id, 0, "overwritten by b")])
        .await
        .unwrap();

    assert_eq!(store.get(&a, doc.id).await.unwrap().unwrap().id, doc.id);
    let chunks = store.chunks_of(&a, doc.id).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].content, "ownership moves values");
    assert_eq!(
        store
            .search(&a, "ownership", 10, &SearchFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.history(&a, conversation, 10).await.unwrap().len(), 1);
    assert_eq!(store.tenants().await.unwrap(), vec![a]);
}

/// A database written before tenants existed opens with every row given
/// to the default tenant, keyword search included.
#[tokio::test]
async fn the_tenant_migration_gives_old_rows_to_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rag.sqlite3");
    let id = Uuid::new_v4();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            &format!("INSERT INTO documents ({DOCUMENT_COLUMNS}) VALUES (?1, 'old', 'old.txt', 'text/plain', 'INDEXED', 1, 3, 1000, 200, 10, 'h', NULL, ?2, ?2, NULL, '{{}}')"),
            params![id.to_string(), timestamp(&Utc::now())],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO chunks (chunk_id, document_id, chunk_index, start_char, end_char, token_count, content) VALUES (?1, ?2, 0, 0, 10, 3, 'borrow checker rules')",
            params![ChunkMetadata::chunk_id_for(id, 0), id.to_string()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get(&t(), id).await.unwrap().unwrap().title, "old");
    assert_eq!(
        store
            .search(&t(), "borrow", 5, &SearchFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.tenants().await.unwrap(), vec![t()]);
}

#[tokio::test]
async fn a_chunks_header_is_searched_and_weighs_more_than_its_body() {
    let store = SqliteStore::open_in_memory().unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut under_heading = chunk(a, 0, "Values of this type are one of several variants.");
    under_heading.header = "Defining an Enum > Enum Values".to_string();
    let mentions = chunk(
        b,
        0,
        "A struct groups named fields, unlike an enum with variants, which a match takes apart.",
    );
    store
        .index_chunks(&t(), &[under_heading, mentions])
        .await
        .unwrap();
    let hits = store
        .search(&t(), "enum variants", 10, &SearchFilter::default())
        .await
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].chunk_id, ChunkMetadata::chunk_id_for(a, 0));
    // The header is searched, never returned as content.
    assert_eq!(
        hits[0].content,
        "Values of this type are one of several variants."
    );
    let by_heading_only = store
        .search(&t(), "defining", 10, &SearchFilter::default())
        .await
        .unwrap();
    assert_eq!(by_heading_only.len(), 1);
}
