//! The shared quota: one worker's (holder's) side of the `QuotaLedger` that every worker,
//! execution and CLI run on the same Identity Center instance uses.
//!
//! - **Slots.** An operation starts only under a slot leased from the ledger for its account
//!   (which is also the account's lock). Leases expire after `LEASE` unless renewed, so a killed
//!   worker's slots come back; a renewal names the fence it holds, so a holder that lost its
//!   lease cannot touch the new holder's. A slot whose lease expired is taken only once its
//!   last account has no operation IN_PROGRESS: the dead holder's run log names the request
//!   AWS accepted, and AWS is asked about it.
//! - **Hand-over.** A holder whose operation ended keeps the slot for its next queued account
//!   (one ledger write) unless its fair share says to give it back; it releases what it does
//!   not need at once.
//! - **Fair shares.** Holders that want slots register; while others wait, a holder does not
//!   take more than its share (slots / holders wanting them), unless enough slots are free for
//!   everyone below their share.
//! - **Request rate.** Request times are reserved from the ledger's one rate item in small
//!   blocks, spaced by 1/rate. A reserved time not used within its own interval is dropped, so
//!   requests of all holders together keep one interval apart: any one-second window holds at
//!   most `rate + 1` of them.
//!
//! A holder is named `<run id>#b<batch>` (a batch's worker; a re-driven worker inherits the
//! leases its dead predecessor left: the slot of an account it resumes is handed straight to
//! it, the others are checked like any expired lease) or `<run id>#ball#<nonce>` (a process
//! running every batch). The run id leads to its run log.

use crate::error::{FanoutError, Result};
use crate::ids::AccountId;
use crate::model::{OpState, Scope};
use crate::ports::{AssignmentOps, RequestGate};
use crate::store::ledger::{Claim, ClaimRequest, HolderRecord, LedgerView, QuotaLedger, SlotRecord};
use crate::store::{MemoryLedger, RunLog};
use crate::tiers::QuotaBudget;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};
use tokio::time::{sleep, Duration, Instant};

/// How long a slot stays leased without renewal: a crashed worker's slots are free again
/// within this (plus one poll).
pub const LEASE: Duration = Duration::from_secs(60);
/// Leases are renewed when less than this is left: operations shorter than the difference
/// (nearly all) never cost a renewal.
const RENEW_WHEN_LEFT: Duration = Duration::from_secs(30);
/// How often a holder waiting for a slot re-reads a ledger that cannot notify.
const POLL: Duration = Duration::from_millis(200);
/// Most request times reserved with one ledger write (also what a holder alone reserves).
pub const RATE_BLOCK: u32 = 6;

/// Microseconds on the clock all holders share.
pub trait QuotaClock: Send + Sync {
    fn now_us(&self) -> u64;
}

/// Unix time: what holders in different processes share.
pub struct WallClock;

impl QuotaClock for WallClock {
    fn now_us(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
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

impl QuotaClock for TokioClock {
    fn now_us(&self) -> u64 {
        // Offset by a lease, so "expired at 0" (a fresh slot) is always in the past.
        LEASE.as_micros() as u64 + self.origin.elapsed().as_micros() as u64
    }
}

fn lease_end(now_us: u64) -> u64 {
    now_us + LEASE.as_micros() as u64
}

/// A process's access to the shared quota: the ledger, the clock all holders share, and the
/// process's request times per instance (its batches and its planner draw on one queue of
/// reserved times, so none of them reserves times another could have used). Clones share all
/// three: make one per process.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn QuotaLedger>,
    clock: Arc<dyn QuotaClock>,
    rates: Arc<Mutex<BTreeMap<String, Arc<SharedRate>>>>,
}

impl Ledger {
    pub fn new(store: Arc<dyn QuotaLedger>, clock: Arc<dyn QuotaClock>) -> Ledger {
        Ledger { store, clock, rates: Arc::default() }
    }

