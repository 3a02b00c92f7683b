//! The quota ledger as plain data (`LedgerState`, one per store: the rules of `QuotaLedger`
//! applied to it) and kept in memory (`MemoryLedger`, for runs in one process: the simulator,
//! tests). The CLI keeps the same state in a file shared by its processes.
//!
//! Writes are counted as the DynamoDB ledger (`sso-fanout-aws`, `TABLE.md`) makes them for the
//! same calls, so the bench can report writes per change: a claim writes the slot and the
//! account's lock (and deletes the lock of the account it replaces: 3), a release frees the
//! slot and deletes the lock (2), a park writes the slot (the lock stays), everything else
//! writes one item.

use super::ledger::*;
use crate::error::Result;
use crate::model::Scope;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Every scope's ledger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerState {
    scopes: BTreeMap<String, ScopeLedger>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeLedger {
    slots: BTreeMap<u32, SlotRecord>,
    holders: BTreeMap<String, HolderRecord>,
    next_request_us: u64,
}

/// A call's answer and the item writes DynamoDB would have made for it, and the write units
/// they bill (an item written in a transaction bills two: DynamoDB developer guide, "Capacity
/// management for transactions").
pub struct Applied<T> {
    pub answer: T,
    pub writes: u64,
    pub units: u64,
}

fn applied<T>(answer: T, writes: u64) -> Applied<T> {
    Applied { answer, writes, units: writes }
}

/// A call DynamoDB makes as one transaction (a claim: slot and lock; a release: slot and lock).
fn applied_in_transaction<T>(answer: T, writes: u64) -> Applied<T> {
    Applied { answer, writes, units: 2 * writes }
}

impl LedgerState {
    fn scope(&mut self, scope: &Scope) -> &mut ScopeLedger {
        self.scopes.entry(scope.key()).or_default()
    }

    pub fn view(&self, scope: &Scope) -> LedgerView {
        self.scopes
            .get(&scope.key())
            .map(|l| LedgerView { slots: l.slots.values().cloned().collect(), holders: l.holders.values().cloned().collect() })
            .unwrap_or_default()
    }

    pub fn claim(&mut self, scope: &Scope, c: &ClaimRequest<'_>) -> Applied<Claim> {
        let l = self.scope(scope);
        let current = l.slots.get(&c.slot).cloned().unwrap_or_else(|| SlotRecord::free(c.slot));
        if current.fence != c.seen_fence {
            return applied_in_transaction(Claim::Lost, 2);
        }
        if l.slots.values().any(|s| s.slot != c.slot && s.locked_account() == Some(c.account)) {
            return applied_in_transaction(Claim::AccountBusy, 2);
        }
        let replaces_other_account = current.account.as_ref().is_some_and(|a| a != c.account);
        let fence = current.fence + 1;
        let operation = Some(SlotOperation { op: c.op, request_id: None, since_us: c.now_us });
        let record = SlotRecord { slot: c.slot, fence, holder: Some(c.holder.to_string()), account: Some(c.account.clone()), operation };
        l.slots.insert(c.slot, record);
        applied_in_transaction(Claim::Granted { fence }, if replaces_other_account { 3 } else { 2 })
    }

    pub fn release(&mut self, scope: &Scope, slot: u32, fence: u64) -> Applied<bool> {
        let released = match self.scope(scope).slots.get_mut(&slot) {
            Some(s) if s.fence == fence && s.operation.is_some() => {
                *s = SlotRecord { fence, ..SlotRecord::free(slot) };
                true
            }
            _ => false,
        };
        applied_in_transaction(released, 2)
    }

    pub fn park(&mut self, scope: &Scope, slot: u32, fence: u64, request_id: Option<&str>) -> Applied<bool> {
        let parked = match self.scope(scope).slots.get_mut(&slot) {
            Some(s) if s.fence == fence && s.operation.is_some() => {
                s.holder = None;
                if let (Some(op), Some(id)) = (s.operation.as_mut(), request_id) {
                    op.request_id = Some(id.to_string());
                }
                true
            }
            _ => false,
        };
        applied(parked, 1)
    }

