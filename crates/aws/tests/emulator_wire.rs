//! The S3 Vectors query path and the Bedrock adapters against the in-repo
//! emulator, over the real wire formats, driven by the real SDK clients.

mod common;

use common::t;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3vectors::types::{DataType, DistanceMetric, PutInputVector, VectorData};
use futures::StreamExt;
use rag_aws::{BedrockChatModel, RetryPolicy, S3VectorStore, TitanEmbedder};
use rag_aws_emulator::{Emulator, Fault, Faults, Reply, ReplyBlock, hashed_bag_of_words};
use rag_core::chat::{
    ChatModel, ChatRequest, ChatStreamEvent, ContentBlock, InferenceConfig, Message, StopReason,
    ToolSpec,
};
use rag_core::retrying_model::RetryingChatModel;
use rag_core::{EmbedError, Embedder, ModelError, SearchFilter, Tenant, VectorStore};
use serde_json::{Value, json};
use uuid::Uuid;

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
    }
}

/// The adapter wrapped the way the service wraps every chat model.
fn retrying(model: BedrockChatModel, max_attempts: u32) -> RetryingChatModel {
    RetryingChatModel::new(Arc::new(model), fast_retry(max_attempts))
}

/// A small deterministic generator, so failures reproduce.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Which metadata a filter should keep, written out by hand.
type Predicate = Box<dyn Fn(&Value) -> bool>;

fn brute_force(
    vectors: &[(String, Vec<f32>, Value)],
    query: &[f32],
    metric: &str,
    k: usize,
    keep: impl Fn(&Value) -> bool,
) -> Vec<(String, f32)> {
    let mut scored: Vec<(String, f32)> = vectors
        .iter()
        .filter(|(_, _, m)| keep(m))
        .map(|(key, v, _)| {
            let d = if metric == "cosine" {
                let dot: f32 = v.iter().zip(query).map(|(a, b)| a * b).sum();
                let na = v.iter().map(|a| a * a).sum::<f32>().sqrt();
                let nb = query.iter().map(|a| a * a).sum::<f32>().sqrt();
                1.0 - dot / (na * nb)
            } else {
                v.iter()
                    .zip(query)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
                    .sqrt()
            };
            (key.clone(), d)
        })
        .collect();
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}

