//! The quota ledger of CLI runs on one machine: one small JSON file (`quota.json` in the data
//! directory), shared by every sso-fanout process whatever store it uses. Each call takes the
//! exclusive lock of a lock file beside it (`quota.json.lock`: an OS advisory lock, released if
//! the process dies), reads the state, applies the call with `LedgerState` (the rules
//! `MemoryLedger` applies) and writes the new state to a temporary file that then replaces the
//! ledger (rename): a process killed at any point leaves the old state or the new one, never a
//! truncated or half-written file. About a millisecond a call. Not fsynced: after a crash of the
//! machine nothing it coordinated is running any more.

use async_trait::async_trait;
use sso_fanout_core::error::{FanoutError, Result};
use sso_fanout_core::model::Scope;
use sso_fanout_core::store::ledger::{Claim, ClaimRequest, HolderRecord, LedgerView, QuotaLedger};
use sso_fanout_core::store::{Applied, LedgerState};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct FileLedger {
    path: PathBuf,
    writes: AtomicU64,
}

fn file_err(path: &Path, what: &str, e: impl std::fmt::Display) -> FanoutError {
    FanoutError::Store(format!("quota ledger {}: cannot {what}: {e}", path.display()))
}

/// `<path>` with `suffix` appended to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl FileLedger {
    pub fn open(path: &Path) -> Result<FileLedger> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| file_err(path, "create its directory", e))?;
        }
        let ledger = FileLedger { path: path.to_path_buf(), writes: AtomicU64::new(0) };
        ledger.locked(false, |_| ())?; // fails now, not mid-run, if the file is unusable
        Ok(ledger)
    }

    /// Item writes so far, counted as the DynamoDB ledger would make them.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Runs `f` on the state under the lock file's lock (shared to read, exclusive to change it).
    fn locked<T>(&self, change: bool, f: impl FnOnce(&mut LedgerState) -> T) -> Result<T> {
        let path = &self.path;
        let lock_path = beside(path, ".lock");
        let lock: File = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&lock_path).map_err(|e| file_err(path, "open its lock file", e))?;
        if change { lock.lock() } else { lock.lock_shared() }.map_err(|e| file_err(path, "lock it", e))?;
        let mut state: LedgerState = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LedgerState::default(),
            Err(e) => return Err(file_err(path, "read it", e)),
            Ok(text) if text.trim().is_empty() => LedgerState::default(),
            Ok(text) => serde_json::from_str(&text).map_err(|e| file_err(path, "parse it (delete it when no sso-fanout runs)", e))?,
        };
        let out = f(&mut state);
        if change {
            let json = serde_json::to_vec(&state).map_err(|e| file_err(path, "serialize it", e))?;
            // A process killed between these steps leaves the old ledger in place.
            let temp = beside(path, &format!(".{}.tmp", std::process::id()));
            let written = File::create(&temp).and_then(|mut t| t.write_all(&json)).and_then(|_| std::fs::rename(&temp, path));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&temp);
                return Err(file_err(path, "write it", e));
            }
        }
        Ok(out) // the lock goes with the lock file's handle
    }

    fn apply<T>(&self, f: impl FnOnce(&mut LedgerState) -> Applied<T>) -> Result<T> {
        let applied = self.locked(true, f)?;
        self.writes.fetch_add(applied.writes, Ordering::Relaxed);
        Ok(applied.answer)
    }
}

// Each call is a local file read and write of a few kilobytes: run inline.
#[async_trait]
impl QuotaLedger for FileLedger {
    async fn view(&self, scope: &Scope) -> Result<LedgerView> {
        self.locked(false, |state| state.view(scope))
    }

    async fn claim(&self, scope: &Scope, claim: &ClaimRequest<'_>) -> Result<Claim> {
        self.apply(|state| state.claim(scope, claim))
    }

    async fn release(&self, scope: &Scope, slot: u32, fence: u64) -> Result<bool> {
        self.apply(|state| state.release(scope, slot, fence))
    }

    async fn park(&self, scope: &Scope, slot: u32, fence: u64, request_id: Option<&str>) -> Result<bool> {
        self.apply(|state| state.park(scope, slot, fence, request_id))
    }

    async fn reserve_requests(&self, scope: &Scope, count: u32, interval_us: u64, now_us: u64, cap_us: u64) -> Result<u64> {
        self.apply(|state| state.reserve_requests(scope, count, interval_us, now_us, cap_us))
    }

    async fn put_holder(&self, scope: &Scope, holder: &HolderRecord) -> Result<()> {
        self.apply(|state| state.put_holder(scope, holder))
    }

