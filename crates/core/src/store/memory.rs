//! In-memory store for tests and simulator runs.

use super::{supersedes, AccountCache, DocumentStore, LatencyHistory, RunLog, RunRecord, RunStatus};
use crate::desired::StoredDocument;
use crate::error::{FanoutError, Result};
use crate::model::{AccountResult, OrgSnapshot, Scope};
use crate::report::RunSummary;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    orgs: BTreeMap<String, OrgSnapshot>,
    runs: BTreeMap<String, RunRecord>,
    results: BTreeMap<(String, String), AccountResult>,
    latencies: BTreeMap<String, Vec<u64>>,
    /// By (scope key, name).
    documents: BTreeMap<(String, String), StoredDocument>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

#[async_trait]
impl AccountCache for MemoryStore {
    async fn cached_org(&self, scope: &Scope) -> Result<Option<OrgSnapshot>> {
        Ok(self.inner.lock().expect("store").orgs.get(&scope.key()).cloned())
    }

    async fn put_org(&self, scope: &Scope, snapshot: &OrgSnapshot) -> Result<()> {
        self.inner.lock().expect("store").orgs.insert(scope.key(), snapshot.clone());
        Ok(())
    }
}

#[async_trait]
impl RunLog for MemoryStore {
    async fn put_run(&self, record: &RunRecord) -> Result<()> {
        let mut inner = self.inner.lock().expect("store");
        if inner.runs.contains_key(&record.plan.run_id) {
            return Err(FanoutError::Store(format!("run {} exists", record.plan.run_id)));
        }
        inner.runs.insert(record.plan.run_id.clone(), record.clone());
        Ok(())
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        Ok(self.inner.lock().expect("store").runs.get(run_id).cloned())
    }

    async fn update_run(&self, run_id: &str, status: RunStatus, summary: Option<&RunSummary>) -> Result<()> {
        let mut inner = self.inner.lock().expect("store");
        let run = inner.runs.get_mut(run_id).ok_or_else(|| FanoutError::Store(format!("no run {run_id}")))?;
        run.status = status;
        if let Some(s) = summary {
            run.summary = Some(s.clone());
        }
        Ok(())
    }

    async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        Ok(self.inner.lock().expect("store").runs.values().rev().take(limit).cloned().collect())
    }

    async fn put_result(&self, result: &AccountResult) -> Result<()> {
        let mut inner = self.inner.lock().expect("store");
        let key = (result.run_id.clone(), result.key());
        if inner.results.get(&key).is_none_or(|old| supersedes(result, old)) {
            inner.results.insert(key, result.clone());
        }
        Ok(())
    }

    async fn results(&self, run_id: &str) -> Result<Vec<AccountResult>> {
        let inner = self.inner.lock().expect("store");
        Ok(inner.results.iter().filter(|((r, _), _)| r == run_id).map(|(_, v)| v.clone()).collect())
    }
}

#[async_trait]
impl LatencyHistory for MemoryStore {
    async fn latency_samples(&self, scope: &Scope, limit: usize) -> Result<Vec<u64>> {
        let inner = self.inner.lock().expect("store");
        let samples = inner.latencies.get(&scope.key()).map(Vec::as_slice).unwrap_or_default();
        Ok(samples[samples.len().saturating_sub(limit)..].to_vec())
    }

    async fn add_latency_samples(&self, scope: &Scope, samples: &[u64]) -> Result<()> {
        self.inner.lock().expect("store").latencies.entry(scope.key()).or_default().extend_from_slice(samples);
        Ok(())
    }
}

#[async_trait]
impl DocumentStore for MemoryStore {
    async fn put_document(&self, scope: &Scope, document: &StoredDocument) -> Result<()> {
        self.inner.lock().expect("store").documents.insert((scope.key(), document.name.clone()), document.clone());
        Ok(())
    }

    async fn document(&self, scope: &Scope, name: &str) -> Result<Option<StoredDocument>> {
        Ok(self.inner.lock().expect("store").documents.get(&(scope.key(), name.to_string())).cloned())
    }

    async fn documents(&self, scope: &Scope) -> Result<Vec<StoredDocument>> {
        let key = scope.key();
        Ok(self.inner.lock().expect("store").documents.iter().filter(|((s, _), _)| *s == key).map(|(_, d)| d.clone()).collect())
    }
}