#[tokio::test]
async fn query_vectors_matches_brute_force_on_random_data() {
    let emulator = Emulator::start().await.unwrap();
    let client = common::s3vectors(&emulator.url);
    client
        .create_vector_bucket()
        .vector_bucket_name("b")
        .send()
        .await
        .unwrap();
    let mut rng = Lcg(7);
    let dim = 24;
    let vectors: Vec<(String, Vec<f32>, Value)> = (0..1200)
        .map(|i| {
            let v: Vec<f32> = (0..dim).map(|_| rng.next()).collect();
            (
                format!("k{i:04}"),
                v,
                json!({"group": i % 5, "name": format!("n{}", i % 7)}),
            )
        })
        .collect();
    for metric in ["cosine", "euclidean"] {
        let index = format!("idx-{metric}");
        client
            .create_index()
            .vector_bucket_name("b")
            .index_name(&index)
            .data_type(DataType::Float32)
            .dimension(dim as i32)
            .distance_metric(DistanceMetric::from(metric))
            .send()
            .await
            .unwrap();
        // ENHANCED filters before the search, so a filtered query's
        // answer is the brute-force one (CLASSIC may return fewer).
        client
            .update_index_mode()
            .vector_bucket_name("b")
            .index_name(&index)
            .index_mode(aws_sdk_s3vectors::types::IndexMode::Enhanced)
            .send()
            .await
            .unwrap();
        for batch in vectors.chunks(500) {
            let items = batch
                .iter()
                .map(|(key, v, m)| {
                    PutInputVector::builder()
                        .key(key)
                        .data(VectorData::Float32(v.clone()))
                        .metadata(json_to_document(m))
                        .build()
                        .unwrap()
                })
                .collect();
            client
                .put_vectors()
                .vector_bucket_name("b")
                .index_name(&index)
                .set_vectors(Some(items))
                .send()
                .await
                .unwrap();
        }
        let filters: Vec<(Option<Value>, Predicate)> = vec![
            (None, Box::new(|_| true)),
            (
                Some(json!({"group": {"$in": [1, 3]}})),
                Box::new(|m: &Value| [1, 3].contains(&m["group"].as_i64().unwrap())),
            ),
            (
                Some(
                    json!({"$or": [{"name": "n2"}, {"$and": [{"group": {"$gte": 3}}, {"name": {"$ne": "n0"}}]}]}),
                ),
                Box::new(|m: &Value| {
                    m["name"] == "n2" || (m["group"].as_i64().unwrap() >= 3 && m["name"] != "n0")
                }),
            ),
        ];
        for q in 0..15 {
            let query: Vec<f32> = (0..dim).map(|_| rng.next()).collect();
            let (filter, keep) = &filters[q % filters.len()];
            let output = client
                .query_vectors()
                .vector_bucket_name("b")
                .index_name(&index)
                .top_k(10)
                .query_vector(VectorData::Float32(query.clone()))
                .set_filter(filter.as_ref().map(json_to_document))
                .return_distance(true)
                .return_metadata(true)
                .send()
                .await
                .unwrap();
            let got: Vec<(String, f32)> = output
                .vectors()
                .iter()
                .map(|v| (v.key().to_string(), v.distance().unwrap()))
                .collect();
            let expected = brute_force(&vectors, &query, metric, 10, keep);
            assert_eq!(got.len(), expected.len());
            for ((gk, gd), (ek, ed)) in got.iter().zip(&expected) {
                assert_eq!(gk, ek, "{metric} query {q}");
                assert!((gd - ed).abs() < 1e-4, "{metric} {gd} vs {ed}");
            }
            assert!(output.vectors()[0].metadata().is_some());
        }
    }
    // The service's limits hold.
    let err = client
        .query_vectors()
        .vector_bucket_name("b")
        .index_name("idx-cosine")
        .top_k(101)
        .query_vector(VectorData::Float32(vec![0.0; dim]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&err),
        Some("ValidationException")
    );
}

fn json_to_document(value: &Value) -> aws_smithy_types::Document {
    use aws_smithy_types::{Document, Number};
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => match n.as_u64() {
            Some(u) => Document::Number(Number::PosInt(u)),
            None => Document::Number(Number::Float(n.as_f64().unwrap())),
        },
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(json_to_document).collect()),
        Value::Object(o) => Document::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_document(v)))
                .collect(),
        ),
    }
}

#[tokio::test]
async fn vector_store_ranks_by_similarity_and_filters_by_document() {
    let emulator = Emulator::start().await.unwrap();
    let store = S3VectorStore::new(common::s3vectors(&emulator.url), "b", "chunks", 3);
    assert_eq!(store.ensure_index(true).await.unwrap(), None);
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    store
        .upsert(
            &t(),
            &[
                common::chunk(a, 0, "east", vec![1.0, 0.0, 0.0]),
                common::chunk(a, 1, "north-east", vec![1.0, 1.0, 0.0]),
                common::chunk(b, 0, "north", vec![0.0, 1.0, 0.0]),
            ],
        )
        .await
        .unwrap();
    let hits = store
        .search(&t(), &[1.0, 0.1, 0.0], 3, &SearchFilter::default())
        .await
        .unwrap();
    let texts: Vec<_> = hits.iter().map(|h| h.content.as_str()).collect();
    assert_eq!(texts, ["east", "north-east", "north"]);
    assert!(hits[0].score > 0.99 && hits[0].score <= 1.0 + 1e-6);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(hits[1].metadata.chunk_index, 1);

    let only_b = store
        .search(
            &t(),
            &[1.0, 0.0, 0.0],
            3,
            &SearchFilter {
                document_ids: vec![b],
            },
        )
        .await
        .unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].document_id, b);
    let both = store
        .search(
            &t(),
            &[1.0, 0.0, 0.0],
            3,
            &SearchFilter {
                document_ids: vec![a, b],
            },
        )
        .await
        .unwrap();
    assert_eq!(both.len(), 3);
    assert!(
        store
            .search(&t(), &[1.0, 0.0], 3, &SearchFilter::default())
            .await
            .is_err()
    );
    assert_eq!(emulator.vector_count("b", "chunks"), 3);
    assert_eq!(store.delete_document(&t(), a).await.unwrap(), 2);
    assert_eq!(emulator.vector_count("b", "chunks"), 1);
}

