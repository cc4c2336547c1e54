//! `vector_search`: the agent's view of the document index.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use uuid::Uuid;

use super::{FoundPassage, Tool, ToolError, ToolOutput, parse_input, spec_for};
use crate::chat::ToolSpec;
use crate::domain::SearchFilter;
use crate::retrieve::{Retriever, SearchParams};
use crate::tenant::Tenant;

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

/// Searches with the deployment's default mode and threshold.
pub struct VectorSearchTool(pub Retriever);

#[async_trait]
impl Tool for VectorSearchTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<VectorSearchInput>("vector_search")
    }

    async fn call(
        &self,
        tenant: &Tenant,
        input: serde_json::Value,
    ) -> Result<ToolOutput, ToolError> {
        let input: VectorSearchInput = parse_input(input)?;
        let request = self.0.request(
            tenant,
            input.query,
            SearchParams {
                top_k: Some(input.top_k),
                filter: SearchFilter {
                    document_ids: input.filter_document_id.into_iter().collect(),
                },
                ..SearchParams::default()
            },
        )?;
        let retrieved = self.0.retrieve(&request).await?;
        Ok(ToolOutput::Passages(
            self.0
                .read(tenant, &retrieved)
                .await
                .into_iter()
                .map(|passage| FoundPassage {
                    reference: passage.source,
                    content: passage.text,
                })
                .collect(),
        ))
    }
}