    pub fn reserve_requests(&mut self, scope: &Scope, count: u32, interval_us: u64, now_us: u64, cap_us: u64) -> Applied<u64> {
        let l = self.scope(scope);
        let next = if l.next_request_us > now_us.saturating_add(cap_us) { now_us } else { l.next_request_us };
        let first = next.max(now_us);
        l.next_request_us = first + u64::from(count) * interval_us;
        applied(first, 1)
    }

    /// Registers or refreshes `holder`. Records that expired a day before it go (a holder that
    /// died never removes its own; DynamoDB's TTL does the same).
    pub fn put_holder(&mut self, scope: &Scope, holder: &HolderRecord) -> Applied<()> {
        const DAY_US: u64 = 86_400_000_000;
        let l = self.scope(scope);
        l.holders.retain(|_, h| h.expires_us + DAY_US > holder.expires_us);
        l.holders.insert(holder.holder.clone(), holder.clone());
        applied((), 1)
    }

    pub fn remove_holder(&mut self, scope: &Scope, holder: &str) -> Applied<()> {
        self.scope(scope).holders.remove(holder);
        applied((), 1)
    }
}

/// The ledger of one process, in memory.
#[derive(Default)]
pub struct MemoryLedger {
    state: Mutex<LedgerState>,
    writes: AtomicU64,
    units: AtomicU64,
    released: Arc<Notify>,
}

impl MemoryLedger {
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    /// Item writes so far, counted as the DynamoDB ledger would make them.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Write units they would bill on DynamoDB.
    pub fn write_units(&self) -> u64 {
        self.units.load(Ordering::Relaxed)
    }

    fn apply<T>(&self, f: impl FnOnce(&mut LedgerState) -> Applied<T>) -> T {
        let applied = f(&mut self.state.lock().expect("ledger"));
        self.writes.fetch_add(applied.writes, Ordering::Relaxed);
        self.units.fetch_add(applied.units, Ordering::Relaxed);
        applied.answer
    }
}

#[async_trait]
impl QuotaLedger for MemoryLedger {
    async fn view(&self, scope: &Scope) -> Result<LedgerView> {
        Ok(self.state.lock().expect("ledger").view(scope))
    }

    async fn claim(&self, scope: &Scope, c: &ClaimRequest<'_>) -> Result<Claim> {
        Ok(self.apply(|l| l.claim(scope, c)))
    }

    async fn park(&self, scope: &Scope, slot: u32, fence: u64, request_id: Option<&str>) -> Result<bool> {
        Ok(self.apply(|l| l.park(scope, slot, fence, request_id)))
    }

    async fn release(&self, scope: &Scope, slot: u32, fence: u64) -> Result<bool> {
        let released = self.apply(|l| l.release(scope, slot, fence));
        if released {
            self.released.notify_waiters();
        }
        Ok(released)
    }

    async fn reserve_requests(&self, scope: &Scope, count: u32, interval_us: u64, now_us: u64, cap_us: u64) -> Result<u64> {
        Ok(self.apply(|l| l.reserve_requests(scope, count, interval_us, now_us, cap_us)))
    }

    async fn put_holder(&self, scope: &Scope, holder: &HolderRecord) -> Result<()> {
        self.apply(|l| l.put_holder(scope, holder));
        Ok(())
    }

    async fn remove_holder(&self, scope: &Scope, holder: &str) -> Result<()> {
        self.apply(|l| l.remove_holder(scope, holder));
        self.released.notify_waiters();
        Ok(())
    }

    fn released(&self) -> Option<Arc<Notify>> {
        Some(self.released.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_ledger_contract() {
        let scope = Scope { organization_id: "o-test".into(), management_account_id: "111111111111".into(), instance_arn: "arn:aws:sso:::instance/ssoins-test".into(), region: "sim".into() };
        crate::store::ledger::contract::check(&MemoryLedger::new(), &scope).await;
    }
}
