//! `get_document` and `list_documents`: what the knowledge base holds.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use uuid::Uuid;

use super::{Tool, ToolError, ToolOutput, parse_input, spec_for};
use crate::backend::ListQuery;
use crate::catalog::Catalog;
use crate::chat::ToolSpec;
use crate::domain::DocumentStatus;
use crate::tenant::Tenant;

/// Get a document's metadata, and optionally its full text, by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetDocumentInput {
    pub document_id: Uuid,
    /// Include the document's parsed text.
    #[serde(default)]
    pub include_content: bool,
}

pub struct GetDocumentTool(pub Catalog);

#[async_trait]
impl Tool for GetDocumentTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<GetDocumentInput>("get_document")
    }

    async fn call(
        &self,
        tenant: &Tenant,
        input: serde_json::Value,
    ) -> Result<ToolOutput, ToolError> {
        let input: GetDocumentInput = parse_input(input)?;
        let doc = self
            .0
            .get_document(tenant, input.document_id, input.include_content)
            .await?;
        Ok(ToolOutput::Text(
            serde_json::to_string(&doc).unwrap_or_default(),
        ))
    }
}

/// List the documents in the knowledge base, newest first, with their ids,
/// titles, sources, statuses and chunk counts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDocumentsInput {
    /// Only documents in this status.
    #[serde(default)]
    pub status: Option<DocumentStatus>,
    /// At most this many documents (1 to 100).
    #[serde(default = "default_list_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub limit: usize,
}

fn default_list_limit() -> usize {
    20
}

pub struct ListDocumentsTool(pub Catalog);

#[async_trait]
impl Tool for ListDocumentsTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<ListDocumentsInput>("list_documents")
    }

    async fn call(
        &self,
        tenant: &Tenant,
        input: serde_json::Value,
    ) -> Result<ToolOutput, ToolError> {
        let input: ListDocumentsInput = parse_input(input)?;
        if input.limit == 0 || input.limit > 100 {
            return Err(ToolError::InvalidInput(
                "limit must be between 1 and 100".into(),
            ));
        }
        let page = self
            .0
            .list_documents(
                tenant,
                &ListQuery {
                    status: input.status,
                    limit: input.limit,
                    cursor: None,
                },
            )
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
        Ok(ToolOutput::Text(
            serde_json::to_string(&rows).unwrap_or_default(),
        ))
    }
}
