//! Desired state end to end, locally: a rules document through the real state machine
//! (`statemachine/sso-fanout.asl.json` on moto with our built planner/worker/reporter, see
//! tests/local-cloud) and through the CLI's `plan --rules` (the real SDK, pointed at the same moto
//! by `AWS_ENDPOINT_URL`), on the local cloud's organization of 30 member accounts.
//!
//! The document has an OU-recursive selector (Prod holds Payments and Search), a tag selector,
//! a name wildcard with an `exclude`, a rule with two principals (a group and a user), a
//! `managed` scope and a protected account. In order, on one local cloud: plan (drift, CLI exit
//! 2), apply (stored as `baseline`), plan again (no drift, CLI exit 0), an out-of-band delete
//! (drift, exit 2; `{"reconcile": "baseline"}` restores it), a prune that deletes only inside
//! `managed` and never on the protected or management account, the max-deletes guard (the
//! execution fails with InvalidRequest, nothing changed, creates included), and bad documents
//! refused by field with nothing changed.
//!
//! Every drift report is checked whole against what this file computes from the seeded
//! organization and from sso-admin's own per-account listing (`ListAccountAssignments`), which
//! is independent of the principal-wide listing the planner reads.

use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
use serde_json::{json, Value};
use sso_fanout_aws::{AwsClients, DynamoStore};
use sso_fanout_core::desired::StoredDocument;
use sso_fanout_core::model::{Action, Outcome, Scope};
use sso_fanout_core::rules::RulesDocument;
use sso_fanout_core::store::{DocumentStore, RunLog};
use sso_fanout_tests::local_cloud::{self, Execution, LocalCloud, REGION};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

const ADMIN: &str = "AdministratorAccess";
const READ_ONLY: &str = "ReadOnlyAccess";
/// Created by the test, outside `managed`.
const BILLING: &str = "BillingReadOnly";
const PLATFORM_ADMINS: &str = "GROUP PlatformAdmins";
const DEVELOPERS: &str = "GROUP Developers";
const ALICE: &str = "USER alice";
/// What `managed` covers (the document's permission sets and principals).
const MANAGED_SETS: [&str; 2] = [ADMIN, READ_ONLY];
const MANAGED_PRINCIPALS: [&str; 3] = [PLATFORM_ADMINS, DEVELOPERS, ALICE];
/// Never pruned.
const PROTECTED: &str = "security-audit-001";
const MANAGEMENT: &str = "management";

/// One assignment, by names: (account name, permission set name, `TYPE principal-name`).
type Triple = (String, String, String);

fn triple(account: &str, permission_set: &str, principal: &str) -> Triple {
    (account.to_string(), permission_set.to_string(), principal.to_string())
}

/// The document: three rules and the prune scope, in the seeded organization's ids.
fn document(cloud: &LocalCloud) -> Value {
    json!({
        "version": 1,
        "rules": [
            {
                // Below Prod: Prod/Payments and Prod/Search too (recursive is the default).
                "id": "prod-admins",
                "permissionSet": ADMIN,
                "principals": [{"type": "GROUP", "name": "PlatformAdmins"}],
                "targets": [{"ous": [cloud.str_at("/seed/ous/Prod")]}],
            },
            {
                // Two principals, a group and a user, on every account tagged team=fleet-a.
                "id": "fleet-a-readers",
                "permissionSet": READ_ONLY,
                "principals": [{"type": "GROUP", "name": "Developers"}, {"type": "USER", "name": "alice"}],
                "targets": [{"tags": {"team": "fleet-a"}}],
            },
            {
                // Name wildcards, minus the search team's accounts (sandbox-bob-001 is SUSPENDED).
                "id": "dev-sandbox-admins",
                "permissionSet": ADMIN,
                "principals": [{"type": "GROUP", "name": "Developers"}],
                "targets": [{"names": ["dev-*", "sandbox-*"]}],
                "exclude": [{"tags": {"team": "search"}}],
            },
        ],
        "managed": {
            "permissionSets": [ADMIN, READ_ONLY],
            "principals": [
                {"type": "GROUP", "name": "PlatformAdmins"},
                {"type": "GROUP", "name": "Developers"},
                {"type": "USER", "name": "alice"},
            ],
        },
        "protectedAccounts": [cloud.account_id(PROTECTED)],
    })
}

