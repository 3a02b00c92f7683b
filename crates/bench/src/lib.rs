//! Side-by-side benchmark on the simulated organization: sso-fanout against the seed's
//! "before" and tiered settings, modelled faithfully (chunks of C concurrent accounts, a fixed
//! delay between chunks, an existence check per account, retries at a fixed base, no status
//! polling), on the same organization, seed and per-account provisioning latencies.

pub mod faults;
pub mod reconcile;
pub use faults::run_faults;
pub use reconcile::run_reconcile;

use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::error::{FanoutError, Result};
use sso_fanout_core::ids::{AccountId, PermissionSetArn, PrincipalId};
use sso_fanout_core::model::{AssignmentKey, OpState, Operation, Outcome};
use sso_fanout_core::pipeline::{execute, plan_run, Services};
use sso_fanout_core::clock::unix_now;
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::ports::AssignmentOps;
use sso_fanout_core::request::{RunRequest, Tuning};
use sso_fanout_core::quota::MemoryInstance;
use sso_fanout_core::store::{AccountCache, MemoryLedger, MemoryStore, RunLog};
use sso_fanout_core::tiers::{greedy_makespan, makespan_bound, LatencyModel};
use sso_fanout_sim::{Faults, SimCloud, SimConfig};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// `single` (one run), `concurrent` (several runs on one instance).
    pub scenario: String,
    pub accounts: usize,
    pub seed: u64,
    pub strategy: String,
    /// The simulated provisioning latency: median and p99, seconds.
    pub latency: LatencyModel,
    /// Until every request was accepted by AWS.
    pub accepted_s: f64,
    /// Until every assignment actually finished, as the simulator knows it.
    pub makespan_s: f64,
    /// Until the tool returned and reported its result.
    pub reported_s: f64,
    /// The lower bound (docs/design.md) for this organization's latencies.
    pub bound_s: f64,
    pub ratio: f64,
    /// Ideal greedy list scheduling of the same latencies in the same order, with no overhead:
    /// what the best scheduler that cannot see latencies in advance achieves.
    pub greedy_s: f64,
    pub api_calls: u64,
    pub throttled: u64,
    /// Quota violations the tool caused (rate, outstanding operations, conflicts).
    pub violations: u64,
    pub failed: usize,
    /// Reported successful, but the assignment did not end SUCCEEDED.
    pub false_successes: usize,
    /// The planner's estimate, to compare with reported_s (sso-fanout only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate_s: Option<f64>,
    /// Re-running the same request right after: sso-admin calls and writes (sso-fanout only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun_api_calls: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun_writes: Option<u64>,
    /// Item writes to the quota ledger per assignment change, counted as the DynamoDB ledger
    /// makes them (strategies with the shared quota).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamo_writes_per_change: Option<f64>,
    /// `reconcile`: assignment changes (creates and deletes), deletes, and the most operations
    /// one account needed (they run one after another).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_chain: Option<usize>,
    /// `concurrent`: when each run started and reported, seconds from the first start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunTiming>,
    /// `faults`: the shared quota's invariants under the fault, and what the ledger cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<faults::FaultCounters>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunTiming {
    pub permission_set: String,
    pub started_s: f64,
    pub finished_s: f64,
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub seed: u64,
    pub faults: Faults,
    pub tuning: Option<Tuning>,
    /// The simulated provisioning latency (an assumption: nobody publishes it).
    pub latency: LatencyModel,
}

/// The seed's strategy settings.
#[derive(Debug, Clone)]
pub struct SeedSettings {
    pub name: &'static str,
    pub concurrency: usize,
    pub chunk: Option<usize>,
    pub chunk_delay: Duration,
    pub retries: u32,
    pub retry_base: Duration,
    pub account_timeout: Duration,
    /// Retries boto3 makes by itself before the tool sees an error: the seed's sso-admin client
    /// keeps botocore's legacy mode (throttling and 5xx retried up to 4 times, waiting
    /// rand(0,1) x 2^(k-1) s before the k-th; ConflictException not retried). Seen on the wire
    /// emulator: without them the model lost 18 of 29 accounts the real tool did not lose.
    pub sdk_retries: u32,
}

