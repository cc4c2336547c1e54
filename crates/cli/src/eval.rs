//! `rag-agent eval`: retrieval and answer quality over a question set.
//!
//! Each question is asked once per search mode through `POST /query` with
//! `top_k` 10; the ranked passages become a ranked list of distinct
//! documents, scored against the question's expected sources with hit@1,
//! hit@5, MRR@10 and nDCG@10 (binary relevance), and the answer against its
//! keywords. The same harness measures a deployed API or a local data
//! directory, so users can gate CI on their own data.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};

use crate::output::{self, bold, dim};
use crate::{ApiClient, CliError};

pub const EXAMPLES: &str = "Examples:
  rag-agent eval --questions tests/eval/rust-book.jsonl
  rag-agent eval --questions qa.jsonl --modes dense,hybrid --min-hit-at-5 0.8
  rag-agent eval --questions qa.jsonl --data-dir ./data --json > eval.json

Each line of the questions file is a JSON object:
  {\"question\": \"...\", \"expected_sources\": [\"guide.md\"], \"answer_keywords\": [\"...\"]}
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
}

/// One line of the questions file.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub question: String,
    pub expected_sources: Vec<String>,
    pub answer_keywords: Vec<String>,
}

pub fn load_questions(path: &Path) -> Result<Vec<Question>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let mut questions = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let bad = |why: &str| CliError::Usage(format!("{}:{}: {why}", path.display(), number + 1));
        let value: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let question = value["question"]
            .as_str()
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| bad("`question` must be a non-empty string"))?;
        let strings = |field: &str| -> Result<Vec<String>, CliError> {
            match &value[field] {
                Value::Null => Ok(Vec::new()),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad(&format!("`{field}` must hold strings")))
                    })
                    .collect(),
                _ => Err(bad(&format!("`{field}` must be an array of strings"))),
            }
        };
        let expected_sources = strings("expected_sources")?;
        if expected_sources.is_empty() {
            return Err(bad("`expected_sources` must name at least one source"));
        }
        questions.push(Question {
            question: question.to_string(),
            expected_sources,
            answer_keywords: strings("answer_keywords")?,
        });
    }
    if questions.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no questions",
            path.display()
        )));
    }
    Ok(questions)
}

/// Whether a retrieved document is one of the expected sources.
pub fn matches_expected(expected: &str, source: &str, title: &str) -> bool {
    let expected = expected.trim().to_lowercase();
    let source = source.to_lowercase();
    source == expected
        || title.to_lowercase() == expected
        || source.ends_with(&format!("/{expected}"))
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

    let mut summaries = vec![ModeSummary::default(); modes.len()];
    let mut rows = Vec::new();
    for question in &questions {
        let mut per_mode = serde_json::Map::new();
        for (mode, summary) in modes.iter().zip(summaries.iter_mut()) {
            let mut body = json!({ "query": question.question, "top_k": TOP_K, "mode": mode });
            if let Some(threshold) = args.threshold {
                body["similarity_threshold"] = json!(threshold);
            }
            match client.post("query", &body).await {
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
    let summary: Vec<Value> = modes
        .iter()
        .zip(&summaries)
        .map(|(mode, s)| s.to_json(mode))
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
            "summary": summary,
            "min_hit_at_5": args.min_hit_at_5,
            "passed": failing.is_empty(),
            "rows": rows,
        }));
    } else {
        print_report(&questions, &modes, &summary, &rows);
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
    fn expected_sources_match_source_title_or_file_name() {
        assert!(matches_expected("ch04.html", "ch04.html", "x"));
        assert!(matches_expected("ch04.html", "/tmp/book/CH04.html", "x"));
        assert!(matches_expected(
            "What is Ownership?",
            "x",
            "what is ownership?"
        ));
        assert!(!matches_expected("04.html", "/tmp/book/ch04.html", "x"));
    }

    #[test]
    fn question_files_are_checked_line_by_line() {
        let dir = std::env::temp_dir().join(format!("rag-cli-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.jsonl");
        std::fs::write(
            &good,
            "{\"question\": \"a?\", \"expected_sources\": [\"x\"]}\n\n{\"question\": \"b?\", \"expected_sources\": [\"y\"], \"answer_keywords\": [\"k\"]}\n",
        )
        .unwrap();
        let loaded = load_questions(&good).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[1].answer_keywords, ["k"]);
        for (content, why) in [
            ("{\"question\": \"a?\"}", "expected_sources"),
            (
                "{\"question\": \"\", \"expected_sources\": [\"x\"]}",
                "question",
            ),
            (
                "{\"question\": \"a\", \"expected_sources\": [1]}",
                "strings",
            ),
            ("not json", "1:"),
            ("", "no questions"),
        ] {
            let bad = dir.join("bad.jsonl");
            std::fs::write(&bad, content).unwrap();
            let error = load_questions(&bad).unwrap_err().to_string();
            assert!(error.contains(why), "{content}: {error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
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
