//! CloudWatch Embedded Metric Format: under Lambda, one JSON line on stdout
//! per metric event, which CloudWatch Logs turns into metrics with no API
//! call and no agent (`METRICS=emf`). Dimensions are the route, the model
//! and the search mode, never the tenant: each dimension value is a metric
//! of its own, billed as such.
//!
//! Format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::io::Write;
use std::sync::Mutex;

use rag_core::telemetry::{MetricEvent, MetricsSink, PriceTable};
use serde_json::{Map, Value, json};

/// Writes each event as one EMF document.
pub struct EmfMetrics {
    namespace: String,
    prices: PriceTable,
    out: Mutex<Box<dyn Write + Send>>,
}

impl EmfMetrics {
    /// EMF lines on stdout, where Lambda's log capture reads them.
    pub fn stdout(namespace: impl Into<String>, prices: PriceTable) -> Self {
        Self::to_writer(namespace, prices, Box::new(std::io::stdout()))
    }

    pub fn to_writer(
        namespace: impl Into<String>,
        prices: PriceTable,
        out: Box<dyn Write + Send>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            prices,
            out: Mutex::new(out),
        }
    }

    /// The EMF document of `event`: its directives and its values.
    pub fn document(&self, event: &MetricEvent<'_>, timestamp_ms: i64) -> Value {
        let mut values = Map::new();
        let mut directives = Vec::new();
        let mut directive = |dimensions: &[&str], metrics: &[(&str, &str)]| {
            directives.push(json!({
                "Namespace": self.namespace,
                "Dimensions": [dimensions],
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }));
        };
        match *event {
            MetricEvent::Request {
                method,
                route,
                status,
                error_code,
                latency,
            } => {
                directive(
                    &["Route"],
                    &[("Latency", "Milliseconds"), ("Requests", "Count")],
                );
                values.insert("Route".into(), json!(format!("{method} {route}")));
                values.insert("Latency".into(), json!(latency.as_secs_f64() * 1000.0));
                values.insert("Requests".into(), json!(1));
                values.insert("StatusCode".into(), json!(status));
                if let Some(code) = error_code {
                    directive(&["Route", "ErrorCode"], &[("Errors", "Count")]);
                    values.insert("ErrorCode".into(), json!(code));
                    values.insert("Errors".into(), json!(1));
                }
            }
            MetricEvent::ModelCall {
                model,
                operation,
                input_tokens,
                output_tokens,
                latency,
                error,
            } => {
                let mut metrics = vec![
                    ("ModelCalls", "Count"),
                    ("InputTokens", "Count"),
                    ("OutputTokens", "Count"),
                    ("ModelLatency", "Milliseconds"),
                ];
                values.insert("Model".into(), json!(model));
                values.insert("Operation".into(), json!(operation));
                values.insert("ModelCalls".into(), json!(1));
                values.insert("InputTokens".into(), json!(input_tokens));
                values.insert("OutputTokens".into(), json!(output_tokens));
                values.insert("ModelLatency".into(), json!(latency.as_secs_f64() * 1000.0));
                if let Some(cost) = self.prices.cost(model, input_tokens, output_tokens) {
                    metrics.push(("EstimatedCost", "None"));
                    values.insert("EstimatedCost".into(), json!(cost));
                }
                if let Some(error) = error {
                    metrics.push(("ModelErrors", "Count"));
                    values.insert("ModelErrors".into(), json!(1));
                    values.insert("ErrorType".into(), json!(error));
                }
                directive(&["Model"], &metrics);
            }
            MetricEvent::Retrieval {
                mode,
                top_score,
                hits,
            } => {
                let mut metrics = vec![("Retrievals", "Count"), ("RetrievalHits", "Count")];
                values.insert("SearchMode".into(), json!(mode));
                values.insert("Retrievals".into(), json!(1));
                values.insert("RetrievalHits".into(), json!(hits));
                if let Some(score) = top_score {
                    metrics.push(("TopScore", "None"));
                    values.insert("TopScore".into(), json!(f64::from(score)));
                }
                directive(&["SearchMode"], &metrics);
            }
            MetricEvent::Ingested { documents, chunks } => {
                directive(
                    &[],
                    &[("IngestedDocuments", "Count"), ("IngestedChunks", "Count")],
                );
                values.insert("IngestedDocuments".into(), json!(documents));
                values.insert("IngestedChunks".into(), json!(chunks));
            }
        }
        values.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
        );
        Value::Object(values)
    }
}