impl SeedSettings {
    /// "Before": 10 concurrent, chunks of 10, 0.1 s between chunks, 3 retries at 1.0 s, 300 s.
    pub fn before() -> SeedSettings {
        SeedSettings {
            name: "seed-before",
            concurrency: 10,
            chunk: Some(10),
            chunk_delay: Duration::from_millis(100),
            retries: 3,
            retry_base: Duration::from_secs(1),
            account_timeout: Duration::from_secs(300),
            sdk_retries: BOTO3_LEGACY_RETRIES,
        }
    }

    /// The seed's tier table for this organization size, 2 retries at 0.5 s, 60 s timeout.
    pub fn tiered(org_accounts: usize, op: Operation) -> SeedSettings {
        let tier = SEED_TIERS.iter().find(|t| t.max_accounts.is_none_or(|m| org_accounts <= m)).expect("the last tier has no limit");
        let (extra, delay_factor) = match op {
            Operation::Assign => (0, 1.0),
            Operation::Revoke => (SEED_REVOKE_EXTRA_CONCURRENCY, SEED_REVOKE_DELAY_FACTOR),
        };
        SeedSettings {
            name: "seed-tiered",
            concurrency: tier.concurrency + extra,
            chunk: tier.chunk,
            chunk_delay: Duration::from_millis((tier.chunk_delay_ms as f64 * delay_factor).round() as u64),
            retries: 2,
            retry_base: Duration::from_millis(500),
            account_timeout: Duration::from_secs(60),
            sdk_retries: BOTO3_LEGACY_RETRIES,
        }
    }
}

/// One row of the seed's tier table (`seed-performance-notes`): accounts at once, chunk size
/// and the fixed delay between chunks. sso-fanout's planner keeps only the concurrency column
/// (`sso_fanout_core::tiers::TierTable`), clamped to the quota.
#[derive(Debug, Clone, Copy)]
pub struct SeedTier {
    pub max_accounts: Option<usize>,
    pub concurrency: usize,
    /// None = every account in one chunk.
    pub chunk: Option<usize>,
    pub chunk_delay_ms: u64,
}

pub const SEED_TIERS: [SeedTier; 3] = [
    SeedTier { max_accounts: Some(10), concurrency: 15, chunk: None, chunk_delay_ms: 100 },
    SeedTier { max_accounts: Some(50), concurrency: 25, chunk: Some(50), chunk_delay_ms: 50 },
    SeedTier { max_accounts: None, concurrency: 30, chunk: Some(50), chunk_delay_ms: 20 },
];
/// Revoke runs: +5 concurrent accounts and a 20% shorter chunk delay.
pub const SEED_REVOKE_EXTRA_CONCURRENCY: usize = 5;
pub const SEED_REVOKE_DELAY_FACTOR: f64 = 0.8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiered_settings_follow_the_seed_table() {
        let medium = SeedSettings::tiered(29, Operation::Assign);
        assert_eq!((medium.concurrency, medium.chunk, medium.chunk_delay), (25, Some(50), Duration::from_millis(50)));
        let revoke = SeedSettings::tiered(29, Operation::Revoke);
        assert_eq!((revoke.concurrency, revoke.chunk_delay), (30, Duration::from_millis(40)));
        assert_eq!(SeedSettings::tiered(10, Operation::Assign).chunk, None);
        assert_eq!(SeedSettings::tiered(5000, Operation::Assign).concurrency, 30);
    }
}

/// Assign AdministratorAccess to PlatformAdmins in every account, as a user would write it.
pub(crate) fn bench_request(tuning: Option<Tuning>) -> Result<RunRequest> {
    request_for("AdministratorAccess", tuning)
}