/// Deterministic pseudo-random vectors around a few shared centres, so
/// every tenant's vectors are near every query.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493);
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..4).map(|_| (0..dim).map(|_| next()).collect()).collect();
    (0..n)
        .map(|i| {
            centres[i % centres.len()]
                .iter()
                .map(|c| c + 0.5 * next())
                .collect()
        })
        .collect()
}

/// A small tenant beside a large one in one index: every search is
/// filtered to its tenant, an ENHANCED index returns the small tenant's
/// true top-k, and the same index in CLASSIC mode (filters during the
/// search) returns fewer, as the service may. No tenant ever sees
/// another's vectors, and deleting under another tenant removes nothing.
#[tokio::test]
async fn vector_search_is_per_tenant_and_enhanced_mode_keeps_a_small_tenants_recall() {
    use aws_sdk_s3vectors::types::IndexMode;
    let emulator = Emulator::start().await.unwrap();
    let client = common::s3vectors(&emulator.url);
    let store = S3VectorStore::new(client.clone(), "b", "chunks", 8);
    assert_eq!(store.ensure_index(true).await.unwrap(), None);
    let index = client
        .get_index()
        .vector_bucket_name("b")
        .index_name("chunks")
        .send()
        .await
        .unwrap();
    assert_eq!(
        index.index().unwrap().index_mode(),
        Some(&IndexMode::Enhanced)
    );

    let (big, small) = (Tenant::new("big").unwrap(), Tenant::new("small").unwrap());
    let big_doc = Uuid::new_v4();
    let big_rows: Vec<_> = clustered(2000, 8, 1)
        .into_iter()
        .enumerate()
        .map(|(i, v)| common::chunk(big_doc, i as u32, "big", v))
        .collect();
    store.upsert(&big, &big_rows).await.unwrap();
    let small_doc = Uuid::new_v4();
    let small_rows: Vec<_> = clustered(40, 8, 2)
        .into_iter()
        .enumerate()
        .map(|(i, v)| common::chunk(small_doc, i as u32, "small", v))
        .collect();
    store.upsert(&small, &small_rows).await.unwrap();

    let queries = clustered(10, 8, 3);
    for query in &queries {
        let hits = store
            .search(&small, query, 10, &SearchFilter::default())
            .await
            .unwrap();
        assert_eq!(hits.len(), 10, "ENHANCED returns a full top-k");
        assert!(hits.iter().all(|h| h.document_id == small_doc));
        // Naming the other tenant's document finds nothing.
        let across = store
            .search(
                &small,
                query,
                10,
                &SearchFilter {
                    document_ids: vec![big_doc],
                },
            )
            .await
            .unwrap();
        assert!(across.is_empty());
    }
    assert!(store.chunks_of(&small, big_doc).await.unwrap().is_empty());
    let big_chunk = vec![rag_core::ChunkMetadata::chunk_id_for(big_doc, 0)];
    assert!(
        store
            .chunks_by_id(&small, &big_chunk)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.chunks_by_id(&big, &big_chunk).await.unwrap().len(), 1);
    assert_eq!(store.delete_document(&small, big_doc).await.unwrap(), 0);
    assert_eq!(store.chunks_of(&big, big_doc).await.unwrap().len(), 2000);

    client
        .update_index_mode()
        .vector_bucket_name("b")
        .index_name("chunks")
        .index_mode(IndexMode::Classic)
        .send()
        .await
        .unwrap();
    let mut classic = 0;
    for query in &queries {
        let hits = store
            .search(&small, query, 10, &SearchFilter::default())
            .await
            .unwrap();
        assert!(hits.iter().all(|h| h.document_id == small_doc));
        classic += hits.len();
    }
    assert!(classic < queries.len() * 10, "CLASSIC found {classic}");
    // With creation off, a CLASSIC index starts with a warning, not an error.
    assert!(store.ensure_index(false).await.unwrap().is_some());
}

