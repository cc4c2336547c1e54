//! Errors per domain, each classified so callers know whether to retry and
//! the API knows which status to answer with.

use std::time::Duration;

/// A boxed cause from a backend library, kept for logs and never shown to
/// API callers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was wrong; retrying it unchanged will fail again.
    Invalid,
    NotFound,
    /// Throttling, timeouts, dropped connections: retry with backoff.
    Transient,
    /// A fault that retrying will not fix.
    Permanent,
}

/// Failures of the metadata, vector, lexical, conversation and document stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    /// A conditional write lost: another writer changed the record first.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid store request: {0}")]
    Invalid(String),
    #[error("store temporarily unavailable: {0}")]
    Transient(#[source] BoxError),
    #[error("store failure: {0}")]
    Permanent(#[source] BoxError),
}

impl StoreError {
    pub fn permanent(e: impl Into<BoxError>) -> Self {
        StoreError::Permanent(e.into())
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::NotFound { .. } => ErrorClass::NotFound,
            StoreError::Conflict(_) | StoreError::Invalid(_) => ErrorClass::Invalid,
            StoreError::Transient(_) => ErrorClass::Transient,
            StoreError::Permanent(_) => ErrorClass::Permanent,
        }
    }
}

/// Failures of an embedding model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("invalid embedding input: {0}")]
    Invalid(String),
    #[error("embedding model throttled")]
    Throttled { retry_after: Option<Duration> },
    #[error("embedding model temporarily unavailable: {0}")]
    Transient(#[source] BoxError),
    #[error("embedding failed: {0}")]
    Permanent(#[source] BoxError),
}

impl EmbedError {
    pub fn permanent(e: impl Into<BoxError>) -> Self {
        EmbedError::Permanent(e.into())
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            EmbedError::Invalid(_) => ErrorClass::Invalid,
            EmbedError::Throttled { .. } | EmbedError::Transient(_) => ErrorClass::Transient,
            EmbedError::Permanent(_) => ErrorClass::Permanent,
        }
    }
}

/// Failures of a chat model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model request: {0}")]
    Invalid(String),
    /// The prompt does not fit the model's context window; the caller may
    /// trim history and try once more.
    #[error("input is too long for the model's context window")]
    ContextTooLong,
    #[error("model throttled")]
    Throttled { retry_after: Option<Duration> },
    #[error("model temporarily unavailable: {0}")]
    Transient(#[source] BoxError),
    #[error("model failure: {0}")]
    Permanent(#[source] BoxError),
}

impl ModelError {
    pub fn permanent(e: impl Into<BoxError>) -> Self {
        ModelError::Permanent(e.into())
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ModelError::Invalid(_) | ModelError::ContextTooLong => ErrorClass::Invalid,
            ModelError::Throttled { .. } | ModelError::Transient(_) => ErrorClass::Transient,
            ModelError::Permanent(_) => ErrorClass::Permanent,
        }
    }
}

/// Failures turning bytes into text.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    #[error("the document contains no text")]
    Empty,
    #[error("the document is not valid {format}: {message}")]
    Malformed {
        format: &'static str,
        message: String,
    },
    /// Nesting deeper than a parser may follow.
    #[error("the document is too complex to parse: {0}")]
    TooComplex(String),
    /// Decompressed streams or extracted text past their limits.
    #[error("the document expands too far: {0}")]
    ExpansionLimit(String),
    #[error("parsing the document took longer than {seconds} s")]
    Timeout { seconds: u64 },
    /// The parser itself could not run (the worker process failed to start
    /// or answered nonsense): our fault, not the document's.
    #[error("the document parser failed: {0}")]
    Internal(String),
}

impl ParseError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ParseError::Internal(_) => ErrorClass::Permanent,
            _ => ErrorClass::Invalid,
        }
    }
}

/// Failures fetching a URL for ingestion or for the agent's `fetch_url`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The address is loopback, private, link-local or a cloud metadata
    /// endpoint and not on the allowlist.
    #[error("refusing to fetch {host}: {reason}")]
    Blocked { host: String, reason: String },
    #[error("the response is larger than the {limit_bytes} byte limit")]
    TooLarge { limit_bytes: u64 },
    #[error("the server answered HTTP {status}")]
    Status { status: u16 },
    #[error("fetching the URL timed out")]
    Timeout,
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("could not fetch the URL: {0}")]
    Network(#[source] BoxError),
}

impl FetchError {
    pub fn class(&self) -> ErrorClass {
        match self {
            FetchError::InvalidUrl(_)
            | FetchError::Blocked { .. }
            | FetchError::TooLarge { .. }
            | FetchError::TooManyRedirects => ErrorClass::Invalid,
            FetchError::Status { status } if *status == 404 || *status == 410 => {
                ErrorClass::NotFound
            }
            FetchError::Status { .. } | FetchError::Timeout | FetchError::Network(_) => {
                ErrorClass::Transient
            }
        }
    }
}

/// Every error the service layer returns; the API maps each variant to a
/// status in one exhaustive match.
#[derive(Debug, thiserror::Error)]
pub enum RagError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("payload exceeds the {limit_bytes} byte limit")]
    PayloadTooLarge { limit_bytes: u64 },
    /// The document would split into more chunks than one document may
    /// have; a larger `chunk_size` or a split document fits.
    #[error(
        "the document would split into {count} chunks, more than the {limit} allowed; use a larger chunk_size or split the document"
    )]
    TooManyChunks { count: usize, limit: usize },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A parameter this deployment's kind of chat turn does not take, such
    /// as `max_cycles` where the model cannot call tools.
    #[error("{0}")]
    NotApplicable(String),
    /// A capability this deployment lacks, such as dense search without an
    /// embedding model.
    #[error("{0}")]
    Unavailable(String),
    /// The tenant's monthly token budget is spent.
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        retry_after_secs: u64,
    },
}

impl RagError {
    pub fn invalid(message: impl Into<String>) -> Self {
        RagError::InvalidInput(message.into())
    }
}
