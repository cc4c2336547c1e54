//! The tools the agent may call. Each tool is a type with an input struct;
//! the JSON Schema comes from the struct (schemars) and the description from
//! its doc comment, so adding a tool is one small impl.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::backend::ListQuery;
use crate::chat::ToolSpec;
use crate::domain::{DocumentStatus, SearchFilter, SearchMode};
use crate::error::RagError;
use crate::parse;
use crate::retrieve::{MAX_TOP_K, SearchRequest};
use crate::service::RagService;

/// Why a tool call failed; the message goes back to the model.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("{0}")]
    Failed(String),
}

impl From<RagError> for ToolError {
    fn from(e: RagError) -> Self {
        match e {
            RagError::InvalidInput(m) => ToolError::InvalidInput(m),
            other => ToolError::Failed(other.to_string()),
        }
    }
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    /// Runs the tool; the text result is what the model reads.
    async fn call(&self, input: serde_json::Value) -> Result<String, ToolError>;
}

/// A spec whose schema and description come from the input type.
pub fn spec_for<T: JsonSchema>(name: &str) -> ToolSpec {
    let schema = schemars::schema_for!(T);
    let mut value = serde_json::to_value(&schema).unwrap_or_default();
    let description = value
        .get("description")
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_string();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("description");
        obj.remove("title");
    }
    ToolSpec {
        name: name.to_string(),
        description,
        input_schema: value,
    }
}

/// Deserialises a tool's input, reporting what is wrong to the model.
pub fn parse_input<T: DeserializeOwned>(input: serde_json::Value) -> Result<T, ToolError> {
    serde_json::from_value(input).map_err(|e| ToolError::InvalidInput(e.to_string()))
}

/// Search the indexed documents for passages relevant to a query. Returns
/// the best matching chunks with their document ids and scores.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorSearchInput {
    /// What to look for, in natural language.
    pub query: String,
    /// How many passages to return (1 to 100).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Only search this document.
    #[serde(default)]
    pub filter_document_id: Option<Uuid>,
}

fn default_top_k() -> usize {
    5
}

pub struct VectorSearchTool(pub Arc<RagService>);

#[async_trait]
impl Tool for VectorSearchTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<VectorSearchInput>("vector_search")
    }

    async fn call(&self, input: serde_json::Value) -> Result<String, ToolError> {
        let input: VectorSearchInput = parse_input(input)?;
        if input.top_k == 0 || input.top_k > MAX_TOP_K {
            return Err(ToolError::InvalidInput(format!(
                "top_k must be between 1 and {MAX_TOP_K}"
            )));
        }
        let service = &self.0;
        let (_, hits) = service
            .retriever()
            .search(&SearchRequest {
                query: input.query,
                top_k: input.top_k,
                mode: SearchMode::Hybrid,
                similarity_threshold: service.settings().similarity_threshold,
                filter: SearchFilter {
                    document_ids: input.filter_document_id.into_iter().collect(),
                },
            })
            .await?;
        let results: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                serde_json::json!({
                    "document_id": h.document_id,
                    "chunk_id": h.chunk_id,
                    "score": h.score,
                    "content": h.content,
                })
            })
            .collect();
        Ok(serde_json::to_string(&results).unwrap_or_default())
    }
}

/// Get a document's metadata, and optionally its full text, by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetDocumentInput {
    pub document_id: Uuid,
    /// Include the document's parsed text.
    #[serde(default)]
    pub include_content: bool,
}

pub struct GetDocumentTool(pub Arc<RagService>);

#[async_trait]
impl Tool for GetDocumentTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<GetDocumentInput>("get_document")
    }

    async fn call(&self, input: serde_json::Value) -> Result<String, ToolError> {
        let input: GetDocumentInput = parse_input(input)?;
        let doc = self
            .0
            .get_document(input.document_id, input.include_content)
            .await?;
        Ok(serde_json::to_string(&doc).unwrap_or_default())
    }
}

