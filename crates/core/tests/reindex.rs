//! `reindex`: every chunk of every tenant's indexed documents is embedded
//! again, by another model, into another vector store, as ingestion would
//! embed it; a document deleted while it runs is gone from the target when
//! it ends, and the deployment's own store is never touched.

use std::sync::Arc;

use async_trait::async_trait;
use rag_core::chunk::{chunk_header, embedding_text};
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::ingest::reindex::{ChunkText, reindex};
use rag_core::test_util::{LetterEmbedder, MemoryStores, ScriptedModel, ingest_texts};
use rag_core::{
    EmbedError, Embedder, IngestInput, LexicalIndex, RagService, SearchFilter, ServiceSettings,
    Tenant, VectorStore,
};

/// Another model: vowel counts, normalised, five dimensions.
struct VowelEmbedder;

impl VowelEmbedder {
    fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; 5];
        for c in text.chars() {
            if let Some(i) = "aeiou".find(c.to_ascii_lowercase()) {
                v[i] += 1.0;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }
}

#[async_trait]
impl Embedder for VowelEmbedder {
    fn model_id(&self) -> &str {
        "vowels"
    }

    fn dimension(&self) -> usize {
        5
    }

    fn batch_size(&self) -> usize {
        3
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| Self::vector(t)).collect())
    }
}

/// A deployment on memory stores whose model is the letter embedder.
fn deployment() -> (MemoryStores, Arc<RagService>) {
    let memory = MemoryStores::default();
    let service = RagService::new(
        memory.stores(),
        Some(Arc::new(LetterEmbedder::default())),
        Arc::new(ScriptedModel::new(false, [])),
        UrlFetcher::new(FetchPolicy::default()).unwrap(),
        ServiceSettings::default(),
        Vec::new(),
    )
    .unwrap();
    (memory, service)
}

#[tokio::test]
async fn every_tenants_chunks_are_embedded_again_into_the_target() {
    let (memory, service) = deployment();
    let long = "Ferries leave the harbour every hour. ".repeat(60);
    ingest_texts(&service, &[long.as_str(), "Borrowing lends a value."]).await;
    let other = Tenant::new("team-b").unwrap();
    service
        .ingestor()
        .ingest(
            &other,
            IngestInput {
                bytes: "Slices borrow part of a collection.".to_string().into(),
                declared_content_type: Some("text/plain".into()),
                ..IngestInput::default()
            },
            true,
        )
        .await
        .unwrap();
    let owner = Tenant::default_tenant();
    let before_a = VectorStore::count(&memory, &owner).await.unwrap().unwrap();
    assert!(before_a > 2, "the long text makes several chunks");

    let target = MemoryStores::default();
    let mut seen = Vec::new();
    let report = reindex(
        &memory,
        ChunkText::Lexical(&memory),
        &VowelEmbedder,
        &target,
        |p| seen.push(p.clone()),
    )
    .await
    .unwrap();
    assert_eq!((report.documents, report.total_documents), (3, 3));
    assert_eq!(report.chunks as usize, before_a + 1);
    assert_eq!(seen.len(), 3, "progress after each document");
    assert_eq!(
        VectorStore::count(&target, &owner).await.unwrap(),
        Some(before_a)
    );
    assert_eq!(VectorStore::count(&target, &other).await.unwrap(), Some(1));

    // Each chunk's new vector is the new model's embedding of what
    // ingestion embeds: its header, then its text.
    let documents = service
        .catalog()
        .list_documents(
            &owner,
            &rag_core::ListQuery {
                status: None,
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap()
        .items;
    for document in &documents {
        for chunk in LexicalIndex::chunks_of(&memory, &owner, document.id)
            .await
            .unwrap()
        {
            let text = embedding_text(
                &chunk_header(&document.title, &chunk.metadata.location),
                &chunk.content,
            );
            let hits = VectorStore::search(
                &target,
                &owner,
                &VowelEmbedder::vector(&text),
                100,
                &SearchFilter {
                    document_ids: vec![document.id],
                },
            )
            .await
            .unwrap();
            let hit = hits.iter().find(|h| h.chunk_id == chunk.chunk_id).unwrap();
            assert!((hit.score - 1.0).abs() < 1e-5, "{}", chunk.chunk_id);
        }
    }
    // The deployment's own vectors are the old model's, untouched.
    assert_eq!(
        VectorStore::count(&memory, &owner).await.unwrap(),
        Some(before_a)
    );
}

#[tokio::test]
async fn a_document_deleted_during_the_reindex_is_not_left_in_the_target() {
    let (memory, service) = deployment();
    ingest_texts(&service, &["First text.", "Second text."]).await;
    let owner = Tenant::default_tenant();
    let target = MemoryStores::default();
    let catalog = service.catalog().clone();
    let mut deleted = None;
    reindex(
        &memory,
        ChunkText::Lexical(&memory),
        &VowelEmbedder,
        &target,
        |_| {
            // After the first document, delete whichever one it was.
            if deleted.is_none() {
                let listed = futures::executor::block_on(catalog.list_documents(
                    &owner,
                    &rag_core::ListQuery {
                        status: None,
                        limit: 10,
                        cursor: None,
                    },
                ))
                .unwrap();
                let first = listed.items[0].id;
                futures::executor::block_on(catalog.delete_document(&owner, first)).unwrap();
                deleted = Some(first);
            }
        },
    )
    .await
    .unwrap();
    let gone = deleted.unwrap();
    let left = VectorStore::search(
        &target,
        &owner,
        &VowelEmbedder::vector("text"),
        10,
        &SearchFilter::default(),
    )
    .await
    .unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0].document_id, gone);
}
