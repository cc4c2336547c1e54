//! Checking an answer's citations against the passages it was given: a
//! marker that names no passage is removed from the answer and reported,
//! and each cited sentence gets a support score against the passage it
//! cites, so a reader (and the web UI) can tell a grounded claim from one
//! the model attached a number to.
//!
//! Support is lexical: the share of the sentence's content words (stemmed,
//! without function words or the citation itself) that the passage holds,
//! with a bonus for runs of words the two share in order. A sentence copied
//! from its passage scores 1; a paraphrase keeps most of its words; a claim
//! the passage never makes keeps few.

use std::collections::HashSet;

pub use crate::domain::{CitationCheck, CitationReport};
use crate::text::{is_stop_word, stem, words};

/// A cited sentence counts as supported from this score up.
pub const SUPPORT_THRESHOLD: f32 = 0.5;
/// Sentences with fewer content words than this make no claim to check
/// ("See below.").
const MIN_CLAIM_WORDS: usize = 3;

/// What checking an answer found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verification {
    /// The answer with markers that name no passage removed.
    pub answer: String,
    pub citations: Vec<CitationCheck>,
    /// Numbers cited that name no passage, each once, in order.
    pub removed: Vec<usize>,
    /// The share of the answer's claims (sentences with content words)
    /// that cite a passage supporting them; `None` for an answer with no
    /// claims.
    pub groundedness: Option<f32>,
}

impl Verification {
    /// The answer to show and what to report of its citations.
    pub fn into_parts(self) -> (String, CitationReport) {
        (
            self.answer,
            CitationReport {
                citations: self.citations,
                removed_citations: self.removed,
                groundedness: self.groundedness,
            },
        )
    }
}

/// A passage as the model saw it: its number and chunk.
pub struct CitedPassage<'a> {
    pub number: usize,
    pub chunk_id: &'a str,
    pub text: &'a str,
}

