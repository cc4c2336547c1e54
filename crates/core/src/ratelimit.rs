//! Request rate limits per principal (`RATE_LIMIT_PER_MINUTE`): a token
//! bucket that holds a minute's worth of requests and refills evenly, so a
//! burst up to the limit passes and a steady stream at the limit never
//! waits. [`MemoryRateLimiter`] keeps the buckets in this process; the
//! DynamoDB one (rag-aws) keeps them in the table, so the limit holds
//! across concurrent Lambda instances.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::StoreError;

/// Whether one more request may go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Not before this long from now.
    Limited {
        retry_after: Duration,
    },
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one token from `key`'s bucket if it has one.
    async fn acquire(&self, key: &str) -> Result<RateDecision, StoreError>;
}

/// One bucket's arithmetic, shared by every limiter: `tokens` after
/// `elapsed` of refilling at `per_minute`, capped at a minute's worth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub per_minute: u32,
}

impl Bucket {
    pub fn refill(&self, tokens: f64, elapsed: Duration) -> f64 {
        let rate = f64::from(self.per_minute) / 60.0;
        (tokens + elapsed.as_secs_f64() * rate).min(f64::from(self.per_minute))
    }

    /// How long until a bucket holding `tokens` has one.
    pub fn wait_for_one(&self, tokens: f64) -> Duration {
        let rate = f64::from(self.per_minute.max(1)) / 60.0;
        Duration::from_secs_f64(((1.0 - tokens) / rate).max(0.0))
    }

    /// Takes a token from a bucket holding `tokens`: the bucket after, or
    /// the wait.
    pub fn take(&self, tokens: f64) -> Result<f64, Duration> {
        if tokens >= 1.0 {
            Ok(tokens - 1.0)
        } else {
            Err(self.wait_for_one(tokens))
        }
    }
}

/// Buckets in this process.
pub struct MemoryRateLimiter {
    bucket: Bucket,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl MemoryRateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            bucket: Bucket { per_minute },
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn acquire(&self, key: &str) -> Result<RateDecision, StoreError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget full buckets now and then, so one-off callers do not pile up.
        if buckets.len() > 10_000 {
            let bucket = self.bucket;
            buckets.retain(|_, (tokens, at)| {
                bucket.refill(*tokens, now - *at) < f64::from(bucket.per_minute)
            });
        }
        let (tokens, at) = buckets
            .entry(key.to_string())
            .or_insert((f64::from(self.bucket.per_minute), now));
        let current = self.bucket.refill(*tokens, now - *at);
        *at = now;
        match self.bucket.take(current) {
            Ok(left) => {
                *tokens = left;
                Ok(RateDecision::Allowed)
            }
            Err(retry_after) => {
                *tokens = current;
                Ok(RateDecision::Limited { retry_after })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_up_to_the_limit_passes_and_the_next_waits_for_a_refill() {
        let limiter = MemoryRateLimiter::new(120);
        for _ in 0..120 {
            assert_eq!(limiter.acquire("k").await.unwrap(), RateDecision::Allowed);
        }
        let RateDecision::Limited { retry_after } = limiter.acquire("k").await.unwrap() else {
            panic!("the 121st request passed")
        };
        assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}");
        // Another principal has its own bucket.
        assert_eq!(
            limiter.acquire("other").await.unwrap(),
            RateDecision::Allowed
        );
        tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
        assert_eq!(limiter.acquire("k").await.unwrap(), RateDecision::Allowed);
    }

    #[test]
    fn buckets_refill_evenly_and_cap_at_a_minutes_worth() {
        let bucket = Bucket { per_minute: 60 };
        assert_eq!(bucket.refill(0.0, Duration::from_secs(1)), 1.0);
        assert_eq!(bucket.refill(10.0, Duration::from_secs(3600)), 60.0);
        assert_eq!(bucket.take(0.5), Err(Duration::from_millis(500)));
        assert_eq!(bucket.take(2.0), Ok(1.0));
    }
}
