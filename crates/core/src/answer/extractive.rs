//! The embedded default's answerer: no generative model, no network. It picks
//! the sentences of the retrieved passages that best match the question and
//! cites each with its passage number, so every claim is traceable.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::chat::{ChatModel, ChatRequest, ChatResponse, Grounding, Message, StopReason};
use crate::domain::{TokenUsage, estimate_tokens};
use crate::error::ModelError;
use crate::text::{query_terms, sentences, stem, words};

pub const EXTRACTIVE_MODEL_ID: &str = "extractive";
const MAX_SENTENCES: usize = 3;
const MIN_SENTENCE_CHARS: usize = 20;
const MAX_SENTENCE_CHARS: usize = 600;
pub const NO_ANSWER: &str =
    "The indexed documents do not contain anything that answers this question.";

/// A deterministic answerer: same passages and question, same answer.
#[derive(Debug, Default, Clone)]
pub struct ExtractiveAnswerer;

struct Candidate<'a> {
    passage: usize,
    order: usize,
    text: &'a str,
    score: f32,
}

impl ExtractiveAnswerer {
    /// The answer text for a question and its passages.
    pub fn answer(grounding: &Grounding) -> String {
        let terms = query_terms(&grounding.question);
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for (rank, passage) in grounding.passages.iter().enumerate() {
            for (order, sentence) in sentences(&passage.text).into_iter().enumerate() {
                if is_prose(sentence) {
                    candidates.push(Candidate {
                        passage: rank,
                        order,
                        text: sentence,
                        score: 0.0,
                    });
                }
            }
        }
        if candidates.is_empty() {
            return NO_ANSWER.to_string();
        }
        score_candidates(&mut candidates, &terms);

        let mut chosen: Vec<usize> = Vec::new();
        // The top passage is what retrieval trusted most, so its best
        // sentence always leads, even when word overlap is thin.
        if let Some(best_of_first) = best_index(&candidates, |c| c.passage == 0) {
            chosen.push(best_of_first);
        }
        let lead_score = chosen.first().map(|&i| candidates[i].score).unwrap_or(0.0);
        let mut seen: HashSet<String> = chosen
            .iter()
            .map(|&i| normalized(candidates[i].text))
            .collect();
        let mut rest: Vec<usize> = (0..candidates.len())
            .filter(|i| !chosen.contains(i) && candidates[*i].score > 0.0)
            .collect();
        rest.sort_by(|&a, &b| candidates[b].score.total_cmp(&candidates[a].score));
        for i in rest {
            if chosen.len() >= MAX_SENTENCES {
                break;
            }
            if candidates[i].score < lead_score * 0.5
                || !seen.insert(normalized(candidates[i].text))
            {
                continue;
            }
            chosen.push(i);
        }
        // Sentences from the same passage read best in their original order.
        chosen.sort_by_key(|&i| (candidates[i].passage, candidates[i].order));
        chosen
            .iter()
            .map(|&i| {
                let c = &candidates[i];
                format!("{} [{}]", c.text, grounding.passages[c.passage].number)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn score_candidates(candidates: &mut [Candidate<'_>], terms: &[String]) {
    let stems: Vec<HashSet<String>> = candidates
        .iter()
        .map(|c| words(c.text).map(|w| stem(&w)).collect())
        .collect();
    let n = candidates.len() as f32;
    let idf: Vec<f32> = terms
        .iter()
        .map(|t| {
            let df = stems.iter().filter(|s| s.contains(t)).count() as f32;
            (1.0 + n / (1.0 + df)).ln()
        })
        .collect();
    for (c, words) in candidates.iter_mut().zip(&stems) {
        let overlap: f32 = terms
            .iter()
            .zip(&idf)
            .filter(|(t, _)| words.contains(*t))
            .map(|(_, w)| w)
            .sum();
        // Long sentences match more words by chance; a mild length penalty
        // and a rank prior keep the answer short and on the best passages.
        let length_penalty = 1.0 + c.text.len() as f32 / 400.0;
        let rank_prior = 0.3 / (1.0 + c.passage as f32);
        c.score = overlap / length_penalty + rank_prior * overlap.min(1.0);
    }
}

fn best_index(
    candidates: &[Candidate<'_>],
    keep: impl Fn(&Candidate<'_>) -> bool,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate() {
        if keep(c) && best.is_none_or(|b| c.score > candidates[b].score) {
            best = Some(i);
        }
    }
    best
}

/// Prose, not code or a heading: long enough, mostly letters.
fn is_prose(sentence: &str) -> bool {
    let len = sentence.chars().count();
    if !(MIN_SENTENCE_CHARS..=MAX_SENTENCE_CHARS).contains(&len) {
        return false;
    }
    let letters = sentence
        .chars()
        .filter(|c| c.is_alphabetic() || *c == ' ')
        .count();
    let code_marks = sentence
        .chars()
        .filter(|c| matches!(c, '{' | '}' | ';' | '='))
        .count();
    letters * 10 >= len * 7 && code_marks <= 2
}

fn normalized(s: &str) -> String {
    words(s).collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl ChatModel for ExtractiveAnswerer {
    fn model_id(&self) -> &str {
        EXTRACTIVE_MODEL_ID
    }

    async fn converse(&self, request: ChatRequest) -> Result<ChatResponse, ModelError> {
        let grounding = request.grounding.as_ref().ok_or_else(|| {
            ModelError::Invalid(
                "the extractive answerer needs retrieved passages; it cannot hold a free conversation"
                    .to_string(),
            )
        })?;
        let answer = Self::answer(grounding);
        let input: u32 = grounding
            .passages
            .iter()
            .map(|p| estimate_tokens(&p.text))
            .sum::<u32>()
            + estimate_tokens(&grounding.question);
        let usage = TokenUsage::new(input, estimate_tokens(&answer));
        Ok(ChatResponse {
            message: Message::assistant_text(answer),
            stop_reason: StopReason::EndTurn,
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Passage;

    fn grounding(question: &str, passages: &[&str]) -> Grounding {
        Grounding {
            question: question.to_string(),
            passages: passages
                .iter()
                .enumerate()
                .map(|(i, text)| Passage {
                    number: i + 1,
                    title: format!("doc {}", i + 1),
                    text: text.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn picks_matching_sentences_and_cites_them() {
        let g = grounding(
            "What does the question mark operator do?",
            &[
                "Errors happen in many programs. The question mark operator returns the error early from the function. It works on Result values.",
                "Closures capture their environment in several ways that matter here.",
                "The ? operator can be used in functions that return Option, and the question mark converts errors with From.",
            ],
        );
        let answer = ExtractiveAnswerer::answer(&g);
        assert!(
            answer.starts_with(
                "The question mark operator returns the error early from the function. [1]"
            ),
            "{answer}"
        );
        assert!(answer.contains("[3]"), "{answer}");
        assert!(!answer.contains("Closures"), "{answer}");
    }

    #[test]
    fn is_deterministic() {
        let g = grounding(
            "ownership rules",
            &["Ownership has three rules. Each value has an owner at a time."],
        );
        assert_eq!(
            ExtractiveAnswerer::answer(&g),
            ExtractiveAnswerer::answer(&g)
        );
    }

    #[test]
    fn says_so_when_nothing_matches() {
        let g = grounding("anything", &[]);
        assert_eq!(ExtractiveAnswerer::answer(&g), NO_ANSWER);
    }

    #[tokio::test]
    async fn refuses_requests_without_passages() {
        let result = ExtractiveAnswerer.converse(ChatRequest::default()).await;
        assert!(matches!(result, Err(ModelError::Invalid(_))));
    }
}
