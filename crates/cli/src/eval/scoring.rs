//! How one reply is scored against its question, and the per-variant
//! means the report prints.

use serde_json::{Value, json};

use super::TOP_K;
use super::questions::{Question, matches_expected};

/// Scores of one question in one mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// 1-based rank of the first relevant document among the first ten.
    pub first_relevant: Option<usize>,
    pub hit_at_1: f64,
    pub hit_at_5: f64,
    pub reciprocal_rank: f64,
    pub ndcg_at_10: f64,
    pub keyword_recall: Option<f64>,
}

/// `ranked` is the distinct documents in rank order as (source, title).
pub fn score(question: &Question, ranked: &[(String, String)], answer: &str) -> Scores {
    let relevant: Vec<bool> = ranked
        .iter()
        .take(TOP_K)
        .map(|(source, title)| {
            question
                .expected_sources
                .iter()
                .any(|e| matches_expected(e, source, title))
        })
        .collect();
    let first_relevant = relevant.iter().position(|r| *r).map(|i| i + 1);
    let dcg: f64 = relevant
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal_hits = question.expected_sources.len().min(TOP_K);
    let idcg: f64 = (0..ideal_hits).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
    let answer_lower = answer.to_lowercase();
    let keyword_recall = (!question.answer_keywords.is_empty()).then(|| {
        let found = question
            .answer_keywords
            .iter()
            .filter(|k| answer_lower.contains(&k.to_lowercase()))
            .count();
        found as f64 / question.answer_keywords.len() as f64
    });
    Scores {
        first_relevant,
        hit_at_1: f64::from(u8::from(first_relevant == Some(1))),
        hit_at_5: f64::from(u8::from(first_relevant.is_some_and(|r| r <= 5))),
        reciprocal_rank: first_relevant.map_or(0.0, |r| 1.0 / r as f64),
        ndcg_at_10: if idcg > 0.0 {
            (dcg / idcg).min(1.0)
        } else {
            0.0
        },
        keyword_recall,
    }
}

