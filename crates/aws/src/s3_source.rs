//! S3 prefixes as a source of ingestion jobs (`s3://bucket/prefix/`), only
//! in the buckets the deployment lists (the role's policy names the same
//! buckets). Each object's version is its ETag.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use rag_core::ingest::sync::{SourceItem, SourceObject, SyncSource};
use rag_core::{RagError, StoreError};

use crate::sdk_error::classify;

/// The most objects one job may list.
const MAX_OBJECTS: usize = 100_000;

pub struct S3SyncSource {
    client: Client,
    buckets: Vec<String>,
    /// A larger object fails its item without being read.
    max_object_bytes: u64,
}

impl S3SyncSource {
    pub fn new(client: Client, buckets: Vec<String>, max_object_bytes: u64) -> Self {
        Self {
            client,
            buckets,
            max_object_bytes,
        }
    }

    /// The bucket and key (or prefix) of an `s3://` URL in a listed bucket.
    fn allowed<'a>(&self, url: &'a str) -> Result<(&'a str, &'a str), RagError> {
        let (bucket, key) = url
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/').or(Some((rest, ""))))
            .filter(|(bucket, _)| !bucket.is_empty())
            .ok_or_else(|| RagError::invalid(format!("{url:?} is not s3://bucket/prefix/")))?;
        if !self.buckets.iter().any(|b| b == bucket) {
            return Err(RagError::invalid(format!(
                "the bucket {bucket} is not among RAG_AGENT_SYNC_BUCKETS"
            )));
        }
        Ok((bucket, key))
    }
}

fn store_error(e: StoreError) -> RagError {
    RagError::Store(e)
}

#[async_trait]
impl SyncSource for S3SyncSource {
    async fn list(&self, location: &str) -> Result<Vec<SourceItem>, RagError> {
        let (bucket, prefix) = self.allowed(location)?;
        let mut items = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                store_error(classify(e).into_store_error(|| format!("bucket {bucket}")))
            })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                // Folder markers hold nothing.
                if key.ends_with('/') {
                    continue;
                }
                if items.len() == MAX_OBJECTS {
                    return Err(RagError::invalid(format!(
                        "{location} holds more than {MAX_OBJECTS} objects; sync a narrower prefix"
                    )));
                }
                items.push(SourceItem {
                    key: format!("s3://{bucket}/{key}"),
                    version: object.e_tag().unwrap_or_default().to_string(),
                });
            }
        }
        Ok(items)
    }

    async fn fetch(&self, url: &str) -> Result<SourceObject, RagError> {
        let (bucket, key) = self.allowed(url)?;
        let output = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error(classify(e).into_store_error(|| url.to_string())))?;
        if output.content_length().unwrap_or(0) as u64 > self.max_object_bytes {
            return Err(RagError::PayloadTooLarge {
                limit_bytes: self.max_object_bytes,
            });
        }
        let content_type = output.content_type().map(str::to_string);
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| store_error(StoreError::Transient(Box::new(e))))?
            .into_bytes();
        Ok(SourceObject {
            bytes,
            content_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_buckets_are_read() {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .build();
        let source = S3SyncSource::new(Client::from_conf(config), vec!["docs".into()], 10);
        assert_eq!(
            source.allowed("s3://docs/handbook/").unwrap(),
            ("docs", "handbook/")
        );
        assert_eq!(source.allowed("s3://docs").unwrap(), ("docs", ""));
        for refused in ["s3://other/x", "s3:///x", "docs/x", "s3://"] {
            assert!(source.allowed(refused).is_err(), "{refused}");
        }
    }
}
