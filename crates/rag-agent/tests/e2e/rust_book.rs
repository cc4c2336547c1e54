//! The Rust book, uploaded whole: indexing, answering, chat memory,
//! deletion and restart, on one server and data directory.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::*;

/// Numbered entries of the sidebar table of contents. A chunk that holds
/// two of them has swallowed the sidebar.
const TOC_MARKERS: &[&str] = &[
    "1.1. Installation",
    "1.2. Hello, World!",
    "1.3. Hello, Cargo!",
    "3.1. Variables and Mutability",
    "4.1. What is Ownership?",
    "9.2. Recoverable Errors with Result",
];

async fn ask(server: &Server, body: Value) -> Value {
    let (status, answer) = post_json(&server.at("/query"), &body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_book_end_to_end_embedded() {
    rust_book_end_to_end(Stack::embedded()).await;
}

/// The same run on DynamoDB, S3, S3 Vectors and Bedrock, with 30% of
/// Bedrock calls throttled throughout: nothing may be lost or duplicated.
/// Twelve attempts per call make losing one of the ~1,750 calls to twelve
/// throttles in a row a one-in-a-thousand event rather than a flaky test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_book_end_to_end_aws() {
    let stack = Stack::aws_with(&[("BEDROCK_MAX_ATTEMPTS", "12")]).await;
    stack
        .emulator()
        .unwrap()
        .set_faults(rag_aws_emulator::Faults {
            throttle_percent: 30,
            seed: 3,
            ..Default::default()
        });
    rust_book_end_to_end(stack).await;
}

async fn rust_book_end_to_end(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &stack, &[]);
    let (_, health) = get_json(&server.at("/health")).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["embedding_model"]["dimension"], stack.dimension());

    // 1. Upload every content page, eight at a time.
    let pages = book_pages();
    assert!(pages.len() >= 100, "only {} book pages found", pages.len());
    let uploads: Vec<(u16, Value)> = futures::stream::iter(pages.iter())
        .map(|page| upload(&server, page))
        .buffered(8)
        .collect()
        .await;
    let mut ids = HashSet::new();
    for ((status, body), page) in uploads.iter().zip(&pages) {
        assert!([200, 202].contains(status), "{page:?}: {status} {body}");
        ids.insert(body["document"]["id"].as_str().unwrap().to_string());
    }
    wait_until_settled(&server, Duration::from_secs(1800)).await;
    let (_, indexed) = get_json(&server.at("/documents?status=INDEXED&limit=1000")).await;
    let indexed_ids: HashSet<String> = indexed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    if indexed_ids != ids {
        let (_, failed) = get_json(&server.at("/documents?status=FAILED&limit=1000")).await;
        let errors: Vec<&Value> = failed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| &d["error"])
            .collect();
        panic!(
            "{} of {} pages INDEXED; failures: {errors:?}",
            indexed_ids.len(),
            ids.len()
        );
    }

    let mut total_chunks: u64 = 0;
    for id in &ids {
        let (status, doc) = get_json(&server.at(&format!(
            "/documents/{id}?include_chunks=true&include_content=true"
        )))
        .await;
        assert_eq!(status, 200);
        let content: Vec<char> = doc["content"].as_str().unwrap().chars().collect();
        for chunk in doc["chunks"].as_array().unwrap() {
            let text = chunk["content"].as_str().unwrap();
            let markers = TOC_MARKERS.iter().filter(|m| text.contains(*m)).count();
            assert!(
                markers < 2,
                "chunk of {} holds the sidebar: {text}",
                doc["source"]
            );
            for furniture in [
                "Keyboard shortcuts",
                "Previous chapter",
                "Toggle Table of Contents",
            ] {
                assert!(
                    !text.contains(furniture),
                    "{furniture:?} leaked into {}",
                    doc["source"]
                );
            }
            let (start, end) = (
                chunk["start_char"].as_u64().unwrap() as usize,
                chunk["end_char"].as_u64().unwrap() as usize,
            );
            assert_eq!(content[start..end].iter().collect::<String>(), text);
            total_chunks += 1;
        }
    }
    assert_eq!(stack.vector_count(&server).await, total_chunks);
    assert!(total_chunks > 1000, "{total_chunks} chunks");
    if let Some(emulator) = stack.emulator() {
        let stats = emulator.bedrock_stats();
        assert!(stats.faults_injected > 100, "the storm happened: {stats:?}");
        emulator.set_faults(rag_aws_emulator::Faults::default());
    }

    // 1b. Retrieval quality over the example question set, with the CLI's
    // eval and a bar, as a user would gate their CI.
    let report = eval_report(&server, "rust-book.jsonl", &["--min-hit-at-5", "0.9"]).await;
    assert_eq!(report["questions"], 48);
    let modes = report["summary"].as_array().unwrap();
    assert_eq!(modes.len(), stack.modes().len(), "{report:#}");
    // Bars a question or two under what docs/BENCHMARKS.md records with
    // section headers (dense 0.925/0.963, lexical 0.725/0.811, hybrid
    // 0.900/0.938 hit@1/MRR@10), so a change that loses ranking fails
    // here rather than in a user's corpus.
    // Fusing both halves must not lose much to the better of them (it
    // trails dense by 0.025 here today; see docs/BENCHMARKS.md).
    check_eval_bars(
        &report,
        &[
            ("dense", 0.875, 0.93),
            ("lexical", 0.675, 0.78),
            ("hybrid", 0.85, 0.90),
        ],
        0.03,
    );
    // The extractive answerer's words; the emulator's model answers the
    // AWS run with canned text.
    if matches!(stack, Stack::Embedded) {
        for mode in modes {
            assert!(mode["keyword_recall"].as_f64().unwrap() >= 0.7, "{mode}");
        }
    }
    // The eight off-topic questions find no passage: MiniLM's default
    // threshold (0.3) declines all of them in dense and hybrid search
    // (docs/BENCHMARKS.md); the AWS stack keeps 0.2, where six of eight
    // are declined.
    let declined = if matches!(stack, Stack::Embedded) {
        0.875
    } else {
        0.625
    };
    check_abstention(&report, 8, declined);

    // 1c. Follow-up questions: conversations whose last turn names too
    // little to be searched alone. With the extractive default the
    // previous question's terms join the search; asked without the
    // conversation (`<mode>-history`) the same turns find their page far
    // less often (docs/BENCHMARKS.md: hybrid hit@5 0.917 -> 1.000, MRR@10
    // 0.729 -> 1.000).
    if matches!(stack, Stack::Embedded) {
        let report = eval_report(&server, "rust-book-follow-ups.jsonl", &["--compare"]).await;
        let summary = report["summary"].as_array().unwrap();
        let metric = |label: &str, name: &str| {
            summary
                .iter()
                .find(|s| s["mode"] == label)
                .unwrap_or_else(|| panic!("no {label} row: {report:#}"))[name]
                .as_f64()
                .unwrap()
        };
        for mode in stack.modes() {
            let alone = format!("{mode}-history");
            assert!(metric(mode, "hit_at_5") >= 0.9, "{report:#}");
            assert!(
                metric(mode, "mrr_at_10") > metric(&alone, "mrr_at_10"),
                "{mode}: {report:#}"
            );
        }
        assert!(metric("hybrid", "hit_at_5") > metric("hybrid-history", "hit_at_5"));
    }

    // 2. The question mark operator, in the default mode.
    let answer = ask(
        &server,
        json!({"query": "What does the question mark operator do?"}),
    )
    .await;
    // "Using Result<T, E> in Tests" speaks of the operator too, and may
    // come first; the chapter that introduces it must be next at worst.
    let sources = answer["sources"].as_array().unwrap();
    assert!(
        sources[..2]
            .iter()
            .any(|s| s["source"] == "ch09-02-recoverable-errors-with-result.html"),
        "{answer:#}"
    );
    assert!(
        answer["answer"].as_str().unwrap().contains("[1]"),
        "{answer:#}"
    );
    assert_eq!(answer["model_id"], stack.model_id());
    assert_eq!(answer["search_mode"], stack.default_mode());
    for mode in stack.modes() {
        let a = ask(
            &server,
            json!({"query": "What does the question mark operator do?", "mode": mode, "top_k": 3}),
        )
        .await;
        assert_eq!(a["search_mode"], *mode);
        assert!(!a["sources"].as_array().unwrap().is_empty(), "{mode}");
    }

    // Chat keeps a conversation.
    let (status, first) = post_json(
        &server.at("/chat"),
        &json!({"message": "How do I create a new Cargo project?"}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let conversation_id = first["conversation_id"].as_str().unwrap().to_string();
    let (status, second) = post_json(
        &server.at("/chat"),
        &json!({"message": "How do I build it?", "conversation_id": conversation_id}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(second["conversation_id"], conversation_id.as_str());
    // "it" is the Cargo project: the follow-up is searched with the first
    // question's terms (the agent on the AWS set writes its own query).
    if matches!(stack, Stack::Embedded) {
        let searched = second["search_query"].as_str().unwrap();
        assert!(searched.contains("cargo"), "{second}");
        assert_eq!(
            second["sources"][0]["source"], "ch01-03-hello-cargo.html",
            "{second}"
        );
    }

    // The stream: sources, deltas, done, in that order.
    let response = client()
        .post(server.at("/chat/stream"))
        .json(&json!({"message": "What is a slice?", "conversation_id": conversation_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.text().await.unwrap();
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    // Retrieve-then-answer sends its sources first; the agent (Bedrock)
    // searches first and sends the sources its answer cites at the end.
    let expected_first = if stack.emulator().is_some() {
        "tool_use"
    } else {
        "sources"
    };
    assert_eq!(events.first(), Some(&expected_first), "{body}");
    assert_eq!(events.last(), Some(&"done"), "{body}");
    assert!(
        events.contains(&"delta") && events.contains(&"sources"),
        "{body}"
    );

    // 3. Delete ch09-02: gone from every search mode, its files and vectors too.
    let ch09 = sources[0]["document_id"].as_str().unwrap().to_string();
    let (_, doc) = get_json(&server.at(&format!("/documents/{ch09}"))).await;
    let chunk_count = doc["chunk_count"].as_u64().unwrap();
    let status = client()
        .delete(server.at(&format!("/documents/{ch09}")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let (status, error) = get_json(&server.at(&format!("/documents/{ch09}"))).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("document_not_found"))
    );
    for mode in stack.modes() {
        let a = ask(&server, json!({"query": "What does the question mark operator do? Recoverable errors with Result", "mode": mode, "top_k": 50, "similarity_threshold": -1.0})).await;
        assert!(
            a["sources"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["document_id"] != ch09.as_str()),
            "deleted document still found in {mode} mode"
        );
    }
    assert!(!stack.has_files(&server, &ch09).await);
    let vector_count = stack.vector_count(&server).await;
    assert_eq!(vector_count, total_chunks - chunk_count);
    let (_, health) = get_json(&server.at("/health")).await;
    let document_count = health["document_count"].clone();
    assert_eq!(document_count, ids.len() - 1);

    // 4. Restart on the same stores: everything is still there.
    server.stop();
    let server = Server::start(data.path(), &stack, &[]);
    let (_, health) = get_json(&server.at("/health")).await;
    assert_eq!(health["document_count"], document_count);
    assert_eq!(stack.vector_count(&server).await, vector_count);
    let (status, conversation) =
        get_json(&server.at(&format!("/conversations/{conversation_id}"))).await;
    assert_eq!(status, 200);
    let messages = conversation["messages"].as_array().unwrap();
    // Three turns; each agent turn is question, search, results, answer.
    let per_turn = if stack.emulator().is_some() { 4 } else { 2 };
    assert_eq!(messages.len(), 3 * per_turn, "{conversation}");
    assert_eq!(messages[0]["text"], "How do I create a new Cargo project?");
    let answer = ask(
        &server,
        json!({"query": "How do I create a new Cargo project?", "mode": "dense"}),
    )
    .await;
    assert!(!answer["sources"].as_array().unwrap().is_empty());
    assert!(
        answer["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["document_id"] != ch09.as_str())
    );
}