    /// The instance's request rate as this process spends it (holders and the planner's
    /// look-ups alike).
    pub fn rate(&self, scope: &Scope, budget: QuotaBudget) -> Arc<SharedRate> {
        let mut rates = self.rates.lock().expect("rates");
        rates
            .entry(scope.key())
            .or_insert_with(|| Arc::new(SharedRate::new(self.store.clone(), self.clock.clone(), scope.clone(), budget.requests_per_second)))
            .clone()
    }

    /// A new holder: one worker running batch `batch` of run `run_id` (None: every batch the
    /// process runs), spending `budget` of the instance `scope`. `ops` and `log` serve to check
    /// what a dead holder left running.
    pub fn holder(
        &self,
        scope: &Scope,
        run_id: &str,
        batch: Option<u32>,
        budget: QuotaBudget,
        ops: Arc<dyn AssignmentOps>,
        log: Arc<dyn RunLog>,
    ) -> Arc<SharedQuota> {
        // A batch's worker has the same name however often it is re-driven, so a retried
        // worker inherits the leases of the one that died (see `dispatch`). A process running
        // all batches gets a name of its own.
        let name = match batch {
            Some(b) => format!("{run_id}#b{b}"),
            None => format!("{run_id}#ball#{:08x}", rand::random::<u32>()),
        };
        Arc::new(SharedQuota {
            rate: self.rate(scope, budget),
            ledger: self.store.clone(),
            clock: self.clock.clone(),
            scope: scope.clone(),
            holder: name,
            budget,
            ops,
            log,
            held: Mutex::default(),
            spare: Mutex::default(),
            let_go: Mutex::default(),
            waiting: AtomicU32::new(0),
            registered: Mutex::new(None),
            queue: Mutex::default(),
            claim_turn: Arc::new(tokio::sync::Mutex::new(())),
            local_release: Notify::new(),
            active_holders: AtomicU32::new(1),
            dead: AtomicBool::new(false),
            maintenance: Mutex::new((0, None)),
            background: Mutex::default(),
            contention: Mutex::default(),
        })
    }
}

/// An instance's quota ledger kept in memory, with the clock its processes share: what
/// simulated runs use in place of DynamoDB or the CLI's quota file. `process` gives each
/// simulated process its own access (its own queue of request times), as separate processes
/// on a real instance have.
#[derive(Clone)]
pub struct MemoryInstance {
    pub ledger: Arc<MemoryLedger>,
    pub clock: Arc<TokioClock>,
}

impl MemoryInstance {
    pub fn new() -> MemoryInstance {
        MemoryInstance { ledger: Arc::new(MemoryLedger::new()), clock: Arc::new(TokioClock::new()) }
    }

    pub fn process(&self) -> Ledger {
        Ledger::new(self.ledger.clone(), self.clock.clone())
    }
}

impl Default for MemoryInstance {
    fn default() -> Self {
        MemoryInstance::new()
    }
}

/// The instance's request rate as one caller spends it: request times reserved from the
/// ledger in blocks (see the module doc). Holders pace their calls with it; the planner's
/// look-ups pass it as their `RequestGate`.
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
    holders: AtomicU32,
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
        }
    }

    fn interval_us(&self) -> u64 {
        (1e6 / self.requests_per_second.max(0.1)).ceil() as u64
    }

    /// Waits for a reserved request time.
    pub async fn pace(&self) -> Result<()> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let paced = self.pace_inner().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        paced
    }

    async fn pace_inner(&self) -> Result<()> {
        let interval = self.interval_us();
        loop {
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
        let first = self.ledger.reserve_requests(&self.scope, count, interval, self.clock.now_us()).await?;
        self.times.lock().expect("times").extend((0..u64::from(count)).map(|i| first + i * interval));
        Ok(())
    }

    /// AWS throttled a request anyway (another tool spends the same quota): every holder
    /// pauses for half a second's worth of requests.
    pub async fn throttled(&self) {
        let interval = self.interval_us();
        let count = (self.requests_per_second / 2.0).ceil() as u32;
        if let Err(e) = self.ledger.reserve_requests(&self.scope, count.max(1), interval, self.clock.now_us()).await {
            tracing::debug!(error = %e, "could not record a throttle in the quota ledger");
        }
        self.times.lock().expect("times").clear();
    }
}

