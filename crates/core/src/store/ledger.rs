//! The quota ledger: what every worker, execution and CLI run on one Identity Center instance
//! shares so that together they stay inside its quota. Storage only: the policy (which slot to
//! take, fairness, when an orphaned operation has ended) lives in `crate::quota`.
//!
//! Per scope (one Identity Center instance) the ledger holds
//! - `max_outstanding` numbered **slots**, each free or leased to one holder for one account
//!   until `expires_us`. Every claim raises the slot's `fence`; renew and release name the fence
//!   they hold, so a holder whose lease was taken over can neither extend nor free the new
//!   holder's lease. A live slot is also that **account's lock**: no two live slots of a scope
//!   name the same account, so we never cause our own `ConflictException`. A holder that
//!   finished an account may claim its own live slot again for the next account (a hand-over:
//!   one write instead of a release and a claim).
//! - one **rate** item (GCRA: the theoretical arrival time of the next request), from which
//!   holders reserve request times in small blocks;
//! - the **holders** that want slots, for fair shares.
//!
//! Times are microseconds on a clock all holders share (Unix time for real stores).

use crate::error::Result;
use crate::ids::AccountId;
use crate::model::Scope;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotRecord {
    pub slot: u32,
    /// Raised by every claim; 0 for a slot never claimed.
    pub fence: u64,
    /// None when released.
    pub holder: Option<String>,
    pub account: Option<AccountId>,
    pub expires_us: u64,
}

impl SlotRecord {
    pub fn free(slot: u32) -> SlotRecord {
        SlotRecord { slot, fence: 0, holder: None, account: None, expires_us: 0 }
    }

    /// Held under a lease that has not expired.
    pub fn is_live(&self, now_us: u64) -> bool {
        self.holder.is_some() && self.expires_us > now_us
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HolderRecord {
    pub holder: String,
    /// Accounts it has waiting for a slot (0: it only finishes what it holds).
    pub waiting: u32,
    pub expires_us: u64,
}

/// Everything of a scope's ledger, read at once (one query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerView {
    /// Only slots ever written; a missing slot number is free with fence 0.
    pub slots: Vec<SlotRecord>,
    pub holders: Vec<HolderRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The slot is ours under this fence.
    Granted { fence: u64 },
    /// The slot changed since it was read (another holder claimed it): read again.
    Lost,
    /// A live slot holds this account (ours or another run's).
    AccountBusy,
}

/// What a claim asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub slot: u32,
    /// The fence read with the view: the claim succeeds only if it is unchanged.
    pub seen_fence: u64,
    pub holder: &'a str,
    pub account: &'a AccountId,
    pub now_us: u64,
    pub expires_us: u64,
}

#[async_trait]
pub trait QuotaLedger: Send + Sync {
    async fn view(&self, scope: &Scope) -> Result<LedgerView>;

    /// Atomically: the slot's fence is still `seen_fence`; the slot is not live, or is live and
    /// held by `holder` (a hand-over to its next account); and no other live slot holds
    /// `account`. Then the slot is leased to `holder` for `account` with the fence raised by one.
    async fn claim(&self, scope: &Scope, claim: &ClaimRequest<'_>) -> Result<Claim>;

    /// Extends the lease if `fence` still holds the slot. False: the lease was taken over.
    async fn renew(&self, scope: &Scope, slot: u32, fence: u64, expires_us: u64) -> Result<bool>;

    /// Frees the slot (and so the account) if `fence` still holds it. False: it was taken over.
    async fn release(&self, scope: &Scope, slot: u32, fence: u64) -> Result<bool>;

    /// Reserves `count` request times spaced `interval_us` apart: the first is
    /// max(now, the next free time), which then moves past the last. Returns the first.
    async fn reserve_requests(&self, scope: &Scope, count: u32, interval_us: u64, now_us: u64) -> Result<u64>;

    /// Registers or refreshes a holder (`waiting` accounts, until `expires_us`).
    async fn put_holder(&self, scope: &Scope, holder: &HolderRecord) -> Result<()>;
    async fn remove_holder(&self, scope: &Scope, holder: &str) -> Result<()>;

    /// In-process ledgers wake waiters when a slot is released; others are polled.
    fn released(&self) -> Option<Arc<Notify>> {
        None
    }
}