/// What each rule declares, computed here from the seed (not by the product's selection code).
fn declared(cloud: &LocalCloud) -> BTreeMap<&'static str, BTreeSet<Triple>> {
    let accounts = cloud.accounts();
    let active = || accounts.iter().filter(|a| a["status"] == "ACTIVE");
    let name = |a: &Value| a["name"].as_str().unwrap().to_string();
    let mut rules = BTreeMap::new();
    rules.insert(
        "prod-admins",
        active().filter(|a| a["ouNames"][0] == "Prod").map(|a| triple(&name(a), ADMIN, PLATFORM_ADMINS)).collect(),
    );
    rules.insert(
        "fleet-a-readers",
        active()
            .filter(|a| a["tags"]["team"] == "fleet-a")
            .flat_map(|a| [triple(&name(a), READ_ONLY, DEVELOPERS), triple(&name(a), READ_ONLY, ALICE)])
            .collect(),
    );
    rules.insert(
        "dev-sandbox-admins",
        active()
            .filter(|a| (name(a).starts_with("dev-") || name(a).starts_with("sandbox-")) && a["tags"]["team"] != "search")
            .map(|a| triple(&name(a), ADMIN, DEVELOPERS))
            .collect(),
    );
    rules
}

fn all_declared(cloud: &LocalCloud) -> BTreeSet<Triple> {
    declared(cloud).into_values().flatten().collect()
}

/// The drift report a dry run must give for the live state `held`: per rule (accounts, present,
/// missing), the undeclared assignments inside `managed`, the kept (protected) ones.
struct ExpectedDrift {
    rules: BTreeMap<String, (usize, usize, BTreeSet<Triple>)>,
    undeclared: BTreeSet<Triple>,
    protected: BTreeSet<Triple>,
}

fn expected_drift(cloud: &LocalCloud, held: &BTreeSet<Triple>) -> ExpectedDrift {
    let declared = declared(cloud);
    let rules = declared
        .iter()
        .map(|(id, triples)| {
            let accounts = triples.iter().map(|t| &t.0).collect::<BTreeSet<_>>().len();
            let present = triples.intersection(held).count();
            (id.to_string(), (accounts, present, triples.difference(held).cloned().collect()))
        })
        .collect();
    let all: BTreeSet<Triple> = declared.into_values().flatten().collect();
    let inactive: BTreeSet<String> =
        cloud.accounts().iter().filter(|a| a["status"] != "ACTIVE").map(|a| a["name"].as_str().unwrap().to_string()).collect();
    let (mut undeclared, mut protected) = (BTreeSet::new(), BTreeSet::new());
    for t in held {
        let in_managed = MANAGED_SETS.contains(&t.1.as_str()) && MANAGED_PRINCIPALS.contains(&t.2.as_str());
        if !in_managed || all.contains(t) || inactive.contains(&t.0) {
            continue;
        }
        if t.0 == PROTECTED || t.0 == MANAGEMENT {
            protected.insert(t.clone());
        } else {
            undeclared.insert(t.clone());
        }
    }
    ExpectedDrift { rules, undeclared, protected }
}

/// `TYPE name` of a pair's or a plan's principal.
fn principal_text(p: &Value) -> String {
    format!("{} {}", p["type"].as_str().unwrap(), p["name"].as_str().unwrap())
}

struct Harness {
    cloud: LocalCloud,
    clients: AwsClients,
    store: DynamoStore,
    machine: String,
    /// The CLI's embedded store and quota file, and the document as a file for `plan --rules`.
    work: PathBuf,
}

impl Harness {
    async fn execute(&self, name: &str, input: &Value) -> Execution {
        local_cloud::execute(&self.clients, &self.machine, Some(name), input).await
    }

    fn instance_arn(&self) -> String {
        self.cloud.str_at("/seed/instanceArn")
    }