/// Checks every `[n]` (and `[n, m]`) of `answer` against `passages`.
pub fn verify_citations(answer: &str, passages: &[CitedPassage<'_>]) -> Verification {
    let mut verification = Verification::default();
    let mut claims = 0usize;
    let mut grounded = 0usize;
    let passage_stems: Vec<(usize, Vec<String>)> = passages
        .iter()
        .map(|p| (p.number, content_stems(p.text)))
        .collect();
    let mut out = String::with_capacity(answer.len());
    for sentence in answer_sentences(answer) {
        let (text, markers) = strip_markers(sentence);
        let mut kept: Vec<usize> = Vec::new();
        for n in markers {
            if passage_stems.iter().any(|(number, _)| *number == n) {
                if !kept.contains(&n) {
                    kept.push(n);
                }
            } else if !verification.removed.contains(&n) {
                verification.removed.push(n);
            }
        }
        let claim = content_stems(&text);
        let is_claim = claim.len() >= MIN_CLAIM_WORDS;
        let mut any_supported = false;
        for &n in &kept {
            let (passage, stems) = passages
                .iter()
                .zip(&passage_stems)
                .find(|(p, _)| p.number == n)
                .map(|(p, (_, stems))| (p, stems))
                .expect("kept markers name a passage");
            let score = support(&claim, stems);
            let supported = !is_claim || score >= SUPPORT_THRESHOLD;
            any_supported |= supported;
            verification.citations.push(CitationCheck {
                n,
                chunk_id: passage.chunk_id.to_string(),
                sentence: tidy(&text),
                supported,
                score,
            });
        }
        if is_claim {
            claims += 1;
            grounded += usize::from(any_supported);
        }
        out.push_str(&rebuild(sentence, &kept));
    }
    verification.answer = out;
    verification.groundedness = (claims > 0).then(|| grounded as f32 / claims as f32);
    verification
}

/// How much of a claim's stems the passage holds, with shared word pairs
/// (in order) counting half again: copied text scores 1.
fn support(claim: &[String], passage: &[String]) -> f32 {
    if claim.is_empty() {
        return 1.0;
    }
    let words: HashSet<&str> = passage.iter().map(String::as_str).collect();
    let pairs: HashSet<(&str, &str)> = passage
        .windows(2)
        .map(|w| (w[0].as_str(), w[1].as_str()))
        .collect();
    let covered = claim.iter().filter(|w| words.contains(w.as_str())).count() as f32;
    let coverage = covered / claim.len() as f32;
    if claim.len() < 2 {
        return coverage;
    }
    let shared_pairs = claim
        .windows(2)
        .filter(|w| pairs.contains(&(w[0].as_str(), w[1].as_str())))
        .count() as f32;
    let order = shared_pairs / (claim.len() - 1) as f32;
    (0.75 * coverage + 0.25 * order).min(1.0)
}

/// A sentence without its markers, as a reader would write it: single
/// spaces, none before punctuation ("Tuesday [3]." becomes "Tuesday.").
fn tidy(text: &str) -> String {
    let mut out = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for mark in [" .", " ,", " ;", " :", " !", " ?"] {
        out = out.replace(mark, &mark[1..]);
    }
    out
}

fn content_stems(text: &str) -> Vec<String> {
    words(text)
        .filter(|w| !is_stop_word(w) && !w.chars().all(|c| c.is_ascii_digit()))
        .map(|w| stem(&w))
        .collect()
}

/// The answer cut after each sentence's last citation or end mark, so a
/// marker stays with the sentence it ends. Whitespace stays with the
/// sentence before it, so the pieces join back into the answer.
fn answer_sentences(answer: &str) -> Vec<&str> {
    let bytes = answer.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let ends_sentence = match bytes[i] {
            b'.' | b'!' | b'?' => !next_is_marker(answer, i + 1),
            b']' => is_marker_end(answer, i) && !next_is_marker(answer, i + 1),
            b'\n' => true,
            _ => false,
        };
        if ends_sentence && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()) {
            let mut end = i + 1;
            while end < bytes.len() && bytes[end].is_ascii_whitespace() {
                end += 1;
            }
            pieces.push(&answer[start..end]);
            start = end;
            i = end;
            continue;
        }
        i += 1;
    }
    if start < answer.len() {
        pieces.push(&answer[start..]);
    }
    pieces
}

/// Whether a citation marker (after optional spaces) starts at `at`.
fn next_is_marker(text: &str, at: usize) -> bool {
    let rest = text[at..].trim_start_matches(' ');
    rest.starts_with('[') && marker_numbers(rest).is_some()
}

/// Whether the `]` at `close` ends a citation marker.
fn is_marker_end(text: &str, close: usize) -> bool {
    text[..close]
        .rfind('[')
        .is_some_and(|open| marker_at(text, open).is_some())
}

/// The numbers of a marker at byte `open` of `text`: `[3]` or `[1, 2]`,
/// not glued to a word before it (`v[0]` indexes, it does not cite).
fn marker_at(text: &str, open: usize) -> Option<Vec<usize>> {
    let glued = text[..open]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_');
    if glued {
        return None;
    }
    marker_numbers(&text[open..])
}

/// The numbers of a marker at the start of `text` (`[3]`, `[1, 2]`).
fn marker_numbers(text: &str) -> Option<Vec<usize>> {
    let inner = text.strip_prefix('[')?;
    let close = inner.find(']')?;
    let numbers: Option<Vec<usize>> = inner[..close]
        .split(',')
        .map(|part| part.trim().parse::<usize>().ok())
        .collect();
    numbers.filter(|n| !n.is_empty())
}

/// A sentence without its markers, and the numbers they cited in order.
fn strip_markers(sentence: &str) -> (String, Vec<usize>) {
    let mut numbers = Vec::new();
    let text = rewrite_markers(sentence, |out, before, found| {
        out.push_str(before);
        numbers.extend(found);
    });
    (text, numbers)
}

