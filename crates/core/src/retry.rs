//! Retrying of the planner's read calls (the engine paces and retries its own calls).

use crate::error::Result;
use std::future::Future;
use tokio::time::{sleep, Duration};

const ATTEMPTS: u32 = 6;
const BASE: Duration = Duration::from_millis(250);
const CAP: Duration = Duration::from_secs(8);

/// Calls `f` until it succeeds, fails for good, or `ATTEMPTS` retryable errors in a row;
/// exponential backoff with jitter (0.5-1.0 of the step).
pub async fn retrying<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if e.is_retryable() && attempt + 1 < ATTEMPTS => {
                let step = CAP.min(BASE * 2u32.pow(attempt));
                sleep(step.mul_f64(0.5 + rand::random::<f64>() / 2.0)).await;
                attempt += 1;
                tracing::debug!(error = %e, attempt, "retrying");
            }
            other => return other,
        }
    }
}

