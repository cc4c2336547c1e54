//! Logs and metrics as configured: the log format, and which metric sinks
//! the service reports to (the registry `/metrics` serves, EMF lines on
//! stdout under Lambda).

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use opentelemetry_sdk::trace::SdkTracerProvider;
use rag_api::PrometheusMetrics;
use rag_core::telemetry::{Metrics, MetricsSink, PriceTable};
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (CloudWatch Logs Insights, Loki, ...),
    /// with the request's id, tenant and route in its `span`.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsArg {
    /// Kept in memory and served at `GET /metrics` (operator key).
    Prometheus,
    /// CloudWatch Embedded Metric Format lines on stdout (Lambda), and no
    /// `/metrics`.
    Emf,
    /// No metrics.
    Off,
}

/// Metrics settings of `serve`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsArgs {
    #[arg(long, env = "METRICS", value_enum, default_value = "prometheus")]
    pub metrics: MetricsArg,
    /// The CloudWatch namespace of EMF metrics.
    #[arg(long, env = "METRICS_NAMESPACE", default_value = "RagAgent")]
    pub metrics_namespace: String,
    /// Model prices for the estimated cost metric, over the built-in
    /// table: inline JSON or a file path, `{"<model id>":
    /// {"input_per_million": 3.0, "output_per_million": 15.0}}` (USD).
    #[arg(long, env = "MODEL_PRICES")]
    pub model_prices: Option<String>,
}

/// What the service reports to, and the registry `/metrics` serves.
pub struct MetricSinks {
    pub metrics: Metrics,
    pub registry: Option<Arc<PrometheusMetrics>>,
}

/// Inline JSON (it starts with `{`) or the path of a file holding it.
pub fn inline_or_file(value: &str, name: &str) -> anyhow::Result<String> {
    if value.trim_start().starts_with('{') {
        return Ok(value.to_string());
    }
    std::fs::read_to_string(value).with_context(|| format!("{name}: reading {value}"))
}

pub fn metric_sinks(args: &MetricsArgs) -> anyhow::Result<MetricSinks> {
    let prices = match &args.model_prices {
        Some(value) => PriceTable::with_overrides(&inline_or_file(value, "MODEL_PRICES")?)
            .map_err(anyhow::Error::msg)?,
        None => PriceTable::default(),
    };
    Ok(match args.metrics {
        MetricsArg::Prometheus => {
            let registry = Arc::new(PrometheusMetrics::new(prices));
            MetricSinks {
                metrics: Metrics::new(vec![registry.clone() as Arc<dyn MetricsSink>]),
                registry: Some(registry),
            }
        }
        MetricsArg::Emf => MetricSinks {
            metrics: Metrics::new(vec![Arc::new(rag_lambda::EmfMetrics::stdout(
                args.metrics_namespace.clone(),
                prices,
            ))]),
            registry: None,
        },
        MetricsArg::Off => MetricSinks {
            metrics: Metrics::default(),
            registry: None,
        },
    })
}

/// Logging to stderr at `RUST_LOG` (else `default_level`), as text or JSON,
/// and, with `traces`, the same spans exported to the configured OTLP
/// endpoint. The spans of our own crates are exported at `info` whatever
/// `RUST_LOG` says, so quieter logs never cost a trace its spans.
pub fn init_logging(format: LogFormat, default_level: &str, traces: Option<&SdkTracerProvider>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let spans = traces.map(|provider| {
        let ours = Targets::new()
            .with_target("rag_api", Level::INFO)
            .with_target("rag_core", Level::INFO)
            .with_target("rag_agent", Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(crate::traces::tracer(provider))
            .with_filter(ours)
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .init();
}