/// Fewest request times reserved with one ledger write.
const RATE_BLOCK_MIN: u32 = 2;

#[async_trait::async_trait]
impl RequestGate for SharedRate {
    async fn admit(&self) {
        if let Err(e) = self.pace().await {
            // The ledger is unreachable: a look-up is not worth failing a plan over.
            tracing::warn!(error = %e, "quota ledger unavailable; look-up not paced");
        }
    }
}

/// The ledger as one holder sees it.
pub struct SharedQuota {
    ledger: Arc<dyn QuotaLedger>,
    clock: Arc<dyn QuotaClock>,
    scope: Scope,
    holder: String,
    budget: QuotaBudget,
    rate: Arc<SharedRate>,
    /// Check whether a dead holder's last operation has ended.
    ops: Arc<dyn AssignmentOps>,
    log: Arc<dyn RunLog>,
    /// Slots leased to us: fence and lease end.
    held: Mutex<BTreeMap<u32, Held>>,
    /// Leased slots whose operation ended, kept for a hand-over to the next queued account.
    spare: Mutex<Vec<u32>>,
    /// Leases this process let go whose release the ledger may not show yet: never "inherited".
    let_go: Mutex<BTreeSet<(u32, u64)>>,
    waiting: AtomicU32,
    /// (accounts waiting, when) as last written to the ledger's holder record.
    registered: Mutex<Option<(u32, u64)>>,
    /// Accounts waiting for a slot, in order.
    queue: Mutex<VecDeque<Queued>>,
    /// Held by the task dispatching slots to the queue (and when spare slots change hands).
    claim_turn: Arc<tokio::sync::Mutex<()>>,
    local_release: Notify,
    /// Holders that held or wanted slots at the last ledger read (at least 1: us).
    active_holders: AtomicU32,
    /// Set when the holder is to behave as if its process died: no ledger writes from then on.
    dead: AtomicBool,
    /// Guards alive and the renewal task they keep running.
    maintenance: Mutex<(u32, Option<tokio::task::JoinHandle<()>>)>,
    /// Ledger writes started in the background (releases, hand-over grace, deregistration):
    /// `settle` waits for them, so a Lambda does not freeze with a slot still leased.
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What kept accounts waiting at the last ledger read (see `contention`).
    contention: Mutex<Option<Contention>>,
}

/// Slots leased to other holders while accounts of ours wait: what a run that crawls is
/// waiting for (another run, or one that stopped without releasing its leases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contention {
    /// Live slots not leased to this holder.
    pub leased_elsewhere: u32,
    /// Their holders (a few), e.g. `run-20261204-...#b0`.
    pub holders: Vec<String>,
    /// Until the soonest of their leases ends unless renewed.
    pub soonest_end_ms: u64,
}

impl std::fmt::Debug for SharedQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQuota").field("holder", &self.holder).field("budget", &self.budget).finish_non_exhaustive()
    }
}

struct Queued {
    account: AccountId,
    tx: oneshot::Sender<SharedSlot>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    fence: u64,
    expires_us: u64,
}

/// A leased slot. Dropped when its operation ended: kept for a hand-over while accounts queue,
/// released otherwise.
pub struct SharedSlot {
    quota: Arc<SharedQuota>,
    slot: u32,
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        let quota = self.quota.clone();
        let slot = self.slot;
        if quota.dead.load(Ordering::Relaxed) {
            return;
        }
        // Spare for a moment: the account that takes this one's place (woken by the same
        // event) queues within it and gets the slot handed over; otherwise it is released.
        quota.spare.lock().expect("spare").push(slot);
        quota.local_release.notify_waiters();
        let background = quota.clone();
        background.in_background(async move {
                sleep(SPARE_GRACE).await;
                let _turn = quota.claim_turn.lock().await;
                let unused = {
                    let mut spare = quota.spare.lock().expect("spare");
                    let queued = !quota.queue.lock().expect("queue").is_empty();
                    match spare.iter().position(|s| *s == slot) {
                        Some(i) if !queued => Some(spare.swap_remove(i)),
                        _ => None,
                    }
                };
                if let Some(slot) = unused {
                    quota.release_later(slot);
                }
        });
    }
}

