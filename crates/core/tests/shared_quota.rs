//! The shared quota (`quota::SharedQuota` over the in-memory ledger), on tokio's paused clock:
//! several runs on one simulated Identity Center, leases of dead holders, fencing, the shared
//! request rate and fair shares.

use async_trait::async_trait;
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::error::{FanoutError, Result};
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::{AccountResult, Action, AssignmentKey, OpState, OpStatus, Operation, Outcome, Scope};
use sso_fanout_core::pipeline::{execute, plan_run, Services};
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::ports::AssignmentOps;
use sso_fanout_core::quota::{MemoryInstance, QuotaClock, TokioClock, LEASE};
use sso_fanout_core::request::RunRequest;
use sso_fanout_core::store::ledger::{Claim, ClaimRequest, QuotaLedger};
use sso_fanout_core::store::{AccountCache, MemoryLedger, MemoryStore, RunLog};
use sso_fanout_core::tiers::QuotaBudget;
use sso_fanout_sim::{SimCloud, SimConfig};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::{sleep, Duration, Instant};

fn request(permission_set: &str) -> RunRequest {
    RunRequest::from_value(serde_json::json!({
        "operation": "assign",
        "permissionSet": permission_set,
        "principal": {"type": "GROUP", "name": "PlatformAdmins"},
        "targets": {"filter": "*"},
    }))
    .unwrap()
}

fn scope() -> Scope {
    Scope { organization_id: "o-test".into(), management_account_id: "111111111111".into(), instance_arn: "arn:aws:sso:::instance/ssoins-test".into(), region: "sim".into() }
}

fn account(i: usize) -> AccountId {
    format!("{:012}", 200_000_000_000u64 + i as u64).parse().unwrap()
}

/// One run as its own process would make it: its own store and access to the ledger.
async fn one_run(sim: Arc<SimCloud>, instance: MemoryInstance, permission_set: &str, seed: u64) -> (f64, usize, usize) {
    let ledger = instance.process();
    let store = Arc::new(MemoryStore::new());
    // Each starts with the account list cached (the simulated Organizations API is slow).
    let (_, scope) = sso_fanout_core::planner::scope(sim.as_ref(), sim.as_ref()).await.unwrap();
    let mut snapshot = sim.org().clone();
    snapshot.fetched_at = sso_fanout_core::clock::unix_now();
    store.put_org(&scope, &snapshot).await.unwrap();
    let services = Services::new(sim.clone(), sim.clone(), store.clone()).with_quota(ledger);
    let t0 = Instant::now();
    let plan = plan_run(&services, &request(permission_set), &PlannerConfig { shared_quota: true, ..PlannerConfig::default() }).await.expect("plan");
    let summary = execute(&services, &plan, EngineOptions { jitter_seed: seed, ..Default::default() }, None).await.expect("run");
    let results = store.results(&plan.run_id).await.unwrap();
    for r in results.iter().filter(|r| r.outcome != Outcome::Succeeded) {
        // Shown when the assertions below fail: which accounts, and why.
        println!("{} {:?} {:?}", r.account_id, r.outcome, r.reason);
    }
    let truth = results.iter().filter(|r| r.outcome == Outcome::Succeeded && sim.has_assignment(&r.account_id, &plan.permission_set.arn, &plan.principal.id)).count();
    (t0.elapsed().as_secs_f64(), summary.counts.succeeded, truth)
}

#[tokio::test(start_paused = true)]
async fn three_runs_on_one_instance_stay_inside_the_quota_together() {
    let sim = Arc::new(SimCloud::new(SimConfig::clean(120, 5)));
    let instance = MemoryInstance::new();
    let (a, b, c) = tokio::join!(
        one_run(sim.clone(), instance.clone(), "AdministratorAccess", 1),
        one_run(sim.clone(), instance.clone(), "ReadOnlyAccess", 2),
        one_run(sim.clone(), instance.clone(), "PowerUserAccess", 3),
    );
    let counters = sim.counters();
    assert_eq!(counters.violations(), 0, "{counters:?}");
    assert_eq!(counters.throttled(), 0, "{counters:?}");
    for (_, succeeded, verified) in [a, b, c] {
        assert_eq!(succeeded, 120);
        assert_eq!(verified, 120);
    }
}

