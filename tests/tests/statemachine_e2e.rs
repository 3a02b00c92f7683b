//! The real state machine (`statemachine/sso-fanout.asl.json`) end to end, locally: moto in Step
//! Functions execution mode with its Lambda invocations running our built function binaries
//! (tests/local-cloud: moto_shim.py, up.sh), on an organization of 30 member accounts.
//!
//! One local cloud for the whole file (starting it and seeding take a few seconds); the
//! scenarios run in order on it and each asserts what the execution returned, what is in
//! sso-admin and what is in DynamoDB. The shim scales the state machine's Retry waits down
//! (`LOCAL_CLOUD_RETRY_SCALE`) and fails chosen worker batches on purpose for the
//! `sso-fanout-faults` state machine (`LOCAL_CLOUD_FAIL_BATCH`).
//!
//! The function binaries come from `sso_fanout_tests::binaries::dir()`, which builds them
//! (`cargo test` alone does not); `LOCAL_CLOUD_BIN_DIR` skips the build.

use serde_json::{json, Value};
use sso_fanout_aws::{AwsClients, DynamoStore};
use sso_fanout_core::model::Outcome;
use sso_fanout_core::store::{RunLog, RunStatus};
use sso_fanout_tests::local_cloud::{self, Execution, LocalCloud, REGION};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The shim fails batch 0 of the faults state machine twice (then runs it) and batch 1 always.
const FAIL_BATCHES: &str = "0:2,1";

struct Harness {
    cloud: LocalCloud,
    clients: AwsClients,
    store: DynamoStore,
}

impl Harness {
    async fn execute(&self, state_machine: &str, name: Option<&str>, input: &Value) -> Execution {
        local_cloud::execute(&self.clients, state_machine, name, input).await
    }

    /// Principal ids holding `permission_set` in `account`, as sso-admin lists them (moto stores
    /// a duplicate create twice, so a repeated write would show here).
    async fn holders(&self, account: &str, permission_set: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .clients
                .sso_admin
                .list_account_assignments()
                .instance_arn(self.cloud.str_at("/seed/instanceArn"))
                .account_id(account)
                .permission_set_arn(permission_set)
                .set_next_token(token)
                .send()
                .await
                .expect("ListAccountAssignments");
            ids.extend(page.account_assignments().iter().filter_map(|a| a.principal_id().map(str::to_string)));
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return ids;
            }
        }
    }

    /// Asserts who holds `permission_set` in each of `accounts`: exactly one `principal` where
    /// `held`, nobody otherwise.
    async fn assert_held(&self, accounts: &BTreeSet<String>, permission_set: &str, principal: &str, held: bool) {
        for account in accounts {
            let holders = self.holders(account, permission_set).await;
            let expected = if held { vec![principal.to_string()] } else { vec![] };
            assert_eq!(holders, expected, "holders of {permission_set} in {account}");
        }
    }

    /// The stored per-account results of a run, by account.
    async fn results(&self, run_id: &str) -> BTreeMap<String, (Outcome, String)> {
        let results = self.store.results(run_id).await.expect("results");
        let by_account: BTreeMap<_, _> =
            results.iter().map(|r| (r.account_id.to_string(), (r.outcome, format!("{:?}", r.action).to_lowercase()))).collect();
        assert_eq!(by_account.len(), results.len(), "one result per account");
        by_account
    }
}

fn counts(summary: &Value) -> Value {
    summary["counts"].clone()
}

fn request(operation: &str, permission_set: &str, group: &str, targets: Value, tuning: Value) -> Value {
    json!({
        "operation": operation,
        "permissionSet": permission_set,
        "principal": {"type": "GROUP", "name": group},
        "targets": targets,
        "tuning": tuning,
    })
}

#[test]
fn real_state_machine_end_to_end() {
    let started = Instant::now();
    let bin_dir = sso_fanout_tests::binaries::dir();
    let cloud = LocalCloud::up("e2e", &bin_dir, &[("LOCAL_CLOUD_FAIL_BATCH", FAIL_BATCHES)]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let clients = AwsClients::local(&cloud.endpoint(), REGION).await;
        let store = DynamoStore::new(clients.dynamodb.clone(), cloud.str_at("/table"));
        let h = Harness { cloud, clients, store };
        scenarios(&h).await;
    });
    eprintln!("statemachine_e2e: all scenarios in {:.1?}", started.elapsed());
}

