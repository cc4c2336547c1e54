//! SDK clients pointed at a local server, with static credentials (neither
//! moto nor the emulator checks signatures).

#![allow(dead_code)]

use rag_core::{ChunkMetadata, DocumentChunk};
use uuid::Uuid;

pub const REGION: &str = "us-east-1";

macro_rules! client {
    ($name:ident, $krate:ident) => {
        pub fn $name(url: &str) -> $krate::Client {
            let config = $krate::Config::builder()
                .behavior_version($krate::config::BehaviorVersion::latest())
                .region($krate::config::Region::new(REGION))
                .credentials_provider($krate::config::Credentials::new(
                    "testing", "testing", None, None, "tests",
                ))
                .endpoint_url(url)
                .build();
            $krate::Client::from_conf(config)
        }
    };
}

client!(s3vectors, aws_sdk_s3vectors);
client!(dynamodb, aws_sdk_dynamodb);
client!(bedrock, aws_sdk_bedrockruntime);
client!(bedrock_agent, aws_sdk_bedrockagentruntime);

pub fn s3(url: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(url)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Bedrock clients in tests do not retry inside the SDK, so the adapters'
/// own retry is what the tests observe.
pub fn bedrock_no_sdk_retry(url: &str) -> aws_sdk_bedrockruntime::Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new(REGION))
        .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .endpoint_url(url)
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

pub fn chunk(doc: Uuid, index: u32, content: &str, embedding: Vec<f32>) -> DocumentChunk {
    DocumentChunk {
        metadata: ChunkMetadata {
            chunk_id: ChunkMetadata::chunk_id_for(doc, index),
            document_id: doc,
            chunk_index: index,
            start_char: index as u64 * 10,
            end_char: index as u64 * 10 + content.chars().count() as u64,
            token_count: 3,
            location: Default::default(),
        },
        content: content.to_string(),
        header: String::new(),
        embedding,
    }
}

/// The tenant of tests that are not about tenants.
pub fn t() -> rag_core::Tenant {
    rag_core::Tenant::default_tenant()
}
