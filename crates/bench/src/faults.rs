//! The shared quota under faults (`bench --scenario faults`; `tests/faults.rs` runs the same
//! scenarios small and asserts on them): runs that end with operations in flight, processes
//! killed (also between AWS accepting a create and anything being recorded), create answers
//! lost, clocks skewed, heartbeats failing longer than their TTL, twin workers, ledger answers
//! lost after being applied, a ledger outage. The simulator audits every sso-admin request;
//! each report carries what it counted, the runs' summaries, whether every slot could be had
//! again afterwards, and what the ledger wrote.

use crate::{assigned, paused_runtime, request_for, targets, BenchOptions, BenchRow};
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::error::Result;
use sso_fanout_core::model::{Operation, Outcome};
use sso_fanout_core::pipeline::{execute, plan_run, run_stored_batch, Services};
use sso_fanout_core::plan::Plan;
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::ports::{AssignmentOps, Directory, OrgDirectory};
use sso_fanout_core::quota::{Ledger, MemoryInstance, HEARTBEAT_TTL};
use sso_fanout_core::report::RunSummary;
use sso_fanout_core::request::Tuning;
use sso_fanout_core::store::{AccountCache, MemoryStore};
use sso_fanout_core::tiers::LatencyModel;
use sso_fanout_sim::faulty::{FaultyLedger, FaultyOps};
use sso_fanout_sim::{SimCloud, SimConfig, SimCounters};
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::time::{sleep, Duration, Instant};

pub const PERMISSION_SETS: [&str; 3] = ["AdministratorAccess", "ReadOnlyAccess", "PowerUserAccess"];

/// The faults, in the order the bench runs them.
pub const FAULTS: [Fault; 10] = [
    Fault::InFlightAtEnd,
    Fault::Killed,
    Fault::KilledAfterAccept,
    Fault::LostCreateAnswers,
    Fault::SkewedClocks,
    Fault::ClockFarAhead,
    Fault::HeartbeatOutage,
    Fault::Twins,
    Fault::LostLedgerAnswers,
    Fault::LedgerOutage,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Run A's accounts time out with their operations still running (provisioning slower than
    /// its account timeout); run B starts at once on the same accounts.
    InFlightAtEnd,
    /// Run A is killed a third of the way through, every slot taken; run B starts at once.
    Killed,
    /// A worker is killed in the instant after AWS accepted a create (nothing recorded); the run
    /// is re-driven at once.
    KilledAfterAccept,
    /// Every 7th create's answer is lost after AWS accepted it.
    LostCreateAnswers,
    /// Three runs together, two with clocks 200 ms off either way (declared).
    SkewedClocks,
    /// A run whose clock is an hour ahead (not declared: a broken clock) is killed early; a
    /// normal run goes on.
    ClockFarAhead,
    /// Run A's heartbeat writes fail for 40 s while run B runs beside it.
    HeartbeatOutage,
    /// Step Functions runs one batch twice at once (a retried worker whose first attempt lives).
    Twins,
    /// Every 9th claim, release or park is applied and its answer lost.
    LostLedgerAnswers,
    /// The ledger is unreachable for 24 s while three runs go on.
    LedgerOutage,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::InFlightAtEnd => "in-flight-at-end",
            Fault::Killed => "killed",
            Fault::KilledAfterAccept => "killed-after-accept",
            Fault::LostCreateAnswers => "lost-create-answers",
            Fault::SkewedClocks => "skewed-clocks",
            Fault::ClockFarAhead => "clock-far-ahead",
            Fault::HeartbeatOutage => "heartbeat-outage",
            Fault::Twins => "twins",
            Fault::LostLedgerAnswers => "lost-ledger-answers",
            Fault::LedgerOutage => "ledger-outage",
        }
    }
}

/// What one fault scenario did.
#[derive(Debug, Clone)]
pub struct FaultReport {
    pub fault: Fault,
    pub accounts: usize,
    /// Every sso-admin request the simulated instance received, audited.
    pub counters: SimCounters,
    /// The runs that reported (a killed one does not).
    pub summaries: Vec<RunSummary>,
    /// From the first run's start until the simulator's last operation ended.
    pub makespan_s: f64,
    /// Slots a new holder could not get once every run had ended (each lost for good).
    pub lost_slots: u32,
    /// Assignment changes the reporting runs planned.
    pub changes: usize,
    /// Reported succeeded but not assigned.
    pub false_successes: usize,
    pub ledger_writes: u64,
    pub ledger_write_units: u64,
    /// Scenario facts the tests check: answers lost, accounts in flight when run B started...
    pub facts: Vec<(&'static str, u64)>,
}

impl FaultReport {
    pub fn fact(&self, name: &str) -> u64 {
        self.facts.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v)
    }
}

