//! The tools the agent may call. Each tool is a type with an input struct;
//! the JSON Schema comes from the struct (schemars) and the description from
//! its doc comment, so adding a tool is one small file with one impl.

mod documents;
mod fetch;
mod search;
mod summarize;
mod web_search;

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::catalog::Catalog;
use crate::chat::{ChatModel, ToolSpec};
use crate::domain::SourceReference;
use crate::error::RagError;
use crate::fetch::UrlFetcher;
use crate::parse::DocumentParser;
use crate::retrieve::Retriever;
use crate::tenant::Tenant;

pub use documents::{GetDocumentInput, GetDocumentTool, ListDocumentsInput, ListDocumentsTool};
pub use fetch::{FetchUrlInput, FetchUrlTool};
pub use search::{VectorSearchInput, VectorSearchTool};
pub use summarize::{SummarizeDocumentInput, SummarizeDocumentTool};
pub use web_search::{WebSearchInput, WebSearchProvider, WebSearchTool};

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

/// A chunk a tool found, with what a citation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundPassage {
    pub reference: SourceReference,
    /// The text the model reads: the chunk, merged with overlapping hits
    /// and neighbouring chunks (see `retrieve::context`).
    pub content: String,
}

/// What a tool hands back. Passages are kept structured so that the agent
/// can number them for citation across every call of a turn and report
/// exactly the chunks the model saw.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutput {
    Text(String),
    Passages(Vec<FoundPassage>),
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    /// Runs the tool on the model's input for a caller of `tenant`: a tool that reads stores
    /// passes the tenant to every call, so ids the model invents or copies
    /// from elsewhere find nothing outside it.
    async fn call(
        &self,
        tenant: &Tenant,
        input: serde_json::Value,
    ) -> Result<ToolOutput, ToolError>;
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

/// What the standard tools are built from.
#[derive(Clone)]
pub struct StandardToolParts {
    pub retriever: Retriever,
    pub catalog: Catalog,
    pub model: Arc<dyn ChatModel>,
    pub fetcher: UrlFetcher,
    pub parser: Arc<dyn DocumentParser>,
}

/// The tools a deployment offers, by name. Specs are built once, since the
/// agent sends them with every model call.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: Vec<(ToolSpec, Arc<dyn Tool>)>,
}

impl ToolRegistry {
    /// The tools every deployment has, each handed only what it uses.
    pub fn standard(parts: &StandardToolParts) -> Self {
        Self::default().with_standard(parts)
    }

    /// These tools with the standard ones built from `parts` in place of
    /// any of the same names; the deployment's other tools are kept.
    pub fn with_standard(self, parts: &StandardToolParts) -> Self {
        self.with(Arc::new(VectorSearchTool(parts.retriever.clone())))
            .with(Arc::new(GetDocumentTool(parts.catalog.clone())))
            .with(Arc::new(ListDocumentsTool(parts.catalog.clone())))
            .with(Arc::new(SummarizeDocumentTool {
                catalog: parts.catalog.clone(),
                model: parts.model.clone(),
            }))
            .with(Arc::new(FetchUrlTool {
                fetcher: parts.fetcher.clone(),
                parser: parts.parser.clone(),
            }))
    }

    /// Adds a tool that exists only in some deployments, such as the
    /// knowledge base search when a knowledge base is configured. A tool
    /// with the name of one already present replaces it.
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        let spec = tool.spec();
        self.tools.retain(|(s, _)| s.name != spec.name);
        self.tools.push((spec, tool));
        self
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|(spec, _)| spec.clone()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools
            .iter()
            .find(|(spec, _)| spec.name == name)
            .map(|(_, tool)| tool)
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
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
