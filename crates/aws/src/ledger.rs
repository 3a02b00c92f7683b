//! `QuotaLedger` on the `DynamoStore` table: the slots, account locks, rate item and holders
//! that every worker, execution and CLI run on one Identity Center instance shares (see
//! `crates/aws/TABLE.md`, "Quota ledger"). Behaves as `sso_fanout_core::store::MemoryLedger`,
//! race-free across processes: every decision is one conditional write or one transaction, and
//! no condition reads a clock.
//!
//! | pk | sk | attributes |
//! |---|---|---|
//! | `QUOTA#<scope>` | `SLOT#<nnnn>` | `slot`, `fence`; `holder` (absent once released or parked), `account` + `op` + `sinceUs` (absent once released), `requestId` (once parked with one) |
//! | `QUOTA#<scope>` | `RATE` | `nextUs` |
//! | `QUOTA#<scope>` | `HOLDER#<holder>` | `holder`, `waiting`, `expiresUs`, `uncertaintyUs`, `expiresAt` (TTL) |
//! | `QUOTALOCK#<scope>` | `<account id>` | `slot`, `fence`: the lease whose operation may run in the account |
//!
//! **Account locks.** Every write that makes a slot lock an account, or stop locking one,
//! writes or deletes that account's lock in the same transaction: a claim puts the slot and the
//! new account's lock (and deletes the lock of the account the slot locked before), a release
//! updates the slot and deletes its lock, a park writes the slot alone (the account stays
//! locked). So a lock exists exactly while its lease locks the account, and a claim's condition
//! on the lock (absent, or naming the claimed slot) is the ledger's "no other slot locks the
//! account". A lock naming a lease that no longer locks its account (only left by items changed
//! by hand or by an older layout) is read, found stale, and taken over with a condition on it.
//! To delete the lock of the account a claimed or released lease locked, the ledger remembers
//! what each lease it saw (in `view`, or granted) locks; a lease it never saw is read first.

mod calls;
mod items;

