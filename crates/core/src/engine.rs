//! The engine: executes one batch at the speed its quota share allows, and proves each change.
//!
//! - At most `share.in_flight` operations are outstanding (a semaphore slot is held from the
//!   create/delete until AWS reports SUCCEEDED/FAILED), one per account.
//! - Every sso-admin call (writes and status checks) goes through one `Pacer` at the share's rate.
//! - Completion is detected by one `in_progress_operations` listing for all pending operations
//!   (then one describe per finished operation for its final state); where the listing is not
//!   supported, each operation is described on a backoff schedule.
//! - Throttling is retried until the account's timeout (it is not the account's fault); conflicts
//!   and transient errors up to `max_retries`; everything else fails that account only.

use crate::error::{FanoutError, Result};
use crate::ids::{AccountId, PermissionSetArn};
use crate::model::*;
use crate::pacing::Pacer;
use crate::plan::{Batch, EngineSettings, Plan, PlanItem};
use crate::tiers::LatencyModel;
use crate::ports::AssignmentOps;
use crate::quota::{Contention, SharedQuota, SharedSlot};
use crate::retry::{self, Backoff};
use crate::store::{LatencyHistory, RunLog};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout_at, Duration, Instant};

/// What a worker needs to know about its run, independent of the batch.
#[derive(Debug, Clone)]
pub struct BatchContext {
    pub run_id: String,
    /// Latency samples are recorded for this scope only.
    pub scope: Scope,
    /// The (permission set, principal) of each pair index a plan item names.
    pub pairs: Vec<(PermissionSetArn, Principal)>,
    pub settings: EngineSettings,
    /// The provisioning latency the plan assumed: paces status polling.
    pub latency: LatencyModel,
}

impl BatchContext {
    pub fn from_plan(plan: &Plan) -> BatchContext {
        BatchContext {
            run_id: plan.run_id.clone(),
            scope: plan.scope.clone(),
            pairs: plan.all_pairs().into_iter().map(|(ps, p)| (ps.arn.clone(), p.clone())).collect(),
            settings: plan.settings,
            latency: plan.estimate.latency,
        }
    }

    fn key(&self, item: &PlanItem) -> AssignmentKey {
        let (permission_set_arn, principal) = &self.pairs[item.pair as usize];
        AssignmentKey {
            account_id: item.account_id.clone(),
            permission_set_arn: permission_set_arn.clone(),
            principal_type: principal.kind,
            principal_id: principal.id.clone(),
        }
    }
}

/// The operation that carries out a plan item's action.
fn operation_of(action: Action) -> Operation {
    match action {
        Action::Delete => Operation::Revoke,
        Action::Create | Action::Skip => Operation::Assign,
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Seed for backoff jitter (runs on the simulator are reproducible).
    pub jitter_seed: u64,
    /// Between attempts of a create/delete that was throttled, conflicted or failed transiently.
    pub backoff: Backoff,
    /// Live counters (calls, throttles, operations outstanding). Pass one `Arc` to several
    /// batches to watch a whole run; each batch's report then carries the running totals.
    pub counters: Arc<EngineCounters>,
    /// Cancelled when the user interrupts the run: no new operation starts, operations in
    /// flight get `INTERRUPT_GRACE` to finish, the rest end with their request id recorded.
    pub stop: CancellationToken,
    /// Cancelled on a second interrupt: the grace ends at once (operations in flight are
    /// recorded with their request ids right away; the run still ends and reports).
    pub abandon: CancellationToken,
    /// The quota shared with every other worker and run on the instance. Without it the batch
    /// spends its share alone (one run at a time on the instance).
    pub quota: Option<Arc<SharedQuota>>,
    /// Status listings of the batches running in this process: one batch's listing (it lists
    /// every operation of the instance) serves the others too.
    pub listings: Arc<ListingBoard>,
}

/// The latest in-progress listing per operation type, for the batches of one process.
#[derive(Debug, Default)]
pub struct ListingBoard {
    latest: Mutex<HashMap<Operation, Listing>>,
}

/// When a listing began, and the request ids it found IN_PROGRESS.
type Listing = (Instant, Arc<BTreeSet<String>>);

impl ListingBoard {
    /// A listing that began after `after` and no earlier than `not_before`, if one did.
    fn fresh(&self, op: Operation, after: Option<Instant>, not_before: Instant) -> Option<Listing> {
        let latest = self.latest.lock().expect("listings");
        latest.get(&op).filter(|(at, _)| after.is_none_or(|a| *at > a) && *at >= not_before).cloned()
    }

    fn publish(&self, op: Operation, at: Instant, in_progress: Arc<BTreeSet<String>>) {
        let mut latest = self.latest.lock().expect("listings");
        if latest.get(&op).is_none_or(|(t, _)| *t < at) {
            latest.insert(op, (at, in_progress));
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            jitter_seed: rand::random(),
            backoff: retry::CALLS,
            counters: Arc::default(),
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
            quota: None,
            listings: Arc::default(),
        }
    }
}

/// How long operations already accepted by AWS may take to finish after an interrupt before
/// the run records them (with their request ids) and stops.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// Live progress for the CLI.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    Started { batch: u32, account_id: AccountId },
    Finished(AccountResult),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub calls: u64,
    pub throttled: u64,
    pub conflicts: u64,
    pub transient: u64,
    pub store_errors: u64,
    /// Assignment operations holding a slot right now (accepted, not yet seen finished).
    pub outstanding: u64,
    /// Slots of the shared quota other holders lease while accounts of this run wait.
    pub contention: Option<Contention>,
}