/// Assign `permission_set` to PlatformAdmins in every account.
pub(crate) fn request_for(permission_set: &str, tuning: Option<Tuning>) -> Result<RunRequest> {
    let mut request = serde_json::json!({
        "operation": "assign",
        "permissionSet": permission_set,
        "principal": {"type": "GROUP", "name": "PlatformAdmins"},
        "targets": {"filter": "*"},
    });
    if let Some(tuning) = tuning {
        request["tuning"] = serde_json::to_value(tuning).map_err(|e| FanoutError::Internal(e.to_string()))?;
    }
    RunRequest::from_value(request)
}

fn sim_for(accounts: usize, options: &BenchOptions) -> Arc<SimCloud> {
    let mut config = SimConfig::clean(accounts, options.seed);
    config.faults = options.faults.clone();
    config.latency = options.latency;
    Arc::new(SimCloud::new(config))
}

/// Target accounts of the bench request: every ACTIVE member account.
pub(crate) fn targets(sim: &SimCloud) -> Vec<AccountId> {
    let org = sim.org();
    org.accounts.iter().filter(|a| a.id != org.management_account_id).map(|a| a.id.clone()).collect()
}

/// (bound, greedy reference) for this organization's latencies.
fn references(sim: &SimCloud, accounts: &[AccountId]) -> (f64, f64) {
    let latencies: Vec<f64> = accounts.iter().map(|a| sim.provisioning_latency(a, Operation::Assign).as_secs_f64()).collect();
    let limits = &sim.config().limits;
    (makespan_bound(&latencies, limits, 2.0), greedy_makespan(&latencies, limits.max_outstanding as usize))
}

/// Truth from the simulator: accounts whose assignment exists now.
pub(crate) fn assigned(sim: &SimCloud, accounts: &[AccountId], ps_arn: &PermissionSetArn, principal_id: &PrincipalId) -> BTreeSet<AccountId> {
    accounts.iter().filter(|a| sim.has_assignment(a, ps_arn, principal_id)).cloned().collect()
}

/// What the simulator knows of a run that started at `t0` (tokio) / `t0_sim` (simulator seconds).
struct Measured {
    accepted_s: f64,
    makespan_s: f64,
    reported_s: f64,
}

fn measure(sim: &SimCloud, t0: Instant, t0_sim: f64) -> Measured {
    let ops = sim.operations();
    Measured {
        accepted_s: ops.iter().map(|o| o.accepted_s).fold(t0_sim, f64::max) - t0_sim,
        makespan_s: sim.all_done_s().max(t0_sim) - t0_sim,
        reported_s: t0.elapsed().as_secs_f64(),
    }
}

/// One bench row: the run's measurements beside the references for the same latencies.
fn row(accounts: usize, options: &BenchOptions, strategy: &str, sim: &SimCloud, targets: &[AccountId], m: Measured, failed: usize, false_successes: usize) -> BenchRow {
    let counters = sim.counters();
    let (bound_s, greedy_s) = references(sim, targets);
    BenchRow {
        scenario: "single".into(),
        accounts,
        seed: options.seed,
        strategy: strategy.into(),
        latency: options.latency,
        accepted_s: m.accepted_s,
        makespan_s: m.makespan_s,
        reported_s: m.reported_s,
        bound_s,
        ratio: m.makespan_s / bound_s,
        greedy_s,
        api_calls: counters.sso_admin_calls(),
        throttled: counters.throttled(),
        violations: counters.violations(),
        failed,
        false_successes,
        estimate_s: None,
        rerun_api_calls: None,
        rerun_writes: None,
        dynamo_writes_per_change: None,
        changes: None,
        deletes: None,
        longest_chain: None,
        runs: vec![],
        faults: None,
    }
}

/// Puts the simulated organization into `store`'s account cache, fresh.
async fn prime_account_cache(sim: &SimCloud, store: &dyn AccountCache) -> Result<()> {
    let mut snapshot = sim.org().clone();
    snapshot.fetched_at = unix_now();
    store.put_org(&sim.scope(), &snapshot).await
}

