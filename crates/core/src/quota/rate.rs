//! The instance's request rate as one process spends it: request times reserved from the
//! ledger's one rate item in small blocks (GCRA), spaced so that any one-second window of real
//! time holds at most Identity Center's limit, whatever the holders' clock offsets.
//!
//! Holders send their reserved times by their own reading of the ledger clock, which may be off
//! by their `uncertainty_us`. Requests whose ledger times lie `1 + 2u` seconds apart can then
//! land within one real second (`u`: the largest uncertainty of the holders sharing the
//! instance, published in their heartbeats), and one more can sit on the second's edge, so the
//! spacing is `(1 + 2u) / (limit - 1)` seconds at least: with the default budget of 18 req/s and
//! the limit of 20, uncertainties up to 27 ms cost nothing; larger ones slow the rate down
//! rather than break it.
//!
//! A reserved time not used within its own interval is dropped (it would bunch up with the
//! next). A stored next time far ahead (a clock far ahead wrote it) is never waited for: the
//! ledger resets it past `FUTURE_CAP` and `pace` never sleeps longer than that. While the
//! ledger cannot be reached, nothing is paced: without it no process can know what the others
//! send (one pacing alone beside others that reached the ledger would break the limit), so the
//! requests wait, up to `LEDGER_PATIENCE`, and then fail as not sent.

use super::clock::QuotaClock;
use super::LEDGER_PATIENCE;
use crate::error::{FanoutError, Result};
use crate::model::Scope;
use crate::ports::RequestGate;
use crate::store::ledger::QuotaLedger;
use crate::tiers::AwsLimits;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::{sleep, Duration};

/// Most request times reserved with one ledger write (also what a holder alone reserves).
pub const RATE_BLOCK: u32 = 6;
/// Fewest request times reserved with one ledger write.
const RATE_BLOCK_MIN: u32 = 2;
/// A stored next request time further ahead than this was written by a clock far ahead: it is
/// neither waited for nor kept. (A real queue of reservations is a few seconds deep.)
pub const FUTURE_CAP: Duration = Duration::from_secs(30);
/// Between attempts to reach the ledger for request times.
const LEDGER_RETRY: Duration = Duration::from_secs(1);

pub struct SharedRate {
    ledger: Arc<dyn QuotaLedger>,
    clock: Arc<dyn QuotaClock>,
    scope: Scope,
    requests_per_second: f64,
    times: Mutex<VecDeque<u64>>,
    reserve_turn: tokio::sync::Mutex<()>,
    /// Callers waiting in `pace`: how many request times the next reservation takes.
    waiting: AtomicU32,
    /// Holders on the instance at the last ledger read (1: this process is alone).
    pub(super) holders: AtomicU32,
    /// The largest clock uncertainty other holders published at the last ledger read.
    pub(super) peer_uncertainty_us: AtomicU64,
}

impl SharedRate {
    pub fn new(ledger: Arc<dyn QuotaLedger>, clock: Arc<dyn QuotaClock>, scope: Scope, requests_per_second: f64) -> SharedRate {
        SharedRate {
            ledger,
            clock,
            scope,
            requests_per_second,
            times: Mutex::default(),
            reserve_turn: tokio::sync::Mutex::new(()),
            waiting: AtomicU32::new(0),
            holders: AtomicU32::new(1),
            peer_uncertainty_us: AtomicU64::new(0),
        }
    }

    /// The rate this process paces the instance at now: the budget, or less when clocks may be
    /// far enough apart that the budget would not fit the limit's one-second window.
    pub fn effective_rate(&self) -> f64 {
        let u = self.clock.uncertainty_us().max(self.peer_uncertainty_us.load(Ordering::Relaxed)) as f64 / 1e6;
        // Requests whose ledger times lie 1 + 2u apart can land within one real second; one more
        // can sit on its edge. So (1 + 2u) * rate + 1 must stay within the limit.
        let limit = AwsLimits::PUBLISHED.requests_per_second;
        self.requests_per_second.min((limit - 1.0) / (1.0 + 2.0 * u.min(10.0))).max(0.1)
    }

    fn interval_us(&self) -> u64 {
        (1e6 / self.effective_rate()).ceil() as u64
    }

    /// Waits for a reserved request time.
    pub async fn pace(&self) -> Result<()> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let paced = self.pace_inner().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        paced
    }

    async fn pace_inner(&self) -> Result<()> {
        let cap_us = FUTURE_CAP.as_micros() as u64;
        loop {
            let interval = self.interval_us();
            let wait_us = {
                let now = self.clock.now_us();
                let mut times = self.times.lock().expect("times");
                while times.front().is_some_and(|t| t + interval <= now) {
                    times.pop_front(); // its interval passed unused
                }
                match times.front().copied() {
                    Some(t) if t <= now => {
                        times.pop_front();
                        return Ok(());
                    }
                    Some(t) if t - now > cap_us => {
                        times.clear(); // reserved against a clock far ahead: never waited for
                        None
                    }
                    Some(t) => Some(t - now),
                    None => None,
                }
            };
            match wait_us {
                Some(us) => sleep(Duration::from_micros(us)).await,
                None => self.reserve().await?,
            }
        }
    }

    /// Reserves a block of request times, trying until the ledger answers or has been gone for
    /// `LEDGER_PATIENCE` (then the request is not to be sent: `FanoutError::Store`).
    async fn reserve(&self) -> Result<()> {
        let _turn = self.reserve_turn.lock().await;
        if !self.times.lock().expect("times").is_empty() {
            return Ok(()); // another caller reserved while we queued
        }
        let interval = self.interval_us();
        // Alone on the instance, a whole block (fewest ledger writes; a time nobody here uses
        // is lost to nobody else). Otherwise as many as callers wait, within a small block: a
        // time unused in its interval is lost to every holder.
        let count = match self.holders.load(Ordering::Relaxed) {
            0 | 1 => RATE_BLOCK,
            _ => self.waiting.load(Ordering::Relaxed).clamp(RATE_BLOCK_MIN, RATE_BLOCK),
        };
        let since = tokio::time::Instant::now();
        loop {
            let cap = FUTURE_CAP.as_micros() as u64;
            match self.ledger.reserve_requests(&self.scope, count, interval, self.clock.now_us(), cap).await {
                Ok(first) => {
                    self.times.lock().expect("times").extend((0..u64::from(count)).map(|i| first + i * interval));
                    return Ok(());
                }
                Err(e) if since.elapsed() > LEDGER_PATIENCE => {
                    return Err(FanoutError::Store(format!(
                        "the shared quota's ledger could not be reached for {} s ({e}): nothing is sent without it",
                        LEDGER_PATIENCE.as_secs()
                    )));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not reserve request times; waiting for the ledger");
                    sleep(LEDGER_RETRY).await;
                }
            }
        }
    }

    /// AWS throttled a request anyway (another tool spends the same quota): every holder
    /// pauses for half a second's worth of requests.
    pub async fn throttled(&self) {
        let interval = self.interval_us();
        let count = (self.effective_rate() / 2.0).ceil() as u32;
        let cap = FUTURE_CAP.as_micros() as u64;
        if let Err(e) = self.ledger.reserve_requests(&self.scope, count.max(1), interval, self.clock.now_us(), cap).await {
            tracing::debug!(error = %e, "could not record a throttle in the quota ledger");
        }
        self.times.lock().expect("times").clear();
    }
}

#[async_trait::async_trait]
impl RequestGate for SharedRate {
    async fn admit(&self) {
        if let Err(e) = self.pace().await {
            tracing::warn!(error = %e, "request not paced");
        }
    }
}
