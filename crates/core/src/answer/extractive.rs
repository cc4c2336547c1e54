//! The embedded default's answerer: no generative model, no network. It picks
//! the sentences of the retrieved passages that best match the question and
//! cites each with its passage number, so every claim is traceable.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use crate::chat::{ChatModel, ChatRequest, ChatResponse, Grounding, Message, StopReason};
use crate::domain::{TokenUsage, estimate_tokens};
use crate::error::ModelError;
use crate::text::{is_stop_word, query_terms, sentences, stem, words};

pub const EXTRACTIVE_MODEL_ID: &str = "extractive";
/// At most this many sentences, and about this many characters, make an
/// answer: enough for the words a correct answer needs, short enough to
/// read at a glance.
const MAX_SENTENCES: usize = 4;
const ANSWER_CHARS: usize = 700;
/// A sentence joins the lead only when it scores at least this share of
/// the lead's score.
const FOLLOWER_SHARE: f32 = 0.4;
const MIN_SENTENCE_CHARS: usize = 20;
const MAX_SENTENCE_CHARS: usize = 600;
/// How many of the passages' own topic words (see [`topic_terms`]) count
/// beside the question's.
const TOPIC_TERMS: usize = 6;
const TOPIC_WEIGHT: f32 = 0.35;
/// What a sentence that ends with a colon may bring along: the lines that
/// follow it in its passage (a list or a command), up to this many
/// characters.
const CONTINUATION_CHARS: usize = 240;
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
    /// The answer text for a question and its passages: the best sentence
    /// of the top passage, then the best few others, in passage order,
    /// each cited.
    pub fn answer(grounding: &Grounding) -> String {
        let terms = query_terms(&grounding.question);
        let split: Vec<Vec<&str>> = grounding
            .passages
            .iter()
            .map(|p| sentences(&p.text))
            .collect();
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for (rank, passage) in split.iter().enumerate() {
            for (order, sentence) in passage.iter().enumerate() {
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
        let topic = topic_terms(&split, &terms);
        score_candidates(&mut candidates, &terms, &topic);

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
        let mut length: usize = chosen.iter().map(|&i| candidates[i].text.len()).sum();
        let mut rest: Vec<usize> = (0..candidates.len())
            .filter(|i| !chosen.contains(i) && candidates[*i].score > 0.0)
            .collect();
        rest.sort_by(|&a, &b| candidates[b].score.total_cmp(&candidates[a].score));
        for i in rest {
            if chosen.len() >= MAX_SENTENCES {
                break;
            }
            let c = &candidates[i];
            if c.score < lead_score * FOLLOWER_SHARE
                || length + c.text.len() > ANSWER_CHARS
                || !seen.insert(normalized(c.text))
            {
                continue;
            }
            length += c.text.len();
            chosen.push(i);
        }
        // Sentences from the same passage read best in their original order.
        chosen.sort_by_key(|&i| (candidates[i].passage, candidates[i].order));
        chosen
            .iter()
            .map(|&i| {
                let c = &candidates[i];
                let continuation = continuation(&split[c.passage], c.order);
                format!(
                    "{}{continuation} [{}]",
                    c.text, grounding.passages[c.passage].number
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The words the passages keep coming back to that the question does not
/// name: the answer's own vocabulary ("slice" for "refer to part of a
/// String"). A word counts once per passage, more in better-ranked ones,
/// and only if at least two passages use it.
fn topic_terms(passages: &[Vec<&str>], query: &[String]) -> Vec<String> {
    let mut weight: HashMap<String, (f32, usize)> = HashMap::new();
    for (rank, sentences) in passages.iter().enumerate() {
        let stems: HashSet<String> = sentences
            .iter()
            .flat_map(|s| words(s))
            .filter(|w| w.chars().count() > 2 && !is_stop_word(w))
            .map(|w| stem(&w))
            .filter(|w| !query.contains(w) && !w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        for stem in stems {
            let entry = weight.entry(stem).or_default();
            entry.0 += 1.0 / (1.0 + rank as f32);
            entry.1 += 1;
        }
    }
    let mut ranked: Vec<(String, f32)> = weight
        .into_iter()
        .filter(|(_, (_, passages))| *passages >= 2)
        .map(|(stem, (w, _))| (stem, w))
        .collect();
    // Ties break by the word, so the answer never depends on hash order.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(TOPIC_TERMS)
        .map(|(s, _)| s)
        .collect()
}

/// What follows a sentence that ends with a colon: the next lines of its
/// passage, joined, while they fit in [`CONTINUATION_CHARS`].
fn continuation(sentences: &[&str], order: usize) -> String {
    if !sentences[order].ends_with(':') {
        return String::new();
    }
    let mut out = String::new();
    for next in &sentences[order + 1..] {
        if out.len() + next.len() + 1 > CONTINUATION_CHARS {
            break;
        }
        out.push(' ');
        out.push_str(next);
    }
    out
}

fn score_candidates(candidates: &mut [Candidate<'_>], terms: &[String], topic: &[String]) {
    let stems: Vec<HashSet<String>> = candidates
        .iter()
        .map(|c| words(c.text).map(|w| stem(&w)).collect())
        .collect();
    let n = candidates.len() as f32;
    let idf = |t: &String| {
        let df = stems.iter().filter(|s| s.contains(t)).count() as f32;
        (1.0 + n / (1.0 + df)).ln()
    };
    let query_idf: Vec<f32> = terms.iter().map(idf).collect();
    let topic_idf: Vec<f32> = topic.iter().map(idf).collect();
    for (c, words) in candidates.iter_mut().zip(&stems) {
        let overlap = |terms: &[String], idf: &[f32]| -> f32 {
            terms
                .iter()
                .zip(idf)
                .filter(|(t, _)| words.contains(*t))
                .map(|(_, w)| w)
                .sum()
        };
        let on_question = overlap(terms, &query_idf);
        let on_topic = overlap(topic, &topic_idf);
        // Long sentences match more words by chance; a mild length penalty
        // and a rank prior keep the answer short and on the best passages.
        let length_penalty = 1.0 + c.text.len() as f32 / 400.0;
        let rank_prior = 0.3 / (1.0 + c.passage as f32);
        c.score = (on_question + TOPIC_WEIGHT * on_topic) / length_penalty
            + rank_prior * on_question.min(1.0);
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
    fn the_passages_own_vocabulary_counts_beside_the_questions() {
        // "slice" is nowhere in the question, but every passage is about
        // slices: the sentence that names them beats one that only
        // repeats the question's words.
        let g = grounding(
            "How do I refer to part of a String without taking ownership?",
            &[
                "A reference lets you refer to a value without taking ownership. A string slice is a reference to part of a String.",
                "Slices let you reference a contiguous sequence of elements. The slice type has no ownership.",
                "A slice stores a pointer and a length.",
            ],
        );
        let split: Vec<Vec<&str>> = g.passages.iter().map(|p| sentences(&p.text)).collect();
        let topic = topic_terms(&split, &query_terms(&g.question));
        // First by how many passages use it, then by their ranks; never a
        // question word, never a word of one passage only ("contiguous").
        assert_eq!(
            topic.first().map(String::as_str),
            Some("slice"),
            "{topic:?}"
        );
        assert!(
            !topic
                .iter()
                .any(|t| t == "ownership" || t == "string" || t == "contiguous"),
            "{topic:?}"
        );
        let answer = ExtractiveAnswerer::answer(&g);
        assert!(
            answer.contains("A string slice is a reference to part of a String. [1]"),
            "{answer}"
        );
    }

    #[test]
    fn a_sentence_that_ends_with_a_colon_brings_what_follows() {
        let g = grounding(
            "What can unsafe Rust do that safe Rust cannot?",
            &[
                "Unsafe Rust can do five things safe Rust cannot:\n- Dereference a raw pointer\n- Call an unsafe function\n\nThat is all.",
            ],
        );
        let answer = ExtractiveAnswerer::answer(&g);
        assert!(
            answer.starts_with(
                "Unsafe Rust can do five things safe Rust cannot: - Dereference a raw pointer - Call an unsafe function"
            ),
            "{answer}"
        );
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
