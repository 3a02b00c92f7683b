//! Small helpers shared by the adapters.

use sso_fanout_core::{FanoutError, Result};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Runs `futures` with at most `limit` at once; results in input order. The first error wins
/// and the remaining calls are cancelled.
pub async fn bounded<T, F>(limit: usize, futures: impl IntoIterator<Item = F>) -> Result<Vec<T>>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let gate = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    let mut count = 0;
    for (i, f) in futures.into_iter().enumerate() {
        let gate = gate.clone();
        set.spawn(async move {
            let _slot = gate.acquire_owned().await.expect("never closed");
            (i, f.await)
        });
        count += 1;
    }
    let mut out: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, result) = joined.map_err(|e| FanoutError::Internal(format!("task failed: {e}")))?;
        out[i] = Some(result?);
    }
    Ok(out.into_iter().map(|v| v.expect("every task reported")).collect())
}

/// An id in an AWS answer, parsed once where it enters: a malformed one is a fault of the
/// endpoint, never passed on as a plain string.
pub fn answered<T: sso_fanout_core::ids::Identifier>(api: &str, text: Option<&str>) -> Result<T> {
    let text = text.ok_or_else(|| FanoutError::Internal(format!("{api} answered without an id")))?;
    T::parse_id(text).map_err(|e| FanoutError::Internal(format!("{api} answered with {e}")))
}

/// Unix time in nanoseconds mixed with a per-process random key: unique version tags.
pub fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    format!("{:08x}", h.finish() as u32)
}