async fn scenarios(h: &Harness) {
    let machine = h.cloud.str_at("/stateMachineArn");
    let faults_machine = h.cloud.str_at("/faults/stateMachineArn");
    let admin = h.cloud.str_at("/seed/permissionSets/AdministratorAccess");
    let read_only = h.cloud.str_at("/seed/permissionSets/ReadOnlyAccess");
    let platform_admins = h.cloud.str_at("/seed/groups/PlatformAdmins");
    let developers = h.cloud.str_at("/seed/groups/Developers");

    let active = h.cloud.active_ids("");
    let fleet = h.cloud.active_ids("fleet-");
    let pre_assigned = h.cloud.account_id("prod-payments-001");
    assert_eq!(h.cloud.accounts().len(), 30, "seed.py's 12 member accounts + 18 fleet accounts");
    assert_eq!(active.len(), 29, "one seeded account is SUSPENDED");
    assert_eq!(fleet.len(), 18);
    let suspended: BTreeSet<String> =
        h.cloud.accounts().iter().filter(|a| a["status"] != "ACTIVE").map(|a| a["id"].as_str().unwrap().to_string()).collect();

    // 1. Assign across the organization in several batches (the Map fans out).
    let assign_all = request("assign", "AdministratorAccess", "PlatformAdmins", json!({"filter": "*"}), json!({"batchSize": 8}));
    let e = h.execute(&machine, Some("e2e-assign-all"), &assign_all).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    let plan = e.plan_output();
    let batches = plan["batches"].as_array().expect("planner batches").len();
    assert_eq!(batches, 4, "28 creates in batches of 8: {plan}");
    assert_eq!(e.events("MapIterationStarted").len(), batches, "one Map iteration per batch");
    let run_id = e.output["runId"].as_str().expect("summary runId").to_string();
    assert_eq!(run_id, plan["runId"]);
    assert_eq!(e.output["outcome"], "succeeded", "{}", e.output);
    assert_eq!(counts(&e.output), json!({"total": 29, "succeeded": 28, "skipped": 1, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": 0}));
    assert!(e.output.get("failedBatches").is_none_or(|b| b.as_array().is_some_and(Vec::is_empty)), "{}", e.output);
    h.assert_held(&active, &admin, &platform_admins, true).await;
    h.assert_held(&suspended, &admin, &platform_admins, false).await;
    let management = h.cloud.str_at("/seed/managementAccountId");
    h.assert_held(&BTreeSet::from([management]), &admin, &platform_admins, false).await;
    let results = h.results(&run_id).await;
    let mut created = active.clone();
    created.remove(&pre_assigned);
    assert_eq!(results.keys().cloned().collect::<BTreeSet<_>>(), created, "a stored result for every create");
    assert!(results.values().all(|(o, a)| *o == Outcome::Succeeded && a == "create"), "{results:?}");
    let record = h.store.get_run(&run_id).await.expect("get_run").expect("the run is stored");
    assert_eq!(record.status, RunStatus::Finished);
    let stored = serde_json::to_value(record.summary.expect("stored summary")).unwrap();
    assert_eq!(stored["counts"], e.output["counts"], "the stored summary is the execution's output");

    // 2. The same request again: nothing to do, no write (an empty Map), an unnamed execution.
    let e = h.execute(&machine, None, &assign_all).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    assert_eq!(counts(&e.output), json!({"total": 29, "succeeded": 0, "skipped": 29, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": 0}));
    assert!(e.events("MapIterationStarted").is_empty());
    h.assert_held(&active, &admin, &platform_admins, true).await;

    // 3. Dry run of a revoke: the execution's output is the plan; nothing is written.
    let revoke_fleet = request("revoke", "AdministratorAccess", "PlatformAdmins", json!({"filter": "fleet-*"}), json!({"batchSize": 5}));
    let mut dry = revoke_fleet.clone();
    dry["dryRun"] = json!(true);
    let e = h.execute(&machine, Some("e2e-dry-run"), &dry).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    assert_eq!(e.output["deletes"], 18, "{}", e.output);
    assert_eq!(e.output["creates"], 0);
    let previewed: BTreeSet<String> =
        e.output["accounts"].as_array().expect("plan accounts").iter().map(|a| a["accountId"].as_str().unwrap().to_string()).collect();
    assert_eq!(previewed, fleet);
    assert!(e.events("MapStateEntered").is_empty() && e.events("TaskStateEntered").iter().all(|s| s["name"] == "Plan"));
    let dry_run_id = e.output["runId"].as_str().expect("plan runId");
    assert!(h.store.get_run(dry_run_id).await.expect("get_run").is_none(), "a dry run stores no run");
    assert!(h.store.results(dry_run_id).await.expect("results").is_empty());
    h.assert_held(&fleet, &admin, &platform_admins, true).await;

    // 4. The revoke for real.
    let e = h.execute(&machine, Some("e2e-revoke-fleet"), &revoke_fleet).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    assert_eq!(e.output["operation"], "revoke");
    assert_eq!(counts(&e.output), json!({"total": 18, "succeeded": 18, "skipped": 0, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": 0}));
    h.assert_held(&fleet, &admin, &platform_admins, false).await;
    let others: BTreeSet<String> = active.difference(&fleet).cloned().collect();
    h.assert_held(&others, &admin, &platform_admins, true).await;
    let results = h.results(e.output["runId"].as_str().unwrap()).await;
    assert_eq!(results.keys().cloned().collect::<BTreeSet<_>>(), fleet);
    assert!(results.values().all(|(o, a)| *o == Outcome::Succeeded && a == "delete"), "{results:?}");

    // 5. Invalid requests fail the execution with the planner's InvalidRequest, not retried.
    for (label, bad) in [
        ("e2e-unknown-permission-set", request("assign", "NoSuchPermissionSet", "PlatformAdmins", json!({"filter": "*"}), json!({}))),
        (
            "e2e-filter-matches-nothing",
            request("assign", "AdministratorAccess", "PlatformAdmins", json!({"filter": "nothing-*"}), json!({})),
        ),
    ] {
        let e = h.execute(&machine, Some(label), &bad).await;
        assert_eq!((e.status.as_str(), e.error.as_str()), ("FAILED", "InvalidRequest"), "{label}: {}", e.cause);
        let cause: Value = serde_json::from_str(&e.cause).expect("Cause is the planner's error payload");
        assert_eq!(cause["errorType"], "InvalidRequest");
        let expected = if label.contains("permission") { "NoSuchPermissionSet" } else { "nothing-*" };
        assert!(cause["errorMessage"].as_str().unwrap_or_default().contains(expected), "{label}: {cause}");
        assert_eq!(e.events("TaskScheduled").len(), 1, "{label}: InvalidRequest is not retried");
        assert!(e.events("MapStateEntered").is_empty());
    }

    // 6. Worker failures (the shim, on the sso-fanout-faults state machine): batch 0 fails twice
    //    with Retryable and succeeds on the third attempt; batch 1 fails every attempt, is
    //    caught, and reported as a failed batch with its accounts missing.
    let assign_ro = request("assign", "ReadOnlyAccess", "Developers", json!({"filter": "fleet-*"}), json!({"batchSize": 5}));
    let e = h.execute(&faults_machine, Some("e2e-worker-faults"), &assign_ro).await;
    assert_eq!(e.status, "SUCCEEDED", "a failed batch does not fail the execution: {} {}", e.error, e.cause);
    let plan = e.plan_output();
    let batch_sizes: Vec<u64> = plan["batches"].as_array().unwrap().iter().map(|b| b["accounts"].as_u64().unwrap()).collect();
    assert!(batch_sizes.len() >= 3, "{plan}");
    let lost = batch_sizes[1] as usize;
    let retryable = e.events("TaskFailed").iter().filter(|t| t["error"] == "Retryable").count();
    assert_eq!(retryable, 2 + 5, "batch 0: 2 failed attempts; batch 1: 1 + MaxAttempts 4");
    assert_eq!(e.output["outcome"], "incomplete", "{}", e.output);
    assert_eq!(counts(&e.output), json!({"total": 18, "succeeded": 18 - lost, "skipped": 0, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": lost}));
    let failed_batches = e.output["failedBatches"].as_array().expect("failedBatches");
    assert_eq!(failed_batches.len(), 1, "{}", e.output);
    assert_eq!(failed_batches[0]["batch"], 1);
    assert_eq!(failed_batches[0]["error"], "Retryable");
    assert!(failed_batches[0]["cause"].as_str().unwrap_or_default().contains("injected"), "{}", failed_batches[0]);
    let missing: BTreeSet<String> = e.output["failures"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|f| {
            assert_eq!(f["outcome"], "missing", "{f}");
            assert!(f["reason"].as_str().unwrap_or_default().contains("batch 1 failed: Retryable"), "{f}");
        })
        .map(|f| f["accountId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(missing.len(), lost);
    let landed: BTreeSet<String> = fleet.difference(&missing).cloned().collect();
    h.assert_held(&landed, &read_only, &developers, true).await;
    h.assert_held(&missing, &read_only, &developers, false).await;
    let results = h.results(e.output["runId"].as_str().unwrap()).await;
    assert_eq!(results.keys().cloned().collect::<BTreeSet<_>>(), landed, "results only for the batches that ran");

    // 7. Re-running the same request (no faults) does only what is missing.
    let e = h.execute(&machine, Some("e2e-rerun-after-faults"), &assign_ro).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    assert_eq!(counts(&e.output), json!({"total": 18, "succeeded": lost, "skipped": 18 - lost, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": 0}));
    h.assert_held(&fleet, &read_only, &developers, true).await;

    // 8. The CLI starts and follows an execution as a CI job would (stderr is a log, not a
    //    terminal): exit 0, the summary as JSON with the execution's ARN, progress on stderr.
    let out = h
        .cloud
        .cli()
        .args(["start", "--state-machine", &machine, "--wait", "--output", "json"])
        .args(["--operation", "assign", "--permission-set", "ReadOnlyAccess", "--group", "Developers", "--filter", "fleet-*"])
        .output()
        .expect("sso-fanout start runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(summary["executionArn"].as_str().is_some_and(|a| a.contains(":execution:")), "{summary}");
    assert_eq!(summary["outcome"], "succeeded", "{summary}");
    assert_eq!(summary["counts"]["skipped"], 18, "everything was already assigned: {summary}");
    assert!(stderr.contains("started arn:"), "{stderr}");

    // 9. Input that would change what a run touches is refused before any execution starts:
    //    a key given twice (the last `operation` would win: a revoke) and contradicting tags.
    //    (Step Functions hands the planner a parsed input; what it does with a key given twice
    //    is not documented, and moto keeps the last one, so `start` checks the text itself, and
    //    the planner checks the event's text where it sees it: its one-shot mode here.)
    let executions = || async { h.clients.sfn.list_executions().state_machine_arn(&machine).send().await.expect("ListExecutions").executions().len() };
    let before = executions().await;
    let twice = r#"{"operation":"assign","operation":"revoke","permissionSet":"AdministratorAccess",
        "principal":{"type":"GROUP","name":"PlatformAdmins"},"targets":{"filter":"*"}}"#;
    let request_file = h.cloud.dir().join("twice.json");
    std::fs::write(&request_file, twice).unwrap();
    let refused = [
        vec!["--request".to_string(), request_file.display().to_string()],
        ["--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--tag", "env=prod", "--tag", "env=dev"]
            .map(String::from)
            .to_vec(),
    ];
    for args in refused {
        let out = h.cloud.cli().args(["start", "--state-machine", &machine, "--output", "json"]).args(&args).output().expect("sso-fanout start runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("nothing was changed"), "{args:?}: {stderr}");
    }
    assert_eq!(executions().await, before, "no execution was started");
    let mut planner = std::process::Command::new(sso_fanout_tests::binaries::dir().join("planner"))
        .arg("--once")
        .env("FANOUT_TABLE", h.cloud.str_at("/table"))
        .env("AWS_ENDPOINT_URL", h.cloud.endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("planner runs");
    std::io::Write::write_all(&mut planner.stdin.take().unwrap(), twice.as_bytes()).unwrap();
    let out = planner.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let diagnostic: Value = serde_json::from_slice(&out.stdout).expect("a Lambda-style error");
    assert_eq!(diagnostic["errorType"], "InvalidRequest", "{diagnostic}");
    assert!(diagnostic["errorMessage"].as_str().unwrap().contains("`operation`"), "{diagnostic}");
    h.assert_held(&others, &admin, &platform_admins, true).await;
}
