//! The quota ledger: what every worker, execution and CLI run on one Identity Center instance
//! shares so that together they stay inside its quota. Storage only, and no clock: the policy
//! (which slot to take, fairness, liveness, when a given-up operation has ended) lives in
//! `crate::quota`.
//!
//! Per scope (one Identity Center instance) the ledger holds
//! - `max_outstanding` numbered **slots**. A slot is claimed by a holder for one account and
//!   records the operation the holder is about to start there (`SlotOperation`). Every claim
//!   raises the slot's `fence`; release and park name the fence they hold, so a holder whose slot
//!   was taken over can change nothing of the new holder's. While a slot names an account with
//!   an operation, that is the **account's lock**: no other slot can be claimed for the account,
//!   however long ago its holder stopped, until the holder releases the slot (its operation
//!   ended) or someone claims this very slot after AWS said the operation ended. A holder that
//!   stops while its operation may still run **parks** the slot: the holder goes, the account,
//!   the operation and its request id stay.
//! - the **holders**' heartbeats (`HolderRecord`): a slot whose holder's heartbeat expired is
//!   given up, for the policy to check and take over. The ledger itself never looks at a clock.
//! - one **rate** item (GCRA: the ledger-clock time of the next request), from which holders
//!   reserve request times in small blocks.
//!
//! Times are microseconds of the ledger's clock (`crate::quota::QuotaClock`), which every holder
//! of the scope shares or measures its offset to.

use crate::error::Result;
use crate::ids::AccountId;
use crate::model::{Operation, Scope};
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
    /// None when released or parked.
    pub holder: Option<String>,
    /// The account the slot was claimed for; None once released.
    pub account: Option<AccountId>,
    /// What may be running in `account` under this slot; None once released.
    #[serde(default)]
    pub operation: Option<SlotOperation>,
}

/// An operation a slot was claimed to run: until its slot is released, or claimed again by
/// someone who checked with AWS, it may be running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotOperation {
    pub op: Operation,
    /// AWS's request id, once a holder parked the slot with it (None: the holder stopped
    /// before it knew, or before the create was answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// When the slot was claimed for it (ledger clock).
    pub since_us: u64,
}

impl SlotRecord {
    pub fn free(slot: u32) -> SlotRecord {
        SlotRecord { slot, fence: 0, holder: None, account: None, operation: None }
    }

    /// The account this slot locks: it names it with an operation that may still run.
    pub fn locked_account(&self) -> Option<&AccountId> {
        self.operation.as_ref().and(self.account.as_ref())
    }
}

/// A holder's heartbeat: it is alive until `expires_us`, and has `waiting` accounts queued for
/// a slot (0: it only finishes what it holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HolderRecord {
    pub holder: String,
    pub waiting: u32,
    pub expires_us: u64,
    /// How far off the holder's reading of the ledger clock may be (`QuotaClock::uncertainty_us`):
    /// the request rate's spacing absorbs the largest.
    #[serde(default)]
    pub uncertainty_us: u64,
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
    /// Another slot locks this account.
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
    /// The operation the holder is about to start in `account`.
    pub op: Operation,
    pub now_us: u64,
}

#[async_trait]
pub trait QuotaLedger: Send + Sync {
    async fn view(&self, scope: &Scope) -> Result<LedgerView>;

    /// Atomically: the slot's fence is still `seen_fence`, and no other slot locks `account`
    /// (`SlotRecord::locked_account`). Then the slot is `holder`'s for `account` and `op`, with
    /// the fence raised by one. Whether the slot was the caller's to take (free, its own, or
    /// given up and checked) is the caller's decision, made on the view it read.
    async fn claim(&self, scope: &Scope, claim: &ClaimRequest<'_>) -> Result<Claim>;

    /// The slot's operation ended: frees the slot and its account, if `fence` still holds it.
    /// False: it was taken over.
    async fn release(&self, scope: &Scope, slot: u32, fence: u64) -> Result<bool>;

    /// Gives the slot up while its operation may still run: the holder goes, the account stays
    /// locked, the request id (when known) is recorded for whoever checks it. False: taken over.
    async fn park(&self, scope: &Scope, slot: u32, fence: u64, request_id: Option<&str>) -> Result<bool>;

    /// Reserves `count` request times spaced `interval_us` apart: the first is
    /// max(now, the next free time), which then moves past the last. A next free time more than
    /// `cap_us` ahead of now was written by a clock far ahead: it is reset to now. Returns the
    /// first.
    async fn reserve_requests(&self, scope: &Scope, count: u32, interval_us: u64, now_us: u64, cap_us: u64) -> Result<u64>;

    /// Writes a holder's heartbeat (`waiting` accounts, alive until `expires_us`).
    async fn put_holder(&self, scope: &Scope, holder: &HolderRecord) -> Result<()>;
    async fn remove_holder(&self, scope: &Scope, holder: &str) -> Result<()>;

    /// In-process ledgers wake waiters when a slot is released; others are polled.
    fn released(&self) -> Option<Arc<Notify>> {
        None
    }
}

/// A contract every `QuotaLedger` keeps, run against each implementation (memory, the CLI's
/// file, DynamoDB on moto): the same calls, the same answers.
pub mod contract {
    use super::*;
    use crate::ids::AccountId;

    fn account(i: u64) -> AccountId {
        format!("{:012}", 300_000_000_000 + i).parse().expect("account id")
    }