/// The instance every process of a scenario shares.
struct Instance {
    sim: Arc<SimCloud>,
    quota: MemoryInstance,
}

/// One sso-fanout process: its own store (the account list cached, as the simulated
/// Organizations API is slow), its access to the ledger, the operations port it calls.
struct Process {
    services: Services,
    store: Arc<MemoryStore>,
}

async fn process(inst: &Instance, ledger: Ledger, ops: Option<Arc<dyn AssignmentOps>>) -> Result<Process> {
    let store = Arc::new(MemoryStore::new());
    let (_, scope) = sso_fanout_core::planner::scope(inst.sim.as_ref(), inst.sim.as_ref()).await?;
    let mut snapshot = inst.sim.org().clone();
    snapshot.fetched_at = sso_fanout_core::clock::unix_now();
    store.put_org(&scope, &snapshot).await?;
    let org: Arc<dyn OrgDirectory> = inst.sim.clone();
    let directory: Arc<dyn Directory> = inst.sim.clone();
    let ops = ops.unwrap_or_else(|| inst.sim.clone());
    Ok(Process { services: Services { org, directory, ops, store: store.clone(), quota: Some(ledger) }, store })
}

async fn plan(p: &Process, permission_set: &str, account_timeout_s: Option<u32>) -> Result<Plan> {
    let tuning = account_timeout_s.map(|t| Tuning { account_timeout_seconds: NonZeroU32::new(t), ..Default::default() });
    plan_run(&p.services, &request_for(permission_set, tuning)?, &PlannerConfig::in_process()).await
}

async fn run(p: &Process, plan: &Plan, seed: u64) -> Result<RunSummary> {
    execute(&p.services, plan, EngineOptions { jitter_seed: seed, ..Default::default() }, None).await
}

fn faulty(inst: &Instance, configure: impl FnOnce(&mut FaultyLedger)) -> Ledger {
    let mut ledger = FaultyLedger::new(inst.quota.ledger.clone());
    configure(&mut ledger);
    Ledger::new(Arc::new(ledger), inst.quota.clock.clone())
}

/// Runs `plan` as a worker killed (its holder dead, its task gone) `after` in.
async fn killed_after(p: &Process, plan: &Plan, after: Duration) {
    let quota = p.services.quota.as_ref().expect("a ledger").holder(&plan.scope, &plan.run_id, None, plan.quota.budget, p.services.ops.clone());
    let options = EngineOptions { jitter_seed: 3, quota: Some(quota.clone()), ..Default::default() };
    let worker = {
        let (services, plan) = (p.services.clone(), plan.clone());
        tokio::spawn(async move { execute(&services, &plan, options, None).await })
    };
    sleep(after).await;
    quota.die();
    worker.abort();
    let _ = worker.await;
}

/// Slots a new holder cannot get, for 15 accounts nobody used, within a heartbeat's TTL and a
/// minute of checks on what was given up: each one is lost for good.
async fn lost_slots(inst: &Instance) -> u32 {
    let holder = inst.quota.process().holder(&inst.sim.scope(), "run-audit", Some(0), Default::default(), inst.sim.clone());
    let _beat = holder.maintain();
    let mut slots = Vec::new();
    for i in 0..15u64 {
        let account = format!("{:012}", 900_000_000_000u64 + i).parse().expect("account id");
        match tokio::time::timeout(HEARTBEAT_TTL + Duration::from_secs(60), holder.acquire(&account, Operation::Assign)).await {
            Ok(Ok(slot)) => slots.push(slot),
            _ => break,
        }
    }
    15 - slots.len() as u32
}