    fn account_names(&self) -> BTreeMap<String, String> {
        let mut names: BTreeMap<String, String> =
            self.cloud.accounts().iter().map(|a| (a["id"].as_str().unwrap().to_string(), a["name"].as_str().unwrap().to_string())).collect();
        names.insert(self.cloud.str_at("/seed/managementAccountId"), MANAGEMENT.to_string());
        names
    }

    /// Drift entries (`missing`, `undeclared`, `protected`) as triples (accounts by this file's
    /// names: the management account is `management`).
    fn entries(&self, list: &Value) -> BTreeSet<Triple> {
        let names = self.account_names();
        list.as_array()
            .unwrap_or_else(|| panic!("not a list of drift entries: {list}"))
            .iter()
            .map(|e| {
                let account = &names[e["accountId"].as_str().unwrap()];
                triple(account, e["permissionSet"].as_str().unwrap(), e["principal"].as_str().unwrap())
            })
            .collect()
    }

    fn principal_id(&self, principal: &str) -> (PrincipalType, String) {
        match principal.split_once(' ') {
            Some(("GROUP", name)) => (PrincipalType::Group, self.cloud.str_at(&format!("/seed/groups/{name}"))),
            Some(("USER", name)) => (PrincipalType::User, self.cloud.str_at(&format!("/seed/users/{name}"))),
            _ => panic!("not a principal: {principal}"),
        }
    }

    /// Every permission set of the instance, name -> ARN.
    async fn permission_sets(&self) -> BTreeMap<String, String> {
        let pages: Vec<_> = self
            .clients
            .sso_admin
            .list_permission_sets()
            .instance_arn(self.instance_arn())
            .into_paginator()
            .send()
            .try_collect()
            .await
            .expect("ListPermissionSets");
        let mut sets = BTreeMap::new();
        for arn in pages.iter().flat_map(|p| p.permission_sets()) {
            let d = self
                .clients
                .sso_admin
                .describe_permission_set()
                .instance_arn(self.instance_arn())
                .permission_set_arn(arn)
                .send()
                .await
                .expect("DescribePermissionSet");
            sets.insert(d.permission_set().and_then(|p| p.name()).expect("a named permission set").to_string(), arn.clone());
        }
        sets
    }

    /// Every assignment of the instance, as sso-admin lists them per account and permission set
    /// (every seeded account, the management account, every permission set). A duplicate (moto
    /// keeps a repeated create twice) fails the test.
    async fn held(&self) -> BTreeSet<Triple> {
        let names = self.account_names();
        let principals: BTreeMap<String, String> = ["groups", "users"]
            .iter()
            .flat_map(|kind| {
                let prefix = if *kind == "groups" { "GROUP" } else { "USER" };
                self.cloud.env["seed"][kind].as_object().unwrap().iter().map(move |(n, id)| (id.as_str().unwrap().to_string(), format!("{prefix} {n}")))
            })
            .collect();
        let mut held = BTreeSet::new();
        for (ps_name, ps_arn) in self.permission_sets().await {
            for (account, account_name) in &names {
                let pages: Vec<_> = self
                    .clients
                    .sso_admin
                    .list_account_assignments()
                    .instance_arn(self.instance_arn())
                    .account_id(account)
                    .permission_set_arn(&ps_arn)
                    .into_paginator()
                    .send()
                    .try_collect()
                    .await
                    .expect("ListAccountAssignments");
                for a in pages.iter().flat_map(|p| p.account_assignments()) {
                    let id = a.principal_id().expect("a principal id");
                    let principal = principals.get(id).cloned().unwrap_or_else(|| format!("? {id}"));
                    let t = triple(account_name, &ps_name, &principal);
                    assert!(held.insert(t.clone()), "a duplicate assignment in moto: {t:?}");
                }
            }
        }
        held
    }