    fn claim<'a>(slot: u32, seen_fence: u64, holder: &'a str, account: &'a AccountId) -> ClaimRequest<'a> {
        ClaimRequest { slot, seen_fence, holder, account, op: Operation::Assign, now_us: 1_000 }
    }

    async fn slot(ledger: &dyn QuotaLedger, scope: &Scope, n: u32) -> SlotRecord {
        ledger.view(scope).await.expect("view").slots.into_iter().find(|s| s.slot == n).unwrap_or_else(|| SlotRecord::free(n))
    }

    /// Runs the whole contract on an empty ledger of `scope`. Panics with what broke.
    pub async fn check(ledger: &dyn QuotaLedger, scope: &Scope) {
        let (a, b) = (account(1), account(2));
        assert_eq!(ledger.view(scope).await.expect("view"), LedgerView::default(), "an empty ledger");

        // Claims raise the fence; a stale fence loses.
        assert_eq!(ledger.claim(scope, &claim(0, 0, "h1", &a)).await.unwrap(), Claim::Granted { fence: 1 });
        let s = slot(ledger, scope, 0).await;
        assert_eq!((s.fence, s.holder.as_deref(), s.account.as_ref()), (1, Some("h1"), Some(&a)));
        assert_eq!(s.operation.as_ref().map(|o| (o.op, o.request_id.clone(), o.since_us)), Some((Operation::Assign, None, 1_000)));
        assert_eq!(ledger.claim(scope, &claim(0, 0, "h2", &b)).await.unwrap(), Claim::Lost, "a stale fence");

        // The slot locks its account: no other slot can be claimed for it.
        assert_eq!(ledger.claim(scope, &claim(1, 0, "h2", &a)).await.unwrap(), Claim::AccountBusy);
        // A hand-over of slot 0 to account b frees a.
        assert_eq!(ledger.claim(scope, &claim(0, 1, "h1", &b)).await.unwrap(), Claim::Granted { fence: 2 });
        assert_eq!(ledger.claim(scope, &claim(1, 0, "h2", &a)).await.unwrap(), Claim::Granted { fence: 1 });

        // Release frees slot and account; a stale fence cannot release.
        assert!(!ledger.release(scope, 0, 1).await.unwrap(), "released under a stale fence");
        assert!(ledger.release(scope, 0, 2).await.unwrap());
        let s = slot(ledger, scope, 0).await;
        assert_eq!((s.fence, s.holder, s.account, s.operation), (2, None, None, None));
        assert!(!ledger.release(scope, 0, 2).await.unwrap(), "released twice");

        // Park keeps the account locked, with the request id, until the slot is claimed again.
        assert!(ledger.park(scope, 1, 1, Some("req-1")).await.unwrap());
        let s = slot(ledger, scope, 1).await;
        assert_eq!((s.holder, s.account.as_ref()), (None, Some(&a)));
        assert_eq!(s.operation.and_then(|o| o.request_id).as_deref(), Some("req-1"));
        assert_eq!(ledger.claim(scope, &claim(2, 0, "h3", &a)).await.unwrap(), Claim::AccountBusy, "a parked slot locks its account");
        assert!(!ledger.park(scope, 1, 0, None).await.unwrap(), "parked under a stale fence");
        // Whoever checked the operation ended takes the parked slot itself.
        assert_eq!(ledger.claim(scope, &claim(1, 1, "h3", &a)).await.unwrap(), Claim::Granted { fence: 2 });
        assert!(ledger.release(scope, 1, 2).await.unwrap());
        assert_eq!(ledger.claim(scope, &claim(2, 0, "h3", &a)).await.unwrap(), Claim::Granted { fence: 1 });
        assert!(ledger.release(scope, 2, 1).await.unwrap());

        // Request times: queued one interval apart, never two at once; a far-future time resets.
        let t = 10_000_000;
        assert_eq!(ledger.reserve_requests(scope, 3, 100, t, 1_000_000).await.unwrap(), t);
        assert_eq!(ledger.reserve_requests(scope, 2, 100, t + 50, 1_000_000).await.unwrap(), t + 300, "queued after the first block");
        assert_eq!(ledger.reserve_requests(scope, 1, 100, t + 10_000, 1_000_000).await.unwrap(), t + 10_000, "the queue ran dry");
        let behind = t + 10_100 - 5_000_000;
        assert_eq!(ledger.reserve_requests(scope, 1, 100, behind, 1_000_000).await.unwrap(), behind, "a next time more than the cap ahead is not waited for");

        // Heartbeats.
        let h = HolderRecord { holder: "h1#b0@1".into(), waiting: 3, expires_us: 99, uncertainty_us: 25_000 };
        ledger.put_holder(scope, &h).await.unwrap();
        ledger.put_holder(scope, &HolderRecord { waiting: 2, ..h.clone() }).await.unwrap();
        assert_eq!(ledger.view(scope).await.unwrap().holders, vec![HolderRecord { waiting: 2, ..h.clone() }]);
        ledger.remove_holder(scope, &h.holder).await.unwrap();
        assert!(ledger.view(scope).await.unwrap().holders.is_empty());

        // Scopes are apart.
        let other = Scope { instance_arn: format!("{}-other", scope.instance_arn), ..scope.clone() };
        assert_eq!(ledger.view(&other).await.unwrap(), LedgerView::default());
        assert_eq!(ledger.claim(&other, &claim(0, 0, "h9", &b)).await.unwrap(), Claim::Granted { fence: 1 });
    }
}
