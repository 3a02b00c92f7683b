//! The Lambda handlers in order (planner -> worker per batch -> reporter) against moto: the same
//! ports the deployed functions build (`LambdaConfig::services_with`), DynamoDB on moto, and the
//! effects read back from sso-admin and the table.

use fanout_lambda::{handlers, LambdaConfig};
use serde_json::{json, Value};
use sso_fanout_aws::{create_table, AwsClients};
use sso_fanout_core::store::RunStatus;
use sso_fanout_tests::moto::Moto;

const TABLE: &str = "sso-fanout-handlers";

fn config() -> LambdaConfig {
    LambdaConfig::from_lookup(|k| (k == "FANOUT_TABLE").then(|| TABLE.to_string())).unwrap()
}

fn request(op: &str, targets: Value) -> Value {
    json!({
        "operation": op,
        "permissionSet": "AdministratorAccess",
        "principal": {"type": "GROUP", "name": "PlatformAdmins"},
        "targets": targets
    })
}


/// Runs the three handlers as the state machine does; returns (planner output, summary).
async fn execute(services: &sso_fanout_core::pipeline::Services, event: Value) -> (sso_fanout_core::contract::PlannerOutput, Value) {
    let cfg = config();
    let planned = handlers::plan(services, &cfg.planner, event).await.expect("planner");
    let mut batches = Vec::new();
    for item in &planned.batches {
        let out = handlers::work(services, json!({"runId": item.run_id, "batch": item.batch})).await.expect("worker");
        batches.push(serde_json::to_value(out).unwrap());
    }
    if planned.dry_run {
        return (planned, Value::Null);
    }
    let summary = handlers::report(services, json!({"runId": planned.run_id, "batches": batches})).await.expect("reporter");
    (planned, serde_json::to_value(summary).unwrap())
}

#[tokio::test]
async fn handlers_assign_rerun_and_revoke_on_moto() {
    let moto = Moto::seeded();
    let clients = moto.clients().await;
    create_table(&clients.dynamodb, TABLE).await.unwrap();
    let services = config().services_with(&clients);
    let ps = moto.permission_set("AdministratorAccess");
    let prod: Vec<String> = moto.accounts_under(&["Prod"]).iter().map(|name| moto.account_id(name).to_string()).collect();
    assert!(prod.len() >= 5);

    let (planned, summary) = execute(&services, request("assign", json!({"filter": "prod-*"}))).await;
    assert_eq!(summary["outcome"], "succeeded", "{summary}");
    assert_eq!(summary["counts"]["total"].as_u64().unwrap() as usize, prod.len());
    assert_eq!(summary["counts"]["skipped"], 1, "prod-payments-001 already had it");
    for account in &prod {
        assert_eq!(moto.holders(&clients, account, &ps).await.len(), 1, "{account}");
    }
    // Results and summary are in DynamoDB.
    let record = services.store.get_run(&planned.run_id).await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Finished);
    // The stored summary holds every account's result; the execution output leaves them out.
    let mut stored = record.summary.unwrap();
    assert_eq!(stored.results.len(), prod.len());
    stored.results.clear();
    assert_eq!(serde_json::to_value(stored).unwrap(), summary);
    let results = services.store.results(&planned.run_id).await.unwrap();
    assert_eq!(results.len(), prod.len() - 1);
    assert!(results.iter().all(|r| r.request_id.is_some() && r.attempts >= 1));

    // Re-run: nothing to do, so no batch, no worker, no write.
    let (again, summary) = execute(&services, request("assign", json!({"filter": "prod-*"}))).await;
    assert!(again.batches.is_empty(), "{again:?}");
    assert_eq!(summary["counts"]["skipped"].as_u64().unwrap() as usize, prod.len());
    for account in &prod {
        assert_eq!(moto.holders(&clients, account, &ps).await.len(), 1, "no duplicate in {account}");
    }

    // Revoke removes them all.
    let (_, summary) = execute(&services, request("revoke", json!({"filter": "prod-*"}))).await;
    assert_eq!(summary["outcome"], "succeeded", "{summary}");
    for account in &prod {
        assert_eq!(moto.holders(&clients, account, &ps).await.len(), 0, "{account}");
    }

    // A dry run returns the plan and stores nothing.
    let (dry, _) = execute(&services, json!({"operation": "assign", "permissionSet": "AdministratorAccess",
        "principal": {"type": "GROUP", "name": "PlatformAdmins"}, "targets": {"filter": "prod-*"}, "dryRun": true})).await;
    assert!(dry.dry_run && dry.batches.is_empty());
    let sso_fanout_core::contract::PlanView::Preview(preview) = &dry.plan else { panic!("a dry run returns the preview: {:?}", dry.plan) };
    assert_eq!(preview.creates, prod.len());
    assert!(services.store.get_run(&dry.run_id).await.unwrap().is_none());
}

#[tokio::test]
async fn invalid_requests_are_rejected_by_name_before_any_write() {
    let moto = Moto::seeded();
    let clients = moto.clients().await;
    create_table(&clients.dynamodb, TABLE).await.unwrap();
    let services = config().services_with(&clients);
    let cfg = config();
    let ps = moto.permission_set("AdministratorAccess");
    let before: Vec<usize> = assignment_counts(&clients, &ps, &moto).await;
    let cases = [
        (request("assign", json!({"filter": "staging-*"})), "targets.filter"),
        (json!({"operation": "assign", "permissionSet": "AdminAccess", "principal": {"type": "GROUP", "name": "PlatformAdmins"}, "targets": {"filter": "*"}}), "AdminAccess"),
        (json!({"operation": "assign", "permissionSet": "AdministratorAccess", "principal": {"type": "GROUP", "name": "Nobody"}, "targets": {"filter": "*"}}), "Nobody"),
        (request("assign", json!({"accounts": ["000000000001"]})), "targets.accounts[0]"),
        (request("assign", json!({"ous": ["ou-zzzz-zzzzzzzz"]})), "targets.ous"),
        (request("revoke", json!({"filter": "*", "typo": 1})), "typo"),
    ];
    for (event, needle) in cases {
        let e = handlers::plan(&services, &cfg.planner, event).await.unwrap_err();
        let d = fanout_lambda::runtime::diagnostic(&e);
        assert_eq!(d.error_type, "InvalidRequest", "{needle}: {e}");
        assert!(d.error_message.contains(needle), "{needle}: {}", d.error_message);
    }
    assert!(services.store.list_runs(10).await.unwrap().is_empty(), "no run stored");
    assert_eq!(assignment_counts(&clients, &ps, &moto).await, before, "no assignment changed");
}

async fn assignment_counts(clients: &AwsClients, ps: &str, moto: &Moto) -> Vec<usize> {
    let mut counts = Vec::new();
    for a in moto.accounts() {
        counts.push(moto.holders(clients, a["id"].as_str().unwrap(), ps).await.len());
    }
    counts
}
