//! Follow-up questions in a conversation: "and how do I borrow it?" means
//! nothing to a search engine. A question that leans on the history is
//! searched as a standalone query instead: rewritten by the conversation's
//! generative model in one short call, or, with the extractive default
//! (which cannot write), joined by the previous question's key terms. A
//! question that stands alone is searched as asked, with no model call.

use crate::chat::{ChatModel, ChatRequest, InferenceConfig, Message, Role};
use crate::text::{query_terms, words};

/// Words that point back at something said before.
const REFERRING_WORDS: &[&str] = &[
    "he", "her", "him", "it", "its", "one", "ones", "she", "that", "their", "them", "these",
    "they", "this", "those",
];
/// Openings of a question that continues the last one.
const CONTINUING_OPENINGS: &[&str] = &[
    "and",
    "also",
    "but",
    "so",
    "then",
    "what about",
    "how about",
];
/// A rewritten query longer than this is not a search query.
const MAX_REWRITE_CHARS: usize = 300;

const REWRITE_PROMPT: &str = "You turn the last question of a conversation into a standalone search \
query. Resolve every pronoun and reference from the conversation. Reply with the query alone: \
no explanation, no quotes, one line.";

/// Whether `question` needs the conversation to be understood: it refers
/// back ("it", "those"), continues ("and ...", "what about ..."), or
/// names almost nothing on its own.
pub fn depends_on_history(question: &str) -> bool {
    let lower = question.trim().to_lowercase();
    let all: Vec<String> = words(&lower).collect();
    if all.iter().any(|w| REFERRING_WORDS.contains(&w.as_str())) {
        return true;
    }
    if CONTINUING_OPENINGS.iter().any(|o| {
        lower.starts_with(o) && lower[o.len()..].starts_with(|c: char| !c.is_alphanumeric())
    }) {
        return true;
    }
    query_terms(question).len() <= 1
}

/// The last user question of `history`, if any.
pub fn previous_question(history: &[Message]) -> Option<String> {
    history
        .iter()
        .rev()
        .find(|m| m.role == Role::User && !m.text().trim().is_empty())
        .map(Message::text)
}

/// The question with the key terms of the previous one that it lacks,
/// for the extractive default.
pub fn with_previous_terms(question: &str, previous: &str) -> String {
    let own = query_terms(question);
    let added: Vec<String> = words(previous)
        .filter(|w| {
            let stemmed = query_terms(w);
            !stemmed.is_empty() && stemmed.iter().all(|t| !own.contains(t))
        })
        .fold(Vec::new(), |mut kept, w| {
            if !kept.contains(&w) {
                kept.push(w);
            }
            kept
        });
    if added.is_empty() {
        question.to_string()
    } else {
        format!("{} {}", question.trim(), added.join(" "))
    }
}

/// The standalone query the model writes for the last question of the
/// conversation, or `None` when it fails or answers with something that
/// is not one query (the caller then falls back to the previous terms).
pub async fn rewrite(model: &dyn ChatModel, history: &[Message], question: &str) -> Option<String> {
    let mut transcript = String::new();
    for message in history {
        let who = match message.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
        };
        let text = message.text();
        if !text.trim().is_empty() {
            transcript.push_str(&format!("{who}: {}\n", text.trim()));
        }
    }
    transcript.push_str(&format!(
        "User: {}\n\nStandalone search query:",
        question.trim()
    ));
    let request = ChatRequest {
        system: Some(REWRITE_PROMPT.to_string()),
        messages: vec![Message::user_text(transcript)],
        inference: InferenceConfig {
            max_tokens: Some(64),
            temperature: Some(0.0),
        },
        ..ChatRequest::default()
    };
    let response = model.converse(request).await.ok()?;
    let text = response.message.text();
    let query = text.trim().trim_matches(['"', '\'', '`']).trim();
    let usable = !query.is_empty()
        && !query.contains('\n')
        && query.chars().count() <= MAX_REWRITE_CHARS
        && !query_terms(query).is_empty();
    usable.then(|| query.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_that_lean_on_the_history_are_told_apart() {
        for follow_up in [
            "And how do I borrow it?",
            "How do I build it?",
            "what about those?",
            "Also for structs?",
            "Why?",
        ] {
            assert!(depends_on_history(follow_up), "{follow_up}");
        }
        for standalone in [
            "How do I create a new Cargo project?",
            "What is a slice in Rust?",
            "Andrew's question: what does the borrow checker do?",
        ] {
            assert!(!depends_on_history(standalone), "{standalone}");
        }
    }

    #[test]
    fn the_previous_questions_terms_join_the_search() {
        assert_eq!(
            with_previous_terms("How do I build it?", "How do I create a new Cargo project?"),
            "How do I build it? create new cargo project"
        );
        assert_eq!(
            with_previous_terms(
                "What about cargo projects?",
                "How do I create a Cargo project?"
            ),
            "What about cargo projects? create"
        );
    }
}