#[tokio::test(start_paused = true)]
async fn two_equal_runs_started_together_finish_within_15_percent_of_each_other() {
    let sim = Arc::new(SimCloud::new(SimConfig::clean(300, 11)));
    let instance = MemoryInstance::new();
    let (a, b) = tokio::join!(
        one_run(sim.clone(), instance.clone(), "AdministratorAccess", 1),
        one_run(sim.clone(), instance.clone(), "ReadOnlyAccess", 2),
    );
    assert_eq!(sim.counters().violations(), 0, "{:?}", sim.counters());
    assert_eq!((a.2, b.2), (300, 300));
    let (first, last) = (a.0.min(b.0), a.0.max(b.0));
    assert!(last / first <= 1.15, "finish times {} s and {} s", a.0, b.0);
}

#[tokio::test(start_paused = true)]
async fn without_the_shared_quota_the_same_runs_break_it() {
    // The control for the test above: it must be the ledger that keeps them inside.
    let sim = Arc::new(SimCloud::new(SimConfig::clean(120, 5)));
    let run = |ps: &'static str, seed: u64| {
        let sim = sim.clone();
        async move {
            let store = Arc::new(MemoryStore::new());
            let services = Services::new(sim.clone(), sim.clone(), store);
            let plan = plan_run(&services, &request(ps), &PlannerConfig::default()).await.unwrap();
            execute(&services, &plan, EngineOptions { jitter_seed: seed, ..Default::default() }, None).await.unwrap();
        }
    };
    tokio::join!(run("AdministratorAccess", 1), run("ReadOnlyAccess", 2));
    assert!(sim.counters().violations() > 0, "{:?}", sim.counters());
}

/// Operations that stay IN_PROGRESS until the test says they ended.
#[derive(Default)]
struct HeldOps {
    ended: AtomicBool,
    described: Mutex<Vec<String>>,
}

#[async_trait]
impl AssignmentOps for HeldOps {
    async fn create_assignment(&self, _key: &AssignmentKey) -> Result<OpStatus> {
        unreachable!("the quota never creates")
    }
    async fn delete_assignment(&self, _key: &AssignmentKey) -> Result<OpStatus> {
        unreachable!("the quota never deletes")
    }
    async fn operation_status(&self, _op: Operation, request_id: &str) -> Result<OpStatus> {
        self.described.lock().unwrap().push(request_id.to_string());
        let state = if self.ended.load(Ordering::Relaxed) { OpState::Succeeded } else { OpState::InProgress };
        Ok(OpStatus { request_id: request_id.into(), state, failure_reason: None })
    }
    async fn in_progress_operations(&self, _op: Operation) -> Result<BTreeSet<String>> {
        Err(FanoutError::Unsupported { api: "list".into(), message: "test".into() })
    }
}

fn accepted_result(run_id: &str, account_id: AccountId, request_id: &str) -> AccountResult {
    AccountResult {
        run_id: run_id.into(),
        batch: 0,
        account_name: account_id.to_string(),
        account_id,
        action: Action::Create,
        pair: 0,
        outcome: Outcome::TimedOut,
        request_id: Some(request_id.into()),
        reason: None,
        attempts: 1,
        duration_ms: 0,
        provisioning_ms: None,
    }
}

fn budget(slots: u32) -> QuotaBudget {
    QuotaBudget { max_outstanding: slots, requests_per_second: 18.0 }
}

