//! Token buckets as items (`RATE#<key>` / `BUCKET`: tokens and the
//! millisecond they were counted at), updated with a conditional write on
//! the time read, so concurrent instances never both spend the same token:
//! the loser reads again. Items expire through the table's TTL attribute
//! (`ttl`) once a bucket would be full again.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use rag_core::StoreError;
use rag_core::ratelimit::{Bucket, RateDecision, RateLimiter};

use super::DynamoDbStore;
use super::attr::s;
use crate::sdk_error::classify;

/// A limiter over the table of a [`DynamoDbStore`].
pub struct DynamoDbRateLimiter {
    store: std::sync::Arc<DynamoDbStore>,
    bucket: Bucket,
}

impl DynamoDbRateLimiter {
    pub fn new(store: std::sync::Arc<DynamoDbStore>, per_minute: u32) -> Self {
        Self {
            store,
            bucket: Bucket { per_minute },
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn number(item: &super::attr::Item, name: &str) -> Option<f64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

#[async_trait]
impl RateLimiter for DynamoDbRateLimiter {
    async fn acquire(&self, key: &str) -> Result<RateDecision, StoreError> {
        let store = &self.store;
        let pk = format!("RATE#{key}");
        // A handful of tries: each lost race means another instance took a
        // token meanwhile, and the next read sees it.
        for _ in 0..5 {
            let read = store
                .client
                .get_item()
                .table_name(&store.table)
                .key("PK", s(&pk))
                .key("SK", s("BUCKET"))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| store.err(classify(e)))?;
            let now = now_ms();
            let (tokens, counted_at) = match read.item() {
                Some(item) => (
                    number(item, "tokens").unwrap_or(0.0),
                    number(item, "counted_at").map(|t| t as i64),
                ),
                None => (f64::from(self.bucket.per_minute), None),
            };
            let elapsed = std::time::Duration::from_millis(
                counted_at.map_or(0, |at| (now - at).max(0)) as u64,
            );
            let current = self.bucket.refill(tokens, elapsed);
            let left = match self.bucket.take(current) {
                Ok(left) => left,
                Err(retry_after) => return Ok(RateDecision::Limited { retry_after }),
            };
            let per_minute = f64::from(self.bucket.per_minute.max(1));
            let seconds_to_full = ((per_minute - left) * 60.0 / per_minute).ceil() as i64;
            let mut write = store
                .client
                .put_item()
                .table_name(&store.table)
                .item("PK", s(&pk))
                .item("SK", s("BUCKET"))
                .item("tokens", AttributeValue::N(format!("{left:.4}")))
                .item("counted_at", AttributeValue::N(now.to_string()))
                .item(
                    "ttl",
                    AttributeValue::N((now / 1000 + seconds_to_full + 60).to_string()),
                );
            write = match counted_at {
                Some(at) => write
                    .condition_expression("counted_at = :read")
                    .expression_attribute_values(":read", AttributeValue::N(at.to_string())),
                None => write.condition_expression("attribute_not_exists(PK)"),
            };
            match write.send().await {
                Ok(_) => return Ok(RateDecision::Allowed),
                Err(e) => {
                    let c = classify(e);
                    if !super::is_condition_failure(&c) {
                        return Err(store.err(c));
                    }
                }
            }
        }
        // Contended past reason: treat as spent rather than let it through.
        Ok(RateDecision::Limited {
            retry_after: std::time::Duration::from_secs(1),
        })
    }
}
