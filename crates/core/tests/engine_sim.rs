//! The engine and pipeline on the simulated Identity Center, on tokio's paused clock: quotas,
//! faults, timeouts, re-runs. The simulator counts every request that breaks a quota; tests
//! assert there are none.

use sso_fanout_core::engine::{run_batch, BatchContext, EngineOptions};
use sso_fanout_core::model::{Operation, Outcome};
use sso_fanout_core::pipeline::{execute, plan_run, Services};
use sso_fanout_core::plan::{Plan, QuotaShare};
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::ports::AssignmentOps;
use sso_fanout_core::report::{AccountOutcome, RunOutcome, RunSummary};
use sso_fanout_core::request::{RunRequest, Tuning};
use std::num::NonZeroU32;
use sso_fanout_sim::{SimCloud, SimConfig};
use sso_fanout_core::store::{LatencyHistory, MemoryStore, RunLog};
use std::sync::Arc;
use tokio::time::{sleep, Duration};

struct Env {
    sim: Arc<SimCloud>,
    store: Arc<MemoryStore>,
    services: Services,
}

fn env(config: SimConfig) -> Env {
    let sim = Arc::new(SimCloud::new(config));
    let store = Arc::new(MemoryStore::new());
    let services = Services::new(sim.clone(), sim.clone(), store.clone());
    Env { sim, store, services }
}

fn request(op: Operation, filter: &str) -> RunRequest {
    RunRequest::from_value(serde_json::json!({
        "operation": op,
        "permissionSet": "AdministratorAccess",
        "principal": {"type": "GROUP", "name": "PlatformAdmins"},
        "targets": {"filter": filter},
    }))
    .unwrap()
}

async fn run(env: &Env, request: &RunRequest) -> (Plan, RunSummary) {
    let plan = plan_run(&env.services, request, &PlannerConfig::default()).await.expect("plan");
    let options = EngineOptions { jitter_seed: 42, ..Default::default() };
    let summary = execute(&env.services, &plan, options, None).await.expect("execute");
    (plan, summary)
}

/// Assignment operations the simulated Identity Center accepted so far.
fn accepted(sim: &SimCloud) -> usize {
    sim.operations().len() + sim.outstanding()
}

fn writes(sim: &SimCloud) -> u64 {
    let c = sim.counters();
    c.calls.get("CreateAccountAssignment").copied().unwrap_or(0) + c.calls.get("DeleteAccountAssignment").copied().unwrap_or(0)
}

