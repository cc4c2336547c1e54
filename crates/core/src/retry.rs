//! Exponential backoff with full jitter for throttled and unavailable calls:
//! Bedrock embeddings and chat, model servers, knowledge base searches. A
//! throttling storm during a bulk ingest or an agent run needs a longer,
//! jittered schedule than an SDK's few retries so that nothing is lost.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry `attempt` (1-based): uniformly random up to
    /// `base * 2^(attempt-1)`, capped, and never shorter than a hint the
    /// service gave.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
            .min(self.max_delay);
        let jittered = rand::rng().random_range(Duration::ZERO..=exp);
        jittered.max(hint.unwrap_or(Duration::ZERO))
    }

    /// Runs `call` until it succeeds, fails with an error `retryable` says
    /// no to, or the attempts run out.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut call: F,
        retryable: impl Fn(&E) -> Option<Option<Duration>>,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) => match retryable(&e) {
                    Some(hint) if attempt < self.max_attempts => {
                        tokio::time::sleep(self.delay(attempt, hint)).await;
                        attempt += 1;
                    }
                    _ => return Err(e),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..100 {
            assert!(policy.delay(1, None) <= Duration::from_millis(100));
            assert!(policy.delay(3, None) <= Duration::from_millis(400));
            assert!(policy.delay(30, None) <= Duration::from_secs(1));
            assert!(policy.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }

    #[tokio::test]
    async fn retries_only_what_is_retryable() {
        let policy = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let mut calls = 0;
        let result: Result<u32, &str> = policy
            .run(
                || {
                    calls += 1;
                    let n = calls;
                    async move { if n < 3 { Err("busy") } else { Ok(n) } }
                },
                |e| (*e == "busy").then_some(None),
            )
            .await;
        assert_eq!(result, Ok(3));

        let mut calls = 0;
        let result: Result<u32, &str> = policy
            .run(
                || {
                    calls += 1;
                    async { Err("bad") }
                },
                |e| (*e == "busy").then_some(None),
            )
            .await;
        assert_eq!(result, Err("bad"));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let _ = policy
            .run(
                || {
                    calls += 1;
                    async { Err::<u32, _>("busy") }
                },
                |_| Some(None),
            )
            .await;
        assert_eq!(calls, 4);
    }
}
