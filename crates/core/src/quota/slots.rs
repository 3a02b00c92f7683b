//! One holder's slots of the shared quota: claiming them for accounts in turn (FIFO, fair
//! shares), handing a finished one to the next account, parking one whose operation may still
//! run, taking over the slots of holders that stopped once AWS says their operations ended, and
//! the heartbeat that keeps this holder's own slots its own.

use super::clock::{QuotaClock, MAX_UNCERTAINTY_US};
use super::rate::SharedRate;
use super::{FENCE_AFTER, HEARTBEAT, HEARTBEAT_TTL, HEARTBEAT_WRITE_TIMEOUT, LEDGER_PATIENCE};
use crate::error::{FanoutError, Result};
use crate::ids::AccountId;
use crate::model::{OpState, Operation, Scope};
use crate::ports::AssignmentOps;
use crate::store::ledger::{Claim, ClaimRequest, HolderRecord, LedgerView, QuotaLedger, SlotRecord};
use crate::tiers::QuotaBudget;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};
use tokio::time::{sleep, timeout, Duration, Instant};

/// How often a holder waiting for a slot re-reads a ledger that cannot notify.
const POLL: Duration = Duration::from_millis(200);
/// How long a slot whose operation ended waits for the holder's next account.
const SPARE_GRACE: Duration = Duration::from_millis(20);
/// A given-up slot whose operation AWS still runs is asked about again after this, doubling up
/// to `CHECK_MAX` (each check is a call on the instance's request rate).
const CHECK_FIRST: Duration = Duration::from_secs(2);
const CHECK_MAX: Duration = Duration::from_secs(16);
/// Where the instance cannot list operations by status (moto), a given-up slot that does not
/// know its request id is taken as ended once its claim is this old: far longer than any
/// provisioning seen (AWS publishes no maximum).
const UNVERIFIABLE_AFTER: Duration = Duration::from_secs(15 * 60);
/// Between attempts to reach the ledger again.
const LEDGER_RETRY: Duration = Duration::from_secs(1);

/// A holder's name: `<run id>#b<batch>@<nonce>` (one batch's worker) or `<run id>#ball@<nonce>`
/// (a process running every batch). The nonce makes each incarnation its own: a twin or a
/// retried worker never takes another's slot as its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HolderId(String);

