//! The agent's `knowledge_base_search` tool over Bedrock Knowledge Bases
//! (`Retrieve` in bedrock-agent-runtime). Offered only when a knowledge
//! base id is configured.
//!
//! A knowledge base is one index for the whole account, so every retrieval
//! carries a filter on the metadata attribute `tenant` (set in each source
//! document's `.metadata.json`): a caller finds only passages marked with
//! its own tenant, and a passage marked with none is found by nobody.

use async_trait::async_trait;
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::types::{
    FilterAttribute, KnowledgeBaseQuery, KnowledgeBaseRetrievalConfiguration,
    KnowledgeBaseVectorSearchConfiguration, RetrievalFilter,
};
use rag_core::Tenant;
use rag_core::chat::ToolSpec;
use rag_core::tools::{Tool, ToolError, ToolOutput, parse_input, spec_for};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::sdk_error::{classify, retry_on_code};
use rag_core::retry::RetryPolicy;

/// Knowledge bases return at most 100 results per call.
const MAX_RESULTS: usize = 100;

/// The metadata attribute that names a passage's tenant.
pub const TENANT_ATTRIBUTE: &str = "tenant";

/// Search the organisation's Amazon Bedrock knowledge base for passages
/// relevant to a query. Returns the best passages with their source
/// locations and relevance scores.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBaseSearchInput {
    /// What to search for, in natural language.
    pub query: String,
    /// How many passages to return (1 to 100).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

fn default_top_k() -> usize {
    5
}

pub struct KnowledgeBaseSearchTool {
    client: Client,
    knowledge_base_id: String,
    retry: RetryPolicy,
}

impl KnowledgeBaseSearchTool {
    pub fn new(client: Client, knowledge_base_id: impl Into<String>, retry: RetryPolicy) -> Self {
        KnowledgeBaseSearchTool {
            client,
            knowledge_base_id: knowledge_base_id.into(),
            retry,
        }
    }
}

#[async_trait]
impl Tool for KnowledgeBaseSearchTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<KnowledgeBaseSearchInput>("knowledge_base_search")
    }

    async fn call(
        &self,
        tenant: &Tenant,
        input: serde_json::Value,
    ) -> Result<ToolOutput, ToolError> {
        let input: KnowledgeBaseSearchInput = parse_input(input)?;
        if input.query.trim().is_empty() {
            return Err(ToolError::InvalidInput("query must not be empty".into()));
        }
        if input.top_k == 0 || input.top_k > MAX_RESULTS {
            return Err(ToolError::InvalidInput(format!(
                "top_k must be between 1 and {MAX_RESULTS}"
            )));
        }
        let query = KnowledgeBaseQuery::builder().text(&input.query).build();
        let configuration = KnowledgeBaseRetrievalConfiguration::builder()
            .vector_search_configuration(
                KnowledgeBaseVectorSearchConfiguration::builder()
                    .number_of_results(input.top_k as i32)
                    .filter(RetrievalFilter::Equals(
                        FilterAttribute::builder()
                            .key(TENANT_ATTRIBUTE)
                            .value(aws_smithy_types::Document::String(tenant.to_string()))
                            .build()
                            .map_err(|e| ToolError::Failed(e.to_string()))?,
                    ))
                    .build(),
            )
            .build();
        let output = self
            .retry
            .run(
                || {
                    self.client
                        .retrieve()
                        .knowledge_base_id(&self.knowledge_base_id)
                        .retrieval_query(query.clone())
                        .retrieval_configuration(configuration.clone())
                        .send()
                },
                retry_on_code,
            )
            .await
            .map_err(|e| {
                let c = classify(e);
                tracing::warn!(code = ?c.code, cause = %c.cause, "knowledge base retrieve failed");
                ToolError::Failed(format!("the knowledge base search failed: {}", c.message))
            })?;
        let results: Vec<serde_json::Value> = output
            .retrieval_results()
            .iter()
            .map(|r| {
                let source = r
                    .location()
                    .and_then(|l| {
                        l.s3_location()
                            .and_then(|s| s.uri())
                            .or_else(|| l.web_location().and_then(|w| w.url()))
                    })
                    .unwrap_or_default();
                json!({
                    "content": r.content().map(|c| c.text()).unwrap_or_default(),
                    "source": source,
                    "score": r.score(),
                })
            })
            .collect();
        Ok(ToolOutput::Text(
            serde_json::to_string(&results).unwrap_or_default(),
        ))
    }
}
