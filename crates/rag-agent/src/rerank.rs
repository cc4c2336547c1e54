//! Builds the rerank stage `RERANK_PROVIDER` asks for, or says at start-up
//! why the configuration cannot have it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use aws_config::SdkConfig;
use rag_core::chat::ChatModel;
use rag_core::rerank::{LlmReranker, MAX_RERANK_CANDIDATES, Reranker, Reranking};
use rag_openai::{HttpRerankConfig, HttpReranker};

use crate::aws;
use crate::config::{LlmProvider, RerankArgs, RerankProviderArg, ServeArgs};

/// The rerank stage, or `None` for `RERANK_PROVIDER=none`. `chat` is the
/// deployment's chat model, which the `llm` provider asks.
pub fn reranking(
    args: &ServeArgs,
    sdk: &Option<SdkConfig>,
    chat: &Arc<dyn ChatModel>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<Reranking>> {
    let rerank = &args.rerank;
    if rerank.rerank_provider == RerankProviderArg::None {
        return Ok(None);
    }
    if rerank.rerank_candidates == 0 || rerank.rerank_candidates > MAX_RERANK_CANDIDATES {
        bail!("RERANK_CANDIDATES must be between 1 and {MAX_RERANK_CANDIDATES}");
    }
    let timeout = Duration::from_secs(rerank.rerank_timeout_secs.max(1));
    let reranker: Arc<dyn Reranker> = match (rerank.rerank_provider, sdk) {
        (RerankProviderArg::None, _) => unreachable!("handled above"),
        (RerankProviderArg::Bedrock, Some(sdk)) => {
            if let Some(problem) =
                rag_aws::rerank_region_problem(&rerank.bedrock_rerank_model, &args.aws.region)
            {
                tracing::warn!("{problem}");
                warnings.push(format!(
                    "{problem}; searches keep retrieval's order until BEDROCK_RERANK_MODEL_ID or AWS_REGION changes"
                ));
            }
            Arc::new(aws::reranker(
                sdk,
                &args.aws,
                &rerank.bedrock_rerank_model,
                timeout,
            ))
        }
        (RerankProviderArg::Bedrock, None) => {
            unreachable!("RERANK_PROVIDER=bedrock always loads the SDK config")
        }
        (RerankProviderArg::Http, _) => Arc::new(http_reranker(rerank, timeout)?),
        (RerankProviderArg::Llm, _) => {
            if args.llm_provider == LlmProvider::Extractive {
                bail!(
                    "RERANK_PROVIDER=llm ranks passages with the chat model, and the extractive default is not one; set LLM_PROVIDER=bedrock or openai, or RERANK_PROVIDER=bedrock or http"
                );
            }
            Arc::new(LlmReranker::new(chat.clone()))
        }
    };
    Ok(Some(Reranking {
        reranker,
        candidates: rerank.rerank_candidates,
        by_default: true,
        timeout,
    }))
}

fn http_reranker(rerank: &RerankArgs, timeout: Duration) -> anyhow::Result<HttpReranker> {
    let Some(url) = rerank
        .rerank_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        bail!(
            "RERANK_PROVIDER=http needs RERANK_URL, the whole /rerank endpoint (for example http://127.0.0.1:8080/v1/rerank)"
        );
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("RERANK_URL must be an http:// or https:// URL");
    }
    let Some(model) = rerank
        .rerank_model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    else {
        bail!(
            "RERANK_PROVIDER=http needs RERANK_MODEL, the reranking model the server is asked for"
        );
    };
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| anyhow::anyhow!("building the rerank client: {e}"))?;
    Ok(HttpReranker::new(
        client,
        HttpRerankConfig {
            url: url.to_string(),
            model: model.to_string(),
            api_key: rerank.rerank_api_key.clone(),
            timeout,
        },
    ))
}