    /// Creates or deletes one assignment directly (out of band); moto completes it at once.
    async fn change(&self, create: bool, t: &Triple) {
        let account = self.account_names().into_iter().find(|(_, n)| *n == t.0).map(|(id, _)| id).expect("a known account");
        let ps = self.permission_sets().await.get(&t.1).cloned().unwrap_or_else(|| panic!("no permission set {}", t.1));
        let (kind, id) = self.principal_id(&t.2);
        // The create and the delete take the same fields; only the call and its answer differ.
        macro_rules! send {
            ($call:ident, $status:ident, $api:literal) => {
                self.clients
                    .sso_admin
                    .$call()
                    .instance_arn(self.instance_arn())
                    .target_id(&account)
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(&ps)
                    .principal_type(kind)
                    .principal_id(&id)
                    .send()
                    .await
                    .expect($api)
                    .$status()
                    .and_then(|s| s.status())
                    .map(|s| s.as_str().to_string())
            };
        }
        let status = if create {
            send!(create_account_assignment, account_assignment_creation_status, "CreateAccountAssignment")
        } else {
            send!(delete_account_assignment, account_assignment_deletion_status, "DeleteAccountAssignment")
        };
        assert_eq!(status.as_deref(), Some("SUCCEEDED"), "moto completes {t:?} at once");
    }

