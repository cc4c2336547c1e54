//! An in-process emulator of the AWS APIs that moto lacks, speaking their
//! real wire formats so the real AWS SDK clients can be tested against it:
//! S3 Vectors (buckets, indexes, vectors and `QueryVectors`) and the Bedrock
//! runtime (`InvokeModel` for Titan embeddings, `Converse`,
//! `ConverseStream`), Knowledge Bases `Retrieve` and `Rerank`; beside it, a
//! scripted OpenAI-compatible chat server that also answers `/v1/rerank`,
//! and an OpenTelemetry collector's OTLP/HTTP trace endpoint. Test support only: it never ships in the
//! Lambda.
//!
//! Must not depend on the AWS SDK (tests drive it with the SDK, the emulator
//! itself only speaks HTTP) nor on any backend crate.

mod bedrock;
pub mod filter;
pub mod moto;
pub mod openai;
pub mod otlp;
mod rerank;
mod s3vectors;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

pub use bedrock::{BedrockStats, Fault, Faults, Reply, ReplyBlock, hashed_bag_of_words};
pub use moto::MotoServer;
pub use openai::OpenAiServer;
pub use otlp::{OtlpReceiver, ReceivedSpan};

/// Shared state behind the emulator's routes.
pub struct EmulatorState {
    vectors: s3vectors::VectorState,
    bedrock: bedrock::BedrockState,
}

/// A running emulator on a free 127.0.0.1 port; stops when dropped.
pub struct Emulator {
    /// Base URL to hand to the SDK clients as their endpoint.
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<EmulatorState>,
    _served: Served,
}

/// A router served on a free 127.0.0.1 port until this is dropped.
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    pub(crate) async fn start(app: Router) -> std::io::Result<Served> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Served {
            addr,
            shutdown: Some(tx),
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Emulator {
    /// Starts with hashed bag-of-words embeddings.
    pub async fn start() -> std::io::Result<Emulator> {
        Emulator::start_with(None).await
    }

    /// Starts; Titan embeddings come from `embedder` (zero-padded to the
    /// requested dimension) when given, so rankings are meaningful.
    pub async fn start_with(
        embedder: Option<Arc<dyn rag_core::Embedder>>,
    ) -> std::io::Result<Emulator> {
        let state = Arc::new(EmulatorState {
            vectors: s3vectors::VectorState::default(),
            bedrock: bedrock::BedrockState {
                embedder,
                ..Default::default()
            },
        });
        let served = Served::start(router(state.clone())).await?;
        Ok(Emulator {
            url: format!("http://{}", served.addr),
            addr: served.addr,
            state,
            _served: served,
        })
    }

    pub fn push_reply(&self, reply: Reply) {
        self.state.bedrock.replies.lock().unwrap().push_back(reply);
    }

    /// Queues a fault for the next Bedrock call of any kind.
    pub fn push_fault(&self, fault: Fault) {
        self.state
            .bedrock
            .queued_faults
            .lock()
            .unwrap()
            .push_back(fault);
    }

    /// Queues a fault raised inside the next `ConverseStream` response.
    pub fn push_stream_fault(&self, fault: Fault) {
        self.state
            .bedrock
            .stream_faults
            .lock()
            .unwrap()
            .push_back(fault);
    }

    /// Adds a passage to a knowledge base that `Retrieve` searches.
    /// Adds a passage with metadata attributes (a JSON object), as a
    /// `.metadata.json` sidecar gives a knowledge base's documents.
    pub fn add_knowledge_base_passage(
        &self,
        knowledge_base_id: &str,
        uri: &str,
        text: &str,
        attributes: serde_json::Value,
    ) {
        let attributes = match attributes {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        self.state
            .bedrock
            .knowledge_bases
            .lock()
            .unwrap()
            .entry(knowledge_base_id.to_string())
            .or_default()
            .push(bedrock::KnowledgeBasePassage {
                uri: uri.to_string(),
                text: text.to_string(),
                attributes,
            });
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.state.bedrock.faults.lock().unwrap() = faults;
    }

    pub fn bedrock_stats(&self) -> BedrockStats {
        self.state.bedrock.stats.lock().unwrap().clone()
    }

    /// Every Rerank request body received, in order.
    pub fn rerank_requests(&self) -> Vec<Value> {
        self.state.bedrock.rerank_requests.lock().unwrap().clone()
    }

    /// Every Converse and ConverseStream request body received, in order.
    pub fn converse_requests(&self) -> Vec<Value> {
        self.state.bedrock.converse_requests.lock().unwrap().clone()
    }

    /// Every Bedrock runtime call (`/model/...`), in order, with the access
    /// key its SigV4 signature names: which credentials made it.
    pub fn signed_calls(&self) -> Vec<SignedCall> {
        self.state.bedrock.signed_calls.lock().unwrap().clone()
    }
}

/// A Bedrock call as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCall {
    /// `/model/<id>/converse`, `/model/<id>/invoke`, ...
    pub path: String,
    /// The `Credential=` access key of its `Authorization` header.
    pub access_key: Option<String>,
}

/// The access key a SigV4 `Authorization` header was signed with.
fn signing_access_key(authorization: &str) -> Option<String> {
    let credential = authorization.split("Credential=").nth(1)?;
    credential.split('/').next().map(str::to_string)
}

async fn record_signature(
    axum::extract::State(state): axum::extract::State<Arc<EmulatorState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_string();
    if path.starts_with("/model/") {
        let access_key = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(signing_access_key);
        state
            .bedrock
            .signed_calls
            .lock()
            .unwrap()
            .push(SignedCall { path, access_key });
    }
    next.run(request).await
}

fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/model/{model_id}/invoke", post(bedrock::invoke_model))
        .route("/model/{model_id}/converse", post(bedrock::converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(bedrock::converse_stream),
        )
        .route("/knowledgebases/{id}/retrieve", post(bedrock::retrieve))
        .route("/rerank", post(rerank::bedrock_rerank))
        .route("/{operation}", post(s3vectors::handle))
        // A PutVectors of 500 vectors of 1,024 dimensions is about 6 MB of
        // JSON; the service takes it, so the emulator must too.
        .layer(axum::extract::DefaultBodyLimit::max(PUT_VECTORS_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_signature,
        ))
        .with_state(state)
}

/// Request bodies the emulator reads, well past what a full PutVectors
/// batch takes.
const PUT_VECTORS_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// An AWS error as restJson services send it: the type in
/// `x-amzn-errortype`, the message in the body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AwsError {
    status: u16,
    code: &'static str,
    message: String,
}

impl AwsError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        AwsError::new(400, "ValidationException", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        AwsError::new(404, "NotFoundException", message)
    }

    pub(crate) fn into_response(self) -> Response {
        let mut response = json_response(self.status, &json!({"message": self.message}));
        if let Ok(value) = self.code.parse() {
            response.headers_mut().insert("x-amzn-errortype", value);
        }
        response
    }
}

pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}
