//! Printing for people: colour only when stdout is a terminal (and
//! `NO_COLOR` is unset), aligned tables, sizes and durations.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::CliError;

/// Writes to stdout; a closed pipe ends the process with success, any other
/// failure to write with an error.
pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_fmt(text).and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(1);
        }
    }
}

fn colour_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").map_or(true, |t| t != "dumb")
    })
}

fn paint(code: &str, text: &str) -> String {
    if colour_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub fn bold(text: &str) -> String {
    paint("1", text)
}

pub fn dim(text: &str) -> String {
    paint("2", text)
}

pub fn green(text: &str) -> String {
    paint("32", text)
}

pub fn red(text: &str) -> String {
    paint("31", text)
}

pub fn yellow(text: &str) -> String {
    paint("33", text)
}

pub fn cyan(text: &str) -> String {
    paint("36", text)
}

/// A document status, coloured by what it means.
pub fn status(status: &str) -> String {
    match status {
        "INDEXED" => green(status),
        "FAILED" => red(status),
        _ => yellow(status),
    }
}

/// Prints a table with left-aligned columns; widths ignore colour codes.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(visible_width(cell));
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(visible_width(cell)) + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        outln!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| bold(h)).collect());
    for row in rows {
        line(row.clone());
    }
}

fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Cuts text to `max` characters, marking the cut.
pub fn clip(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

pub fn print_json(value: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Prints numbered sources the way answers cite them.
pub fn sources(sources: &[Value]) {
    if sources.is_empty() {
        return;
    }
    outln!("\n{}", bold("Sources"));
    for source in sources {
        let number = source["citation"].as_u64().unwrap_or(0);
        let title = source["title"].as_str().unwrap_or("(untitled)");
        let origin = source["source"].as_str().unwrap_or_default();
        let score = source["score"].as_f64().unwrap_or_default();
        outln!(
            "  {} {}  {}",
            cyan(&format!("[{number}]")),
            title,
            dim(&format!("{origin} · score {score:.3}"))
        );
        if let Some(snippet) = source["snippet"].as_str() {
            outln!("      {}", dim(&clip(snippet, 160)));
        }
    }
}

/// Reports a failure on stderr; with `--json`, as the API's error shape.
pub fn report_error(error: &CliError, json: bool) {
    if json {
        let (code, status) = match error {
            CliError::Api { code, status, .. } => (code.clone(), Some(*status)),
            CliError::Usage(_) => ("usage".to_string(), None),
            CliError::Unreachable { .. } => ("unreachable".to_string(), None),
            CliError::Protocol { .. } => ("protocol".to_string(), None),
            CliError::Io { .. } => ("io".to_string(), None),
            CliError::Partial(_) => ("partial_failure".to_string(), None),
        };
        let message = match error {
            CliError::Api { message, .. } => message.clone(),
            other => other.to_string(),
        };
        eprintln!(
            "{}",
            json!({"error": {"code": code, "message": message, "status": status}})
        );
    } else {
        eprintln!("{} {error}", red("error:"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_clips_read_well() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500), "1.5 KB");
        assert_eq!(bytes(2_345_678), "2.3 MB");
        assert_eq!(clip("a  b\nc", 10), "a b c");
        assert_eq!(clip("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn colour_codes_do_not_count_as_width() {
        assert_eq!(visible_width("\x1b[32mINDEXED\x1b[0m"), 7);
    }
}
