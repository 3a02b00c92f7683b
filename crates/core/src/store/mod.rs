//! Where runs, results, the account cache and observed latencies live. The CLI defaults to its
//! embedded store (a redb file in the user's data dir, `sso-fanout-cli`); tests and simulated
//! runs use memory; Lambdas use DynamoDB (`sso-fanout-aws`).

pub mod ledger;
mod memory;
mod memory_ledger;

pub use ledger::QuotaLedger;
pub use memory::MemoryStore;
pub use memory_ledger::{Applied, LedgerState, MemoryLedger};

use crate::error::Result;
use crate::desired::StoredDocument;
use crate::model::{AccountResult, OrgSnapshot, Scope};
use crate::plan::Plan;
use crate::report::RunSummary;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Lifecycle of a run as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Planned,
    Running,
    Finished,
    /// Stopped by the user (Ctrl-C) before every account was done; re-running the same
    /// request resumes.
    Interrupted,
}

/// A stored run: the plan (which holds the request and batches) and, once reported, the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub plan: Plan,
    pub status: RunStatus,
    #[serde(default)]
    pub summary: Option<RunSummary>,
}

/// The account cache: one organization snapshot per scope.
#[async_trait]
pub trait AccountCache: Send + Sync {
    /// The cached organization snapshot of `scope`, if any (freshness is the caller's
    /// decision). A snapshot cached for another scope is never returned.
    async fn cached_org(&self, scope: &Scope) -> Result<Option<OrgSnapshot>>;
    async fn put_org(&self, scope: &Scope, snapshot: &OrgSnapshot) -> Result<()>;
}

/// Runs and their per-account results.
#[async_trait]
pub trait RunLog: Send + Sync {
    /// Stores a new run. Fails if the run id exists.
    async fn put_run(&self, record: &RunRecord) -> Result<()>;
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>>;
    async fn update_run(&self, run_id: &str, status: RunStatus, summary: Option<&RunSummary>) -> Result<()>;
    /// Most recent runs first.
    async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>>;

    /// Records one account's result; a second write for the same (run, account) replaces the
    /// first only if it is at least as final (a retried worker never loses a final result).
    async fn put_result(&self, result: &AccountResult) -> Result<()>;
    async fn results(&self, run_id: &str) -> Result<Vec<AccountResult>>;
}

/// Provisioning latencies observed in past runs: what the planner's latency model learns from.
#[async_trait]
pub trait LatencyHistory: Send + Sync {
    /// Latencies (ms) observed in past runs of `scope`, most recent last, at most `limit`.
    async fn latency_samples(&self, scope: &Scope, limit: usize) -> Result<Vec<u64>>;
    async fn add_latency_samples(&self, scope: &Scope, samples: &[u64]) -> Result<()>;
}

/// Rules documents stored under a name per scope (what `{"reconcile": name}` applies again).
/// A document applied in one organization is never reconciled in another.
#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Stores `document` under its name, replacing the one stored before.
    async fn put_document(&self, scope: &Scope, document: &StoredDocument) -> Result<()>;
    async fn document(&self, scope: &Scope, name: &str) -> Result<Option<StoredDocument>>;
    /// Every stored document of `scope`, by name.
    async fn documents(&self, scope: &Scope) -> Result<Vec<StoredDocument>>;
}

/// Everything a store keeps; what backends build (each step takes only the part it uses).
pub trait RunStore: AccountCache + RunLog + LatencyHistory + DocumentStore {}

impl<T: AccountCache + RunLog + LatencyHistory + DocumentStore + ?Sized> RunStore for T {}

/// Provisioning latencies kept per scope: what the planner learns its latency model from.
pub const LATENCY_SAMPLES_KEPT: usize = 500;
/// Days runs, results and summaries are kept by default (DynamoDB TTL; the template's
/// `ResultRetentionDays` default).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Whether `new` may replace `old` for the same (run, account): final outcomes win over
/// timed-out ones, and a final outcome is never replaced by a non-final one.
pub fn supersedes(new: &AccountResult, old: &AccountResult) -> bool {
    new.outcome.finality() >= old.outcome.finality()
}
