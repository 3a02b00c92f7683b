//! The CLI's default store: one redb file in the user's data directory, so the account cache
//! and past runs persist without any AWS resource. Values are JSON.

use sso_fanout_core::error::{FanoutError, Result};
use sso_fanout_core::model::{AccountResult, OrgSnapshot, Scope};
use sso_fanout_core::report::RunSummary;
use sso_fanout_core::desired::StoredDocument;
use sso_fanout_core::store::{supersedes, AccountCache, DocumentStore, LatencyHistory, RunLog, RunRecord, RunStatus, LATENCY_SAMPLES_KEPT};
use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use sso_fanout_core::clock::{compact_utc, unix_now};
use std::path::{Path, PathBuf};

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const RUNS: TableDefinition<&str, &str> = TableDefinition::new("runs");
/// Key: "<run id>/<account id>".
const RESULTS: TableDefinition<&str, &str> = TableDefinition::new("results");
/// Key: (scope key, sequence number). (The unscoped table "latencies" of earlier versions is
/// left unread: its samples may come from another organization or the simulator.)
const LATENCIES: TableDefinition<(&str, u64), u64> = TableDefinition::new("scoped_latencies");
/// Key: (scope key, document name); value: the `StoredDocument` JSON.
const DOCUMENTS: TableDefinition<(&str, &str), &str> = TableDefinition::new("documents");


/// The account cache's key in META: one snapshot per scope. (The unscoped key "org" of earlier
/// versions is never read.)
fn org_key(scope: &Scope) -> String {
    format!("org#{}", scope.key())
}

pub struct EmbeddedStore {
    db: Database,
    path: PathBuf,
}

fn store_err(e: impl std::fmt::Display) -> FanoutError {
    FanoutError::Store(e.to_string())
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(store_err)
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(store_err)
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<EmbeddedStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| FanoutError::Store(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => in_use(path),
            e => FanoutError::Store(format!("cannot open {}: {e}", path.display())),
        })?;
        // Who holds the store, for a second process that finds it locked (see `in_use`).
        let holder = format!("pid {} since {}: {}", std::process::id(), compact_utc(unix_now()), command_line());
        let _ = std::fs::write(holder_file(path), holder);
        let tx = db.begin_write().map_err(store_err)?;
        {
            tx.open_table(META).map_err(store_err)?;
            tx.open_table(RUNS).map_err(store_err)?;
            tx.open_table(RESULTS).map_err(store_err)?;
            tx.open_table(LATENCIES).map_err(store_err)?;
            tx.open_table(DOCUMENTS).map_err(store_err)?;
        }
        tx.commit().map_err(store_err)?;
        Ok(EmbeddedStore { db, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }


    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let tx = self.db.begin_read().map_err(store_err)?;
        f(&tx)
    }

    fn write<T>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<T>) -> Result<T> {
        let tx = self.db.begin_write().map_err(store_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(store_err)?;
        Ok(out)
    }

    fn get_json<T: DeserializeOwned>(&self, table: TableDefinition<&str, &str>, key: &str) -> Result<Option<T>> {
        self.read(|tx| {
            let t = tx.open_table(table).map_err(store_err)?;
            let value = t.get(key).map_err(store_err)?;
            value.map(|v| from_json(v.value())).transpose()
        })
    }

    fn put_json<T: Serialize>(&self, table: TableDefinition<&str, &str>, key: &str, value: &T) -> Result<()> {
        let json = to_json(value)?;
        self.write(|tx| {
            tx.open_table(table).map_err(store_err)?.insert(key, json.as_str()).map_err(store_err)?;
            Ok(())
        })
    }
}

// redb calls are synchronous and short (local file, small values): run them inline.
#[async_trait]
impl AccountCache for EmbeddedStore {
    async fn cached_org(&self, scope: &Scope) -> Result<Option<OrgSnapshot>> {
        self.get_json(META, &org_key(scope))
    }

    async fn put_org(&self, scope: &Scope, snapshot: &OrgSnapshot) -> Result<()> {
        self.put_json(META, &org_key(scope), snapshot)
    }
}

