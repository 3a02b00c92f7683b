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
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REGION: &str = "us-east-1";
/// The shim fails batch 0 of the faults state machine twice (then runs it) and batch 1 always.
const FAIL_BATCHES: &str = "0:2,1";
const EXECUTION_DEADLINE: Duration = Duration::from_secs(120);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The local cloud of this test process; stopped when dropped, also when a test panics (the
/// state directory with the logs is then kept and its path printed).
struct LocalCloud {
    dir: PathBuf,
    env: Value,
}

impl LocalCloud {
    fn up(bin_dir: &Path) -> LocalCloud {
        let dir = repo_root().join(".local-cloud").join(format!("e2e-{}", std::process::id()));
        let started = Instant::now();
        // The guard exists before up.sh runs, so a half-started cloud is stopped too.
        let mut cloud = LocalCloud { dir: dir.clone(), env: Value::Null };
        let out = Command::new("bash")
            .arg(repo_root().join("tests/local-cloud/up.sh"))
            .env("LOCAL_CLOUD_DIR", &dir)
            .env("LOCAL_CLOUD_BIN_DIR", bin_dir)
            .env("LOCAL_CLOUD_RETRY_SCALE", "0.01")
            .env("LOCAL_CLOUD_FAIL_BATCH", FAIL_BATCHES)
            .env("LOCAL_CLOUD_PARENT_PID", std::process::id().to_string())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .expect("run tests/local-cloud/up.sh");
        assert!(out.status.success(), "tests/local-cloud/up.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(dir.join("env.json")).expect("up.sh writes env.json");
        cloud.env = serde_json::from_str(&text).expect("env.json is JSON");
        let endpoint = cloud.endpoint();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "not a local endpoint: {endpoint}");
        eprintln!("local cloud on {endpoint} in {:.1?}", started.elapsed());
        cloud
    }

    fn endpoint(&self) -> String {
        self.str_at("/endpoint")
    }

    fn str_at(&self, pointer: &str) -> String {
        self.env.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("env.json has no {pointer}")).to_string()
    }

    fn accounts(&self) -> Vec<Value> {
        self.env["seed"]["accounts"].as_array().cloned().unwrap_or_default()
    }

    /// Ids of the seeded member accounts that are ACTIVE and whose name starts with `prefix`.
    fn active_ids(&self, prefix: &str) -> BTreeSet<String> {
        self.accounts()
            .iter()
            .filter(|a| a["status"] == "ACTIVE" && a["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn account_id(&self, name: &str) -> String {
        let a = self.accounts().into_iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("no account {name}"));
        a["id"].as_str().unwrap().to_string()
    }

    fn tail(&self, file: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            eprintln!("--- last lines of {}/functions.log ---\n{}", self.dir.display(), self.tail("functions.log", 60));
            eprintln!("--- last lines of {}/moto.log ---\n{}", self.dir.display(), self.tail("moto.log", 30));
        }
        let mut down = Command::new("bash");
        down.arg(repo_root().join("tests/local-cloud/down.sh")).env("LOCAL_CLOUD_DIR", &self.dir).stdin(Stdio::null());
        if !failing {
            down.arg("--purge");
        }
        match down.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("tests/local-cloud/down.sh failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("cannot run tests/local-cloud/down.sh: {e}"),
        }
        if failing {
            eprintln!("local cloud stopped; logs kept in {}", self.dir.display());
        }
    }
}

struct Execution {
    arn: String,
    status: String,
    output: Value,
    error: String,
    cause: String,
    history: Vec<Value>,
}

impl Execution {
    /// History events of `kind` (e.g. "TaskFailed") as JSON-ish values.
    fn events(&self, kind: &str) -> Vec<&Value> {
        self.history.iter().filter(|e| e["type"] == kind).collect()
    }

    /// The planner's output, from the Plan state's exit.
    fn plan_output(&self) -> Value {
        self.history
            .iter()
            .find(|e| e["type"] == "TaskStateExited" && e["name"] == "Plan")
            .map(|e| serde_json::from_str(e["output"].as_str().unwrap_or("null")).expect("Plan output is JSON"))
            .unwrap_or_else(|| panic!("{}: no Plan state exit in the history", self.arn))
    }
}

