//! The metrics `GET /metrics` serves, in the Prometheus text format
//! (version 0.0.4): counters and histograms kept in memory since the
//! process started, labelled by route, status, error code, model and
//! search mode, never by tenant or path, so the series stay few.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use rag_core::telemetry::{MetricEvent, MetricsSink, PriceTable};

/// Seconds: from a cached lookup to a long agent turn.
const LATENCY_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Similarity of the best hit.
const SCORE_BOUNDS: &[f64] = &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or under each bound (not yet cumulative).
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|bound| value <= *bound) {
            self.buckets[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Default)]
struct Series {
    /// (method, route, status)
    requests: BTreeMap<(String, String, u16), u64>,
    /// (method, route)
    request_seconds: BTreeMap<(String, String), Histogram>,
    /// (route, code)
    errors: BTreeMap<(String, String), u64>,
    /// (model, operation, outcome)
    model_calls: BTreeMap<(String, String, String), u64>,
    /// (model, token type)
    model_tokens: BTreeMap<(String, &'static str), u64>,
    /// (model, operation)
    model_seconds: BTreeMap<(String, String), Histogram>,
    model_cost: BTreeMap<String, f64>,
    top_score: BTreeMap<String, Histogram>,
    empty_retrievals: BTreeMap<String, u64>,
    ingested_documents: u64,
    ingested_chunks: u64,
}

/// The in-memory registry behind `/metrics`.
pub struct PrometheusMetrics {
    prices: PriceTable,
    series: Mutex<Series>,
}

impl PrometheusMetrics {
    pub fn new(prices: PriceTable) -> Self {
        Self {
            prices,
            series: Mutex::new(Series::default()),
        }
    }

