//! Live progress on stderr: a bar on a terminal, a line every `LOG_EVERY` in a log (CI, a
//! pipeline), so a long run never looks stuck. Both say how far the run is, its rate, the time
//! left, what is really outstanding at AWS, and the throttles and timeouts so far (with a word
//! when Identity Center is throttling right now).

use crate::io::{Io, Sink};
use crate::output::secs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sso_fanout_core::engine::{EngineCounters, EngineEvent};
use sso_fanout_core::model::Outcome;
use sso_fanout_core::plan::Plan;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// How often a progress line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How often the bar's message is refreshed on a terminal.
const BAR_EVERY: Duration = Duration::from_millis(250);

/// "planning..." while the planner resolves names, reads the organization and lists what exists.
/// `finish` says how long it took; an error says nothing more (the error itself follows).
pub struct Planning {
    bar: Option<ProgressBar>,
    err: Sink,
    started: Instant,
    terminal: bool,
    done: &'static str,
}

impl Planning {
    /// What `plan` and `run` do before the plan is shown, and the word for "done".
    pub const PLAN: (&'static str, &'static str) =
        ("planning: resolving names, reading the organization (the account cache when fresh), listing existing assignments", "planned");
    /// What `org` does.
    pub const ORG: (&'static str, &'static str) = ("reading the organization (the account cache when fresh)", "read");

    pub fn start(io: &Io, store_location: &str, (what, done): (&'static str, &'static str)) -> Planning {
        let bar = if io.err_is_terminal {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
            bar.set_message(what);
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            Some(bar)
        } else {
            io.err.line(format!("{what} (store: {store_location})..."));
            None
        };
        Planning { bar, err: io.err.clone(), started: Instant::now(), terminal: io.err_is_terminal, done }
    }

    pub fn finish<T>(self, outcome: &sso_fanout_core::Result<T>) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if !self.terminal && outcome.is_ok() {
            self.err.line(format!("{} in {}", self.done, secs(self.started.elapsed().as_secs_f64())));
        }
    }
}

/// Counts of finished accounts, by outcome.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    timed_out: u64,
    not_started: u64,
}

impl Tally {
    fn done(&self) -> u64 {
        self.ok + self.failed + self.timed_out + self.not_started
    }
}

/// Follows a run: consumes the engine's events until every batch is done.
pub fn watch_run(plan: &Plan, counters: Arc<EngineCounters>, io: &Io) -> (mpsc::UnboundedSender<EngineEvent>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let total = plan.changes() as u64;
    // A rules run names the (permission set, principal) of a failure, not only its account.
    let pairs: Option<Vec<String>> = plan.desired.is_some().then(|| {
        plan.all_pairs().iter().map(|(ps, p)| format!(" {} to {}", ps.name, sso_fanout_core::desired::describe(p))).collect()
    });
    let estimate_s = plan.estimate.seconds;
    let slots = plan.tier.in_flight;
    let err = io.err.clone();
    let bar = io.err_is_terminal.then(|| {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}").expect("valid template").progress_chars("=> "));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let handle = tokio::spawn(async move {
        let started = Instant::now();
        let mut tally = Tally::default();
        let mut ticker = tokio::time::interval(if bar.is_some() { BAR_EVERY } else { LOG_EVERY });
        ticker.tick().await;
        let mut throttled_before = 0;
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(EngineEvent::Finished(r)) => {
                        match r.outcome {
                            Outcome::Succeeded | Outcome::Skipped => tally.ok += 1,
                            Outcome::Failed => tally.failed += 1,
                            Outcome::TimedOut => tally.timed_out += 1,
                            Outcome::NotStarted => tally.not_started += 1,
                        }
                        // Accounts an interrupt left unstarted are counted, not listed one by one.
                        if !matches!(r.outcome, Outcome::Succeeded | Outcome::Skipped | Outcome::NotStarted) {
                            let what = pairs.as_ref().and_then(|p| p.get(r.pair as usize)).map(String::as_str).unwrap_or("");
                            let line = format!("  {} {} ({}){what}: {}", r.outcome.as_str(), r.account_id, r.account_name, r.reason.as_deref().unwrap_or(""));
                            match &bar {
                                Some(bar) => bar.println(line),
                                None => err.line(line),
                            }
                        }
                        if let Some(bar) = &bar {
                            bar.set_position(tally.done());
                        }
                    }
                    Some(EngineEvent::Started { .. }) => {}
                    None => break,
                },
                _ = ticker.tick() => {
                    let stats = counters.snapshot();
                    let recent = stats.throttled - throttled_before;
                    throttled_before = stats.throttled;
                    let mut line = status_line(&tally, total, started.elapsed(), estimate_s, stats.outstanding, slots, stats.throttled, recent);
                    if let Some(c) = stats.contention.as_ref().filter(|_| stats.outstanding < slots as u64) {
                        line.push_str(&waiting_line(c));
                    }
                    match &bar {
                        Some(bar) => bar.set_message(line),
                        None => err.line(format!("progress: {}/{total} {line}", tally.done())),
                    }
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    });
    (tx, handle)
}

/// Why a run crawls: the shared quota's slots are leased to another run, live or stopped.
fn waiting_line(c: &sso_fanout_core::quota::Contention) -> String {
    format!(
        " | waiting: {} slot(s) held by {} (the soonest heartbeat ends in {} unless renewed; a slot given up waits until AWS says its operation ended: another run still going, or one that stopped without releasing)",
        c.leased_elsewhere,
        c.holders.join(", "),
        secs(c.soonest_end_ms as f64 / 1000.0)
    )
}

/// "118 ok, 2 failed, 0 timed out | 10/10 in flight | 4.1/s, ~1m30s left | 3 throttled".
#[allow(clippy::too_many_arguments)]
fn status_line(tally: &Tally, total: u64, elapsed: Duration, estimate_s: f64, outstanding: u64, slots: u32, throttled: u64, recent_throttles: u64) -> String {
    let elapsed_s = elapsed.as_secs_f64();
    let done = tally.done();
    let rate = if elapsed_s > 0.0 { done as f64 / elapsed_s } else { 0.0 };
    let left = if done > 0 && rate > 0.0 { (total - done) as f64 / rate } else { (estimate_s - elapsed_s).max(0.0) };
    let mut line = format!(
        "({} ok, {} failed, {} timed out{}) | {outstanding}/{slots} in flight | {rate:.1}/s, ~{} left, {} elapsed | {throttled} throttled",
        tally.ok,
        tally.failed,
        tally.timed_out,
        if tally.not_started > 0 { format!(", {} not started", tally.not_started) } else { String::new() },
        secs(left),
        secs(elapsed_s)
    );
    if recent_throttles > 0 {
        line.push_str(&format!(
            " ({recent_throttles} just now: Identity Center is refusing calls, e.g. another tool on the instance; backing off)"
        ));
    }
    line
}
