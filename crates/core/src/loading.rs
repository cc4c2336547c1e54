//! An embedder whose model loads on a background thread, so a server can
//! accept requests (health, listings, lexical search) before a large model
//! is in memory. Calls to `embed` made while it loads wait for it; if the
//! load fails they fail with its reason, and `/health` reports either.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::backend::{DEFAULT_EMBED_BATCH_SIZE, Embedder, EmbedderState};
use crate::error::EmbedError;

type Loaded = Option<Result<Arc<dyn Embedder>, String>>;

pub struct LoadingEmbedder {
    model_id: String,
    dimension: usize,
    loaded: watch::Receiver<Loaded>,
}

impl LoadingEmbedder {
    /// Starts `load` on its own thread. `model_id` and `dimension` must be
    /// what the loaded embedder will report: callers size vector indexes by
    /// them before the model is in memory, and a mismatch fails the load.
    pub fn spawn(
        model_id: impl Into<String>,
        dimension: usize,
        load: impl FnOnce() -> Result<Arc<dyn Embedder>, String> + Send + 'static,
    ) -> Result<Self, EmbedError> {
        let model_id = model_id.into();
        let (sender, loaded) = watch::channel(None);
        let expected = (model_id.clone(), dimension);
        std::thread::Builder::new()
            .name("embedding-model-load".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let outcome = load().and_then(|embedder| {
                    if (embedder.model_id(), embedder.dimension()) == (&expected.0, expected.1) {
                        Ok(embedder)
                    } else {
                        Err(format!(
                            "the loaded model is {} with {} dimensions, expected {} with {}",
                            embedder.model_id(),
                            embedder.dimension(),
                            expected.0,
                            expected.1
                        ))
                    }
                });
                match &outcome {
                    Ok(_) => tracing::info!(
                        model = %expected.0,
                        seconds = started.elapsed().as_secs_f64(),
                        "embedding model loaded"
                    ),
                    Err(e) => tracing::warn!(model = %expected.0, error = %e, "embedding model failed to load"),
                }
                // No receiver left means the service is gone; nothing to tell.
                let _ = sender.send(Some(outcome));
            })
            .map_err(EmbedError::permanent)?;
        Ok(Self {
            model_id,
            dimension,
            loaded,
        })
    }

    async fn ready(&self) -> Result<Arc<dyn Embedder>, EmbedError> {
        let mut loaded = self.loaded.clone();
        let outcome = loaded
            .wait_for(Option::is_some)
            .await
            .map_err(|_| EmbedError::permanent("the embedding model loader stopped"))?;
        match outcome.as_ref().expect("waited for Some") {
            Ok(embedder) => Ok(Arc::clone(embedder)),
            Err(reason) => Err(EmbedError::permanent(format!(
                "the embedding model could not be loaded: {reason}"
            ))),
        }
    }
}

#[async_trait]
impl Embedder for LoadingEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    /// The loaded model's; while it loads, the default, which an ingestion
    /// started in that window splits its chunks by.
    fn batch_size(&self) -> usize {
        match &*self.loaded.borrow() {
            Some(Ok(embedder)) => embedder.batch_size(),
            _ => DEFAULT_EMBED_BATCH_SIZE,
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.ready().await?.embed(texts).await
    }

    async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.ready().await?.embed_query(text).await
    }

    fn state(&self) -> EmbedderState {
        match &*self.loaded.borrow() {
            None => EmbedderState::Loading,
            Some(Ok(_)) => EmbedderState::Ready,
            Some(Err(reason)) => EmbedderState::Failed(reason.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Constant(usize);

    #[async_trait]
    impl Embedder for Constant {
        fn model_id(&self) -> &str {
            "constant"
        }
        fn dimension(&self) -> usize {
            self.0
        }
        fn batch_size(&self) -> usize {
            5
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts.iter().map(|_| vec![1.0; self.0]).collect())
        }
    }

    #[tokio::test]
    async fn embed_waits_for_the_model_and_state_follows_it() {
        let (release, gate) = mpsc::channel::<()>();
        let embedder = LoadingEmbedder::spawn("constant", 3, move || {
            gate.recv().map_err(|e| e.to_string())?;
            Ok(Arc::new(Constant(3)) as Arc<dyn Embedder>)
        })
        .unwrap();
        assert_eq!(embedder.state(), EmbedderState::Loading);
        assert_eq!((embedder.model_id(), embedder.dimension()), ("constant", 3));
        assert_eq!(embedder.batch_size(), DEFAULT_EMBED_BATCH_SIZE);
        let embedder = Arc::new(embedder);
        let waiting = tokio::spawn({
            let embedder = Arc::clone(&embedder);
            async move { embedder.embed(&["a".into(), "b".into()]).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "embed must wait while the model loads"
        );
        release.send(()).unwrap();
        let vectors = waiting.await.unwrap().unwrap();
        assert_eq!(vectors, vec![vec![1.0; 3]; 2]);
        assert_eq!(embedder.state(), EmbedderState::Ready);
        assert_eq!(embedder.batch_size(), 5, "the loaded model's batch size");
    }

    #[tokio::test]
    async fn a_failed_or_mismatched_load_is_reported_and_refuses_to_embed() {
        let failed = LoadingEmbedder::spawn("constant", 3, || {
            Err("model.safetensors is truncated".into())
        })
        .unwrap();
        let error = failed.embed(&["a".into()]).await.unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
        assert!(matches!(failed.state(), EmbedderState::Failed(r) if r.contains("truncated")));

        let mismatched = LoadingEmbedder::spawn("constant", 3, || {
            Ok(Arc::new(Constant(4)) as Arc<dyn Embedder>)
        })
        .unwrap();
        let error = mismatched.embed(&["a".into()]).await.unwrap_err();
        assert!(error.to_string().contains("4 dimensions"), "{error}");
    }
}
