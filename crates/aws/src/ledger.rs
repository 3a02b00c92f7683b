//! `QuotaLedger` on the `DynamoStore` table: the slots, account locks, rate item and holders
//! that every worker, execution and CLI run on one Identity Center instance shares (see
//! `crates/aws/TABLE.md`, "Quota ledger"). Behaves as `sso_fanout_core::store::MemoryLedger`,
//! race-free across processes: every decision is one conditional write or one transaction.
//!
//! | pk | sk | attributes |
//! |---|---|---|
//! | `QUOTA#<scope>` | `SLOT#<nnnn>` | `slot`, `fence`, `holder` + `account` (absent when free), `expiresUs`, `lockLost` |
//! | `QUOTA#<scope>` | `RATE` | `nextUs` |
//! | `QUOTA#<scope>` | `HOLDER#<holder>` | `holder`, `waiting`, `expiresUs`, `expiresAt` (TTL) |
//! | `QUOTALOCK#<scope>` | `<account id>` | `slot`, `fence`: the last lease granted for the account |
//!
//! **Account locks.** A claim writes the slot and the account's lock in one transaction, so a
//! live lease of an account is always the one its lock names. The lock is free when it does not
//! exist or names the lease the claim replaces; otherwise the lease it names is read and, if it
//! is not live, a second transaction moves the lock while checking, on that lease's slot, that it
//! is still not live, and marks it (`lockLost`) so that a late renewal cannot revive it. Renewals
//! therefore write the slot alone. Releases, hand-overs and takeovers delete the lock of the
//! lease they end when this ledger granted it (it remembers the accounts of its leases); a lock
//! left behind is only ever a stale one, resolved as above.

use crate::dynamo::{get_s, key, n, s, Item, PK, SK, TTL_ATTRIBUTE};
use crate::errors::{classify, error_code, store_error, SdkError};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use sso_fanout_core::clock::unix_now;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::Scope;
use sso_fanout_core::retry::Backoff;
use sso_fanout_core::store::ledger::{Claim, ClaimRequest, HolderRecord, LedgerView, QuotaLedger, SlotRecord};
use sso_fanout_core::{FanoutError, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;


const RATE_SK: &str = "RATE";
/// Attempts of one `reserve_requests` (three always suffice unless the item is changed by hand).
const RATE_ATTEMPTS: u32 = 4;
/// Rounds of one claim whose account lock keeps changing under it (each round reads the lease
/// the lock names); more than two needs other claims of the same account in between. Past
/// them the claim answers `AccountBusy`: others keep taking the account.
const CLAIM_ROUNDS: u32 = 8;
/// Attempts of one transaction that DynamoDB cancelled for a concurrent transaction on the same
/// items (`TransactionConflict`, not a failed condition) or throttled.
const TRANSACTION_ATTEMPTS: u32 = 5;
const TRANSACTION_CONFLICT: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(80));
/// Holder records are deleted by TTL this long after they expire (garbage collection only: an
/// expired holder counts for nothing). Slots and locks have no TTL.
const HOLDER_TTL_GRACE_S: u64 = 86_400;
/// Remembered (slot, fence) -> account pairs (see `DynamoLedger::accounts`); all forgotten at
/// once beyond this (a release then leaves its lock to be resolved by the next claim).
const ACCOUNTS_REMEMBERED: usize = 4_096;

pub struct DynamoLedger {
    client: Client,
    table: String,
    page_size: Option<i32>,
    writes: AtomicU64,
    /// Whether the rate item was ahead of now at this ledger's last reservation (which of the
    /// two conditional updates to try first).
    rate_ahead: AtomicBool,
    /// The account of each lease this ledger granted, by (scope, slot, fence), so that the
    /// release or hand-over that ends the lease deletes its account's lock. A fence is raised by
    /// every claim and slot items are never deleted, so a (slot, fence) names one account
    /// forever: an entry is never wrong, only missing (a lease granted by another process).
    accounts: Mutex<HashMap<(String, u32, u64), AccountId>>,
}

/// One item's part in a cancelled transaction.
struct Reason {
    failed: bool,
    /// The item as it was, for writes that asked for it (`ReturnValuesOnConditionCheckFailure`).
    item: Option<Item>,
}