pub(crate) fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("tokio runtime")
}

/// sso-fanout on a fresh simulated organization; also measures a re-run.
pub fn run_sso_fanout(accounts: usize, options: &BenchOptions) -> Result<BenchRow> {
    paused_runtime().block_on(async {
        let sim = sim_for(accounts, options);
        let store = Arc::new(MemoryStore::new());
        prime_account_cache(&sim, store.as_ref()).await?; // both sides start with the account list in hand
        // As users run it: with the shared quota (the CLI's embedded ledger, DynamoDB deployed).
        let instance = MemoryInstance::new();
        let services = Services::new(sim.clone(), sim.clone(), store.clone()).with_quota(instance.process());
        let request = bench_request(options.tuning.clone())?;
        let config = PlannerConfig::in_process(); // as `sso-fanout run` plans
        let (t0, t0_sim) = (Instant::now(), sim.elapsed_s());
        let plan = plan_run(&services, &request, &config).await?;
        let engine = EngineOptions { jitter_seed: options.seed, ..Default::default() };
        let summary = execute(&services, &plan, engine.clone(), None).await?;
        let measured = measure(&sim, t0, t0_sim);

        let targets = targets(&sim);
        let truth = assigned(&sim, &targets, &plan.permission_set.arn, &plan.principal.id);
        let results = store.results(&plan.run_id).await?;
        let false_successes = results
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded && !truth.contains(&r.account_id))
            .count();
        let failed = summary.counts.failed + summary.counts.timed_out + summary.counts.not_started + summary.counts.missing;
        let mut row = row(accounts, options, "sso-fanout", &sim, &targets, measured, failed, false_successes);
        row.estimate_s = Some(plan.estimate.seconds);
        row.dynamo_writes_per_change = Some(writes_per_change(&instance.ledger, plan.changes()));

        // The same request again: should find nothing to do.
        let (calls, writes_before) = (sim.counters().sso_admin_calls(), writes(&sim));
        let again = plan_run(&services, &request, &config).await?;
        execute(&services, &again, engine, None).await?;
        row.rerun_api_calls = Some(sim.counters().sso_admin_calls() - calls);
        row.rerun_writes = Some(writes(&sim) - writes_before);
        Ok(row)
    })
}

fn writes(sim: &SimCloud) -> u64 {
    let c = sim.counters();
    ["CreateAccountAssignment", "DeleteAccountAssignment"].iter().map(|k| c.calls.get(k).copied().unwrap_or(0)).sum()
}

/// The seed's algorithm on a fresh simulated organization.
pub fn run_seed(accounts: usize, settings: &SeedSettings, options: &BenchOptions) -> Result<BenchRow> {
    paused_runtime().block_on(async {
        let sim = sim_for(accounts, options);
        let ps = sim.resolve_permission_set_quiet("AdministratorAccess")?;
        let principal = sso_fanout_sim::org::principals().into_iter().next().expect("PlatformAdmins");
        let targets = targets(&sim);
        let t0 = Instant::now();
        let t0_sim = sim.elapsed_s();
        let chunk = settings.chunk.unwrap_or(targets.len()).max(1);
        let mut reported: BTreeMap<AccountId, bool> = BTreeMap::new();
        for (i, accounts) in targets.chunks(chunk).enumerate() {
            if i > 0 {
                sleep(settings.chunk_delay).await;
            }
            let gate = Arc::new(Semaphore::new(settings.concurrency));
            let mut tasks = JoinSet::new();
            for account in accounts {
                let (sim, gate, settings, account) = (sim.clone(), gate.clone(), settings.clone(), account.clone());
                let key = AssignmentKey {
                    account_id: account.clone(),
                    permission_set_arn: ps.clone(),
                    principal_type: principal.kind,
                    principal_id: principal.id.clone(),
                };
                tasks.spawn(async move {
                    let _slot = gate.acquire_owned().await.expect("gate");
                    let ok = timeout(settings.account_timeout, seed_account(&sim, &key, &settings)).await.unwrap_or(false);
                    (account, ok)
                });
            }
            while let Some(joined) = tasks.join_next().await {
                let (account, ok) = joined.map_err(|e| FanoutError::Internal(e.to_string()))?;
                reported.insert(account, ok);
            }
        }
        let reported_s = t0.elapsed().as_secs_f64();
        // Let AWS finish what was accepted, to know the truth.
        let (done, now) = (sim.all_done_s(), sim.elapsed_s());
        if done > now {
            sleep(Duration::from_secs_f64(done - now + 0.001)).await;
        }
        let measured = Measured { reported_s, ..measure(&sim, t0, t0_sim) };
        let truth = assigned(&sim, &targets, &ps, &principal.id);
        let failed = reported.values().filter(|ok| !**ok).count();
        let false_successes = reported.iter().filter(|(a, ok)| **ok && !truth.contains(*a)).count();
        Ok(row(accounts, options, settings.name, &sim, &targets, measured, failed, false_successes))
    })
}

