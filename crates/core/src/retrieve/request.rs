//! `SearchRequest`: the one place a search's query text, `top_k`,
//! threshold, mode and filter are checked. Every caller (`/query`, chat
//! turns, the agent's `vector_search`) builds one here, so a limit changes
//! in one line and every path says the same thing about it.

use crate::domain::{SearchFilter, SearchMode};
use crate::error::RagError;
use crate::tenant::Tenant;

/// The most passages one search may return.
pub const MAX_TOP_K: usize = 100;
/// The longest question, in characters. Long enough for a pasted paragraph,
/// short enough that its embedding and prompt stay small.
pub const MAX_QUERY_CHARS: usize = 8000;

/// A validated search. Its fields are private so that no path can skip the
/// checks in [`SearchRequest::new`].
#[derive(Debug, Clone)]
pub struct SearchRequest {
    tenant: Tenant,
    query: String,
    top_k: usize,
    mode: SearchMode,
    similarity_threshold: f32,
    filter: SearchFilter,
    rerank: bool,
}

/// A deployment's defaults for what a request leaves out; checked by the
/// same rules when configuration sets them.
#[derive(Debug, Clone, Copy)]
pub struct SearchDefaults {
    pub top_k: usize,
    pub similarity_threshold: f32,
    pub mode: SearchMode,
    /// Whether a request that does not say is reranked (only where the
    /// deployment has a reranker).
    pub rerank: bool,
}

impl Default for SearchDefaults {
    fn default() -> Self {
        Self {
            top_k: 5,
            similarity_threshold: 0.2,
            mode: SearchMode::Hybrid,
            rerank: false,
        }
    }
}

impl SearchDefaults {
    /// Checks defaults from configuration with the rules requests obey.
    pub fn validate(&self) -> Result<(), RagError> {
        check_top_k(self.top_k)?;
        check_threshold(self.similarity_threshold)
    }
}

/// What a caller asks, before defaults fill the gaps.
#[derive(Debug, Clone, Default)]
pub struct SearchParams {
    pub top_k: Option<usize>,
    pub similarity_threshold: Option<f32>,
    pub mode: Option<SearchMode>,
    pub filter: SearchFilter,
    /// Rerank the candidates; `None` takes the deployment's default.
    pub rerank: Option<bool>,
}

impl SearchRequest {
    pub fn new(
        tenant: &Tenant,
        query: impl Into<String>,
        params: SearchParams,
        defaults: &SearchDefaults,
    ) -> Result<Self, RagError> {
        let query = query.into();
        check_question("query", &query)?;
        let top_k = params.top_k.unwrap_or(defaults.top_k);
        check_top_k(top_k)?;
        let similarity_threshold = params
            .similarity_threshold
            .unwrap_or(defaults.similarity_threshold);
        check_threshold(similarity_threshold)?;
        Ok(Self {
            tenant: tenant.clone(),
            query,
            top_k,
            mode: params.mode.unwrap_or(defaults.mode),
            similarity_threshold,
            filter: params.filter,
            rerank: params.rerank.unwrap_or(defaults.rerank),
        })
    }

    /// Whose chunks are searched; the stores see no others.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    pub fn query(&self) -> &str {
        &self.query
    }

    pub fn top_k(&self) -> usize {
        self.top_k
    }

    pub fn mode(&self) -> SearchMode {
        self.mode
    }

    /// Dense hits below this cosine similarity are dropped.
    pub fn similarity_threshold(&self) -> f32 {
        self.similarity_threshold
    }

    pub fn filter(&self) -> &SearchFilter {
        &self.filter
    }

    /// Whether the candidates go through the rerank stage.
    pub fn rerank(&self) -> bool {
        self.rerank
    }
}

/// The rule for a question's text, wherever it arrives (`what` names it in
/// the message): not all whitespace, at most `MAX_QUERY_CHARS` characters.
pub fn check_question(what: &str, text: &str) -> Result<(), RagError> {
    if text.trim().is_empty() {
        return Err(RagError::invalid(format!("the {what} must not be empty")));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(RagError::invalid(format!(
            "the {what} is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    Ok(())
}

fn check_top_k(top_k: usize) -> Result<(), RagError> {
    if top_k == 0 || top_k > MAX_TOP_K {
        return Err(RagError::invalid(format!(
            "top_k must be between 1 and {MAX_TOP_K}"
        )));
    }
    Ok(())
}

fn check_threshold(threshold: f32) -> Result<(), RagError> {
    if !(-1.0..=1.0).contains(&threshold) {
        return Err(RagError::invalid(
            "similarity_threshold must be between -1 and 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, params: SearchParams) -> Result<SearchRequest, RagError> {
        SearchRequest::new(
            &Tenant::default_tenant(),
            query,
            params,
            &SearchDefaults::default(),
        )
    }

    #[test]
    fn defaults_fill_what_the_request_leaves_out() {
        let r = request("ownership", SearchParams::default()).unwrap();
        assert_eq!((r.top_k(), r.mode()), (5, SearchMode::Hybrid));
        assert_eq!(r.similarity_threshold(), 0.2);
    }

    #[test]
    fn every_limit_is_checked_here() {
        for (query, params) in [
            (" \n\t", SearchParams::default()),
            (
                &"x".repeat(MAX_QUERY_CHARS + 1) as &str,
                SearchParams::default(),
            ),
            (
                "q",
                SearchParams {
                    top_k: Some(0),
                    ..Default::default()
                },
            ),
            (
                "q",
                SearchParams {
                    top_k: Some(MAX_TOP_K + 1),
                    ..Default::default()
                },
            ),
            (
                "q",
                SearchParams {
                    similarity_threshold: Some(1.5),
                    ..Default::default()
                },
            ),
            (
                "q",
                SearchParams {
                    similarity_threshold: Some(f32::NAN),
                    ..Default::default()
                },
            ),
        ] {
            let error = request(query, params).unwrap_err();
            assert!(matches!(error, RagError::InvalidInput(_)), "{error}");
        }
        let longest = "é".repeat(MAX_QUERY_CHARS);
        assert!(
            request(
                &longest,
                SearchParams {
                    top_k: Some(MAX_TOP_K),
                    ..Default::default()
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn configured_defaults_obey_the_same_rules() {
        let bad = SearchDefaults {
            top_k: 0,
            ..SearchDefaults::default()
        };
        assert!(bad.validate().is_err());
        assert!(SearchDefaults::default().validate().is_ok());
    }
}
