//! The planner over the simulator: name resolution, targeting, diffing, tiers, clamps, the
//! estimate, the account cache, and rejection of bad requests before anything is written.

use sso_fanout_core::error::FanoutError;
use sso_fanout_core::model::{Action, Operation, PrincipalType};
use sso_fanout_core::pipeline::{plan_run, Services};
use sso_fanout_core::clock::unix_now;
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::request::{PrincipalRef, RunRequest};
use sso_fanout_sim::{org::MANAGEMENT_ACCOUNT_ID, SimCloud, SimConfig};
use sso_fanout_core::store::{AccountCache, LatencyHistory, MemoryStore, RunLog};
use sso_fanout_core::tiers::BindingLimit;
use std::sync::Arc;

fn setup(accounts: usize) -> (Arc<SimCloud>, Arc<MemoryStore>, Services) {
    let sim = Arc::new(SimCloud::new(SimConfig::new(accounts, 4)));
    let store = Arc::new(MemoryStore::new());
    let services = Services::new(sim.clone(), sim.clone(), store.clone());
    (sim, store, services)
}

/// Assign AdministratorAccess to PlatformAdmins in `targets` (the request's JSON `targets`).
fn request(targets: serde_json::Value) -> RunRequest {
    RunRequest::from_value(serde_json::json!({
        "operation": "assign",
        "permissionSet": "AdministratorAccess",
        "principal": {"type": "GROUP", "name": "PlatformAdmins"},
        "targets": targets,
    }))
    .unwrap()
}

fn filter(f: &str) -> serde_json::Value {
    serde_json::json!({"filter": f})
}

async fn rejected(services: &Services, sim: &SimCloud, store: &MemoryStore, req: RunRequest) -> FanoutError {
    let err = plan_run(services, &req, &PlannerConfig::default()).await.expect_err("must be rejected");
    assert!(err.is_request_error(), "{err:?}");
    assert_eq!(err.error_type(), "InvalidRequest");
    let c = sim.counters();
    assert!(!c.calls.contains_key("CreateAccountAssignment") && !c.calls.contains_key("DeleteAccountAssignment"));
    assert!(store.list_runs(10).await.unwrap().is_empty(), "no run stored for a rejected request");
    err
}

