//! The shared quota (`quota::SharedQuota` over the in-memory ledger), on tokio's paused clock:
//! several runs on one simulated Identity Center, leases of dead holders, fencing, the shared
//! request rate and fair shares.

use async_trait::async_trait;
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::error::Result;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::{AssignmentKey, OpState, OpStatus, Operation, Outcome, PrincipalType, Scope};
use sso_fanout_core::pipeline::{execute, plan_run, Services};
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::ports::AssignmentOps;
use sso_fanout_core::quota::{MemoryInstance, FENCE_AFTER, HEARTBEAT, HEARTBEAT_TTL};
use sso_fanout_core::request::RunRequest;
use sso_fanout_core::store::ledger::QuotaLedger;
use sso_fanout_core::store::{AccountCache, MemoryStore, RunLog};
use sso_fanout_core::tiers::QuotaBudget;
use sso_fanout_sim::{SimCloud, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Operations the test starts by hand and ends when it says: the instance's listing and
/// describes answer for them (with their target), as AWS's do.
#[derive(Default)]
struct HeldOps {
    running: Mutex<BTreeMap<String, AssignmentKey>>,
    described: Mutex<Vec<String>>,
    listings: AtomicU64,
}

impl HeldOps {
    /// An operation IN_PROGRESS at AWS in `account` (its request id).
    fn start(&self, account: &AccountId) -> String {
        let id = format!("req-{account}");
        let key = AssignmentKey { account_id: account.clone(), permission_set_arn: PS.parse().unwrap(), principal_type: PrincipalType::Group, principal_id: PRINCIPAL.parse().unwrap() };
        self.running.lock().unwrap().insert(id.clone(), key);
        id
    }

    fn end(&self, request_id: &str) {
        self.running.lock().unwrap().remove(request_id);
    }
}

const PS: &str = "arn:aws:sso:::permissionSet/ssoins-1111111111111111/ps-0000000000000001";
const PRINCIPAL: &str = "906771c1-0071-7057-3a0c-1d1c4ba2c2e8";

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
        match self.running.lock().unwrap().get(request_id) {
            Some(key) => Ok(OpStatus { target: Some(key.clone()), ..OpStatus::of(request_id, OpState::InProgress, None) }),
            None => Ok(OpStatus::of(request_id, OpState::Succeeded, None)),
        }
    }
    async fn in_progress_operations(&self, _op: Operation) -> Result<BTreeSet<String>> {
        self.listings.fetch_add(1, Ordering::Relaxed);
        Ok(self.running.lock().unwrap().keys().cloned().collect())
    }
}

fn budget(slots: u32) -> QuotaBudget {
    QuotaBudget { max_outstanding: slots, requests_per_second: 18.0 }
}

