//! Follow-up questions in a retrieve-then-answer chat: a question that
//! leans on the conversation is searched as a standalone query, the
//! model's rewrite where the model can write one, the previous question's
//! terms with the extractive default or when the rewrite is unusable; a
//! question that stands alone costs no extra call.

use std::sync::Arc;

use rag_core::answer::ExtractiveAnswerer;
use rag_core::chat::ChatModel;
use rag_core::test_util::{Scripted, ScriptedModel, service_over_texts};
use rag_core::{ChatReply, RagError, RagService, SearchMode, ServiceSettings, Tenant, TurnRequest};
use uuid::Uuid;

const CARGO: &str = "Cargo compiles a project: run cargo build in the project folder.";
const HOUSE: &str = "A house needs bricks and mortar; builders build it wall by wall.";

async fn service(model: Arc<dyn ChatModel>) -> Arc<RagService> {
    service_over_texts(model, ServiceSettings::default(), &[CARGO, HOUSE]).await
}

async fn turn(service: &RagService, message: &str, conversation_id: Uuid) -> ChatReply {
    service
        .turns()
        .chat(TurnRequest {
            conversation_id: Some(conversation_id),
            mode: Some(SearchMode::Lexical),
            top_k: Some(2),
            ..TurnRequest::new(Tenant::default_tenant(), message)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn the_extractive_default_searches_a_follow_up_with_the_previous_terms() {
    let service = service(Arc::new(ExtractiveAnswerer)).await;
    let id = Uuid::new_v4();
    let first = turn(&service, "How do I compile a cargo project?", id).await;
    assert_eq!(first.search_query, None);
    let second = turn(&service, "And how do I build it?", id).await;
    assert_eq!(
        second.search_query.as_deref(),
        Some("And how do I build it? compile cargo project")
    );
    // Searched as asked, "build it" matches the house as well as Cargo;
    // with the previous terms, Cargo's passage leads and is what the
    // answer quotes.
    assert!(
        second.sources[0].snippet.starts_with("Cargo compiles"),
        "{:?}",
        second.sources
    );
    assert!(second.answer.contains("cargo build"), "{}", second.answer);
    // A blank follow-up is refused like any blank question, not filled
    // in from the history.
    let blank = service
        .turns()
        .chat(TurnRequest {
            conversation_id: Some(id),
            ..TurnRequest::new(Tenant::default_tenant(), "\u{c} ")
        })
        .await;
    assert!(matches!(blank, Err(RagError::InvalidInput(_))), "{blank:?}");
    // A new conversation has no history: the same words, searched as is.
    let alone = turn(&service, "And how do I build it?", Uuid::new_v4()).await;
    assert_eq!(alone.search_query, None);
}

#[tokio::test]
async fn a_generative_model_rewrites_a_follow_up_and_garbage_falls_back() {
    let model = ScriptedModel::new(
        false,
        [
            Scripted::Text("Cargo compiles projects [1].".into()),
            // The rewrite of the second question, then its answer.
            Scripted::Text("\"cargo build command for a project\"".into()),
            Scripted::Text("Run cargo build [1].".into()),
            // A rewrite that is not one query, then the answer.
            Scripted::Text("Sure! Here is the query:\ncargo build".into()),
            Scripted::Text("Bricks [1].".into()),
        ],
    );
    let service = service(Arc::new(model.clone())).await;
    let id = Uuid::new_v4();
    turn(&service, "How do I compile a cargo project?", id).await;
    // A standalone first question made one call, no rewrite.
    assert_eq!(model.requests.lock().unwrap().len(), 1);

    let second = turn(&service, "How do I build it?", id).await;
    assert_eq!(
        second.search_query.as_deref(),
        Some("cargo build command for a project")
    );
    let requests = model.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    let rewrite = &requests[1];
    assert!(
        rewrite
            .system
            .as_deref()
            .unwrap()
            .contains("standalone search query")
    );
    let transcript = rewrite.messages[0].text();
    assert!(
        transcript.contains("User: How do I compile a cargo project?"),
        "{transcript}"
    );
    assert!(
        transcript.contains("User: How do I build it?"),
        "{transcript}"
    );
    // The answer is asked the question as the user wrote it.
    assert!(
        requests[2]
            .messages
            .last()
            .unwrap()
            .text()
            .contains("How do I build it?")
    );

    let third = turn(&service, "What about those?", id).await;
    assert_eq!(
        third.search_query.as_deref(),
        Some("What about those? build")
    );
}