#[async_trait]
impl RunLog for EmbeddedStore {
    async fn put_run(&self, record: &RunRecord) -> Result<()> {
        let json = to_json(record)?;
        self.write(|tx| {
            let mut t = tx.open_table(RUNS).map_err(store_err)?;
            if t.get(record.plan.run_id.as_str()).map_err(store_err)?.is_some() {
                return Err(FanoutError::Store(format!("run {} exists", record.plan.run_id)));
            }
            t.insert(record.plan.run_id.as_str(), json.as_str()).map_err(store_err)?;
            Ok(())
        })
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.get_json(RUNS, run_id)
    }

    async fn update_run(&self, run_id: &str, status: RunStatus, summary: Option<&RunSummary>) -> Result<()> {
        let mut record: RunRecord = self.get_json(RUNS, run_id)?.ok_or_else(|| FanoutError::Store(format!("no run {run_id}")))?;
        record.status = status;
        if let Some(s) = summary {
            record.summary = Some(s.clone());
        }
        self.put_json(RUNS, run_id, &record)
    }

    async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.read(|tx| {
            let t = tx.open_table(RUNS).map_err(store_err)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(store_err)?.rev().take(limit) {
                let (_, v) = entry.map_err(store_err)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
    }

    async fn put_result(&self, result: &AccountResult) -> Result<()> {
        let key = format!("{}/{}", result.run_id, result.key());
        let json = to_json(result)?;
        self.write(|tx| {
            let mut t = tx.open_table(RESULTS).map_err(store_err)?;
            let old: Option<AccountResult> = t.get(key.as_str()).map_err(store_err)?.map(|v| from_json(v.value())).transpose()?;
            if old.is_none_or(|old| supersedes(result, &old)) {
                t.insert(key.as_str(), json.as_str()).map_err(store_err)?;
            }
            Ok(())
        })
    }

    async fn results(&self, run_id: &str) -> Result<Vec<AccountResult>> {
        let lo = format!("{run_id}/");
        let hi = format!("{run_id}0"); // '0' sorts right after '/'
        self.read(|tx| {
            let t = tx.open_table(RESULTS).map_err(store_err)?;
            let mut out = Vec::new();
            for entry in t.range(lo.as_str()..hi.as_str()).map_err(store_err)? {
                let (_, v) = entry.map_err(store_err)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
    }
}

#[async_trait]
impl LatencyHistory for EmbeddedStore {
    async fn latency_samples(&self, scope: &Scope, limit: usize) -> Result<Vec<u64>> {
        let key = scope.key();
        self.read(|tx| {
            let t = tx.open_table(LATENCIES).map_err(store_err)?;
            let mut out: Vec<u64> = Vec::new();
            for entry in t.range((key.as_str(), 0)..=(key.as_str(), u64::MAX)).map_err(store_err)?.rev().take(limit) {
                out.push(entry.map_err(store_err)?.1.value());
            }
            out.reverse();
            Ok(out)
        })
    }

    async fn add_latency_samples(&self, scope: &Scope, samples: &[u64]) -> Result<()> {
        let key = scope.key();
        let key = key.as_str();
        self.write(|tx| {
            let mut t = tx.open_table(LATENCIES).map_err(store_err)?;
            let last = t.range((key, 0)..=(key, u64::MAX)).map_err(store_err)?.next_back().transpose().map_err(store_err)?;
            let mut next = last.map(|(k, _)| k.value().1 + 1).unwrap_or(0);
            for s in samples {
                t.insert((key, next), *s).map_err(store_err)?;
                next += 1;
            }
            // Keep the most recent samples only.
            let first_kept = next.saturating_sub(LATENCY_SAMPLES_KEPT as u64);
            t.retain_in((key, 0)..(key, first_kept), |_, _| false).map_err(store_err)?;
            Ok(())
        })
    }
}

#[async_trait]
impl DocumentStore for EmbeddedStore {
    async fn put_document(&self, scope: &Scope, document: &StoredDocument) -> Result<()> {
        let (key, json) = (scope.key(), to_json(document)?);
        self.write(|tx| {
            let mut t = tx.open_table(DOCUMENTS).map_err(store_err)?;
            t.insert((key.as_str(), document.name.as_str()), json.as_str()).map_err(store_err)?;
            Ok(())
        })
    }

    async fn document(&self, scope: &Scope, name: &str) -> Result<Option<StoredDocument>> {
        let key = scope.key();
        self.read(|tx| {
            let t = tx.open_table(DOCUMENTS).map_err(store_err)?;
            t.get((key.as_str(), name)).map_err(store_err)?.map(|v| from_json(v.value())).transpose()
        })
    }

    async fn documents(&self, scope: &Scope) -> Result<Vec<StoredDocument>> {
        let key = scope.key();
        self.read(|tx| {
            let t = tx.open_table(DOCUMENTS).map_err(store_err)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(store_err)? {
                let (k, v) = entry.map_err(store_err)?;
                if k.value().0 == key {
                    out.push(from_json(v.value())?);
                }
            }
            Ok(out)
        })
    }
}


impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(holder_file(&self.path));
    }
}

/// `<store>.holder`: which process has the store open (redb lets one process at a time in).
fn holder_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".holder");
    PathBuf::from(name)
}

/// The first words of this process's command line: `sso-fanout run --sim 80 ...`.
fn command_line() -> String {
    let words: Vec<String> = std::env::args().take(8).map(|a| sso_fanout_core::error::printable(&a)).collect();
    let more = if std::env::args().count() > 8 { " ..." } else { "" };
    format!("`{}{more}`", words.join(" "))
}

/// The store is held by another process: say which and what to do.
fn in_use(path: &Path) -> FanoutError {
    let holder = std::fs::read_to_string(holder_file(path)).map(|h| format!(" ({})", h.trim())).unwrap_or_default();
    FanoutError::Store(format!(
        "{} is in use by another sso-fanout process{holder}, most likely a run in progress: a store is open in one process at a time; \
         read it once that process has ended, or give this command another --store",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sso_fanout_core::model::{Action, Outcome};

    fn temp_dir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!("sso-fanout-store-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    fn result(outcome: Outcome) -> AccountResult {
        AccountResult {
            run_id: "run-1".into(),
            batch: 0,
            account_id: "111111111111".parse().unwrap(),
            account_name: "a".into(),
            action: Action::Create,
            pair: 0,
            outcome,
            request_id: None,
            reason: None,
            attempts: 1,
            duration_ms: 5,
            provisioning_ms: Some(5),
        }
    }

    #[tokio::test]
    async fn results_persist_and_final_outcomes_are_never_overwritten_by_timeouts() {
        let dir = temp_dir();
        let path = dir.join("store.redb");
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store.put_result(&result(Outcome::Succeeded)).await.unwrap();
            store.put_result(&result(Outcome::TimedOut)).await.unwrap();
            let mut other = result(Outcome::Failed);
            other.run_id = "run-10".into();
            store.put_result(&other).await.unwrap();
            store.add_latency_samples(&scope("o-aaaaaaaaaa"), &[1, 2, 3]).await.unwrap();
            store.add_latency_samples(&scope("o-bbbbbbbbbb"), &[7]).await.unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        let results = store.results("run-1").await.unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].outcome, Outcome::Succeeded);
        assert_eq!(store.latency_samples(&scope("o-aaaaaaaaaa"), 2).await.unwrap(), vec![2, 3]);
        assert_eq!(store.latency_samples(&scope("o-bbbbbbbbbb"), 10).await.unwrap(), vec![7]);
        assert!(store.latency_samples(&scope("o-cccccccccc"), 10).await.unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn scope(org: &str) -> Scope {
        Scope {
            organization_id: org.into(),
            management_account_id: "111111111111".into(),
            instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111".into(),
            region: "eu-west-1".into(),
        }
    }

    #[tokio::test]
    async fn the_account_cache_belongs_to_one_scope() {
        let dir = temp_dir();
        let store = EmbeddedStore::open(&dir.join("store.redb")).unwrap();
        let (a, b) = (scope("o-aaaaaaaaaa"), scope("o-bbbbbbbbbb"));
        let snapshot = OrgSnapshot {
            organization_id: a.organization_id.clone(),
            management_account_id: a.management_account_id.parse().unwrap(),
            roots: vec!["r-aaaa".into()],
            ous: vec![],
            accounts: vec![],
            fetched_at: 1,
        };
        store.put_org(&a, &snapshot).await.unwrap();
        assert_eq!(store.cached_org(&a).await.unwrap(), Some(snapshot));
        assert_eq!(store.cached_org(&b).await.unwrap(), None, "another organization's cache is never returned");
        let other_region = Scope { region: "us-east-1".into(), ..a.clone() };
        assert_eq!(store.cached_org(&other_region).await.unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