/// Runs one fault scenario on `accounts` simulated accounts.
pub async fn scenario(fault: Fault, accounts: usize, seed: u64) -> Result<FaultReport> {
    let latency = match fault {
        Fault::InFlightAtEnd => Some((40.0, 70.0)),
        Fault::KilledAfterAccept => Some((20.0, 30.0)),
        // The request rate binds: where clock offsets and outages would show.
        Fault::SkewedClocks | Fault::LedgerOutage => Some((1.0, 5.0)),
        _ => None,
    };
    let mut config = SimConfig::clean(accounts, seed);
    if let Some((median_s, p99_s)) = latency {
        config.latency = LatencyModel { median_s, p99_s, samples: 0 };
    }
    let inst = Instance { sim: Arc::new(SimCloud::new(config)), quota: MemoryInstance::new() };
    let (t0, t0_sim) = (Instant::now(), inst.sim.elapsed_s());
    let mut summaries = Vec::new();
    let mut plans = Vec::new();
    let mut facts = Vec::new();
    match fault {
        Fault::InFlightAtEnd => {
            let a = process(&inst, inst.quota.process(), None).await?;
            let plan_a = plan(&a, PERMISSION_SETS[0], Some(20)).await?;
            summaries.push(run(&a, &plan_a, seed).await?);
            facts.push(("in_flight_when_b_started", inst.sim.outstanding() as u64));
            let b = process(&inst, inst.quota.process(), None).await?;
            let plan_b = plan(&b, PERMISSION_SETS[1], None).await?;
            summaries.push(run(&b, &plan_b, seed + 1).await?);
            plans.extend([plan_a, plan_b]);
        }
        Fault::Killed => {
            let a = process(&inst, inst.quota.process(), None).await?;
            let plan_a = plan(&a, PERMISSION_SETS[0], None).await?;
            let (estimate, _) = sso_fanout_core::planner::estimate_seconds(&plan_a.batches, &plan_a.estimate.latency);
            killed_after(&a, &plan_a, Duration::from_secs_f64(estimate / 3.0)).await;
            facts.push(("in_flight_when_killed", inst.sim.outstanding() as u64));
            let b = process(&inst, inst.quota.process(), None).await?;
            let plan_b = plan(&b, PERMISSION_SETS[1], None).await?;
            summaries.push(run(&b, &plan_b, seed + 1).await?);
            plans.push(plan_b);
        }
        Fault::KilledAfterAccept => {
            let ops = Arc::new(FaultyOps::new(inst.sim.clone(), 0));
            let a = process(&inst, inst.quota.process(), Some(ops.clone())).await?;
            let plan_a = plan(&a, PERMISSION_SETS[0], None).await?;
            let quota = a.services.quota.as_ref().expect("a ledger").holder(&plan_a.scope, &plan_a.run_id, None, plan_a.quota.budget, a.services.ops.clone());
            *ops.kill_after_accept.lock().expect("ops") = Some(quota.clone());
            let worker = {
                let (services, plan, options) = (a.services.clone(), plan_a.clone(), EngineOptions { jitter_seed: seed, quota: Some(quota), ..Default::default() });
                tokio::spawn(async move { execute(&services, &plan, options, None).await })
            };
            while ops.accepted_then_killed.lock().expect("ops").is_empty() {
                sleep(Duration::from_millis(50)).await;
            }
            worker.abort();
            let _ = worker.await;
            facts.push(("accepted_then_killed", 1));
            // Re-driven: a fresh process over the same store and plan.
            let again = Process { services: Services { ops: inst.sim.clone(), quota: Some(inst.quota.process()), ..a.services.clone() }, store: a.store.clone() };
            summaries.push(run(&again, &plan_a, seed + 1).await?);
            plans.push(plan_a);
        }
        Fault::LostCreateAnswers => {
            let ops = Arc::new(FaultyOps::new(inst.sim.clone(), 7));
            let p = process(&inst, inst.quota.process(), Some(ops.clone())).await?;
            let plan = plan(&p, PERMISSION_SETS[0], None).await?;
            summaries.push(run(&p, &plan, seed).await?);
            facts.push(("answers_lost", ops.lost.lock().expect("ops").len() as u64));
            plans.push(plan);
        }
        Fault::SkewedClocks => {
            let ledgers = [inst.quota.skewed_process(200_000, 200_000), inst.quota.process(), inst.quota.skewed_process(-200_000, 200_000)];
            let mut runs = Vec::new();
            for (i, ledger) in ledgers.into_iter().enumerate() {
                let p = process(&inst, ledger, None).await?;
                let plan = plan(&p, PERMISSION_SETS[i], None).await?;
                runs.push((p, plan));
            }
            let (a, b, c) = tokio::join!(run(&runs[0].0, &runs[0].1, seed), run(&runs[1].0, &runs[1].1, seed + 1), run(&runs[2].0, &runs[2].1, seed + 2));
            summaries.extend([a?, b?, c?]);
            plans.extend(runs.into_iter().map(|(_, plan)| plan));
        }
        Fault::ClockFarAhead => {
            let ahead = process(&inst, inst.quota.skewed_process(3_600_000_000, 0), None).await?;
            let plan_ahead = plan(&ahead, PERMISSION_SETS[0], None).await?;
            killed_after(&ahead, &plan_ahead, Duration::from_secs(6)).await;
            let normal = process(&inst, inst.quota.process(), None).await?;
            let plan_normal = plan(&normal, PERMISSION_SETS[1], None).await?;
            let started = Instant::now();
            summaries.push(run(&normal, &plan_normal, seed + 1).await?);
            facts.push(("normal_run_s", started.elapsed().as_secs()));
            plans.push(plan_normal);
        }
        Fault::HeartbeatOutage => {
            let down = Some((t0 + Duration::from_secs(5), t0 + Duration::from_secs(45)));
            let a = process(&inst, faulty(&inst, |l| l.heartbeat_down = down), None).await?;
            let b = process(&inst, inst.quota.process(), None).await?;
            let (plan_a, plan_b) = (plan(&a, PERMISSION_SETS[0], None).await?, plan(&b, PERMISSION_SETS[1], None).await?);
            let (sa, sb) = tokio::join!(run(&a, &plan_a, seed), run(&b, &plan_b, seed + 1));
            let (sa, sb) = (sa?, sb?);
            // Run A's creates AWS accepted while it could not write its heartbeat (past the
            // fence, before it got through again): none.
            let accepted_at: std::collections::BTreeMap<String, f64> = inst.sim.operations().into_iter().map(|o| (o.request_id, o.accepted_s - t0_sim)).collect();
            let fenced = (5.0 + sso_fanout_core::quota::FENCE_AFTER.as_secs_f64() + 1.0, 45.0);
            let started_while_cut_off = sa.results.iter().filter_map(|r| r.request_id.as_ref()).filter_map(|id| accepted_at.get(id)).filter(|t| **t > fenced.0 && **t < fenced.1).count();
            facts.push(("started_while_cut_off", started_while_cut_off as u64));
            facts.push(("a_started", sa.results.iter().filter(|r| r.request_id.is_some()).count() as u64));
            summaries.extend([sa, sb]);
            plans.extend([plan_a, plan_b]);
        }
        Fault::Twins => {
            let p = process(&inst, inst.quota.process(), None).await?;
            let plan = plan(&p, PERMISSION_SETS[0], None).await?;
            let twin = |s: u64| {
                let services = Services { quota: Some(inst.quota.process()), ..p.services.clone() };
                let run_id = plan.run_id.clone();
                async move { run_stored_batch(&services, &run_id, 0, EngineOptions { jitter_seed: s, ..Default::default() }, None).await }
            };
            let (one, two) = tokio::join!(twin(seed), twin(seed + 1));
            let (one, two) = (one?, two?);
            let done = |r: &sso_fanout_core::engine::BatchReport| r.results.iter().filter(|x| x.outcome == Outcome::Succeeded).count() as u64;
            facts.push(("twin_results", (one.results.len() + two.results.len()) as u64));
            facts.push(("twin_succeeded", done(&one) + done(&two)));
            summaries.push(sso_fanout_core::pipeline::report_run(p.store.as_ref(), &plan.run_id, vec![], None).await?);
            plans.push(plan);
        }
        Fault::LostLedgerAnswers => {
            let p = process(&inst, faulty(&inst, |l| l.lose_every = 9), None).await?;
            let plan = plan(&p, PERMISSION_SETS[0], None).await?;
            summaries.push(run(&p, &plan, seed).await?);
            plans.push(plan);
        }
        Fault::LedgerOutage => {
            let down = Some((t0 + Duration::from_secs(6), t0 + Duration::from_secs(30)));
            let mut runs = Vec::new();
            for ps in PERMISSION_SETS {
                let p = process(&inst, faulty(&inst, |l| l.down = down), None).await?;
                let plan = plan(&p, ps, None).await?;
                runs.push((p, plan));
            }
            let (a, b, c) = tokio::join!(run(&runs[0].0, &runs[0].1, seed), run(&runs[1].0, &runs[1].1, seed + 1), run(&runs[2].0, &runs[2].1, seed + 2));
            summaries.extend([a?, b?, c?]);
            plans.extend(runs.into_iter().map(|(_, plan)| plan));
        }
    }
    let makespan_s = inst.sim.all_done_s().max(t0_sim) - t0_sim;
    let counters = inst.sim.counters();
    let targets = targets(&inst.sim);
    let mut false_successes = 0;
    for (plan, summary) in plans.iter().zip(&summaries) {
        let truth = assigned(&inst.sim, &targets, &plan.permission_set.arn, &plan.principal.id);
        false_successes += summary.results.iter().filter(|r| r.outcome == sso_fanout_core::report::AccountOutcome::Succeeded && !truth.contains(&r.account_id)).count();
    }
    let one_permission_set = matches!(fault, Fault::KilledAfterAccept | Fault::LostCreateAnswers | Fault::Twins | Fault::LostLedgerAnswers);
    if one_permission_set {
        // One permission set: an account with more than one operation had one sent again.
        let ops = inst.sim.operations();
        let accounts: std::collections::BTreeSet<_> = ops.iter().map(|o| o.account_id.clone()).collect();
        facts.push(("sent_again", (ops.len() - accounts.len()) as u64));
    }
    let lost_slots = lost_slots(&inst).await;
    Ok(FaultReport {
        fault,
        accounts,
        counters,
        summaries,
        makespan_s,
        lost_slots,
        changes: plans.iter().map(Plan::changes).sum(),
        false_successes,
        ledger_writes: inst.quota.ledger.writes(),
        ledger_write_units: inst.quota.ledger.write_units(),
        facts,
    })
}

