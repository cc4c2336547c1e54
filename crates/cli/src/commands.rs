//! The one-request subcommands: `query`, `documents`, `tools`, `health`.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::output::{self, bold, dim};
use crate::{ApiClient, CliError};

pub const QUERY_EXAMPLES: &str = "Examples:
  rag-agent query \"How do I propagate errors with ?\"
  rag-agent query \"What is a slice?\" --top-k 3 --mode lexical
  rag-agent query \"lifetimes\" --threshold 0.4 --json | jq .sources";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    Dense,
    Lexical,
    Hybrid,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Dense => "dense",
            Mode::Lexical => "lexical",
            Mode::Hybrid => "hybrid",
        }
    }
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The question.
    pub question: String,
    /// How many passages to retrieve (1-100).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// How candidates are found [default: the server's].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Drop passages below this similarity (0-1).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Only search these documents (repeatable).
    #[arg(long = "document")]
    pub documents: Vec<String>,
}

pub async fn query(client: &ApiClient, args: &QueryArgs, json: bool) -> Result<(), CliError> {
    let mut body = json!({ "query": args.question });
    if let Some(k) = args.top_k {
        body["top_k"] = json!(k);
    }
    if let Some(mode) = args.mode {
        body["mode"] = json!(mode.as_str());
    }
    if let Some(threshold) = args.threshold {
        body["similarity_threshold"] = json!(threshold);
    }
    if !args.documents.is_empty() {
        body["document_ids"] = json!(args.documents);
    }
    let answer = client.post("query", &body).await?;
    if json {
        output::print_json(&answer);
        return Ok(());
    }
    outln!("{}", answer["answer"].as_str().unwrap_or_default());
    output::sources(answer["sources"].as_array().map_or(&[], Vec::as_slice));
    outln!(
        "\n{}",
        dim(&format!(
            "{} · {} search · {} ms",
            answer["model_id"].as_str().unwrap_or("?"),
            answer["search_mode"].as_str().unwrap_or("?"),
            answer["latency_ms"]
        ))
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum DocumentsCommand {
    /// List documents, newest first.
    #[command(
        after_help = "Examples:\n  rag-agent documents list\n  rag-agent documents list --status FAILED --json"
    )]
    List {
        /// Only documents with this status.
        #[arg(long, value_parser = ["PENDING", "PROCESSING", "INDEXED", "FAILED"], ignore_case = true)]
        status: Option<String>,
        /// At most this many (all pages are followed up to it).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one document's metadata, and its chunks with --chunks.
    Get {
        id: String,
        /// Also print every chunk with its character offsets.
        #[arg(long)]
        chunks: bool,
    },
    /// Delete a document with its file, chunks and vectors.
    Delete {
        id: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

pub async fn documents(
    client: &ApiClient,
    command: DocumentsCommand,
    json: bool,
) -> Result<(), CliError> {
    match command {
        DocumentsCommand::List { status, limit } => list(client, status, limit, json).await,
        DocumentsCommand::Get { id, chunks } => get(client, &id, chunks, json).await,
        DocumentsCommand::Delete { id, yes } => delete(client, &id, yes, json).await,
    }
}

async fn list(
    client: &ApiClient,
    status: Option<String>,
    limit: usize,
    json: bool,
) -> Result<(), CliError> {
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    while items.len() < limit {
        let page_size = (limit - items.len()).min(1000);
        let mut request = client
            .request(reqwest::Method::GET, "documents")?
            .query(&[("limit", page_size.to_string())]);
        if let Some(status) = &status {
            request = request.query(&[("status", status.to_uppercase())]);
        }
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let page = client.send_json(request).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    if json {
        output::print_json(&json!({ "items": items, "count": items.len() }));
        return Ok(());
    }
    if items.is_empty() {
        outln!("No documents. Add some with `rag-agent ingest <path|url>`.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|d| {
            vec![
                d["id"].as_str().unwrap_or_default().to_string(),
                output::status(d["status"].as_str().unwrap_or("?")),
                d["chunk_count"].to_string(),
                output::bytes(d["size_bytes"].as_u64().unwrap_or(0)),
                output::clip(d["title"].as_str().unwrap_or_default(), 48),
            ]
        })
        .collect();
    output::table(&["ID", "STATUS", "CHUNKS", "SIZE", "TITLE"], &rows);
    outln!("{}", dim(&format!("{} documents", items.len())));
    Ok(())
}

async fn get(client: &ApiClient, id: &str, chunks: bool, json: bool) -> Result<(), CliError> {
    let path = format!("documents/{id}?include_chunks={chunks}");
    let doc = client.get(&path).await?;
    if json {
        output::print_json(&doc);
        return Ok(());
    }
    outln!("{}", bold(doc["title"].as_str().unwrap_or("(untitled)")));
    let field = |name: &str, value: String| outln!("  {:<13}{value}", format!("{name}:"));
    field("id", doc["id"].as_str().unwrap_or_default().into());
    field(
        "status",
        output::status(doc["status"].as_str().unwrap_or("?")),
    );
    field("source", doc["source"].as_str().unwrap_or_default().into());
    field(
        "type",
        doc["content_type"].as_str().unwrap_or_default().into(),
    );
    field(
        "size",
        output::bytes(doc["size_bytes"].as_u64().unwrap_or(0)),
    );
    field(
        "chunks",
        format!(
            "{} ({} tokens; size {}, overlap {})",
            doc["chunk_count"], doc["token_count"], doc["chunk_size"], doc["chunk_overlap"]
        ),
    );
    field(
        "created",
        doc["created_at"].as_str().unwrap_or_default().into(),
    );
    if let Some(indexed) = doc["indexed_at"].as_str() {
        field("indexed", indexed.into());
    }
    if let Some(error) = doc["error"].as_str() {
        field("error", output::red(error));
    }
    for chunk in doc["chunks"].as_array().map_or(&[][..], Vec::as_slice) {
        outln!(
            "\n{} {}",
            bold(&format!("#{}", chunk["chunk_index"])),
            dim(&format!(
                "chars {}..{} · {} tokens",
                chunk["start_char"], chunk["end_char"], chunk["token_count"]
            ))
        );
        outln!("{}", chunk["content"].as_str().unwrap_or_default());
    }
    Ok(())
}

async fn delete(client: &ApiClient, id: &str, yes: bool, json: bool) -> Result<(), CliError> {
    // Look it up first so the prompt can name it and a wrong id fails
    // before anyone is asked anything.
    let doc = client.get(&format!("documents/{id}")).await?;
    let title = doc["title"].as_str().unwrap_or(id).to_string();
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Usage(
                "refusing to delete without confirmation: stdin is not a terminal; pass --yes"
                    .to_string(),
            ));
        }
        eprint!("Delete {title:?} ({id}) with its chunks and vectors? [y/N] ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|source| CliError::Io {
                context: "reading the confirmation".to_string(),
                source,
            })?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::Partial("not deleted".to_string()));
        }
    }
    client.delete(&format!("documents/{id}")).await?;
    if json {
        output::print_json(&json!({ "deleted": id, "title": title }));
    } else {
        outln!("Deleted {title:?} ({id}).");
    }
    Ok(())
}