/// What a `/query` reply says of its citations: the share of its `[n]`
/// markers that point at a passage of an expected source (`None` when it
/// cites nothing), and the server's groundedness.
pub fn citation_scores(question: &Question, answer: &Value) -> (Option<f64>, Option<f64>) {
    let sources = answer["sources"].as_array().map_or(&[][..], Vec::as_slice);
    let citations = answer["citations"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let right = citations
        .iter()
        .filter(|c| {
            sources.iter().any(|s| {
                s["citation"] == c["n"]
                    && question.expected_sources.iter().any(|e| {
                        matches_expected(
                            e,
                            s["source"].as_str().unwrap_or_default(),
                            s["title"].as_str().unwrap_or_default(),
                        )
                    })
            })
        })
        .count();
    let precision = (!citations.is_empty()).then(|| right as f64 / citations.len() as f64);
    (precision, answer["groundedness"].as_f64())
}

/// Whether a reply declined to answer: no source and no `[n]` cited,
/// which is right for an unanswerable question.
pub fn abstained(answer: &Value) -> bool {
    let empty = |field: &str| answer[field].as_array().is_none_or(Vec::is_empty);
    empty("sources") && empty("citations")
}

/// Distinct documents of a `/query` answer's sources, in rank order.
pub(super) fn ranked_documents(answer: &Value) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut ranked = Vec::new();
    for source in answer["sources"].as_array().map_or(&[][..], Vec::as_slice) {
        let id = source["document_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if seen.insert(id) {
            ranked.push((
                source["source"].as_str().unwrap_or_default().to_string(),
                source["title"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    ranked
}

#[derive(Debug, Default, Clone)]
pub(super) struct ModeSummary {
    pub(super) questions: usize,
    pub(super) errors: usize,
    hit_at_1: f64,
    hit_at_5: f64,
    mrr_at_10: f64,
    ndcg_at_10: f64,
    keyword_recall_sum: f64,
    keyword_questions: usize,
    citation_precision_sum: f64,
    citing_answers: usize,
    groundedness_sum: f64,
    grounded_answers: usize,
    latency_ms_sum: u64,
    /// Unanswerable questions asked (failed ones included), and how many
    /// of them the reply declined.
    unanswerable: usize,
    abstained: usize,
    /// Answerable questions whose reply found no source at all.
    pub(super) answerable_without_sources: usize,
}

impl ModeSummary {
    pub(super) fn add(&mut self, scores: &Scores, latency_ms: u64) {
        self.questions += 1;
        self.hit_at_1 += scores.hit_at_1;
        self.hit_at_5 += scores.hit_at_5;
        self.mrr_at_10 += scores.reciprocal_rank;
        self.ndcg_at_10 += scores.ndcg_at_10;
        if let Some(recall) = scores.keyword_recall {
            self.keyword_recall_sum += recall;
            self.keyword_questions += 1;
        }
        self.latency_ms_sum += latency_ms;
    }

    pub(super) fn add_unanswerable(&mut self, declined: bool) {
        self.unanswerable += 1;
        self.abstained += usize::from(declined);
    }

    pub(super) fn add_citations(&mut self, precision: Option<f64>, groundedness: Option<f64>) {
        if let Some(p) = precision {
            self.citation_precision_sum += p;
            self.citing_answers += 1;
        }
        if let Some(g) = groundedness {
            self.groundedness_sum += g;
            self.grounded_answers += 1;
        }
    }

    /// Means over every question, failed ones counting as misses.
    pub(super) fn to_json(&self, mode: &str) -> Value {
        let n = (self.questions + self.errors).max(1) as f64;
        json!({
            "mode": mode,
            "questions": self.questions + self.errors,
            "errors": self.errors,
            "hit_at_1": self.hit_at_1 / n,
            "hit_at_5": self.hit_at_5 / n,
            "mrr_at_10": self.mrr_at_10 / n,
            "ndcg_at_10": self.ndcg_at_10 / n,
            "keyword_recall": (self.keyword_questions > 0)
                .then(|| self.keyword_recall_sum / self.keyword_questions as f64),
            "citation_precision": (self.citing_answers > 0)
                .then(|| self.citation_precision_sum / self.citing_answers as f64),
            "groundedness": (self.grounded_answers > 0)
                .then(|| self.groundedness_sum / self.grounded_answers as f64),
            "mean_latency_ms": self.latency_ms_sum as f64 / self.questions.max(1) as f64,
            "unanswerable_questions": self.unanswerable,
            "abstention": (self.unanswerable > 0)
                .then(|| self.abstained as f64 / self.unanswerable as f64),
            "answered_without_sources": self.answerable_without_sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(expected: &[&str], keywords: &[&str]) -> Question {
        Question {
            question: "q".into(),
            earlier_turns: Vec::new(),
            expected_sources: expected.iter().map(|s| s.to_string()).collect(),
            answer_keywords: keywords.iter().map(|s| s.to_string()).collect(),
            unanswerable: false,
        }
    }

    fn docs(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (format!("/data/{n}"), format!("Title {n}")))
            .collect()
    }

    #[test]
    fn metrics_follow_their_definitions() {
        let q = question(&["b.html"], &["Alpha", "beta"]);
        let s = score(&q, &docs(&["a.html", "b.html", "c.html"]), "alpha only");
        assert_eq!(s.first_relevant, Some(2));
        assert_eq!((s.hit_at_1, s.hit_at_5), (0.0, 1.0));
        assert!((s.reciprocal_rank - 0.5).abs() < 1e-12);
        // One relevant document at rank 2: DCG 1/log2(3), ideal 1/log2(2).
        assert!((s.ndcg_at_10 - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(s.keyword_recall, Some(0.5));

        let first = score(&q, &docs(&["b.html"]), "");
        assert_eq!((first.hit_at_1, first.ndcg_at_10), (1.0, 1.0));

        let late = score(&q, &docs(&["1", "2", "3", "4", "5", "b.html"]), "");
        assert_eq!((late.hit_at_5, late.first_relevant), (0.0, Some(6)));

        let miss = score(&question(&["z"], &[]), &docs(&["a", "b"]), "");
        assert_eq!(miss.first_relevant, None);
        assert_eq!((miss.reciprocal_rank, miss.ndcg_at_10), (0.0, 0.0));
        assert_eq!(miss.keyword_recall, None);

        // Two expected sources, both found at ranks 1 and 3.
        let two = score(&question(&["a", "c"], &[]), &docs(&["a", "b", "c"]), "");
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((two.ndcg_at_10 - dcg / ideal).abs() < 1e-12);
    }

    #[test]
    fn citation_precision_counts_markers_on_expected_sources() {
        let q = question(&["ch04.html"], &[]);
        let answer = serde_json::json!({
            "sources": [
                {"citation": 1, "source": "ch04.html", "title": "Ownership"},
                {"citation": 2, "source": "ch09.html", "title": "Errors"},
            ],
            "citations": [{"n": 1}, {"n": 2}, {"n": 1}, {"n": 2}],
            "groundedness": 0.75,
        });
        assert_eq!(citation_scores(&q, &answer), (Some(0.5), Some(0.75)));
        let uncited = serde_json::json!({"sources": [], "citations": []});
        assert_eq!(citation_scores(&q, &uncited), (None, None));
        assert!(abstained(&uncited));
        assert!(abstained(&serde_json::json!({"answer": "not covered"})));
        assert!(!abstained(&answer));
        let cites_nothing_found = serde_json::json!({"sources": [], "citations": [{"n": 1}]});
        assert!(!abstained(&cites_nothing_found));
    }
}
