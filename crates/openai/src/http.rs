//! The JSON POST that the embeddings and rerank clients make, with what
//! can go wrong sorted so that each client maps it onto its own error.

use std::time::Duration;

use serde_json::Value;

/// Why a POST did not produce a JSON reply.
pub(crate) enum Failure {
    /// No answer: the connection failed or timed out.
    Unreachable(reqwest::Error),
    /// The request could not be made for another reason.
    Request(reqwest::Error),
    /// The server answered with an error status: the status, its
    /// `Retry-After` in seconds, and the start of the body.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        summary: String,
    },
    /// The server answered success with a body that is not JSON.
    NotJson(String),
}

impl Failure {
    /// Whether the status says the request itself was at fault.
    pub(crate) fn is_invalid_status(status: u16) -> bool {
        matches!(status, 400 | 413 | 422)
    }
}

pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    api_key: Option<&str>,
    timeout: Duration,
) -> Result<Value, Failure> {
    let mut request = client.post(url).timeout(timeout).json(body);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() || e.is_connect() {
            Failure::Unreachable(e)
        } else {
            Failure::Request(e)
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        return Err(Failure::Status {
            status: status.as_u16(),
            retry_after,
            summary: format!(
                "HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            ),
        });
    }
    response
        .json()
        .await
        .map_err(|e| Failure::NotJson(format!("the reply is not JSON: {e}")))
}

/// A throttling reply's `Retry-After`, when it gives whole seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}
