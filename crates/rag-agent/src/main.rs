//! The `rag-agent` binary: reads configuration, builds the backends, wires
//! them into the service and serves the router. It holds no domain logic.

mod aws;
mod bedrock_routes;
mod config;
mod embedded;
mod embedding;
mod keys;
mod observability;
mod reindex;
mod rerank;
mod sources;
mod traces;
mod wiring;

use std::io::Write;

use anyhow::Context;
use clap::Parser;

use config::{Cli, Command, ModelsCommand};

fn main() -> anyhow::Result<()> {
    // The parse worker starts before anything else: no runtime, no logging
    // set-up, nothing between its limits and the parse.
    if let Some(content_type) = parse_worker_type() {
        std::process::exit(wiring::run_parse_worker(&content_type));
    }
    // Lambda starts `bootstrap` with no arguments: that means `serve`,
    // configured from the environment.
    let cli = if std::env::args_os().len() == 1 && on_lambda() {
        Cli::parse_from(["rag-agent", "serve"])
    } else {
        Cli::parse()
    };
    // A client's output is its own; the server's info lines would only
    // interleave with it (an embedded `eval` runs a server in-process).
    let default_level = match cli.command {
        Command::Client(_) => "warn",
        _ => "info",
    };
    // Only a server exports traces; a client's or a one-off command's
    // spans would be noise in the deployment's traces.
    let traces = match &cli.command {
        Command::Serve(_) if traces::configured() => Some(traces::provider()?),
        _ => None,
    };
    observability::init_logging(cli.log_format, default_level, traces.as_ref());
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let served = runtime.block_on(serve(*args, traces.clone()));
            // Connections cut at the drain deadline may leave tasks behind;
            // they must not hold the exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
            // The last batch of spans is sent before the process exits.
            if let Some(provider) = traces
                && let Err(e) = provider.shutdown()
            {
                tracing::warn!(error = %e, "sending the last spans failed");
            }
            served
        }
        Command::Models {
            command: ModelsCommand::Fetch(args),
        } => embedding::fetch_model(&args),
        Command::ParseWorker { content_type } => {
            std::process::exit(wiring::run_parse_worker(&content_type))
        }
        Command::Reindex(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(reindex::run(&args))
        }
        Command::Keys { command } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(keys::run(*command))
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "rag-agent", &mut std::io::stdout());
            Ok(())
        }
        Command::Client(mut command) => {
            if let rag_cli::ClientCommand::Eval(eval) = &command
                && let Some(data_dir) = &eval.args.data_dir
            {
                match embedded::start(data_dir) {
                    Ok(url) => command.connection_mut().url = url,
                    Err(e) => {
                        let error = rag_cli::CliError::Usage(format!("{e:#}"));
                        std::process::exit(i32::from(rag_cli::fail(
                            &error,
                            command.connection().json,
                        )));
                    }
                }
            }
            // Client commands own their exit codes (2 usage, 3 unreachable,
            // 1 failed), which anyhow's error path would flatten.
            let code = rag_cli::run(command);
            std::io::stdout().flush()?;
            std::process::exit(i32::from(code))
        }
    }
}

async fn serve(
    args: config::ServeArgs,
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
) -> anyhow::Result<()> {
    let wiring::Served {
        mut state,
        ingest_worker,
    } = wiring::build(&args).await?;
    if traces.is_some() {
        state.trace_link = Some(traces::trace_link());
    }
    let service = state.service.clone();
    let router = rag_api::app(state);
    if on_lambda() {
        // A frozen function sends nothing: each invocation's spans are
        // sent before it returns.
        let router = match traces {
            Some(provider) => router.layer(axum::middleware::from_fn(move |request, next| {
                traces::flushing(provider.clone(), request, next)
            })),
            None => router,
        };
        return serve_lambda(router, ingest_worker).await;
    }
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr()?;
    // Scripts and tests read this line to learn the port when given :0.
    println!("rag-agent listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, data_dir = %args.data_dir().display(), "serving");
    let resumed = service.ingestor().recover().await?;
    if resumed > 0 {
        tracing::info!(resumed, "resuming interrupted ingestions");
    }
    // On SIGTERM the listener closes and requests in flight, streams
    // included, may finish within the drain time; then the process exits
    // whatever is left.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(());
    });
    let drain = std::time::Duration::from_secs(args.drain_secs);
    let drain_deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serving => served.context("serving HTTP")?,
        () = drain_deadline => {
            tracing::warn!(drain_secs = args.drain_secs, "requests still in flight after the drain time; stopping them");
        }
    }
    // Counts gathered since the last flush would otherwise be lost.
    if let Err(e) = service.usage().flush().await {
        tracing::warn!(error = %e, "writing the last usage counts failed");
    }
    Ok(())
}

/// Runs the router under the Lambda runtime. A function behind a Function
/// URL with `InvokeMode: RESPONSE_STREAM` sets `RAG_AGENT_LAMBDA_STREAMING`
/// so `/chat/stream` reaches the client event by event; behind API Gateway
/// responses are buffered, as its proxy integration requires, and SQS
/// events from the ingest queue are indexed.
async fn serve_lambda(
    router: axum::Router,
    ingest_worker: Option<rag_lambda::IngestWorker>,
) -> anyhow::Result<()> {
    let streaming = std::env::var("RAG_AGENT_LAMBDA_STREAMING")
        .map(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
        .unwrap_or(false);
    let mode = if streaming {
        rag_lambda::InvokeMode::Streaming
    } else {
        rag_lambda::InvokeMode::Buffered
    };
    rag_lambda::run(router, mode, ingest_worker)
        .await
        .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}

/// `rag-agent parse-worker <type>`, read before clap so the worker's
/// start costs as little as possible.
fn parse_worker_type() -> Option<String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (Some("parse-worker"), Some(content_type), None) => Some(content_type),
        _ => None,
    }
}

/// The Lambda environment sets this, `cargo lambda watch` included.
fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: no new connections; draining those in flight");
}
