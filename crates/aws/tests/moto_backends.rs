//! The S3, DynamoDB and S3 Vectors adapters against moto over the real wire
//! protocols, driven by the real SDK clients.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{Duration, Utc};
use rag_aws::{DynamoDbStore, S3DocumentStore, S3VectorStore};
use rag_aws_emulator::MotoServer;
use rag_core::chat::Message;
use rag_core::{
    ChunkMetadata, ConversationStore, DocumentStatus, DocumentStore, ListQuery, MetadataStore,
    StoreError, StoredMessage, Tenant, VectorStore,
};
use uuid::Uuid;

use common::{chunk, t};
use rag_core::test_util::document;

#[tokio::test]
async fn s3_documents_round_trip_with_content_type_and_encryption() {
    let moto = MotoServer::start();
    let client = common::s3(&moto.url);
    client.create_bucket().bucket("docs").send().await.unwrap();
    let store = S3DocumentStore::new(client.clone(), "docs", "/raw/");

    store
        .put(
            &t(),
            "a/original",
            Bytes::from_static(b"hello"),
            "text/markdown",
        )
        .await
        .unwrap();
    assert_eq!(
        store.get(&t(), "a/original").await.unwrap(),
        Bytes::from_static(b"hello")
    );
    assert!(store.exists(&t(), "a/original").await.unwrap());

    let head = client
        .head_object()
        .bucket("docs")
        .key("raw/default/a/original")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/markdown"));
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );

    store.delete(&t(), "a/original").await.unwrap();
    store.delete(&t(), "a/original").await.unwrap();
    assert!(!store.exists(&t(), "a/original").await.unwrap());
    assert!(matches!(
        store.get(&t(), "a/original").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn dynamodb_documents_transitions_listing_and_conversations() {
    let moto = MotoServer::start();
    let client = common::dynamodb(&moto.url);
    let store = Arc::new(DynamoDbStore::new(client, "rag"));
    store.create_table().await.unwrap();
    // A second call finds the table there and leaves it alone.
    store.create_table().await.unwrap();

    // Insert seven documents across statuses, one second apart.
    let start = Utc::now() - Duration::hours(1);
    let statuses = [
        DocumentStatus::Pending,
        DocumentStatus::Indexed,
        DocumentStatus::Failed,
        DocumentStatus::Indexed,
        DocumentStatus::Processing,
        DocumentStatus::Indexed,
        DocumentStatus::Pending,
    ];
    let mut docs = Vec::new();
    for (i, status) in statuses.iter().enumerate() {
        let doc = document(
            &format!("doc{i}"),
            start + Duration::seconds(i as i64),
            *status,
        );
        store.insert(&t(), &doc).await.unwrap();
        docs.push(doc);
    }
    assert!(matches!(
        store.insert(&t(), &docs[0]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.count(&t()).await.unwrap(), 7);
    let got = store.get(&t(), docs[3].id).await.unwrap().unwrap();
    assert_eq!(got, docs[3]);
    assert_eq!(store.get(&t(), Uuid::new_v4()).await.unwrap(), None);

    // Pages of three over all statuses: newest first, no gaps, no repeats.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(
                &t(),
                &ListQuery {
                    status: None,
                    limit: 3,
                    cursor: cursor.clone(),
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|d| d.title.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["doc6", "doc5", "doc4", "doc3", "doc2", "doc1", "doc0"]
    );
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
    let titles: Vec<_> = indexed.items.iter().map(|d| d.title.as_str()).collect();
    assert_eq!(titles, ["doc5", "doc3", "doc1"]);

    // Leases are conditional writes. (Sequential, because moto, unlike
    // DynamoDB, does not make condition checks atomic across threads.)
    rag_core::test_util::check_lease_rules(
        store.as_ref(),
        &Tenant::new("lease-a").unwrap(),
        &Tenant::new("lease-b").unwrap(),
        rag_core::test_util::pending_document("leased"),
    )
    .await;

    // Ingestion jobs: counters added with one UpdateItem each, statuses
    // moved conditionally, listed newest first through GSI1.
    rag_core::ingest::sync::memory::check_job_store_rules(store.as_ref(), false).await;

    // Duplicates are found by content, failed ones are not.
    assert_eq!(
        store
            .find_by_hash(&t(), "hash-doc3")
            .await
            .unwrap()
            .map(|d| d.id),
        Some(docs[3].id)
    );
    assert_eq!(store.find_by_hash(&t(), "hash-doc2").await.unwrap(), None);
    assert_eq!(store.find_by_hash(&t(), "nothing").await.unwrap(), None);

    assert!(store.delete(&t(), docs[3].id).await.unwrap());
    assert!(!store.delete(&t(), docs[3].id).await.unwrap());
    assert_eq!(store.count(&t()).await.unwrap(), 6);
    assert_eq!(store.find_by_hash(&t(), "hash-doc3").await.unwrap(), None);

    // Conversations keep order, and a limit keeps the latest messages.
    let conversation = Uuid::new_v4();
    let now = Utc::now();
    let turns: Vec<StoredMessage> = (0..30)
        .map(|i| StoredMessage {
            message: if i % 2 == 0 {
                Message::user_text(format!("q{i}"))
            } else {
                Message::assistant_text(format!("a{i}"))
            },
            created_at: now,
        })
        .collect();
    store.append(&t(), conversation, &turns).await.unwrap();
    let history = store.history(&t(), conversation, 4).await.unwrap();
    let texts: Vec<String> = history.iter().map(|m| m.message.text()).collect();
    assert_eq!(texts, ["q26", "a27", "q28", "a29"]);
    assert_eq!(
        store.history(&t(), conversation, 100).await.unwrap().len(),
        30
    );
    assert!(
        store
            .history(&t(), Uuid::new_v4(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn s3_vectors_index_creation_writes_and_deletes() {
    let moto = MotoServer::start();
    let client = common::s3vectors(&moto.url);
    let store = S3VectorStore::new(client.clone(), "vectors", "chunks", 4);
    assert!(matches!(
        store.ensure_index(false).await,
        Err(StoreError::Invalid(_))
    ));
    store.ensure_index(true).await.unwrap();
    // Idempotent, and a store of another dimension is refused.
    store.ensure_index(true).await.unwrap();
    let wrong = S3VectorStore::new(client.clone(), "vectors", "chunks", 8);
    assert!(matches!(
        wrong.ensure_index(true).await,
        Err(StoreError::Invalid(_))
    ));

    let doc = Uuid::new_v4();
    let other = Uuid::new_v4();
    // More than one PutVectors batch and more than one GetVectors page.
    let chunks: Vec<_> = (0..650)
        .map(|i| chunk(doc, i, &format!("chunk {i}"), vec![1.0, i as f32, 0.5, 0.0]))
        .collect();
    store.upsert(&t(), &chunks).await.unwrap();
    store
        .upsert(&t(), &[chunk(other, 0, "other", vec![0.0, 1.0, 0.0, 0.0])])
        .await
        .unwrap();
    // Upserting again overwrites rather than duplicates.
    store.upsert(&t(), &chunks[..10]).await.unwrap();

    let listed = store.chunks_of(&t(), doc).await.unwrap();
    assert_eq!(listed.len(), 650);
    assert_eq!(listed[649].content, "chunk 649");
    assert_eq!(listed[649].metadata.start_char, 6490);
    // Read by id, past one GetVectors batch; an id of no chunk is left out.
    let ids: Vec<String> = (0..120)
        .map(|i| ChunkMetadata::chunk_id_for(doc, i * 6))
        .chain([ChunkMetadata::chunk_id_for(doc, 9999)])
        .collect();
    let by_id = store.chunks_by_id(&t(), &ids).await.unwrap();
    assert_eq!(by_id.len(), 109, "chunks 0, 6, .., 648");
    assert!(by_id.iter().any(|c| c.content == "chunk 648"));

    assert_eq!(store.delete_document(&t(), doc).await.unwrap(), 650);
    assert!(store.chunks_of(&t(), doc).await.unwrap().is_empty());
    assert_eq!(store.chunks_of(&t(), other).await.unwrap().len(), 1);
    assert_eq!(store.delete_document(&t(), doc).await.unwrap(), 0);
}

/// Two tenants in one table and one bucket: every key carries the tenant,
/// so one tenant's id, hash or conversation id finds nothing of the
/// other's, and what one deletes leaves the other's intact.
#[tokio::test]
async fn dynamodb_and_s3_keep_tenants_apart() {
    let moto = MotoServer::start();
    let store = DynamoDbStore::new(common::dynamodb(&moto.url), "rag");
    store.create_table().await.unwrap();
    let s3 = common::s3(&moto.url);
    s3.create_bucket().bucket("docs").send().await.unwrap();
    let files = S3DocumentStore::new(s3.clone(), "docs", "documents/");
    let (a, b) = (
        Tenant::new("team-a").unwrap(),
        Tenant::new("team-b").unwrap(),
    );

    let doc = document("shared", Utc::now(), DocumentStatus::Pending);
    store.insert(&a, &doc).await.unwrap();
    files
        .put(
            &a,
            "x/original",
            Bytes::from_static(b"a's bytes"),
            "text/plain",
        )
        .await
        .unwrap();
    let conversation = Uuid::new_v4();
    let said = StoredMessage {
        message: Message::user_text("a's question"),
        created_at: Utc::now(),
    };
    store.append(&a, conversation, &[said]).await.unwrap();

    let all = ListQuery {
        status: None,
        limit: 10,
        cursor: None,
    };
    assert_eq!(store.get(&b, doc.id).await.unwrap(), None);
    assert!(store.list(&b, &all).await.unwrap().items.is_empty());
    assert_eq!(
        store.find_by_hash(&b, &doc.content_hash).await.unwrap(),
        None
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
    assert!(!store.delete(&b, doc.id).await.unwrap());
    assert!(
        store
            .history(&b, conversation, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        files.get(&b, "x/original").await,
        Err(StoreError::NotFound { .. })
    ));
    files.delete(&b, "x/original").await.unwrap();

    assert_eq!(store.get(&a, doc.id).await.unwrap().unwrap().id, doc.id);
    assert_eq!(store.count(&a).await.unwrap(), 1);
    assert_eq!(store.history(&a, conversation, 10).await.unwrap().len(), 1);
    assert_eq!(
        files.get(&a, "x/original").await.unwrap(),
        Bytes::from_static(b"a's bytes")
    );
    let head = s3
        .head_object()
        .bucket("docs")
        .key("documents/team-a/x/original")
        .send()
        .await;
    assert!(head.is_ok(), "objects live under <prefix><tenant>/");
    assert_eq!(store.tenants().await.unwrap(), vec![a]);
}

/// Two limiters on one table are one limit: a token spent by one is gone
/// for the other, as for two Lambda instances.
#[tokio::test]
async fn dynamodb_rate_limits_hold_across_instances() {
    use rag_aws::DynamoDbRateLimiter;
    use rag_core::ratelimit::{RateDecision, RateLimiter};
    let moto = MotoServer::start();
    let store = Arc::new(DynamoDbStore::new(common::dynamodb(&moto.url), "rag"));
    store.create_table().await.unwrap();
    let first = DynamoDbRateLimiter::new(store.clone(), 6);
    let second = DynamoDbRateLimiter::new(store.clone(), 6);
    for i in 0..6 {
        let limiter = if i % 2 == 0 { &first } else { &second };
        assert_eq!(
            limiter.acquire("key:a").await.unwrap(),
            RateDecision::Allowed,
            "{i}"
        );
    }
    for limiter in [&first, &second] {
        let RateDecision::Limited { retry_after } = limiter.acquire("key:a").await.unwrap() else {
            panic!("over the limit and allowed")
        };
        assert!(
            retry_after <= std::time::Duration::from_secs(10),
            "{retry_after:?}"
        );
    }
    assert_eq!(first.acquire("key:b").await.unwrap(), RateDecision::Allowed);
}

/// Usage counters are added with `ADD`, so instances writing the same day
/// at once lose nothing; the operator's query over GSI1 sees every tenant.
#[tokio::test]
async fn dynamodb_usage_adds_up_across_concurrent_writers() {
    use rag_core::usage::{TenantSettings, TenantSettingsStore, UsageCounts, UsageStore};
    let moto = MotoServer::start();
    let store = Arc::new(DynamoDbStore::new(common::dynamodb(&moto.url), "rag"));
    store.create_table().await.unwrap();
    let (a, b) = (Tenant::new("a").unwrap(), Tenant::new("b").unwrap());
    let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let before = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let one = UsageCounts {
        requests: 1,
        input_tokens: 7,
        output_tokens: 3,
        embedding_calls: 2,
        documents_ingested: 1,
        bytes_ingested: 100,
    };
    let writers: Vec<_> = (0..20)
        .map(|_| {
            let (store, a) = (store.clone(), a.clone());
            tokio::spawn(async move { store.add_usage(&a, day, &one).await })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    store.add_usage(&a, before, &one).await.unwrap();
    store
        .add_usage(&b, day, &UsageCounts::request())
        .await
        .unwrap();

    let days = store.usage(&a, day, day).await.unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].counts.requests, 20);
    assert_eq!(days[0].counts.model_tokens(), 200);
    assert_eq!(days[0].counts.bytes_ingested, 2000);
    assert_eq!(store.usage(&a, before, day).await.unwrap().len(), 2);
    assert!(store.usage(&b, before, before).await.unwrap().is_empty());
    let every = store.usage_of_every_tenant(day, day).await.unwrap();
    let tenants: Vec<&str> = every.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tenants, ["a", "b"]);

    assert_eq!(
        store.tenant_settings(&a).await.unwrap(),
        TenantSettings::default()
    );
    let own = TenantSettings {
        monthly_token_budget: Some(42),
        use_case: Some("search".into()),
        allowed_use_cases: vec!["finance".into(), "summaries".into()],
    };
    store.put_tenant_settings(&a, &own).await.unwrap();
    assert_eq!(store.tenant_settings(&a).await.unwrap(), own);
    assert_eq!(
        store.tenant_settings(&b).await.unwrap(),
        TenantSettings::default()
    );
}