struct Harness {
    cloud: LocalCloud,
    clients: AwsClients,
    store: DynamoStore,
}

impl Harness {
    async fn execute(&self, state_machine: &str, name: Option<&str>, input: &Value) -> Execution {
        let started = Instant::now();
        let arn = self
            .clients
            .sfn
            .start_execution()
            .state_machine_arn(state_machine)
            .set_name(name.map(str::to_string))
            .input(input.to_string())
            .send()
            .await
            .expect("StartExecution")
            .execution_arn()
            .to_string();
        let described = loop {
            let d = self.clients.sfn.describe_execution().execution_arn(&arn).send().await.expect("DescribeExecution");
            if d.status().as_str() != "RUNNING" {
                break d;
            }
            assert!(started.elapsed() < EXECUTION_DEADLINE, "{arn} still RUNNING after {EXECUTION_DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut history = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .clients
                .sfn
                .get_execution_history()
                .execution_arn(&arn)
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .expect("GetExecutionHistory");
            for e in page.events() {
                // The few fields the assertions use, flattened.
                let mut v = json!({"type": e.r#type().as_str(), "id": e.id()});
                if let Some(d) = e.task_failed_event_details() {
                    v["error"] = json!(d.error());
                    v["cause"] = json!(d.cause());
                }
                if let Some(d) = e.state_exited_event_details() {
                    v["name"] = json!(d.name());
                    v["output"] = json!(d.output());
                }
                if let Some(d) = e.state_entered_event_details() {
                    v["name"] = json!(d.name());
                }
                history.push(v);
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let execution = Execution {
            status: described.status().as_str().to_string(),
            output: described.output().map(|o| serde_json::from_str(o).expect("output is JSON")).unwrap_or(Value::Null),
            error: described.error().unwrap_or_default().to_string(),
            cause: described.cause().unwrap_or_default().to_string(),
            history,
            arn,
        };
        eprintln!("{} -> {} {} in {:.1?}", name.unwrap_or("(unnamed)"), execution.status, execution.error, started.elapsed());
        execution
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
    let cloud = LocalCloud::up(&bin_dir);
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
    assert_eq!(counts(&e.output), json!({"total": 29, "succeeded": 28, "skipped": 1, "failed": 0, "timedOut": 0, "missing": 0}));
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
    assert_eq!(counts(&e.output), json!({"total": 29, "succeeded": 0, "skipped": 29, "failed": 0, "timedOut": 0, "missing": 0}));
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
    assert_eq!(counts(&e.output), json!({"total": 18, "succeeded": 18, "skipped": 0, "failed": 0, "timedOut": 0, "missing": 0}));
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
    assert_eq!(counts(&e.output), json!({"total": 18, "succeeded": 18 - lost, "skipped": 0, "failed": 0, "timedOut": 0, "missing": lost}));
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
    assert_eq!(counts(&e.output), json!({"total": 18, "succeeded": lost, "skipped": 18 - lost, "failed": 0, "timedOut": 0, "missing": 0}));
    h.assert_held(&fleet, &read_only, &developers, true).await;

    // 8. The CLI starts and follows an execution as a CI job would (stderr is a log, not a
    //    terminal): exit 0, the summary as JSON with the execution's ARN, progress on stderr.
    let out = Command::new(sso_fanout_tests::binaries::dir().join("sso-fanout"))
        .args(["start", "--state-machine", &machine, "--wait", "--output", "json"])
        .args(["--operation", "assign", "--permission-set", "ReadOnlyAccess", "--group", "Developers", "--filter", "fleet-*"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", h.cloud.endpoint())
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .expect("sso-fanout start runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(summary["executionArn"].as_str().is_some_and(|a| a.contains(":execution:")), "{summary}");
    assert_eq!(summary["outcome"], "succeeded", "{summary}");
    assert_eq!(summary["counts"]["skipped"], 18, "everything was already assigned: {summary}");
    assert!(stderr.contains("started arn:"), "{stderr}");
}