/// List the documents in the knowledge base, newest first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDocumentsInput {
    /// Only documents in this status: PENDING, PROCESSING, INDEXED or FAILED.
    #[serde(default)]
    pub status: Option<String>,
    /// At most this many documents (1 to 100).
    #[serde(default = "default_list_limit")]
    pub limit: usize,
}

fn default_list_limit() -> usize {
    20
}

pub struct ListDocumentsTool(pub Arc<RagService>);

#[async_trait]
impl Tool for ListDocumentsTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<ListDocumentsInput>("list_documents")
    }

    async fn call(&self, input: serde_json::Value) -> Result<String, ToolError> {
        let input: ListDocumentsInput = parse_input(input)?;
        let status = match input.status.as_deref() {
            None => None,
            Some(s) => Some(
                DocumentStatus::parse(s)
                    .ok_or_else(|| ToolError::InvalidInput(format!("unknown status {s:?}")))?,
            ),
        };
        if input.limit == 0 || input.limit > 100 {
            return Err(ToolError::InvalidInput(
                "limit must be between 1 and 100".into(),
            ));
        }
        let page = self
            .0
            .list_documents(&ListQuery {
                status,
                limit: input.limit,
                cursor: None,
            })
            .await?;
        let rows: Vec<serde_json::Value> = page
            .items
            .iter()
            .map(|d| {
                serde_json::json!({
                    "document_id": d.id, "title": d.title, "source": d.source,
                    "status": d.status, "chunk_count": d.chunk_count,
                })
            })
            .collect();
        Ok(serde_json::to_string(&rows).unwrap_or_default())
    }
}

/// Fetch a public web page or file by URL and return its text. Private and
/// internal addresses are refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchUrlInput {
    /// An http or https URL.
    pub url: String,
}

pub struct FetchUrlTool(pub Arc<RagService>);

/// The model reads at most this much of a fetched page.
const FETCH_TEXT_LIMIT: usize = 20_000;

#[async_trait]
impl Tool for FetchUrlTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<FetchUrlInput>("fetch_url")
    }

    async fn call(&self, input: serde_json::Value) -> Result<String, ToolError> {
        let input: FetchUrlInput = parse_input(input)?;
        let fetched = self
            .0
            .fetcher()
            .fetch(&input.url)
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let kind = parse::detect_kind(fetched.content_type.as_deref(), None, &fetched.bytes)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let bytes = fetched.bytes.clone();
        let parsed = tokio::task::spawn_blocking(move || parse::parse(kind, &bytes))
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let mut text: String = parsed.text.chars().take(FETCH_TEXT_LIMIT).collect();
        if parsed.text.chars().count() > FETCH_TEXT_LIMIT {
            text.push_str("\n[truncated]");
        }
        Ok(text)
    }
}

/// The tools a deployment offers, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: Vec<Arc<dyn Tool>>,
}

impl ToolRegistry {
    pub fn standard(service: &Arc<RagService>) -> Self {
        Self {
            tools: vec![
                Arc::new(VectorSearchTool(service.clone())),
                Arc::new(GetDocumentTool(service.clone())),
                Arc::new(ListDocumentsTool(service.clone())),
                Arc::new(FetchUrlTool(service.clone())),
            ],
        }
    }

    /// Adds a tool that exists only in some deployments, such as the
    /// knowledge base search when a knowledge base is configured.
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.push(tool);
        self
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|t| t.spec().name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_carry_the_doc_comment_and_a_json_schema() {
        let spec = spec_for::<VectorSearchInput>("vector_search");
        assert!(spec.description.starts_with("Search the indexed documents"));
        assert_eq!(spec.input_schema["type"], "object");
        assert_eq!(spec.input_schema["required"], serde_json::json!(["query"]));
        assert!(spec.input_schema["properties"]["top_k"].is_object());
    }
}
