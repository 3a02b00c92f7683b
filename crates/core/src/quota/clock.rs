//! The ledger's clock: the one time every holder of an instance reads leases, heartbeats and
//! request times against.
//!
//! A holder's clock gives the ledger-clock time (its own clock corrected by a measured offset
//! where the ledger has a clock of its own) and how far off that may still be (`uncertainty_us`).
//! Holders publish their uncertainty in their heartbeat; the request rate widens its spacing by
//! the largest one, so the one-second window holds whatever the offsets (see `rate`).
//!
//! - `WallClock`: Unix time, exact for holders on one machine (the CLI's file ledger).
//! - `TokioClock`: tokio's clock, for holders in one process (the simulator, tests).
//! - `MeasuredClock`: Unix time corrected by the offset to a server's clock, measured from the
//!   second-resolution `Date` of its answers (DynamoDB's, for the stack's ledger): each answer
//!   bounds the offset between what the local clock read when the request left and when the
//!   answer came; the bounds narrow as answers arrive.
//! - `SkewedClock`: another clock shifted by a fixed offset, declared or not (fault tests).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Microseconds on the ledger's clock, and how far off this holder's reading may be.
pub trait QuotaClock: Send + Sync {
    fn now_us(&self) -> u64;

    /// How far `now_us` may be from the ledger clock's true time (0: exact).
    fn uncertainty_us(&self) -> u64 {
        0
    }
}

/// Past this, a holder cannot tell the ledger's time well enough to share the quota: it refuses
/// to start (`quota::SharedQuota` says so). A measured clock is within it from its first answer
/// (half a second and half the round trip: `Date` has whole seconds) and narrows as answers
/// arrive; an unmeasured one never is.
pub const MAX_UNCERTAINTY_US: u64 = 1_000_000;

/// Unix time: what holders in different processes of one machine share exactly.
pub struct WallClock;

pub fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

impl QuotaClock for WallClock {
    fn now_us(&self) -> u64 {
        unix_us()
    }
}

/// tokio's clock (paused in the simulator): holders in one process.
pub struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    pub fn new() -> TokioClock {
        TokioClock { origin: Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

/// tokio's clock starts at this many microseconds, so that times before the first reading
/// (a slot never claimed, an expired heartbeat) are all in the past.
const TOKIO_CLOCK_ORIGIN_US: u64 = 3_600_000_000;

impl QuotaClock for TokioClock {
    fn now_us(&self) -> u64 {
        TOKIO_CLOCK_ORIGIN_US + self.origin.elapsed().as_micros() as u64
    }
}

/// Another clock shifted by `offset_us`, declaring `uncertainty_us`: a process whose clock is
/// off (declared: as a measured clock would know it; undeclared: a clock wrong without knowing).
pub struct SkewedClock {
    pub inner: Arc<dyn QuotaClock>,
    pub offset_us: i64,
    pub uncertainty_us: u64,
}

impl QuotaClock for SkewedClock {
    fn now_us(&self) -> u64 {
        self.inner.now_us().saturating_add_signed(self.offset_us)
    }

    fn uncertainty_us(&self) -> u64 {
        self.uncertainty_us.max(self.inner.uncertainty_us())
    }
}

/// Unix time corrected by the offset to a server's clock, measured from the `Date` (whole
/// seconds) of its answers: `observe` each answer. Until the first, the uncertainty is
/// `u64::MAX` (nothing is known).
pub struct MeasuredClock {
    /// Bounds of (server time - local time), microseconds: the truth lies in [low, high]. One
    /// lock for both, so no reader sees them crossed mid-update.
    bounds: Mutex<(i64, i64)>,
    samples: AtomicU64,
}

impl Default for MeasuredClock {
    fn default() -> Self {
        MeasuredClock::new()
    }
}

impl MeasuredClock {
    pub fn new() -> MeasuredClock {
        MeasuredClock { bounds: Mutex::new((i64::MIN, i64::MAX)), samples: AtomicU64::new(0) }
    }

    /// One answer: the local clock read `sent_us` when the request left and `received_us` when
    /// the answer came, whose `Date` said `server_s` (whole seconds, truncated). The server
    /// read its clock in between, somewhere in [server_s, server_s + 1).
    pub fn observe(&self, sent_us: u64, received_us: u64, server_s: u64) {
        if received_us < sent_us {
            return; // the local clock stepped back mid-request: no bound from this one
        }
        let server_us = server_s as i64 * 1_000_000;
        // server(t) = local(t) + offset for some t in [sent, received], with
        // server(t) in [server_us, server_us + 1 s): offset in (server_us - received, server_us + 1 s - sent).
        let low = server_us - received_us as i64;
        let high = server_us + 1_000_000 - sent_us as i64;
        let mut bounds = self.bounds.lock().expect("clock bounds");
        let narrowed = (bounds.0.max(low), bounds.1.min(high));
        // Contradicting answers: the local clock (or the server's) stepped. Start again from
        // this answer alone.
        *bounds = if narrowed.0 > narrowed.1 { (low, high) } else { narrowed };
        self.samples.fetch_add(1, Ordering::Relaxed);
    }

    fn bounds(&self) -> Option<(i64, i64)> {
        let (low, high) = *self.bounds.lock().expect("clock bounds");
        (low != i64::MIN && high != i64::MAX).then_some((low, high))
    }

    /// The measured offset (server - local), microseconds: the middle of its bounds.
    pub fn offset_us(&self) -> Option<i64> {
        self.bounds().map(|(low, high)| low + (high - low) / 2)
    }

    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}

impl QuotaClock for MeasuredClock {
    fn now_us(&self) -> u64 {
        unix_us().saturating_add_signed(self.offset_us().unwrap_or(0))
    }

    fn uncertainty_us(&self) -> u64 {
        self.bounds().map_or(u64::MAX, |(low, high)| ((high - low) / 2).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measured_clock_narrows_to_the_round_trip_as_answers_straddle_second_boundaries() {
        let clock = MeasuredClock::new();
        assert_eq!(clock.uncertainty_us(), u64::MAX, "nothing known before the first answer");
        // The server runs 3.25 s ahead; answers take 20 ms, sent at varied phases.
        let offset: i64 = 3_250_000;
        let mut local: u64 = 1_700_000_000_000_000;
        for step in 0..40u64 {
            local += 370_000 + step * 13_000;
            let server_at = |l: u64| ((l as i64 + offset) / 1_000_000) as u64;
            let (sent, received) = (local, local + 20_000);
            clock.observe(sent, received, server_at(sent + 10_000));
        }
        let measured = clock.offset_us().unwrap();
        // Within 40 answers, what the default budget absorbs (18 of the 20 req/s: 55 ms).
        assert!(clock.uncertainty_us() <= 55_000, "uncertainty {}", clock.uncertainty_us());
        assert!(clock.uncertainty_us() as i64 >= (measured - offset).abs(), "measured {measured} for {offset}: the truth lies within the bounds");
    }

    #[test]
    fn an_unmeasured_clock_knows_nothing() {
        assert_eq!(MeasuredClock::default().uncertainty_us(), u64::MAX);
    }

    #[test]
    fn one_answer_bounds_the_offset_to_about_half_a_second() {
        let clock = MeasuredClock::new();
        clock.observe(10_000_000, 10_050_000, 10);
        assert!(clock.uncertainty_us() <= 525_000 && clock.uncertainty_us() >= 500_000, "{}", clock.uncertainty_us());
    }
}
