//! The `/v1/embeddings` client against the in-repo OpenAI-compatible
//! server on 127.0.0.1: the dimension probed at connect, batching, input
//! order, and each failure status classified.

use std::time::Duration;

use rag_aws_emulator::OpenAiServer;
use rag_aws_emulator::openai::{EMBEDDING_DIMENSION, SMALL_EMBEDDING_DIMENSION};
use rag_core::{EmbedError, Embedder, ErrorClass};
use rag_openai::{OpenAiEmbedConfig, OpenAiEmbedder};

fn config(server: &OpenAiServer, model: &str, batch_size: usize) -> OpenAiEmbedConfig {
    OpenAiEmbedConfig {
        base_url: server.url.clone(),
        model: model.into(),
        api_key: Some("secret".into()),
        timeout: Duration::from_secs(5),
        batch_size,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn the_dimension_is_probed_and_texts_are_embedded_in_batches_in_order() {
    let server = OpenAiServer::start().await.unwrap();
    let embedder = OpenAiEmbedder::connect(
        reqwest::Client::new(),
        config(&server, "nomic-embed-text", 3),
    )
    .await
    .unwrap();
    assert_eq!(embedder.dimension(), EMBEDDING_DIMENSION);
    assert_eq!(embedder.model_id(), "openai:nomic-embed-text");
    assert_eq!(embedder.batch_size(), 3);

    let texts: Vec<String> = (0..7)
        .map(|i| format!("text number {i} about borrowing"))
        .collect();
    let vectors = embedder.embed(&texts).await.unwrap();
    assert_eq!(vectors.len(), 7);
    // Each vector is the one for its own text, whichever batch it was in.
    for (i, text) in texts.iter().enumerate() {
        let alone = embedder.embed_query(text).await.unwrap();
        assert!((cosine(&alone, &vectors[i]) - 1.0).abs() < 1e-5, "text {i}");
    }
    let requests = server.requests();
    // The probe, three batches (3 + 3 + 1), then one request per query.
    let batch_sizes: Vec<usize> = requests[1..4]
        .iter()
        .map(|r| r["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(batch_sizes, [3, 3, 1]);
    assert!(requests.iter().all(|r| r["model"] == "nomic-embed-text"));

    let small = OpenAiEmbedder::connect(
        reqwest::Client::new(),
        config(&server, "all-minilm-small", 32),
    )
    .await
    .unwrap();
    assert_eq!(small.dimension(), SMALL_EMBEDDING_DIMENSION);
}

#[tokio::test]
async fn failures_are_classified_and_a_dead_server_fails_the_connect() {
    let server = OpenAiServer::start().await.unwrap();
    let embedder = OpenAiEmbedder::connect(reqwest::Client::new(), config(&server, "m", 8))
        .await
        .unwrap();
    let texts = vec!["a text".to_string()];
    for (status, class) in [
        (429, ErrorClass::Transient),
        (503, ErrorClass::Transient),
        (400, ErrorClass::Invalid),
        (401, ErrorClass::Permanent),
    ] {
        server.push_failure(status);
        let error = embedder.embed(&texts).await.unwrap_err();
        assert_eq!(error.class(), class, "{status}: {error}");
        if status == 429 {
            assert!(matches!(error, EmbedError::Throttled { .. }));
        }
    }
    assert_eq!(embedder.embed(&texts).await.unwrap().len(), 1);

    // Nothing listens on a port that was just freed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = OpenAiEmbedConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        ..config(&server, "m", 8)
    };
    let error = OpenAiEmbedder::connect(reqwest::Client::new(), unreachable)
        .await
        .err()
        .expect("no server, no embedder");
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
}