/// botocore's legacy retry mode: 5 attempts in all.
const BOTO3_LEGACY_RETRIES: u32 = 4;

/// One account as the seed does it: check, create, retry on error, success when accepted.
async fn seed_account(sim: &SimCloud, key: &AssignmentKey, settings: &SeedSettings) -> bool {
    // boto3's jitter, reproducible per account.
    let mut rng = SmallRng::seed_from_u64(key.account_id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)));
    for attempt in 0..=settings.retries {
        if attempt > 0 {
            sleep(settings.retry_base * 2u32.pow(attempt - 1)).await;
        }
        match boto3(settings, &mut rng, || sim.list_account_assignments(&key.account_id, &key.permission_set_arn)).await {
            Ok(principals) if principals.contains(&key.principal_id) => return true,
            Ok(_) => {}
            Err(_) => continue,
        }
        match boto3(settings, &mut rng, || AssignmentOps::create_assignment(sim, key)).await {
            Ok(status) => return status.state != OpState::Failed,
            Err(_) => continue,
        }
    }
    false
}

/// A call as boto3 makes it in legacy retry mode: throttling and 5xx retried by the SDK itself.
async fn boto3<T, F: std::future::Future<Output = Result<T>>>(settings: &SeedSettings, rng: &mut SmallRng, call: impl Fn() -> F) -> Result<T> {
    let mut retry = 0;
    loop {
        match call().await {
            Err(FanoutError::Throttled { .. } | FanoutError::Transient { .. }) if retry < settings.sdk_retries => {
                retry += 1;
                sleep(Duration::from_secs_f64(rng.random_range(0.0..1.0) * 2f64.powi(retry as i32 - 1))).await;
            }
            other => return other,
        }
    }
}

/// How runs on one instance spend its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Each run owns the whole budget in its own mind (sso-fanout before the shared quota).
    Independent,
    /// Every run and worker spends the one budget through the quota ledger.
    Shared,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Independent => "independent",
            Strategy::Shared => "shared",
        }
    }
}

fn writes_per_change(ledger: &MemoryLedger, changes: usize) -> f64 {
    ledger.writes() as f64 / changes.max(1) as f64
}

