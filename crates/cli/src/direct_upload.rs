//! Files too large to send through the API in one request: declared with
//! `POST /documents/uploads`, sent with a PUT to the URL the answer gives
//! (S3 directly on AWS, the server itself otherwise), then followed until
//! the promised document is INDEXED or FAILED.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::ProgressBar;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{ApiClient, CliError};

/// Files larger than this go by direct upload.
pub const DIRECT_UPLOAD_ABOVE_BYTES: u64 = 5 * 1024 * 1024;

/// How long an upload may sit in storage before its document appears
/// (the storage event and the queue's worker on AWS; at once otherwise).
const APPEAR_WITHIN: Duration = Duration::from_secs(10 * 60);

/// What to declare beside the file itself.
pub struct Declared<'a> {
    pub path: &'a Path,
    pub filename: String,
    pub content_type: &'a str,
    pub source: &'a str,
    pub new_version: bool,
    pub chunk_size: Option<usize>,
    pub chunk_overlap: Option<usize>,
}

/// Uploads one file directly and waits for its document to settle.
/// Returns the API's `{document, duplicate}`, as the other paths do.
pub async fn upload(
    client: &ApiClient,
    file: Declared<'_>,
    progress: &ProgressBar,
) -> Result<Value, CliError> {
    let io = |source| CliError::Io {
        context: format!("reading {}", file.path.display()),
        source,
    };
    let size = tokio::fs::metadata(file.path).await.map_err(io)?.len();
    let mut declaration = json!({
        "filename": file.filename,
        "content_type": file.content_type,
        "size": size,
        "source": file.source,
        "new_version": file.new_version,
    });
    if let Some(size) = file.chunk_size {
        declaration["chunk_size"] = json!(size);
    }
    if let Some(overlap) = file.chunk_overlap {
        declaration["chunk_overlap"] = json!(overlap);
    }
    let ticket = client.post("documents/uploads", &declaration).await?;
    let (Some(url), Some(id)) = (
        ticket["upload_url"].as_str(),
        ticket["document_id"].as_str(),
    ) else {
        return Err(CliError::Protocol {
            message: format!("an upload ticket without upload_url or document_id: {ticket}"),
        });
    };
    let mut request = client.request_to(Method::PUT, url);
    if let Some(headers) = ticket["headers"].as_object() {
        for (name, value) in headers {
            request = request.header(name, value.as_str().unwrap_or_default());
        }
    }
    let file_handle = tokio::fs::File::open(file.path).await.map_err(io)?;
    let label = file.source.to_string();
    let sent = progress.clone();
    let mut done = 0u64;
    // The file is streamed, never held whole, and the bar says how much
    // of it has gone.
    let body = tokio_util_stream(file_handle).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            done += bytes.len() as u64;
            sent.set_message(format!("uploading {label}: {}%", done * 100 / size.max(1)));
        }
        chunk
    });
    let response = client
        .send(
            request
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(reqwest::Body::wrap_stream(body)),
        )
        .await?;
    // The server took it itself and answered with the document (202, or
    // 200 for a duplicate); S3 answers with an empty body.
    let answered: Option<Value> = response.json().await.ok();
    if let Some(answer) = answered.filter(|a| a["document"].is_object())
        && (answer["duplicate"] == true || is_settled(&answer["document"]))
    {
        return Ok(answer);
    }
    wait_for(client, id).await
}

/// Polls the promised document until it is INDEXED or FAILED.
async fn wait_for(client: &ApiClient, id: &str) -> Result<Value, CliError> {
    let started = Instant::now();
    loop {
        match client.get(&format!("documents/{id}")).await {
            Ok(document) if is_settled(&document) => {
                return Ok(json!({"document": document, "duplicate": false}));
            }
            Ok(_) => {}
            // Not there yet: the upload is in storage, its event on the way.
            Err(CliError::Api { status: 404, .. }) if started.elapsed() < APPEAR_WITHIN => {}
            Err(CliError::Api { status: 404, .. }) => {
                return Err(CliError::Protocol {
                    message: format!(
                        "the upload was stored, but document {id} did not appear within {} minutes; is the bucket's notification to the ingest queue in place?",
                        APPEAR_WITHIN.as_secs() / 60
                    ),
                });
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_settled(document: &Value) -> bool {
    matches!(document["status"].as_str(), Some("INDEXED" | "FAILED"))
}

/// A file as a stream of 256 KiB pieces.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buffer = vec![0u8; 256 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(bytes::Bytes::from(buffer)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}
