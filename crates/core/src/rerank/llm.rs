//! Listwise reranking by the deployment's chat model: one call shows the
//! model the question and the numbered candidates and asks for their
//! numbers, most relevant first. Any chat model can do it (Bedrock
//! Converse or an OpenAI-compatible server), at the price of one model
//! call per search.
//!
//! Models answer in many shapes ("3, 1, 2", "[3] > [1]", a sentence with
//! numbers in it), so the reply is read leniently: the passage numbers it
//! names, in order, duplicates and out-of-range numbers dropped. A reply
//! naming none is unreadable, and the search keeps its own order.

use std::sync::Arc;

use async_trait::async_trait;

use super::{RerankError, Reranker};
use crate::chat::{ChatModel, ChatRequest, InferenceConfig, Message};
use crate::error::{ErrorClass, ModelError};

/// Characters of each candidate the model reads: enough to judge it,
/// short enough that 30 candidates stay a few thousand tokens.
const PASSAGE_CHARS: usize = 700;

const RANK_PROMPT: &str = "You rank passages by how well they answer a question. \
Reply with the numbers of the passages that help answer it, most helpful first, \
separated by commas, and nothing else. Leave out passages that do not help.";

pub struct LlmReranker {
    model: Arc<dyn ChatModel>,
    name: String,
}

impl LlmReranker {
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        let name = format!("llm:{}", model.model_id());
        Self { model, name }
    }
}

#[async_trait]
impl Reranker for LlmReranker {
    fn name(&self) -> &str {
        &self.name
    }

    async fn score(&self, query: &str, documents: &[String]) -> Result<Vec<f32>, RerankError> {
        let mut prompt = format!("Question: {}\n\nPassages:\n", query.trim());
        for (i, document) in documents.iter().enumerate() {
            let text: String = document.chars().take(PASSAGE_CHARS).collect();
            prompt.push_str(&format!("[{}] {}\n\n", i + 1, text.replace('\n', " ")));
        }
        prompt.push_str("Passage numbers, most helpful first:");
        let request = ChatRequest {
            system: Some(RANK_PROMPT.to_string()),
            messages: vec![Message::user_text(prompt)],
            inference: InferenceConfig {
                // Thirty numbers and their commas.
                max_tokens: Some(160),
                temperature: Some(0.0),
            },
            ..ChatRequest::default()
        };
        let reply = self
            .model
            .converse(request)
            .await
            .map_err(from_model_error)?;
        let order = ranking(&reply.message.text(), documents.len());
        if order.is_empty() {
            return Err(RerankError::Unreadable(
                "the model named no passage number".to_string(),
            ));
        }
        Ok(scores_from_order(&order, documents.len()))
    }
}

fn from_model_error(error: ModelError) -> RerankError {
    match error {
        ModelError::Throttled { .. } => RerankError::Throttled,
        other => match other.class() {
            ErrorClass::Transient => RerankError::Transient(Box::new(other)),
            ErrorClass::Invalid => RerankError::Invalid(other.to_string()),
            ErrorClass::Permanent | ErrorClass::NotFound => RerankError::permanent(other),
        },
    }
}

/// The passage numbers a reply names, as 0-based indices, in order, each
/// once; numbers outside 1..=count are ignored.
fn ranking(reply: &str, count: usize) -> Vec<usize> {
    let mut order = Vec::new();
    for token in reply.split(|c: char| !c.is_ascii_digit()) {
        let Ok(number) = token.parse::<usize>() else {
            continue;
        };
        if (1..=count).contains(&number) && !order.contains(&(number - 1)) {
            order.push(number - 1);
        }
    }
    order
}

/// Scores in (0, 1] by position for the named passages, best first; the
/// passages the model left out score 0 and so keep their retrieval order
/// after the named ones.
fn scores_from_order(order: &[usize], count: usize) -> Vec<f32> {
    let mut scores = vec![0.0; count];
    for (position, &index) in order.iter().enumerate() {
        scores[index] = (count - position) as f32 / count as f32;
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Scripted, ScriptedModel};

    #[test]
    fn the_passage_numbers_are_read_from_any_shape_of_reply() {
        assert_eq!(ranking("3, 1, 2", 3), [2, 0, 1]);
        assert_eq!(ranking("[2] > [1] > [2]", 3), [1, 0]);
        assert_eq!(ranking("Passage 4 answers it best, then 1.", 4), [3, 0]);
        assert_eq!(ranking("0, 7, 2021", 5), Vec::<usize>::new());
        assert_eq!(ranking("Sure! Here is my ranking:", 5), Vec::<usize>::new());
    }

    #[test]
    fn named_passages_outrank_the_ones_left_out() {
        assert_eq!(scores_from_order(&[2, 0], 4), [0.75, 0.0, 1.0, 0.0]);
    }

    #[tokio::test]
    async fn a_reply_with_no_passage_number_is_unreadable() {
        let model = Arc::new(ScriptedModel::new(
            false,
            [Scripted::Text("I cannot rank these passages.".into())],
        ));
        let reranker = LlmReranker::new(model);
        let error = reranker
            .score("q", &["a".to_string(), "b".to_string()])
            .await
            .unwrap_err();
        assert!(matches!(error, RerankError::Unreadable(_)), "{error}");
    }
}