pub async fn tools(client: &ApiClient, json: bool) -> Result<(), CliError> {
    let tools = client.get("tools").await?;
    if json {
        output::print_json(&tools);
        return Ok(());
    }
    let tools = tools.as_array().cloned().unwrap_or_default();
    if tools.is_empty() {
        outln!("This deployment offers no tools.");
    }
    for tool in tools {
        outln!("{}", bold(tool["name"].as_str().unwrap_or("?")));
        let description = tool["description"].as_str().unwrap_or_default();
        outln!("  {}", description.lines().next().unwrap_or_default());
        let required: Vec<&str> = tool["input_schema"]["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(properties) = tool["input_schema"]["properties"].as_object() {
            let params: Vec<String> = properties
                .keys()
                .map(|k| {
                    if required.contains(&k.as_str()) {
                        k.clone()
                    } else {
                        format!("{k}?")
                    }
                })
                .collect();
            outln!("  {}", dim(&format!("input: {}", params.join(", "))));
        }
    }
    Ok(())
}

pub async fn health(client: &ApiClient, json: bool) -> Result<(), CliError> {
    let report = client.get("health").await?;
    if json {
        output::print_json(&report);
        return Ok(());
    }
    let status = report["status"].as_str().unwrap_or("?");
    let badge = if status == "ok" {
        output::green(status)
    } else {
        output::yellow(status)
    };
    outln!(
        "{} {badge}  {}",
        bold("rag-agent"),
        dim(&format!(
            "version {} at {}",
            report["version"].as_str().unwrap_or("?"),
            client.base()
        ))
    );
    if let Some(backends) = report["backends"].as_object() {
        for (name, value) in backends {
            outln!(
                "  {:<12}{}",
                format!("{name}:"),
                value.as_str().unwrap_or("?")
            );
        }
    }
    let model = &report["embedding_model"];
    if model.is_object() {
        outln!(
            "  {:<12}{} ({} dims)",
            "embeddings:",
            model["model_id"].as_str().unwrap_or("?"),
            model["dimension"]
        );
    }
    outln!(
        "  {:<12}{}",
        "chat model:",
        report["chat_model"].as_str().unwrap_or("?")
    );
    let vectors = match report["vector_count"].as_u64() {
        Some(n) => n.to_string(),
        None => "?".to_string(),
    };
    outln!(
        "  {:<12}{} documents, {vectors} vectors",
        "content:",
        report["document_count"]
    );
    for warning in report["warnings"].as_array().map_or(&[][..], Vec::as_slice) {
        outln!(
            "  {} {}",
            output::yellow("warning:"),
            warning.as_str().unwrap_or("?")
        );
    }
    Ok(())
}