#[tokio::test]
async fn titan_embeddings_keep_order_and_survive_a_throttling_storm() {
    let emulator = Emulator::start().await.unwrap();
    let client = common::bedrock_no_sdk_retry(&emulator.url);
    assert!(matches!(
        TitanEmbedder::new(
            client.clone(),
            "amazon.titan-embed-text-v2:0",
            384,
            4,
            fast_retry(3)
        ),
        Err(EmbedError::Invalid(_))
    ));
    assert!(
        TitanEmbedder::new(
            client.clone(),
            "cohere.embed-english-v3",
            1024,
            4,
            fast_retry(3)
        )
        .is_err()
    );

    let embedder = TitanEmbedder::new(
        client.clone(),
        "amazon.titan-embed-text-v2:0",
        256,
        25,
        fast_retry(12),
    )
    .unwrap();
    let texts: Vec<String> = (0..300)
        .map(|i| format!("text number {i} about topic {}", i % 11))
        .collect();
    emulator.set_faults(Faults {
        throttle_percent: 30,
        seed: 42,
        ..Faults::default()
    });
    let vectors = embedder.embed(&texts).await.unwrap();
    let stats = emulator.bedrock_stats();
    assert_eq!(vectors.len(), 300);
    assert_eq!(stats.embedded_texts, 300, "every text embedded once");
    assert!(stats.faults_injected > 50, "{stats:?}");
    for (text, vector) in texts.iter().zip(&vectors) {
        let mut expected = hashed_bag_of_words(text, 256);
        let norm = expected.iter().map(|x| x * x).sum::<f32>().sqrt();
        expected.iter_mut().for_each(|x| *x /= norm);
        assert_eq!(vector, &expected, "results are in input order");
    }

    // With retries exhausted, throttling surfaces as its own error.
    emulator.set_faults(Faults {
        throttle_percent: 100,
        ..Faults::default()
    });
    let once = TitanEmbedder::new(
        client.clone(),
        "amazon.titan-embed-text-v2:0",
        256,
        2,
        fast_retry(2),
    )
    .unwrap();
    assert!(matches!(
        once.embed(&["x".to_string()]).await,
        Err(EmbedError::Throttled { .. })
    ));
    emulator.set_faults(Faults::default());
    let v1 =
        TitanEmbedder::new(client, "amazon.titan-embed-text-v1", 1536, 2, fast_retry(2)).unwrap();
    assert_eq!(
        v1.embed(&["hello world".to_string()]).await.unwrap()[0].len(),
        1536
    );
}

fn request_with_tool() -> ChatRequest {
    ChatRequest {
        system: Some("be brief".into()),
        messages: vec![Message::user_text("what is in the docs?")],
        tools: vec![ToolSpec {
            name: "list_documents".into(),
            description: "Lists documents".into(),
            input_schema: json!({"type": "object", "properties": {"limit": {"type": "integer"}}}),
        }],
        inference: InferenceConfig {
            max_tokens: Some(300),
            temperature: Some(0.1),
        },
        grounding: None,
    }
}

