//! The rate limiter under a burst from many concurrent clients (as many boto3 clients on many
//! threads drive it): never more than 20 sso-admin requests admitted in any sliding second,
//! and the limiter's counters agree with an audit recomputed from the request log.

use super::*;
use std::time::Instant as Clock;
use tokio::task::JoinSet;

/// The sliding-second audit of `GET /_sim/requests`, recomputed here from the log alone.
#[derive(Debug, Default, PartialEq)]
struct Audit {
    received: u64,
    admitted: u64,
    refused: u64,
    /// The most admitted in any window `(t - 1 s, t]`.
    max_admitted: u64,
    /// The most received in any such window.
    max_received: u64,
    /// Requests that found 20 received in the second before them (the strict audit).
    received_violations: u64,
    /// Refusals with fewer than 20 admitted in the second before them (none is justified).
    unjustified_refusals: u64,
}

impl Audit {
    fn of(log: &Value, limit: u64) -> Audit {
        // Whole nanoseconds, as the limiter compares instants (seconds as f64 would misjudge
        // two requests exactly a second apart).
        let sso: Vec<(i64, &str)> = log
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| Some(((r[0].as_f64()? * 1e9).round() as i64, r[2].as_str()?)))
            .collect();
        let all: Vec<i64> = sso.iter().map(|(t, _)| *t).collect();
        let mut admitted: Vec<i64> = sso
            .iter()
            .filter(|(_, d)| *d == "admitted")
            .map(|(t, _)| *t)
            .collect();
        admitted.sort_unstable();
        const SECOND: i64 = 1_000_000_000;
        // Those of `times` (sorted) in the window (t - 1 s, t].
        let in_second = |times: &[i64], t: i64| {
            (times.partition_point(|x| *x <= t) - times.partition_point(|x| *x <= t - SECOND))
                as u64
        };
        let mut audit = Audit {
            received: sso.len() as u64,
            admitted: admitted.len() as u64,
            ..Audit::default()
        };
        for (i, (t, decision)) in sso.iter().enumerate() {
            audit.max_received = audit.max_received.max(in_second(&all, *t));
            // Received before this one (the log is in arrival order) within its second.
            let before = (i - all.partition_point(|x| *x <= t - SECOND)) as u64;
            if before >= limit {
                audit.received_violations += 1;
            }
            match *decision {
                "admitted" => audit.max_admitted = audit.max_admitted.max(in_second(&admitted, *t)),
                "rate_limited" => {
                    audit.refused += 1;
                    if in_second(&admitted, *t) < limit {
                        audit.unjustified_refusals += 1;
                    }
                }
                other => panic!("unexpected decision {other}"),
            }
        }
        audit
    }

    /// The limiter and the audit agree, and the limiter keeps the quota.
    fn assert_agrees_with(&self, stats: &Value) {
        eprintln!("{self:?}");
        let r = &stats["rate_limit"];
        assert!(
            self.max_admitted <= 20,
            "{} admitted in one sliding second: {self:?}",
            self.max_admitted
        );
        assert_eq!(self.unjustified_refusals, 0, "{self:?}");
        let counted = (
            r["received"].as_u64(),
            r["admitted"].as_u64(),
            r["refused"].as_u64(),
            r["max_admitted_in_window"].as_u64(),
        );
        assert_eq!(
            counted,
            (
                Some(self.received),
                Some(self.admitted),
                Some(self.refused),
                Some(self.max_admitted)
            ),
            "{stats}"
        );
        assert_eq!(
            r["max_received_in_window"].as_u64(),
            Some(self.max_received),
            "{stats}"
        );
        assert_eq!(
            stats["violations"]["rate"].as_u64(),
            Some(self.received_violations),
            "{stats}"
        );
        assert_eq!(self.received, self.admitted + self.refused);
        assert!(
            self.refused <= self.received_violations,
            "every refusal is an audit violation too: {self:?}"
        );
    }
}

/// 40 clients sending ListInstances as fast as they can for 2.5 s of real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_clients_on_the_real_clock_get_at_most_20_admitted_in_any_sliding_second() {
    let server = Server::start(quick(3), 0).await.unwrap();
    let addr = server.addr;
    let until = Clock::now() + Duration::from_millis(2500);
    let mut clients = JoinSet::new();
    for _ in 0..40 {
        clients.spawn(async move {
            while Clock::now() < until {
                let (status, body) =
                    http(addr, "POST", Some("SWBExternalService.ListInstances"), "{}").await;
                assert!(
                    status == 200 || body["__type"] == "ThrottlingException",
                    "{status} {body}"
                );
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let (_, log) = sim_http(addr, "GET", "/_sim/requests", "").await;
    let (_, stats) = http(addr, "GET", None, "").await;
    let audit = Audit::of(&log, 20);
    assert!(
        audit.refused > 100,
        "the burst must overrun the quota: {audit:?}"
    );
    audit.assert_agrees_with(&stats);
    server.stop().await;
}

/// The same burst on the paused clock: 60 clients, each pausing 5-17 ms between requests, for
/// 5 simulated seconds (reproducible to the request).
#[tokio::test(start_paused = true)]
async fn many_concurrent_clients_on_the_paused_clock_get_at_most_20_admitted_in_any_sliding_second()
{
    let emulator = Arc::new(Emulator::new(quick(3)));
    let mut clients = JoinSet::new();
    for client in 0..60u64 {
        let e = emulator.clone();
        clients.spawn(async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < until {
                let _ = e.call("SWBExternalService.ListInstances", &json!({})).await;
                tokio::time::sleep(Duration::from_millis(5 + client % 13)).await;
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let audit = Audit::of(&emulator.timeline(), 20);
    assert!(audit.refused > 1000, "{audit:?}");
    audit.assert_agrees_with(&emulator.stats());
}
