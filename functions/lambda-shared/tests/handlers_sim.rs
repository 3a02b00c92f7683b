//! The three handlers chained as the state machine chains them, on the simulator: JSON in and
//! out exactly as Step Functions passes it, errors with the names the state machine matches.

use fanout_lambda::handlers;
use sso_fanout_core::contract::{PlanView, PlannerOutput};
use serde_json::{json, Value};
use sso_fanout_core::pipeline::Services;
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_sim::{SimCloud, SimConfig};
use sso_fanout_core::store::{MemoryStore, RunLog};
use std::sync::Arc;

fn services(accounts: usize) -> (Arc<SimCloud>, Arc<MemoryStore>, Services) {
    let sim = Arc::new(SimCloud::new(SimConfig::new(accounts, 9)));
    let store = Arc::new(MemoryStore::new());
    (sim.clone(), store.clone(), Services::new(sim.clone(), sim, store))
}

fn request(extra: Value) -> Value {
    let mut r = json!({
        "operation": "assign",
        "permissionSet": "AdministratorAccess",
        "principal": {"type": "GROUP", "name": "PlatformAdmins"},
        "targets": {"filter": "*"}
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

#[tokio::test(start_paused = true)]
async fn planner_worker_reporter_chain_produces_the_summary() {
    let (sim, store, services) = services(120);
    let config = PlannerConfig::default();
    let planned: PlannerOutput = handlers::plan(&services, &config, request(json!({"tuning": {"batchSize": 40}}))).await.unwrap();
    assert!(planned.batches.len() >= 2, "{planned:?}");
    // The Map item is exactly what the planner emitted (ItemSelector passes runId and batch).
    let mut batch_results = Vec::new();
    for item in &planned.batches {
        let event = json!({"runId": item.run_id, "batch": item.batch});
        let out = handlers::work(&services, event).await.unwrap();
        batch_results.push(serde_json::to_value(out).unwrap());
    }
    let summary = handlers::report(&services, json!({"runId": planned.run_id, "batches": batch_results})).await.unwrap();
    assert_eq!(summary.exit_code(), 0, "{summary:?}");
    let worker_total: u64 = batch_results.iter().map(|b| b["succeeded"].as_u64().unwrap()).sum();
    assert_eq!(summary.counts.succeeded as u64, worker_total);
    assert_eq!(summary.counts.total, summary.counts.succeeded + summary.counts.skipped);
    assert!(summary.duration_seconds.is_some());
    assert_eq!(sim.counters().violations(), 0);
    let stored = store.get_run(&planned.run_id).await.unwrap().unwrap().summary.expect("the summary is stored with the run");
    assert!(summary.results.is_empty(), "the execution output leaves the per-account results in the store");
    assert_eq!(stored.results.len(), summary.counts.total, "every target account's result is stored");
    assert_eq!(sso_fanout_core::report::RunSummary { results: vec![], ..stored }, summary);
}

#[tokio::test(start_paused = true)]
async fn planner_output_stays_small_for_ten_thousand_accounts() {
    let (_sim, _store, services) = services(10_000);
    let planned = handlers::plan(&services, &PlannerConfig::default(), request(json!({}))).await.unwrap();
    let bytes = serde_json::to_vec(&planned).unwrap().len();
    // Step Functions payloads are limited to 256 KB; batches are references into the store.
    assert!(bytes < 8 * 1024, "planner output is {bytes} bytes");
    assert!(planned.batches.len() >= 5, "{}", planned.batches.len());
}

#[tokio::test(start_paused = true)]
async fn dry_run_returns_the_plan_and_no_batches() {
    let (sim, store, services) = services(30);
    let planned = handlers::plan(&services, &PlannerConfig::default(), request(json!({"dryRun": true}))).await.unwrap();
    assert!(planned.dry_run && planned.batches.is_empty());
    let PlanView::Preview(preview) = &planned.plan else { panic!("a dry run returns the preview") };
    assert!(preview.accounts.len() > 20);
    // The JSON the state machine's DryRunPreview state returns ($.plan) is the preview.
    assert!(serde_json::to_value(&planned).unwrap()["plan"]["accounts"].as_array().unwrap().len() > 20);
    assert!(store.list_runs(5).await.unwrap().is_empty());
    assert!(!sim.counters().calls.contains_key("CreateAccountAssignment"));
}

#[tokio::test(start_paused = true)]
async fn invalid_requests_fail_with_invalid_request_and_write_nothing() {
    let (sim, store, services) = services(30);
    let config = PlannerConfig::default();
    for (event, needle) in [
        (request(json!({"operation": "grant"})), "grant"),
        (request(json!({"permissionSet": "Nope"})), "Nope"),
        (request(json!({"targets": {"filter": "qa-*"}})), "targets.filter"),
        (request(json!({"targets": {"accounts": ["12"]}})), "targets.accounts[0]"),
        (request(json!({"principal": {"type": "GROUP", "name": "Ghosts"}})), "Ghosts"),
        (json!({"hello": "world"}), "hello"),
    ] {
        let e = handlers::plan(&services, &config, event).await.unwrap_err();
        assert_eq!(e.error_type(), "InvalidRequest", "{e}");
        assert!(e.to_string().contains(needle), "{needle}: {e}");
        let d = fanout_lambda::runtime::diagnostic(&e);
        assert_eq!(d.error_type, "InvalidRequest");
    }
    assert!(store.list_runs(5).await.unwrap().is_empty());
    assert!(!sim.counters().calls.contains_key("CreateAccountAssignment"));
}

#[tokio::test(start_paused = true)]
async fn reporter_records_a_batch_that_failed_for_good() {
    let (_sim, _store, services) = services(80);
    let planned = handlers::plan(&services, &PlannerConfig::default(), request(json!({"tuning": {"batchSize": 30}}))).await.unwrap();
    assert!(planned.batches.len() >= 2);
    let mut batches = Vec::new();
    for item in &planned.batches[1..] {
        let out = handlers::work(&services, json!({"runId": item.run_id, "batch": item.batch})).await.unwrap();
        batches.push(serde_json::to_value(out).unwrap());
    }
    // What the state machine's Catch -> RecordBatchFailure passes on for batch 0.
    batches.insert(0, json!({"runId": planned.run_id, "batch": 0, "error": {"Error": "Retryable", "Cause": "{\"errorType\":\"Retryable\"}"}}));
    let summary = handlers::report(&services, json!({"runId": planned.run_id, "batches": batches})).await.unwrap();
    assert_eq!(summary.exit_code(), 2);
    assert_eq!(summary.failed_batches.len(), 1);
    assert_eq!(summary.failed_batches[0].error, "Retryable");
    assert_eq!(summary.counts.missing, planned.batches[0].accounts.unwrap());
    assert!(summary.failures.iter().any(|f| f.outcome == sso_fanout_core::report::AccountOutcome::Missing && f.reason.contains("batch 0 failed")));
}

#[tokio::test(start_paused = true)]
async fn worker_rejects_unknown_runs_and_batches() {
    let (_sim, _store, services) = services(10);
    let e = handlers::work(&services, json!({"runId": "run-nope", "batch": 0})).await.unwrap_err();
    assert_eq!(e.error_type(), "InvalidRequest");
    let e = handlers::work(&services, json!({"batch": 0})).await.unwrap_err();
    assert!(e.to_string().contains("runId"), "{e}");
}