use crate::dynamo::{get_s, n, s, Item, PK, SK};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use calls::{build_error, ledger_error, Transaction, Unanswered};
use items::*;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::Scope;
use sso_fanout_core::store::ledger::{Claim, ClaimRequest, HolderRecord, LedgerView, QuotaLedger, SlotOperation, SlotRecord};
use sso_fanout_core::{FanoutError, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Attempts of one `reserve_requests` (three suffice unless a clock far ahead keeps resetting
/// the item).
const RATE_ATTEMPTS: u32 = 4;
/// Rounds of one claim whose account lock keeps changing under it (a round over a stale lock
/// reads the lease it names). Past them the claim answers `AccountBusy`: others keep taking the
/// account.
const CLAIM_ROUNDS: u32 = 4;
/// Remembered leases (see `DynamoLedger::leases`); all forgotten at once beyond this (a lease
/// not remembered costs its next claim or release a read).
const LEASES_REMEMBERED: usize = 4_096;

pub struct DynamoLedger {
    client: Client,
    table: String,
    page_size: Option<i32>,
    writes: AtomicU64,
    write_units: AtomicU64,
    /// Whether the rate item was ahead of now at this ledger's last reservation (which of the
    /// two conditional updates to try first).
    rate_ahead: AtomicBool,
    /// The account each lease (scope, slot, fence) this ledger saw locks (None: released). A
    /// fence is raised by every claim and slot items are never deleted, so a lease names one
    /// account forever and a release is final: an entry is at worst out of date by a release
    /// another process made, which the next write's conditions find.
    leases: Mutex<HashMap<(String, u32, u64), Option<AccountId>>>,
}

/// A lock found naming a lease (slot, fence) of another slot that does not lock the account.
struct Stale {
    slot: u32,
    fence: u64,
    /// The named slot's fence as read, when it is behind the lease's (a slot item deleted by
    /// hand): the claim then checks the slot is unchanged. None: the lease can never come back.
    behind: Option<Option<u64>>,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoLedger {
        DynamoLedger {
            client,
            table: table.into(),
            page_size: None,
            writes: AtomicU64::new(0),
            write_units: AtomicU64::new(0),
            rate_ahead: AtomicBool::new(false),
            leases: Mutex::default(),
        }
    }

    /// Query page size (`Limit`) of `view`; unset, DynamoDB pages at 1 MB. Tests set it to see paging.
    pub fn with_page_size(mut self, items: i32) -> DynamoLedger {
        self.page_size = Some(items.max(1));
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Item writes so far, as `MemoryLedger::writes` counts them: each item of a transaction
    /// counts, and so does every request whose condition failed. Reads do not count; neither do
    /// the SDK's own retries of one request.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Write capacity units of those writes (items under 1 KB): 2 per item of a transaction
    /// (DynamoDB prepares and commits each), 1 per single-item write.
    pub fn write_units(&self) -> u64 {
        self.write_units.load(Ordering::Relaxed)
    }

    fn wrote(&self, items: usize, transaction: bool) {
        self.writes.fetch_add(items as u64, Ordering::Relaxed);
        self.write_units.fetch_add(items as u64 * if transaction { 2 } else { 1 }, Ordering::Relaxed);
    }

    fn remember(&self, scope: &Scope, slot: u32, fence: u64, locks: Option<AccountId>) {
        let mut leases = self.leases.lock().expect("leases");
        if leases.len() >= LEASES_REMEMBERED {
            leases.clear();
        }
        leases.insert((scope.key(), slot, fence), locks);
    }

    fn forget(&self, scope: &Scope, slot: u32, fence: u64) {
        self.leases.lock().expect("leases").remove(&(scope.key(), slot, fence));
    }

    /// The account lease (slot, fence) locks, remembered or else read.
    async fn locked_by(&self, scope: &Scope, slot: u32, fence: u64) -> Result<Option<AccountId>> {
        if let Some(known) = self.leases.lock().expect("leases").get(&(scope.key(), slot, fence)) {
            return Ok(known.clone());
        }
        let read = self.read_slot(scope, slot).await?;
        Ok(read.filter(|s| s.fence == fence).and_then(|s| s.locked_account().cloned()))
    }

    /// A slot item, read strongly consistent.
    async fn read_slot(&self, scope: &Scope, slot: u32) -> Result<Option<SlotRecord>> {
        let (pk, sk) = (quota_pk(scope), slot_sk(slot));
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .key(SK, s(&sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| ledger_error(&self.table, "GetItem", e))?;
        out.item.map(|item| slot_record(&item, &pk, &sk)).transpose()
    }

    /// The slot an item returned on a failed condition shows (None: there was no item).
    fn slot_as_was(&self, scope: &Scope, slot: u32, item: Option<&Item>) -> Result<Option<SlotRecord>> {
        item.map(|i| slot_record(i, &quota_pk(scope), &slot_sk(slot))).transpose()
    }

    fn granted(&self, scope: &Scope, c: &ClaimRequest<'_>, fence: u64) -> Result<Claim> {
        self.forget(scope, c.slot, c.seen_fence);
        self.remember(scope, c.slot, fence, Some(c.account.clone()));
        Ok(Claim::Granted { fence })
    }
}

#[async_trait]
impl QuotaLedger for DynamoLedger {
    async fn view(&self, scope: &Scope) -> Result<LedgerView> {
        let pk = quota_pk(scope);
        let items: Vec<Item> = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(&pk))
            .set_limit(self.page_size)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| ledger_error(&self.table, "Query", e))?;
        let mut view = LedgerView::default();
        for item in &items {
            let sk = get_s(item, SK).unwrap_or_default();
            if sk.starts_with("SLOT#") {
                let slot = slot_record(item, &pk, sk)?;
                self.remember(scope, slot.slot, slot.fence, slot.locked_account().cloned());
                view.slots.push(slot);
            } else if sk.starts_with("HOLDER#") {
                view.holders.push(holder_record(item, &pk, sk)?);
            }
        }
        view.slots.sort_by_key(|r| r.slot);
        view.holders.sort_by(|a, b| a.holder.cmp(&b.holder));
        Ok(view)
    }

    async fn claim(&self, scope: &Scope, c: &ClaimRequest<'_>) -> Result<Claim> {
        let fence = c.seen_fence + 1;
        let call = Unanswered::default();
        // The lease this claim ends may lock another account: that lock goes in the same
        // transaction. (One that locks this account has its lock taken over by the Put.)
        let replaced = if c.seen_fence == 0 { None } else { self.locked_by(scope, c.slot, c.seen_fence).await? };
        let mut previous = replaced.filter(|a| a != c.account);
        let mut stale: Option<Stale> = None;
        for _ in 0..CLAIM_ROUNDS {
            let mut items = vec![
                TransactWriteItem::builder().put(self.slot_put(scope, c, fence)?).build(),
                TransactWriteItem::builder().put(self.lock_put(scope, c, fence, stale.as_ref())?).build(),
            ];
            let mut checked = None;
            if let Some(Stale { slot, behind: Some(read_fence), .. }) = &stale {
                checked = Some(items.len());
                items.push(TransactWriteItem::builder().update(self.unchanged_slot(scope, *slot, *read_fence)?).build());
            }
            let mut dropped = None;
            if let Some(account) = &previous {
                dropped = Some(items.len());
                items.push(TransactWriteItem::builder().delete(self.delete_lock(scope, account, c.slot, c.seen_fence)?).build());
            }
            let reasons = match self.transact(items, &call).await? {
                Transaction::Written => return self.granted(scope, c, fence),
                Transaction::Cancelled(reasons) => reasons,
            };
            // As MemoryLedger: a slot that changed wins over a busy account.
            if reasons[0].failed {
                // The change may be this claim's own, applied by a request whose answer was lost
                // (DynamoDB answers a retry under the same ClientRequestToken with success; an
                // emulator may not, and our own retry after a conflict is a new request).
                let was = self.slot_as_was(scope, c.slot, reasons[0].item.as_ref())?;
                if call.maybe_applied() && was.is_some_and(|s| is_this_claim(&s, c, fence)) {
                    return self.granted(scope, c, fence);
                }
                return Ok(Claim::Lost);
            }
            if dropped.is_some_and(|i| reasons[i].failed) {
                previous = None; // that lock names another lease of its account: not ours to delete
            }
            if checked.is_some_and(|i| reasons[i].failed) {
                stale = None; // the slot the stale lock names changed since it was read: look again
                continue;
            }
            if !reasons[1].failed {
                continue;
            }
            // The lock names another slot's lease (or changed since it was read): does that lease
            // lock the account?
            let Some(lock) = &reasons[1].item else {
                stale = None; // deleted meanwhile: free
                continue;
            };
            let (slot, lease) = lock_names(lock, scope, c.account)?;
            if slot == c.slot {
                stale = None; // it names this slot now: the plain condition takes it
                continue;
            }
            let named = self.read_slot(scope, slot).await?;
            if named.as_ref().is_some_and(|s| s.fence == lease && s.locked_account() == Some(c.account)) {
                return Ok(Claim::AccountBusy);
            }
            // Stale. Fences only grow and a release is final, so a slot at or past the lease's
            // fence never brings it back; a slot behind it is checked unchanged.
            let behind = match &named {
                Some(s) if s.fence >= lease => None,
                other => Some(other.as_ref().map(|s| s.fence)),
            };
            stale = Some(Stale { slot, fence: lease, behind });
        }
        tracing::debug!(slot = c.slot, account = c.account.as_str(), "account lock changed {CLAIM_ROUNDS} times during a claim");
        Ok(Claim::AccountBusy)
    }

    async fn release(&self, scope: &Scope, slot: u32, fence: u64) -> Result<bool> {
        let Some(account) = self.locked_by(scope, slot, fence).await? else {
            return Ok(false); // that lease locks nothing: released, superseded or never granted
        };
        let call = Unanswered::default();
        let items = vec![
            TransactWriteItem::builder().update(self.free_slot(scope, slot, fence)?).build(),
            TransactWriteItem::builder().delete(self.delete_lock(scope, &account, slot, fence)?).build(),
        ];
        let released = match self.transact(items, &call).await? {
            Transaction::Written => true,
            Transaction::Cancelled(reasons) if reasons[0].failed => {
                // Freed under this very fence by a request of ours whose answer was lost? (Only
                // a release under the fence frees it, and only its holder has the fence.)
                let was = self.slot_as_was(scope, slot, reasons[0].item.as_ref())?;
                // Either way the lease locks nothing now, for good (superseded or released).
                self.remember(scope, slot, fence, None);
                call.maybe_applied() && was.is_some_and(|s| s.fence == fence && s.operation.is_none() && s.holder.is_none())
            }
            // Only the lock names another lease (left by hand): free the slot alone; the lock is
            // found stale by the account's next claim.
            Transaction::Cancelled(_) => self.update_if(self.free_slot(scope, slot, fence)?, &call).await?.is_ok(),
        };
        if released {
            self.remember(scope, slot, fence, None);
        }
        Ok(released)
    }

    async fn park(&self, scope: &Scope, slot: u32, fence: u64, request_id: Option<&str>) -> Result<bool> {
        // The slot alone: its lock stays, as the account does. Conditioned on the fence and the
        // operation only, so an SDK retry of a park that was applied applies again (no change).
        let mut update = Update::builder()
            .table_name(&self.table)
            .key(PK, s(&quota_pk(scope)))
            .key(SK, s(&slot_sk(slot)))
            .condition_expression("#fence = :f AND attribute_exists(#op)")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#op", "op")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":f", n(fence));
        update = match request_id {
            Some(id) => update
                .update_expression("REMOVE #holder SET #rid = :rid")
                .expression_attribute_names("#rid", "requestId")
                .expression_attribute_values(":rid", s(id)),
            None => update.update_expression("REMOVE #holder"),
        };
        Ok(self.update_if(update.build().map_err(build_error)?, &Unanswered::default()).await?.is_ok())
    }

    async fn reserve_requests(&self, scope: &Scope, count: u32, interval_us: u64, now_us: u64, cap_us: u64) -> Result<u64> {
        let pk = quota_pk(scope);
        let span = u64::from(count).saturating_mul(interval_us);
        let horizon = now_us.saturating_add(cap_us);
        // GCRA without max(), which update expressions cannot compute: two conditional updates
        // that split on whether `nextUs` lies in [now, now + cap]. Inside (requests queued), the
        // block goes at the end of the queue (an atomic add); before now, unset, or past the cap
        // (written by a clock far ahead), the block starts now. A failed condition means the
        // other case holds; `nextUs` only grows unless a far-ahead value is reset, so three
        // attempts suffice. Start with the case this ledger met last.
        let mut ahead = self.rate_ahead.load(Ordering::Relaxed);
        for _ in 0..RATE_ATTEMPTS {
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(&pk))
                .key(SK, s(RATE_SK))
                .expression_attribute_names("#next", "nextUs")
                .expression_attribute_values(":now", n(now_us))
                .expression_attribute_values(":horizon", n(horizon));
            let update = if ahead {
                update
                    .update_expression("SET #next = #next + :span")
                    .condition_expression("#next >= :now AND #next <= :horizon")
                    .expression_attribute_values(":span", n(span))
                    .return_values(ReturnValue::UpdatedNew)
            } else {
                update
                    .update_expression("SET #next = :next")
                    .condition_expression("attribute_not_exists(#next) OR #next < :now OR #next > :horizon")
                    .expression_attribute_values(":next", n(now_us.saturating_add(span)))
            };
            self.wrote(1, false);
            match update.send().await {
                Ok(out) => {
                    self.rate_ahead.store(ahead, Ordering::Relaxed);
                    if !ahead {
                        return Ok(now_us);
                    }
                    let next = out.attributes().map(|a| req_n(a, "nextUs", &pk, RATE_SK)).transpose()?;
                    let next = next.ok_or_else(|| malformed(&pk, RATE_SK, "nextUs", "was not returned by UpdateItem"))?;
                    return Ok(next.saturating_sub(span));
                }
                Err(e) if crate::errors::error_code(&e) == Some("ConditionalCheckFailedException") => ahead = !ahead,
                Err(e) => return Err(ledger_error(&self.table, "UpdateItem", e)),
            }
        }
        Err(FanoutError::Store(format!("quota rate item {pk}/{RATE_SK}: neither condition held in {RATE_ATTEMPTS} attempts")))
    }

    async fn put_holder(&self, scope: &Scope, holder: &HolderRecord) -> Result<()> {
        self.wrote(1, false);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(holder_item(scope, holder)))
            .send()
            .await
            .map_err(|e| ledger_error(&self.table, "PutItem", e))?;
        Ok(())
    }

    async fn remove_holder(&self, scope: &Scope, holder: &str) -> Result<()> {
        self.wrote(1, false);
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(&quota_pk(scope)))
            .key(SK, s(&holder_sk(holder)))
            .send()
            .await
            .map_err(|e| ledger_error(&self.table, "DeleteItem", e))?;
        Ok(())
    }
}

