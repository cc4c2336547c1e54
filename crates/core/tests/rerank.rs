//! The rerank stage inside a deployment: the reranker sees the best
//! `candidates` passages, its order decides which `top_k` are cited, a
//! request may turn it off, and a reranker that fails or answers garbage
//! leaves retrieval's order in place without failing the request.

use std::sync::Arc;
use std::time::Duration;

use rag_core::answer::ExtractiveAnswerer;
use rag_core::chat::ChatModel;
use rag_core::error::ModelError;
use rag_core::rerank::{LlmReranker, Reranking};
use rag_core::test_util::{Scripted, ScriptedModel, service_over_texts};
use rag_core::{
    QueryInput, QueryResponse, RagError, RagService, SearchMode, ServiceSettings, Tenant,
};

const TEXTS: [&str; 4] = [
    "Ownership rules: each value in Rust has an owner.",
    "Borrowing lends a value without taking ownership of it.",
    "The weather in the mountains changes quickly.",
    "A slice borrows part of a collection, such as part of a String.",
];

async fn service(ranker: &ScriptedModel, candidates: usize) -> Arc<RagService> {
    let settings = ServiceSettings {
        reranking: Some(Reranking {
            reranker: Arc::new(LlmReranker::new(Arc::new(ranker.clone()))),
            candidates,
            by_default: true,
            timeout: Duration::from_secs(5),
        }),
        ..ServiceSettings::default()
    };
    service_over_texts(Arc::new(ExtractiveAnswerer), settings, &TEXTS).await
}

fn question(rerank: Option<bool>) -> QueryInput {
    QueryInput {
        tenant: Tenant::default_tenant(),
        query: "How does borrowing work?".into(),
        top_k: Some(2),
        similarity_threshold: Some(-1.0),
        document_ids: Vec::new(),
        conversation_id: None,
        mode: Some(SearchMode::Dense),
        rerank,
    }
}

fn snippets(response: &QueryResponse) -> Vec<String> {
    response.sources.iter().map(|s| s.snippet.clone()).collect()
}

/// The number under which the ranking prompt shows `text`.
fn number_in_prompt(ranker: &ScriptedModel, text: &str) -> usize {
    let requests = ranker.requests.lock().unwrap();
    let prompt = requests.last().unwrap().messages[0].text();
    let line = prompt
        .lines()
        .find(|l| l.contains(text))
        .expect("the passage is in the prompt");
    line[1..line.find(']').unwrap()].parse().unwrap()
}

#[tokio::test]
async fn the_rerankers_pick_among_all_candidates_is_what_gets_cited() {
    // Which number the weather passage gets depends on retrieval; the
    // script is written after a first search shows the prompt.
    let probe = ScriptedModel::new(false, [Scripted::Text("1".into())]);
    service(&probe, 30)
        .await
        .answerer()
        .query(question(None))
        .await
        .unwrap();
    let prompt = probe.requests.lock().unwrap()[0].messages[0].text();
    assert_eq!(
        prompt.lines().filter(|l| l.starts_with('[')).count(),
        TEXTS.len(),
        "all four passages are candidates though top_k is 2: {prompt}"
    );
    let weather = number_in_prompt(&probe, "weather");
    let slice = number_in_prompt(&probe, "slice");

    let ranker = ScriptedModel::new(false, [Scripted::Text(format!("{weather}, {slice}"))]);
    let response = service(&ranker, 30)
        .await
        .answerer()
        .query(question(None))
        .await
        .unwrap();
    let cited = snippets(&response);
    assert!(
        cited[0].contains("weather") && cited[1].contains("slice"),
        "{cited:?}"
    );
    let report = response.rerank.expect("the search was reranked");
    assert!(report.applied);
    assert_eq!(report.candidates, 4);
    assert!(report.reranker.starts_with("llm:"), "{}", report.reranker);
    assert!(response.sources[0].score > response.sources[1].score);
}

#[tokio::test]
async fn garbage_or_a_failing_model_keeps_retrievals_order() {
    let plain = ScriptedModel::new(false, []);
    let baseline = service(&plain, 30)
        .await
        .answerer()
        .query(question(Some(false)))
        .await
        .unwrap();
    assert!(baseline.rerank.is_none());
    assert!(
        plain.requests.lock().unwrap().is_empty(),
        "rerank: false asks no model"
    );

    for (script, reason) in [
        (
            Scripted::Text("Sure! These passages are all relevant.".into()),
            "the reranker's answer could not be read",
        ),
        (
            Scripted::Fail(|| ModelError::Throttled { retry_after: None }),
            "the reranker is throttling requests",
        ),
        (
            Scripted::Fail(|| ModelError::permanent("access denied to arn:aws:iam::123:role/x")),
            "the reranker failed",
        ),
    ] {
        let ranker = ScriptedModel::new(false, [script]);
        let response = service(&ranker, 30)
            .await
            .answerer()
            .query(question(None))
            .await
            .expect("a reranker's failure never fails the request");
        assert_eq!(snippets(&response), snippets(&baseline));
        let report = response.rerank.unwrap();
        assert!(!report.applied);
        assert_eq!(report.fallback_reason.as_deref(), Some(reason));
    }
}

#[tokio::test]
async fn fewer_candidates_than_passages_limit_what_the_reranker_reads() {
    let ranker = ScriptedModel::new(false, [Scripted::Text("2, 1".into())]);
    let response = service(&ranker, 2)
        .await
        .answerer()
        .query(question(None))
        .await
        .unwrap();
    assert_eq!(response.rerank.unwrap().candidates, 2);
    let prompt = ranker.requests.lock().unwrap()[0].messages[0].text();
    assert!(
        prompt.contains("[2]") && !prompt.contains("[3]"),
        "{prompt}"
    );
}

#[tokio::test]
async fn asking_for_a_rerank_where_there_is_no_reranker_is_refused() {
    let model: Arc<dyn ChatModel> = Arc::new(ExtractiveAnswerer);
    let service = service_over_texts(model, ServiceSettings::default(), &TEXTS).await;
    let error = service
        .answerer()
        .query(question(Some(true)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RagError::InvalidInput(m) if m.contains("RERANK_PROVIDER")),
        "{error}"
    );
    let health = service.health(None).await.unwrap();
    assert_eq!(health.reranker, None);
}