    async fn remove_holder(&self, scope: &Scope, holder: &str) -> Result<()> {
        self.apply(|state| state.remove_holder(scope, holder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sso_fanout_core::ids::AccountId;
    use sso_fanout_core::model::Operation;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    fn temp_file() -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::env::temp_dir().join(format!("sso-fanout-quota-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))).join("quota.json")
    }

    fn scope() -> Scope {
        Scope {
            organization_id: "o-aaaaaaaaaa".into(),
            management_account_id: "111111111111".into(),
            instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111".into(),
            region: "eu-west-1".into(),
        }
    }

    #[tokio::test]
    async fn keeps_the_ledger_contract() {
        let path = temp_file();
        sso_fanout_core::store::ledger::contract::check(&FileLedger::open(&path).unwrap(), &scope()).await;
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Handles on one file behave as CLI processes sharing the machine's ledger: tasks on all
    /// of them never hold more slots than there are, nor one account twice, and each grant
    /// raises the slot's fence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_file_is_one_ledger_for_every_handle_on_it() {
        let path = temp_file();
        let handles: Vec<Arc<FileLedger>> = (0..3).map(|_| Arc::new(FileLedger::open(&path).unwrap())).collect();
        let s = scope();
        // slot -> (account, fence) as granted and not yet released
        let live: Arc<Mutex<HashMap<u32, (AccountId, u64)>>> = Arc::default();
        let fences: Arc<Mutex<HashMap<u32, u64>>> = Arc::default();
        let granted = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..12u32 {
            let (ledger, s, live, fences, granted) = (handles[t as usize % 3].clone(), s.clone(), live.clone(), fences.clone(), granted.clone());
            tasks.spawn(async move {
                let holder = format!("holder-{t}");
                for round in 0..40u32 {
                    let account: AccountId = format!("{:012}", 100 + (t + round) % 5).parse().unwrap();
                    let view = ledger.view(&s).await.unwrap();
                    let free = (0..3u32).find(|i| view.slots.iter().find(|r| r.slot == *i).is_none_or(|r| r.locked_account().is_none()));
                    let Some(slot) = free else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let seen = view.slots.iter().find(|r| r.slot == slot).map_or(0, |r| r.fence);
                    let claim = ClaimRequest { slot, seen_fence: seen, holder: &holder, account: &account, op: Operation::Assign, now_us: 1_000 };
                    if let Claim::Granted { fence } = ledger.claim(&s, &claim).await.unwrap() {
                        {
                            let mut live = live.lock().unwrap();
                            assert!(live.len() < 3, "a fourth holder on three slots: {live:?}");
                            assert!(!live.values().any(|(a, _)| *a == account), "account {account} held twice: {live:?}");
                            live.insert(slot, (account.clone(), fence));
                            let mut fences = fences.lock().unwrap();
                            assert!(fences.get(&slot).is_none_or(|f| fence > *f), "fence {fence} on slot {slot} not above {:?}", fences.get(&slot));
                            fences.insert(slot, fence);
                        }
                        granted.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        live.lock().unwrap().remove(&slot);
                        assert!(ledger.release(&s, slot, fence).await.unwrap());
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert!(granted.load(Ordering::Relaxed) >= 30, "too few grants to mean anything: {}", granted.load(Ordering::Relaxed));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn writes_are_counted_as_dynamodb_would_make_them() {
        let path = temp_file();
        let ledger = FileLedger::open(&path).unwrap();
        let s = scope();
        let (a, b): (AccountId, AccountId) = ("222222222222".parse().unwrap(), "333333333333".parse().unwrap());
        let claim = |account, seen| ClaimRequest { slot: 0, seen_fence: seen, holder: "h", account, op: Operation::Assign, now_us: 1 };
        ledger.claim(&s, &claim(&a, 0)).await.unwrap(); // 2: slot + lock
        ledger.claim(&s, &claim(&b, 1)).await.unwrap(); // 3: a hand-over deletes a's lock
        ledger.park(&s, 0, 2, Some("req")).await.unwrap(); // 1: the lock stays
        ledger.claim(&s, &claim(&b, 2)).await.unwrap(); // 2
        ledger.release(&s, 0, 3).await.unwrap(); // 2
        assert_eq!(ledger.writes(), 2 + 3 + 1 + 2 + 2);
        // A second handle (another process) sees the same state.
        let view = FileLedger::open(&path).unwrap().view(&s).await.unwrap();
        assert_eq!(view.slots[0].fence, 3);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn request_times_reserved_by_several_handles_never_overlap() {
        let path = temp_file();
        let (a, b) = (FileLedger::open(&path).unwrap(), FileLedger::open(&path).unwrap());
        let s = scope();
        let mut starts = Vec::new();
        for i in 0..20u64 {
            let ledger = if i % 2 == 0 { &a } else { &b };
            starts.push(ledger.reserve_requests(&s, 3, 50_000, 1_000_000 + i, 30_000_000).await.unwrap());
        }
        for pair in starts.windows(2) {
            assert!(pair[1] >= pair[0] + 3 * 50_000, "blocks overlap: {pair:?}");
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_ledger_is_named() {
        let path = temp_file();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "not json").unwrap();
        let e = FileLedger::open(&path).err().expect("refused");
        assert!(e.to_string().contains(&path.display().to_string()) && e.to_string().contains("parse"), "{e}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// The state is replaced whole: what another process reads mid-write is the old state or
    /// the new one, and a temporary file left by a process killed mid-write is ignored.
    #[tokio::test]
    async fn a_write_cut_short_leaves_the_ledger_whole() {
        let path = temp_file();
        let ledger = FileLedger::open(&path).unwrap();
        let s = scope();
        let a: AccountId = "222222222222".parse().unwrap();
        ledger.claim(&s, &ClaimRequest { slot: 0, seen_fence: 0, holder: "h", account: &a, op: Operation::Assign, now_us: 1 }).await.unwrap();
        // What a kill between writing the temporary file and the rename leaves behind.
        std::fs::write(beside(&path, ".99999.tmp"), "{\"scopes\": {").unwrap();
        let view = FileLedger::open(&path).unwrap().view(&s).await.unwrap();
        assert_eq!(view.slots[0].locked_account(), Some(&a), "the ledger as last written");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
