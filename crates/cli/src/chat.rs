//! `rag-agent chat`: a session over `/chat/stream`. Answers are printed as
//! they are written, tool calls as they happen; the conversation id is kept
//! so the server remembers the session, until `/new`.

use std::io::{BufRead, IsTerminal};

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::http::read_events;
use crate::output::{self, bold, dim};
use crate::{ApiClient, CliError};

pub const EXAMPLES: &str = "Examples:
  rag-agent chat
  rag-agent chat --conversation 2b1c...    # continue an earlier conversation
  printf 'What is ownership?\\nAnd borrowing?\\n' | rag-agent chat --json

In the session: Enter sends, /new starts a new conversation, /quit (or
Ctrl-D) leaves. With --json every server event is printed as one JSON line.";

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Continue this conversation instead of starting a new one.
    #[arg(long)]
    pub conversation: Option<String>,
    /// Cap on the agent's model calls per turn (agent deployments only).
    #[arg(long)]
    pub max_cycles: Option<u32>,
}

const HELP: &str = "/new  start a new conversation\n/quit leave (or Ctrl-D)\n/help this text";

pub async fn run(client: &ApiClient, args: &ChatArgs, json: bool) -> Result<(), CliError> {
    let interactive = std::io::stdin().is_terminal() && !json;
    let mut lines = stdin_lines();
    let mut conversation = args.conversation.clone();
    let mut failures = 0usize;
    if interactive {
        outln!(
            "{}",
            dim(&format!(
                "Chatting with {}. Enter sends; /new, /quit, /help.",
                client.base()
            ))
        );
    }
    loop {
        if interactive {
            out!("{} ", bold(">"));
        }
        let Some(line) = lines.recv().await else {
            break;
        };
        let line = line.trim();
        match line {
            "" => continue,
            "/quit" | "/exit" => break,
            "/help" => {
                outln!("{HELP}");
                continue;
            }
            "/new" => {
                conversation = None;
                if json {
                    outln!("{}", json!({"event": "new_conversation"}));
                } else {
                    outln!("{}", dim("Started a new conversation."));
                }
                continue;
            }
            command if command.starts_with('/') => {
                eprintln!("unknown command {command}; try /help");
                continue;
            }
            _ => {}
        }
        match turn(client, line, &mut conversation, args.max_cycles, json).await {
            Ok(true) => {}
            Ok(false) => failures += 1,
            Err(error @ CliError::Unreachable { .. }) => return Err(error),
            Err(error) => {
                failures += 1;
                output::report_error(&error, json);
            }
        }
    }
    if failures > 0 && !interactive {
        return Err(CliError::Partial(format!("{failures} turns failed")));
    }
    Ok(())
}

/// Reads stdin on its own thread: a blocking read must not hold up the
/// runtime that is printing the stream.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if sender.blocking_send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// One question and its streamed answer; Ok(false) when the server
/// reported an error event.
async fn turn(
    client: &ApiClient,
    message: &str,
    conversation: &mut Option<String>,
    max_cycles: Option<u32>,
    json: bool,
) -> Result<bool, CliError> {
    let mut body = json!({ "message": message });
    if let Some(id) = conversation.as_ref() {
        body["conversation_id"] = json!(id);
    }
    if let Some(cycles) = max_cycles {
        body["max_cycles"] = json!(cycles);
    }
    let request = client
        .request(Method::POST, "chat/stream")?
        .header("accept", "text/event-stream")
        .json(&body);
    let response = client.send(request).await?;
    let mut printer = TurnPrinter {
        json,
        ..TurnPrinter::default()
    };
    read_events(response, |event| printer.on_event(event.event, event.data)).await?;
    if let Some(id) = printer.conversation_id.take() {
        *conversation = Some(id);
    }
    if !printer.finished {
        return Err(CliError::Protocol {
            message: "the stream ended before its `done` event".to_string(),
        });
    }
    Ok(!printer.failed)
}

#[derive(Default)]
struct TurnPrinter {
    json: bool,
    /// Whether the cursor is mid-line after answer text.
    mid_line: bool,
    sources: Vec<Value>,
    conversation_id: Option<String>,
    finished: bool,
    failed: bool,
}

impl TurnPrinter {
    /// Returns false to stop reading.
    fn on_event(&mut self, event: String, data: Value) -> bool {
        if self.json {
            outln!("{}", json!({ "event": event, "data": data }));
        }
        match event.as_str() {
            "delta" if !self.json => {
                out!("{}", data["text"].as_str().unwrap_or_default());
                self.mid_line = true;
            }
            "tool_use" if !self.json => {
                self.end_line();
                let input = data["input"].to_string();
                outln!(
                    "{}",
                    dim(&format!(
                        "→ {} {}",
                        data["name"].as_str().unwrap_or("?"),
                        output::clip(&input, 100)
                    ))
                );
            }
            "tool_result" if !self.json => {
                self.end_line();
                let ok = data["status"].as_str() != Some("error");
                let mark = if ok {
                    output::green("✓")
                } else {
                    output::red("✗")
                };
                outln!(
                    "{mark} {}",
                    dim(&format!(
                        "{}: {}",
                        data["name"].as_str().unwrap_or("?"),
                        output::clip(data["summary"].as_str().unwrap_or_default(), 120)
                    ))
                );
            }
            "sources" => {
                self.sources = data["sources"].as_array().cloned().unwrap_or_default();
            }
            "done" => {
                self.conversation_id = data["conversation_id"].as_str().map(str::to_string);
                self.finished = true;
                if !self.json {
                    self.end_line();
                    output::sources(&self.sources);
                    outln!(
                        "{}",
                        dim(&format!(
                            "{} · {} ms · {} tokens",
                            data["model_id"].as_str().unwrap_or("?"),
                            data["latency_ms"],
                            data["token_usage"]["total_tokens"]
                        ))
                    );
                }
                return false;
            }
            "error" => {
                self.failed = true;
                self.finished = true;
                if !self.json {
                    self.end_line();
                    let message = data["message"]
                        .as_str()
                        .or_else(|| data["error"]["message"].as_str())
                        .unwrap_or("the turn failed");
                    eprintln!("{} {message}", output::red("error:"));
                }
                return false;
            }
            _ => {}
        }
        true
    }

    fn end_line(&mut self) {
        if self.mid_line {
            outln!("");
            self.mid_line = false;
        }
    }
}