/// Three runs of `accounts` started 0, 30 and 60 s apart on one simulated Identity Center
/// (a schedule, a CI job and a laptop), each assigning another permission set to every account,
/// each its own process (own store and account cache), spending the quota per `strategy`. The
/// row measures all their operations together against the bound for all of them.
pub fn run_concurrent(accounts: usize, strategy: Strategy, options: &BenchOptions) -> Result<BenchRow> {
    const CONCURRENT_STARTS_S: [f64; 3] = [0.0, 30.0, 60.0];
    const PERMISSION_SETS: [&str; 3] = ["AdministratorAccess", "ReadOnlyAccess", "PowerUserAccess"];
    paused_runtime().block_on(async {
        let sim = sim_for(accounts, options);
        let instance = MemoryInstance::new();
        let (t0, t0_sim) = (Instant::now(), sim.elapsed_s());
        let one_run = |permission_set: &'static str, start_s: f64, seed: u64| {
            let sim = sim.clone();
            let tuning = options.tuning.clone();
            let instance = instance.clone();
            async move {
                sleep(Duration::from_secs_f64(start_s)).await;
                // Each its own process (own store), with the account list cached as in `single`
                // (a deployed stack shares one cache; this measures the quota, not Organizations).
                let store = Arc::new(MemoryStore::new());
                prime_account_cache(&sim, store.as_ref()).await?;
                let mut services = Services::new(sim.clone(), sim.clone(), store.clone());
                if strategy == Strategy::Shared {
                    services = services.with_quota(instance.process());
                }
                // As `sso-fanout run` plans (with or without the ledger).
                let config = PlannerConfig { shared_quota: strategy == Strategy::Shared, ..PlannerConfig::in_process() };
                let plan = plan_run(&services, &request_for(permission_set, tuning)?, &config).await?;
                let summary = execute(&services, &plan, EngineOptions { jitter_seed: seed, ..Default::default() }, None).await?;
                let finished_s = t0.elapsed().as_secs_f64();
                let results = store.results(&plan.run_id).await?;
                Ok::<_, FanoutError>((plan, summary, results, finished_s))
            }
        };
        let (a, b, c) = tokio::join!(
            one_run(PERMISSION_SETS[0], CONCURRENT_STARTS_S[0], options.seed),
            one_run(PERMISSION_SETS[1], CONCURRENT_STARTS_S[1], options.seed + 1),
            one_run(PERMISSION_SETS[2], CONCURRENT_STARTS_S[2], options.seed + 2),
        );
        let measured = measure(&sim, t0, t0_sim);
        let targets = targets(&sim);
        let mut failed = 0;
        let mut false_successes = 0;
        let mut runs = Vec::new();
        let mut changes = 0;
        for (i, outcome) in [a, b, c].into_iter().enumerate() {
            let (plan, summary, results, finished_s) = outcome?;
            changes += plan.changes();
            let truth = assigned(&sim, &targets, &plan.permission_set.arn, &plan.principal.id);
            false_successes += results.iter().filter(|r| r.outcome == Outcome::Succeeded && !truth.contains(&r.account_id)).count();
            failed += summary.counts.failed + summary.counts.timed_out + summary.counts.not_started + summary.counts.missing;
            runs.push(RunTiming { permission_set: PERMISSION_SETS[i].into(), started_s: CONCURRENT_STARTS_S[i], finished_s });
        }
        // The references count every run's operations (the same accounts, once per run).
        let all_changes: Vec<AccountId> = targets.iter().cycle().take(targets.len() * PERMISSION_SETS.len()).cloned().collect();
        let mut row = row(accounts, options, strategy.name(), &sim, &all_changes, measured, failed, false_successes);
        row.scenario = "concurrent".into();
        row.runs = runs;
        if strategy == Strategy::Shared {
            row.dynamo_writes_per_change = Some(writes_per_change(&instance.ledger, changes));
        }
        Ok(row)
    })
}