    /// The `(pk, sk)` of every stored rules document, read from the table directly.
    async fn stored_document_keys(&self) -> BTreeSet<(String, String)> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let pages: Vec<_> = self
            .clients
            .dynamodb
            .scan()
            .table_name(self.cloud.str_at("/table"))
            .filter_expression("begins_with(pk, :doc)")
            .expression_attribute_values(":doc", AttributeValue::S("DOC#".into()))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .expect("Scan");
        let s = |item: &std::collections::HashMap<String, AttributeValue>, key: &str| item[key].as_s().expect("a string key").clone();
        pages.iter().flat_map(|p| p.items()).map(|item| (s(item, "pk"), s(item, "sk"))).collect()
    }

    /// `sso-fanout plan --rules FILE` against the local cloud's moto: (exit code, the JSON plan).
    fn cli_plan(&self, document: &Value, label: &str) -> (i32, Value, String) {
        let file = self.work.join(format!("{label}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(document).unwrap()).unwrap();
        let out = self
            .cloud
            .cli()
            .env("HOME", &self.work)
            .args(["plan", "--rules", file.to_str().unwrap(), "--output", "json"])
            .args(["--store", self.work.join("store.redb").to_str().unwrap()])
            .args(["--quota-file", self.work.join("quota.json").to_str().unwrap()])
            .output()
            .expect("sso-fanout plan runs");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let plan = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().expect("an exit code"), plan, stderr)
    }

    /// Asserts a plan preview (a dry run's execution output, or `plan --output json`) whole:
    /// the drift report is what `held` (moto's listing) and the document say, and the changes
    /// are its creates (and, with a prune that is not refused, its deletes).
    fn assert_preview(&self, preview: &Value, held: &BTreeSet<Triple>, prune: bool, max_deletes: u64) {
        let expected = expected_drift(&self.cloud, held);
        let desired = &preview["desired"];
        let rules = desired["rules"].as_array().unwrap_or_else(|| panic!("no desired.rules in {preview}"));
        assert_eq!(
            rules.iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>(),
            ["prod-admins", "fleet-a-readers", "dev-sandbox-admins"],
            "the rules in document order"
        );
        for rule in rules {
            let id = rule["id"].as_str().unwrap();
            let (accounts, present, missing) = &expected.rules[id];
            assert_eq!(rule["accounts"], *accounts, "{id}: accounts selected");
            assert_eq!(rule["present"], *present, "{id}: present");
            assert_eq!(self.entries(&rule["missing"]), *missing, "{id}: missing");
        }
        assert_eq!(self.entries(&desired["undeclared"]), expected.undeclared, "undeclared inside `managed`");
        assert_eq!(self.entries(&desired["protected"]), expected.protected, "undeclared on protected/management accounts");
        let refused = prune && expected.undeclared.len() as u64 > max_deletes;
        let deletes = if prune && !refused { expected.undeclared.len() } else { 0 };
        assert_eq!(desired["prune"], json!({"enabled": prune, "maxDeletes": max_deletes, "deletes": deletes, "refused": refused}));
        // One principal-wide listing per principal (3), one look-up per name (2 sets, 3 principals).
        let cost = &desired["cost"];
        assert_eq!((cost["principalsListed"].as_u64(), cost["lookups"].as_u64()), (Some(3), Some(5)), "{cost}");
        assert!(cost["listingCalls"].as_u64().is_some_and(|c| c >= 3), "{cost}");

        // The changes: each account item's pair names what it changes.
        let pairs: Vec<(String, String)> = preview["pairs"]
            .as_array()
            .expect("pairs")
            .iter()
            .map(|p| (p["permissionSet"]["name"].as_str().unwrap().to_string(), principal_text(&p["principal"])))
            .collect();
        assert_eq!(
            pairs[..4],
            [
                (ADMIN.to_string(), PLATFORM_ADMINS.to_string()),
                (READ_ONLY.to_string(), DEVELOPERS.to_string()),
                (READ_ONLY.to_string(), ALICE.to_string()),
                (ADMIN.to_string(), DEVELOPERS.to_string()),
            ],
            "the declared pairs in document order"
        );
        let names = self.account_names();
        let items: BTreeSet<(Triple, String)> = preview["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| {
                let (ps, principal) = &pairs[a["pair"].as_u64().unwrap_or(0) as usize];
                (triple(&names[a["accountId"].as_str().unwrap()], ps, principal), a["action"].as_str().unwrap().to_string())
            })
            .collect();
        let all = all_declared(&self.cloud);
        let mut want: BTreeSet<(Triple, String)> = BTreeSet::new();
        for t in &all {
            want.insert((t.clone(), if held.contains(t) { "skip" } else { "create" }.to_string()));
        }
        if deletes > 0 {
            want.extend(expected.undeclared.iter().map(|t| (t.clone(), "delete".to_string())));
        }
        if refused {
            // A refused prune plans nothing to change (not even its creates).
            want.retain(|(_, action)| action == "skip");
        }
        assert_eq!(items, want, "the plan's items");
        let missing: usize = expected.rules.values().map(|(_, _, m)| m.len()).sum();
        assert_eq!(preview["creates"], if refused { 0 } else { missing }, "creates");
        assert_eq!(preview["deletes"], deletes, "deletes");
    }

    /// Runs `input` as a dry run and asserts its preview against moto's listing; returns it.
    async fn dry_run(&self, name: &str, input: &Value, held: &BTreeSet<Triple>) -> Value {
        let mut dry = input.clone();
        dry["dryRun"] = json!(true);
        let e = self.execute(name, &dry).await;
        assert_eq!(e.status, "SUCCEEDED", "{name}: {} {}", e.error, e.cause);
        assert!(e.events("MapStateEntered").is_empty(), "{name}: a dry run runs no worker");
        let prune = input["prune"].as_bool().unwrap_or(false);
        let max_deletes = input["maxDeletes"].as_u64().unwrap_or(20);
        self.assert_preview(&e.output, held, prune, max_deletes);
        let run_id = e.output["runId"].as_str().expect("plan runId");
        assert!(self.store.get_run(run_id).await.expect("get_run").is_none(), "{name}: a dry run stores no run");
        assert_eq!(&self.held().await, held, "{name}: a dry run changes nothing");
        e.output
    }

    /// Asserts `e` failed in the planner with InvalidRequest naming `field` (and `needle`), not
    /// retried, no worker run; returns the error message.
    fn assert_invalid(&self, e: &Execution, label: &str, field: &str, needle: &str) -> String {
        assert_eq!((e.status.as_str(), e.error.as_str()), ("FAILED", "InvalidRequest"), "{label}: {}", e.cause);
        let cause: Value = serde_json::from_str(&e.cause).unwrap_or_else(|_| panic!("{label}: Cause is the planner's error payload: {}", e.cause));
        assert_eq!(cause["errorType"], "InvalidRequest", "{label}");
        let message = cause["errorMessage"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(&format!("`{field}`")), "{label}: the error names `{field}`: {message}");
        assert!(message.contains(needle), "{label}: {needle:?} in {message}");
        assert_eq!(e.events("TaskScheduled").len(), 1, "{label}: InvalidRequest is not retried");
        assert!(e.events("MapStateEntered").is_empty(), "{label}: no worker ran");
        message
    }

    async fn stored(&self, scope: &Scope, name: &str) -> Option<StoredDocument> {
        self.store.document(scope, name).await.expect("DocumentStore::document")
    }
}

