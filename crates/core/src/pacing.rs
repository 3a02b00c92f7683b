//! A token bucket on tokio's clock that spends a batch's share of the sso-admin request rate,
//! backs off when AWS throttles anyway (another tool sharing the account-wide quota), and
//! recovers gradually.

use std::sync::Mutex;
use tokio::time::{sleep, Duration, Instant};

pub struct Pacer {
    state: Mutex<State>,
}

struct State {
    tokens: f64,
    burst: f64,
    rate: f64,
    max_rate: f64,
    last: Instant,
}

impl Pacer {
    /// `rate` requests per second, no burst beyond one request: any one-second window then
    /// holds at most `rate + 1` requests (19 at 18/s), within a 20 req/s limit read as
    /// strictly as a sliding window. (A burst of `b` would allow `rate + b`.)
    pub fn new(rate: f64) -> Pacer {
        let burst = 1.0;
        Pacer { state: Mutex::new(State { tokens: burst, burst, rate, max_rate: rate, last: Instant::now() }) }
    }

    /// Waits until one request may be sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().expect("pacer lock");
                s.refill();
                if s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    return;
                }
                // At least the timer's 1 ms resolution: a wait of a few nanoseconds (float
                // residue) would fire at once without time passing, and spin.
                Duration::from_secs_f64((1.0 - s.tokens) / s.rate).max(Duration::from_millis(1))
            };
            sleep(wait).await;
        }
    }

    /// AWS throttled us: halve the rate (never below 1 req/s) and drop saved-up tokens.
    pub fn throttled(&self) {
        let mut s = self.state.lock().expect("pacer lock");
        s.refill();
        s.rate = (s.rate / 2.0).max(1.0);
        s.tokens = s.tokens.min(0.0);
    }

    pub fn current_rate(&self) -> f64 {
        self.state.lock().expect("pacer lock").rate
    }
}

impl State {
    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        // Additive recovery: back to the full share within a few seconds of calm.
        self.rate = (self.rate + dt * self.max_rate / 4.0).min(self.max_rate);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_the_rate_in_any_one_second_window() {
        let pacer = Pacer::new(18.0);
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..181 {
            pacer.acquire().await;
            sent.push(start.elapsed().as_secs_f64());
        }
        // One immediate, then 18/s: 180 more need 10 s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((9.9..10.2).contains(&elapsed), "{elapsed}");
        let most = sent.iter().map(|t| sent.iter().filter(|u| **u >= *t && **u < t + 1.0).count()).max().unwrap();
        assert!(most <= 19, "{most} requests in one second");
    }

    #[tokio::test(start_paused = true)]
    async fn almost_full_token_still_lets_time_pass() {
        let pacer = Pacer::new(18.0);
        {
            let mut s = pacer.state.lock().unwrap();
            s.tokens = 1.0 - 1e-12;
        }
        // Would spin forever if the wait rounded to nothing.
        tokio::time::timeout(Duration::from_secs(1), pacer.acquire()).await.expect("acquired");
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_then_recovers() {
        let pacer = Pacer::new(16.0);
        pacer.throttled();
        assert_eq!(pacer.current_rate(), 8.0);
        sleep(Duration::from_secs(10)).await;
        pacer.acquire().await;
        assert_eq!(pacer.current_rate(), 16.0);
    }
}