#[derive(Debug, Clone)]
pub struct BatchReport {
    pub batch: u32,
    pub results: Vec<AccountResult>,
    pub stats: EngineStats,
}

impl BatchReport {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }
}

/// Runs one batch to verified completion and streams each account's result to `store`.
///
/// `prior` holds results already stored for this run (a batch re-driven after its worker died
/// or was retried): an account whose stored result is final is not touched again; one whose
/// stored result names an operation AWS accepted is re-checked by that request id before
/// anything new is sent.
pub async fn run_batch(
    ops: Arc<dyn AssignmentOps>,
    log: Arc<dyn RunLog>,
    history: &dyn LatencyHistory,
    ctx: &BatchContext,
    batch: &Batch,
    prior: &[AccountResult],
    options: EngineOptions,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
) -> Result<BatchReport> {
    let started = Instant::now();
    let hard_deadline = started + Duration::from_secs(ctx.settings.time_budget_s as u64);
    let account_timeout = Duration::from_secs(ctx.settings.account_timeout_s as u64);
    // Renews this worker's leases while it runs; deregisters it when the batch ends.
    let maintenance = options.quota.as_ref().map(|q| q.maintain());
    let shared = Arc::new(Shared {
        ops,
        log,
        ctx: ctx.clone(),
        batch: batch.index,
        pacer: Pacer::new(batch.share.requests_per_second),
        slots: Arc::new(Semaphore::new(batch.share.in_flight.max(1) as usize)),
        poller: Poller::default(),
        poll_interval: Duration::from_secs_f64((2.0 / batch.share.requests_per_second).clamp(0.1, 1.0)),
        stats: options.counters.clone(),
        rng: Mutex::new(SmallRng::seed_from_u64(options.jitter_seed)),
        options,
        events,
        hard_deadline,
        // Do not start an operation that could not finish before the worker must return.
        start_deadline: hard_deadline - account_timeout.min(Duration::from_secs(30)),
        account_timeout,
    });

    // Aborted when this function returns or its future is dropped (a cancelled or killed
    // worker), so a status poller never outlives its batch and keeps spending the quota.
    let poller = AbortOnDrop(tokio::spawn(poll_loop(shared.clone())));
    // What the shared quota keeps this batch waiting for, for the progress line.
    let contention = shared.options.quota.clone().map(|quota| {
        let counters = shared.stats.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                *counters.contention.lock().expect("contention") = quota.contention();
                sleep(Duration::from_secs(1)).await;
            }
        }))
    });
    let prior: HashMap<String, &AccountResult> = prior.iter().map(|r| (r.key(), r)).collect();
    let mut results = Vec::with_capacity(batch.items.len());
    let mut accounts = JoinSet::new();
    // One task per account runs that account's items one after another, in plan order
    // (creates before deletes): Identity Center allows one operation per account at a time.
    for chain in crate::planner::account_chains(&batch.items) {
        let mut todo = Vec::with_capacity(chain.len());
        let mut hold = ChainHold::default();
        for item in chain {
            let earlier = prior.get(&result_key(&item.account_id, item.pair)).copied();
            match earlier.filter(|r| r.outcome.is_final()) {
                Some(done) => {
                    hold.after(done);
                    results.push(done.clone());
                }
                None => todo.push((item, earlier.and_then(|r| r.request_id.clone()))),
            }
        }
        if todo.is_empty() {
            continue;
        }
        let shared = shared.clone();
        accounts.spawn(async move {
            let mut done = Vec::with_capacity(todo.len());
            for (item, pending) in todo {
                let result = match hold.reason_for(&item) {
                    Some(reason) => shared.not_started(item, reason),
                    None => shared.run_account(item, pending).await,
                };
                hold.after(&result);
                shared.record(&result).await;
                done.push(result);
            }
            done
        });
    }
    while let Some(joined) = accounts.join_next().await {
        results.extend(joined.map_err(|e| FanoutError::Internal(format!("account task failed: {e}")))?);
    }
    drop(poller);
    // Operations still IN_PROGRESS at AWS (timed out, interrupted) keep their slots and their
    // accounts locked past this batch, with their request ids for whoever checks on them.
    shared.poller.park_all();
    drop(contention);
    *shared.stats.contention.lock().expect("contention") = None;
    drop(maintenance);
    if let Some(quota) = &shared.options.quota {
        // Slots go back before the worker returns, not when a frozen Lambda next thaws.
        quota.settle().await;
    }

    let samples: Vec<u64> = results.iter().filter(|r| r.outcome == Outcome::Succeeded).filter_map(|r| r.provisioning_ms).collect();
    if !samples.is_empty() {
        if let Err(e) = history.add_latency_samples(&ctx.scope, &samples).await {
            tracing::warn!(run_id = %ctx.run_id, error = %e, "could not store latency samples");
        }
    }
    let stats = shared.stats.snapshot();
    if stats.store_errors > 0 {
        return Err(FanoutError::Store(format!(
            "{} of {} results could not be stored; re-running the batch converges",
            stats.store_errors,
            results.len()
        )));
    }
    results.sort_by(|a, b| a.account_name.cmp(&b.account_name).then(a.pair.cmp(&b.pair)));
    Ok(BatchReport { batch: batch.index, results, stats })
}

