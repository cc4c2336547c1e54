//! The in-process MiniLM embedder against sentence-transformers' own output
//! (tests/fixtures/minilm_reference.json, made by the script beside it).
//!
//! Needs the model: `rag-agent models fetch`, or RAG_AGENT_MODEL_DIR.

use std::path::PathBuf;

use rag_core::Embedder;
use rag_local::{MiniLmEmbedder, model_files};

fn model_dir() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("RAG_AGENT_MODEL_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
    {
        candidates.push(cache.join("rag-agent/models").join(model_files::MODEL_ID));
    }
    model_files::resolve(&candidates).unwrap_or_else(|| {
        panic!("the MiniLM model is not available in {candidates:?}: run `rag-agent models fetch` or the README's test command")
    })
}

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// On the widest path this machine has, then with our kernels capped at
/// AVX2 (the path every AVX2-only machine runs; on such a machine both
/// passes are the same path). One test, so the cap cannot reach another
/// test running beside it.
#[tokio::test]
async fn matches_sentence_transformers() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/minilm_reference.json"
    );
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let embedder = MiniLmEmbedder::load(&model_dir()).unwrap();
    assert_eq!(embedder.dimension(), 384);
    eprintln!("widest path: {}", rag_local::simd::widest_path());
    check(&embedder, &reference).await;
    rag_local::simd::limit_to_avx2();
    eprintln!("capped path: {}", rag_local::simd::widest_path());
    check(&embedder, &reference).await;
}

async fn check(embedder: &MiniLmEmbedder, reference: &Reference) {
    let ours = embedder.embed(&reference.texts).await.unwrap();
    for ((text, want), got) in reference.texts.iter().zip(&reference.embeddings).zip(&ours) {
        assert_eq!(got.len(), 384);
        let similarity = cosine(want, got);
        assert!(similarity >= 0.999_999, "cosine {similarity} for {text:?}");
        // Element by element too: the encoder's own kernels must reproduce
        // PyTorch's arithmetic up to rounding, not merely point the same way.
        let worst = want
            .iter()
            .zip(got)
            .map(|(w, g)| (w - g).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "largest difference {worst} for {text:?}");
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    // One at a time gives the same vectors as the batch: padding is masked.
    for (text, batched) in reference.texts.iter().zip(&ours) {
        let single = embedder
            .embed(std::slice::from_ref(text))
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert!(cosine(&single, batched) > 0.9999, "{text:?}");
        // The question lane computes the same vector as a batch of one.
        let question = embedder.embed_query(text).await.unwrap();
        assert_eq!(question, single, "{text:?}");
    }
}