#[tokio::test(start_paused = true)]
async fn a_dead_holders_slot_returns_after_its_lease_and_only_once_its_operation_ended() {
    let ops = Arc::new(HeldOps::default());
    let instance = MemoryInstance::new();
    // One store, as every run on a deployed stack shares its table.
    let store = Arc::new(MemoryStore::new());
    let dead = instance.process().holder(&scope(), "run-dead", Some(0), budget(1), ops.clone(), store.clone());
    let slot = dead.acquire(&account(1)).await.unwrap();
    // What the engine stores when AWS accepts an operation.
    store.put_result(&accepted_result("run-dead", account(1), "req-1")).await.unwrap();
    dead.die();
    drop(slot); // a killed process releases nothing

    let next = instance.process().holder(&scope(), "run-next", Some(0), budget(1), ops.clone(), store.clone());
    let got = Arc::new(Mutex::new(None));
    let waiter = {
        let (next, got) = (next.clone(), got.clone());
        tokio::spawn(async move {
            let slot = next.acquire(&account(2)).await.unwrap();
            *got.lock().unwrap() = Some(Instant::now());
            slot
        })
    };
    let t0 = Instant::now();
    sleep(LEASE + Duration::from_secs(10)).await;
    assert!(got.lock().unwrap().is_none(), "slot reused while its operation was IN_PROGRESS");
    assert!(ops.described.lock().unwrap().iter().all(|id| id == "req-1"));
    assert!(!ops.described.lock().unwrap().is_empty(), "the orphaned operation was never checked");
    ops.ended.store(true, Ordering::Relaxed);
    let _slot = waiter.await.unwrap();
    let at = got.lock().unwrap().unwrap() - t0;
    assert!(at < LEASE + Duration::from_secs(11), "took {at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_dead_holders_slot_without_an_operation_returns_within_the_lease() {
    let ops = Arc::new(HeldOps::default());
    let instance = MemoryInstance::new();
    let dead = instance.process().holder(&scope(), "dead", Some(0), budget(1), ops.clone(), Arc::new(MemoryStore::new()));
    let slot = dead.acquire(&account(1)).await.unwrap();
    dead.die();
    drop(slot);
    let next = instance.process().holder(&scope(), "next", Some(0), budget(1), ops.clone(), Arc::new(MemoryStore::new()));
    let t0 = Instant::now();
    let waiting = tokio::spawn({
        let next = next.clone();
        async move { next.acquire(&account(1)).await.unwrap() } // same account: its lock expired too
    });
    // While it waits, it can say for what: the dead holder's lease, and when it ends.
    sleep(Duration::from_secs(5)).await;
    let c = next.contention().expect("a waiting holder names what it waits for");
    assert_eq!((c.leased_elsewhere, c.holders.clone()), (1, vec!["dead#b0".to_string()]), "{c:?}");
    assert!(c.soonest_end_ms > 50_000 && c.soonest_end_ms <= LEASE.as_millis() as u64, "{c:?}");
    let _slot = waiting.await.unwrap();
    let waited = t0.elapsed();
    assert!(waited >= LEASE - Duration::from_secs(1) && waited <= LEASE + Duration::from_secs(1), "{waited:?}");
    assert_eq!(next.contention(), None, "nothing waits any more");
}

#[tokio::test(start_paused = true)]
async fn a_re_driven_worker_inherits_its_dead_predecessors_leases_at_once() {
    let ops = Arc::new(HeldOps::default());
    let instance = MemoryInstance::new();
    let store = Arc::new(MemoryStore::new());
    let dead = instance.process().holder(&scope(), "run-x", Some(3), budget(2), ops.clone(), store.clone());
    let (one, two) = (dead.acquire(&account(1)).await.unwrap(), dead.acquire(&account(2)).await.unwrap());
    // Account 1's operation is still IN_PROGRESS; account 2's ended.
    store.put_result(&accepted_result("run-x", account(1), "req-1")).await.unwrap();
    store.put_result(&AccountResult { outcome: Outcome::Succeeded, ..accepted_result("run-x", account(2), "req-2") }).await.unwrap();
    dead.die();
    drop((one, two));

    // The state machine re-drives batch 3 of run-x: the new worker has the same name.
    let t0 = Instant::now();
    let again = instance.process().holder(&scope(), "run-x", Some(3), budget(2), ops.clone(), store.clone());
    let _resumed = again.acquire(&account(1)).await.unwrap(); // its own slot, at once
    let _next = again.acquire(&account(3)).await.unwrap(); // account 2's slot: its operation ended
    assert!(t0.elapsed() < Duration::from_secs(1), "waited {:?} for leases it inherits", t0.elapsed());
    // Another run's holder gets nothing while they are held.
    let other = instance.process().holder(&scope(), "run-y", Some(0), budget(2), ops.clone(), store.clone());
    assert!(tokio::time::timeout(Duration::from_secs(5), other.acquire(&account(4))).await.is_err(), "a third slot out of two");
}

#[tokio::test(start_paused = true)]
async fn a_holder_whose_lease_was_taken_over_cannot_renew_or_release_it() {
    let ledger = MemoryLedger::new();
    let s = scope();
    let clock = TokioClock::new();
    let now = clock.now_us();
    let lease = LEASE.as_micros() as u64;
    let claim = |holder: &'static str, seen: u64, now: u64| ClaimRequest { slot: 0, seen_fence: seen, holder, account: &ACCOUNT, now_us: now, expires_us: now + lease };
    static ACCOUNT: std::sync::LazyLock<AccountId> = std::sync::LazyLock::new(|| account(7));
    let Claim::Granted { fence: old } = ledger.claim(&s, &claim("old", 0, now)).await.unwrap() else { panic!() };
    // Before expiry nobody else gets it.
    assert_eq!(ledger.claim(&s, &claim("new", old, now + 1)).await.unwrap(), Claim::Lost);
    let later = now + lease + 1;
    let Claim::Granted { fence: new } = ledger.claim(&s, &claim("new", old, later)).await.unwrap() else { panic!() };
    assert!(new > old);
    assert!(!ledger.renew(&s, 0, old, later + lease).await.unwrap());
    assert!(!ledger.release(&s, 0, old).await.unwrap());
    let view = ledger.view(&s).await.unwrap();
    assert_eq!(view.slots[0].holder.as_deref(), Some("new"));
    assert_eq!(view.slots[0].fence, new);
    assert!(view.slots[0].is_live(later));
}

#[tokio::test(start_paused = true)]
async fn holders_pacing_together_keep_any_one_second_window_within_the_rate() {
    let instance = MemoryInstance::new();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for h in 0..3 {
        let holder = instance.process().holder(&scope(), &format!("h{h}"), Some(0), budget(15), Arc::new(HeldOps::default()), Arc::new(MemoryStore::new()));
        for _ in 0..4 {
            let (holder, sent) = (holder.clone(), sent.clone());
            tasks.spawn(async move {
                for _ in 0..30 {
                    holder.pace().await.unwrap();
                    sent.lock().unwrap().push(t0.elapsed().as_secs_f64());
                    // Callers do other work between calls: some reserved times go unused.
                    sleep(Duration::from_millis(rand::random::<u64>() % 200)).await;
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 360);
    let most = sent.iter().map(|t| sent.iter().filter(|u| **u >= *t && **u < t + 1.0).count()).max().unwrap();
    assert!(most <= 19, "{most} requests in one second at 18/s");
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(elapsed < 360.0 / 18.0 * 1.3, "took {elapsed} s for 360 requests at 18/s");
}

#[tokio::test(start_paused = true)]
async fn two_holders_wanting_more_than_the_slots_share_them_evenly() {
    let instance = MemoryInstance::new();
    let live = Arc::new(Mutex::new((0usize, 0usize)));
    let work = |name: &'static str, offset: usize| {
        let holder = instance.process().holder(&scope(), name, Some(0), budget(4), Arc::new(HeldOps::default()), Arc::new(MemoryStore::new()));
        let live = live.clone();
        async move {
            let _keep = holder.maintain();
            let t0 = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..40 {
                let (holder, live) = (holder.clone(), live.clone());
                tasks.spawn(async move {
                    let _slot = holder.acquire(&account(offset + i)).await.unwrap();
                    {
                        let mut l = live.lock().unwrap();
                        l.0 += 1;
                        l.1 = l.1.max(l.0);
                    }
                    sleep(Duration::from_secs(1)).await;
                    live.lock().unwrap().0 -= 1;
                });
            }
            while tasks.join_next().await.is_some() {}
            t0.elapsed().as_secs_f64()
        }
    };
    let (a, b) = tokio::join!(work("a", 0), work("b", 1000));
    assert!(live.lock().unwrap().1 <= 4, "more holders than slots");
    assert!(a.max(b) / a.min(b) <= 1.15, "finish times {a} and {b}");
    // 80 one-second holds on 4 slots: 20 s if the slots never idle.
    assert!(a.max(b) < 20.0 * 1.25, "took {}", a.max(b));
}
