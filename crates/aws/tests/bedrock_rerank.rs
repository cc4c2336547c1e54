//! The Bedrock reranker over the Agent Runtime `Rerank` wire format,
//! against the emulator, with the real SDK client.

mod common;

use std::time::Duration;

use rag_aws::{BedrockReranker, RetryPolicy, rerank_region_problem};
use rag_aws_emulator::{Emulator, Fault, Faults};
use rag_core::rerank::{RerankError, Reranker};

/// A client that leaves retrying to the adapter, as the binary builds it.
fn client(url: &str) -> aws_sdk_bedrockagentruntime::Client {
    use aws_sdk_bedrockagentruntime::config::{
        BehaviorVersion, Credentials, Region, retry::RetryConfig,
    };
    let config = aws_sdk_bedrockagentruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-west-2"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(RetryConfig::disabled())
        .endpoint_url(url)
        .build();
    aws_sdk_bedrockagentruntime::Client::from_conf(config)
}

fn reranker(emulator: &Emulator, model_id: &str) -> BedrockReranker {
    BedrockReranker::new(
        client(&emulator.url),
        model_id,
        "us-west-2",
        RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
    )
}

fn documents() -> Vec<String> {
    [
        "The weather in the mountains.",
        "Borrowing lends a value without moving it.",
        "How to borrow a value: take a reference.",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn every_document_gets_the_services_score_in_input_order() {
    let emulator = Emulator::start().await.unwrap();
    let reranker = reranker(&emulator, "amazon.rerank-v1:0");
    assert_eq!(reranker.name(), "bedrock:amazon.rerank-v1:0");
    let scores = reranker
        .score("how to borrow a value", &documents())
        .await
        .unwrap();
    assert_eq!(scores.len(), 3);
    assert!(scores[2] > scores[1] && scores[1] > scores[0], "{scores:?}");

    let requests = emulator.rerank_requests();
    let request = &requests[0];
    assert_eq!(
        request["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"]["modelArn"],
        "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"
    );
    assert_eq!(
        request["rerankingConfiguration"]["bedrockRerankingConfiguration"]["numberOfResults"],
        3
    );
    assert_eq!(
        request["queries"][0]["textQuery"]["text"],
        "how to borrow a value"
    );
    assert_eq!(
        request["sources"][1]["inlineDocumentSource"]["textDocument"]["text"],
        documents()[1]
    );
}

#[tokio::test]
async fn throttling_is_retried_then_reported_and_a_bad_model_is_invalid() {
    let emulator = Emulator::start().await.unwrap();
    let reranker = reranker(&emulator, "cohere.rerank-v3-5:0");
    emulator.push_fault(Fault::Throttle);
    assert_eq!(
        reranker.score("borrow", &documents()).await.unwrap().len(),
        3,
        "one throttled attempt is retried"
    );
    emulator.set_faults(Faults {
        throttle_percent: 100,
        ..Faults::default()
    });
    let error = reranker.score("borrow", &documents()).await.unwrap_err();
    assert!(matches!(error, RerankError::Throttled), "{error}");
    emulator.set_faults(Faults::default());

    let unknown = self::reranker(&emulator, "amazon.rerank-v9:0");
    let error = unknown.score("borrow", &documents()).await.unwrap_err();
    assert!(matches!(error, RerankError::Invalid(_)), "{error}");
}

#[test]
fn the_documented_regions_of_each_model_are_known() {
    assert!(rerank_region_problem("amazon.rerank-v1:0", "us-east-1").is_some());
    assert!(rerank_region_problem("cohere.rerank-v3-5:0", "us-east-1").is_none());
    assert!(rerank_region_problem("amazon.rerank-v1:0", "us-west-2").is_none());
    assert!(rerank_region_problem("some.future-reranker", "us-east-1").is_none());
}
