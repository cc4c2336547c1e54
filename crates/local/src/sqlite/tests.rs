use super::*;
use chrono::Duration;

fn document(title: &str, created_at: DateTime<Utc>, status: DocumentStatus) -> Document {
    Document {
        id: Uuid::new_v4(),
        title: title.to_string(),
        content: None,
        source: format!("{title}.txt"),
        content_type: "text/plain".to_string(),
        status,
        chunk_count: 0,
        token_count: 0,
        chunk_size: 1000,
        chunk_overlap: 200,
        size_bytes: 10,
        content_hash: format!("hash-{title}"),
        error: None,
        created_at,
        updated_at: created_at,
        indexed_at: None,
        extra_metadata: [("team".to_string(), serde_json::json!("docs"))].into(),
    }
}

fn chunk(doc: Uuid, index: u32, content: &str) -> DocumentChunk {
    DocumentChunk {
        metadata: ChunkMetadata {
            chunk_id: ChunkMetadata::chunk_id_for(doc, index),
            document_id: doc,
            chunk_index: index,
            start_char: 0,
            end_char: content.chars().count() as u64,
            token_count: 3,
        },
        content: content.to_string(),
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
        store.insert(&doc).await.unwrap();
        ids.push(doc.id);
    }
    let first = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(first.extra_metadata["team"], "docs");
    assert!(matches!(
        store.insert(&first).await,
        Err(StoreError::Conflict(_))
    ));

    let page1 = store
        .list(&ListQuery {
            status: None,
            limit: 2,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(
        page1.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[4], ids[3]]
    );
    let page2 = store
        .list(&ListQuery {
            status: None,
            limit: 2,
            cursor: page1.next_cursor.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        page2.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    let page3 = store
        .list(&ListQuery {
            status: None,
            limit: 2,
            cursor: page2.next_cursor.clone(),
        })
        .await
        .unwrap();
    assert_eq!(page3.items.len(), 1);
    assert!(page3.next_cursor.is_none());

    let indexed = store
        .list(&ListQuery {
            status: Some(DocumentStatus::Indexed),
            limit: 10,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(indexed.items.len(), 3);
    assert!(matches!(
        store
            .list(&ListQuery {
                status: None,
                limit: 2,
                cursor: Some("zz".into())
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn transitions_are_conditional() {
    let store = SqliteStore::open_in_memory().unwrap();
    let doc = document("t", Utc::now(), DocumentStatus::Pending);
    store.insert(&doc).await.unwrap();
    let processing = store
        .transition(
            doc.id,
            DocumentStatus::Pending,
            DocumentStatus::Processing,
            StatusUpdate::default(),
        )
        .await
        .unwrap();
    assert_eq!(processing.status, DocumentStatus::Processing);
    // A second worker cannot claim it again.
    assert!(matches!(
        store
            .transition(
                doc.id,
                DocumentStatus::Pending,
                DocumentStatus::Processing,
                StatusUpdate::default()
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let indexed = store
        .transition(
            doc.id,
            DocumentStatus::Processing,
            DocumentStatus::Indexed,
            StatusUpdate {
                chunk_count: Some(7),
                token_count: Some(70),
                error: None,
                indexed_at: Some(Utc::now()),
            },
        )
        .await
        .unwrap();
    assert_eq!((indexed.chunk_count, indexed.token_count), (7, 70));
    assert!(indexed.indexed_at.is_some());
    assert!(matches!(
        store
            .transition(
                Uuid::new_v4(),
                DocumentStatus::Pending,
                DocumentStatus::Processing,
                StatusUpdate::default()
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.find_by_hash("hash-t").await.unwrap().unwrap().id,
        doc.id
    );
    assert!(store.delete(doc.id).await.unwrap());
    assert!(!store.delete(doc.id).await.unwrap());
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn lexical_search_ranks_by_bm25_filters_and_deletes() {
    let store = SqliteStore::open_in_memory().unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .index_chunks(&[
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
        ])
        .await
        .unwrap();
    let hits = store
        .search(
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
            .search("\"unbalanced AND * NEAR(", 5, &SearchFilter::default())
            .await
            .is_ok()
    );

    assert_eq!(store.delete_document(a).await.unwrap(), 2);
    assert!(
        store
            .search("question mark", 10, &SearchFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.chunks_of(b).await.unwrap().len(), 1);
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
    store.append(id, &messages).await.unwrap();
    let last3 = store.history(id, 3).await.unwrap();
    assert_eq!(
        last3.iter().map(|m| m.message.text()).collect::<Vec<_>>(),
        ["m2", "m3", "m4"]
    );
    assert!(store.history(Uuid::new_v4(), 3).await.unwrap().is_empty());
}

#[test]
fn schema_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rag.sqlite3");
    drop(SqliteStore::open(&path).unwrap());
    drop(SqliteStore::open(&path).unwrap());
}