impl MetricsSink for EmfMetrics {
    fn record(&self, event: &MetricEvent<'_>) {
        let line = self
            .document(event, chrono::Utc::now().timestamp_millis())
            .to_string();
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line, so lines of concurrent requests never mix; a
        // failed write loses a metric, never the request.
        let _ = out.write_all(format!("{line}\n").as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn emf() -> EmfMetrics {
        EmfMetrics::to_writer("RagAgent", PriceTable::default(), Box::new(std::io::sink()))
    }

    /// Every metric a directive names has a numeric value, and every
    /// dimension a string value, as CloudWatch requires.
    fn assert_valid(doc: &Value) {
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert!(doc["_aws"]["Timestamp"].is_i64());
        for directive in directives {
            assert_eq!(directive["Namespace"], "RagAgent");
            for set in directive["Dimensions"].as_array().unwrap() {
                for name in set.as_array().unwrap() {
                    assert!(doc[name.as_str().unwrap()].is_string(), "{name} in {doc}");
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(
                    doc[metric["Name"].as_str().unwrap()].is_number(),
                    "{metric} in {doc}"
                );
            }
        }
    }

    #[test]
    fn an_error_response_is_latency_and_an_error_by_code() {
        let doc = emf().document(
            &MetricEvent::Request {
                method: "GET",
                route: "/documents/{id}",
                status: 404,
                error_code: Some("document_not_found"),
                latency: Duration::from_micros(2500),
            },
            1,
        );
        assert_valid(&doc);
        assert_eq!(doc["Route"], "GET /documents/{id}");
        assert_eq!(doc["Latency"], 2.5);
        assert_eq!(doc["ErrorCode"], "document_not_found");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][1]["Dimensions"],
            json!([["Route", "ErrorCode"]])
        );
    }

    #[test]
    fn a_priced_model_call_carries_its_cost() {
        let doc = emf().document(
            &MetricEvent::ModelCall {
                model: "anthropic.claude-3-haiku-20240307-v1:0",
                operation: "chat",
                input_tokens: 4000,
                output_tokens: 400,
                latency: Duration::from_millis(800),
                error: None,
            },
            1,
        );
        assert_valid(&doc);
        assert_eq!(doc["InputTokens"], 4000);
        assert!(
            (doc["EstimatedCost"].as_f64().unwrap() - 0.0015).abs() < 1e-12,
            "{doc}"
        );
        let unpriced = emf().document(
            &MetricEvent::ModelCall {
                model: "llama3.2",
                operation: "chat",
                input_tokens: 1,
                output_tokens: 1,
                latency: Duration::ZERO,
                error: Some("throttled"),
            },
            1,
        );
        assert_valid(&unpriced);
        assert!(unpriced.get("EstimatedCost").is_none());
        assert_eq!(unpriced["ModelErrors"], 1);
    }

    #[test]
    fn retrieval_and_ingestion_documents_are_valid() {
        for event in [
            MetricEvent::Retrieval {
                mode: "hybrid",
                top_score: Some(0.61),
                hits: 5,
            },
            MetricEvent::Retrieval {
                mode: "dense",
                top_score: None,
                hits: 0,
            },
            MetricEvent::Ingested {
                documents: 1,
                chunks: 40,
            },
        ] {
            assert_valid(&emf().document(&event, 1));
        }
    }
}
