//! End to end on moto: the domain pipeline (`plan_run` -> `execute`) with the AWS adapters and
//! the DynamoDB store. Assign by OU (recursive), re-run (nothing to do, no writes), revoke, and
//! read sso-admin back after each step.

use async_trait::async_trait;
use sso_fanout_aws::{create_table, AwsIdentityCenter, AwsOrgDirectory, DynamoStore, IdentityCenterConfig};
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::*;
use sso_fanout_aws::ledger::DynamoLedger;
use sso_fanout_core::quota::{Ledger, WallClock};
use sso_fanout_core::pipeline::{execute, plan_run, Services};
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::ports::AssignmentOps;
use sso_fanout_core::report::RunOutcome;
use sso_fanout_core::request::RunRequest;
use sso_fanout_core::store::{AccountCache, RunLog, RunStatus};
use sso_fanout_core::Result;
use sso_fanout_tests::moto::Moto;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts the writes that reach the adapter (the planner's look-ups go to the adapter itself).
struct Counting {
    inner: AwsIdentityCenter,
    creates: AtomicU64,
    deletes: AtomicU64,
}

#[async_trait]
impl AssignmentOps for Counting {
    async fn create_assignment(&self, key: &AssignmentKey) -> Result<OpStatus> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create_assignment(key).await
    }

    async fn delete_assignment(&self, key: &AssignmentKey) -> Result<OpStatus> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_assignment(key).await
    }

    async fn operation_status(&self, op: Operation, request_id: &str) -> Result<OpStatus> {
        self.inner.operation_status(op, request_id).await
    }

    async fn in_progress_operations(&self, op: Operation) -> Result<BTreeSet<String>> {
        self.inner.in_progress_operations(op).await
    }
}


fn request(op: &str, ou: &str) -> RunRequest {
    RunRequest::from_value(serde_json::json!({
        "operation": op,
        "permissionSet": "AdministratorAccess",
        "principal": {"type": "GROUP", "name": "PlatformAdmins"},
        "targets": {"ous": [ou]}
    }))
    .unwrap()
}

