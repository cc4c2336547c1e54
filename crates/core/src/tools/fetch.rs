//! `fetch_url`: read a public page, under the same address protections,
//! size limit and timeout as URL ingestion.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Tool, ToolError, ToolOutput, parse_input, spec_for};
use crate::chat::ToolSpec;
use crate::fetch::UrlFetcher;
use crate::parse::{self, DocumentParser};
use crate::tenant::Tenant;

/// Fetch a public web page or file by URL and return its text. Private and
/// internal addresses are refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchUrlInput {
    /// An http or https URL.
    pub url: String,
}

/// Fetches through the same fetcher as URL ingestion and parses through
/// the same sandboxed parser.
pub struct FetchUrlTool {
    pub fetcher: UrlFetcher,
    pub parser: Arc<dyn DocumentParser>,
}

/// The model reads at most this much of a fetched page.
const FETCH_TEXT_LIMIT: usize = 20_000;

#[async_trait]
impl Tool for FetchUrlTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<FetchUrlInput>("fetch_url")
    }

    async fn call(
        &self,
        // Reads the web, not a tenant's stores.
        _tenant: &Tenant,
        input: serde_json::Value,
    ) -> Result<ToolOutput, ToolError> {
        let input: FetchUrlInput = parse_input(input)?;
        let fetched = self
            .fetcher
            .fetch(&input.url)
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let kind = parse::detect_kind(fetched.content_type.as_deref(), None, &fetched.bytes)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let parsed = self
            .parser
            .parse(kind, fetched.bytes.clone())
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let mut text: String = parsed.text.chars().take(FETCH_TEXT_LIMIT).collect();
        if parsed.text.chars().count() > FETCH_TEXT_LIMIT {
            text.push_str("\n[truncated]");
        }
        Ok(ToolOutput::Text(text))
    }
}