    fn series(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The text `/metrics` answers with.
    pub fn render(&self) -> String {
        let s = self.series();
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "rag_http_requests_total",
            "counter",
            "HTTP requests answered.",
        );
        for ((method, route, status), n) in &s.requests {
            let status = status.to_string();
            sample(
                &mut out,
                "rag_http_requests_total",
                &[("method", method), ("route", route), ("status", &status)],
                *n as f64,
            );
        }
        family(
            &mut out,
            "rag_http_request_duration_seconds",
            "histogram",
            "Time from request to response headers.",
        );
        for ((method, route), h) in &s.request_seconds {
            histogram(
                &mut out,
                "rag_http_request_duration_seconds",
                &[("method", method), ("route", route)],
                h,
            );
        }
        family(
            &mut out,
            "rag_http_errors_total",
            "counter",
            "Error responses, by their error.code.",
        );
        for ((route, code), n) in &s.errors {
            sample(
                &mut out,
                "rag_http_errors_total",
                &[("route", route), ("code", code)],
                *n as f64,
            );
        }
        family(
            &mut out,
            "rag_model_calls_total",
            "counter",
            "Model calls (each attempt), by outcome.",
        );
        for ((model, operation, outcome), n) in &s.model_calls {
            sample(
                &mut out,
                "rag_model_calls_total",
                &[
                    ("model", model),
                    ("operation", operation),
                    ("outcome", outcome),
                ],
                *n as f64,
            );
        }
        family(
            &mut out,
            "rag_model_tokens_total",
            "counter",
            "Model tokens, input and output.",
        );
        for ((model, kind), n) in &s.model_tokens {
            sample(
                &mut out,
                "rag_model_tokens_total",
                &[("model", model), ("type", kind)],
                *n as f64,
            );
        }
        family(
            &mut out,
            "rag_model_call_duration_seconds",
            "histogram",
            "Duration of one model call.",
        );
        for ((model, operation), h) in &s.model_seconds {
            histogram(
                &mut out,
                "rag_model_call_duration_seconds",
                &[("model", model), ("operation", operation)],
                h,
            );
        }
        family(
            &mut out,
            "rag_model_estimated_cost_usd_total",
            "counter",
            "Estimated model cost in US dollars, from the price table (models without a price are left out).",
        );
        for (model, dollars) in &s.model_cost {
            sample(
                &mut out,
                "rag_model_estimated_cost_usd_total",
                &[("model", model)],
                *dollars,
            );
        }
        family(
            &mut out,
            "rag_retrieval_top_score",
            "histogram",
            "Score of the best hit of each search that found any.",
        );
        for (mode, h) in &s.top_score {
            histogram(&mut out, "rag_retrieval_top_score", &[("mode", mode)], h);
        }
        family(
            &mut out,
            "rag_retrievals_without_hits_total",
            "counter",
            "Searches that found nothing above the threshold.",
        );
        for (mode, n) in &s.empty_retrievals {
            sample(
                &mut out,
                "rag_retrievals_without_hits_total",
                &[("mode", mode)],
                *n as f64,
            );
        }
        family(
            &mut out,
            "rag_ingested_documents_total",
            "counter",
            "Documents indexed.",
        );
        sample(
            &mut out,
            "rag_ingested_documents_total",
            &[],
            s.ingested_documents as f64,
        );
        family(
            &mut out,
            "rag_ingested_chunks_total",
            "counter",
            "Chunks indexed.",
        );
        sample(
            &mut out,
            "rag_ingested_chunks_total",
            &[],
            s.ingested_chunks as f64,
        );
        out
    }
}

impl MetricsSink for PrometheusMetrics {
    fn record(&self, event: &MetricEvent<'_>) {
        let mut s = self.series();
        match *event {
            MetricEvent::Request {
                method,
                route,
                status,
                error_code,
                latency,
            } => {
                *s.requests
                    .entry((method.to_string(), route.to_string(), status))
                    .or_default() += 1;
                s.request_seconds
                    .entry((method.to_string(), route.to_string()))
                    .or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
                    .observe(latency.as_secs_f64());
                if let Some(code) = error_code {
                    *s.errors
                        .entry((route.to_string(), code.to_string()))
                        .or_default() += 1;
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
                let outcome = error.unwrap_or("ok");
                *s.model_calls
                    .entry((
                        model.to_string(),
                        operation.to_string(),
                        outcome.to_string(),
                    ))
                    .or_default() += 1;
                *s.model_tokens
                    .entry((model.to_string(), "input"))
                    .or_default() += input_tokens;
                *s.model_tokens
                    .entry((model.to_string(), "output"))
                    .or_default() += output_tokens;
                s.model_seconds
                    .entry((model.to_string(), operation.to_string()))
                    .or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
                    .observe(latency.as_secs_f64());
                if let Some(cost) = self.prices.cost(model, input_tokens, output_tokens) {
                    *s.model_cost.entry(model.to_string()).or_default() += cost;
                }
            }
            MetricEvent::Retrieval {
                mode, top_score, ..
            } => match top_score {
                Some(score) => s
                    .top_score
                    .entry(mode.to_string())
                    .or_insert_with(|| Histogram::new(SCORE_BOUNDS))
                    .observe(f64::from(score)),
                None => *s.empty_retrievals.entry(mode.to_string()).or_default() += 1,
            },
            MetricEvent::Ingested { documents, chunks } => {
                s.ingested_documents += documents;
                s.ingested_chunks += chunks;
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format quotes it.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{value}")
    }
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escaped(val));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0;
    for (bound, n) in h.bounds.iter().zip(&h.buckets) {
        cumulative += n;
        let le = number(*bound);
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket, &with_le, cumulative as f64);
    }
    let mut with_le = labels.to_vec();
    with_le.push(("le", "+Inf"));
    sample(out, &bucket, &with_le, h.count as f64);
    sample(out, &format!("{name}_sum"), labels, h.sum);
    sample(out, &format!("{name}_count"), labels, h.count as f64);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn events_become_series() {
        let metrics = PrometheusMetrics::new(PriceTable::default());
        metrics.record(&MetricEvent::Request {
            method: "POST",
            route: "/query",
            status: 200,
            error_code: None,
            latency: Duration::from_millis(7),
        });
        metrics.record(&MetricEvent::Request {
            method: "GET",
            route: "/documents/{id}",
            status: 404,
            error_code: Some("not_found"),
            latency: Duration::from_millis(1),
        });
        metrics.record(&MetricEvent::ModelCall {
            model: "anthropic.claude-3-haiku-20240307-v1:0",
            operation: "chat",
            input_tokens: 1_000_000,
            output_tokens: 200_000,
            latency: Duration::from_millis(900),
            error: None,
        });
        metrics.record(&MetricEvent::Retrieval {
            mode: "hybrid",
            top_score: Some(0.55),
            hits: 5,
        });
        metrics.record(&MetricEvent::Retrieval {
            mode: "dense",
            top_score: None,
            hits: 0,
        });
        metrics.record(&MetricEvent::Ingested {
            documents: 1,
            chunks: 12,
        });
        let text = metrics.render();
        for line in [
            "rag_http_requests_total{method=\"POST\",route=\"/query\",status=\"200\"} 1",
            "rag_http_request_duration_seconds_bucket{method=\"POST\",route=\"/query\",le=\"0.01\"} 1",
            "rag_http_request_duration_seconds_bucket{method=\"POST\",route=\"/query\",le=\"0.005\"} 0",
            "rag_http_errors_total{route=\"/documents/{id}\",code=\"not_found\"} 1",
            "rag_model_tokens_total{model=\"anthropic.claude-3-haiku-20240307-v1:0\",type=\"input\"} 1000000",
            "rag_model_estimated_cost_usd_total{model=\"anthropic.claude-3-haiku-20240307-v1:0\"} 0.5",
            "rag_retrieval_top_score_bucket{mode=\"hybrid\",le=\"0.6\"} 1",
            "rag_retrieval_top_score_bucket{mode=\"hybrid\",le=\"0.5\"} 0",
            "rag_retrievals_without_hits_total{mode=\"dense\"} 1",
            "rag_ingested_chunks_total 12",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("route", "a\"b\\c\nd")], 1.0);
        assert_eq!(out, "m{route=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
