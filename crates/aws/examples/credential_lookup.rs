//! What a Bedrock call of a routed use case pays for its credentials once
//! they are cached: the role is assumed once through moto's STS, then the
//! cached credentials are asked for as the SDK asks before each call.
//! Prints the median and 99th percentile of one lookup, and the STS calls
//! made (one).
//!
//!     cargo run --release -p rag-aws --example credential_lookup

use std::time::{Duration, Instant};

use aws_credential_types::provider::ProvideCredentials;
use rag_aws::{RoleCredentials, RoleSource, RoleSpec};

#[tokio::main]
async fn main() {
    let moto = rag_aws_emulator::MotoServer::start();
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .endpoint_url(&moto.url)
        .build();
    let role = RoleCredentials::new(
        aws_sdk_sts::Client::from_conf(config),
        RoleSpec {
            role_arn: "arn:aws:iam::111111111111:role/ACME-GenAI-Search-BedrockInvokeRole".into(),
            session_name: "rag-agent-search".into(),
            source: RoleSource::AssumeRole { external_id: None },
            duration: Duration::from_secs(3600),
            refresh_margin: Duration::from_secs(300),
        },
    );
    let started = Instant::now();
    role.provide_credentials().await.expect("assume the role");
    println!(
        "first lookup (AssumeRole through moto): {:?}",
        started.elapsed()
    );
    let mut samples = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let started = Instant::now();
        let credentials = role.provide_credentials().await.unwrap();
        samples.push(started.elapsed());
        std::hint::black_box(credentials);
    }
    samples.sort();
    println!(
        "warm lookup over {} calls: p50 {:?}, p99 {:?}, max {:?}; STS calls: {}",
        samples.len(),
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        samples[samples.len() - 1],
        role.fetches()
    );
}