/// The sentence with each marker keeping only the numbers in `kept`; a
/// marker left with none goes, with the space before it.
fn rebuild(sentence: &str, kept: &[usize]) -> String {
    rewrite_markers(sentence, |out, before, found| {
        let keep: Vec<String> = found
            .iter()
            .filter(|n| kept.contains(n))
            .map(usize::to_string)
            .collect();
        if keep.is_empty() {
            out.push_str(before.trim_end_matches(' '));
        } else {
            out.push_str(before);
            out.push_str(&format!("[{}]", keep.join(", ")));
        }
    })
}

/// Copies `sentence`, handing each citation marker (with the text since
/// the last one) to `on_marker` to write in its place.
fn rewrite_markers(
    sentence: &str,
    mut on_marker: impl FnMut(&mut String, &str, Vec<usize>),
) -> String {
    let mut out = String::with_capacity(sentence.len());
    let mut rest = sentence;
    while let Some(open) = rest.find('[') {
        match marker_at(rest, open) {
            Some(found) => {
                on_marker(&mut out, &rest[..open], found);
                let close = rest[open..].find(']').expect("a marker closes");
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSAGES: [&str; 5] = [
        "The question mark operator returns the error early from the function.",
        "Closures capture values from their environment.",
        "A vector stores values of one type next to each other in memory.",
        "Threads run code at the same time.",
        "Cargo builds the package and its dependencies.",
    ];

    fn passages() -> Vec<CitedPassage<'static>> {
        PASSAGES
            .iter()
            .enumerate()
            .map(|(i, text)| CitedPassage {
                number: i + 1,
                chunk_id: ["c1", "c2", "c3", "c4", "c5"][i],
                text,
            })
            .collect()
    }

    #[test]
    fn a_marker_past_the_passages_is_removed_and_an_unsupported_claim_flagged() {
        let answer = "The question mark operator returns the error early from the function [1]. \
            It also formats your hard disk every Tuesday [3]. Threads run code at the same time [7].";
        let v = verify_citations(answer, &passages());
        assert_eq!(v.removed, vec![7]);
        assert_eq!(
            v.answer,
            "The question mark operator returns the error early from the function [1]. \
            It also formats your hard disk every Tuesday [3]. Threads run code at the same time."
        );
        let by_n: Vec<(usize, bool)> = v.citations.iter().map(|c| (c.n, c.supported)).collect();
        assert_eq!(by_n, vec![(1, true), (3, false)]);
        assert_eq!(v.citations[0].chunk_id, "c1");
        assert!((v.citations[0].score - 1.0).abs() < 1e-6);
        assert!(v.citations[1].score < SUPPORT_THRESHOLD);
        assert_eq!(
            v.citations[1].sentence,
            "It also formats your hard disk every Tuesday."
        );
        // Three claims, one supported by what it cites.
        assert!((v.groundedness.unwrap() - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn markers_after_the_full_stop_and_lists_of_numbers() {
        let answer = "Cargo builds the package and its dependencies. [5][8] Vectors store values of one type next to each other. [3, 9]";
        let v = verify_citations(answer, &passages());
        assert_eq!(v.removed, vec![8, 9]);
        assert_eq!(
            v.answer,
            "Cargo builds the package and its dependencies. [5] Vectors store values of one type next to each other. [3]"
        );
        assert!(v.citations.iter().all(|c| c.supported), "{:?}", v.citations);
        assert_eq!(v.groundedness, Some(1.0));
    }

    #[test]
    fn brackets_that_are_not_markers_stay() {
        let answer = "Index with v[0] or slices like a[1..3] to read values of one type next to each other [3].";
        let v = verify_citations(answer, &passages());
        assert_eq!(v.answer, answer);
        assert!(v.removed.is_empty());
        assert_eq!(v.citations.len(), 1);
    }

    #[test]
    fn an_answer_without_claims_has_no_groundedness() {
        let v = verify_citations("Yes.", &passages());
        assert_eq!(v.groundedness, None);
        assert_eq!(v.answer, "Yes.");
        // A claim with no citation is a claim nothing supports.
        let v = verify_citations("Threads run code at the same time.", &passages());
        assert_eq!(v.groundedness, Some(0.0));
    }
}
