//! The sso-admin request rate over the sliding second `(t - 1 s, t]` before a request arriving
//! at `t`, read two ways (see `SimCounters`): the audit of every request received, refused or
//! not, and the limiter of what the instance lets through.

use crate::SimCounters;
use std::collections::VecDeque;
use tokio::time::{Duration, Instant};

/// Arrival times of the requests of the last second.
#[derive(Debug, Default)]
pub(crate) struct RateWindows {
    received: VecDeque<Instant>,
    admitted: VecDeque<Instant>,
}

impl RateWindows {
    /// The audit: a request received `now` that finds `limit` received before it in its
    /// second is a window violation (the strictest reading of "20 requests per second").
    pub(crate) fn audit(&mut self, now: Instant, limit: f64, counters: &mut SimCounters) {
        trim_to_last_second(&mut self.received, now);
        if self.received.len() as f64 >= limit {
            counters.window_violations += 1;
        }
        self.received.push_back(now);
        counters.max_in_window = counters.max_in_window.max(self.received.len() as u64);
    }

    /// The limiter: a request arriving `now` is admitted only if fewer than `limit` (the
    /// published "20 transactions per second") were admitted in its second, so no second anyone
    /// looks at holds more than 20 admitted requests: the strictest reading of the quota. (A
    /// token bucket of 20 refilling at 20/s, as this was before, admits up to 39 in a sliding
    /// second: 20 at once, then 19 refilled before the first leaves the window.) AWS does not
    /// publish its algorithm. A refused request takes no place in the window.
    pub(crate) fn admit(&mut self, now: Instant, limit: f64, counters: &mut SimCounters) -> bool {
        trim_to_last_second(&mut self.admitted, now);
        if self.admitted.len() as f64 >= limit {
            counters.rate_violations += 1;
            return false;
        }
        self.admitted.push_back(now);
        counters.admitted += 1;
        counters.max_admitted_in_window = counters.max_admitted_in_window.max(self.admitted.len() as u64);
        true
    }
}

/// Drops the instants a second or more before `now`: what is left is `(now - 1 s, now]`.
fn trim_to_last_second(window: &mut VecDeque<Instant>, now: Instant) {
    while window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        window.pop_front();
    }
}
