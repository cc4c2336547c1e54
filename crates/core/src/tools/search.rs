//! `vector_search`: the agent's view of the document index.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use uuid::Uuid;

use super::{FoundPassage, Tool, ToolError, ToolOutput, parse_input, spec_for};
use crate::chat::ToolSpec;
use crate::domain::SearchFilter;
use crate::retrieve::{MAX_TOP_K, SearchRequest};
use crate::service::RagService;

/// Search the indexed documents for passages relevant to a query. Returns
/// the best matching chunks, numbered for citation, with their document ids
/// and scores.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VectorSearchInput {
    /// What to look for, in natural language.
    pub query: String,
    /// How many passages to return (1 to 100).
    #[serde(default = "default_top_k")]
    #[schemars(range(min = 1, max = 100))]
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

    async fn call(&self, input: serde_json::Value) -> Result<ToolOutput, ToolError> {
        let input: VectorSearchInput = parse_input(input)?;
        if input.query.trim().is_empty() {
            return Err(ToolError::InvalidInput("query must not be empty".into()));
        }
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
                mode: service.settings().search_mode,
                similarity_threshold: service.settings().similarity_threshold,
                filter: SearchFilter {
                    document_ids: input.filter_document_id.into_iter().collect(),
                },
            })
            .await?;
        let references = service.source_references(&hits).await?;
        Ok(ToolOutput::Passages(
            references
                .into_iter()
                .zip(hits)
                .map(|(reference, hit)| FoundPassage {
                    reference,
                    content: hit.content,
                })
                .collect(),
        ))
    }
}