/// `bench --scenario faults`: every fault at `accounts`, one row each.
pub fn run_faults(accounts: usize, options: &BenchOptions) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for fault in FAULTS {
        let report = paused_runtime().block_on(scenario(fault, accounts, options.seed))?;
        rows.push(report_row(&report, options));
    }
    Ok(rows)
}

fn report_row(r: &FaultReport, options: &BenchOptions) -> BenchRow {
    let c = &r.counters;
    let failed: usize = r.summaries.iter().map(|s| s.counts.failed).sum();
    let changes = r.changes.max(1) as f64;
    BenchRow {
        scenario: "faults".into(),
        accounts: r.accounts,
        seed: options.seed,
        strategy: r.fault.name().into(),
        latency: options.latency,
        accepted_s: 0.0,
        makespan_s: r.makespan_s,
        reported_s: r.makespan_s,
        bound_s: 0.0,
        ratio: 0.0,
        greedy_s: 0.0,
        api_calls: c.sso_admin_calls(),
        throttled: c.throttled(),
        violations: c.violations(),
        failed,
        false_successes: r.false_successes,
        estimate_s: None,
        rerun_api_calls: None,
        rerun_writes: None,
        dynamo_writes_per_change: Some(r.ledger_writes as f64 / changes),
        changes: Some(r.changes),
        deletes: None,
        longest_chain: None,
        runs: Vec::new(),
        faults: Some(FaultCounters {
            outstanding_violations: c.outstanding_violations,
            conflict_violations: c.conflict_violations,
            rate_violations: c.window_violations,
            max_in_window: c.max_in_window,
            lost_slots: r.lost_slots,
            sent_again: r.facts.iter().any(|(n, _)| *n == "sent_again").then(|| r.fact("sent_again")),
            write_units_per_change: r.ledger_write_units as f64 / changes,
            not_started: r.summaries.iter().map(|s| s.counts.not_started).sum(),
            timed_out: r.summaries.iter().map(|s| s.counts.timed_out).sum(),
        }),
    }
}

/// The invariants' counters of a `faults` row (all 0 but the counts of accounts a fault
/// kept from finishing) and what the ledger cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultCounters {
    pub outstanding_violations: u64,
    pub conflict_violations: u64,
    pub rate_violations: u64,
    pub max_in_window: u64,
    pub lost_slots: u32,
    /// Where every run assigns one permission set: operations sent again in an account (after
    /// the first ended: twins both send; a worker killed before it recorded an accepted create
    /// leaves it to be sent again once it ended).
    pub sent_again: Option<u64>,
    pub write_units_per_change: f64,
    pub not_started: usize,
    pub timed_out: usize,
}