#[tokio::test]
async fn converse_maps_requests_replies_and_errors() {
    let emulator = Emulator::start().await.unwrap();
    let model = retrying(
        BedrockChatModel::new(
            common::bedrock_no_sdk_retry(&emulator.url),
            "anthropic.claude-test",
        ),
        6,
    );

    emulator.push_reply(Reply::tool_use("t1", "list_documents", json!({"limit": 5})));
    let response = model.converse(request_with_tool()).await.unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.message.content,
        vec![ContentBlock::ToolUse {
            tool_use_id: "t1".into(),
            name: "list_documents".into(),
            input: json!({"limit": 5}),
        }]
    );
    assert!(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    let sent = emulator.converse_requests().pop().unwrap();
    assert_eq!(sent["system"], json!([{"text": "be brief"}]));
    assert_eq!(sent["inferenceConfig"]["maxTokens"], 300);
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "list_documents"
    );
    assert_eq!(
        sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["limit"]["type"],
        "integer"
    );

    // Tool results go back in Converse's shape.
    let mut follow_up = request_with_tool();
    follow_up.messages.push(response.message.clone());
    follow_up.messages.push(Message {
        role: rag_core::chat::Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "t1".into(),
            status: rag_core::chat::ToolResultStatus::Success,
            content: "3 documents".into(),
        }],
    });
    emulator.push_fault(Fault::Throttle);
    emulator.push_fault(Fault::ServiceUnavailable);
    emulator.push_reply(Reply::text("There are 3 documents."));
    let answer = model.converse(follow_up).await.unwrap();
    assert_eq!(answer.message.text(), "There are 3 documents.");
    assert_eq!(answer.stop_reason, StopReason::EndTurn);
    let sent = emulator.converse_requests().pop().unwrap();
    assert_eq!(
        sent["messages"][2]["content"][0]["toolResult"]["toolUseId"],
        "t1"
    );
    assert_eq!(
        sent["messages"][2]["content"][0]["toolResult"]["status"],
        "success"
    );
    assert_eq!(
        sent["messages"][1]["content"][0]["toolUse"]["input"],
        json!({"limit": 5})
    );

    emulator.push_fault(Fault::InputTooLong);
    assert!(matches!(
        model.converse(request_with_tool()).await,
        Err(ModelError::ContextTooLong)
    ));
    let impatient = retrying(
        BedrockChatModel::new(common::bedrock_no_sdk_retry(&emulator.url), "m"),
        2,
    );
    emulator.push_fault(Fault::Throttle);
    emulator.push_fault(Fault::Throttle);
    assert!(matches!(
        impatient.converse(request_with_tool()).await,
        Err(ModelError::Throttled { .. })
    ));
    // A conversation that does not alternate is the caller's error.
    let mut bad = request_with_tool();
    bad.messages.push(Message::user_text("again"));
    assert!(matches!(
        model.converse(bad).await,
        Err(ModelError::Invalid(_))
    ));
}