/// What an account's earlier items forbid its later ones: its deletes wait while one of its
/// creates has not succeeded (the account keeps its old access until the new one is in place),
/// and nothing more is sent while one of its operations may still be IN_PROGRESS at AWS.
#[derive(Default)]
struct ChainHold {
    create_not_done: Option<String>,
    busy: Option<String>,
}

impl ChainHold {
    fn after(&mut self, result: &AccountResult) {
        if result.action == Action::Create && result.outcome != Outcome::Succeeded && self.create_not_done.is_none() {
            self.create_not_done = Some(result.reason.clone().unwrap_or_else(|| result.outcome.as_str().to_string()));
        }
        if result.outcome == Outcome::TimedOut {
            if let Some(id) = &result.request_id {
                self.busy.get_or_insert_with(|| id.clone());
            }
        }
    }

    fn reason_for(&self, item: &PlanItem) -> Option<String> {
        if let Some(request) = &self.busy {
            return Some(format!(
                "not started: an earlier operation in this account may still be IN_PROGRESS (request {request}); re-run to converge"
            ));
        }
        match (&self.create_not_done, item.action) {
            (Some(why), Action::Delete) => Some(format!(
                "not started: a create in this account did not succeed ({why}), so its current access is kept; re-run to converge"
            )),
            _ => None,
        }
    }
}

/// A spawned task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    ops: Arc<dyn AssignmentOps>,
    log: Arc<dyn RunLog>,
    ctx: BatchContext,
    batch: u32,
    pacer: Pacer,
    slots: Arc<Semaphore>,
    poller: Poller,
    poll_interval: Duration,
    stats: Arc<EngineCounters>,
    rng: Mutex<SmallRng>,
    options: EngineOptions,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
    hard_deadline: Instant,
    start_deadline: Instant,
    account_timeout: Duration,
}

/// The engine's counters, updated as calls happen; `snapshot` reads them.
#[derive(Debug, Default)]
pub struct EngineCounters {
    calls: AtomicU64,
    throttled: AtomicU64,
    conflicts: AtomicU64,
    transient: AtomicU64,
    store_errors: AtomicU64,
    outstanding: AtomicU64,
    contention: Mutex<Option<Contention>>,
}

impl EngineCounters {
    pub fn snapshot(&self) -> EngineStats {
        EngineStats {
            calls: self.calls.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            transient: self.transient.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
            outstanding: self.outstanding.load(Ordering::Relaxed),
            contention: self.contention.lock().expect("contention").clone(),
        }
    }
}

