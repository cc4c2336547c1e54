//! Builds the AWS SDK clients and the AWS backends the configuration asks
//! for. Adapters receive ready-built clients; endpoint overrides (tests,
//! local stacks) are applied here and nowhere else.

use std::sync::Arc;

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use rag_aws::{
    BedrockChatModel, BedrockReranker, DynamoDbStore, IndexLayout, RetryPolicy, S3DocumentStore,
    S3VectorStore, SqsQueue, TitanEmbedder, TitanModel,
};
use rag_core::Embedder;

use crate::config::AwsArgs;

pub async fn sdk_config(args: &AwsArgs) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(args.region.clone()))
        .load()
        .await
}

fn bedrock_client(sdk: &SdkConfig, args: &AwsArgs) -> aws_sdk_bedrockruntime::Client {
    aws_sdk_bedrockruntime::Client::from_conf(bedrock_config(sdk, args).build())
}

fn bedrock_config(sdk: &SdkConfig, args: &AwsArgs) -> aws_sdk_bedrockruntime::config::Builder {
    // The adapters retry throttling themselves with a longer jittered
    // schedule; SDK retries on top would multiply the attempts.
    let mut builder = aws_sdk_bedrockruntime::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(url) = &args.bedrock_endpoint {
        builder = builder.endpoint_url(url);
    }
    builder
}

/// A Bedrock runtime client in `region` signing with `credentials` (a use
/// case's assumed role). The SDK keeps no identity cache of its own: the
/// role's credentials cache and refresh themselves ahead of expiry.
pub fn routed_bedrock_client(
    sdk: &SdkConfig,
    args: &AwsArgs,
    region: &str,
    credentials: rag_aws::RoleCredentials,
) -> aws_sdk_bedrockruntime::Client {
    let config = bedrock_config(sdk, args)
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials)
        .identity_cache(aws_config::identity::IdentityCache::no_cache())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// The STS client roles are assumed with.
