//! rag-cli: the command-line client of rag-agent. Its subcommands (`ingest`,
//! `query`, `chat`, `documents`, `tools`, `health`, `eval`) talk to a running
//! rag-agent over the HTTP API, local or deployed, and print for people by
//! default or JSON with `--json`.
//!
//! It knows the API only by its wire format: it must not depend on rag-core,
//! the server or any backend, so it works against any deployed version that
//! speaks the same JSON.

/// `println!` that ends the process quietly when stdout is closed, as
/// `rag-agent documents list | head` does: the reader has what it wanted.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` with `outln!`'s handling of a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

mod chat;
mod commands;
mod direct_upload;
pub mod eval;
mod http;
mod ingest;
mod output;
mod sync;

use clap::{Args, Subcommand};

pub use http::{ApiClient, SseEvent};

/// Where the client's requests go; shared by every client subcommand.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The API's base URL (with the stage for API Gateway, e.g.
    /// https://abc.execute-api.eu-west-1.amazonaws.com/Prod).
    #[arg(
        long,
        env = "RAG_AGENT_URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    pub url: String,
    /// A header sent with every request, as `Name: value`; repeat for more
    /// (e.g. --header "x-api-key: ..." or "Authorization: Bearer ...").
    #[arg(
        long = "header",
        short = 'H',
        env = "RAG_AGENT_HEADERS",
        value_delimiter = '\n',
        hide_env_values = true,
        global = true
    )]
    pub headers: Vec<String>,
    /// The API key of a server with RAG_AGENT_AUTH=api_key, sent as
    /// `Authorization: Bearer <key>`.
    #[arg(long, env = "RAG_AGENT_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A client subcommand's own arguments with the connection options.
#[derive(Debug, Args)]
pub struct On<T: Args> {
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub args: T,
}

/// For subcommands that take nothing but the connection.
#[derive(Debug, Args)]
pub struct NoArgs {}

#[derive(Debug, Args)]
pub struct DocumentsArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: commands::DocumentsCommand,
}

/// The client subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Ingest files, directories (recursively) and URLs.
    #[command(after_help = ingest::EXAMPLES)]
    Ingest(On<ingest::IngestArgs>),
    /// Mirror a local directory: add new files, index changed ones again,
    /// delete the documents of files that are gone.
    #[command(after_help = sync::EXAMPLES)]
    Sync(On<sync::SyncArgs>),
    /// Ask one question and print the answer with numbered sources.
    #[command(after_help = commands::QUERY_EXAMPLES)]
    Query(On<commands::QueryArgs>),
    /// An interactive chat with streamed answers and tool activity.
    #[command(after_help = chat::EXAMPLES)]
    Chat(On<chat::ChatArgs>),
    /// List, inspect and delete documents.
    #[command(
        after_help = "Examples:\n  rag-agent documents list --status INDEXED\n  rag-agent documents get <id> --chunks\n  rag-agent documents delete <id> --yes"
    )]
    Documents(DocumentsArgs),
    /// The tools the agent can call.
    #[command(
        after_help = "Examples:\n  rag-agent tools\n  rag-agent tools --json | jq '.[].name'"
    )]
    Tools(On<NoArgs>),
    /// Measure retrieval (hit@1, hit@5, MRR@10, nDCG@10) and answer keyword
    /// recall over a question set, per search mode.
    #[command(after_help = eval::EXAMPLES)]
    Eval(On<eval::EvalArgs>),
    /// The service's status: version, backends, model, counts.
    #[command(
        after_help = "Examples:\n  rag-agent health\n  RAG_AGENT_URL=https://abc.execute-api.eu-west-1.amazonaws.com/Prod rag-agent health -H 'x-api-key: ...'"
    )]
    Health(On<NoArgs>),
}

impl ClientCommand {
    pub fn connection_mut(&mut self) -> &mut Connection {
        match self {
            ClientCommand::Ingest(c) => &mut c.connection,
            ClientCommand::Sync(c) => &mut c.connection,
            ClientCommand::Query(c) => &mut c.connection,
            ClientCommand::Chat(c) => &mut c.connection,
            ClientCommand::Documents(c) => &mut c.connection,
            ClientCommand::Tools(c) => &mut c.connection,
            ClientCommand::Eval(c) => &mut c.connection,
            ClientCommand::Health(c) => &mut c.connection,
        }
    }

    pub fn connection(&self) -> &Connection {
        match self {
            ClientCommand::Ingest(c) => &c.connection,
            ClientCommand::Sync(c) => &c.connection,
            ClientCommand::Query(c) => &c.connection,
            ClientCommand::Chat(c) => &c.connection,
            ClientCommand::Documents(c) => &c.connection,
            ClientCommand::Tools(c) => &c.connection,
            ClientCommand::Eval(c) => &c.connection,
            ClientCommand::Health(c) => &c.connection,
        }
    }
}

/// What can go wrong on the client side; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(
        "cannot reach {url}: {reason} (is `rag-agent serve` running there? set --url or RAG_AGENT_URL)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the API answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected response: {message}")]
    Protocol { message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Some of the work failed; the details were already printed.
    #[error("{0}")]
    Partial(String),
}

impl CliError {
    /// 2 for a usage mistake (as clap uses), 3 when the API cannot be
    /// reached, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::Api { .. }
            | CliError::Protocol { .. }
            | CliError::Io { .. }
            | CliError::Partial(_) => 1,
        }
    }
}

/// Runs one client subcommand, reports failure on stderr (as JSON with
/// `--json`, so scripts can read it) and returns the exit code.
pub fn run(command: ClientCommand) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return 1;
        }
    };
    let json = command.connection().json;
    match runtime.block_on(dispatch(command)) {
        Ok(()) => 0,
        Err(error) => {
            output::report_error(&error, json);
            error.exit_code()
        }
    }
}

/// Reports an error found before a command could run (as `run` would
/// report it) and returns its exit code.
pub fn fail(error: &CliError, json: bool) -> u8 {
    output::report_error(error, json);
    error.exit_code()
}

async fn dispatch(command: ClientCommand) -> Result<(), CliError> {
    let connection = command.connection();
    let mut headers = connection.headers.clone();
    if let Some(key) = connection
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        headers.push(format!("Authorization: Bearer {key}"));
    }
    let client = ApiClient::new(&connection.url, &headers)?;
    let json = connection.json;
    match command {
        ClientCommand::Ingest(c) => ingest::run(&client, &c.args, json).await,
        ClientCommand::Sync(c) => sync::run(&client, &c.args, json).await,
        ClientCommand::Query(c) => commands::query(&client, &c.args, json).await,
        ClientCommand::Chat(c) => chat::run(&client, &c.args, json).await,
        ClientCommand::Documents(c) => commands::documents(&client, c.command, json).await,
        ClientCommand::Tools(_) => commands::tools(&client, json).await,
        ClientCommand::Eval(c) => eval::run(&client, &c.args, json).await,
        ClientCommand::Health(_) => commands::health(&client, json).await,
    }
}