/// One of the batch's outstanding-operation slots; counted in `EngineCounters::outstanding`
/// for as long as it is held, wherever it is dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    /// The shared quota's slot, when there is one (handed on or released with the slot).
    shared: Option<SharedSlot>,
    counters: Arc<EngineCounters>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, shared: Option<SharedSlot>, counters: Arc<EngineCounters>) -> Slot {
        counters.outstanding.fetch_add(1, Ordering::Relaxed);
        Slot { _permit: permit, shared, counters }
    }

    /// Whether the operation may be sent now (see `SharedSlot::may_start`).
    async fn may_start(&self) -> bool {
        match &self.shared {
            Some(shared) => shared.may_start().await,
            None => true,
        }
    }

    /// The operation may still run at AWS: the shared slot is parked, not released.
    fn park(mut self, request_id: Option<String>) {
        if let Some(shared) = self.shared.take() {
            shared.park(request_id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One account's progress through its attempts.
struct Attempt {
    item: PlanItem,
    started: Instant,
    attempts: u32,
    request_id: Option<String>,
    provisioning_ms: Option<u64>,
}

impl Attempt {
    fn finish(self, ctx: &BatchContext, batch: u32, outcome: Outcome, reason: Option<String>) -> AccountResult {
        AccountResult {
            run_id: ctx.run_id.clone(),
            batch,
            account_id: self.item.account_id,
            account_name: self.item.account_name,
            action: self.item.action,
            pair: self.item.pair,
            outcome,
            request_id: self.request_id,
            reason,
            attempts: self.attempts,
            duration_ms: self.started.elapsed().as_millis() as u64,
            provisioning_ms: self.provisioning_ms,
        }
    }
}

impl Shared {
    async fn call<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match &self.options.quota {
            // Waits while the ledger cannot be reached; long gone, the call is not made.
            Some(quota) => quota.pace().await?,
            None => self.pacer.acquire().await,
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = fut.await;
        match &result {
            Err(FanoutError::Throttled { .. }) => {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                self.pacer.throttled();
                if let Some(quota) = &self.options.quota {
                    quota.throttled().await;
                }
            }
            Err(FanoutError::Conflict { .. }) => {
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Err(FanoutError::Transient { .. }) => {
                self.stats.transient.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        result
    }

    fn backoff(&self, retry: u32) -> Duration {
        let unit: f64 = self.rng.lock().expect("rng").random_range(0.0..1.0);
        self.options.backoff.delay(retry, unit)
    }

    async fn run_account(self: &Arc<Self>, item: PlanItem, pending: Option<String>) -> AccountResult {
        let mut attempt = Attempt { item, started: Instant::now(), attempts: 0, request_id: None, provisioning_ms: None };
        let mut permit = match self.wait_for_slot(&attempt.item).await {
            Ok(slot) => slot,
            Err(reason) => return attempt.finish(&self.ctx, self.batch, Outcome::NotStarted, Some(reason)),
        };
        if self.options.stop.is_cancelled() {
            let reason = "not started: the run was interrupted; re-run the same request to converge".to_string();
            return attempt.finish(&self.ctx, self.batch, Outcome::NotStarted, Some(reason));
        }
        if let Some(tx) = &self.events {
            let _ = tx.send(EngineEvent::Started { batch: self.batch, account_id: attempt.item.account_id.clone() });
        }
        attempt.started = Instant::now();
        let deadline = (attempt.started + self.account_timeout).min(self.hard_deadline);
        let key = self.ctx.key(&attempt.item);
        let op = operation_of(attempt.item.action);
        if let Some(id) = pending {
            // An earlier worker had this operation accepted: ask AWS how it ended before
            // sending anything new (a second create would only conflict or repeat it).
            match self.call(self.ops.operation_status(op, &id)).await {
                Ok(status) => {
                    attempt.request_id = Some(id);
                    return self.await_final(attempt, status, permit, deadline).await;
                }
                Err(e) => tracing::debug!(run_id = %self.ctx.run_id, account = %attempt.item.account_id, error = %e,
                    "earlier request not found; sending a new one"),
            }
        }
        let mut counted_retries = 0u32;
        // Whether an attempt so far may have been accepted without our knowing (a 5xx or a lost
        // answer): then the slot is parked, never released, whatever ends the account, and the
        // account stays locked until AWS says nothing runs there.
        let mut ambiguous = false;
        loop {
            if !permit.may_start().await {
                // Cut off from the ledger, others took the slot: nothing was sent under it. Wait
                // for another (unless an attempt may have been accepted: that one stays parked).
                if ambiguous {
                    let reason = "this worker lost its slot of the shared quota (cut off from the ledger)".to_string();
                    return self.end_unaccepted(attempt, permit, ambiguous, Outcome::TimedOut, reason);
                }
                drop(permit);
                permit = match self.wait_for_slot(&attempt.item).await {
                    Ok(slot) => slot,
                    Err(reason) => return attempt.finish(&self.ctx, self.batch, Outcome::NotStarted, Some(reason)),
                };
                continue;
            }
            attempt.attempts += 1;
            let call = async {
                match op {
                    Operation::Assign => self.ops.create_assignment(&key).await,
                    Operation::Revoke => self.ops.delete_assignment(&key).await,
                }
            };
            // Never cut short by the account's deadline: a create cancelled on the wire may
            // still be accepted. The adapter bounds each call (`CREATE_CALL_BOUND`).
            let error = match self.call(call).await {
                Ok(status) => {
                    attempt.request_id = Some(status.request_id.clone());
                    if status.state == OpState::InProgress {
                        self.record_accepted(&attempt, &status.request_id).await;
                    }
                    return self.await_final(attempt, status, permit, deadline).await;
                }
                Err(FanoutError::NotFound { .. }) if op == Operation::Revoke => {
                    return attempt.finish(&self.ctx, self.batch, Outcome::Succeeded, Some("already absent".into()));
                }
                Err(e) if e.is_retryable() => e,
                // The request was not sent: the shared quota's ledger is gone.
                Err(FanoutError::Store(why)) => return self.end_unaccepted(attempt, permit, ambiguous, Outcome::NotStarted, format!("not started: {why}")),
                Err(e) => return self.end_unaccepted(attempt, permit, ambiguous, Outcome::Failed, e.to_string()),
            };
            if matches!(error, FanoutError::Transient { .. }) {
                ambiguous = true;
                // The request may have been accepted: find it before sending another, which would
                // only conflict with it.
                if let Some(status) = self.find_accepted(op, &key).await {
                    attempt.request_id = Some(status.request_id.clone());
                    if status.state == OpState::InProgress {
                        self.record_accepted(&attempt, &status.request_id).await;
                    }
                    return self.await_final(attempt, status, permit, deadline).await;
                }
            }
            if !matches!(error, FanoutError::Throttled { .. }) {
                counted_retries += 1;
                if counted_retries > self.ctx.settings.max_retries {
                    let reason = format!("gave up after {} attempts: {error}", attempt.attempts);
                    return self.end_unaccepted(attempt, permit, ambiguous, Outcome::Failed, reason);
                }
            }
            let wait = self.backoff(attempt.attempts);
            if Instant::now() + wait >= deadline {
                let reason = format!("no attempt accepted before the timeout; last error: {error}");
                return self.end_unaccepted(attempt, permit, ambiguous, Outcome::TimedOut, reason);
            }
            tracing::debug!(run_id = %self.ctx.run_id, account = %attempt.item.account_id, error = %error, ?wait, "retrying");
            tokio::select! {
                _ = sleep(wait) => {}
                _ = self.options.stop.cancelled() => {
                    // A throttle or conflict refused the request; a 5xx or a lost answer may hide
                    // one AWS accepted, so that account is not called "not started".
                    let outcome = if ambiguous { Outcome::TimedOut } else { Outcome::NotStarted };
                    let reason = format!("interrupted before AWS accepted a request; last error: {error}");
                    return self.end_unaccepted(attempt, permit, ambiguous, outcome, reason);
                }
            }
        }
    }

    /// A slot of the batch's share (and of the shared quota) for `item`'s account, or why the
    /// account does not start: the worker's time budget, an interrupt, the ledger gone.
    async fn wait_for_slot(&self, item: &PlanItem) -> std::result::Result<Slot, String> {
        let slot = async {
            let permit = self.slots.clone().acquire_owned().await.expect("semaphore is never closed");
            let shared = match &self.options.quota {
                Some(quota) => Some(quota.acquire(&item.account_id, operation_of(item.action)).await?),
                None => None,
            };
            Ok::<_, FanoutError>(Slot::new(permit, shared, self.stats.clone()))
        };
        tokio::select! {
            slot = slot => slot.map_err(|e| format!("not started: no quota slot: {e}; re-run to converge")),
            _ = sleep_until(self.start_deadline) => Err("not started: the worker's time budget ran out first; re-run to converge".to_string()),
            _ = self.options.stop.cancelled() => Err("not started: the run was interrupted; re-run the same request to converge".to_string()),
        }
    }

    /// Ends an account no request of which AWS is known to have accepted. Its slot goes back,
    /// unless an attempt may have been accepted unseen: then it is parked (the account stays
    /// locked until AWS says nothing runs there), and the result says it may be running.
    fn end_unaccepted(&self, attempt: Attempt, permit: Slot, ambiguous: bool, outcome: Outcome, reason: String) -> AccountResult {
        if ambiguous {
            permit.park(None);
            let reason = format!("{reason}; an earlier attempt may have been accepted: re-run to converge");
            let outcome = if outcome == Outcome::Failed { Outcome::TimedOut } else { outcome };
            return attempt.finish(&self.ctx, self.batch, outcome, Some(reason));
        }
        drop(permit);
        attempt.finish(&self.ctx, self.batch, outcome, Some(reason))
    }

    /// The operation of `op` for `key` the instance listed as in progress, if any (each listed
    /// request this batch does not know described for its target; it may have ended since):
    /// what an ambiguous attempt became.
    async fn find_accepted(&self, op: Operation, key: &AssignmentKey) -> Option<OpStatus> {
        let listed = self.call(self.ops.in_progress_operations(op)).await.ok()?;
        let known = self.poller.pending_ids();
        for id in listed.into_iter().filter(|id| !known.contains(id)) {
            match self.call(self.ops.operation_status(op, &id)).await {
                Ok(status) if status.target.as_ref() == Some(key) => return Some(status),
                _ => continue,
            }
        }
        None
    }

    async fn await_final(
        self: &Arc<Self>,
        mut attempt: Attempt,
        status: OpStatus,
        permit: Slot,
        deadline: Instant,
    ) -> AccountResult {
        let accepted = Instant::now();
        let status = match status.state {
            OpState::InProgress => {
                // The poller holds the slot from here: it frees it as soon as AWS no longer
                // lists the operation as in progress, also after this account timed out.
                let rx = self.poller.register(operation_of(attempt.item.action), status.request_id.clone(), accepted, permit);
                let interrupted = async {
                    self.options.stop.cancelled().await;
                    tokio::select! {
                        _ = sleep(INTERRUPT_GRACE) => {}
                        _ = self.options.abandon.cancelled() => {}
                    }
                };
                tokio::select! {
                    outcome = timeout_at(deadline, rx) => match outcome {
                        Ok(Ok(final_status)) => final_status,
                        Ok(Err(_)) => return attempt.finish(&self.ctx, self.batch, Outcome::Failed, Some("status poller stopped".into())),
                        Err(_) => {
                            let id = status.request_id.clone();
                            return self.timed_out(attempt, Some(id));
                        }
                    },
                    _ = interrupted => {
                        let id = status.request_id.clone();
                        let reason = format!("interrupted while IN_PROGRESS (request {id}); re-run the same request, or check its status");
                        let mut r = attempt.finish(&self.ctx, self.batch, Outcome::TimedOut, Some(reason));
                        r.request_id = Some(id);
                        return r;
                    }
                }
            }
            _ => {
                drop(permit);
                status
            }
        };
        attempt.provisioning_ms = Some(accepted.elapsed().as_millis() as u64);
        match status.state {
            OpState::Succeeded => attempt.finish(&self.ctx, self.batch, Outcome::Succeeded, None),
            _ => {
                let reason = status.failure_reason.unwrap_or_else(|| "FAILED without a reason".into());
                attempt.finish(&self.ctx, self.batch, Outcome::Failed, Some(reason))
            }
        }
    }

    /// An item the account's chain holds back (see `ChainHold`): not sent, not final.
    fn not_started(&self, item: PlanItem, reason: String) -> AccountResult {
        let attempt = Attempt { item, started: Instant::now(), attempts: 0, request_id: None, provisioning_ms: None };
        attempt.finish(&self.ctx, self.batch, Outcome::NotStarted, Some(reason))
    }

    fn timed_out(&self, attempt: Attempt, request_id: Option<String>) -> AccountResult {
        let reason = match &request_id {
            Some(id) => format!("still IN_PROGRESS after {} s (request {id}); re-run or check its status", self.account_timeout.as_secs()),
            None => format!("no final state within {} s", self.account_timeout.as_secs()),
        };
        let mut r = attempt.finish(&self.ctx, self.batch, Outcome::TimedOut, Some(reason));
        if request_id.is_some() {
            r.request_id = request_id;
        }
        r
    }

    /// Stores that AWS accepted the operation (a non-final result with its request id), so a
    /// worker that dies before it ends leaves the id for the re-driven batch to check.
    async fn record_accepted(&self, attempt: &Attempt, request_id: &str) {
        let result = AccountResult {
            run_id: self.ctx.run_id.clone(),
            batch: self.batch,
            account_id: attempt.item.account_id.clone(),
            account_name: attempt.item.account_name.clone(),
            action: attempt.item.action,
            pair: attempt.item.pair,
            outcome: Outcome::TimedOut,
            request_id: Some(request_id.to_string()),
            reason: Some(format!("accepted by AWS (request {request_id}), IN_PROGRESS when its worker stopped; re-run or check its status")),
            attempts: attempt.attempts,
            duration_ms: attempt.started.elapsed().as_millis() as u64,
            provisioning_ms: None,
        };
        self.store_result(&result).await;
    }

    async fn record(&self, result: &AccountResult) {
        self.store_result(result).await;
        tracing::info!(run_id = %result.run_id, account = %result.account_id, outcome = result.outcome.as_str(),
            attempts = result.attempts, reason = result.reason.as_deref().unwrap_or(""), "account finished");
        if let Some(tx) = &self.events {
            let _ = tx.send(EngineEvent::Finished(result.clone()));
        }
    }

    async fn store_result(&self, result: &AccountResult) {
        for retry in 0..4u32 {
            match self.log.put_result(result).await {
                Ok(()) => break,
                Err(e) if retry == 3 => {
                    self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(run_id = %result.run_id, account = %result.account_id, error = %e, "result not stored");
                }
                Err(_) => sleep(retry::STORE_WRITES.random_delay(retry)).await,
            }
        }
    }
}

/// Pending operations waiting for their final state.
#[derive(Default)]
struct Poller {
    pending: Mutex<HashMap<String, Waiter>>,
    wake: Notify,
    /// Set once the endpoint says it cannot list operations by status (or keeps failing to).
    describe_only: AtomicBool,
    listing_failures: AtomicU64,
}

struct Waiter {
    /// Create (Assign) or delete (Revoke): which listing and describe call see it.
    op: Operation,
    tx: oneshot::Sender<OpStatus>,
    /// The operation's slot, until AWS stops listing it as in progress.
    slot: Option<Slot>,
    accepted: Instant,
    /// When to describe this operation next (None: wait for the listing to say it finished).
    next_check: Option<Instant>,
    /// A describe is on its way: do not send another.
    describing: bool,
    interval: Duration,
}

const DESCRIBE_FIRST: Duration = Duration::from_millis(500);
/// Status listings per expected completion of a pending operation.
const LISTINGS_PER_COMPLETION: f64 = 2.0;
/// However few operations are pending, their end is noticed within this.
const LISTING_INTERVAL_MAX: Duration = Duration::from_millis(500);
const DESCRIBE_MAX: Duration = Duration::from_secs(5);

impl Poller {
    fn register(&self, op: Operation, request_id: String, accepted: Instant, slot: Slot) -> oneshot::Receiver<OpStatus> {
        let (tx, rx) = oneshot::channel();
        let next_check = self.describe_only.load(Ordering::Relaxed).then(|| accepted + DESCRIBE_FIRST);
        let waiter = Waiter { op, tx, slot: Some(slot), accepted, next_check, describing: false, interval: DESCRIBE_FIRST };
        self.pending.lock().expect("poller").insert(request_id, waiter);
        self.wake.notify_one();
        rx
    }

    /// Parks the slot of every operation still waited for (the batch ends without its end).
    fn park_all(&self) {
        for (id, waiter) in self.pending.lock().expect("poller").iter_mut() {
            if let Some(slot) = waiter.slot.take() {
                slot.park(Some(id.clone()));
            }
        }
    }

    fn pending_ids(&self) -> BTreeSet<String> {
        self.pending.lock().expect("poller").keys().cloned().collect()
    }

    fn is_idle(&self) -> bool {
        self.pending.lock().expect("poller").is_empty()
    }

    fn pending_count(&self) -> usize {
        self.pending.lock().expect("poller").len()
    }

    /// The operation types with operations pending (what the listings must cover).
    fn pending_ops(&self) -> BTreeSet<Operation> {
        self.pending.lock().expect("poller").values().map(|w| w.op).collect()
    }

    /// Operations of type `op` accepted before the listing began and absent from it have finished.
    fn finished_per_listing(&self, op: Operation, in_progress: &BTreeSet<String>, listed_at: Instant) {
        let mut pending = self.pending.lock().expect("poller");
        for (id, w) in pending.iter_mut() {
            if w.op == op && w.accepted < listed_at && !in_progress.contains(id) && !w.describing {
                w.next_check = Some(listed_at);
                w.slot = None; // finished at AWS: the next account may start while we describe
            }
        }
    }

    fn switch_to_describe(&self) {
        self.describe_only.store(true, Ordering::Relaxed);
        let now = Instant::now();
        // A waiter whose describe is on its way is rescheduled by `after_describe`.
        for w in self.pending.lock().expect("poller").values_mut().filter(|w| !w.describing) {
            w.next_check.get_or_insert(now);
        }
    }

    fn due(&self, now: Instant) -> Vec<(Operation, String)> {
        let mut pending = self.pending.lock().expect("poller");
        let mut due = Vec::new();
        for (id, w) in pending.iter_mut() {
            if !w.describing && w.next_check.is_some_and(|t| t <= now) {
                w.next_check = None;
                w.describing = true; // rescheduled by `after_describe`
                due.push((w.op, id.clone()));
            }
        }
        due
    }

    /// When the next describe is due (waiters with a describe on its way are not: a past time
    /// for one of them would make the loop spin, and on a paused clock never let time move).
    fn next_due(&self) -> Option<Instant> {
        self.pending.lock().expect("poller").values().filter(|w| !w.describing).filter_map(|w| w.next_check).min()
    }

    fn after_describe(&self, id: &str, outcome: Result<OpStatus>) {
        let mut pending = self.pending.lock().expect("poller");
        match outcome {
            Ok(status) if status.state != OpState::InProgress => {
                if let Some(w) = pending.remove(id) {
                    let _ = w.tx.send(status);
                }
            }
            _ => {
                let describe_only = self.describe_only.load(Ordering::Relaxed);
                if let Some(w) = pending.get_mut(id) {
                    w.describing = false;
                    w.interval = (w.interval.mul_f64(1.5)).min(DESCRIBE_MAX);
                    // With the listing, an operation still in progress waits for the next listing.
                    w.next_check = describe_only.then(|| Instant::now() + w.interval);
                }
            }
        }
    }
}

/// One in-progress listing of `op` (or a fresh enough one another batch of this process made):
/// pending operations it no longer shows have finished. Returns when the listing began.
async fn list_in_progress(shared: &Arc<Shared>, op: Operation, last_listing: Option<Instant>, interval: Duration) -> Instant {
    let board = shared.options.listings.fresh(op, last_listing, Instant::now() - interval);
    let listed_at = board.as_ref().map_or_else(Instant::now, |(at, _)| *at);
    let listed = match board {
        // Another batch of this process just listed the instance's operations.
        Some((_, in_progress)) => Ok(in_progress),
        None => shared.call(shared.ops.in_progress_operations(op)).await.map(|set| {
            let set = Arc::new(set);
            shared.options.listings.publish(op, listed_at, set.clone());
            set
        }),
    };
    match listed {
        Ok(in_progress) => {
            shared.poller.listing_failures.store(0, Ordering::Relaxed);
            shared.poller.finished_per_listing(op, &in_progress, listed_at);
        }
        // The shared quota's ledger is gone (nothing was sent): the listing is tried again later.
        Err(FanoutError::Store(_)) => {}
        Err(e) => {
            // Unsupported at once, or three failures in a row: describe each operation instead.
            let failures = shared.poller.listing_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if matches!(e, FanoutError::Unsupported { .. }) || failures >= 3 {
                tracing::info!(run_id = %shared.ctx.run_id, error = %e, "status listing unavailable; describing each operation");
                shared.poller.switch_to_describe();
            }
        }
    }
    listed_at
}

async fn poll_loop(shared: Arc<Shared>) {
    // The listing goes out on a cadence set by how soon an operation is likely to end: about
    // twice per expected completion (pending operations / mean latency), never more often than
    // `poll_interval` per holder sharing the instance's rate. Slow provisioning or few pending
    // operations spend fewer calls, leaving the rate to creates. Describes run beside it (the
    // slot is already free once the listing says "finished").
    let mean_latency_s = shared.ctx.latency.mean_s().max(0.1);
    let mut last_listing: Option<Instant> = None;
    let mut describes = JoinSet::new();
    loop {
        while describes.try_join_next().is_some() {}
        if shared.poller.is_idle() {
            shared.poller.wake.notified().await;
            continue;
        }
        let listing = !shared.poller.describe_only.load(Ordering::Relaxed);
        if listing {
            let sharing = shared.options.quota.as_ref().map_or(1, |q| q.active_holders());
            let pending = shared.poller.pending_count().max(1) as f64;
            let by_completions = Duration::from_secs_f64(LISTINGS_PER_COMPLETION.recip() * mean_latency_s / pending);
            let due = last_listing.map(|t| t + by_completions.min(LISTING_INTERVAL_MAX).max(shared.poll_interval * sharing));
            if let Some(due) = due.filter(|d| *d > Instant::now()) {
                // More operations pending (a wake) bring the next listing forward.
                tokio::select! {
                    _ = sleep_until(due) => {}
                    _ = shared.poller.wake.notified() => continue,
                }
            }
            let interval = by_completions.min(LISTING_INTERVAL_MAX).max(shared.poll_interval * sharing);
            // One listing per operation type pending (creates and deletes are listed apart).
            let mut listed_at = None;
            for op in shared.poller.pending_ops() {
                let at = list_in_progress(&shared, op, last_listing, interval).await;
                listed_at = Some(listed_at.map_or(at, |t: Instant| t.min(at)));
            }
            last_listing = listed_at.or(last_listing);
        }
        for (op, id) in shared.poller.due(Instant::now()) {
            let shared = shared.clone();
            describes.spawn(async move {
                let outcome = shared.call(shared.ops.operation_status(op, &id)).await;
                shared.poller.after_describe(&id, outcome);
            });
        }
        if !listing {
            let next = shared.poller.next_due().unwrap_or_else(|| Instant::now() + DESCRIBE_FIRST);
            tokio::select! {
                _ = sleep_until(next) => {}
                _ = shared.poller.wake.notified() => {}
            }
        }
    }
}