/// How long a slot whose operation ended waits for the holder's next account.
const SPARE_GRACE: Duration = Duration::from_millis(20);

enum Source {
    Free(SlotRecord),
    Spare(u32),
    /// A live lease under our name a dead predecessor took, for the account it named.
    Inherited(SlotRecord),
}

impl SharedQuota {
    /// Behave as a killed process would: stop writing to the ledger (leases then expire).
    pub fn die(&self) {
        self.dead.store(true, Ordering::Relaxed);
    }

    /// Waits for one of the instance's request times (see the module doc).
    pub async fn pace(&self) -> Result<()> {
        self.rate.pace().await
    }

    /// AWS throttled a request anyway: see `SharedRate::throttled`.
    pub async fn throttled(&self) {
        self.rate.throttled().await
    }

    /// Slots other holders lease while accounts of ours wait, as of the last ledger read; None
    /// while nothing waits or nothing is leased elsewhere.
    pub fn contention(&self) -> Option<Contention> {
        self.contention.lock().expect("contention").clone()
    }

    fn note_contention(&self, view: &LedgerView) {
        let now = self.clock.now_us();
        let waiting = !self.queue.lock().expect("queue").is_empty();
        let ours: BTreeSet<u32> = self.held.lock().expect("held").keys().copied().collect();
        let elsewhere: Vec<&SlotRecord> = view.slots.iter().filter(|s| s.is_live(now) && !ours.contains(&s.slot)).collect();
        let noted = (waiting && !elsewhere.is_empty()).then(|| {
            let mut holders: Vec<String> = elsewhere.iter().filter_map(|s| s.holder.clone()).collect();
            holders.sort();
            holders.dedup();
            holders.truncate(3);
            let soonest = elsewhere.iter().map(|s| s.expires_us).min().unwrap_or(now);
            Contention { leased_elsewhere: elsewhere.len() as u32, holders, soonest_end_ms: soonest.saturating_sub(now) / 1000 }
        });
        *self.contention.lock().expect("contention") = noted;
    }

    /// Holders sharing the instance at the last ledger read, this one included: a holder's
    /// status polling slows down by this factor, so that together they list as often as one.
    pub fn active_holders(&self) -> u32 {
        self.active_holders.load(Ordering::Relaxed).max(1)
    }

    /// Leases a slot for `account`, waiting as long as the ledger has none for us.
    ///
    /// Accounts queue in the holder (FIFO). Whoever holds the holder's turn dispatches for the
    /// whole queue until its own account is served: it reads the ledger once, hands spare slots
    /// over and claims as many as the fair share allows for the first queued accounts no other
    /// run holds, then waits for a release or the next poll. So a holder reads the ledger once
    /// per round, not once per account, and an account another run is busy with does not block
    /// the queue.
    pub async fn acquire(self: &Arc<Self>, account: &AccountId) -> Result<SharedSlot> {
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock().expect("queue").push_back(Queued { account: account.clone(), tx });
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let result = tokio::select! {
            biased;
            served = &mut rx => served.map_err(|_| FanoutError::Internal("quota dispatcher stopped".into())),
            _turn = self.claim_turn.lock() => {
                let served = match rx.try_recv() {
                    Ok(slot) => Ok(slot),
                    Err(_) => self.dispatch_until_served(&mut rx).await,
                };
                // Leaving the turn with nobody queued: spare slots go back now.
                if self.queue.lock().expect("queue").is_empty() {
                    for slot in std::mem::take(&mut *self.spare.lock().expect("spare")) {
                        self.release_later(slot);
                    }
                }
                served
            }
        };
        if self.waiting.fetch_sub(1, Ordering::Relaxed) == 1 {
            *self.contention.lock().expect("contention") = None;
            // Nothing waits any more: say so, or other holders keep leaving slots to us.
            if let Err(e) = self.register(false).await {
                tracing::debug!(error = %e, "could not update the holder record");
            }
        }
        result
    }

