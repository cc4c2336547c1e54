//! The HTTP side of the client: one `reqwest` client with the user's
//! headers, JSON in and out, the API's error bodies turned into
//! `CliError::Api`, and a reader for the server-sent events of
//! `/chat/stream`.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use url::Url;

use crate::CliError;

/// A client for one rag-agent API.
#[derive(Clone)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    /// Without the API's headers: a presigned URL is its own credential,
    /// and S3 refuses a request that carries a second one.
    bare: reqwest::Client,
}

impl ApiClient {
    /// `headers` are `Name: value` pairs sent with every request (an API
    /// key or a bearer token for a deployed API).
    pub fn new(base_url: &str, headers: &[String]) -> Result<Self, CliError> {
        let mut base = Url::parse(base_url)
            .map_err(|e| CliError::Usage(format!("--url {base_url:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!(
                "--url must be http or https, not {:?}",
                base.scheme()
            )));
        }
        // A base with a stage or prefix (`https://x.execute-api.../Prod`)
        // must end in `/` or `join` would replace its last segment.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut map = HeaderMap::new();
        for header in headers {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                CliError::Usage(format!("--header {header:?} must look like `Name: value`"))
            })?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| CliError::Usage(format!("--header {header:?}: {e}")))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|e| CliError::Usage(format!("--header {header:?}: {e}")))?;
            map.append(name, value);
        }
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("rag-agent-cli/", env!("CARGO_PKG_VERSION")))
        };
        let http = builder()
            .default_headers(map)
            .build()
            .map_err(|e| CliError::Usage(format!("building the HTTP client: {e}")))?;
        let bare = builder()
            .build()
            .map_err(|e| CliError::Usage(format!("building the HTTP client: {e}")))?;
        Ok(Self { base, http, bare })
    }

    /// A request to a URL the API handed out (an upload URL), sent
    /// without the API's credentials.
    pub fn request_to(&self, method: Method, url: &str) -> RequestBuilder {
        self.bare.request(method, url)
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, CliError> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| CliError::Usage(format!("bad path {path:?}: {e}")))?;
        Ok(self.http.request(method, url))
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send_json(self.request(Method::GET, path)?).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send_json(self.request(Method::POST, path)?.json(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(self.request(Method::DELETE, path)?).await?;
        Ok(())
    }

    /// Sends a request and returns the response when it succeeded.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    pub async fn send_json(&self, request: RequestBuilder) -> Result<Value, CliError> {
        let response = self.send(request).await?;
        response.json().await.map_err(|e| CliError::Protocol {
            message: format!("the response is not JSON: {e}"),
        })
    }

    pub fn transport_error(&self, error: reqwest::Error) -> CliError {
        if error.is_connect() || error.is_timeout() {
            CliError::Unreachable {
                url: self.base.to_string(),
                reason: root_cause(&error),
            }
        } else {
            CliError::Protocol {
                message: root_cause(&error),
            }
        }
    }
}

/// The innermost cause, which is the readable one ("Connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Turns a non-2xx response into an error, reading the API's
/// `{"error": {"code", "message"}}` body when there is one (a gateway in
/// front of the API may answer with something else).
async fn api_error(response: Response) -> CliError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let (code, message) = match parsed.as_ref().map(|v| &v["error"]) {
        Some(Value::Object(e)) => (
            e.get("code")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string(),
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        _ => {
            let message = parsed
                .as_ref()
                .and_then(|v| v["message"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(300).collect());
            ("http_error".to_string(), message)
        }
    };
    CliError::Api {
        status,
        code,
        message,
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// Reads server-sent events from a response as they arrive and hands each
/// to `on_event`; stops early when it returns false.
pub async fn read_events(
    response: Response,
    mut on_event: impl FnMut(SseEvent) -> bool,
) -> Result<(), CliError> {
    let mut stream = response.bytes_stream();
    let mut parser = SseParser::default();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| CliError::Protocol {
            message: format!("the event stream broke off: {}", root_cause(&e)),
        })?;
        for event in parser.push(&piece) {
            if !on_event(event) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Splits a byte stream into events; a chunk may end anywhere, even inside
/// a UTF-8 character, so bytes are buffered until a blank line.
#[derive(Default)]
struct SseParser {
    buffer: Vec<u8>,
    /// How much of `buffer` was searched without finding an event's end,
    /// so a long event arriving in many chunks is not searched again from
    /// its start each time.
    searched: usize,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        // A separator is up to four bytes and may straddle the old end.
        let mut from = self.searched.saturating_sub(3);
        while let Some((text_end, next)) = find_blank_line(&self.buffer, from) {
            if let Some(event) =
                parse_block(&String::from_utf8_lossy(&self.buffer[start..text_end]))
            {
                events.push(event);
            }
            start = next;
            from = next;
        }
        // One move of the unread tail per push, however many events it held.
        self.buffer.drain(..start);
        self.searched = self.buffer.len();
        events
    }
}

/// Where the first event ending at or after `from` ends: (end of its text,
/// end of the separator).
fn find_blank_line(buffer: &[u8], from: usize) -> Option<(usize, usize)> {
    (from..buffer.len()).find_map(|i| {
        if buffer[i..].starts_with(b"\n\n") {
            Some((i, i + 2))
        } else if buffer[i..].starts_with(b"\r\n\r\n") {
            Some((i, i + 4))
        } else {
            None
        }
    })
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = "message".to_string();
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("event:") {
            event = rest.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    if data.is_empty() {
        return None;
    }
    let joined = data.join("\n");
    let data = serde_json::from_str(&joined).unwrap_or(Value::String(joined));
    Some(SseEvent { event, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let stream = "event: delta\ndata: {\"text\":\"héllo\"}\n\n: keep-alive\n\nevent: done\r\ndata: {\"cycles\":1}\r\n\r\n";
        let bytes = stream.as_bytes();
        for cut in 1..bytes.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&bytes[..cut]);
            events.extend(parser.push(&bytes[cut..]));
            assert_eq!(events.len(), 2, "cut at {cut}");
            assert_eq!(events[0].event, "delta");
            assert_eq!(events[0].data["text"], "héllo");
            assert_eq!(events[1].event, "done");
            assert_eq!(events[1].data["cycles"], 1);
        }
    }

    #[test]
    fn headers_must_have_a_name_and_a_value() {
        assert!(ApiClient::new("http://127.0.0.1:1", &["x-api-key: k".into()]).is_ok());
        assert!(matches!(
            ApiClient::new("http://127.0.0.1:1", &["no colon".into()]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            ApiClient::new("ftp://host", &[]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn a_base_path_is_kept() {
        let client = ApiClient::new("https://api.example.com/Prod", &[]).unwrap();
        let request = client
            .request(Method::GET, "/documents")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            request.url().as_str(),
            "https://api.example.com/Prod/documents"
        );
    }
}
