//! Verified citations on both kinds of answer: a scripted model that cites
//! a passage that does not exist and attaches a real number to a claim no
//! passage makes gets both flagged, in `/query`'s reply, in a chat reply
//! and in the stream's `citations` event.

use std::sync::Arc;

use futures::StreamExt;
use rag_core::fetch::{FetchPolicy, UrlFetcher};
use rag_core::test_util::{LetterEmbedder, MemoryStores, Scripted, ScriptedModel, ingest_texts};
use rag_core::{ChatEvent, QueryInput, RagService, ServiceSettings, Tenant, TurnRequest};

/// Every document opens with the same sentence, so whichever ranks first
/// supports a claim made from it.
const DOCUMENTS: [&str; 5] = [
    "Every value in Rust has an owner. Ownership moves on assignment.",
    "Every value in Rust has an owner. Borrowing takes a reference.",
    "Every value in Rust has an owner. Slices borrow part of a collection.",
    "Every value in Rust has an owner. Lifetimes say how long references live.",
    "Every value in Rust has an owner. Drop runs when the owner leaves scope.",
];

const ANSWER: &str = "Every value in Rust has an owner [1]. \
    The moon is a cheese wheel that orbits Jupiter twice daily [2]. \
    Borrowing takes a reference [7].";

async fn service(model: &ScriptedModel) -> Arc<RagService> {
    let memory = MemoryStores::default();
    let service = RagService::new(
        memory.stores(),
        Some(Arc::new(LetterEmbedder::default())),
        Arc::new(model.clone()),
        UrlFetcher::new(FetchPolicy::default()).unwrap(),
        ServiceSettings::default(),
        Vec::new(),
    )
    .unwrap();
    ingest_texts(&service, &DOCUMENTS).await;
    service
}

fn check(answer: &str, report: &rag_core::answer::CitationReport) {
    assert_eq!(report.removed_citations, vec![7], "{report:?}");
    assert!(!answer.contains("[7]"), "{answer}");
    assert!(answer.ends_with("Borrowing takes a reference."), "{answer}");
    let flags: Vec<(usize, bool)> = report
        .citations
        .iter()
        .map(|c| (c.n, c.supported))
        .collect();
    assert_eq!(flags, vec![(1, true), (2, false)], "{report:?}");
    assert!(report.citations[1].sentence.starts_with("The moon"));
    // Three claims: one cites a passage that supports it, one cites one
    // that does not, one cites nothing that exists.
    let groundedness = report.groundedness.unwrap();
    assert!((groundedness - 1.0 / 3.0).abs() < 1e-6, "{groundedness}");
}

#[tokio::test]
async fn a_query_reply_flags_a_missing_passage_and_an_unsupported_claim() {
    let model = ScriptedModel::new(false, [Scripted::Text(ANSWER.into())]);
    let service = service(&model).await;
    let reply = service
        .answerer()
        .query(QueryInput {
            tenant: Tenant::default_tenant(),
            query: "Who owns a value in Rust?".into(),
            top_k: Some(5),
            similarity_threshold: Some(-1.0),
            document_ids: Vec::new(),
            conversation_id: None,
            mode: None,
            rerank: None,
        })
        .await
        .unwrap();
    assert_eq!(reply.sources.len(), 5);
    check(&reply.answer, &reply.citation_report);
    assert_eq!(
        reply.citation_report.citations[0].chunk_id,
        reply.sources[0].chunk_id
    );
    // The reply's JSON carries the report beside the answer.
    let json = serde_json::to_value(&reply).unwrap();
    assert_eq!(json["removed_citations"], serde_json::json!([7]));
    assert_eq!(json["citations"][1]["supported"], false);
}

#[tokio::test]
async fn a_chat_reply_and_its_stream_carry_the_same_report() {
    let model = ScriptedModel::new(
        false,
        [Scripted::Text(ANSWER.into()), Scripted::Text(ANSWER.into())],
    );
    let service = service(&model).await;
    let request = || TurnRequest {
        top_k: Some(5),
        ..TurnRequest::new(Tenant::default_tenant(), "Who owns a value in Rust?")
    };
    let reply = service.turns().chat(request()).await.unwrap();
    check(&reply.answer, &reply.citation_report);

    let events: Vec<ChatEvent> = service
        .turns()
        .clone()
        .chat_stream(request())
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let (answer, report) = events
        .iter()
        .find_map(|e| match e {
            ChatEvent::Citations { answer, report } => Some((answer.clone(), report.clone())),
            _ => None,
        })
        .expect("a citations event");
    check(&answer, &report);
    assert!(matches!(events.last(), Some(ChatEvent::Done { .. })));
}