#[tokio::test(start_paused = true)]
async fn unknown_names_are_rejected_with_what_exists() {
    let (sim, store, services) = setup(20);
    let mut req = request(filter("*"));
    req.permission_set = "AdminAccess".parse().unwrap();
    let e = rejected(&services, &sim, &store, req).await;
    assert!(e.to_string().contains("AdminAccess") && e.to_string().contains("AdministratorAccess"), "{e}");

    let mut req = request(filter("*"));
    req.principal = PrincipalRef::Name { kind: PrincipalType::Group, name: "platformadmins".into() };
    let e = rejected(&services, &sim, &store, req).await;
    assert!(matches!(e, FanoutError::NotFound { ref what, .. } if what == "group"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn selections_that_match_nothing_are_errors_naming_the_field() {
    let (sim, store, services) = setup(20);
    let e = rejected(&services, &sim, &store, request(filter("staging-*"))).await;
    assert!(matches!(e, FanoutError::InvalidRequest { ref field, .. } if field == "targets.filter"), "{e}");
    assert!(e.to_string().contains("= \"staging-*\":"), "the filter as the user wrote it: {e}");
    let e = rejected(&services, &sim, &store, request(serde_json::json!({"accounts": ["999999999999"]}))).await;
    assert!(matches!(e, FanoutError::InvalidRequest { ref field, .. } if field == "targets.accounts[0]"), "{e}");
    let tags = serde_json::json!({"tags": {"env": "qa"}});
    let e = rejected(&services, &sim, &store, request(tags)).await;
    assert!(matches!(e, FanoutError::InvalidRequest { ref field, .. } if field == "targets.tags"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn diff_skips_existing_and_management_needs_explicit_listing() {
    let (_sim, _store, services) = setup(100);
    let plan = plan_run(&services, &request(filter("*")), &PlannerConfig::default()).await.unwrap();
    assert!(plan.items().iter().all(|i| i.account_id != MANAGEMENT_ACCOUNT_ID));
    assert!(!plan.skipped.is_empty());
    assert!(plan.skipped.iter().all(|i| i.action == Action::Skip));
    assert!(plan.batches.iter().flat_map(|b| &b.items).all(|i| i.action == Action::Create));

    let explicit = serde_json::json!({"accounts": [MANAGEMENT_ACCOUNT_ID]});
    let plan = plan_run(&services, &request(explicit), &PlannerConfig::default()).await.unwrap();
    assert_eq!(plan.items().len(), 1);

    let mut revoke = request(filter("*"));
    revoke.operation = Operation::Revoke;
    let plan = plan_run(&services, &revoke, &PlannerConfig::default()).await.unwrap();
    // Revoke deletes exactly where the assignment exists.
    assert!(plan.batches.iter().flat_map(|b| &b.items).all(|i| i.action == Action::Delete));
    assert!(plan.changes() > 0 && plan.skipped.len() > plan.changes());
}

#[tokio::test(start_paused = true)]
async fn tiers_are_clamped_to_the_quotas_and_say_which_limit_binds() {
    let (_sim, _store, services) = setup(29);
    let plan = plan_run(&services, &request(filter("*")), &PlannerConfig::default()).await.unwrap();
    assert_eq!(plan.tier.name, "medium");
    assert_eq!(plan.tier.requested_concurrency, 25);
    assert_eq!(plan.tier.in_flight, 15, "the published 15 outstanding operations");
    assert_eq!(plan.tier.binding, BindingLimit::OutstandingOperations);
    assert!(plan.tier.requests_per_second <= 20.0);
    assert_eq!(plan.batches.len(), 1);

    let mut req = request(filter("*"));
    req.operation = Operation::Revoke;
    let plan = plan_run(&services, &req, &PlannerConfig::default()).await.unwrap();
    assert_eq!(plan.tier.requested_concurrency, 30, "revoke: +5 as in the seed's table");

    let mut req = request(filter("*"));
    req.tuning = Some(serde_json::from_value(serde_json::json!({"concurrency": 50, "batchSize": 100_000, "accountTimeoutSeconds": 5000})).unwrap());
    let plan = plan_run(&services, &req, &PlannerConfig::default()).await.unwrap();
    assert_eq!(plan.tier.in_flight, 15);
    let warnings = plan.warnings.join("\n");
    assert!(warnings.contains("tuning.concurrency 50 clamped to 15"), "{warnings}");
    assert!(warnings.contains("accountTimeoutSeconds 5000 clamped"), "{warnings}");
    assert!(warnings.contains("batch size 100000 clamped"), "{warnings}");
}

#[tokio::test(start_paused = true)]
async fn large_organizations_get_batches_that_fit_the_worker_budget() {
    let (_sim, _store, services) = setup(5000);
    let config = PlannerConfig::default();
    let plan = plan_run(&services, &request(filter("*")), &config).await.unwrap();
    assert_eq!(plan.tier.name, "large");
    assert!(plan.batches.len() >= 3, "{}", plan.batches.len());
    assert!(plan.batches.iter().all(|b| b.share.in_flight == 15));
    assert_eq!(plan.map_concurrency, 1, "without the shared ledger batches run one after another");
    assert!(plan.map_reason.contains("no shared quota ledger"), "{}", plan.map_reason);
    // Each batch's own estimate fits the budget.
    for b in &plan.batches {
        let (secs, _) = sso_fanout_core::planner::estimate_seconds(std::slice::from_ref(b), &plan.estimate.latency);
        assert!(secs < config.worker_time_budget_s as f64, "batch {} needs {secs} s", b.index);
    }
}

#[tokio::test(start_paused = true)]
async fn estimate_follows_the_quota_model_and_learns_from_past_latencies() {
    let (_sim, store, services) = setup(300);
    let small = plan_run(&services, &request(filter("prod-*")), &PlannerConfig::default()).await.unwrap();
    let big = plan_run(&services, &request(filter("*")), &PlannerConfig::default()).await.unwrap();
    assert!(big.estimate.seconds > small.estimate.seconds * 1.5);
    // Changes over 15 slots at the mean latency is a floor for the estimate.
    let floor = big.changes() as f64 * big.estimate.latency.mean_s() / 15.0;
    assert!(big.estimate.seconds >= floor && big.estimate.seconds < floor * 1.5, "{} vs {floor}", big.estimate.seconds);
    assert_eq!(big.estimate.latency.samples, 0);

    store.add_latency_samples(&big.scope, &vec![9_000; 50]).await.unwrap();
    let learned = plan_run(&services, &request(filter("*")), &PlannerConfig::default()).await.unwrap();
    assert_eq!(learned.estimate.latency.samples, 50);
    assert!(learned.estimate.seconds > big.estimate.seconds * 2.0);
}

#[tokio::test(start_paused = true)]
async fn account_cache_is_used_while_fresh() {
    let (sim, store, services) = setup(50);
    let first = plan_run(&services, &request(filter("*")), &PlannerConfig::default()).await.unwrap();
    let org_calls = sim.counters().org_calls;
    assert!(org_calls > 50, "first plan reads Organizations");
    plan_run(&services, &request(filter("*")), &PlannerConfig::default()).await.unwrap();
    assert_eq!(sim.counters().org_calls, org_calls + 1, "fresh cache: only DescribeOrganization, to check whose cache it is");

    let mut req = request(filter("*"));
    req.refresh_cache = true;
    plan_run(&services, &req, &PlannerConfig::default()).await.unwrap();
    assert!(sim.counters().org_calls > org_calls, "refreshCache forces a re-read");

    let mut stale = store.cached_org(&first.scope).await.unwrap().unwrap();
    stale.fetched_at = unix_now() - 7200;
    store.put_org(&first.scope, &stale).await.unwrap();
    let before = sim.counters().org_calls;
    plan_run(&services, &request(filter("*")), &PlannerConfig::default()).await.unwrap();
    assert!(sim.counters().org_calls > before, "stale cache is refreshed");
}

#[tokio::test(start_paused = true)]
async fn dry_run_stores_nothing() {
    let (_sim, store, services) = setup(20);
    let mut req = request(filter("*"));
    req.dry_run = true;
    let plan = plan_run(&services, &req, &PlannerConfig::default()).await.unwrap();
    assert!(plan.changes() > 0);
    assert!(store.get_run(&plan.run_id).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn with_the_shared_quota_large_runs_put_two_batches_side_by_side_each_fitting_at_half_the_slots() {
    let (_sim, _store, services) = setup(5000);
    let config = PlannerConfig { shared_quota: true, ..PlannerConfig::default() };
    let plan = plan_run(&services, &request(filter("*")), &config).await.unwrap();
    assert_eq!(plan.map_concurrency, 2, "{}", plan.map_reason);
    assert!(plan.map_reason.contains("quota ledger"), "{}", plan.map_reason);
    for b in &plan.batches {
        let mut half = b.clone();
        half.share.in_flight /= 2;
        let (secs, _) = sso_fanout_core::planner::estimate_seconds(std::slice::from_ref(&half), &plan.estimate.latency);
        assert!(secs < config.worker_time_budget_s as f64, "batch {} needs {secs} s at half the slots", b.index);
    }
    // A run that fits one worker stays one batch.
    let (_sim, _store, small) = setup(29);
    let plan = plan_run(&small, &request(filter("*")), &config).await.unwrap();
    assert_eq!((plan.batches.len(), plan.map_concurrency), (1, 1));
    assert_eq!(plan.map_reason, "one batch holds every change");
}
