//! The domain's nouns: documents, chunks, search hits and answers, as they
//! travel between the pipeline, the stores and the API.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a document is in its life. Upper case on the wire, as in the design.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, schemars::JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum DocumentStatus {
    Pending,
    Processing,
    Indexed,
    Failed,
}

impl DocumentStatus {
    pub const ALL: [DocumentStatus; 4] = [
        DocumentStatus::Pending,
        DocumentStatus::Processing,
        DocumentStatus::Indexed,
        DocumentStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Pending => "PENDING",
            DocumentStatus::Processing => "PROCESSING",
            DocumentStatus::Indexed => "INDEXED",
            DocumentStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
    }

    /// The status spelled exactly as the API writes it (`INDEXED`), the
    /// only spelling the API accepts.
    pub fn exact(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the pipeline may still move this document forward; used at
    /// start-up to find work a crash interrupted.
    pub fn is_in_flight(self) -> bool {
        matches!(self, DocumentStatus::Pending | DocumentStatus::Processing)
    }
}

/// A source document and what the pipeline learned about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Document {
    pub id: Uuid,
    pub title: String,
    /// The parsed text; only filled when a caller asks for it, because it can
    /// be megabytes and lives in the document store, not the metadata store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub source: String,
    pub content_type: String,
    pub status: DocumentStatus,
    pub chunk_count: u32,
    pub token_count: u64,
    /// The chunking this document was (or will be) split with, kept so an
    /// interrupted ingestion resumes with the same settings.
    pub chunk_size: u32,
    pub chunk_overlap: u32,
    /// Size of the raw upload in bytes.
    pub size_bytes: u64,
    /// Hex SHA-256 of the raw bytes; identical uploads are recognised by it.
    pub content_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub extra_metadata: BTreeMap<String, serde_json::Value>,
}

/// Where a chunk sits in its document. Offsets count Unicode scalar values
/// (Rust `char`s) into the parsed text, so `start_char..end_char` selects
/// exactly the chunk's content whatever the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChunkMetadata {
    pub chunk_id: String,
    pub document_id: Uuid,
    pub chunk_index: u32,
    pub start_char: u64,
    pub end_char: u64,
    pub token_count: u32,
    /// The page, sheet or slide the chunk comes from, where its format
    /// has them.
    #[serde(flatten)]
    pub location: ChunkLocation,
}

/// Where in a paged or sheeted document a chunk starts: the page of a PDF,
/// the sheet of a spreadsheet, the slide of a presentation. Formats
/// without such parts leave every field empty.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    schemars::JsonSchema,
)]
pub struct ChunkLocation {
    /// 1-based page number of a PDF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Sheet name of a spreadsheet (a CSV file has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// 1-based slide number of a presentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<u32>,
    /// The headings the chunk sits under, outermost first, joined with
    /// ` > ` ("Defining an Enum > Enum Values"), where the format has
    /// headings (HTML, Markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
}

impl ChunkLocation {
    pub fn page(page: u32) -> Self {
        Self {
            page: Some(page),
            ..Self::default()
        }
    }

    pub fn sheet(name: impl Into<String>) -> Self {
        Self {
            sheet: Some(name.into()),
            ..Self::default()
        }
    }

    pub fn slide(slide: u32) -> Self {
        Self {
            slide: Some(slide),
            ..Self::default()
        }
    }

    /// The location of a chunk under `path`, a heading path.
    pub fn in_section(path: Option<String>) -> Self {
        Self {
            section: path,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

impl ChunkMetadata {
    /// Chunk ids are derived, not random, so re-running a failed ingestion
    /// overwrites rather than duplicates.
    pub fn chunk_id_for(document_id: Uuid, chunk_index: u32) -> String {
        format!("{document_id}#{chunk_index:05}")
    }
}

/// A chunk ready for the stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentChunk {
    pub metadata: ChunkMetadata,
    pub content: String,
    /// The document's title and the chunk's heading path (see
    /// `chunk::chunk_header`): embedded with the content and indexed for
    /// keywords beside it, but never shown as part of it.
    #[serde(default)]
    pub header: String,
    pub embedding: Vec<f32>,
}

/// One retrieved chunk. `score` is a similarity: higher is better, whatever
/// the backend measures internally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VectorSearchResult {
    pub document_id: Uuid,
    pub chunk_id: String,
    pub score: f32,
    pub content: String,
    pub metadata: ChunkMetadata,
}

/// A cited passage as the caller sees it; the answer's `[n]` markers refer
/// to the n-th entry of `sources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceReference {
    /// The number the answer cites this passage by, as in `[2]`.
    pub citation: usize,
    pub document_id: Uuid,
    pub chunk_id: String,
    pub title: String,
    pub source: String,
    pub score: f32,
    pub snippet: String,
    pub chunk_index: u32,
    pub start_char: u64,
    pub end_char: u64,
    /// The page, sheet or slide of the passage, where its format has them.
    #[serde(flatten)]
    pub location: ChunkLocation,
}