enum Transaction {
    Written,
    /// Cancelled for failed conditions; one reason per item, in order.
    Cancelled(Vec<Reason>),
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoLedger {
        DynamoLedger {
            client,
            table: table.into(),
            page_size: None,
            writes: AtomicU64::new(0),
            rate_ahead: AtomicBool::new(false),
            accounts: Mutex::default(),
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
    /// counts, and so does every attempt whose condition failed. Reads do not count.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn wrote(&self, items: usize) {
        self.writes.fetch_add(items as u64, Ordering::Relaxed);
    }

    fn remember(&self, scope: &Scope, slot: u32, fence: u64, account: &AccountId) {
        let mut accounts = self.accounts.lock().expect("accounts");
        if accounts.len() >= ACCOUNTS_REMEMBERED {
            accounts.clear();
        }
        accounts.insert((scope.key(), slot, fence), account.clone());
    }

    fn remembered(&self, scope: &Scope, slot: u32, fence: u64) -> Option<AccountId> {
        self.accounts.lock().expect("accounts").get(&(scope.key(), slot, fence)).cloned()
    }

    fn forget(&self, scope: &Scope, slot: u32, fence: u64) {
        self.accounts.lock().expect("accounts").remove(&(scope.key(), slot, fence));
    }

    /// One TransactWriteItems. A cancellation for failed conditions is an answer, not an error;
    /// one for a concurrent transaction (or throttling) is retried.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Transaction> {
        let mut attempt = 0;
        loop {
            self.wrote(items.len());
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Transaction::Written),
                Err(e) => e,
            };
            let reasons: Option<Vec<(String, Option<Item>)>> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(
                    c.cancellation_reasons()
                        .iter()
                        .map(|r| (r.code().unwrap_or("None").to_string(), r.item().cloned()))
                        .collect(),
                ),
                _ => None,
            };
            let Some(reasons) = reasons else { return Err(ledger_error(&self.table, "TransactWriteItems", err)) };
            let benign = |c: &str| c == "None" || c == "ConditionalCheckFailed";
            let complete = reasons.len() == items.len();
            if complete && reasons.iter().all(|(c, _)| benign(c)) && reasons.iter().any(|(c, _)| c != "None") {
                return Ok(Transaction::Cancelled(
                    reasons.into_iter().map(|(c, item)| Reason { failed: c == "ConditionalCheckFailed", item }).collect(),
                ));
            }
            let codes = reasons.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
            let retryable = complete
                && reasons.iter().all(|(c, _)| {
                    benign(c) || matches!(c.as_str(), "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
                });
            if retryable && attempt + 1 < TRANSACTION_ATTEMPTS {
                tokio::time::sleep(TRANSACTION_CONFLICT.random_delay(attempt)).await;
                attempt += 1;
                continue;
            }
            return Err(if retryable {
                FanoutError::Transient {
                    api: "DynamoDB TransactWriteItems".into(),
                    message: format!("table `{}`: cancelled {} times in a row: [{codes}]", self.table, attempt + 1),
                }
            } else {
                FanoutError::Store(format!(
                    "DynamoDB TransactWriteItems on table `{}` cancelled: [{codes}] ({})",
                    self.table,
                    err.message().unwrap_or("no message")
                ))
            });
        }
    }

    /// One UpdateItem whose failed condition is an answer (false), not an error.
    async fn update_if(&self, update: Update) -> Result<bool> {
        self.wrote(1);
        let out = self
            .client
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_string))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(ledger_error(&self.table, "UpdateItem", e)),
        }
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

    /// The slot under lease `fence`, if it is still held under it, made free.
    fn free_slot(&self, scope: &Scope, slot: u32, fence: u64) -> Result<Update> {
        Update::builder()
            .table_name(&self.table)
            .key(PK, s(&quota_pk(scope)))
            .key(SK, s(&slot_sk(slot)))
            .update_expression("REMOVE #holder, #account, #lost")
            .condition_expression("#fence = :f AND attribute_exists(#holder)")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_names("#account", "account")
            .expression_attribute_names("#lost", "lockLost")
            .expression_attribute_values(":f", n(fence))
            .build()
            .map_err(build_error)
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
                view.slots.push(slot_record(item, &pk, sk)?);
            } else if sk.starts_with("HOLDER#") {
                view.holders.push(HolderRecord {
                    holder: req_s(item, "holder", &pk, sk)?.to_string(),
                    waiting: u32::try_from(req_n(item, "waiting", &pk, sk)?)
                        .map_err(|_| malformed(&pk, sk, "waiting", "is out of range"))?,
                    expires_us: req_n(item, "expiresUs", &pk, sk)?,
                });
            }
        }
        view.slots.sort_by_key(|r| r.slot);
        view.holders.sort_by(|a, b| a.holder.cmp(&b.holder));
        Ok(view)
    }

    async fn claim(&self, scope: &Scope, c: &ClaimRequest<'_>) -> Result<Claim> {
        let fence = c.seen_fence + 1;
        // The claim ends the lease (slot, seen fence), a hand-over or a takeover: its account's
        // lock goes with it when this ledger knows the account (it granted that lease) and it
        // is another account.
        let mut previous = self.remembered(scope, c.slot, c.seen_fence).filter(|a| a != c.account);
        // The lease the account's lock names, once read: it must be shown not live.
        let mut lock_names: Option<(u32, u64)> = None;
        for _ in 0..CLAIM_ROUNDS {
            let mut items = vec![TransactWriteItem::builder().put(self.slot_put(scope, c, fence)?).build()];
            items.push(TransactWriteItem::builder().put(self.lock_put(scope, c, fence, lock_names)?).build());
            let mut checked = None;
            if let Some((slot, lease)) = lock_names.filter(|(slot, _)| *slot != c.slot) {
                checked = Some(items.len());
                items.push(TransactWriteItem::builder().update(self.mark_lock_lost(scope, slot, lease, c.now_us)?).build());
            }
            let mut dropped = None;
            if let Some(account) = &previous {
                dropped = Some(items.len());
                items.push(TransactWriteItem::builder().delete(self.delete_lock(scope, account, c.slot, c.seen_fence)?).build());
            }
            let reasons = match self.transact(items).await? {
                Transaction::Written => {
                    self.forget(scope, c.slot, c.seen_fence);
                    self.remember(scope, c.slot, fence, c.account);
                    return Ok(Claim::Granted { fence });
                }
                Transaction::Cancelled(reasons) => reasons,
            };
            // As MemoryLedger: a slot that changed wins over a busy account.
            if reasons[0].failed {
                return Ok(Claim::Lost);
            }
            if checked.is_some_and(|i| reasons[i].failed) {
                return Ok(Claim::AccountBusy); // the lease the lock names is live
            }
            if dropped.is_some_and(|i| reasons[i].failed) {
                previous = None; // that account's lock already names a later lease
            }
            if reasons[1].failed {
                // The lock names another lease (or changed since it was read): is that one live?
                let Some(lock) = &reasons[1].item else {
                    lock_names = None; // deleted meanwhile: free
                    continue;
                };
                let (lpk, lsk) = (lock_pk(scope), c.account.as_str().to_string());
                let named = (
                    u32::try_from(req_n(lock, "slot", &lpk, &lsk)?)
                        .map_err(|_| malformed(&lpk, &lsk, "slot", "is out of range"))?,
                    req_n(lock, "fence", &lpk, &lsk)?,
                );
                if named.0 != c.slot {
                    let live = self.read_slot(scope, named.0).await?.is_some_and(|s| s.fence == named.1 && s.is_live(c.now_us));
                    if live {
                        return Ok(Claim::AccountBusy);
                    }
                }
                lock_names = Some(named);
            }
        }
        tracing::debug!(slot = c.slot, account = c.account.as_str(), "account lock changed {CLAIM_ROUNDS} times during a claim");
        Ok(Claim::AccountBusy)
    }

    async fn renew(&self, scope: &Scope, slot: u32, fence: u64, expires_us: u64) -> Result<bool> {
        // The slot alone: the account's lock names this lease for as long as it can be renewed
        // (`lockLost` is set on a lease whose lock was given to another one).
        let update = Update::builder()
            .table_name(&self.table)
            .key(PK, s(&quota_pk(scope)))
            .key(SK, s(&slot_sk(slot)))
            .update_expression("SET #exp = :exp")
            .condition_expression("#fence = :f AND attribute_exists(#holder) AND (attribute_not_exists(#lost) OR #lost <> :f)")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_names("#lost", "lockLost")
            .expression_attribute_names("#exp", "expiresUs")
            .expression_attribute_values(":f", n(fence))
            .expression_attribute_values(":exp", n(expires_us))
            .build()
            .map_err(build_error)?;
        let renewed = self.update_if(update).await?;
        if !renewed {
            self.forget(scope, slot, fence);
        }
        Ok(renewed)
    }

    async fn release(&self, scope: &Scope, slot: u32, fence: u64) -> Result<bool> {
        let account = self.remembered(scope, slot, fence);
        self.forget(scope, slot, fence);
        let Some(account) = account else {
            // Granted by another process: free the slot; its lock is resolved by the next claim.
            return self.update_if(self.free_slot(scope, slot, fence)?).await;
        };
        let items = vec![
            TransactWriteItem::builder().update(self.free_slot(scope, slot, fence)?).build(),
            TransactWriteItem::builder().delete(self.delete_lock(scope, &account, slot, fence)?).build(),
        ];
        match self.transact(items).await? {
            Transaction::Written => Ok(true),
            Transaction::Cancelled(reasons) if reasons[0].failed => Ok(false),
            // Only the lock belongs to a later lease of the account now: free the slot alone.
            Transaction::Cancelled(_) => self.update_if(self.free_slot(scope, slot, fence)?).await,
        }
    }

    async fn reserve_requests(&self, scope: &Scope, count: u32, interval_us: u64, now_us: u64) -> Result<u64> {
        let pk = quota_pk(scope);
        let span = u64::from(count).saturating_mul(interval_us);
        // GCRA without max(), which update expressions cannot compute: two conditional updates
        // that split on `nextUs >= now`, each atomic on its own. Ahead of now (requests queued),
        // the block goes at the end of the queue (an atomic add); behind now or unset, it starts
        // now. A failed condition means the other case holds, and stays true since `nextUs`
        // only grows: at most three attempts, whatever the contention. Start with the case this
        // ledger met last.
        let mut ahead = self.rate_ahead.load(Ordering::Relaxed);
        for _ in 0..RATE_ATTEMPTS {
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(&pk))
                .key(SK, s(RATE_SK))
                .expression_attribute_names("#next", "nextUs")
                .expression_attribute_values(":now", n(now_us));
            let update = if ahead {
                update
                    .update_expression("SET #next = #next + :span")
                    .condition_expression("#next >= :now")
                    .expression_attribute_values(":span", n(span))
                    .return_values(ReturnValue::UpdatedNew)
            } else {
                update
                    .update_expression("SET #next = :next")
                    .condition_expression("attribute_not_exists(#next) OR #next < :now")
                    .expression_attribute_values(":next", n(now_us.saturating_add(span)))
            };
            self.wrote(1);
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
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => ahead = !ahead,
                Err(e) => return Err(ledger_error(&self.table, "UpdateItem", e)),
            }
        }
        Err(FanoutError::Store(format!(
            "quota rate item {pk}/{RATE_SK}: neither condition held in {RATE_ATTEMPTS} attempts (was it changed by hand?)"
        )))
    }

    async fn put_holder(&self, scope: &Scope, holder: &HolderRecord) -> Result<()> {
        let mut item = key(&quota_pk(scope), &holder_sk(&holder.holder));
        item.insert("holder".into(), s(&holder.holder));
        item.insert("waiting".into(), n(u64::from(holder.waiting)));
        item.insert("expiresUs".into(), n(holder.expires_us));
        item.insert(TTL_ATTRIBUTE.into(), n(holder_ttl(holder.expires_us)));
        self.wrote(1);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| ledger_error(&self.table, "PutItem", e))?;
        Ok(())
    }

    async fn remove_holder(&self, scope: &Scope, holder: &str) -> Result<()> {
        self.wrote(1);
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

impl DynamoLedger {
    /// The claimed slot: its fence is still the one read with the view, and it is not live or
    /// is held by the claiming holder (a hand-over). A slot never claimed has no item.
    fn slot_put(&self, scope: &Scope, c: &ClaimRequest<'_>, fence: u64) -> Result<Put> {
        let mut item = key(&quota_pk(scope), &slot_sk(c.slot));
        item.insert("slot".into(), n(u64::from(c.slot)));
        item.insert("fence".into(), n(fence));
        item.insert("holder".into(), s(c.holder));
        item.insert("account".into(), s(c.account.as_str()));
        item.insert("expiresUs".into(), n(c.expires_us));
        let unchanged = if c.seen_fence == 0 { "(attribute_not_exists(#fence) OR #fence = :seen)" } else { "#fence = :seen" };
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("{unchanged} AND (attribute_not_exists(#holder) OR #exp <= :now OR #holder = :holder)"))
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_names("#exp", "expiresUs")
            .expression_attribute_values(":seen", n(c.seen_fence))
            .expression_attribute_values(":now", n(c.now_us))
            .expression_attribute_values(":holder", s(c.holder))
            .build()
            .map_err(build_error)
    }

    /// The account's lock, moved to the new lease. Free when it does not exist or names the
    /// lease this claim replaces; once read (`names`), when it still names that lease (whose
    /// slot the same transaction shows not live). The old item comes back when the check fails.
    fn lock_put(&self, scope: &Scope, c: &ClaimRequest<'_>, fence: u64, names: Option<(u32, u64)>) -> Result<Put> {
        let mut item = key(&lock_pk(scope), c.account.as_str());
        item.insert("slot".into(), n(u64::from(c.slot)));
        item.insert("fence".into(), n(fence));
        let (slot, lease, condition) = match names {
            None => (c.slot, c.seen_fence, "attribute_not_exists(#pk) OR (#slot = :s AND #fence = :f)"),
            Some((slot, lease)) => (slot, lease, "#slot = :s AND #fence = :f"),
        };
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#slot", "slot")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_values(":s", n(u64::from(slot)))
            .expression_attribute_values(":f", n(lease))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if names.is_none() {
            put = put.expression_attribute_names("#pk", PK);
        }
        put.build().map_err(build_error)
    }

    /// Checks that lease (slot, fence) is not live (superseded, released or expired) and marks it
    /// so that it is never renewed again: its account's lock moves to another lease.
    fn mark_lock_lost(&self, scope: &Scope, slot: u32, fence: u64, now_us: u64) -> Result<Update> {
        Update::builder()
            .table_name(&self.table)
            .key(PK, s(&quota_pk(scope)))
            .key(SK, s(&slot_sk(slot)))
            // A slot item is never deleted; should one be missing, it is left well-formed (free).
            .update_expression("SET #lost = :f, #slot = if_not_exists(#slot, :s), #fence = if_not_exists(#fence, :zero), #exp = if_not_exists(#exp, :zero)")
            .condition_expression("#fence <> :f OR attribute_not_exists(#fence) OR attribute_not_exists(#holder) OR #exp <= :now")
            .expression_attribute_names("#lost", "lockLost")
            .expression_attribute_names("#slot", "slot")
            .expression_attribute_names("#fence", "fence")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_names("#exp", "expiresUs")
            .expression_attribute_values(":f", n(fence))
            .expression_attribute_values(":s", n(u64::from(slot)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now_us))
            .build()
            .map_err(build_error)
    }
}