#[tokio::test]
async fn assign_by_ou_rerun_and_revoke() {
    let moto = Moto::seeded();
    let clients = moto.clients().await;
    create_table(&clients.dynamodb, "sso-fanout-e2e").await.unwrap();
    let ic = Arc::new(Counting {
        inner: AwsIdentityCenter::from_clients(&clients, IdentityCenterConfig::default()),
        creates: AtomicU64::new(0),
        deletes: AtomicU64::new(0),
    });
    let store = Arc::new(DynamoStore::new(clients.dynamodb.clone(), "sso-fanout-e2e"));
    let services =
        Services {
        org: Arc::new(AwsOrgDirectory::new(clients.organizations.clone())),
        directory: Arc::new(AwsIdentityCenter::from_clients(&clients, IdentityCenterConfig::default())),
        ops: ic.clone(),
        store: store.clone(),
        // The stack's quota ledger, in the same table (contention is covered by aws_ledger).
        quota: Some(Ledger::new(Arc::new(DynamoLedger::new(clients.dynamodb.clone(), "sso-fanout-e2e")), Arc::new(WallClock))),
    };
    let config = PlannerConfig::default();
    let ps = moto.permission_set("AdministratorAccess");
    let admins = moto.group("PlatformAdmins");
    let prod: BTreeSet<AccountId> = moto.accounts_under(&["Prod"]).iter().map(|n| moto.account_id(n)).collect();
    let others: Vec<AccountId> =
        moto.accounts().iter().map(|a| a["id"].as_str().unwrap().parse().unwrap()).filter(|id| !prod.contains(id)).collect();
    assert_eq!(prod.len(), 6, "Prod holds Payments (3), Search (2) and one account directly");
    let seeded = moto.account_id("prod-payments-001");

    // 1. Assign to the Prod OU, recursively: the seeded assignment is skipped, 5 are created.
    let plan = plan_run(&services, &request("assign", &moto.ou("Prod")), &config).await.unwrap();
    assert_eq!(plan.target_count(), 6);
    assert_eq!(plan.changes(), 5);
    assert_eq!(plan.skipped.iter().map(|i| i.account_id.clone()).collect::<Vec<_>>(), vec![seeded.clone()]);
    let summary = execute(&services, &plan, EngineOptions::default(), None).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    assert_eq!((summary.counts.succeeded, summary.counts.skipped, summary.counts.failed), (5, 1, 0));
    assert_eq!(ic.creates.load(Ordering::SeqCst), 5);
    for account in &prod {
        assert_eq!(moto.holders(&clients, account, &ps).await, vec![admins.clone()], "account {account}");
    }
    for account in &others {
        assert!(moto.holders(&clients, account, &ps).await.is_empty(), "account {account} is outside Prod");
    }
    let stored = store.get_run(&plan.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Finished);
    assert_eq!(stored.summary.as_ref(), Some(&summary));
    assert_eq!(store.results(&plan.run_id).await.unwrap().len(), 5);
    assert!(store.cached_org(&plan.scope).await.unwrap().is_some(), "the planner filled the account cache");

    // 2. Re-run: everything is already assigned, so no write at all (moto would store a
    //    duplicate for a second create, so the read-back below would show it).
    let rerun = plan_run(&services, &request("assign", &moto.ou("Prod")), &config).await.unwrap();
    assert_eq!((rerun.changes(), rerun.skipped.len()), (0, 6));
    let summary = execute(&services, &rerun, EngineOptions::default(), None).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert_eq!(summary.counts.skipped, 6);
    assert_eq!(ic.creates.load(Ordering::SeqCst), 5, "zero CreateAccountAssignment calls on the re-run");
    for account in &prod {
        assert_eq!(moto.holders(&clients, account, &ps).await, vec![admins.clone()], "no duplicate in {account}");
    }

    // 3. Revoke from the same OU: all six go, nothing else is touched.
    let revoke = plan_run(&services, &request("revoke", &moto.ou("Prod")), &config).await.unwrap();
    assert_eq!(revoke.changes(), 6);
    let summary = execute(&services, &revoke, EngineOptions::default(), None).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{summary:#?}");
    assert_eq!(summary.counts.succeeded, 6);
    assert_eq!(ic.deletes.load(Ordering::SeqCst), 6);
    for account in &prod {
        assert!(moto.holders(&clients, account, &ps).await.is_empty(), "account {account} still assigned");
    }

    // The store lists the three runs, most recent first.
    let runs: Vec<String> = store.list_runs(10).await.unwrap().into_iter().map(|r| r.plan.run_id).collect();
    let mut expected = vec![plan.run_id.clone(), rerun.run_id.clone(), revoke.run_id.clone()];
    expected.sort();
    expected.reverse();
    assert_eq!(runs, expected);
}

#[tokio::test]
async fn nothing_selected_and_unknown_names_are_request_errors() {
    let moto = Moto::seeded();
    let clients = moto.clients().await;
    create_table(&clients.dynamodb, "sso-fanout-e2e").await.unwrap();
    let services = Services::new(
        Arc::new(AwsOrgDirectory::new(clients.organizations.clone())),
        Arc::new(AwsIdentityCenter::from_clients(&clients, IdentityCenterConfig::default())),
        Arc::new(DynamoStore::new(clients.dynamodb.clone(), "sso-fanout-e2e")),
    );
    let config = PlannerConfig::default();
    // Sandbox holds one ACTIVE and one SUSPENDED account: the suspended one is a warning.
    let plan = plan_run(&services, &request("assign", &moto.ou("Sandbox")), &config).await.unwrap();
    assert_eq!(plan.changes(), 1);
    assert!(plan.warnings.iter().any(|w| w.contains("sandbox-bob-001") && w.contains("Suspended")), "{:?}", plan.warnings);

    let mut unknown = request("assign", &moto.ou("Prod"));
    unknown.permission_set = "NoSuchSet".parse().unwrap();
    let e = plan_run(&services, &unknown, &config).await.unwrap_err();
    assert!(e.is_request_error(), "{e:?}");
    assert_eq!(e.error_type(), "InvalidRequest");
}