/// Tokens a model reported (or, for models that count none, estimated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenUsage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
}

impl TokenUsage {
    pub fn new(input_tokens: u32, output_tokens: u32) -> Self {
        Self {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
        }
    }
}

impl std::ops::Add for TokenUsage {
    type Output = TokenUsage;

    fn add(self, other: TokenUsage) -> TokenUsage {
        TokenUsage::new(
            self.input_tokens.saturating_add(other.input_tokens),
            self.output_tokens.saturating_add(other.output_tokens),
        )
    }
}

/// One `[n]` in the answer and how well the passage it names supports the
/// sentence it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CitationCheck {
    /// The passage number cited.
    pub n: usize,
    pub chunk_id: String,
    /// The cited sentence, as it reads in the answer (without markers).
    pub sentence: String,
    pub supported: bool,
    /// 0 to 1: how much of the sentence the passage holds.
    pub score: f32,
}

/// What a reply says of its citations (`/query`, `/chat`, and the
/// `citations` event of `/chat/stream`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct CitationReport {
    /// Every `[n]` of the answer that names a passage, with its support.
    #[serde(default)]
    pub citations: Vec<CitationCheck>,
    /// Numbers the model cited that name no passage; they were removed
    /// from the answer.
    #[serde(default)]
    pub removed_citations: Vec<usize>,
    /// The share of the answer's claims that cite a passage supporting
    /// them (0 to 1); absent when the answer makes no claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groundedness: Option<f32>,
}

/// Whether and how a search's hits were reranked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankReport {
    /// The reranker asked, as `<kind>:<model>` (`bedrock:amazon.rerank-v1:0`).
    pub reranker: String,
    /// Whether `sources` are in the reranker's order, each `score` its
    /// relevance score; when false they are in retrieval order, with
    /// retrieval's scores.
    pub applied: bool,
    /// How many retrieved passages the reranker was given.
    pub candidates: usize,
    /// Time the rerank stage took.
    pub latency_ms: u64,
    /// Why retrieval's order was kept, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// The answer to `POST /query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    pub query: String,
    pub answer: String,
    pub sources: Vec<SourceReference>,
    pub model_id: String,
    pub search_mode: SearchMode,
    pub latency_ms: u64,
    pub token_usage: TokenUsage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// The standalone query searched for a follow-up question that leans
    /// on the conversation ("How do I build it?"); absent when the
    /// question was searched as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_query: Option<String>,
    /// How the passages were reranked; absent when the search was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank: Option<RerankReport>,
    /// How the answer's citations hold up against their passages.
    #[serde(flatten)]
    pub citation_report: CitationReport,
}

/// How retrieval finds candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    Dense,
    Lexical,
    #[default]
    Hybrid,
}

impl SearchMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "dense" => Some(SearchMode::Dense),
            "lexical" => Some(SearchMode::Lexical),
            "hybrid" => Some(SearchMode::Hybrid),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Dense => "dense",
            SearchMode::Lexical => "lexical",
            SearchMode::Hybrid => "hybrid",
        }
    }
}

/// Restricts a search to some documents; empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    pub document_ids: Vec<Uuid>,
}

impl SearchFilter {
    pub fn allows(&self, document_id: &Uuid) -> bool {
        self.document_ids.is_empty() || self.document_ids.contains(document_id)
    }
}

/// A page of a listing and the cursor for the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Rough token count for text the embedder did not tokenise: words and
/// punctuation runs, which tracks subword tokenisers within ~25% on English.
pub fn estimate_tokens(text: &str) -> u32 {
    let mut count: u32 = 0;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if !in_word {
                count = count.saturating_add(1);
                in_word = true;
            }
        } else {
            in_word = false;
            if !c.is_whitespace() {
                count = count.saturating_add(1);
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_upper_case_on_the_wire() {
        let json = serde_json::to_string(&DocumentStatus::Indexed).unwrap();
        assert_eq!(json, "\"INDEXED\"");
        assert_eq!(
            DocumentStatus::parse("processing"),
            Some(DocumentStatus::Processing)
        );
    }

    #[test]
    fn chunk_ids_sort_in_document_order() {
        let id = Uuid::nil();
        assert!(ChunkMetadata::chunk_id_for(id, 2) < ChunkMetadata::chunk_id_for(id, 10));
    }

    #[test]
    fn token_estimate_counts_words_and_punctuation() {
        assert_eq!(estimate_tokens("Hello, world!"), 4);
        assert_eq!(estimate_tokens(""), 0);
    }
}
