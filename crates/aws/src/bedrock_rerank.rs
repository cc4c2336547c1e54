//! A `Reranker` over the Bedrock Agent Runtime `Rerank` API, with Amazon's
//! (`amazon.rerank-v1:0`) or Cohere's (`cohere.rerank-v3-5:0`) model. The
//! API names the model by its foundation-model ARN in the client's region.

use async_trait::async_trait;
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::types::{
    BedrockRerankingConfiguration, BedrockRerankingModelConfiguration, RerankDocument,
    RerankDocumentType, RerankQuery, RerankQueryContentType, RerankSource, RerankSourceType,
    RerankTextDocument, RerankingConfiguration, RerankingConfigurationType,
};
use rag_core::error::ErrorClass;
use rag_core::rerank::{RerankError, Reranker};
use rag_core::retry::RetryPolicy;

use crate::sdk_error::{classify, retry_on_code};

/// Regions whose Bedrock offers each rerank model, per the Bedrock user
/// guide ("Supported Regions and models for reranking", checked 2026-12).
pub const RERANK_MODEL_REGIONS: &[(&str, &[&str])] = &[
    (
        "amazon.rerank-v1:0",
        &[
            "ap-northeast-1",
            "ca-central-1",
            "eu-central-1",
            "us-west-2",
        ],
    ),
    (
        "cohere.rerank-v3-5:0",
        &[
            "ap-northeast-1",
            "ca-central-1",
            "eu-central-1",
            "us-east-1",
            "us-west-2",
        ],
    ),
];

/// Why `model_id` cannot rerank in `region`, when the documentation says
/// it cannot; `None` when it is offered there or the model is unknown to
/// this list (newer models are let through to the service).
pub fn rerank_region_problem(model_id: &str, region: &str) -> Option<String> {
    let (_, regions) = RERANK_MODEL_REGIONS.iter().find(|(m, _)| *m == model_id)?;
    (!regions.contains(&region)).then(|| {
        format!(
            "Bedrock does not offer the rerank model {model_id} in {region}; it is offered in {}",
            regions.join(", ")
        )
    })
}

pub struct BedrockReranker {
    client: Client,
    model_arn: String,
    name: String,
    retry: RetryPolicy,
}

impl BedrockReranker {
    /// `region` is the client's: the model ARN must name the region the
    /// call goes to.
    pub fn new(client: Client, model_id: &str, region: &str, retry: RetryPolicy) -> Self {
        Self {
            client,
            model_arn: format!("arn:aws:bedrock:{region}::foundation-model/{model_id}"),
            name: format!("bedrock:{model_id}"),
            retry,
        }
    }
}

#[async_trait]
impl Reranker for BedrockReranker {
    fn name(&self) -> &str {
        &self.name
    }

    async fn score(&self, query: &str, documents: &[String]) -> Result<Vec<f32>, RerankError> {
        let query = RerankQuery::builder()
            .r#type(RerankQueryContentType::Text)
            .text_query(text_document(query))
            .build()
            .map_err(RerankError::permanent)?;
        let sources = documents
            .iter()
            .map(|d| {
                RerankSource::builder()
                    .r#type(RerankSourceType::Inline)
                    .inline_document_source(
                        RerankDocument::builder()
                            .r#type(RerankDocumentType::Text)
                            .text_document(text_document(d))
                            .build()
                            .map_err(RerankError::permanent)?,
                    )
                    .build()
                    .map_err(RerankError::permanent)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let configuration = RerankingConfiguration::builder()
            .r#type(RerankingConfigurationType::BedrockRerankingModel)
            .bedrock_reranking_configuration(
                BedrockRerankingConfiguration::builder()
                    .number_of_results(documents.len() as i32)
                    .model_configuration(
                        BedrockRerankingModelConfiguration::builder()
                            .model_arn(&self.model_arn)
                            .build()
                            .map_err(RerankError::permanent)?,
                    )
                    .build(),
            )
            .build()
            .map_err(RerankError::permanent)?;
        let output = self
            .retry
            .run(
                || {
                    self.client
                        .rerank()
                        .queries(query.clone())
                        .set_sources(Some(sources.clone()))
                        .reranking_configuration(configuration.clone())
                        .send()
                },
                retry_on_code,
            )
            .await
            .map_err(|e| {
                let c = classify(e);
                if c.throttled {
                    return RerankError::Throttled;
                }
                match c.class {
                    ErrorClass::Invalid => RerankError::Invalid(c.message),
                    ErrorClass::Transient => RerankError::Transient(c.cause),
                    ErrorClass::NotFound | ErrorClass::Permanent => RerankError::Permanent(c.cause),
                }
            })?;
        let mut scores: Vec<Option<f32>> = vec![None; documents.len()];
        for result in output.results() {
            let index = usize::try_from(result.index())
                .ok()
                .filter(|&i| i < documents.len())
                .ok_or_else(|| {
                    RerankError::Unreadable(format!(
                        "result index {} is out of range",
                        result.index()
                    ))
                })?;
            scores[index] = Some(result.relevance_score());
        }
        // Every document was asked for; one left out ranks last.
        Ok(scores.into_iter().map(|s| s.unwrap_or(f32::MIN)).collect())
    }
}

fn text_document(text: &str) -> RerankTextDocument {
    RerankTextDocument::builder().text(text).build()
}