pub fn sts_client(sdk: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_sts::Client {
    let mut builder = aws_sdk_sts::config::Builder::from(sdk);
    if let Some(url) = endpoint {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_sts::Client::from_conf(builder.build())
}

fn retry_policy(args: &AwsArgs) -> RetryPolicy {
    RetryPolicy {
        max_attempts: args.bedrock_max_attempts.max(1),
        ..RetryPolicy::default()
    }
}

pub fn embedder(
    sdk: &SdkConfig,
    args: &AwsArgs,
    dimension: Option<usize>,
) -> anyhow::Result<Arc<dyn Embedder>> {
    let model = TitanModel::from_model_id(&args.bedrock_embedding_model).with_context(|| {
        format!(
            "BEDROCK_EMBEDDING_MODEL_ID={} is not a Titan text embedding model (amazon.titan-embed-text-v2:0 or amazon.titan-embed-text-v1)",
            args.bedrock_embedding_model
        )
    })?;
    let dimension = dimension.unwrap_or(model.default_dimension());
    if !model.dimensions().contains(&dimension) {
        bail!(
            "VECTOR_DIMENSION={dimension} but {} produces {:?} dimensions",
            args.bedrock_embedding_model,
            model.dimensions()
        );
    }
    embedder_on(bedrock_client(sdk, args), args, dimension)
}

/// The configured Titan model through `client`, at `dimension`.
pub fn embedder_on(
    client: aws_sdk_bedrockruntime::Client,
    args: &AwsArgs,
    dimension: usize,
) -> anyhow::Result<Arc<dyn Embedder>> {
    let embedder = TitanEmbedder::new(
        client,
        &args.bedrock_embedding_model,
        dimension,
        args.bedrock_embedding_concurrency,
        retry_policy(args),
    )?;
    Ok(Arc::new(embedder))
}

pub fn chat_model(sdk: &SdkConfig, args: &AwsArgs) -> BedrockChatModel {
    BedrockChatModel::new(bedrock_client(sdk, args), &args.bedrock_llm_model)
}

fn agent_runtime_client(sdk: &SdkConfig, args: &AwsArgs) -> aws_sdk_bedrockagentruntime::Client {
    // The adapters retry with jittered backoff themselves; SDK retries
    // underneath would multiply the attempts.
    let mut builder = aws_sdk_bedrockagentruntime::config::Builder::from(sdk)
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(url) = &args.bedrock_agent_endpoint {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_bedrockagentruntime::Client::from_conf(builder.build())
}

/// The rerank stage over Bedrock `Rerank`. A search waits for it, so it
/// tries twice at most, within `timeout` in all.
pub fn reranker(
    sdk: &SdkConfig,
    args: &AwsArgs,
    model_id: &str,
    timeout: std::time::Duration,
) -> BedrockReranker {
    BedrockReranker::new(
        agent_runtime_client(sdk, args),
        model_id,
        &args.region,
        RetryPolicy {
            max_attempts: 2,
            max_delay: timeout / 4,
            ..RetryPolicy::default()
        },
    )
}

/// The `knowledge_base_search` tool over `BEDROCK_KNOWLEDGE_BASE_ID`.
pub fn knowledge_base_tool(
    sdk: &SdkConfig,
    args: &AwsArgs,
    knowledge_base_id: &str,
) -> rag_aws::KnowledgeBaseSearchTool {
    rag_aws::KnowledgeBaseSearchTool::new(
        agent_runtime_client(sdk, args),
        knowledge_base_id,
        retry_policy(args),
    )
}

pub fn document_store(sdk: &SdkConfig, args: &AwsArgs) -> anyhow::Result<S3DocumentStore> {
    s3_store(sdk, args, &args.s3_documents_prefix)
}

/// Where direct uploads land until accepted: the same bucket, under
/// S3_UPLOADS_PREFIX.
pub fn upload_area(sdk: &SdkConfig, args: &AwsArgs) -> anyhow::Result<S3DocumentStore> {
    s3_store(sdk, args, &args.s3_uploads_prefix)
}

/// What ingestion jobs read from S3: the listed buckets only.
pub fn sync_source(
    sdk: &SdkConfig,
    args: &AwsArgs,
    max_object_bytes: u64,
) -> rag_aws::S3SyncSource {
    rag_aws::S3SyncSource::new(
        s3_client(sdk, args),
        listed_buckets(&args.sync_buckets),
        max_object_bytes,
    )
}

pub fn listed_buckets(buckets: &[String]) -> Vec<String> {
    buckets
        .iter()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect()
}

fn s3_client(sdk: &SdkConfig, args: &AwsArgs) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(url) = &args.s3_endpoint {
        // Local S3 endpoints do not resolve bucket subdomains.
        builder = builder.endpoint_url(url).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

fn s3_store(sdk: &SdkConfig, args: &AwsArgs, prefix: &str) -> anyhow::Result<S3DocumentStore> {
    let bucket = args
        .s3_bucket
        .clone()
        .context("DOCUMENT_BACKEND=s3 needs S3_BUCKET_NAME")?;
    Ok(S3DocumentStore::new(s3_client(sdk, args), bucket, prefix))
}

pub async fn vector_store(
    sdk: &SdkConfig,
    args: &AwsArgs,
    dimension: usize,
    warnings: &mut Vec<String>,
) -> anyhow::Result<S3VectorStore> {
    let index = &args.s3_vector_index;
    let store = vector_store_named(sdk, args, index, dimension, args.create_vector_index)?;
    let warning = store
        .ensure_index(args.create_vector_index)
        .await
        .with_context(|| {
            format!(
                "checking the S3 Vectors index {index} (S3_VECTOR_BUCKET_NAME, S3_VECTOR_INDEX_NAME, VECTOR_DIMENSION, S3_VECTOR_CREATE_INDEX)"
            )
        })?;
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
        warnings.push(warning);
    }
    Ok(store)
}

/// The store over the S3 Vectors index `index` (with the configured bucket
/// and layout), unchecked: `vector_store` checks it before serving, and
/// `rag-agent reindex` reads the current index through it, which needs no
/// dimension, and creates the new one.
pub fn vector_store_named(
    sdk: &SdkConfig,
    args: &AwsArgs,
    index: &str,
    dimension: usize,
    create: bool,
) -> anyhow::Result<S3VectorStore> {
    let bucket = args
        .s3_vector_bucket
        .clone()
        .or_else(|| args.s3_bucket.clone())
        .context("VECTOR_BACKEND=s3vectors needs S3_VECTOR_BUCKET_NAME (or S3_BUCKET_NAME)")?;
    let mut builder = aws_sdk_s3vectors::config::Builder::from(sdk);
    if let Some(url) = &args.s3vectors_endpoint {
        builder = builder.endpoint_url(url);
    }
    Ok(S3VectorStore::new(
        aws_sdk_s3vectors::Client::from_conf(builder.build()),
        &bucket,
        index,
        dimension,
    )
    .with_layout(if args.vector_index_per_tenant {
        IndexLayout::PerTenant { create }
    } else {
        IndexLayout::Shared
    }))
}

pub fn metadata_store(sdk: &SdkConfig, args: &AwsArgs) -> anyhow::Result<DynamoDbStore> {
    let table = args
        .dynamodb_table
        .clone()
        .context("METADATA_BACKEND=dynamodb needs DYNAMODB_TABLE_NAME")?;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = &args.dynamodb_endpoint {
        builder = builder.endpoint_url(url);
    }
    Ok(DynamoDbStore::new(
        aws_sdk_dynamodb::Client::from_conf(builder.build()),
        table,
    ))
}

/// The SQS ingest queue at `queue_url`.
pub fn ingest_queue(sdk: &SdkConfig, args: &AwsArgs, queue_url: &str) -> SqsQueue {
    let mut builder = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(url) = &args.sqs_endpoint {
        builder = builder.endpoint_url(url);
    }
    SqsQueue::new(aws_sdk_sqs::Client::from_conf(builder.build()), queue_url)
}