#[tokio::test]
async fn converse_stream_delivers_deltas_tool_uses_and_mid_stream_errors() {
    let emulator = Emulator::start().await.unwrap();
    let model = retrying(
        BedrockChatModel::new(common::bedrock_no_sdk_retry(&emulator.url), "m"),
        4,
    );
    emulator.push_reply(Reply {
        blocks: vec![
            ReplyBlock::Text("Let me look that up. ".into()),
            ReplyBlock::ToolUse {
                id: "t9".into(),
                name: "vector_search".into(),
                input: json!({"query": "ownership rules", "top_k": 3}),
            },
        ],
        stop_reason: "tool_use".into(),
        delta_delay: Duration::from_millis(5),
    });
    emulator.push_fault(Fault::Throttle);
    let stream = model.converse_stream(request_with_tool()).await.unwrap();
    let events: Vec<ChatStreamEvent> = stream.map(|e| e.unwrap()).collect().await;
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            ChatStreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Let me look that up. ");
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, ChatStreamEvent::TextDelta(_)))
            .count()
            > 1
    );
    assert!(events.contains(&ChatStreamEvent::ToolUse {
        tool_use_id: "t9".into(),
        name: "vector_search".into(),
        input: json!({"query": "ownership rules", "top_k": 3}),
    }));
    match events.last().unwrap() {
        ChatStreamEvent::Stop { stop_reason, usage } => {
            assert_eq!(*stop_reason, StopReason::ToolUse);
            assert!(usage.total_tokens > 0);
        }
        other => panic!("last event {other:?}"),
    }

    emulator.push_reply(Reply::text("one two three four five"));
    emulator.push_stream_fault(Fault::Throttle);
    let mut stream = model.converse_stream(request_with_tool()).await.unwrap();
    let mut saw_text = false;
    let mut error = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(ChatStreamEvent::TextDelta(_)) => saw_text = true,
            Ok(_) => {}
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(saw_text);
    assert!(
        matches!(error, Some(ModelError::Throttled { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn knowledge_base_search_tool_retrieves_ranked_passages() {
    use rag_core::tools::{Tool, ToolError};
    let emulator = Emulator::start().await.unwrap();
    emulator.add_knowledge_base_passage(
        "KB1",
        "s3://kb/ownership.md",
        "Ownership rules: each value has one owner.",
        json!({"tenant": "default"}),
    );
    emulator.add_knowledge_base_passage(
        "KB1",
        "s3://kb/traits.md",
        "Traits define shared behaviour.",
        json!({"tenant": "default"}),
    );
    // Another tenant's passage, and one marked with no tenant: neither is
    // ever found for the default tenant.
    emulator.add_knowledge_base_passage(
        "KB1",
        "s3://kb/other.md",
        "Who owns a value: the other tenant's ownership notes.",
        json!({"tenant": "other"}),
    );
    emulator.add_knowledge_base_passage(
        "KB1",
        "s3://kb/unmarked.md",
        "Who owns a value, unmarked.",
        json!({}),
    );
    let client = common::bedrock_agent(&emulator.url);
    let tool = rag_aws::KnowledgeBaseSearchTool::new(client.clone(), "KB1", fast_retry(4));
    let spec = tool.spec();
    assert_eq!(spec.name, "knowledge_base_search");
    assert!(spec.description.contains("knowledge base"));
    assert_eq!(spec.input_schema["required"], json!(["query"]));

    emulator.push_fault(Fault::Throttle);
    let out = tool
        .call(&t(), json!({"query": "who owns a value", "top_k": 4}))
        .await
        .unwrap();
    let rag_core::tools::ToolOutput::Text(out) = out else {
        panic!("knowledge base results are text: {out:?}")
    };
    let passages: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(passages.len(), 2, "{passages:?}");
    assert_eq!(passages[0]["source"], "s3://kb/ownership.md");
    assert!(passages[0]["score"].as_f64().unwrap() > passages[1]["score"].as_f64().unwrap());

    assert!(matches!(
        tool.call(&t(), json!({"query": "x", "top_k": 0})).await,
        Err(ToolError::InvalidInput(_))
    ));
    assert!(matches!(
        tool.call(&t(), json!({"nope": 1})).await,
        Err(ToolError::InvalidInput(_))
    ));
    let missing = rag_aws::KnowledgeBaseSearchTool::new(client, "NOPE", fast_retry(2));
    match missing.call(&t(), json!({"query": "x"})).await {
        Err(ToolError::Failed(message)) => assert!(message.contains("not found"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// `S3_VECTOR_INDEX_PER_TENANT`: each tenant's vectors go to an index of
/// its own, made on its first write; a tenant without one finds nothing,
/// and nothing of one tenant's is found through another's.
#[tokio::test]
async fn an_index_per_tenant_is_made_on_first_write_and_kept_apart() {
    use rag_aws::{IndexLayout, per_tenant_index_name};
    let emulator = Emulator::start().await.unwrap();
    let client = common::s3vectors(&emulator.url);
    let store = S3VectorStore::new(client.clone(), "b", "chunks", 3)
        .with_layout(IndexLayout::PerTenant { create: true });
    assert_eq!(store.ensure_index(true).await.unwrap(), None);
    let (a, b, c) = (
        Tenant::new("Team_A").unwrap(),
        Tenant::new("team-b").unwrap(),
        Tenant::new("team-c").unwrap(),
    );
    let (doc_a, doc_b) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .upsert(
            &a,
            &[common::chunk(doc_a, 0, "a east", vec![1.0, 0.0, 0.0])],
        )
        .await
        .unwrap();
    store
        .upsert(
            &b,
            &[common::chunk(doc_b, 0, "b east", vec![1.0, 0.1, 0.0])],
        )
        .await
        .unwrap();
    let names: Vec<String> = client
        .list_indexes()
        .vector_bucket_name("b")
        .send()
        .await
        .unwrap()
        .indexes()
        .iter()
        .map(|i| i.index_name().to_string())
        .collect();
    for tenant in [&Tenant::default_tenant(), &a, &b] {
        let name = per_tenant_index_name("chunks", tenant);
        assert!(names.contains(&name), "{name} missing from {names:?}");
        assert!(
            name.len() <= 63
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'),
            "{name} is not a valid index name"
        );
    }
    assert_eq!(names.len(), 3, "{names:?}");
    let query = [1.0, 0.0, 0.0];
    let hits = store
        .search(&a, &query, 10, &SearchFilter::default())
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].metadata.document_id, doc_a);
    let hits = store
        .search(&b, &query, 10, &SearchFilter::default())
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].metadata.document_id, doc_b);
    // A tenant that never wrote has no index and no vectors, and reads of
    // it are not errors.
    assert!(
        store
            .search(&c, &query, 10, &SearchFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.delete_document(&c, doc_a).await.unwrap(), 0);
    assert_eq!(
        store.delete_document(&b, doc_a).await.unwrap(),
        0,
        "A's id through B's index"
    );
    assert_eq!(store.delete_document(&a, doc_a).await.unwrap(), 1);
    assert!(
        store
            .search(&a, &query, 10, &SearchFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    // Without permission to create indexes a new tenant's first write is
    // refused, saying why.
    let fixed = S3VectorStore::new(client, "b", "chunks", 3)
        .with_layout(IndexLayout::PerTenant { create: false });
    let error = fixed
        .upsert(&c, &[common::chunk(doc_a, 0, "c", vec![0.0, 1.0, 0.0])])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
}

/// Against a quota of 40 calls a second, 16 calls in flight (each taking
/// 50 ms, so 320 a second) are throttled: the embedder cuts its calls in
/// flight and every text is still embedded, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titan_calls_in_flight_adapt_to_a_quota() {
    let emulator = Emulator::start().await.unwrap();
    let client = common::bedrock_no_sdk_retry(&emulator.url);
    emulator.set_faults(Faults {
        calls_per_second: Some(40),
        latency: Duration::from_millis(50),
        ..Faults::default()
    });
    let embedder = Arc::new(
        TitanEmbedder::new(
            client,
            "amazon.titan-embed-text-v2:0",
            256,
            16,
            RetryPolicy {
                max_attempts: 10,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(500),
            },
        )
        .unwrap(),
    );
    assert_eq!(embedder.current_concurrency(), 16);
    let lowest = Arc::new(std::sync::atomic::AtomicUsize::new(16));
    let watcher = tokio::spawn({
        let (embedder, lowest) = (embedder.clone(), lowest.clone());
        async move {
            loop {
                lowest.fetch_min(
                    embedder.current_concurrency(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let texts: Vec<String> = (0..160).map(|i| format!("quota text {i}")).collect();
    let vectors = embedder.embed(&texts).await.unwrap();
    watcher.abort();
    assert_eq!(vectors.len(), 160);
    let stats = emulator.bedrock_stats();
    assert!(stats.over_quota > 0, "the quota was reached: {stats:?}");
    assert_eq!(stats.embedded_texts, 160, "{stats:?}");
    let lowest = lowest.load(std::sync::atomic::Ordering::Relaxed);
    assert!(lowest < 16, "the calls in flight were never cut");
    assert!(lowest >= 1);
}
