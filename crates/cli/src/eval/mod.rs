//! `rag-agent eval`: retrieval and answer quality over a question set.
//!
//! Each question is asked once per search mode (and, with `--rerank` or
//! `--compare`, per stage switched on or off) through `POST /query` with
//! `top_k` 10; the ranked passages become a ranked list of distinct
//! documents, scored against the question's expected sources with hit@1,
//! hit@5, MRR@10 and nDCG@10 (binary relevance), and the answer against its
//! keywords. An unanswerable question is scored apart: it is answered
//! right when the reply has no source and cites nothing. The same harness measures a deployed API or a local data
//! directory, so users can gate CI on their own data.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

mod questions;
mod scoring;

use crate::output::{self, bold, dim};
use crate::{ApiClient, CliError};

pub use questions::{Question, load_questions, matches_expected};
use scoring::{ModeSummary, ranked_documents};
pub use scoring::{Scores, abstained, citation_scores, score};

pub const EXAMPLES: &str = "Examples:
  rag-agent eval --questions tests/eval/rust-book.jsonl
  rag-agent eval --questions qa.jsonl --modes dense,hybrid --min-hit-at-5 0.8
  rag-agent eval --questions qa.jsonl --data-dir ./data --json > eval.json
  rag-agent eval --questions qa.jsonl --compare

Each line of the questions file is a JSON object:
  {\"question\": \"...\", \"expected_sources\": [\"guide.md\"], \"answer_keywords\": [\"...\"]}
or a conversation whose last turn is scored:
  {\"turns\": [\"What is Cargo?\", \"How do I build it?\"], \"expected_sources\": [...]}
or a question the documents do not answer (right: no source, nothing cited):
  {\"question\": \"What is the capital of France?\", \"unanswerable\": true}
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
                Ok(answer) if question.unanswerable => {
                    let declined = abstained(&answer);
                    summary.add_unanswerable(declined);
                    per_mode.insert(
                        mode.clone(),
                        json!({
                            "abstained": declined,
                            "top_sources": ranked_documents(&answer).iter().take(5).map(|(s, _)| s.clone()).collect::<Vec<_>>(),
                            "latency_ms": answer["latency_ms"].as_u64().unwrap_or(0),
                        }),
                    );
                }
                Ok(answer) => {
                    let ranked = ranked_documents(&answer);
                    let answer_text = answer["answer"].as_str().unwrap_or_default();
                    let scores = score(question, &ranked, answer_text);
                    let latency = answer["latency_ms"].as_u64().unwrap_or(0);
                    summary.add(&scores, latency);
                    if ranked.is_empty() {
                        summary.answerable_without_sources += 1;
                    }
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
                Err(error) if question.unanswerable => {
                    summary.add_unanswerable(false);
                    per_mode.insert(mode.clone(), json!({ "error": error.to_string() }));
                }
                Err(error) => {
                    summary.errors += 1;
                    per_mode.insert(mode.clone(), json!({ "error": error.to_string() }));
                }
            }
        }
        rows.push(json!({
            "question": question.question,
            "expected_sources": question.expected_sources,
            "unanswerable": question.unanswerable,
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
                } else if let Some(declined) = entry["abstained"].as_bool() {
                    if declined {
                        output::green("declined")
                    } else {
                        output::red("answered")
                    }
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
                fmt(&s["abstention"]),
                format!("{:.0}", s["mean_latency_ms"].as_f64().unwrap_or(0.0)),
                s["errors"].to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "MODE", "HIT@1", "HIT@5", "MRR@10", "NDCG@10", "KEYWORDS", "CITED", "GROUNDED",
            "DECLINED", "MS", "ERRORS",
        ],
        &metric_rows,
    );
    outln!(
        "{}",
        dim(&format!(
            "{} questions, top {TOP_K} passages per query; keyword recall is over questions that list keywords; CITED is the share of [n] markers that point at an expected source, GROUNDED the share of claims their passage supports; DECLINED is the share of unanswerable questions answered with no source; retrieval metrics are over the {} answerable questions",
            questions.len(),
            questions.iter().filter(|q| !q.unanswerable).count()
        ))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