/// Every planned change, as the simulator sees it now, matches the results' claims.
fn assert_truthful(env: &Env, plan: &Plan, results: &[sso_fanout_core::model::AccountResult]) {
    for r in results {
        let has = env.sim.has_assignment(&r.account_id, &plan.permission_set.arn, &plan.principal.id);
        match (plan.operation, r.outcome) {
            (Operation::Assign, Outcome::Succeeded) => assert!(has, "{} reported succeeded but is not assigned", r.account_id),
            (Operation::Revoke, Outcome::Succeeded) => assert!(!has, "{} reported revoked but is still assigned", r.account_id),
            (Operation::Assign, Outcome::Failed) => assert!(!has, "{} reported failed but is assigned", r.account_id),
            _ => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn clean_run_verifies_every_assignment_within_the_quotas() {
    let env = env(SimConfig::new(200, 3));
    let (plan, summary) = run(&env, &request(Operation::Assign, "*")).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:?}");
    assert_eq!(summary.counts.succeeded, plan.changes());
    assert_eq!(summary.counts.skipped, plan.skipped.len());
    assert!(plan.skipped.len() > 5, "the generated org has existing assignments to skip");
    let results = env.store.results(&plan.run_id).await.unwrap();
    assert_eq!(results.len(), plan.changes(), "one result per change; skips are in the plan");
    assert_truthful(&env, &plan, &results);
    // Every result waited for SUCCEEDED: its provisioning time is the simulator's latency.
    assert!(results.iter().all(|r| r.provisioning_ms.unwrap() >= 200));
    let c = env.sim.counters();
    assert_eq!(c.violations(), 0, "{c:?}");
    // Completion came from the batched listing, plus one describe per finished operation.
    assert!(c.calls["ListAccountAssignmentCreationStatus"] > 0);
    assert_eq!(c.calls["DescribeAccountAssignmentCreationStatus"], plan.changes() as u64);
    assert_eq!(env.store.latency_samples(&plan.scope, 1000).await.unwrap().len(), plan.changes());
}

#[tokio::test(start_paused = true)]
async fn rerun_with_nothing_to_do_makes_no_writes_and_few_calls() {
    let env = env(SimConfig::new(300, 5));
    let req = request(Operation::Assign, "prod-*");
    run(&env, &req).await;
    let (calls, w) = (env.sim.counters().sso_admin_calls(), writes(&env.sim));
    let (plan, summary) = run(&env, &req).await;
    assert_eq!(plan.changes(), 0);
    assert_eq!(summary.counts.skipped, summary.counts.total);
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert_eq!(writes(&env.sim), w, "a re-run must not write");
    let rerun_calls = env.sim.counters().sso_admin_calls() - calls;
    assert!(rerun_calls <= 10, "re-run used {rerun_calls} sso-admin calls");
}

#[tokio::test(start_paused = true)]
async fn revoke_removes_what_assign_created() {
    let env = env(SimConfig::new(60, 8));
    let (assigned, _) = run(&env, &request(Operation::Assign, "dev-*")).await;
    let (plan, summary) = run(&env, &request(Operation::Revoke, "dev-*")).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert_eq!(plan.changes(), assigned.target_count());
    let results = env.store.results(&plan.run_id).await.unwrap();
    assert_truthful(&env, &plan, &results);
    assert_eq!(env.sim.counters().violations(), 0);
}

#[tokio::test(start_paused = true)]
async fn throttle_storms_slow_the_run_but_everything_lands() {
    let mut config = SimConfig::new(120, 11);
    config.faults.throttle_storms = vec![(2.0, 6.0), (20.0, 4.0)];
    let env = env(config);
    let (plan, summary) = run(&env, &request(Operation::Assign, "*")).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{:?}", summary.failures);
    let c = env.sim.counters();
    assert!(c.storm_throttles > 0, "the storm must have hit");
    assert_eq!(c.violations(), 0, "{c:?}");
    assert_truthful(&env, &plan, &env.store.results(&plan.run_id).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried() {
    let mut config = SimConfig::new(100, 13);
    config.faults.transient_rate = 0.15;
    let env = env(config);
    let (plan, summary) = run(&env, &request(Operation::Assign, "*")).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{:?}", summary.failures);
    assert!(env.sim.counters().injected_5xx > 5);
    let results = env.store.results(&plan.run_id).await.unwrap();
    assert!(results.iter().any(|r| r.attempts > 1), "some creates needed a retry");
    assert_truthful(&env, &plan, &results);
}

#[tokio::test(start_paused = true)]
async fn late_failures_are_reported_with_aws_reason_and_rerun_touches_only_them() {
    let mut config = SimConfig::new(150, 17);
    config.faults.late_failure_rate = 0.1;
    let env = env(config);
    let req = request(Operation::Assign, "*");
    let (plan, summary) = run(&env, &req).await;
    assert_eq!(summary.outcome, RunOutcome::Incomplete);
    assert!(summary.counts.failed > 3, "{:?}", summary.counts);
    assert_eq!(summary.exit_code(), 2);
    for f in &summary.failures {
        assert_eq!(f.outcome, AccountOutcome::Failed);
        assert!(f.reason.contains("IAM role quota"), "{}", f.reason);
        assert!(f.request_id.is_some());
    }
    assert_truthful(&env, &plan, &env.store.results(&plan.run_id).await.unwrap());
    // The re-run converges: it retries exactly the failed accounts, nothing else.
    let before = writes(&env.sim);
    let (again, _) = run(&env, &req).await;
    assert_eq!(again.changes(), summary.counts.failed);
    assert_eq!(writes(&env.sim) - before, summary.counts.failed as u64);
}

#[tokio::test(start_paused = true)]
async fn slow_operations_time_out_keep_their_slot_and_converge_later() {
    let mut config = SimConfig::new(80, 19);
    config.faults.stuck_rate = 0.15;
    let env = env(config);
    let mut req = request(Operation::Assign, "*");
    req.tuning = Some(Tuning { account_timeout_seconds: NonZeroU32::new(20), ..Default::default() });
    let (plan, summary) = run(&env, &req).await;
    assert!(summary.counts.timed_out > 0, "{:?}", summary.counts);
    for f in summary.failures.iter().filter(|f| f.outcome == AccountOutcome::TimedOut) {
        assert!(f.request_id.is_some(), "a timed-out account names its request: {f:?}");
        assert!(f.reason.contains("IN_PROGRESS"), "{}", f.reason);
    }
    // A timed-out operation still counts against AWS's outstanding quota: the engine kept its
    // slot, so nothing was ever refused for "too many requests processing".
    assert_eq!(env.sim.counters().violations(), 0);
    // Once AWS finishes them, a re-run finds them done.
    sleep(Duration::from_secs(600)).await;
    let (again, second) = run(&env, &req).await;
    assert_eq!(second.outcome, RunOutcome::Succeeded, "{:?}", second.failures);
    assert_eq!(again.changes(), 0, "the slow ones landed meanwhile");
    let _ = plan;
}

#[tokio::test(start_paused = true)]
async fn conflicting_operation_from_another_tool_is_retried() {
    let env = env(SimConfig::new(20, 23));
    let req = request(Operation::Assign, "*");
    let plan = plan_run(&env.services, &req, &PlannerConfig::default()).await.unwrap();
    // Another tool starts an operation on the first target just before us.
    let victim_item = plan.batches[0].items[0].clone();
    let victim = victim_item.account_id.clone();
    let mut other = plan.assignment_key(&victim_item);
    other.permission_set_arn = env.sim.resolve_permission_set_quiet("ReadOnlyAccess").unwrap();
    env.sim.create_assignment(&other).await.unwrap();
    let summary = execute(&env.services, &plan, EngineOptions { jitter_seed: 1, ..Default::default() }, None).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{:?}", summary.failures);
    let results = env.store.results(&plan.run_id).await.unwrap();
    let r = results.iter().find(|r| r.account_id == victim).unwrap();
    assert!(r.attempts > 1, "the conflict was retried: {r:?}");
    assert!(env.sim.counters().conflict_violations >= 1);
}

#[tokio::test(start_paused = true)]
async fn describes_each_operation_where_status_listing_is_unsupported() {
    let mut config = SimConfig::new(60, 29);
    config.supports_status_listing = false;
    let env = env(config);
    let (plan, summary) = run(&env, &request(Operation::Assign, "*")).await;
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    let c = env.sim.counters();
    assert!(!c.calls.contains_key("ListAccountAssignmentCreationStatus"));
    assert!(c.calls["DescribeAccountAssignmentCreationStatus"] >= plan.changes() as u64);
    assert_eq!(c.violations(), 0, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn batches_sharing_the_quota_never_exceed_it() {
    // Two workers at once, each with half the quota, as a Map with concurrency 2 would run them.
    let env = env(SimConfig::clean(200, 31));
    let mut req = request(Operation::Assign, "*");
    req.tuning = Some(Tuning { batch_size: NonZeroU32::new(100), ..Default::default() });
    let plan = plan_run(&env.services, &req, &PlannerConfig::default()).await.unwrap();
    assert_eq!(plan.batches.len(), 2);
    let ctx = BatchContext::from_plan(&plan);
    let mut handles = Vec::new();
    for batch in plan.batches.clone() {
        let mut batch = batch;
        batch.share = QuotaShare { in_flight: 5, requests_per_second: 9.0 };
        let (ops, store, ctx) = (env.sim.clone() as Arc<dyn AssignmentOps>, env.store.clone(), ctx.clone());
        handles.push(tokio::spawn(async move {
            run_batch(ops, store.clone(), store.as_ref(), &ctx, &batch, &[], EngineOptions::default(), None).await
        }));
    }
    for h in handles {
        let report = h.await.unwrap().unwrap();
        assert_eq!(report.count(Outcome::Succeeded), 100);
    }
    assert_eq!(env.sim.counters().violations(), 0, "{:?}", env.sim.counters());
}

#[tokio::test(start_paused = true)]
async fn worker_time_budget_leaves_unstarted_accounts_not_started_for_a_rerun() {
    let env = env(SimConfig::clean(300, 37));
    let req = request(Operation::Assign, "*");
    let mut config = PlannerConfig { worker_time_budget_s: 60, ..PlannerConfig::default() };
    config.default_account_timeout_s = 40;
    let mut plan = plan_run(&env.services, &req, &config).await.unwrap();
    // Force one oversized batch, as if latencies were far above the estimate.
    let all: Vec<_> = plan.batches.iter().flat_map(|b| b.items.clone()).collect();
    plan.batches.truncate(1);
    plan.batches[0].items = all;
    let report = run_batch(
        env.sim.clone(),
        env.store.clone(),
        env.store.as_ref(),
        &BatchContext::from_plan(&plan),
        &plan.batches[0],
        &[],
        EngineOptions::default(),
        None,
    )
    .await
    .unwrap();
    let not_started = report.count(Outcome::NotStarted);
    assert!(not_started > 100, "{not_started}");
    assert!(report.results.iter().filter(|r| r.outcome == Outcome::NotStarted).all(|r| r.request_id.is_none() && r.attempts == 0));
    assert!(report.count(Outcome::Succeeded) > 50);
    assert_eq!(report.results.len(), 300, "every account has a definite result");
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_run_records_what_it_did_and_a_rerun_resumes() {
    let env = env(SimConfig::clean(150, 41));
    let req = request(Operation::Assign, "*");
    let plan = plan_run(&env.services, &req, &PlannerConfig::default()).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let options = EngineOptions { jitter_seed: 7, stop: stop.clone(), ..Default::default() };
    let interrupt = tokio::spawn(async move {
        sleep(Duration::from_secs(20)).await;
        stop.cancel();
    });
    let summary = execute(&env.services, &plan, options, None).await.unwrap();
    interrupt.await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Interrupted);
    assert_eq!(summary.exit_code(), 130);
    let done = summary.counts.succeeded;
    assert!(done > 10 && done < plan.changes() - 50, "{:?}", summary.counts);
    // Operations AWS had accepted got the grace period; none is left unrecorded. Accounts never
    // sent are "not started", never "timed out": a timed-out account had an operation at AWS.
    let c = &summary.counts;
    assert_eq!(c.total, c.succeeded + c.timed_out + c.not_started + c.skipped, "{c:?}");
    assert!(c.not_started > 50, "{c:?}");
    for r in summary.results.iter().filter(|r| r.outcome == AccountOutcome::TimedOut) {
        assert!(r.request_id.is_some(), "a timed-out account names its request: {r:?}");
    }
    let stored = env.store.get_run(&plan.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, sso_fanout_core::store::RunStatus::Interrupted);
    assert_truthful(&env, &plan, &env.store.results(&plan.run_id).await.unwrap());

    // The same request again does exactly the rest.
    sleep(Duration::from_secs(120)).await; // anything still provisioning at AWS lands
    let before = writes(&env.sim);
    let (again, second) = run(&env, &req).await;
    assert_eq!(second.outcome, RunOutcome::Succeeded, "{:?}", second.failures);
    assert_eq!(again.skipped.len(), plan.target_count() - again.changes());
    assert!(again.changes() <= plan.changes() - done, "{} > {}", again.changes(), plan.changes() - done);
    assert_eq!(writes(&env.sim) - before, again.changes() as u64);
    assert_eq!(env.sim.counters().violations(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_worker_killed_mid_batch_and_retried_sends_only_the_missing_writes() {
    let env = env(SimConfig::clean(120, 43));
    let plan = plan_run(&env.services, &request(Operation::Assign, "*"), &PlannerConfig::default()).await.unwrap();
    assert_eq!(plan.batches.len(), 1);
    let n = plan.changes();
    // The worker dies (Lambda timeout, crash) 25 s into its batch.
    let (services, run_id) = (env.services.clone(), plan.run_id.clone());
    let worker = tokio::spawn(async move {
        sso_fanout_core::pipeline::run_stored_batch(&services, &run_id, 0, EngineOptions { jitter_seed: 1, ..Default::default() }, None).await
    });
    sleep(Duration::from_secs(25)).await;
    worker.abort();
    let _ = worker.await;
    let first_writes = writes(&env.sim);
    let accepted_before = accepted(&env.sim);
    let stored = env.store.results(&plan.run_id).await.unwrap();
    let k = stored.len();
    let finals = stored.iter().filter(|r| r.outcome.is_final()).count();
    let pending = stored.iter().filter(|r| !r.outcome.is_final() && r.request_id.is_some()).count();
    assert!(finals > 10 && pending > 0 && k < n, "k {k} (final {finals}, accepted {pending}) of {n}");
    assert!(first_writes as usize >= k, "every stored account had its write accepted");

    // The state machine retries the batch: final accounts are skipped, accepted ones are
    // checked by request id, only the rest is written.
    let report = sso_fanout_core::pipeline::run_stored_batch(&env.services, &plan.run_id, 0, EngineOptions { jitter_seed: 2, ..Default::default() }, None)
        .await
        .unwrap();
    // Operations AWS accepted in the second pass (a write refused with ConflictException, as
    // for an account whose first create was accepted but not yet recorded when the worker
    // died, is retried and counted once).
    let second_writes = accepted(&env.sim) - accepted_before;
    assert_eq!(second_writes, n - k, "a retried batch sends n - k writes, not n");
    assert!(writes(&env.sim) - first_writes < n as u64 - k as u64 + 5);
    assert_eq!(report.count(Outcome::Succeeded), n, "{:?}", report.results.iter().filter(|r| r.outcome != Outcome::Succeeded).collect::<Vec<_>>());
    let results = env.store.results(&plan.run_id).await.unwrap();
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|r| r.outcome == Outcome::Succeeded), "no duplicate or lost result");
    assert_truthful(&env, &plan, &results);
    assert_eq!(env.sim.counters().violations(), 0, "{:?}", env.sim.counters());
}
