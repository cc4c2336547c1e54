//! An embedded instance for client commands that work on a data directory
//! instead of a server (`rag-agent eval --data-dir`): the same wiring as
//! `serve`, on a private 127.0.0.1 port, in a thread of its own, so the
//! client code talks HTTP to it exactly as to a deployment.

use std::path::Path;

use anyhow::Context;
use clap::Parser;

use crate::config::{Cli, Command};
use crate::wiring;

/// Starts the instance and returns its base URL once it accepts requests.
/// It lives as long as the process.
pub fn start(data_dir: &Path) -> anyhow::Result<String> {
    if !data_dir.is_dir() {
        anyhow::bail!("--data-dir {} is not a directory", data_dir.display());
    }
    // Parsed as `serve` would be, so every serve setting's environment
    // variable configures the instance the same way.
    let cli = Cli::try_parse_from([
        "rag-agent".as_ref(),
        "serve".as_ref(),
        "--addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        data_dir.as_os_str(),
    ])
    .context("configuring the embedded instance")?;
    let Command::Serve(args) = cli.command else {
        anyhow::bail!("the embedded instance is configured as `serve`");
    };
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready.send(Err(anyhow::Error::new(e)));
                return;
            }
        };
        runtime.block_on(async move {
            let bound = async {
                let state = wiring::build_state(&args).await?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                anyhow::Ok((rag_api::app(state), listener, addr))
            }
            .await;
            match bound {
                Ok((router, listener, addr)) => {
                    let _ = ready.send(Ok(format!("http://{addr}")));
                    if let Err(e) = axum::serve(listener, router).await {
                        tracing::error!(error = %e, "the embedded instance stopped");
                    }
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        });
    });
    started
        .recv()
        .context("the embedded instance did not start")?
        .context("starting the embedded instance")
}
