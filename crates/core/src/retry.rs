//! The one backoff policy: exponential with jitter. Every retry loop in the project (the
//! planner's reads, the engine's writes and status calls, result writes, the DynamoDB store's
//! optimistic appends) uses a `Backoff`, each with its own named base and cap.

use crate::error::Result;
use std::future::Future;
use tokio::time::{sleep, Duration};

/// Retry `n` (0-based) waits a uniformly random 50-100% of `min(cap, base * 2^n)`: the jitter
/// keeps callers that failed together from retrying together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The wait before retry `retry`, given a uniform sample `unit` in [0, 1) (a seeded one
    /// makes simulated runs reproducible).
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let step = self.cap.min(self.base.saturating_mul(2u32.saturating_pow(retry.min(16))));
        step.mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0)
    }

    /// `delay` with a fresh random sample.
    pub fn random_delay(&self, retry: u32) -> Duration {
        self.delay(retry, rand::random::<f64>())
    }
}

/// The planner's read calls (and the engine's writes, by default): 250 ms doubling to 8 s.
pub const CALLS: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
/// Writes to the run store: 200 ms doubling to 2 s.
pub const STORE_WRITES: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
/// Optimistic-concurrency retries of a conditional write that lost a race: short, 20 ms to 640 ms.
pub const CONTENDED_WRITES: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(640));

/// Attempts `retrying` makes in all.
const PLANNER_ATTEMPTS: u32 = 6;

/// Calls `f` until it succeeds, fails for good, or `PLANNER_ATTEMPTS` retryable errors in a
/// row, waiting `CALLS` between attempts (the planner's reads; the engine paces and retries
/// its own calls).
pub async fn retrying<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if e.is_retryable() && attempt + 1 < PLANNER_ATTEMPTS => {
                sleep(CALLS.random_delay(attempt)).await;
                attempt += 1;
                tracing::debug!(error = %e, attempt, "retrying");
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_half_to_full_jitter() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(4, 1.0), Duration::from_secs(1), "capped");
        assert_eq!(b.delay(40, 0.0), Duration::from_millis(500), "no overflow far out");
    }
}
