//! sso-fanout's real AWS backend (the SDK clients, no `--sim`) against the wire emulator
//! (`sso-fanout sim serve`): a server on 127.0.0.1 that answers like Identity Center does
//! (20 req/s, 15 outstanding operations, ConflictException, IN_PROGRESS -> SUCCEEDED / late
//! FAILED), pointed at by `AWS_ENDPOINT_URL` alone with dummy credentials. Assign, re-run,
//! revoke with 0 failures and 0 quota violations as the emulator counted them; with faults
//! (throttle storms, 5xx, late FAILED) every account ends in a definite state with the reason.

mod wire_support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use wire_support::{tempdir, Emulator};

/// The binary pointed at the emulator by `AWS_ENDPOINT_URL` alone, dummy credentials.
fn sso_fanout(emulator: &Emulator, dir: &Path, args: &[&str]) -> Output {
    emulator
        .cli(dir)
        .args(args)
        .args([
            "--store",
            dir.join("store.redb").to_str().unwrap(),
            "--quota-file",
            dir.join("quota.json").to_str().unwrap(),
        ])
        .args(["--output", "json"])
        .output()
        .expect("sso-fanout runs")
}

/// Runs sso-fanout, checks its exit code (stderr shown if not) and returns its JSON summary.
fn run_expecting(emulator: &Emulator, dir: &Path, args: &[&str], code: i32) -> Value {
    let out = sso_fanout(emulator, dir, args);
    assert_eq!(out.status.code(), Some(code), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const ASSIGN: &[&str] = &[
    "run",
    "--operation",
    "assign",
    "--permission-set",
    "AdministratorAccess",
    "--group",
    "PlatformAdmins",
    "--filter",
    "*",
];
const REVOKE: &[&str] = &[
    "run",
    "--operation",
    "revoke",
    "--permission-set",
    "AdministratorAccess",
    "--group",
    "PlatformAdmins",
    "--filter",
    "*",
];

fn accounts_with(summary: &Value, outcome: &str) -> BTreeSet<String> {
    summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == outcome)
        .map(|r| r["accountId"].as_str().unwrap().to_string())
        .collect()
}

/// Within every quota, and every request valid for the service model (AWS would have refused
/// an invalid one: a bug in our adapter).
fn assert_no_violations(stats: &Value) {
    assert_eq!(stats["violations"]["rate"], 0, "{stats}");
    assert_eq!(stats["violations"]["outstanding"], 0, "{stats}");
    assert_eq!(stats["conflicts"], 0, "{stats}");
    assert_eq!(stats["invalid"], serde_json::json!({}), "requests refused by validation: {stats}");
    assert!(stats["rate_limit"]["max_admitted_in_window"].as_u64().unwrap() <= 20, "{stats}");
}

#[test]
fn cli_assigns_reruns_and_revokes_through_the_wire_emulator_within_the_quotas() {
    let emulator = Emulator::start(&["--accounts", "29", "--seed", "7", "--latency", "0.5,2"]);
    let dir = tempdir("clean");
    let before = emulator.holders();

    let s = run_expecting(&emulator, &dir, ASSIGN, 0);
    assert_eq!(s["counts"]["failed"], 0, "{s}");
    assert_eq!(s["counts"]["timedOut"], 0, "{s}");
    let succeeded = accounts_with(&s, "succeeded");
    assert!(succeeded.len() >= 20, "{s}");
    assert_eq!(
        accounts_with(&s, "skipped"),
        before,
        "the accounts that already held it are skipped"
    );
    let holders = emulator.holders();
    assert!(
        succeeded.iter().all(|a| holders.contains(a)),
        "every success is held: {holders:?}"
    );
    assert_eq!(
        holders.len(),
        s["counts"]["total"].as_u64().unwrap() as usize
    );
    let stats = emulator.stats();
    assert_no_violations(&stats);
    // One create per account, plus any the instance refused (a throttled request is received too).
    let creates = stats["calls"]["CreateAccountAssignment"].as_u64().unwrap();
    assert!(
        creates >= succeeded.len() as u64
            && creates <= succeeded.len() as u64 + stats["throttled"].as_u64().unwrap(),
        "{stats}"
    );
    assert_eq!(stats["outstanding"], 0);

    // Re-run: nothing to do, no write, a handful of calls.
    let calls_before = stats["sso_admin_calls"].as_u64().unwrap();
    let s = run_expecting(&emulator, &dir, ASSIGN, 0);
    assert_eq!(s["counts"]["skipped"], s["counts"]["total"], "{s}");
    let stats = emulator.stats();
    assert_eq!(
        stats["calls"]["CreateAccountAssignment"].as_u64().unwrap(),
        creates,
        "no write on a re-run"
    );
    assert!(
        stats["sso_admin_calls"].as_u64().unwrap() - calls_before <= 10,
        "{stats}"
    );

    // Revoke everything.
    let s = run_expecting(&emulator, &dir, REVOKE, 0);
    assert_eq!(s["counts"]["failed"], 0, "{s}");
    assert!(emulator.holders().is_empty(), "{:?}", emulator.holders());
    let stats = emulator.stats();
    assert_no_violations(&stats);
    assert!(stats["last_finished_s"].as_f64().unwrap() > stats["first_call_s"].as_f64().unwrap());

    assert!(emulator.stop().success(), "stops cleanly on SIGTERM");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn with_faults_every_account_ends_in_a_definite_state_with_the_reason() {
    // Seed 3: three accounts whose assignment FAILS after provisioning; throttle storms from 4 s
    // and 5xx on 3% of the calls.
    let emulator = Emulator::start(&[
        "--accounts",
        "29",
        "--seed",
        "3",
        "--latency",
        "0.5,2",
        "--faults",
        "chaos",
    ]);
    let dir = tempdir("chaos");
    let before = emulator.holders();

    let s = run_expecting(&emulator, &dir, ASSIGN, 2);
    assert_eq!(s["counts"]["timedOut"], 0, "{s}");
    assert_eq!(s["counts"]["missing"], 0, "{s}");
    let failed = accounts_with(&s, "failed");
    assert!(!failed.is_empty(), "{s}");
    for r in s["results"].as_array().unwrap() {
        let outcome = r["outcome"].as_str().unwrap();
        assert!(matches!(outcome, "succeeded" | "skipped" | "failed"), "{r}");
        if outcome == "failed" {
            assert!(
                r["reason"]
                    .as_str()
                    .unwrap()
                    .contains("Received a 409 status error"),
                "AWS's FailureReason: {r}"
            );
        }
    }
    let holders = emulator.holders();
    for a in accounts_with(&s, "succeeded").iter().chain(&before) {
        assert!(holders.contains(a), "{a} reported as assigned is held");
    }
    for a in &failed {
        assert!(!holders.contains(a), "{a} reported failed is not held");
    }
    let stats = emulator.stats();
    assert_no_violations(&stats);
    assert_eq!(stats["operations"]["failed"], failed.len(), "{stats}");
    drop(emulator);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A rules document through the real SDK on the wire: several operations per account (creates,
/// then the prune's deletes), one at a time per account, within the quotas the emulator counts.
#[test]
fn a_rules_document_is_reconciled_on_the_wire_within_the_quotas() {
    let emulator = Emulator::start(&["--accounts", "29", "--seed", "7", "--latency", "0.5,2"]);
    let dir = tempdir("rules");
    let rules = dir.join("access.yaml");
    std::fs::write(
        &rules,
        r#"version: 1
rules:
  - id: prod-admins
    permissionSet: AdministratorAccess
    principals: [{type: GROUP, name: PlatformAdmins}]
    targets: [{ous: [ou-sim0-prod0000]}]
  - id: everyone-reads
    permissionSet: ReadOnlyAccess
    principals: [{type: GROUP, name: Auditors}, {type: USER, name: alice}]
    targets: [{root: true}]
    exclude: [{names: ["user*-sandbox"]}]
managed:
  permissionSets: [AdministratorAccess]
  principals: [{type: GROUP, name: PlatformAdmins}]
"#,
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    // PlatformAdmins already holds AdministratorAccess in a few accounts, some outside Prod: undeclared.
    let plan = run_expecting(&emulator, &dir, &["plan", "--rules", rules], 2);
    let undeclared = plan["desired"]["undeclaredCount"].as_u64().unwrap();
    let creates = plan["creates"].as_u64().unwrap();
    assert!(creates > 29, "two principals read everywhere, admins in Prod: {plan}");
    let writes_before = emulator.stats()["calls"]["CreateAccountAssignment"].as_u64().unwrap_or(0);
    assert_eq!(writes_before, 0, "a plan writes nothing");

    let s = run_expecting(&emulator, &dir, &["run", "--rules", rules, "--prune", "--document-name", "baseline"], 0);
    assert_eq!(s["counts"]["failed"], 0, "{s}");
    let stats = emulator.stats();
    assert_no_violations(&stats);
    assert_eq!(stats["calls"]["DeleteAccountAssignment"].as_u64().unwrap_or(0), undeclared, "{stats}");
    assert!(stats["calls"]["CreateAccountAssignment"].as_u64().unwrap() >= creates, "{stats}");

    // Planned again, and reconciled by name: nothing differs, nothing is written.
    let again = run_expecting(&emulator, &dir, &["plan", "--rules", rules], 0);
    assert_eq!(again["desired"]["undeclaredCount"], 0, "{again}");
    let s = run_expecting(&emulator, &dir, &["run", "--reconcile", "baseline"], 0);
    assert_eq!(s["counts"]["skipped"], s["counts"]["total"], "{s}");
    assert_eq!(emulator.stats()["calls"]["CreateAccountAssignment"], stats["calls"]["CreateAccountAssignment"]);
    std::fs::remove_dir_all(dir).unwrap();
}
