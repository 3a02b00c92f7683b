//! The quota ledger of CLI runs on one machine: one small JSON file (`quota.json` in the data
//! directory), shared by every sso-fanout process whatever store it uses. Each call takes the
//! file's exclusive lock (an OS advisory lock, released if the process dies), reads the state,
//! applies the call with `LedgerState` (the rules `MemoryLedger` applies) and writes it back:
//! atomic across processes, and about a millisecond. Not fsynced: after a crash of the machine
//! nothing it coordinated is running any more.

use sso_fanout_core::error::{FanoutError, Result};
use sso_fanout_core::model::Scope;
use sso_fanout_core::store::ledger::{Claim, ClaimRequest, HolderRecord, LedgerView, QuotaLedger};
use sso_fanout_core::store::{Applied, LedgerState};
use async_trait::async_trait;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct FileLedger {
    path: PathBuf,
    writes: AtomicU64,
}

fn file_err(path: &Path, what: &str, e: impl std::fmt::Display) -> FanoutError {
    FanoutError::Store(format!("quota ledger {}: cannot {what}: {e}", path.display()))
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

    /// Runs `f` on the state under the file's lock (shared to read, exclusive to change it).
    fn locked<T>(&self, change: bool, f: impl FnOnce(&mut LedgerState) -> T) -> Result<T> {
        let path = &self.path;
        let mut file: File = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(|e| file_err(path, "open it", e))?;
        if change { file.lock() } else { file.lock_shared() }.map_err(|e| file_err(path, "lock it", e))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| file_err(path, "read it", e))?;
        let mut state: LedgerState = if text.trim().is_empty() {
            LedgerState::default()
        } else {
            serde_json::from_str(&text).map_err(|e| file_err(path, "parse it (delete it when no sso-fanout runs)", e))?
        };
        let out = f(&mut state);
        if change {
            let json = serde_json::to_vec(&state).map_err(|e| file_err(path, "serialize it", e))?;
            file.set_len(0).and_then(|_| file.seek(SeekFrom::Start(0))).and_then(|_| file.write_all(&json)).map_err(|e| file_err(path, "write it", e))?;
        }
        Ok(out) // the lock goes with the file handle
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

    async fn renew(&self, scope: &Scope, slot: u32, fence: u64, expires_us: u64) -> Result<bool> {
        self.apply(|state| state.renew(scope, slot, fence, expires_us))
    }

    async fn release(&self, scope: &Scope, slot: u32, fence: u64) -> Result<bool> {
        self.apply(|state| state.release(scope, slot, fence))
    }

    async fn reserve_requests(&self, scope: &Scope, count: u32, interval_us: u64, now_us: u64) -> Result<u64> {
        self.apply(|state| state.reserve_requests(scope, count, interval_us, now_us))
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
                    let now = 1_000_000u64;
                    let view = ledger.view(&s).await.unwrap();
                    let free = (0..3u32).find(|i| view.slots.iter().find(|r| r.slot == *i).is_none_or(|r| !r.is_live(now)));
                    let Some(slot) = free else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let seen = view.slots.iter().find(|r| r.slot == slot).map_or(0, |r| r.fence);
                    let claim = ClaimRequest { slot, seen_fence: seen, holder: &holder, account: &account, now_us: now, expires_us: now + 60_000_000 };
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
    async fn leases_expire_fences_hold_and_a_lost_account_is_not_renewed() {
        let path = temp_file();
        let ledger = FileLedger::open(&path).unwrap();
        let s = scope();
        let account: AccountId = "222222222222".parse().unwrap();
        let claim = |slot, seen, holder, now| ClaimRequest { slot, seen_fence: seen, holder, account: &account, now_us: now, expires_us: now + 100 };
        let Claim::Granted { fence: old } = ledger.claim(&s, &claim(0, 0, "old", 1_000)).await.unwrap() else { panic!() };
        assert_eq!(ledger.claim(&s, &claim(1, 0, "new", 1_050)).await.unwrap(), Claim::AccountBusy, "the account is locked while the lease lives");
        assert_eq!(ledger.claim(&s, &claim(0, old, "new", 1_050)).await.unwrap(), Claim::Lost, "a live lease is not taken over");
        // Expired: the account goes to another slot; the old lease can no longer be renewed.
        let Claim::Granted { fence: new } = ledger.claim(&s, &claim(1, 0, "new", 1_200)).await.unwrap() else { panic!() };
        assert!(!ledger.renew(&s, 0, old, 5_000).await.unwrap(), "renewed a lease whose account moved on");
        // The slot itself is taken over; the old holder cannot release the new one's lease.
        let Claim::Granted { fence: taken } = ledger.claim(&s, &claim(0, old, "third", 1_300)).await.unwrap() else { panic!() };
        assert!(taken > old);
        assert!(!ledger.release(&s, 0, old).await.unwrap(), "the old holder released the new one's slot");
        // A second handle (another process) sees the same state.
        let view = FileLedger::open(&path).unwrap().view(&s).await.unwrap();
        assert_eq!(view.slots.iter().find(|r| r.slot == 1).unwrap().fence, new);
        assert_eq!(view.slots.iter().find(|r| r.slot == 0).unwrap().holder.as_deref(), Some("third"));
        assert_eq!(ledger.writes(), 2 * 5 + 1 + 2, "five claims (2 each), a renew (1) and a release (2), as DynamoDB would write them");
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
            starts.push(ledger.reserve_requests(&s, 3, 50_000, 1_000_000 + i).await.unwrap());
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
}
