//! Faults between a worker and what it talks to, as wrappers around the real ports: answers
//! lost after the call took effect, a process killed in the instant between AWS accepting a
//! create and the worker recording it, a quota ledger that loses answers, refuses heartbeats
//! or is unreachable for a while. The fault tests and `bench --scenario faults` use them.

use crate::SimCloud;
use async_trait::async_trait;
use sso_fanout_core::error::{FanoutError, Result};
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::{AssignmentKey, OpStatus, Operation, Scope};
use sso_fanout_core::ports::AssignmentOps;
use sso_fanout_core::quota::SharedQuota;
use sso_fanout_core::store::ledger::{Claim, ClaimRequest, HolderRecord, LedgerView, QuotaLedger};
use sso_fanout_core::store::MemoryLedger;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The simulated Identity Center seen through a network that loses the answers of chosen
/// creates after AWS accepted them, or that kills a holder right after AWS accepted one.
pub struct FaultyOps {
    inner: Arc<SimCloud>,
    creates: AtomicU64,
    /// Every n-th create's answer is lost after AWS accepted it (0: none).
    pub lose_every: u64,
    /// Set: the next create AWS accepts kills this holder then and there (its answer never comes).
    pub kill_after_accept: Mutex<Option<Arc<SharedQuota>>>,
    /// Accounts whose create was accepted just before its holder was killed.
    pub accepted_then_killed: Mutex<Vec<AccountId>>,
    /// Accounts whose create's answer was lost.
    pub lost: Mutex<Vec<AccountId>>,
}

impl FaultyOps {
    pub fn new(inner: Arc<SimCloud>, lose_every: u64) -> FaultyOps {
        FaultyOps { inner, creates: AtomicU64::new(0), lose_every, kill_after_accept: Mutex::new(None), accepted_then_killed: Mutex::default(), lost: Mutex::default() }
    }
}

#[async_trait]
impl AssignmentOps for FaultyOps {
    async fn create_assignment(&self, key: &AssignmentKey) -> Result<OpStatus> {
        let n = self.creates.fetch_add(1, Ordering::Relaxed) + 1;
        let answer = self.inner.create_assignment(key).await;
        if answer.is_ok() {
            let victim = self.kill_after_accept.lock().expect("faulty ops").take();
            if let Some(victim) = victim {
                victim.die();
                self.accepted_then_killed.lock().expect("faulty ops").push(key.account_id.clone());
                std::future::pending::<()>().await;
            }
            if self.lose_every > 0 && n.is_multiple_of(self.lose_every) {
                self.lost.lock().expect("faulty ops").push(key.account_id.clone());
                return Err(FanoutError::Transient { api: "CreateAccountAssignment".into(), message: "connection reset (answer lost)".into() });
            }
        }
        answer
    }
    async fn delete_assignment(&self, key: &AssignmentKey) -> Result<OpStatus> {
        self.inner.delete_assignment(key).await
    }
    async fn operation_status(&self, op: Operation, request_id: &str) -> Result<OpStatus> {
        self.inner.operation_status(op, request_id).await
    }
    async fn in_progress_operations(&self, op: Operation) -> Result<BTreeSet<String>> {
        self.inner.in_progress_operations(op).await
    }
}

/// A process's access to a shared in-memory ledger with faults of its own: answers lost after
/// the write was applied, heartbeat writes failing for a while, every call failing for a while.
pub struct FaultyLedger {
    inner: Arc<MemoryLedger>,
    writes: AtomicU64,
    /// Every n-th claim, release or park is applied and its answer lost (0: none).
    pub lose_every: u64,
    /// (from, until): every heartbeat write fails.
    pub heartbeat_down: Option<(Instant, Instant)>,
    /// (from, until): every call fails.
    pub down: Option<(Instant, Instant)>,
    /// Answers lost so far.
    pub lost_answers: AtomicU64,
}

impl FaultyLedger {
    pub fn new(inner: Arc<MemoryLedger>) -> FaultyLedger {
        FaultyLedger { inner, writes: AtomicU64::new(0), lose_every: 0, heartbeat_down: None, down: None, lost_answers: AtomicU64::new(0) }
    }

    fn check_up(&self, window: Option<(Instant, Instant)>) -> Result<()> {
        let now = Instant::now();
        match window {
            Some((from, until)) if now >= from && now < until => Err(FanoutError::Transient { api: "quota ledger".into(), message: "unreachable".into() }),
            _ => Ok(()),
        }
    }

    /// The answer of a write that was applied, or lost if its turn came.
    fn maybe_lose<T>(&self, answer: Result<T>) -> Result<T> {
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if self.lose_every > 0 && n.is_multiple_of(self.lose_every) && answer.is_ok() {
            self.lost_answers.fetch_add(1, Ordering::Relaxed);
            return Err(FanoutError::Transient { api: "quota ledger".into(), message: "answer lost after the write".into() });
        }
        answer
    }
}

#[async_trait]
impl QuotaLedger for FaultyLedger {
    async fn view(&self, scope: &Scope) -> Result<LedgerView> {
        self.check_up(self.down)?;
        self.inner.view(scope).await
    }
    async fn claim(&self, scope: &Scope, claim: &ClaimRequest<'_>) -> Result<Claim> {
        self.check_up(self.down)?;
        let answer = self.inner.claim(scope, claim).await;
        self.maybe_lose(answer)
    }
    async fn release(&self, scope: &Scope, slot: u32, fence: u64) -> Result<bool> {
        self.check_up(self.down)?;
        let answer = self.inner.release(scope, slot, fence).await;
        self.maybe_lose(answer)
    }
    async fn park(&self, scope: &Scope, slot: u32, fence: u64, request_id: Option<&str>) -> Result<bool> {
        self.check_up(self.down)?;
        let answer = self.inner.park(scope, slot, fence, request_id).await;
        self.maybe_lose(answer)
    }
    async fn reserve_requests(&self, scope: &Scope, count: u32, interval_us: u64, now_us: u64, cap_us: u64) -> Result<u64> {
        self.check_up(self.down)?;
        self.inner.reserve_requests(scope, count, interval_us, now_us, cap_us).await
    }
    async fn put_holder(&self, scope: &Scope, holder: &HolderRecord) -> Result<()> {
        self.check_up(self.down)?;
        self.check_up(self.heartbeat_down)?;
        self.inner.put_holder(scope, holder).await
    }
    async fn remove_holder(&self, scope: &Scope, holder: &str) -> Result<()> {
        self.check_up(self.down)?;
        self.inner.remove_holder(scope, holder).await
    }
    fn released(&self) -> Option<Arc<Notify>> {
        self.inner.released()
    }
}
