//! The shared quota: one worker's (holder's) side of the `QuotaLedger` that every worker,
//! execution and CLI run on the same Identity Center instance uses. Together they never have
//! more than 15 operations outstanding, never two in one account, and stay within 20 requests
//! in any sliding second, also when processes die, answers are lost, clocks are off or the
//! ledger is slow.
//!
//! - **Slots** (`slots`). An operation starts only under a slot claimed from the ledger for its
//!   account; the claim records the operation, which locks the account. A slot whose operation
//!   ended is handed to the holder's next account or released; one whose operation may still
//!   run (the account timed out, the run was interrupted, the batch ended) is *parked* with its
//!   request id: the account stays locked until someone asks AWS and finds it ended.
//! - **Heartbeats.** A holder is alive while its heartbeat (written every `HEARTBEAT`, valid for
//!   `HEARTBEAT_TTL`) is; the slots of a holder whose heartbeat expired are given up, and taken
//!   over once AWS says their operations ended (by request id, or by the status listing when
//!   the holder died before it knew the id). A holder that could not write its heartbeat for
//!   `FENCE_AFTER` starts nothing more until it can: others may already take its slots.
//!   Holders are named `<run id>#b<batch>@<nonce>` (a batch's worker) or `<run id>#ball@<nonce>`
//!   (a process running every batch): each incarnation its own, so a twin of a retried worker
//!   never shares a slot with it.
//! - **Fair shares.** Holders that want slots say how many in their heartbeat; while others
//!   wait, a holder does not take more than its share (slots / holders wanting them), unless
//!   enough slots are free for everyone below their share.
//! - **Request rate** (`rate`). Request times are reserved from the ledger's rate item in small
//!   blocks, spaced by the effective rate's interval.
//! - **Clocks** (`clock`). Every time is the ledger clock's, as each holder reads it (exact on one
//!   machine; measured from DynamoDB's answers for the stack's ledger); holders publish how far
//!   off their reading may be, and the rate's spacing absorbs it.

mod clock;
mod rate;
mod slots;

pub use clock::{unix_us, MeasuredClock, QuotaClock, SkewedClock, TokioClock, WallClock, MAX_UNCERTAINTY_US};
pub use rate::{SharedRate, FUTURE_CAP, RATE_BLOCK};
pub use slots::{Contention, HolderId, Maintenance, SharedQuota, SharedSlot};

use crate::model::Scope;
use crate::ports::AssignmentOps;
use crate::store::{MemoryLedger, QuotaLedger};
use crate::tiers::QuotaBudget;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::time::Duration;

/// How often a holder writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(4);
/// How long a heartbeat keeps its holder alive: others take over its slots after it.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(20);
/// A holder whose last heartbeat write succeeded this long ago starts no operation until one
/// succeeds again (others may take its slots once `HEARTBEAT_TTL` has passed). The gap to the
/// TTL covers a create already on its way (`CREATE_CALL_BOUND`) and the status listing's lag.
pub const FENCE_AFTER: Duration = Duration::from_secs(8);
/// How long a holder waits for a ledger it cannot reach before what waits for it (a slot, a
/// request time) fails as not sent: an outage of the ledger delays a run, it does not end it.
pub const LEDGER_PATIENCE: Duration = Duration::from_secs(300);
/// How long one heartbeat write may take before it counts as failed.
pub const HEARTBEAT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a create or delete call may take, all its attempts together (the AWS adapter's
/// operation timeout for the engine's calls): a holder cut off at `FENCE_AFTER` has every call
/// it sent answered or abandoned by `FENCE_AFTER + CREATE_CALL_BOUND`, well before others may
/// take its slots at `HEARTBEAT_TTL`.
pub const CREATE_CALL_BOUND: Duration = Duration::from_secs(5);

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
    /// process runs), spending `budget` of the instance `scope`. `ops` serves to ask AWS whether
    /// what a holder that stopped left running has ended.
    pub fn holder(&self, scope: &Scope, run_id: &str, batch: Option<u32>, budget: QuotaBudget, ops: Arc<dyn AssignmentOps>) -> Arc<SharedQuota> {
        SharedQuota::new(self.store.clone(), self.clock.clone(), scope.clone(), HolderId::new(run_id, batch), budget, self.rate(scope, budget), ops)
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

    /// A process whose clock reads the instance's shifted by `offset_us`, declaring
    /// `uncertainty_us` (fault tests: skewed and wrong clocks).
    pub fn skewed_process(&self, offset_us: i64, uncertainty_us: u64) -> Ledger {
        Ledger::new(self.ledger.clone(), Arc::new(SkewedClock { inner: self.clock.clone(), offset_us, uncertainty_us }))
    }
}

impl Default for MemoryInstance {
    fn default() -> Self {
        MemoryInstance::new()
    }
}