/// DynamoDB failures of the ledger: throttling, 5xx and timeouts are `Transient` (retryable;
/// never `Throttled`, which is Identity Center's quota), a missing table is `store_error`'s
/// configuration error, anything else a `Store` error.
fn ledger_error<E>(table: &str, api: &str, err: SdkError<E>) -> FanoutError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if error_code(&err) == Some("ResourceNotFoundException") {
        return store_error(table, api, err);
    }
    match classify(api, err) {
        e if e.is_retryable() => {
            FanoutError::Transient { api: format!("DynamoDB {api}"), message: format!("table `{table}`: {e}") }
        }
        e => FanoutError::Store(format!("DynamoDB {api} on table `{table}`: {e}")),
    }
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> FanoutError {
    FanoutError::Internal(format!("quota ledger request: {e}"))
}

/// The ledger partition of one scope (one Identity Center instance): slots, rate, holders.
fn quota_pk(scope: &Scope) -> String {
    format!("QUOTA#{}", scope.key())
}

/// The account locks of one scope: apart, so that `view` never reads them.
fn lock_pk(scope: &Scope) -> String {
    format!("QUOTALOCK#{}", scope.key())
}

fn slot_sk(slot: u32) -> String {
    format!("SLOT#{slot:04}")
}

fn holder_sk(holder: &str) -> String {
    format!("HOLDER#{holder}")
}