/// The first batch's worker dies a third of the way through (a Lambda timeout or crash) and is
/// re-driven at once, as the state machine's Retry does: the re-driven worker resumes from the
/// stored results (final accounts skipped, accepted ones checked by request id); the other
/// batches then run as the Map would run them. The row says whether the run converged without a
/// duplicate or lost result and what the crash cost: the re-driven worker's calls and the
/// operations it had accepted beyond what the dead one left undone (`rerun_api_calls`,
/// `rerun_writes`), and requests over the quota while the dead worker's last calls and
/// operations were still counted at AWS.
pub fn run_crash(accounts: usize, strategy: Strategy, options: &BenchOptions) -> Result<BenchRow> {
    paused_runtime().block_on(async {
        let sim = sim_for(accounts, options);
        let store = Arc::new(MemoryStore::new());
        let instance = MemoryInstance::new();
        let ledger = instance.process();
        let mut services = Services::new(sim.clone(), sim.clone(), store.clone());
        if strategy == Strategy::Shared {
            services = services.with_quota(ledger.clone());
        }
        let request = bench_request(None)?;
        let config = PlannerConfig::default();
        let (t0, t0_sim) = (Instant::now(), sim.elapsed_s());
        let plan = plan_run(&services, &request, &config).await?;
        let n = plan.batches[0].items.len();
        // The worker that dies holds its quota share as a process would: gone without releasing.
        let dying = (strategy == Strategy::Shared)
            .then(|| ledger.holder(&plan.scope, &plan.run_id, Some(0), plan.quota.budget, services.ops.clone()));
        let worker = {
            let (services, run_id, seed, quota) = (services.clone(), plan.run_id.clone(), options.seed, dying.clone());
            tokio::spawn(async move {
                let options = EngineOptions { jitter_seed: seed, quota, ..Default::default() };
                sso_fanout_core::pipeline::run_stored_batch(&services, &run_id, 0, options, None).await.map(|_| ())
            })
        };
        let (batch_estimate, _) = sso_fanout_core::planner::estimate_seconds(&plan.batches[..1], &plan.estimate.latency);
        sleep(Duration::from_secs_f64(batch_estimate / 3.0)).await;
        if let Some(quota) = &dying {
            quota.die();
        }
        worker.abort();
        let _ = worker.await;
        let accepted_before = sim.operations().len() + sim.outstanding();
        let calls_before = sim.counters().sso_admin_calls();
        let recorded = store.results(&plan.run_id).await?.len();
        let options_again = EngineOptions { jitter_seed: options.seed + 1, ..Default::default() };
        sso_fanout_core::pipeline::run_stored_batch(&services, &plan.run_id, 0, options_again, None).await?;
        let calls_again = sim.counters().sso_admin_calls() - calls_before;
        let accepted_again = (sim.operations().len() + sim.outstanding()).saturating_sub(accepted_before);
        for batch in &plan.batches[1..] {
            let options = EngineOptions { jitter_seed: options.seed + 2 + u64::from(batch.index), ..Default::default() };
            sso_fanout_core::pipeline::run_stored_batch(&services, &plan.run_id, batch.index, options, None).await?;
        }
        let summary = sso_fanout_core::pipeline::report_run(store.as_ref(), &plan.run_id, vec![], None).await?;
        let measured = measure(&sim, t0, t0_sim);
        let targets = targets(&sim);
        let truth = assigned(&sim, &targets, &plan.permission_set.arn, &plan.principal.id);
        let results = store.results(&plan.run_id).await?;
        let false_successes = results.iter().filter(|r| r.outcome == Outcome::Succeeded && !truth.contains(&r.account_id)).count();
        let failed = summary.counts.failed + summary.counts.timed_out + summary.counts.not_started + summary.counts.missing;
        let mut row = row(accounts, options, strategy.name(), &sim, &targets, measured, failed, false_successes);
        row.scenario = "crash".into();
        if strategy == Strategy::Shared {
            row.dynamo_writes_per_change = Some(writes_per_change(&instance.ledger, plan.changes()));
        }
        row.rerun_api_calls = Some(calls_again);
        row.rerun_writes = Some(accepted_again.saturating_sub(n - recorded) as u64);
        Ok(row)
    })
}

pub fn run_all(sizes: &[usize], options: &BenchOptions) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for &n in sizes {
        rows.push(run_sso_fanout(n, options)?);
        rows.push(run_seed(n, &SeedSettings::before(), options)?);
        rows.push(run_seed(n, &SeedSettings::tiered(n + 1, Operation::Assign), options)?);
    }
    Ok(rows)
}
