//! The questions file of `rag-agent eval`: one JSON object per line, a
//! single question or a conversation whose last turn is scored.

use std::path::Path;

use serde_json::Value;

use crate::CliError;

/// One line of the questions file.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The question scored: the last turn of a conversation.
    pub question: String,
    /// The turns asked before it in the same conversation, oldest first;
    /// empty for a question that stands alone.
    pub earlier_turns: Vec<String>,
    /// Empty for an unanswerable question.
    pub expected_sources: Vec<String>,
    pub answer_keywords: Vec<String>,
    /// The documents do not answer it: the right outcome is no source and
    /// an answer that cites nothing.
    pub unanswerable: bool,
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
        let unanswerable = match &value["unanswerable"] {
            Value::Null => false,
            Value::Bool(flag) => *flag,
            _ => return Err(bad("`unanswerable` must be true or false")),
        };
        match (unanswerable, expected_sources.is_empty()) {
            (false, true) => {
                return Err(bad(
                    "`expected_sources` must name at least one source (or mark the question `\"unanswerable\": true`)",
                ));
            }
            (true, false) => {
                return Err(bad("an unanswerable question has no `expected_sources`"));
            }
            _ => {}
        }
        let non_empty = |text: &str| !text.trim().is_empty();
        let (question, earlier_turns) = match (&value["question"], &value["turns"]) {
            (Value::Null, Value::Null) => {
                return Err(bad("each line needs `question` or `turns`"));
            }
            (Value::Null, _) => {
                let mut turns = strings("turns")?;
                if turns.is_empty() || !turns.iter().all(|t| non_empty(t)) {
                    return Err(bad(
                        "`turns` must hold non-empty strings, the last one scored",
                    ));
                }
                let last = turns.pop().unwrap_or_default();
                (last, turns)
            }
            (question, Value::Null) => (
                question
                    .as_str()
                    .filter(|q| non_empty(q))
                    .ok_or_else(|| bad("`question` must be a non-empty string"))?
                    .to_string(),
                Vec::new(),
            ),
            _ => return Err(bad("give `question` or `turns`, not both")),
        };
        questions.push(Question {
            question,
            earlier_turns,
            expected_sources,
            answer_keywords: strings("answer_keywords")?,
            unanswerable,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let conversation = dir.join("turns.jsonl");
        std::fs::write(
            &conversation,
            "{\"turns\": [\"What is Cargo?\", \"How do I build it?\"], \"expected_sources\": [\"x\"]}\n",
        )
        .unwrap();
        let loaded = load_questions(&conversation).unwrap();
        assert_eq!(loaded[0].question, "How do I build it?");
        assert_eq!(loaded[0].earlier_turns, ["What is Cargo?"]);
        let off_topic = dir.join("off-topic.jsonl");
        std::fs::write(
            &off_topic,
            "{\"question\": \"What is the capital of France?\", \"unanswerable\": true}\n",
        )
        .unwrap();
        let loaded = load_questions(&off_topic).unwrap();
        assert!(loaded[0].unanswerable && loaded[0].expected_sources.is_empty());
        for (content, why) in [
            ("{\"question\": \"a?\"}", "expected_sources"),
            (
                "{\"question\": \"a?\", \"unanswerable\": true, \"expected_sources\": [\"x\"]}",
                "no `expected_sources`",
            ),
            (
                "{\"question\": \"a?\", \"unanswerable\": \"yes\"}",
                "true or false",
            ),
            (
                "{\"question\": \"\", \"expected_sources\": [\"x\"]}",
                "question",
            ),
            (
                "{\"question\": \"a\", \"expected_sources\": [1]}",
                "strings",
            ),
            ("not json", "1:"),
            ("{\"turns\": [], \"expected_sources\": [\"x\"]}", "turns"),
            (
                "{\"turns\": [\"a\", \" \"], \"expected_sources\": [\"x\"]}",
                "turns",
            ),
            (
                "{\"question\": \"a\", \"turns\": [\"b\"], \"expected_sources\": [\"x\"]}",
                "not both",
            ),
            ("", "no questions"),
        ] {
            let bad = dir.join("bad.jsonl");
            std::fs::write(&bad, content).unwrap();
            let error = load_questions(&bad).unwrap_err().to_string();
            assert!(error.contains(why), "{content}: {error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
