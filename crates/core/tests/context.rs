//! Context assembly as a model sees it: in `/query`'s prompt and in the
//! agent's `vector_search` results, a hit's neighbouring chunks are added
//! within the token budget and overlapping chunks are read once.

use std::collections::HashSet;
use std::sync::Arc;

use rag_core::chat::{ChatModel, ContentBlock, Grounding};
use rag_core::test_util::{Scripted, ScriptedModel, service_over_texts};
use rag_core::text::sentences;
use rag_core::tools::ToolRegistry;
use rag_core::{
    AgentSettings, QueryInput, RagService, SearchMode, ServiceSettings, Tenant, TurnRequest,
};
use serde_json::json;
use uuid::Uuid;

/// Eighty numbered sentences (about 2,900 characters, three to four
/// chunks at the default size); only sentence 40 names a zeppelin.
fn long_document() -> String {
    (0..80)
        .map(|i| match i {
            40 => "Sentence 40 tells of the zeppelin over the harbour. ".to_string(),
            _ => format!("Sentence {i} tells of the quiet town. "),
        })
        .collect()
}

async fn service(model: Arc<dyn ChatModel>, context_tokens: usize) -> Arc<RagService> {
    let document = long_document();
    service_over_texts(
        model,
        ServiceSettings {
            context_tokens,
            ..ServiceSettings::default()
        },
        &[document.as_str()],
    )
    .await
}

fn numbered(text: &str) -> Vec<String> {
    sentences(text)
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| s.starts_with("Sentence") && s.ends_with('.'))
        .collect()
}

fn assert_no_repeats(text: &str) {
    let said = numbered(text);
    let distinct: HashSet<&String> = said.iter().collect();
    assert_eq!(said.len(), distinct.len(), "a sentence repeats in {text}");
}

async fn passages_for(context_tokens: usize) -> (Grounding, usize) {
    let model = ScriptedModel::new(false, [Scripted::Text("The zeppelin [1].".into())]);
    let service = service(Arc::new(model.clone()), context_tokens).await;
    let reply = service
        .answerer()
        .query(QueryInput {
            tenant: Tenant::default_tenant(),
            query: "zeppelin".into(),
            top_k: Some(1),
            similarity_threshold: None,
            document_ids: Vec::new(),
            conversation_id: None,
            mode: Some(SearchMode::Lexical),
            rerank: None,
        })
        .await
        .unwrap();
    assert_eq!(reply.sources.len(), 1);
    assert_eq!(reply.sources[0].citation, 1);
    let requests = model.requests.lock().unwrap().clone();
    let grounding = requests[0].grounding.clone().expect("a grounded request");
    let hit_chars = (reply.sources[0].end_char - reply.sources[0].start_char) as usize;
    (grounding, hit_chars)
}

#[tokio::test]
async fn a_hits_neighbours_join_it_within_the_budget_and_nothing_is_read_twice() {
    let (alone, hit_chars) = passages_for(0).await;
    assert_eq!(alone.passages.len(), 1);
    assert_eq!(alone.passages[0].text.chars().count(), hit_chars);
    assert!(alone.passages[0].text.contains("zeppelin"));

    let (grown, _) = passages_for(2000).await;
    assert_eq!(grown.passages.len(), 1, "one hit, one passage");
    let text = &grown.passages[0].text;
    assert!(text.contains("zeppelin"));
    assert!(
        text.chars().count() > hit_chars,
        "the chunks beside the hit were added: {text}"
    );
    // The chunker overlaps neighbouring chunks; the merged passage reads
    // the overlap once.
    assert_no_repeats(text);
    let said = numbered(text);
    assert!(said.len() > numbered(&alone.passages[0].text).len());
}

#[tokio::test]
async fn the_agents_search_tool_returns_the_assembled_passage() {
    let model = ScriptedModel::new(
        true,
        [
            Scripted::Tools(vec![(
                "v".into(),
                "vector_search".into(),
                json!({"query": "zeppelin harbour", "top_k": 1}),
            )]),
            Scripted::Text("The zeppelin [1].".into()),
        ],
    );
    let service = service(Arc::new(model.clone()), 2000).await;
    let service = service.with_agent(
        ToolRegistry::standard(service.tool_parts()),
        AgentSettings::default(),
    );
    let reply = service
        .turns()
        .chat(TurnRequest {
            conversation_id: Some(Uuid::new_v4()),
            ..TurnRequest::new(Tenant::default_tenant(), "What flew over the harbour?")
        })
        .await
        .unwrap();
    assert_eq!(reply.sources.len(), 1);
    let hit_chars = (reply.sources[0].end_char - reply.sources[0].start_char) as usize;
    let requests = model.requests.lock().unwrap().clone();
    let ContentBlock::ToolResult { content, .. } = &requests[1].messages.last().unwrap().content[0]
    else {
        panic!("the second request answers the tool call")
    };
    assert!(content.contains("zeppelin"), "{content}");
    assert_no_repeats(content);
    let sentences_read = numbered(content).len();
    assert!(
        sentences_read * 38 > hit_chars,
        "more than the hit's own {hit_chars} characters were read: {content}"
    );
}