    async fn dispatch_until_served(self: &Arc<Self>, own: &mut oneshot::Receiver<SharedSlot>) -> Result<SharedSlot> {
        let external = self.ledger.released();
        loop {
            if self.dead.load(Ordering::Relaxed) {
                return Err(FanoutError::Internal("quota holder stopped".into()));
            }
            // Listen before reading the ledger, so a release in between is not missed.
            let mut local = std::pin::pin!(self.local_release.notified());
            local.as_mut().enable();
            let mut remote = external.as_ref().map(|n| Box::pin(n.notified()));
            if let Some(r) = remote.as_mut() {
                r.as_mut().enable();
            }
            let view = self.ledger.view(&self.scope).await?;
            self.dispatch(&view).await?;
            self.note_contention(&view);
            if let Ok(slot) = own.try_recv() {
                return Ok(slot);
            }
            // No slot for us this round: let the others know we wait.
            self.register(true).await?;
            let jitter = Duration::from_millis(rand::random::<u64>() % 50);
            tokio::select! {
                _ = local => {}
                _ = async { match remote { Some(r) => r.await, None => std::future::pending().await } } => {}
                _ = sleep(POLL + jitter) => {}
            }
        }
    }

    /// One round: gives back spare slots beyond the fair share, then serves the first queued
    /// accounts no live slot holds, spare slots first, free ones as the share allows.
    async fn dispatch(self: &Arc<Self>, view: &LedgerView) -> Result<()> {
        let now = self.clock.now_us();
        let Share { keep, mut free } = self.share(view, now);
        let spare = std::mem::take(&mut *self.spare.lock().expect("spare"));
        // Slots this process holds as the round starts (those it gives back below included).
        let ours: BTreeSet<u32> = self.held.lock().expect("held").keys().copied().collect();
        let held = ours.len();
        let excess = held.saturating_sub(keep).min(spare.len());
        let (give_back, spare) = spare.split_at(excess);
        for slot in give_back {
            self.release_later(*slot);
        }
        // Live leases under our name that this process did not take: a dead predecessor's.
        // (Not those we just let go, whose release the view may not show yet.)
        let mut inherited: BTreeMap<AccountId, SlotRecord> = {
            let mut let_go = self.let_go.lock().expect("let go");
            let_go.retain(|(slot, fence)| view.slots.iter().any(|s| s.slot == *slot && s.fence == *fence && s.holder.is_some()));
            view.slots
                .iter()
                .filter(|s| s.is_live(now) && s.holder.as_deref() == Some(self.holder.as_str()) && !ours.contains(&s.slot))
                .filter(|s| !let_go.contains(&(s.slot, s.fence)))
                .filter_map(|s| s.account.clone().map(|a| (a, s.clone())))
                .collect()
        };
        let claimable = keep.saturating_sub(held + inherited.len()).min(free.len());
        let mut sources: Vec<Source> = spare.iter().map(|s| Source::Spare(*s)).collect();
        sources.extend(free.drain(free.len() - claimable..).rev().map(Source::Free));

        let busy: BTreeSet<&AccountId> = view
            .slots
            .iter()
            .filter(|s| s.is_live(now))
            .filter_map(|s| s.account.as_ref())
            .filter(|a| !inherited.contains_key(*a))
            .collect();
        let picked: Vec<Queued> = {
            let mut queue = self.queue.lock().expect("queue");
            queue.retain(|q| !q.tx.is_closed()); // its task stopped waiting
            let mut picked: Vec<Queued> = Vec::new();
            let mut rest = VecDeque::new();
            while let Some(q) = queue.pop_front() {
                let room = picked.len() < sources.len() + inherited.len();
                if room && !busy.contains(&q.account) && !picked.iter().any(|p| p.account == q.account) {
                    picked.push(q);
                } else {
                    rest.push_back(q);
                }
            }
            *queue = rest;
            picked
        };
        // The predecessor's other leases: free once what they ran has ended.
        let unmatched: Vec<SlotRecord> = {
            let queued: BTreeSet<&AccountId> = picked.iter().map(|q| &q.account).collect();
            let gone: Vec<AccountId> = inherited.keys().filter(|a| !queued.contains(a)).cloned().collect();
            gone.into_iter().filter_map(|a| inherited.remove(&a)).collect()
        };
        sources.extend(unmatched.into_iter().map(Source::Free));
        let mut sources = sources.into_iter();
        let mut unserved = Vec::new();
        let mut picked = picked.into_iter();
        let mut failure = None;
        'accounts: for queued in picked.by_ref() {
            // An account the predecessor started keeps its slot (the engine then asks AWS about
            // the request it stored).
            if let Some(record) = inherited.remove(&queued.account) {
                match self.take(Source::Inherited(record), &queued.account, now).await {
                    Ok(Some(slot)) => {
                        let _ = queued.tx.send(slot);
                        continue 'accounts;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e);
                        unserved.push(queued);
                        break 'accounts;
                    }
                }
            }
            for source in sources.by_ref() {
                match self.take(source, &queued.account, now).await {
                    Ok(Some(slot)) => {
                        // A waiter gone meanwhile drops the slot, which releases it.
                        let _ = queued.tx.send(slot);
                        continue 'accounts;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        failure = Some(e);
                        unserved.push(queued);
                        break 'accounts;
                    }
                }
            }
            unserved.push(queued);
            break;
        }
        unserved.extend(picked);
        // A spare slot still locks the account it last served: kept beyond this round, it
        // could hold up another run that waits for that account while we wait for one it
        // holds. Release what this round did not hand over.
        for source in sources {
            if let Source::Spare(slot) = source {
                self.release_later(slot);
            }
        }
        // Put the accounts not served this round back at the head of the queue, in order.
        let mut queue = self.queue.lock().expect("queue");
        for q in unserved.into_iter().rev() {
            queue.push_front(q);
        }
        failure.map_or(Ok(()), Err)
    }

    /// Leases `source` for `account`. None: the slot is not to be had (another holder claimed
    /// it, the account is busy elsewhere, or a dead holder's operation still runs in it).
    async fn take(self: &Arc<Self>, source: Source, account: &AccountId, now: u64) -> Result<Option<SharedSlot>> {
        let (slot, seen_fence) = match &source {
            Source::Spare(slot) => {
                let Some(held) = self.held.lock().expect("held").get(slot).copied() else { return Ok(None) };
                (*slot, held.fence)
            }
            Source::Free(record) => {
                if record.holder.is_some() && !self.orphan_finished(record).await {
                    return Ok(None);
                }
                (record.slot, record.fence)
            }
            Source::Inherited(record) => (record.slot, record.fence),
        };
        let expires_us = lease_end(now);
        let claim = ClaimRequest { slot, seen_fence, holder: &self.holder, account, now_us: now, expires_us };
        match self.ledger.claim(&self.scope, &claim).await? {
            Claim::Granted { fence } => {
                self.held.lock().expect("held").insert(slot, Held { fence, expires_us });
                Ok(Some(SharedSlot { quota: self.clone(), slot }))
            }
            Claim::AccountBusy => {
                if let Source::Spare(slot) = source {
                    self.release_later(slot);
                }
                Ok(None)
            }
            Claim::Lost => {
                if let Source::Spare(slot) = source {
                    tracing::warn!(slot, "quota slot lease was taken over while spare");
                    self.held.lock().expect("held").remove(&slot);
                }
                Ok(None)
            }
        }
    }

    /// Whether the account an expired lease was for has no operation IN_PROGRESS: the dead
    /// holder's run log names the requests AWS accepted in that account (a rules run has one
    /// result per assignment), and AWS says how they stand.
    async fn orphan_finished(&self, record: &SlotRecord) -> bool {
        let (Some(holder), Some(account)) = (&record.holder, &record.account) else { return true };
        let run_id = holder.split('#').next().unwrap_or_default();
        let pending: Vec<(crate::model::Operation, String)> = match self.log.results(run_id).await {
            Ok(results) => results
                .into_iter()
                .filter(|r| &r.account_id == account && !r.outcome.is_final())
                .filter_map(|r| {
                    let op = if r.action == crate::model::Action::Delete { crate::model::Operation::Revoke } else { crate::model::Operation::Assign };
                    Some((op, r.request_id?))
                })
                .collect(),
            Err(e) => {
                tracing::debug!(run_id, error = %e, "could not read a dead holder's results; its slot stays taken");
                return false;
            }
        };
        for (operation, request_id) in pending {
            if self.rate.pace().await.is_err() {
                return false;
            }
            match self.ops.operation_status(operation, &request_id).await {
                Ok(status) if status.state == OpState::InProgress => return false,
                Ok(_) | Err(FanoutError::NotFound { .. }) => {}
                Err(e) => {
                    tracing::debug!(request_id, error = %e, "could not check an orphaned operation; its slot stays taken");
                    return false;
                }
            }
        }
        true
    }

    fn release_later(self: &Arc<Self>, slot: u32) {
        let Some(held) = self.held.lock().expect("held").remove(&slot) else { return };
        self.let_go.lock().expect("let go").insert((slot, held.fence));
        self.local_release.notify_waiters();
        if self.dead.load(Ordering::Relaxed) {
            return;
        }
        let quota = self.clone();
        self.in_background(async move {
            if let Err(e) = quota.ledger.release(&quota.scope, slot, held.fence).await {
                tracing::warn!(slot, error = %e, "could not release a quota slot; it frees itself when its lease expires");
            }
        });
    }

    /// Runs a ledger write in the background (from `Drop`), tracked for `settle`.
    fn in_background(&self, write: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let task = handle.spawn(write);
            let mut background = self.background.lock().expect("background");
            background.retain(|t| !t.is_finished());
            background.push(task);
        }
    }

    /// Waits until every background ledger write (releases, deregistration) is done: call it
    /// before the process may stop (a Lambda freezes when its handler returns).
    pub async fn settle(&self) {
        loop {
            let pending = std::mem::take(&mut *self.background.lock().expect("background"));
            if pending.is_empty() {
                return;
            }
            for task in pending {
                let _ = task.await;
            }
        }
    }

    /// How many slots this holder may hold after this round, and the free slots, best last:
    /// never written or released cleanly before expired leases (which may hide an orphaned
    /// operation).
    fn share(&self, view: &LedgerView, now: u64) -> Share {
        let max = self.budget.max_outstanding;
        let written: BTreeMap<u32, &SlotRecord> = view.slots.iter().filter(|s| s.slot < max).map(|s| (s.slot, s)).collect();
        let all: Vec<SlotRecord> = (0..max).map(|i| written.get(&i).map(|s| (*s).clone()).unwrap_or_else(|| SlotRecord::free(i))).collect();
        let held_by = |h: &str| all.iter().filter(|s| s.is_live(now) && s.holder.as_deref() == Some(h)).count() as u32;
        let mine = held_by(&self.holder);
        let others: Vec<&HolderRecord> =
            view.holders.iter().filter(|h| h.holder != self.holder && h.expires_us > now && h.waiting > 0).collect();
        let share = max.div_ceil(others.len() as u32 + 1);
        let holding: BTreeSet<&str> = all.iter().filter(|s| s.is_live(now)).filter_map(|s| s.holder.as_deref()).collect();
        let active = others.iter().filter(|h| !holding.contains(h.holder.as_str())).count() + holding.len().max(1);
        self.active_holders.store(active as u32, Ordering::Relaxed);
        self.rate.holders.store(active as u32, Ordering::Relaxed);
        let others_short: u32 = others.iter().map(|h| share.saturating_sub(held_by(&h.holder)).min(h.waiting)).sum();
        let mut free: Vec<SlotRecord> = all.into_iter().filter(|s| !s.is_live(now)).collect();
        // All we hold plus the free slots others below their share do not need; never less
        // than our share (give back spare slots down to it while others wait).
        let keep = (share as i64).max(mine as i64 + free.len() as i64 - others_short as i64) as u32;
        free.sort_by_key(|s| std::cmp::Reverse((s.holder.is_some(), s.slot)));
        Share { keep: keep as usize, free }
    }

    /// Says in the ledger whether this holder waits for slots and for how many accounts, up
    /// to the slots there are (others then leave it its share): written when that changes or
    /// grows, and renewed while it lasts. A holder that gets its slots at once never writes it.
    async fn register(&self, wanting: bool) -> Result<()> {
        let now = self.clock.now_us();
        let waiting = if wanting { self.waiting.load(Ordering::Relaxed).clamp(1, self.budget.max_outstanding.max(1)) } else { 0 };
        let due = match *self.registered.lock().expect("registered") {
            None => wanting,
            Some((written, at)) => {
                (written > 0) != wanting || waiting > written || (wanting && now > at + (LEASE - RENEW_WHEN_LEFT).as_micros() as u64)
            }
        };
        if !due {
            return Ok(());
        }
        let record = HolderRecord { holder: self.holder.clone(), waiting, expires_us: lease_end(now) };
        self.ledger.put_holder(&self.scope, &record).await?;
        *self.registered.lock().expect("registered") = Some((waiting, now));
        Ok(())
    }

    /// Renews leases close to expiry and the holder record.
    async fn renew_due(&self) {
        if self.dead.load(Ordering::Relaxed) {
            return;
        }
        let now = self.clock.now_us();
        let soon = now + RENEW_WHEN_LEFT.as_micros() as u64;
        let due: Vec<(u32, Held)> = self.held.lock().expect("held").iter().filter(|(_, h)| h.expires_us < soon).map(|(s, h)| (*s, *h)).collect();
        for (slot, h) in due {
            let expires_us = lease_end(now);
            match self.ledger.renew(&self.scope, slot, h.fence, expires_us).await {
                Ok(true) => {
                    if let Some(h) = self.held.lock().expect("held").get_mut(&slot) {
                        h.expires_us = expires_us;
                    }
                }
                Ok(false) => {
                    tracing::warn!(slot, "quota slot lease was taken over (renewed too late)");
                    self.held.lock().expect("held").remove(&slot);
                }
                Err(e) => tracing::warn!(slot, error = %e, "could not renew a quota slot lease"),
            }
        }
        if self.waiting.load(Ordering::Relaxed) > 0 && self.registered.lock().expect("registered").is_some_and(|(w, _)| w > 0) {
            if let Err(e) = self.register(true).await {
                tracing::debug!(error = %e, "could not refresh the holder record");
            }
        }
    }

    /// Keeps leases alive until the last returned guard is dropped, then releases spare slots
    /// and deregisters the holder. (Batches of one process may share a holder: each keeps a
    /// guard.)
    pub fn maintain(self: &Arc<Self>) -> Maintenance {
        let mut task = self.maintenance.lock().expect("maintenance");
        let (count, handle) = &mut *task;
        *count += 1;
        if handle.is_none() {
            let quota = self.clone();
            *handle = Some(tokio::spawn(async move {
                loop {
                    sleep(Duration::from_secs(5)).await;
                    quota.renew_due().await;
                }
            }));
        }
        Maintenance { quota: self.clone() }
    }
}

struct Share {
    keep: usize,
    free: Vec<SlotRecord>,
}

/// Ends a holder's maintenance when the last guard goes: stops renewing, releases spare slots
/// and removes its record.
pub struct Maintenance {
    quota: Arc<SharedQuota>,
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        let quota = self.quota.clone();
        {
            let mut task = quota.maintenance.lock().expect("maintenance");
            task.0 -= 1;
            if task.0 > 0 {
                return;
            }
            if let Some(handle) = task.1.take() {
                handle.abort();
            }
        }
        if quota.dead.load(Ordering::Relaxed) {
            return;
        }
        for slot in std::mem::take(&mut *quota.spare.lock().expect("spare")) {
            quota.release_later(slot);
        }
        let deregister = quota.clone();
        quota.in_background(async move {
            let _ = deregister.ledger.remove_holder(&deregister.scope, &deregister.holder).await;
        });
    }
}
