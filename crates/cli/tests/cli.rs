//! The `sso-fanout` binary as users and scripts drive it: exit codes, JSON output, bad input.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const REQUEST: &[&str] = &["--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins"];

fn sso_fanout(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sso-fanout"))
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("SSO_FANOUT_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn sim_run(extra: &[&str]) -> Output {
    let mut args = vec!["run", "--sim", "29", "--virtual-time", "--output", "json"];
    args.extend_from_slice(REQUEST);
    args.extend_from_slice(extra);
    sso_fanout(&args, None)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn successful_run_exits_0_with_a_parseable_summary() {
    let out = sim_run(&["--filter", "*"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = json(&out);
    assert_eq!(s["outcome"], "succeeded");
    let c = &s["counts"];
    assert_eq!(c["total"].as_u64().unwrap(), c["succeeded"].as_u64().unwrap() + c["skipped"].as_u64().unwrap());
    assert!(c["succeeded"].as_u64().unwrap() > 20);
    assert!(s["durationSeconds"].as_f64().unwrap() > 1.0, "simulated time passed");
}

#[test]
fn failed_accounts_exit_2_and_are_listed_with_the_reason() {
    // The simulated stack runs as delegated administrator: the management account refuses.
    let out = sim_run(&["--filter", "prod-*", "--account", "100000000000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let s = json(&out);
    assert_eq!(s["outcome"], "incomplete");
    assert_eq!(s["counts"]["failed"], 1);
    let f = &s["failures"][0];
    assert_eq!(f["accountId"], "100000000000");
    assert!(f["reason"].as_str().unwrap().contains("delegated administrator"), "{f}");
}

#[test]
fn bad_input_exits_1_says_what_to_fix_and_changes_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (&["--filter", "staging-*"], "targets.filter"),
        (&["--filter", "*", "--exclude", "12345"], "targets.exclude[0]"),
        (&["--ou", "production"], "targets.ous[0]"),
        (&["--tag", "env"], "--tag"),
    ];
    for (extra, field) in cases {
        let out = sim_run(extra);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", stderr(&out));
        let e = json(&out);
        assert_eq!(e["error"]["type"], "InvalidRequest", "{extra:?}");
        assert!(e["error"]["message"].as_str().unwrap().contains(field), "{extra:?}: {e}");
        assert!(stderr(&out).contains("nothing was changed"), "{extra:?}");
    }
    let out = sso_fanout(&["run", "--sim", "5", "--virtual-time", "--operation", "assign", "--permission-set", "Nope", "--group", "PlatformAdmins", "--filter", "*"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("permission set `Nope`") && stderr(&out).contains("AdministratorAccess"), "{}", stderr(&out));
}

#[test]
fn request_documents_come_from_files_or_stdin_and_are_strict() {
    let doc = r#"{"operation":"assign","permissionSet":"AdministratorAccess",
        "principal":{"type":"GROUP","name":"PlatformAdmins"},"targets":{"filter":"dev-*"}}"#;
    let out = sso_fanout(&["plan", "--sim", "29", "--request", "-", "--output", "json"], Some(doc));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = json(&out);
    let accounts = plan["accounts"].as_array().unwrap();
    assert!(!accounts.is_empty());
    assert!(accounts.iter().all(|a| a["accountName"].as_str().unwrap().starts_with("dev-")));
    assert_eq!(plan["tier"]["inFlight"], 10);
    assert!(plan["estimate"]["seconds"].as_f64().unwrap() > 0.0);

    let unknown_field = doc.replace("\"targets\"", "\"target\"");
    let out = sso_fanout(&["plan", "--sim", "29", "--request", "-"], Some(&unknown_field));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown field `target`"), "{}", stderr(&out));

    let out = sso_fanout(&["plan", "--sim", "29", "--request", "-"], Some("{not json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 1"), "{}", stderr(&out));

    let out = sso_fanout(&["plan", "--sim", "29", "--request", "/nonexistent/request.json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--request"), "{}", stderr(&out));
}

#[test]
fn plan_table_shows_tier_binding_limit_and_estimate() {
    let mut args = vec!["plan", "--sim", "29"];
    args.extend_from_slice(REQUEST);
    args.extend_from_slice(&["--filter", "*"]);
    let out = sso_fanout(&args, None);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["tier      medium", "asks 25 at once -> 10 in flight", "binding   outstanding assignment operations", "estimate", "ACTION"] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn bench_json_has_one_row_per_strategy() {
    let out = sso_fanout(&["bench", "--accounts", "29", "--seed", "3", "--output", "json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json(&out);
    let strategies: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["strategy"].as_str().unwrap()).collect();
    assert_eq!(strategies, ["sso-fanout", "seed-before", "seed-tiered"]);
    for r in rows.as_array().unwrap() {
        for field in ["accounts", "accepted_s", "makespan_s", "bound_s", "greedy_s", "api_calls", "throttled", "failed", "false_successes"] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
    }
    let ours = &rows[0];
    assert_eq!(ours["violations"], 0);
    assert_eq!(ours["false_successes"], 0);
    assert_eq!(ours["rerun_writes"], 0);
    // Same organization and latencies for every strategy.
    assert!(rows.as_array().unwrap().iter().all(|r| r["bound_s"] == ours["bound_s"]));
}

#[test]
fn cache_and_report_read_the_embedded_store() {
    let dir = std::env::temp_dir().join(format!("sso-fanout-cli-{}", std::process::id()));
    let store = dir.join("store.redb");
    let store_arg = store.to_str().unwrap();
    let out = sso_fanout(&["cache", "status", "--sim", "29", "--store", store_arg, "--output", "json"], None);
    assert_eq!(json(&out)["cached"], false);

    let out = sim_run(&["--filter", "*", "--store", store_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run_id = json(&out)["runId"].as_str().unwrap().to_string();

    let out = sso_fanout(&["cache", "status", "--sim", "29", "--store", store_arg, "--output", "json"], None);
    let cache = json(&out);
    assert_eq!(cache["cached"], true);
    assert_eq!(cache["accounts"], 30, "29 members and the management account");
    assert_eq!(cache["fresh"], true);

    let out = sso_fanout(&["report", &run_id, "--sim", "29", "--store", store_arg, "--output", "json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["runId"], run_id.as_str());
    let out = sso_fanout(&["report", "--sim", "29", "--store", store_arg], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&run_id));
    let out = sso_fanout(&["report", "run-nope", "--sim", "29", "--store", store_arg], None);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_teaches_usage_and_exit_codes() {
    let out = sso_fanout(&["run", "--help"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["--request", "--filter", "--sim", "--virtual-time", "tag:Key=Value"] {
        assert!(text.contains(needle), "{needle} missing from run --help");
    }
    let out = sso_fanout(&["--help"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Exit codes: 0"), "{text}");
}

#[test]
fn a_store_shared_by_two_simulated_organizations_keeps_their_caches_apart() {
    let dir = std::env::temp_dir().join(format!("sso-fanout-cli-scope-{}", std::process::id()));
    let store = dir.join("store.redb");
    let store_arg = store.to_str().unwrap();
    let plan = |size: &str| {
        let mut args = vec!["plan", "--sim", size, "--store", store_arg, "--output", "json", "--filter", "*"];
        args.extend_from_slice(REQUEST);
        let out = sso_fanout(&args, None);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        json(&out)
    };
    let small = plan("29");
    let large = plan("500");
    assert!(large["accounts"].as_array().unwrap().len() > 400, "planned over the cached 29-account organization");
    assert!(small["accounts"].as_array().unwrap().len() < 30);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unknown_root_or_ou_ids_are_refused_by_name() {
    for bad in ["r-zzzz", "ou-zzzz-zzzzzzzz"] {
        let out = sim_run(&["--ou", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", stderr(&out));
        let e = json(&out);
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(bad) && message.contains("is not in"), "{message}");
    }
    let out = sim_run(&["--ou", "r-sim0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
