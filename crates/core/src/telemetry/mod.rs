//! What the service tells its operators about its own work, beside the
//! per-tenant usage of [`crate::usage`]: metric events (request latency per
//! route, model tokens and cost, retrieval scores, ingestion) handed to a
//! [`MetricsSink`], and `tracing` spans named and attributed after the
//! OpenTelemetry GenAI conventions, which an exporter (chosen by the binary)
//! turns into traces.
//!
//! Core knows no metrics format: the API renders Prometheus text, the
//! Lambda crate writes CloudWatch Embedded Metric Format lines.

mod observed_model;
pub mod pricing;

use std::sync::Arc;
use std::time::Duration;

pub use observed_model::ObservedChatModel;
pub use pricing::{ModelPrice, PriceTable};

/// One thing that happened, as a metric sees it. Labels are borrowed so
/// recording allocates nothing when no sink is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricEvent<'a> {
    /// An HTTP request answered.
    Request {
        method: &'a str,
        /// The matched route (`/documents/{id}`), never the raw path, so
        /// ids do not become labels.
        route: &'a str,
        status: u16,
        /// The `error.code` of an error body.
        error_code: Option<&'a str>,
        latency: Duration,
    },
    /// One model call (each attempt of a retried one).
    ModelCall {
        model: &'a str,
        /// `chat` or `embeddings`, as `gen_ai.operation.name`.
        operation: &'a str,
        input_tokens: u64,
        output_tokens: u64,
        latency: Duration,
        /// The error's class when the call failed.
        error: Option<&'a str>,
    },
    /// One search.
    Retrieval {
        mode: &'a str,
        /// The best hit's score; `None` when nothing was found.
        top_score: Option<f32>,
        hits: usize,
    },
    /// One document indexed.
    Ingested { documents: u64, chunks: u64 },
}

/// Where metric events go. Called on the request path: an implementation
/// only updates memory or writes a line, never waits on I/O of its own.
pub trait MetricsSink: Send + Sync {
    fn record(&self, event: &MetricEvent<'_>);
}

/// The deployment's sinks, cheap to clone; with none, recording is a no-op.
#[derive(Clone, Default)]
pub struct Metrics {
    sinks: Vec<Arc<dyn MetricsSink>>,
}

impl Metrics {
    pub fn new(sinks: Vec<Arc<dyn MetricsSink>>) -> Self {
        Self { sinks }
    }

    pub fn record(&self, event: &MetricEvent<'_>) {
        for sink in &self.sinks {
            sink.record(event);
        }
    }

    pub fn is_off(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    impl MetricsSink for Collect {
        fn record(&self, event: &MetricEvent<'_>) {
            self.0.lock().unwrap().push(format!("{event:?}"));
        }
    }

    #[test]
    fn every_sink_sees_every_event() {
        let a = Arc::new(Collect::default());
        let b = Arc::new(Collect::default());
        let metrics = Metrics::new(vec![a.clone(), b.clone()]);
        metrics.record(&MetricEvent::Ingested {
            documents: 1,
            chunks: 3,
        });
        assert_eq!(a.0.lock().unwrap().len(), 1);
        assert_eq!(*a.0.lock().unwrap(), *b.0.lock().unwrap());
        assert!(Metrics::default().is_off());
    }
}