#[test]
fn desired_state_end_to_end() {
    let started = Instant::now();
    let bin_dir = sso_fanout_tests::binaries::dir();
    let cloud = LocalCloud::up("desired", &bin_dir, &[]);
    let work = cloud.dir().join("cli");
    std::fs::create_dir_all(&work).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let clients = AwsClients::local(&cloud.endpoint(), REGION).await;
        let store = DynamoStore::new(clients.dynamodb.clone(), cloud.str_at("/table"));
        let machine = cloud.str_at("/stateMachineArn");
        let h = Harness { cloud, clients, store, machine, work };
        scenarios(&h).await;
    });
    eprintln!("desired_e2e: all scenarios in {:.1?}", started.elapsed());
}

async fn scenarios(h: &Harness) {
    let doc = document(&h.cloud);
    let declared = declared(&h.cloud);
    let all = all_declared(&h.cloud);
    // The seeded organization as this test reads it: 6 accounts below Prod (3 in Payments, 2
    // in Search, 1 directly in Prod), 9 fleet accounts tagged team=fleet-a (x 2 principals),
    // dev-payments-001 and sandbox-alice-001 (dev-search-001 excluded by its tag,
    // sandbox-bob-001 SUSPENDED).
    let sizes: Vec<(&str, usize)> = declared.iter().map(|(id, t)| (*id, t.len())).collect();
    assert_eq!(sizes, [("dev-sandbox-admins", 2), ("fleet-a-readers", 18), ("prod-admins", 6)]);
    let seeded = triple("prod-payments-001", ADMIN, PLATFORM_ADMINS);
    let before = h.held().await;
    assert_eq!(before, BTreeSet::from([seeded.clone()]), "seed.py's one assignment");

    // 1-2. Plan: a dry run's output is the drift report (25 missing, 1 present), nothing
    //      written; the CLI's `plan --rules` says drift (exit 2) through the real SDK.
    let out = h.dry_run("desired-plan", &json!({"rules": doc}), &before).await;
    let missing: Vec<usize> = out["desired"]["rules"].as_array().unwrap().iter().map(|r| r["missing"].as_array().unwrap().len()).collect();
    assert_eq!(missing, [5, 18, 2], "missing per rule");
    assert_eq!(out["creates"], 25);
    let warnings = out["warnings"].as_array().expect("warnings");
    assert!(warnings.iter().any(|w| w.as_str().is_some_and(|w| w.contains("not ACTIVE") && w.contains("sandbox-bob-001"))), "{warnings:?}");
    assert!(h.stored_document_keys().await.is_empty(), "a dry run stores no document");
    let (code, plan, stderr) = h.cli_plan(&doc, "baseline");
    assert_eq!(code, 2, "plan --rules with drift exits 2: {stderr}");
    h.assert_preview(&plan, &before, false, 20);

    // 3. Apply under the name `baseline`: every declared assignment exists, once; the document
    //    is stored (DynamoDB DOC#<scope> / baseline).
    let e = h.execute("desired-apply", &json!({"rules": doc, "name": "baseline"})).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    assert_eq!(e.output["outcome"], "succeeded", "{}", e.output);
    assert_eq!(e.output["counts"], json!({"total": 26, "succeeded": 25, "skipped": 1, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": 0}));
    assert_eq!(h.held().await, all, "every declared assignment, nothing else");
    let run_id = e.output["runId"].as_str().expect("summary runId").to_string();
    let results = h.store.results(&run_id).await.expect("results");
    assert_eq!(results.len(), 25, "a stored result per create (account x pair)");
    assert!(results.iter().all(|r| r.outcome == Outcome::Succeeded && r.action == Action::Create), "{results:?}");
    let scope = h.store.get_run(&run_id).await.expect("get_run").expect("the run is stored").plan.scope;
    assert_eq!(h.stored_document_keys().await, BTreeSet::from([(format!("DOC#{}", scope.key()), "baseline".to_string())]));
    let stored = h.stored(&scope, "baseline").await.expect("the document is stored under baseline");
    assert_eq!(stored.name, "baseline");
    assert_eq!(stored.run_id, run_id);
    assert_eq!(stored.request.rules, RulesDocument::from_value(doc.clone()).unwrap(), "the document as applied");
    assert!(!stored.request.prune && !stored.request.dry_run);

    // 4. Plan again: no drift, exit 0.
    let out = h.dry_run("desired-plan-converged", &json!({"rules": doc}), &all).await;
    assert_eq!((out["creates"].as_u64(), out["deletes"].as_u64()), (Some(0), Some(0)));
    let (code, plan, stderr) = h.cli_plan(&doc, "baseline");
    assert_eq!(code, 0, "plan --rules without drift exits 0: {stderr}");
    h.assert_preview(&plan, &all, false, 20);

    // 5. An out-of-band delete: drift (exit 2); a reconcile of `baseline` restores it.
    let removed = triple("fleet-001", READ_ONLY, ALICE);
    assert!(all.contains(&removed));
    h.change(false, &removed).await;
    let mut held = all.clone();
    held.remove(&removed);
    assert_eq!(h.held().await, held);
    let out = h.dry_run("desired-plan-drift", &json!({"reconcile": "baseline"}), &held).await;
    assert_eq!(h.entries(&out["desired"]["rules"][1]["missing"]), BTreeSet::from([removed.clone()]));
    let (code, plan, stderr) = h.cli_plan(&doc, "baseline");
    assert_eq!(code, 2, "{stderr}");
    h.assert_preview(&plan, &held, false, 20);
    let e = h.execute("desired-reconcile", &json!({"reconcile": "baseline"})).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    assert_eq!(e.output["counts"], json!({"total": 26, "succeeded": 1, "skipped": 25, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": 0}));
    assert_eq!(h.held().await, all, "restored");

    // 6. Prune deletes only inside `managed`: (a) an undeclared ReadOnlyAccess of alice (in
    //    managed) goes; (b) a permission set outside managed held by a managed group stays;
    //    (c) in-managed assignments on the protected and the management account stay.
    h.clients
        .sso_admin
        .create_permission_set()
        .instance_arn(h.instance_arn())
        .name(BILLING)
        .session_duration("PT1H")
        .send()
        .await
        .expect("CreatePermissionSet");
    let inside = triple("fleet-002", READ_ONLY, ALICE);
    let outside = triple("fleet-003", BILLING, PLATFORM_ADMINS);
    let on_protected = triple(PROTECTED, ADMIN, DEVELOPERS);
    let on_management = triple(MANAGEMENT, READ_ONLY, ALICE);
    for t in [&inside, &outside, &on_protected, &on_management] {
        h.change(true, t).await;
    }
    let mut held = all.clone();
    held.extend([inside.clone(), outside.clone(), on_protected.clone(), on_management.clone()]);
    assert_eq!(h.held().await, held);
    let prune = json!({"reconcile": "baseline", "prune": true});
    let out = h.dry_run("desired-prune-plan", &prune, &held).await;
    assert_eq!(h.entries(&out["desired"]["undeclared"]), BTreeSet::from([inside.clone()]));
    assert_eq!(h.entries(&out["desired"]["protected"]), BTreeSet::from([on_protected.clone(), on_management.clone()]));
    let e = h.execute("desired-prune", &prune).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    assert_eq!(e.output["counts"], json!({"total": 27, "succeeded": 1, "skipped": 26, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": 0}));
    let results = h.store.results(e.output["runId"].as_str().unwrap()).await.expect("results");
    let deleted: Vec<_> = results.iter().map(|r| (r.account_id.to_string(), r.action, r.outcome)).collect();
    assert_eq!(deleted, [(h.cloud.account_id("fleet-002"), Action::Delete, Outcome::Succeeded)]);
    held.remove(&inside);
    assert_eq!(h.held().await, held, "only the undeclared assignment inside `managed` was deleted");
    let kept = held.clone();

    // 7. The max-deletes guard: 3 undeclared inside `managed` and maxDeletes 2 refuse the
    //    whole run, its create included (a declared assignment deleted out of band stays
    //    missing); the execution fails with InvalidRequest. Raised to 3, the same run goes.
    let extra: Vec<Triple> = ["fleet-004", "fleet-005", "fleet-006"].iter().map(|a| triple(a, ADMIN, DEVELOPERS)).collect();
    for t in &extra {
        h.change(true, t).await;
    }
    h.change(false, &removed).await;
    let mut held = kept.clone();
    held.extend(extra.iter().cloned());
    held.remove(&removed);
    assert_eq!(h.held().await, held);
    let guarded = json!({"reconcile": "baseline", "prune": true, "maxDeletes": 2});
    let out = h.dry_run("desired-guard-plan", &guarded, &held).await;
    assert_eq!(out["desired"]["prune"]["refused"], true, "{}", out["desired"]["prune"]);
    let e = h.execute("desired-guard", &guarded).await;
    let message = h.assert_invalid(&e, "max-deletes", "maxDeletes", "3 undeclared assignments inside `managed`");
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(h.held().await, held, "a refused prune changes nothing, creates included");
    let e = h.execute("desired-guard-raised", &json!({"reconcile": "baseline", "prune": true, "maxDeletes": 3})).await;
    assert_eq!(e.status, "SUCCEEDED", "{}: {} {}", e.arn, e.error, e.cause);
    assert_eq!(e.output["counts"], json!({"total": 29, "succeeded": 4, "skipped": 25, "failed": 0, "timedOut": 0, "notStarted": 0, "missing": 0}));
    assert_eq!(h.held().await, kept, "the create made and the 3 deletes");

    // 8. Bad documents (and an unknown stored name) fail the planner with InvalidRequest naming
    //    the field; nothing is changed in sso-admin and nothing is stored.
    let baseline = h.stored(&scope, "baseline").await.expect("baseline");
    let mut unknown_field = doc.clone();
    unknown_field["rules"][1]["owner"] = json!("team-x");
    let mut duplicate_id = doc.clone();
    duplicate_id["rules"][2]["id"] = json!("prod-admins");
    let mut unknown_set = doc.clone();
    unknown_set["rules"][0]["permissionSet"] = json!("NoSuchPermissionSet");
    let mut matches_nothing = doc.clone();
    matches_nothing["rules"][1]["targets"] = json!([{"tags": {"team": "nobody"}}]);
    let cases = [
        ("desired-bad-unknown-field", json!({"rules": unknown_field, "name": "bad"}), "rules[1] (fleet-a-readers).owner", "unknown field `owner`"),
        ("desired-bad-duplicate-id", json!({"rules": duplicate_id, "name": "bad"}), "rules[2] (prod-admins).id", "rules[0] already uses it"),
        ("desired-bad-permission-set", json!({"rules": unknown_set, "name": "bad"}), "rules[0] (prod-admins).permissionSet", "NoSuchPermissionSet"),
        ("desired-bad-no-match", json!({"rules": matches_nothing, "name": "bad"}), "rules[1] (fleet-a-readers).targets", "match no account"),
        ("desired-bad-reconcile", json!({"reconcile": "nosuch"}), "nosuch", "stored here: baseline"),
    ];
    for (label, input, field, needle) in &cases {
        let e = h.execute(label, input).await;
        if *label == "desired-bad-reconcile" {
            // A name with no stored document is NotFound (errorType InvalidRequest), by name.
            assert_eq!((e.status.as_str(), e.error.as_str()), ("FAILED", "InvalidRequest"), "{label}: {}", e.cause);
            assert!(e.cause.contains(field) && e.cause.contains(needle), "{label}: {}", e.cause);
        } else {
            h.assert_invalid(&e, label, field, needle);
        }
    }
    assert_eq!(h.held().await, kept, "bad documents change nothing");
    assert_eq!(h.stored_document_keys().await.len(), 1, "nothing stored under `bad`");
    assert_eq!(h.stored(&scope, "baseline").await, Some(baseline), "the stored baseline is untouched");
    // The CLI refuses a bad document the same way (exit 1, the field named).
    let (code, _, stderr) = h.cli_plan(&cases[0].1["rules"], "bad");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("rules[1] (fleet-a-readers)") && stderr.contains("owner"), "{stderr}");
    // Passed: the CLI's files go (the cloud's directory is removed with it); kept on a failure.
    std::fs::remove_dir_all(&h.work).expect("remove the CLI's files");
}