impl HolderId {
    pub fn new(run_id: &str, batch: Option<u32>) -> HolderId {
        let nonce: u32 = rand::random();
        match batch {
            Some(b) => HolderId(format!("{run_id}#b{b}@{nonce:08x}")),
            None => HolderId(format!("{run_id}#ball@{nonce:08x}")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HolderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Slots leased to other holders while accounts of ours wait: what a run that crawls is
/// waiting for (another run, or one that stopped without releasing its slots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contention {
    /// Slots held by other holders, or given up while AWS may still run their operations.
    pub leased_elsewhere: u32,
    /// Their holders (a few).
    pub holders: Vec<String>,
    /// Until the soonest of the others' heartbeats ends unless renewed (0: given up already).
    pub soonest_end_ms: u64,
}

/// The ledger as one holder sees it.
pub struct SharedQuota {
    ledger: Arc<dyn QuotaLedger>,
    clock: Arc<dyn QuotaClock>,
    scope: Scope,
    holder: HolderId,
    budget: QuotaBudget,
    rate: Arc<SharedRate>,
    /// Asks AWS whether what a given-up slot ran has ended.
    ops: Arc<dyn AssignmentOps>,
    /// Slots claimed by us and not yet released or parked.
    held: Mutex<BTreeMap<u32, Held>>,
    /// Held slots whose operation ended, kept for a hand-over to the next queued account.
    spare: Mutex<Vec<u32>>,
    /// Releases and parks on their way: a view may still show them ours.
    releasing: Mutex<BTreeSet<(u32, u64)>>,
    parking: Mutex<BTreeSet<(u32, u64)>>,
    waiting: AtomicU32,
    /// Accounts waiting for a slot, in order.
    queue: Mutex<VecDeque<Queued>>,
    /// Held by the task dispatching slots to the queue (and when spare slots change hands).
    claim_turn: Arc<tokio::sync::Mutex<()>>,
    local_release: Notify,
    /// Holders that held or wanted slots at the last ledger read (at least 1: us).
    active_holders: AtomicU32,
    /// Set when the holder is to behave as if its process died: no ledger writes from then on.
    dead: AtomicBool,
    beat: Mutex<Beat>,
    /// Guards alive and the heartbeat task they keep running.
    maintenance: Mutex<(u32, Option<tokio::task::JoinHandle<()>>)>,
    /// Ledger writes started in the background (releases, parks, hand-over grace,
    /// deregistration): `settle` waits for them, so a Lambda does not freeze with them undone.
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What kept accounts waiting at the last ledger read (see `contention`).
    contention: Mutex<Option<Contention>>,
    /// What AWS said of given-up slots' operations, by (slot, fence).
    checks: Mutex<HashMap<(u32, u64), Check>>,
    /// The account each request id seen IN_PROGRESS targets (it never changes).
    targets: Mutex<HashMap<String, Option<AccountId>>>,
    /// Heartbeats written by a clock far ahead, and when this holder first saw them.
    far_ahead: Mutex<HashMap<String, (u64, u64)>>,
}

struct Queued {
    account: AccountId,
    op: Operation,
    tx: oneshot::Sender<SharedSlot>,
}

#[derive(Debug, Clone)]
struct Held {
    fence: u64,
    account: AccountId,
    op: Operation,
    /// When the claim was answered: a heartbeat lapse after it makes the slot suspect.
    claimed: Instant,
}

/// This holder's heartbeat as it went.
#[derive(Default)]
struct Beat {
    /// When a heartbeat write last succeeded.
    last_ok: Option<Instant>,
    /// The last time the heartbeat had lapsed past `FENCE_AFTER`: slots claimed before it may
    /// have been taken over.
    last_lapse: Option<Instant>,
    /// Accounts waiting, as last written.
    written_waiting: u32,
}

#[derive(Debug, Clone, Copy)]
struct Check {
    ended: bool,
    next: Instant,
    interval: Duration,
}

/// A claimed slot. Dropped when its operation ended: kept for a hand-over while accounts queue,
/// released otherwise. `park` it instead when the operation may still run.
pub struct SharedSlot {
    quota: Arc<SharedQuota>,
    slot: u32,
    /// The fence this claim holds the slot under (raised when it is claimed again after a
    /// heartbeat lapse): a slot number alone may name a later claim of the same slot.
    fence: AtomicU64,
    parked: bool,
}

impl SharedSlot {
    /// Whether `held` still is this claim of the slot (not a later one of the same slot).
    fn is_current(&self, held: &BTreeMap<u32, Held>) -> bool {
        held.get(&self.slot).is_some_and(|h| h.fence == self.fence.load(Ordering::Relaxed))
    }

    /// The slot's operation may still run at AWS (its account timed out, the run stopped): the
    /// slot and its account stay taken, with `request_id` for whoever asks AWS about it.
    pub fn park(mut self, request_id: Option<String>) {
        self.parked = true;
        let quota = self.quota.clone();
        let held = {
            let mut held = quota.held.lock().expect("held");
            if !self.is_current(&held) {
                return;
            }
            held.remove(&self.slot)
        };
        let Some(held) = held else { return };
        quota.parking.lock().expect("parking").insert((self.slot, held.fence));
        if quota.dead.load(Ordering::Relaxed) {
            return;
        }
        let slot = self.slot;
        let writer = quota.clone();
        quota.in_background(async move {
            if let Err(e) = writer.ledger.park(&writer.scope, slot, held.fence, request_id.as_deref()).await {
                // Unparked, the slot still names its operation: others find it by the listing.
                tracing::warn!(slot, error = %e, "could not park a quota slot");
            }
            writer.parking.lock().expect("parking").remove(&(slot, held.fence));
        });
    }

    /// Whether this holder may start the slot's operation now: its heartbeat is current, and if
    /// it lapsed since the claim (others may have taken the slot meanwhile), the slot is claimed
    /// again under a new fence first. False: the slot is lost; start nothing under it.
    pub async fn may_start(&self) -> bool {
        match self.quota.may_start(self.slot, self.fence.load(Ordering::Relaxed)).await {
            Some(fence) => {
                self.fence.store(fence, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        if self.parked {
            return;
        }
        let quota = self.quota.clone();
        let slot = self.slot;
        if quota.dead.load(Ordering::Relaxed) || !self.is_current(&quota.held.lock().expect("held")) {
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

/// Where a queued account's slot comes from this round.
enum Source {
    /// One of ours whose operation ended.
    Spare(u32),
    /// Free in the ledger.
    Free(SlotRecord),
    /// Given up by a holder that stopped; ours once AWS says its operation ended.
    GivenUp(SlotRecord),
}

impl std::fmt::Debug for SharedQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQuota").field("holder", &self.holder).field("budget", &self.budget).finish_non_exhaustive()
    }
}

impl SharedQuota {
    pub(super) fn new(
        ledger: Arc<dyn QuotaLedger>,
        clock: Arc<dyn QuotaClock>,
        scope: Scope,
        holder: HolderId,
        budget: QuotaBudget,
        rate: Arc<SharedRate>,
        ops: Arc<dyn AssignmentOps>,
    ) -> Arc<SharedQuota> {
        Arc::new(SharedQuota {
            ledger,
            clock,
            scope,
            holder,
            budget,
            rate,
            ops,
            held: Mutex::default(),
            spare: Mutex::default(),
            releasing: Mutex::default(),
            parking: Mutex::default(),
            waiting: AtomicU32::new(0),
            queue: Mutex::default(),
            claim_turn: Arc::new(tokio::sync::Mutex::new(())),
            local_release: Notify::new(),
            active_holders: AtomicU32::new(1),
            dead: AtomicBool::new(false),
            beat: Mutex::default(),
            maintenance: Mutex::new((0, None)),
            background: Mutex::default(),
            contention: Mutex::default(),
            checks: Mutex::default(),
            targets: Mutex::default(),
            far_ahead: Mutex::default(),
        })
    }

    pub fn holder(&self) -> &HolderId {
        &self.holder
    }

    /// Behave as a killed process would: no ledger writes from now on (others take its slots
    /// once its heartbeat expired and AWS says its operations ended).
    pub fn die(&self) {
        self.dead.store(true, Ordering::Relaxed);
    }

    /// Waits for one of the instance's request times (see `rate`).
    pub async fn pace(&self) -> Result<()> {
        self.rate.pace().await
    }

    /// AWS throttled a request anyway: see `SharedRate::throttled`.
    pub async fn throttled(&self) {
        self.rate.throttled().await
    }

    /// Slots other holders have while accounts of ours wait, as of the last ledger read; None
    /// while nothing waits or nothing is had elsewhere.
    pub fn contention(&self) -> Option<Contention> {
        self.contention.lock().expect("contention").clone()
    }

    /// Holders sharing the instance at the last ledger read, this one included: a holder's
    /// status polling slows down by this factor, so that together they list as often as one.
    pub fn active_holders(&self) -> u32 {
        self.active_holders.load(Ordering::Relaxed).max(1)
    }

    /// Claims a slot for `account` to run `op` in it, waiting as long as the ledger has none
    /// for us.
    ///
    /// Accounts queue in the holder (FIFO). Whoever holds the holder's turn dispatches for the
    /// whole queue until its own account is served: it reads the ledger once, hands spare slots
    /// over and claims as many as the fair share allows for the first queued accounts no other
    /// run has, then waits for a release or the next poll. So a holder reads the ledger once
    /// per round, not once per account, and an account another run is busy with does not block
    /// the queue. An error means the ledger could not be used for a while (this holder then
    /// starts nothing).
    pub async fn acquire(self: &Arc<Self>, account: &AccountId, op: Operation) -> Result<SharedSlot> {
        let (tx, mut rx) = oneshot::channel();
        self.queue.lock().expect("queue").push_back(Queued { account: account.clone(), op, tx });
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
        }
        result
    }

    async fn dispatch_until_served(self: &Arc<Self>, own: &mut oneshot::Receiver<SharedSlot>) -> Result<SharedSlot> {
        let external = self.ledger.released();
        let mut unreachable_since: Option<Instant> = None;
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
            // Alive in the ledger before claiming anything (others see our slots as ours only
            // while our heartbeat is), and not cut off from it.
            let round = async {
                self.ensure_beating().await?;
                let view = self.ledger.view(&self.scope).await?;
                self.dispatch(&view).await?;
                self.note_contention(&view);
                Ok::<_, FanoutError>(())
            };
            match round.await {
                Ok(()) => unreachable_since = None,
                // A clock this holder cannot tell well enough does not get better by waiting.
                Err(e @ FanoutError::Config(_)) => return Err(e),
                Err(e) => {
                    // A ledger error costs a round, not the account: the round is tried again
                    // (nothing is claimed meanwhile) until the ledger has been gone too long.
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    tracing::debug!(error = %e, "quota dispatch round failed");
                    if since.elapsed() > LEDGER_PATIENCE {
                        return Err(FanoutError::Store(format!(
                            "the shared quota's ledger could not be reached for {} s ({e}): nothing is sent without it",
                            LEDGER_PATIENCE.as_secs()
                        )));
                    }
                    sleep(LEDGER_RETRY).await;
                    continue;
                }
            }
            if let Ok(slot) = own.try_recv() {
                return Ok(slot);
            }
            let jitter = Duration::from_millis(rand::random::<u64>() % 50);
            tokio::select! {
                _ = local => {}
                _ = async { match remote { Some(r) => r.await, None => std::future::pending().await } } => {}
                _ = sleep(POLL + jitter) => {}
            }
        }
    }

    /// One round: gives back spare slots beyond the fair share, then serves queued accounts in
    /// order: an account another live holder has waits; one a given-up slot locks gets that
    /// slot once AWS says its operation ended; others get a spare slot, then free ones as the
    /// share allows, then given-up ones AWS says are done.
    async fn dispatch(self: &Arc<Self>, view: &LedgerView) -> Result<()> {
        let now = self.clock.now_us();
        self.adopt_unknown_own(view);
        let Share { keep, free } = self.share(view, now);
        let spare = std::mem::take(&mut *self.spare.lock().expect("spare"));
        let held = self.held.lock().expect("held").len();
        let excess = held.saturating_sub(keep).min(spare.len());
        let (give_back, spare) = spare.split_at(excess);
        for slot in give_back {
            self.release_later(*slot);
        }
        let mut room = keep.saturating_sub(held);
        let ours: BTreeSet<u32> = self.held.lock().expect("held").keys().copied().collect();
        // Accounts other live holders have, and the given-up slots by the account they lock.
        let mut busy: BTreeSet<AccountId> = BTreeSet::new();
        let mut given_up: BTreeMap<AccountId, SlotRecord> = BTreeMap::new();
        let mut spare_given_up: Vec<SlotRecord> = Vec::new();
        for s in view.slots.iter().filter(|s| s.slot < self.budget.max_outstanding && !ours.contains(&s.slot)) {
            let Some(account) = s.locked_account() else { continue };
            if self.holder_alive(view, s.holder.as_deref(), now) {
                busy.insert(account.clone());
            } else {
                given_up.insert(account.clone(), s.clone());
                spare_given_up.push(s.clone());
            }
        }
        let mut spare: VecDeque<u32> = spare.iter().copied().collect();
        let mut free: Vec<SlotRecord> = free;
        let picked: Vec<Queued> = {
            let mut queue = self.queue.lock().expect("queue");
            queue.retain(|q| !q.tx.is_closed()); // its task stopped waiting
            std::mem::take(&mut *queue).into_iter().collect()
        };
        let mut unserved = VecDeque::new();
        let mut used_given_up: BTreeSet<u32> = BTreeSet::new();
        let mut stop = false;
        for queued in picked {
            if stop || busy.contains(&queued.account) || unserved.iter().any(|u: &Queued| u.account == queued.account) {
                unserved.push_back(queued);
                continue;
            }
            let mut sources: Vec<Source> = Vec::new();
            if let Some(locking) = given_up.get(&queued.account) {
                // Only that slot can serve the account (it locks it), once its operation ended.
                if room > 0 || !spare.is_empty() {
                    sources.push(Source::GivenUp(locking.clone()));
                }
            } else {
                if let Some(slot) = spare.pop_front() {
                    sources.push(Source::Spare(slot));
                }
                if room > 0 {
                    sources.extend(free.iter().rev().cloned().map(Source::Free));
                    sources.extend(spare_given_up.iter().filter(|s| !used_given_up.contains(&s.slot)).cloned().map(Source::GivenUp));
                }
            }
            let mut served = None;
            for source in sources {
                let counts = !matches!(source, Source::Spare(_));
                let slot_number = match &source {
                    Source::Spare(n) => *n,
                    Source::Free(s) | Source::GivenUp(s) => s.slot,
                };
                match self.take(source, &queued, now).await {
                    Ok(Some(slot)) => {
                        if counts {
                            room = room.saturating_sub(1);
                            free.retain(|s| s.slot != slot_number);
                            used_given_up.insert(slot_number);
                        }
                        served = Some(slot);
                        break;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        // The claim may have been applied, its answer lost: the next view shows
                        // the slot ours as it now is, and it is adopted (`adopt_unknown_own`).
                        // A spare one is forgotten until then (its fence may have moved on).
                        tracing::debug!(slot = slot_number, error = %e, "a quota claim went unanswered");
                        if !counts {
                            self.held.lock().expect("held").remove(&slot_number);
                        }
                        continue;
                    }
                }
            }
            match served {
                // A waiter gone meanwhile drops the slot, which releases it.
                Some(slot) => {
                    let _ = queued.tx.send(slot);
                }
                None => {
                    if room == 0 && spare.is_empty() && !given_up.contains_key(&queued.account) {
                        stop = true; // no slot left for anyone behind it either
                    }
                    unserved.push_back(queued);
                }
            }
        }
        // A spare slot still locks the account it last served: kept beyond this round, it
        // could hold up another run that waits for that account while we wait for one it
        // holds. Release what this round did not hand over.
        for slot in spare {
            self.release_later(slot);
        }
        // Put the accounts not served this round back at the head of the queue, in order.
        let mut queue = self.queue.lock().expect("queue");
        for q in unserved.into_iter().rev() {
            queue.push_front(q);
        }
        Ok(())
    }

    /// Claims `source` for `queued`'s account. None: not to be had (another holder claimed it,
    /// the account is busy elsewhere, or a given-up slot's operation still runs).
    async fn take(self: &Arc<Self>, source: Source, queued: &Queued, now: u64) -> Result<Option<SharedSlot>> {
        let (slot, seen_fence) = match &source {
            Source::Spare(slot) => {
                let Some(held) = self.held.lock().expect("held").get(slot).cloned() else { return Ok(None) };
                (*slot, held.fence)
            }
            Source::Free(record) => (record.slot, record.fence),
            Source::GivenUp(record) => {
                if !self.given_up_ended(record).await {
                    return Ok(None);
                }
                (record.slot, record.fence)
            }
        };
        let claim = ClaimRequest { slot, seen_fence, holder: self.holder.as_str(), account: &queued.account, op: queued.op, now_us: now };
        match self.ledger.claim(&self.scope, &claim).await? {
            Claim::Granted { fence } => {
                let held = Held { fence, account: queued.account.clone(), op: queued.op, claimed: Instant::now() };
                self.held.lock().expect("held").insert(slot, held);
                Ok(Some(SharedSlot { quota: self.clone(), slot, fence: AtomicU64::new(fence), parked: false }))
            }
            Claim::AccountBusy => {
                if let Source::Spare(slot) = source {
                    self.release_later(slot);
                }
                Ok(None)
            }
            Claim::Lost => {
                if let Source::Spare(slot) = source {
                    tracing::warn!(slot, "quota slot was taken over while spare");
                    self.held.lock().expect("held").remove(&slot);
                }
                Ok(None)
            }
        }
    }

    /// A slot the ledger shows as ours that this holder does not know: a claim whose answer was
    /// lost after the ledger applied it. Nothing ever ran under it: it becomes spare (handed to
    /// the next account, or released), never leaked.
    fn adopt_unknown_own(&self, view: &LedgerView) {
        let mut releasing = self.releasing.lock().expect("releasing").clone();
        releasing.extend(self.parking.lock().expect("parking").iter().copied());
        let mut held = self.held.lock().expect("held");
        let mut spare = self.spare.lock().expect("spare");
        for s in view.slots.iter().filter(|s| s.holder.as_deref() == Some(self.holder.as_str())) {
            if held.contains_key(&s.slot) || releasing.contains(&(s.slot, s.fence)) {
                continue;
            }
            let (Some(account), Some(op)) = (s.account.clone(), s.operation.as_ref().map(|o| o.op)) else { continue };
            tracing::info!(slot = s.slot, fence = s.fence, "adopting a quota slot whose claim answer was lost");
            held.insert(s.slot, Held { fence: s.fence, account, op, claimed: Instant::now() });
            spare.push(s.slot);
        }
    }

    /// Whether a given-up slot's operation has ended, as AWS says: by its request id, or, when
    /// its holder stopped before it knew one, by the status listing (no operation of its kind
    /// in progress targets the slot's account). Answers are kept: an operation still running is
    /// asked about again only after a while.
    async fn given_up_ended(&self, record: &SlotRecord) -> bool {
        let (Some(account), Some(operation)) = (&record.account, &record.operation) else { return true };
        let key = (record.slot, record.fence);
        if let Some(check) = self.checks.lock().expect("checks").get(&key).copied() {
            if check.ended {
                return true;
            }
            if Instant::now() < check.next {
                return false;
            }
        }
        let ended = match &operation.request_id {
            Some(id) => self.operation_ended(operation.op, id).await,
            None => self.nothing_in_flight_for(account, operation.op, operation.since_us).await,
        };
        let mut checks = self.checks.lock().expect("checks");
        let interval = checks.get(&key).map_or(CHECK_FIRST, |c| (c.interval * 2).min(CHECK_MAX));
        checks.insert(key, Check { ended, next: Instant::now() + interval, interval });
        ended
    }

    /// AWS's word on one request: ended unless IN_PROGRESS (an id AWS does not know is not
    /// running). No answer: not known to have ended.
    async fn operation_ended(&self, op: Operation, request_id: &str) -> bool {
        let _ = self.rate.pace().await;
        match self.ops.operation_status(op, request_id).await {
            Ok(status) => status.state != OpState::InProgress,
            Err(FanoutError::NotFound { .. }) => true,
            Err(e) => {
                tracing::debug!(request_id, error = %e, "could not ask about a given-up operation; its slot stays taken");
                false
            }
        }
    }

    /// No `op` operation in progress on the instance targets `account` (the listing names
    /// request ids only: each one not seen before is described once for its target).
    async fn nothing_in_flight_for(&self, account: &AccountId, op: Operation, since_us: u64) -> bool {
        let _ = self.rate.pace().await;
        let in_progress = match self.ops.in_progress_operations(op).await {
            Ok(ids) => ids,
            Err(FanoutError::Unsupported { .. }) => {
                return self.clock.now_us().saturating_sub(since_us) > UNVERIFIABLE_AFTER.as_micros() as u64;
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not list operations in progress; a given-up slot stays taken");
                return false;
            }
        };
        for id in in_progress {
            let known = self.targets.lock().expect("targets").get(&id).cloned();
            let target = match known {
                Some(target) => target,
                None => {
                    let _ = self.rate.pace().await;
                    match self.ops.operation_status(op, &id).await {
                        Ok(status) if status.state != OpState::InProgress => continue,
                        Ok(status) => {
                            let target = status.target.map(|t| t.account_id);
                            self.targets.lock().expect("targets").insert(id.clone(), target.clone());
                            target
                        }
                        Err(FanoutError::NotFound { .. }) => continue,
                        Err(_) => return false,
                    }
                }
            };
            // An operation whose target AWS did not say may be this account's.
            if target.as_ref().is_none_or(|t| t == account) {
                return false;
            }
        }
        true
    }

    /// Whether `holder`'s heartbeat is current (ourselves always are, to ourselves). A heartbeat
    /// that says it lasts further than a clock's worth ahead was written by a clock far ahead:
    /// it counts for one TTL from when this holder first saw it.
    fn holder_alive(&self, view: &LedgerView, holder: Option<&str>, now: u64) -> bool {
        let Some(holder) = holder else { return false };
        if holder == self.holder.as_str() {
            return true;
        }
        view.holders.iter().find(|h| h.holder == holder).is_some_and(|h| self.believed_expiry(h, now) > now)
    }

    fn believed_expiry(&self, h: &HolderRecord, now: u64) -> u64 {
        let ttl = HEARTBEAT_TTL.as_micros() as u64;
        if h.expires_us <= now + ttl + 2 * MAX_UNCERTAINTY_US {
            return h.expires_us;
        }
        let mut far = self.far_ahead.lock().expect("far ahead");
        let seen = far.entry(h.holder.clone()).or_insert((h.expires_us, now));
        if seen.0 != h.expires_us {
            *seen = (h.expires_us, now); // it wrote again: alive
        }
        seen.1 + ttl
    }

    fn note_contention(&self, view: &LedgerView) {
        let now = self.clock.now_us();
        let waiting = !self.queue.lock().expect("queue").is_empty();
        let ours: BTreeSet<u32> = self.held.lock().expect("held").keys().copied().collect();
        let elsewhere: Vec<&SlotRecord> = view.slots.iter().filter(|s| s.locked_account().is_some() && !ours.contains(&s.slot)).collect();
        let noted = (waiting && !elsewhere.is_empty()).then(|| {
            let mut holders: Vec<String> = elsewhere.iter().map(|s| s.holder.clone().unwrap_or_else(|| "(given up)".into())).collect();
            holders.sort();
            holders.dedup();
            holders.truncate(3);
            let ends = elsewhere
                .iter()
                .map(|s| s.holder.as_deref().and_then(|h| view.holders.iter().find(|r| r.holder == h)).map_or(now, |r| self.believed_expiry(r, now)))
                .min()
                .unwrap_or(now);
            Contention { leased_elsewhere: elsewhere.len() as u32, holders, soonest_end_ms: ends.saturating_sub(now) / 1000 }
        });
        *self.contention.lock().expect("contention") = noted;
    }

    fn release_later(self: &Arc<Self>, slot: u32) {
        let Some(held) = self.held.lock().expect("held").remove(&slot) else { return };
        self.local_release.notify_waiters();
        if self.dead.load(Ordering::Relaxed) {
            return;
        }
        self.releasing.lock().expect("releasing").insert((slot, held.fence));
        let quota = self.clone();
        self.in_background(async move {
            if let Err(e) = quota.ledger.release(&quota.scope, slot, held.fence).await {
                // Unreleased, it still names its (ended) operation: others take it over once our
                // heartbeat is gone and AWS says it ended.
                tracing::warn!(slot, error = %e, "could not release a quota slot");
            }
            quota.releasing.lock().expect("releasing").remove(&(slot, held.fence));
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

    /// Waits until every background ledger write (releases, parks, deregistration) is done:
    /// call it before the process may stop (a Lambda freezes when its handler returns).
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

    /// How many slots this holder may have after this round, and the free slots (no operation
    /// named), best last: never written or released cleanly.
    fn share(&self, view: &LedgerView, now: u64) -> Share {
        let max = self.budget.max_outstanding;
        let written: BTreeMap<u32, &SlotRecord> = view.slots.iter().filter(|s| s.slot < max).map(|s| (s.slot, s)).collect();
        let all: Vec<SlotRecord> = (0..max).map(|i| written.get(&i).map(|s| (*s).clone()).unwrap_or_else(|| SlotRecord::free(i))).collect();
        let has = |s: &SlotRecord, h: &str| s.holder.as_deref() == Some(h) && s.locked_account().is_some();
        let held_by = |h: &str| all.iter().filter(|s| has(s, h)).count() as u32;
        let mine = self.held.lock().expect("held").len() as u32;
        let others: Vec<&HolderRecord> =
            view.holders.iter().filter(|h| h.holder != self.holder.as_str() && h.waiting > 0 && self.believed_expiry(h, now) > now).collect();
        let share = max.div_ceil(others.len() as u32 + 1);
        let holding: BTreeSet<&str> =
            all.iter().filter(|s| s.locked_account().is_some() && self.holder_alive(view, s.holder.as_deref(), now)).filter_map(|s| s.holder.as_deref()).collect();
        let active = others.iter().filter(|h| !holding.contains(h.holder.as_str())).count() + holding.len().max(1);
        self.active_holders.store(active as u32, Ordering::Relaxed);
        self.rate.holders.store(active as u32, Ordering::Relaxed);
        let peers = view.holders.iter().filter(|h| h.holder != self.holder.as_str() && self.believed_expiry(h, now) > now);
        self.rate.peer_uncertainty_us.store(peers.map(|h| h.uncertainty_us).max().unwrap_or(0), Ordering::Relaxed);
        let others_short: u32 = others.iter().map(|h| share.saturating_sub(held_by(&h.holder)).min(h.waiting)).sum();
        let mut free: Vec<SlotRecord> = all.into_iter().filter(|s| s.locked_account().is_none()).collect();
        // All we hold plus the free slots others below their share do not need; never less
        // than our share (give back spare slots down to it while others wait).
        let keep = (share as i64).max(mine as i64 + free.len() as i64 - others_short as i64) as u32;
        free.sort_by_key(|s| std::cmp::Reverse(s.slot));
        Share { keep: keep as usize, free }
    }

    /// Writes the heartbeat now unless a current one is written: before the first claim.
    async fn ensure_beating(&self) -> Result<()> {
        let (current, written) = {
            let beat = self.beat.lock().expect("beat");
            (beat.last_ok.is_some_and(|t| t.elapsed() < HEARTBEAT), beat.written_waiting)
        };
        let waiting = self.waiting_for_share();
        if current && (written > 0) == (waiting > 0) && waiting <= written {
            return Ok(());
        }
        self.heartbeat().await
    }

    fn waiting_for_share(&self) -> u32 {
        let queued = self.queue.lock().expect("queue").len() as u32;
        queued.min(self.budget.max_outstanding.max(1))
    }

    /// One heartbeat write (bounded in time): alive for `HEARTBEAT_TTL`, with the accounts
    /// waiting and the clock's uncertainty. A lapse past `FENCE_AFTER` is noted: slots claimed
    /// before it are claimed again before anything starts under them.
    async fn heartbeat(&self) -> Result<()> {
        if self.dead.load(Ordering::Relaxed) {
            return Err(FanoutError::Internal("quota holder stopped".into()));
        }
        let waiting = self.waiting_for_share();
        let record = HolderRecord {
            holder: self.holder.as_str().to_string(),
            waiting,
            expires_us: self.clock.now_us() + HEARTBEAT_TTL.as_micros() as u64,
            uncertainty_us: self.clock.uncertainty_us().min(MAX_UNCERTAINTY_US),
        };
        let written = timeout(HEARTBEAT_WRITE_TIMEOUT, self.ledger.put_holder(&self.scope, &record)).await;
        // A measured clock learns the ledger's time from answers, this one's included: judge it
        // after the write.
        let uncertainty = self.clock.uncertainty_us();
        if uncertainty > MAX_UNCERTAINTY_US {
            return Err(FanoutError::Config(format!(
                "this machine's clock cannot be told against the quota ledger's within {} ms (uncertain by {} ms): \
                 sharing the quota needs that; check its time synchronization (NTP) and the ledger's reachability",
                MAX_UNCERTAINTY_US / 1000,
                uncertainty.min(u64::MAX / 2) / 1000
            )));
        }
        match written {
            Ok(Ok(())) => {
                let mut beat = self.beat.lock().expect("beat");
                let now = Instant::now();
                if beat.last_ok.is_some_and(|t| now.duration_since(t) > FENCE_AFTER) {
                    beat.last_lapse = Some(now);
                }
                beat.last_ok = Some(now);
                beat.written_waiting = waiting;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(FanoutError::Transient { api: "quota ledger".into(), message: "heartbeat write timed out".into() }),
        }
    }

    /// Cut off from the ledger: the last heartbeat write that succeeded is `FENCE_AFTER` old.
    fn fenced(&self) -> bool {
        self.beat.lock().expect("beat").last_ok.is_none_or(|t| t.elapsed() > FENCE_AFTER)
    }

    /// `SharedSlot::may_start`: the fence the claim holds the slot under now, or None if lost.
    async fn may_start(self: &Arc<Self>, slot: u32, fence: u64) -> Option<u64> {
        if self.dead.load(Ordering::Relaxed) || self.fenced() {
            return None;
        }
        let held = self.held.lock().expect("held").get(&slot).cloned().filter(|h| h.fence == fence)?;
        let lapsed_since_claim = self.beat.lock().expect("beat").last_lapse.is_some_and(|l| l > held.claimed);
        if !lapsed_since_claim {
            return Some(fence);
        }
        // Others may have taken it while we were cut off: claim it again (a new fence makes any
        // claim they are about to make on the old one fail).
        let claim = ClaimRequest {
            slot,
            seen_fence: held.fence,
            holder: self.holder.as_str(),
            account: &held.account,
            op: held.op,
            now_us: self.clock.now_us(),
        };
        match self.ledger.claim(&self.scope, &claim).await {
            Ok(Claim::Granted { fence }) => {
                if let Some(h) = self.held.lock().expect("held").get_mut(&slot) {
                    h.fence = fence;
                    h.claimed = Instant::now();
                }
                Some(fence)
            }
            _ => {
                self.held.lock().expect("held").remove(&slot);
                None
            }
        }
    }

    /// Keeps the heartbeat going until the last returned guard is dropped, then releases spare
    /// slots and removes the heartbeat. (Batches of one process may share a holder: each keeps
    /// a guard.)
    pub fn maintain(self: &Arc<Self>) -> Maintenance {
        let mut task = self.maintenance.lock().expect("maintenance");
        let (count, handle) = &mut *task;
        *count += 1;
        if handle.is_none() {
            let quota = self.clone();
            *handle = Some(tokio::spawn(async move {
                loop {
                    if let Err(e) = quota.heartbeat().await {
                        tracing::warn!(holder = %quota.holder, error = %e, "quota heartbeat failed");
                    }
                    sleep(HEARTBEAT).await;
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

/// Ends a holder's maintenance when the last guard goes: stops the heartbeat, releases spare
/// slots and removes its heartbeat record.
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
            let _ = deregister.ledger.remove_holder(&deregister.scope, deregister.holder.as_str()).await;
        });
    }
}
