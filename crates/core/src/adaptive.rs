//! A concurrency limit that finds a remote service's quota by itself:
//! additive increase, multiplicative decrease, as TCP finds a link's
//! capacity. Each call holds a permit; a call the service throttles halves
//! the limit, and every `limit` calls that succeed in a row raise it by
//! one, up to the configured maximum. A cut counts once per generation:
//! calls that were already in flight when the limit was cut were sent at
//! the old rate, so their throttles say nothing new and cut nothing more.
//! Bulk work then runs near the quota instead of failing against it, and
//! grows back when the quota frees up.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
struct State {
    limit: usize,
    /// Permits to take out of circulation as calls in flight finish,
    /// after a cut below the number in flight.
    debt: usize,
    successes: usize,
    generation: u64,
}

/// See the module header. Cheap to clone; clones share one limit.
#[derive(Clone)]
pub struct AdaptiveLimit {
    max: usize,
    permits: Arc<Semaphore>,
    state: Arc<Mutex<State>>,
}

/// One call's share of the limit, held until the call (with its retries)
/// ends.
pub struct AdaptivePermit {
    permit: Option<OwnedSemaphorePermit>,
    /// The generation it was let in under (or last cut the limit in); an
    /// atomic so a retry's classifier can report through a shared borrow.
    generation: AtomicU64,
    state: Arc<Mutex<State>>,
}

impl Drop for AdaptivePermit {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if state.debt > 0 {
            state.debt -= 1;
            if let Some(permit) = self.permit.take() {
                permit.forget();
            }
        }
    }
}

impl AdaptiveLimit {
    /// Starts at `max` calls at once (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            max,
            permits: Arc::new(Semaphore::new(max)),
            state: Arc::new(Mutex::new(State {
                limit: max,
                debt: 0,
                successes: 0,
                generation: 0,
            })),
        }
    }

    /// Waits for room under the current limit.
    pub async fn acquire(&self) -> AdaptivePermit {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        AdaptivePermit {
            permit: Some(permit),
            generation: AtomicU64::new(lock(&self.state).generation),
            state: self.state.clone(),
        }
    }

    /// The calls allowed at once now.
    pub fn current(&self) -> usize {
        lock(&self.state).limit
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The service throttled the call holding `permit`: halve the limit,
    /// unless a cut already happened since that call was let in.
    pub fn throttled(&self, permit: &AdaptivePermit) {
        let mut state = lock(&self.state);
        if permit.generation.load(Ordering::Relaxed) != state.generation {
            return;
        }
        let cut = state.limit - (state.limit / 2).max(1);
        state.limit -= cut;
        state.successes = 0;
        state.generation += 1;
        // The call goes on (it is retried) under the new generation, so
        // a second throttle of it, after the cut, may cut again.
        permit.generation.store(state.generation, Ordering::Relaxed);
        // Take free permits out at once; the rest as calls finish.
        let mut owed = cut;
        while owed > 0 {
            match self.permits.try_acquire() {
                Ok(free) => {
                    free.forget();
                    owed -= 1;
                }
                Err(_) => break,
            }
        }
        state.debt += owed;
        tracing::debug!(limit = state.limit, "throttled: concurrency cut");
    }

    /// A call succeeded: after `limit` successes in a row, one more call
    /// may run at once.
    pub fn succeeded(&self) {
        let mut state = lock(&self.state);
        if state.limit >= self.max {
            return;
        }
        state.successes += 1;
        if state.successes < state.limit {
            return;
        }
        state.successes = 0;
        state.limit += 1;
        if state.debt > 0 {
            state.debt -= 1;
        } else {
            self.permits.add_permits(1);
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// How many permits can be taken at once right now.
    async fn room(limit: &AdaptiveLimit) -> usize {
        let mut held = Vec::new();
        while let Ok(permit) =
            tokio::time::timeout(Duration::from_millis(20), limit.acquire()).await
        {
            held.push(permit);
        }
        held.len()
    }

    #[tokio::test]
    async fn a_throttle_halves_once_per_generation() {
        let limit = AdaptiveLimit::new(16);
        let mut calls: Vec<AdaptivePermit> = Vec::new();
        for _ in 0..16 {
            calls.push(limit.acquire().await);
        }
        // Sixteen calls in flight, all throttled: one cut, not sixteen.
        for call in &calls {
            limit.throttled(call);
        }
        assert_eq!(limit.current(), 8);
        drop(calls);
        assert_eq!(room(&limit).await, 8);
        // A call let in after the cut is throttled: it cuts again.
        let late = limit.acquire().await;
        limit.throttled(&late);
        assert_eq!(limit.current(), 4);
        drop(late);
        assert_eq!(room(&limit).await, 4);
        for _ in 0..10 {
            let call = limit.acquire().await;
            limit.throttled(&call);
        }
        assert_eq!(limit.current(), 1, "never below one");
        assert_eq!(room(&limit).await, 1);
    }

    #[tokio::test]
    async fn successes_grow_it_back_to_the_maximum() {
        let limit = AdaptiveLimit::new(4);
        let call = limit.acquire().await;
        limit.throttled(&call);
        drop(call);
        assert_eq!(limit.current(), 2);
        limit.succeeded();
        assert_eq!(limit.current(), 2);
        limit.succeeded();
        assert_eq!(limit.current(), 3);
        for _ in 0..3 {
            limit.succeeded();
        }
        assert_eq!(limit.current(), 4);
        for _ in 0..100 {
            limit.succeeded();
        }
        assert_eq!(limit.current(), 4, "never past the maximum");
        assert_eq!(room(&limit).await, 4);
    }

    #[tokio::test]
    async fn a_waiting_call_starts_when_the_limit_grows() {
        let limit = AdaptiveLimit::new(2);
        let first = limit.acquire().await;
        limit.throttled(&first);
        assert_eq!(limit.current(), 1);
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move {
                let _permit = limit.acquire().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        limit.succeeded();
        assert_eq!(limit.current(), 2);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting call started")
            .unwrap();
        drop(first);
    }
}