/// TTL (unix seconds) of a holder record expiring at `expires_us`: a day after it, and never
/// before a day from now (ledger clocks other than Unix time start near 0).
fn holder_ttl(expires_us: u64) -> u64 {
    (expires_us / 1_000_000).max(unix_now()) + HOLDER_TTL_GRACE_S
}

fn slot_record(item: &Item, pk: &str, sk: &str) -> Result<SlotRecord> {
    let slot = u32::try_from(req_n(item, "slot", pk, sk)?).map_err(|_| malformed(pk, sk, "slot", "is out of range"))?;
    let account = match get_s(item, "account") {
        Some(text) => Some(AccountId::parse(text).map_err(|e| malformed(pk, sk, "account", &e.to_string()))?),
        None => None,
    };
    Ok(SlotRecord {
        slot,
        fence: req_n(item, "fence", pk, sk)?,
        holder: get_s(item, "holder").map(str::to_string),
        account,
        expires_us: req_n(item, "expiresUs", pk, sk)?,
    })
}

fn malformed(pk: &str, sk: &str, attribute: &str, why: &str) -> FanoutError {
    FanoutError::Store(format!("quota ledger item {pk} / {sk}: attribute `{attribute}` {why}"))
}

fn req_s<'a>(item: &'a Item, name: &str, pk: &str, sk: &str) -> Result<&'a str> {
    get_s(item, name).ok_or_else(|| malformed(pk, sk, name, "is missing or not a string"))
}

