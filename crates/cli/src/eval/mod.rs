//! `rag-agent eval`: retrieval and answer quality over a question set.
//!
//! Each question is asked once per search mode (and, with `--rerank` or
//! `--compare`, per stage switched on or off) through `POST /query` with
//! `top_k` 10; the ranked passages become a ranked list of distinct
//! documents, scored against the question's expected sources with hit@1,
//! hit@5, MRR@10 and nDCG@10 (binary relevance), and the answer against its
//! keywords. The same harness measures a deployed API or a local data
//! directory, so users can gate CI on their own data.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

mod questions;

use crate::output::{self, bold, dim};
use crate::{ApiClient, CliError};

pub use questions::{Question, load_questions, matches_expected};

pub const EXAMPLES: &str = "Examples:
  rag-agent eval --questions tests/eval/rust-book.jsonl
  rag-agent eval --questions qa.jsonl --modes dense,hybrid --min-hit-at-5 0.8
  rag-agent eval --questions qa.jsonl --data-dir ./data --json > eval.json
  rag-agent eval --questions qa.jsonl --compare

Each line of the questions file is a JSON object:
  {\"question\": \"...\", \"expected_sources\": [\"guide.md\"], \"answer_keywords\": [\"...\"]}
or a conversation whose last turn is scored:
  {\"turns\": [\"What is Cargo?\", \"How do I build it?\"], \"expected_sources\": [...]}
An expected source matches a document whose source or title equals it
(ignoring case), or whose source ends in /<expected source>.
With --min-hit-at-5 the exit code is 1 when any mode scores below the bar.";

/// Passages asked for per question: the metrics look at ten documents.
const TOP_K: usize = 10;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The questions, one JSON object per line.
    #[arg(long, value_name = "FILE.jsonl")]
    pub questions: PathBuf,
    /// Search modes to compare [default: every mode the server offers].
    #[arg(long, value_delimiter = ',', value_parser = ["dense", "lexical", "hybrid"])]
    pub modes: Vec<String>,
    /// Fail (exit 1) when hit@5 of any mode is below this fraction.
    #[arg(long, value_name = "0..1")]
    pub min_hit_at_5: Option<f64>,
    /// Similarity threshold to send [default: the server's].
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Evaluate an embedded instance over this data directory, configured
    /// like `rag-agent serve` (same flags' environment variables), instead
    /// of the server at --url. Do not point it at a directory a running
    /// server is using.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Ask every question with the rerank stage on (the deployment needs
    /// RERANK_PROVIDER); its rows are labelled `<mode>+rerank`.
    #[arg(long, conflicts_with = "compare")]
    pub rerank: bool,
    /// Ask every question with and without each stage, side by side: the
    /// rerank stage where the deployment has one (`<mode>+rerank`), and,
    /// for conversations, the last turn asked alone (`<mode>-history`), so
    /// the gain of searching follow-ups as standalone queries shows.
    #[arg(long)]
    pub compare: bool,
}

/// One way of asking every question: a search mode, with or without the
/// rerank stage, with or without the conversation before the last turn.
#[derive(Debug, Clone, PartialEq)]
struct Variant {
    /// The row's name in the report (`hybrid`, `hybrid+rerank`).
    label: String,
    mode: String,
    /// `None` leaves it to the deployment's default.
    rerank: Option<bool>,
    /// Whether a conversation's earlier turns are asked first.
    history: bool,
}

/// The variants a run asks, in report order.
fn variants(
    modes: &[String],
    args: &EvalArgs,
    has_reranker: bool,
    has_conversations: bool,
) -> Vec<Variant> {
    let mut variants = Vec::new();
    for mode in modes {
        let plain = |label: String, rerank| Variant {
            label,
            mode: mode.clone(),
            rerank,
            history: true,
        };
        if args.rerank {
            variants.push(plain(format!("{mode}+rerank"), Some(true)));
        } else if args.compare {
            let base_rerank = has_reranker.then_some(false);
            variants.push(plain(mode.clone(), base_rerank));
            if has_reranker {
                variants.push(plain(format!("{mode}+rerank"), Some(true)));
            }
            if has_conversations {
                variants.push(Variant {
                    history: false,
                    ..plain(format!("{mode}-history"), base_rerank)
                });
            }
        } else {
            variants.push(plain(mode.clone(), None));
        }
    }
    variants
}

/// Asks one question as `variant` says: a conversation's earlier turns
/// first, in a new conversation, then the scored turn.
async fn ask(
    client: &ApiClient,
    question: &Question,
    variant: &Variant,
    threshold: Option<f32>,
) -> Result<Value, CliError> {
    let conversation = (variant.history && !question.earlier_turns.is_empty())
        .then(|| uuid::Uuid::new_v4().to_string());
    let body = |text: &str| {
        let mut body = json!({ "query": text, "top_k": TOP_K, "mode": variant.mode });
        if let Some(threshold) = threshold {
            body["similarity_threshold"] = json!(threshold);
        }
        if let Some(rerank) = variant.rerank {
            body["rerank"] = json!(rerank);
        }
        if let Some(id) = &conversation {
            body["conversation_id"] = json!(id);
        }
        body
    };
    if conversation.is_some() {
        for turn in &question.earlier_turns {
            client.post("query", &body(turn)).await?;
        }
    }
    client.post("query", &body(&question.question)).await
}

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

/// Distinct documents of a `/query` answer's sources, in rank order.
fn ranked_documents(answer: &Value) -> Vec<(String, String)> {
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
struct ModeSummary {
    questions: usize,
    errors: usize,
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
}

impl ModeSummary {
    fn add(&mut self, scores: &Scores, latency_ms: u64) {
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

    fn add_citations(&mut self, precision: Option<f64>, groundedness: Option<f64>) {
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
    fn to_json(&self, mode: &str) -> Value {
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
        })
    }
}

pub async fn run(client: &ApiClient, args: &EvalArgs, json: bool) -> Result<(), CliError> {
    let questions = load_questions(&args.questions)?;
    if let Some(bar) = args.min_hit_at_5
        && !(0.0..=1.0).contains(&bar)
    {
        return Err(CliError::Usage(
            "--min-hit-at-5 must be between 0 and 1".to_string(),
        ));
    }
    let health = client.get("health").await?;
    let offered: Vec<String> = health["search_modes"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let modes: Vec<String> = if args.modes.is_empty() {
        offered.clone()
    } else {
        args.modes.clone()
    };
    if let Some(missing) = modes.iter().find(|m| !offered.contains(m)) {
        return Err(CliError::Usage(format!(
            "this deployment does not offer {missing} search (it offers {})",
            offered.join(", ")
        )));
    }
    if let Some(count) = health["document_count"].as_u64()
        && count == 0
    {
        return Err(CliError::Usage(
            "the deployment holds no documents: ingest some first".to_string(),
        ));
    }

    let has_reranker = health["reranker"].is_string();
    if args.rerank && !has_reranker {
        return Err(CliError::Usage(
            "--rerank needs a deployment with a reranker (RERANK_PROVIDER)".to_string(),
        ));
    }
    let has_conversations = questions.iter().any(|q| !q.earlier_turns.is_empty());
    let variants = variants(&modes, args, has_reranker, has_conversations);
    let labels: Vec<String> = variants.iter().map(|v| v.label.clone()).collect();

    let mut summaries = vec![ModeSummary::default(); variants.len()];
    let mut rows = Vec::new();
    for question in &questions {
        let mut per_mode = serde_json::Map::new();
        for (variant, summary) in variants.iter().zip(summaries.iter_mut()) {
            let mode = &variant.label;
            match ask(client, question, variant, args.threshold).await {
                Ok(answer) => {
                    let ranked = ranked_documents(&answer);
                    let answer_text = answer["answer"].as_str().unwrap_or_default();
                    let scores = score(question, &ranked, answer_text);
                    let latency = answer["latency_ms"].as_u64().unwrap_or(0);
                    summary.add(&scores, latency);
                    let (precision, groundedness) = citation_scores(question, &answer);
                    summary.add_citations(precision, groundedness);
                    per_mode.insert(
                        mode.clone(),
                        json!({
                            "first_relevant_rank": scores.first_relevant,
                            "hit_at_1": scores.hit_at_1, "hit_at_5": scores.hit_at_5,
                            "reciprocal_rank": scores.reciprocal_rank,
                            "ndcg_at_10": scores.ndcg_at_10,
                            "keyword_recall": scores.keyword_recall,
                            "citation_precision": precision,
                            "groundedness": groundedness,
                            "top_sources": ranked.iter().take(5).map(|(s, _)| s).collect::<Vec<_>>(),
                            "latency_ms": latency,
                        }),
                    );
                }
                Err(error @ CliError::Unreachable { .. }) => return Err(error),
                Err(error) => {
                    summary.errors += 1;
                    per_mode.insert(mode.clone(), json!({ "error": error.to_string() }));
                }
            }
        }
        rows.push(json!({
            "question": question.question,
            "expected_sources": question.expected_sources,
            "modes": per_mode,
        }));
    }
    let summary: Vec<Value> = variants
        .iter()
        .zip(&summaries)
        .map(|(variant, s)| {
            let mut row = s.to_json(&variant.label);
            row["search_mode"] = json!(variant.mode);
            row["rerank"] = json!(variant.rerank);
            row["history"] = json!(variant.history);
            row
        })
        .collect();
    let failing: Vec<String> = match args.min_hit_at_5 {
        Some(bar) => summary
            .iter()
            .filter(|s| s["hit_at_5"].as_f64().unwrap_or(0.0) < bar)
            .map(|s| format!("{} {:.3}", s["mode"].as_str().unwrap_or("?"), s["hit_at_5"]))
            .collect(),
        None => Vec::new(),
    };
    if json {
        output::print_json(&json!({
            "questions": questions.len(),
            "top_k": TOP_K,
            "chat_model": health["chat_model"],
            "embedding_model": health["embedding_model"]["model_id"],
            "reranker": health["reranker"],
            "summary": summary,
            "min_hit_at_5": args.min_hit_at_5,
            "passed": failing.is_empty(),
            "rows": rows,
        }));
    } else {
        print_report(&questions, &labels, &summary, &rows);
    }
    if !failing.is_empty() {
        return Err(CliError::Partial(format!(
            "hit@5 under the bar {:.3}: {}",
            args.min_hit_at_5.unwrap_or_default(),
            failing.join(", ")
        )));
    }
    Ok(())
}

fn print_report(questions: &[Question], modes: &[String], summary: &[Value], rows: &[Value]) {
    let ranks: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![output::clip(
                row["question"].as_str().unwrap_or_default(),
                60,
            )];
            for mode in modes {
                let entry = &row["modes"][mode];
                cells.push(if entry["error"].is_string() {
                    output::red("error")
                } else {
                    match entry["first_relevant_rank"].as_u64() {
                        Some(1) => output::green("1"),
                        Some(rank) => rank.to_string(),
                        None => output::red("miss"),
                    }
                });
            }
            cells
        })
        .collect();
    let mut headers = vec!["QUESTION (rank of the first expected source)"];
    headers.extend(modes.iter().map(String::as_str));
    output::table(&headers, &ranks);
    outln!("");
    let fmt = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    let metric_rows: Vec<Vec<String>> = summary
        .iter()
        .map(|s| {
            vec![
                bold(s["mode"].as_str().unwrap_or("?")),
                fmt(&s["hit_at_1"]),
                fmt(&s["hit_at_5"]),
                fmt(&s["mrr_at_10"]),
                fmt(&s["ndcg_at_10"]),
                fmt(&s["keyword_recall"]),
                fmt(&s["citation_precision"]),
                fmt(&s["groundedness"]),
                format!("{:.0}", s["mean_latency_ms"].as_f64().unwrap_or(0.0)),
                s["errors"].to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "MODE", "HIT@1", "HIT@5", "MRR@10", "NDCG@10", "KEYWORDS", "CITED", "GROUNDED", "MS",
            "ERRORS",
        ],
        &metric_rows,
    );
    outln!(
        "{}",
        dim(&format!(
            "{} questions, top {TOP_K} passages per query; keyword recall is over questions that list keywords; CITED is the share of [n] markers that point at an expected source, GROUNDED the share of claims their passage supports",
            questions.len()
        ))
    );
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
    fn compare_asks_each_mode_with_and_without_each_stage() {
        let args = |rerank, compare| EvalArgs {
            questions: PathBuf::from("q.jsonl"),
            modes: Vec::new(),
            min_hit_at_5: None,
            threshold: None,
            data_dir: None,
            rerank,
            compare,
        };
        let modes = ["dense".to_string(), "hybrid".to_string()];
        let labels = |v: Vec<Variant>| v.into_iter().map(|v| v.label).collect::<Vec<_>>();
        assert_eq!(
            labels(variants(&modes, &args(false, false), true, true)),
            ["dense", "hybrid"]
        );
        assert_eq!(
            labels(variants(&modes, &args(true, false), true, false)),
            ["dense+rerank", "hybrid+rerank"]
        );
        let compared = variants(&modes, &args(false, true), true, true);
        assert_eq!(
            labels(compared.clone()),
            [
                "dense",
                "dense+rerank",
                "dense-history",
                "hybrid",
                "hybrid+rerank",
                "hybrid-history"
            ]
        );
        assert_eq!(
            (compared[0].rerank, compared[1].rerank),
            (Some(false), Some(true))
        );
        assert!(compared[0].history && !compared[2].history);
        // Without a reranker or conversations there is nothing to compare.
        assert_eq!(
            labels(variants(&modes, &args(false, true), false, false)),
            ["dense", "hybrid"]
        );
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
    }
}
