//! `web_search`: a pluggable HTTP search provider. The deployment chooses
//! the provider; when none is configured the tool is not offered at all,
//! so the model never plans around a tool that can only fail.

use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Tool, ToolError, ToolOutput, parse_input, spec_for};
use crate::chat::ToolSpec;
use crate::tenant::Tenant;

/// Search the public web. Returns result titles, URLs and snippets; use
/// `fetch_url` to read a result in full.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSearchInput {
    /// What to search for.
    pub query: String,
    /// How many results to return (1 to 10).
    #[serde(default = "default_max_results")]
    #[schemars(range(min = 1, max = 10))]
    pub max_results: usize,
}

fn default_max_results() -> usize {
    5
}

const MAX_RESULTS: usize = 10;
const SNIPPET_CHARS: usize = 400;

/// Which search service answers, and where.
#[derive(Debug, Clone, PartialEq)]
pub enum WebSearchProvider {
    /// A SearXNG instance's JSON API (`/search?format=json`).
    Searxng { base_url: String },
    /// The Brave Search API (`/res/v1/web/search`).
    Brave { base_url: String, api_key: String },
}

impl WebSearchProvider {
    pub const BRAVE_URL: &'static str = "https://api.search.brave.com";
}

pub struct WebSearchTool {
    client: reqwest::Client,
    provider: WebSearchProvider,
}

impl WebSearchTool {
    /// The provider URL is the operator's choice, so it is not subject to
    /// the private-address checks that protect `fetch_url`.
    pub fn new(provider: WebSearchProvider, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("rag-agent/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .build()?;
        Ok(Self { client, provider })
    }

    async fn search(&self, query: &str, count: usize) -> Result<Vec<WebResult>, ToolError> {
        let request = match &self.provider {
            WebSearchProvider::Searxng { base_url } => self
                .client
                .get(format!("{}/search", base_url.trim_end_matches('/')))
                .query(&[("q", query), ("format", "json")]),
            WebSearchProvider::Brave { base_url, api_key } => self
                .client
                .get(format!(
                    "{}/res/v1/web/search",
                    base_url.trim_end_matches('/')
                ))
                .query(&[("q", query.to_string()), ("count", count.to_string())])
                .header("X-Subscription-Token", api_key)
                .header("Accept", "application/json"),
        };
        let response = request
            .send()
            .await
            .map_err(|e| ToolError::Failed(format!("the search provider is unreachable: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ToolError::Failed(format!(
                "the search provider answered HTTP {status}"
            )));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| ToolError::Failed(format!("unreadable search results: {e}")))?;
        let (items, snippet_field) = match &self.provider {
            WebSearchProvider::Searxng { .. } => (&body["results"], "content"),
            WebSearchProvider::Brave { .. } => (&body["web"]["results"], "description"),
        };
        Ok(items
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                Some(WebResult {
                    title: item["title"].as_str()?.to_string(),
                    url: item["url"].as_str()?.to_string(),
                    snippet: item[snippet_field]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(SNIPPET_CHARS)
                        .collect(),
                })
            })
            .take(count)
            .collect())
    }
}

struct WebResult {
    title: String,
    url: String,
    snippet: String,
}

#[async_trait]
impl Tool for WebSearchTool {
    fn spec(&self) -> ToolSpec {
        spec_for::<WebSearchInput>("web_search")
    }

    async fn call(
        &self,
        // Reads the web, not a tenant's stores.
        _tenant: &Tenant,
        input: serde_json::Value,
    ) -> Result<ToolOutput, ToolError> {
        let input: WebSearchInput = parse_input(input)?;
        if input.query.trim().is_empty() {
            return Err(ToolError::InvalidInput("query must not be empty".into()));
        }
        if input.max_results == 0 || input.max_results > MAX_RESULTS {
            return Err(ToolError::InvalidInput(format!(
                "max_results must be between 1 and {MAX_RESULTS}"
            )));
        }
        let results = self.search(&input.query, input.max_results).await?;
        if results.is_empty() {
            return Ok(ToolOutput::Text("No web results.".to_string()));
        }
        let text = results
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{}. {}\n{}\n{}", i + 1, r.title, r.url, r.snippet))
            .collect::<Vec<_>>()
            .join("\n\n");
        Ok(ToolOutput::Text(text))
    }
}