#[tokio::test(start_paused = true)]
async fn a_killed_holders_slot_returns_after_its_heartbeat_and_only_once_its_operation_ended() {
    let ops = Arc::new(HeldOps::default());
    let instance = MemoryInstance::new();
    let dead = instance.process().holder(&scope(), "run-dead", Some(0), budget(1), ops.clone());
    let _beat = dead.maintain();
    let slot = dead.acquire(&account(1), Operation::Assign).await.unwrap();
    // AWS accepted the create; the process is killed before it could record anything.
    let request = ops.start(&account(1));
    dead.die();
    drop(slot); // a killed process releases nothing

    let next = instance.process().holder(&scope(), "run-next", Some(0), budget(1), ops.clone());
    let _keep = next.maintain();
    let got = Arc::new(Mutex::new(None));
    let waiter = {
        let (next, got) = (next.clone(), got.clone());
        tokio::spawn(async move {
            let slot = next.acquire(&account(2), Operation::Assign).await.unwrap();
            *got.lock().unwrap() = Some(Instant::now());
            slot
        })
    };
    let t0 = Instant::now();
    sleep(HEARTBEAT_TTL + Duration::from_secs(30)).await;
    assert!(got.lock().unwrap().is_none(), "slot reused while its operation was IN_PROGRESS");
    assert!(ops.listings.load(Ordering::Relaxed) > 0, "the given-up operation was looked for in the listing");
    let c = next.contention().expect("a waiting holder says what it waits for");
    assert!(c.holders[0].starts_with("run-dead#b0@") && c.soonest_end_ms == 0, "the dead holder, its heartbeat over: {c:?}");
    ops.end(&request);
    let _slot = waiter.await.unwrap();
    let at = got.lock().unwrap().unwrap() - t0;
    assert!(at < HEARTBEAT_TTL + Duration::from_secs(50), "took {at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_killed_holders_slot_whose_operation_never_started_returns_after_its_heartbeat() {
    let ops = Arc::new(HeldOps::default());
    let instance = MemoryInstance::new();
    let dead = instance.process().holder(&scope(), "dead", Some(0), budget(1), ops.clone());
    let _beat = dead.maintain();
    let slot = dead.acquire(&account(1), Operation::Assign).await.unwrap();
    dead.die();
    drop(slot);
    let next = instance.process().holder(&scope(), "next", Some(0), budget(1), ops.clone());
    let _keep = next.maintain();
    let t0 = Instant::now();
    let waiting = tokio::spawn({
        let next = next.clone();
        async move { next.acquire(&account(1), Operation::Assign).await.unwrap() } // the same account: locked meanwhile
    });
    // While it waits, it can say for what: the dead holder, and when its heartbeat ends.
    sleep(Duration::from_secs(5)).await;
    let c = next.contention().expect("a waiting holder names what it waits for");
    assert_eq!(c.leased_elsewhere, 1, "{c:?}");
    assert!(c.holders[0].starts_with("dead#b0@"), "{c:?}");
    assert!(c.soonest_end_ms > 5_000 && c.soonest_end_ms <= HEARTBEAT_TTL.as_millis() as u64, "{c:?}");
    let _slot = waiting.await.unwrap();
    let waited = t0.elapsed();
    assert!(waited >= HEARTBEAT_TTL - HEARTBEAT && waited <= HEARTBEAT_TTL + Duration::from_secs(3), "{waited:?}");
    assert_eq!(next.contention(), None, "nothing waits any more");
}

#[tokio::test(start_paused = true)]
async fn a_parked_slot_keeps_its_account_until_aws_says_its_operation_ended() {
    let ops = Arc::new(HeldOps::default());
    let instance = MemoryInstance::new();
    let first = instance.process().holder(&scope(), "run-a", Some(0), budget(2), ops.clone());
    let _beat = first.maintain();
    let slot = first.acquire(&account(1), Operation::Assign).await.unwrap();
    let request = ops.start(&account(1));
    // The batch ends with the operation still running (its account timed out): parked.
    slot.park(Some(request.clone()));
    first.settle().await;
    let second = instance.process().holder(&scope(), "run-b", Some(0), budget(2), ops.clone());
    let _keep = second.maintain();
    // Another account gets the other slot at once; the parked account waits for AWS.
    let _other = tokio::time::timeout(Duration::from_secs(1), second.acquire(&account(2), Operation::Assign)).await.expect("a free slot").unwrap();
    let same = tokio::spawn({
        let second = second.clone();
        async move { second.acquire(&account(1), Operation::Assign).await.unwrap() }
    });
    sleep(Duration::from_secs(60)).await;
    assert!(!same.is_finished(), "the account was taken while its operation ran");
    assert!(ops.described.lock().unwrap().iter().all(|id| *id == request), "asked about by its request id");
    let asked = ops.described.lock().unwrap().len();
    assert!((2..=8).contains(&asked), "{asked} describes in 60 s: checks back off");
    ops.end(&request);
    tokio::time::timeout(Duration::from_secs(20), same).await.expect("taken once it ended").unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_retried_worker_takes_over_its_dead_predecessors_slots_and_never_a_live_twins() {
    let ops = Arc::new(HeldOps::default());
    let instance = MemoryInstance::new();
    let dead = instance.process().holder(&scope(), "run-x", Some(3), budget(2), ops.clone());
    let beat = dead.maintain();
    let (one, two) = (dead.acquire(&account(1), Operation::Assign).await.unwrap(), dead.acquire(&account(2), Operation::Assign).await.unwrap());
    let running = ops.start(&account(1)); // account 2's never started
    dead.die();
    drop((one, two, beat));

    // A twin of batch 3 (Step Functions retried the worker while this one still runs) holds
    // both slots of a second instance: the retried worker of that one gets nothing.
    let twins = MemoryInstance::new();
    let live = twins.process().holder(&scope(), "run-x", Some(3), budget(2), ops.clone());
    let _live_beat = live.maintain();
    let _held = (live.acquire(&account(5), Operation::Assign).await.unwrap(), live.acquire(&account(6), Operation::Assign).await.unwrap());
    let twin = twins.process().holder(&scope(), "run-x", Some(3), budget(2), ops.clone());
    let _twin_beat = twin.maintain();
    assert_ne!(live.holder(), twin.holder(), "each incarnation is its own holder");
    assert!(tokio::time::timeout(HEARTBEAT_TTL * 3, twin.acquire(&account(7), Operation::Assign)).await.is_err(), "a twin took a live holder's slot");

    // The retried worker of the dead one takes its slots once its heartbeat expired: account
    // 2's at once, account 1's once AWS says its operation ended.
    let again = instance.process().holder(&scope(), "run-x", Some(3), budget(2), ops.clone());
    let _again_beat = again.maintain();
    let t0 = Instant::now();
    let _next = again.acquire(&account(3), Operation::Assign).await.unwrap();
    assert!(t0.elapsed() <= HEARTBEAT_TTL + Duration::from_secs(2), "waited {:?}", t0.elapsed());
    let resumed = tokio::spawn({
        let again = again.clone();
        async move { again.acquire(&account(1), Operation::Assign).await.unwrap() }
    });
    sleep(Duration::from_secs(10)).await;
    assert!(!resumed.is_finished(), "account 1 was taken while its operation ran");
    ops.end(&running);
    tokio::time::timeout(Duration::from_secs(20), resumed).await.expect("resumed once it ended").unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_holder_cut_off_from_the_ledger_starts_nothing_and_claims_again_before_it_does() {
    let ops = Arc::new(HeldOps::default());
    let instance = MemoryInstance::new();
    let holder = instance.process().holder(&scope(), "run-c", Some(0), budget(2), ops.clone());
    let beat = holder.maintain();
    let slot = holder.acquire(&account(1), Operation::Assign).await.unwrap();
    assert!(slot.may_start().await);
    // Its heartbeat stops (the task is gone, as if every write failed): after FENCE_AFTER it
    // may not start the operation any more.
    drop(beat);
    sleep(FENCE_AFTER + Duration::from_secs(1)).await;
    assert!(!slot.may_start().await, "started an operation while cut off from the ledger");
    let fence = |view: &sso_fanout_core::store::ledger::LedgerView| view.slots.iter().find(|s| s.holder.is_some()).map(|s| s.fence);
    let before = fence(&instance.ledger.view(&scope()).await.unwrap());
    // Back in touch: the slot is claimed again under a new fence before anything starts.
    let _beat = holder.maintain();
    sleep(Duration::from_millis(100)).await;
    assert!(slot.may_start().await);
    let after = fence(&instance.ledger.view(&scope()).await.unwrap());
    assert!(after > before, "claimed again: fence {before:?} -> {after:?}");
}

#[tokio::test(start_paused = true)]
async fn holders_pacing_together_keep_any_one_second_window_within_the_rate() {
    let instance = MemoryInstance::new();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for h in 0..3 {
        let holder = instance.process().holder(&scope(), &format!("h{h}"), Some(0), budget(15), Arc::new(HeldOps::default()));
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
        let holder = instance.process().holder(&scope(), name, Some(0), budget(4), Arc::new(HeldOps::default()));
        let live = live.clone();
        async move {
            let _keep = holder.maintain();
            let t0 = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..40 {
                let (holder, live) = (holder.clone(), live.clone());
                tasks.spawn(async move {
                    let _slot = holder.acquire(&account(offset + i), Operation::Assign).await.unwrap();
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

#[tokio::test(start_paused = true)]
async fn a_holder_that_cannot_tell_the_ledgers_clock_well_enough_refuses_to_share_the_quota() {
    let instance = MemoryInstance::new();
    let holder = instance.skewed_process(0, 2_000_000).holder(&scope(), "run-u", Some(0), budget(2), Arc::new(HeldOps::default()));
    let refused = holder.acquire(&account(1), Operation::Assign).await.err().expect("refused");
    assert!(refused.to_string().contains("clock") && refused.to_string().contains("NTP"), "{refused}");
    assert!(instance.ledger.view(&scope()).await.unwrap().slots.is_empty(), "nothing was claimed");
}