/// Whether a slot is exactly what claim `c` writes under `fence`: holder names are unique per
/// incarnation and fences only grow, so only this claim (or an identical one) wrote it.
fn is_this_claim(s: &SlotRecord, c: &ClaimRequest<'_>, fence: u64) -> bool {
    s.fence == fence
        && s.holder.as_deref() == Some(c.holder)
        && s.account.as_ref() == Some(c.account)
        && s.operation == Some(SlotOperation { op: c.op, request_id: None, since_us: c.now_us })
}

impl DynamoLedger {
    /// The claimed slot: its fence is still the one read with the view (a slot never claimed
    /// has no item). Nothing else: whether the slot was the caller's to take is its decision.
    fn slot_put(&self, scope: &Scope, c: &ClaimRequest<'_>, fence: u64) -> Result<Put> {
        let unchanged = if c.seen_fence == 0 { "attribute_not_exists(#fence) OR #fence = :seen" } else { "#fence = :seen" };
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(claimed_slot(scope, c, fence)))
            .condition_expression(unchanged)
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_values(":seen", n(c.seen_fence))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)
    }

    /// The account's lock, moved to the new lease. Free when it does not exist or names the
    /// claimed slot (whose fence the same transaction checks); once found stale, when it still
    /// names that lease. The old item comes back when the check fails.
    fn lock_put(&self, scope: &Scope, c: &ClaimRequest<'_>, fence: u64, stale: Option<&Stale>) -> Result<Put> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(lock_item(scope, c.account, c.slot, fence)))
            .expression_attribute_names("#slot", "slot")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let put = match stale {
            None => put
                .condition_expression("attribute_not_exists(#pk) OR #slot = :s")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":s", n(u64::from(c.slot))),
            Some(st) => put
                .condition_expression("#slot = :s AND #fence = :f")
                .expression_attribute_names("#fence", "fence")
                .expression_attribute_values(":s", n(u64::from(st.slot)))
                .expression_attribute_values(":f", n(st.fence)),
        };
        put.build().map_err(build_error)
    }

    /// Deletes `account`'s lock if it names the lease (slot, fence), or is already gone.
    fn delete_lock(&self, scope: &Scope, account: &AccountId, slot: u32, fence: u64) -> Result<Delete> {
        Delete::builder()
            .table_name(&self.table)
            .key(PK, s(&lock_pk(scope)))
            .key(SK, s(account.as_str()))
            .condition_expression("attribute_not_exists(#pk) OR (#slot = :s AND #fence = :f)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#slot", "slot")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_values(":s", n(u64::from(slot)))
            .expression_attribute_values(":f", n(fence))
            .build()
            .map_err(build_error)
    }

    /// The slot under lease `fence`, if its operation is still recorded, made free (the fence
    /// stays). The slot as it was comes back when the check fails.
    fn free_slot(&self, scope: &Scope, slot: u32, fence: u64) -> Result<Update> {
        Update::builder()
            .table_name(&self.table)
            .key(PK, s(&quota_pk(scope)))
            .key(SK, s(&slot_sk(slot)))
            .update_expression("REMOVE #holder, #account, #op, #rid, #since")
            .condition_expression("#fence = :f AND attribute_exists(#op)")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_names("#account", "account")
            .expression_attribute_names("#op", "op")
            .expression_attribute_names("#rid", "requestId")
            .expression_attribute_names("#since", "sinceUs")
            .expression_attribute_values(":f", n(fence))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)
    }

    /// Checks a slot is as read (fence `read_fence`, None: no item). Writes nothing of meaning:
    /// a missing slot item is created free (fence 0), as every slot starts.
    fn unchanged_slot(&self, scope: &Scope, slot: u32, read_fence: Option<u64>) -> Result<Update> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(PK, s(&quota_pk(scope)))
            .key(SK, s(&slot_sk(slot)))
            .update_expression("SET #slot = :s, #fence = if_not_exists(#fence, :zero)")
            .expression_attribute_names("#slot", "slot")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_values(":s", n(u64::from(slot)))
            .expression_attribute_values(":zero", n(0));
        let update = match read_fence {
            Some(f) => update.condition_expression("#fence = :rf").expression_attribute_values(":rf", n(f)),
            None => update.condition_expression("attribute_not_exists(#fence)"),
        };
        update.build().map_err(build_error)
    }
}
