//! Reranking as Bedrock's `Rerank` (the Agent Runtime's restJson wire
//! format) and as the `/rerank` API of TEI, vLLM, llama.cpp and Cohere
//! answer it. Relevance is the cosine of hashed bags of words of the query
//! and each document, so a test can predict the order, and it differs from
//! what the embeddings of a search found.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::bedrock::hashed_bag_of_words;
use crate::{AwsError, EmulatorState, json_response};

/// The rerank models Bedrock offers.
const BEDROCK_RERANK_MODELS: &[&str] = &["amazon.rerank-v1:0", "cohere.rerank-v3-5:0"];

/// Documents one Bedrock `Rerank` call may carry.
const MAX_SOURCES: usize = 1000;

/// How relevant `document` is to `query`, in [0, 1].
pub(crate) fn relevance(query: &str, document: &str) -> f32 {
    let q = hashed_bag_of_words(query, 512);
    let d = hashed_bag_of_words(document, 512);
    let dot: f32 = q.iter().zip(&d).map(|(a, b)| a * b).sum();
    let norm =
        q.iter().map(|x| x * x).sum::<f32>().sqrt() * d.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        0.0
    } else {
        (dot / norm).clamp(0.0, 1.0)
    }
}

/// `(index, score)` of each document, best first, at most `limit`.
pub(crate) fn ranked(query: &str, documents: &[&str], limit: usize) -> Vec<(usize, f32)> {
    let mut scored: Vec<(usize, f32)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| (i, relevance(query, d)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(limit);
    scored
}

/// Bedrock Agent Runtime `Rerank`.
pub async fn bedrock_rerank(State(state): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let bedrock = &state.bedrock;
    if let Err(fault) = bedrock.before_call(body.len()).await {
        return fault.error().into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return AwsError::validation(format!("malformed request: {e}")).into_response(),
    };
    bedrock
        .rerank_requests
        .lock()
        .unwrap()
        .push(request.clone());
    match bedrock_results(&request) {
        Ok(results) => json_response(200, &json!({"results": results})),
        Err(e) => e.into_response(),
    }
}

fn bedrock_results(request: &Value) -> Result<Vec<Value>, AwsError> {
    let queries = request
        .get("queries")
        .and_then(Value::as_array)
        .ok_or_else(|| AwsError::validation("queries is required"))?;
    let [query] = queries.as_slice() else {
        return Err(AwsError::validation("queries must hold exactly one query"));
    };
    if query.get("type").and_then(Value::as_str) != Some("TEXT") {
        return Err(AwsError::validation("query type must be TEXT"));
    }
    let query = query
        .pointer("/textQuery/text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AwsError::validation("textQuery.text is required"))?;
    let sources = request
        .get("sources")
        .and_then(Value::as_array)
        .filter(|s| (1..=MAX_SOURCES).contains(&s.len()))
        .ok_or_else(|| {
            AwsError::validation(format!("sources must hold 1 to {MAX_SOURCES} documents"))
        })?;
    let mut documents = Vec::with_capacity(sources.len());
    for source in sources {
        if source.get("type").and_then(Value::as_str) != Some("INLINE")
            || source
                .pointer("/inlineDocumentSource/type")
                .and_then(Value::as_str)
                != Some("TEXT")
        {
            return Err(AwsError::validation(
                "the emulator reranks INLINE sources of type TEXT",
            ));
        }
        documents.push(
            source
                .pointer("/inlineDocumentSource/textDocument/text")
                .and_then(Value::as_str)
                .ok_or_else(|| AwsError::validation("textDocument.text is required"))?,
        );
    }
    let configuration = request
        .get("rerankingConfiguration")
        .ok_or_else(|| AwsError::validation("rerankingConfiguration is required"))?;
    if configuration.get("type").and_then(Value::as_str) != Some("BEDROCK_RERANKING_MODEL") {
        return Err(AwsError::validation(
            "rerankingConfiguration.type must be BEDROCK_RERANKING_MODEL",
        ));
    }
    let arn = configuration
        .pointer("/bedrockRerankingConfiguration/modelConfiguration/modelArn")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let model = arn
        .strip_prefix("arn:aws:bedrock:")
        .and_then(|rest| rest.split_once("::foundation-model/"))
        .filter(|(region, _)| !region.is_empty())
        .map(|(_, model)| model)
        .filter(|model| BEDROCK_RERANK_MODELS.contains(model));
    if model.is_none() {
        return Err(AwsError::validation(format!(
            "The provided model identifier {arn} is invalid."
        )));
    }
    let limit = configuration
        .pointer("/bedrockRerankingConfiguration/numberOfResults")
        .and_then(Value::as_u64)
        .map_or(documents.len(), |n| n as usize);
    if limit == 0 || limit > MAX_SOURCES {
        return Err(AwsError::validation(format!(
            "numberOfResults must be between 1 and {MAX_SOURCES}"
        )));
    }
    Ok(ranked(query, &documents, limit)
        .into_iter()
        .map(|(index, score)| json!({"index": index, "relevanceScore": score}))
        .collect())
}

/// The shared `/rerank` API's answer to `request`, or the message of a
/// 400 reply.
pub(crate) fn http_results(request: &Value) -> Result<Value, String> {
    let query = request
        .get("query")
        .and_then(Value::as_str)
        .filter(|q| !q.is_empty())
        .ok_or("query is required")?;
    let documents: Vec<&str> = request
        .get("documents")
        .and_then(Value::as_array)
        .ok_or("documents is required")?
        .iter()
        .map(|d| d.as_str().ok_or("each document must be a string"))
        .collect::<Result<_, _>>()?;
    let limit = request
        .get("top_n")
        .and_then(Value::as_u64)
        .map_or(documents.len(), |n| n as usize);
    let results: Vec<Value> = ranked(query, &documents, limit)
        .into_iter()
        .map(|(index, score)| json!({"index": index, "relevance_score": score}))
        .collect();
    Ok(json!({"model": request.get("model"), "results": results}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_sharing_the_query_words_rank_first() {
        let order = ranked(
            "how to borrow a value",
            &["the weather today", "borrow a value by reference", "value"],
            3,
        );
        assert_eq!(order.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2, 0]);
        assert!(order[0].1 > order[1].1 && order[2].1 == 0.0);
    }
}