/// A number attribute that must be there and be a whole number.
fn req_n(item: &Item, name: &str, pk: &str, sk: &str) -> Result<u64> {
    match item.get(name) {
        None => Err(malformed(pk, sk, name, "is missing")),
        Some(AttributeValue::N(text)) => {
            text.parse().map_err(|_| malformed(pk, sk, name, &format!("is not a whole number: `{text}`")))
        }
        Some(_) => Err(malformed(pk, sk, name, "is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_slots_in_order_and_name_the_scope() {
        assert_eq!(slot_sk(7), "SLOT#0007");
        assert!(slot_sk(9) < slot_sk(10));
        let scope = Scope {
            organization_id: "o-abcdef1234".into(),
            management_account_id: "100000000000".into(),
            instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111".into(),
            region: "us-east-1".into(),
        };
        assert_eq!(quota_pk(&scope), "QUOTA#o-abcdef1234#100000000000#ssoins-1111111111111111#us-east-1");
        assert_eq!(lock_pk(&scope), "QUOTALOCK#o-abcdef1234#100000000000#ssoins-1111111111111111#us-east-1");
    }

    #[test]
    fn malformed_numbers_name_the_item() {
        let mut item = key("QUOTA#x", "SLOT#0001");
        item.insert("slot".into(), n(1));
        item.insert("fence".into(), AttributeValue::N("1.5".into()));
        item.insert("expiresUs".into(), n(5));
        let e = slot_record(&item, "QUOTA#x", "SLOT#0001").unwrap_err();
        assert!(matches!(&e, FanoutError::Store(m) if m.contains("QUOTA#x / SLOT#0001") && m.contains("fence")), "{e}");
        item.insert("fence".into(), n(3));
        assert_eq!(
            slot_record(&item, "QUOTA#x", "SLOT#0001").unwrap(),
            SlotRecord { fence: 3, expires_us: 5, ..SlotRecord::free(1) }
        );
    }

    #[test]
    fn holder_ttl_is_a_day_after_expiry_and_never_in_the_past() {
        let now = unix_now();
        assert_eq!(holder_ttl((now + 100) * 1_000_000), now + 100 + HOLDER_TTL_GRACE_S);
        assert!(holder_ttl(30_000_000) >= now + HOLDER_TTL_GRACE_S);
    }
}
