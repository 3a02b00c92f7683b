//! The `sso-fanout` command line as users and scripts drive it: exit codes, JSON output, bad
//! input, progress, interrupts. Most tests call the library in-process (`sso_fanout_cli::run`
//! with captured streams); a few run the binary itself for what only a process shows (a closed
//! pipe, colours on a pipe, stdin).

use serde_json::Value;
use sso_fanout_cli::{Captured, Io};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

/// Runs the CLI in-process: (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (u8, String, String) {
    let (mut io, captured) = Io::captured();
    let code = sso_fanout_cli::run(std::iter::once("sso-fanout").chain(args.iter().copied()), &mut io);
    (code, captured.stdout(), captured.stderr())
}

fn cli_with(io: &mut Io, captured: &Captured, args: &[&str]) -> (u8, String, String) {
    let code = sso_fanout_cli::run(std::iter::once("sso-fanout").chain(args.iter().copied()), io);
    (code, captured.stdout(), captured.stderr())
}

fn parse(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
}

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
    assert_eq!(plan["tier"]["inFlight"], 15);
    // The published limits and the budget actually used, for scripts.
    assert_eq!(plan["quota"]["maxOutstanding"], 15);
    assert_eq!(plan["quota"]["requestsPerSecond"], 20.0);
    assert_eq!(plan["quota"]["budget"]["maxOutstanding"], 15);
    assert_eq!(plan["quota"]["budget"]["requestsPerSecond"], 18.0);
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
    for needle in ["tier      medium", "asks 25 at once -> 15 in flight", "binding   outstanding assignment operations", "estimate", "ACTION"] {
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


#[test]
fn usage_errors_exit_1_never_2() {
    let cases: &[&[&str]] = &[
        &["plan", "--sim", "29", "--operation", "assign", "--permission-set", "A", "--principal-id", "x", "--filter", "*"],
        &["plan", "--sim", "29", "--operation", "grant", "--permission-set", "A", "--group", "G", "--filter", "*"],
        &["plan", "--sim", "29", "--operation", "assign", "--permission-set", "A", "--group", "G", "--user", "u", "--filter", "*"],
        &["run", "--virtual-time", "--operation", "assign", "--permission-set", "A", "--group", "G"],
        &["frobnicate"],
    ];
    for args in cases {
        let (code, stdout, stderr) = cli(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
    // Scripts asking for JSON get the error as JSON too.
    let (code, stdout, _) = cli(&["plan", "--sim", "29", "--output", "json", "--operation", "grant", "--permission-set", "A", "--group", "G"]);
    assert_eq!(code, 1);
    assert_eq!(parse(&stdout)["error"]["type"], "InvalidRequest");
    // Help and version are not errors.
    let (code, stdout, _) = cli(&["run", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--request"));
    let (code, _, _) = cli(&["--version"]);
    assert_eq!(code, 0);
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sso-fanout"))
        .args(["plan", "--sim", "200", "--virtual-time", "--all"])
        .args(REQUEST)
        .args(["--filter", "*"])
        .env_remove("SSO_FANOUT_STORE")
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `| head -1` does.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("Plan run-"), "{first}");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn logs_carry_no_colour_codes_on_a_pipe() {
    let mut args = vec!["run", "--sim", "10", "--virtual-time", "--filter", "*"];
    args.extend_from_slice(REQUEST);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sso-fanout"));
    child.args(&args).env("SSO_FANOUT_LOG", "debug").env_remove("SSO_FANOUT_STORE");
    let out = child.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("DEBUG") || stderr(&out).contains("INFO"), "logging is on");
    assert!(!stderr(&out).contains('\u{1b}'), "ANSI escape codes on a pipe");
}

#[test]
fn run_json_lists_every_account_with_its_result_and_the_warnings() {
    let (code, stdout, _) = cli(&["run", "--sim", "200", "--seed", "5", "--virtual-time", "--output", "json", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--filter", "*"]);
    assert_eq!(code, 0);
    let s = parse(&stdout);
    let results = s["results"].as_array().unwrap();
    assert_eq!(results.len() as u64, s["counts"]["total"].as_u64().unwrap());
    for r in results {
        match r["outcome"].as_str().unwrap() {
            "succeeded" => assert!(r["requestId"].is_string() && r["action"] == "create", "{r}"),
            "skipped" => assert_eq!(r["action"], "skip", "{r}"),
            other => panic!("{other}: {r}"),
        }
    }
    let warnings = s["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("not ACTIVE")), "{warnings:?}");
}

#[test]
fn progress_lines_are_written_when_stderr_is_a_log() {
    let (code, _, stderr) = cli(&["run", "--sim", "200", "--virtual-time", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--filter", "*"]);
    assert_eq!(code, 0);
    assert!(stderr.contains("planning:") && stderr.contains("planned in"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert!(lines.len() >= 3, "{stderr}");
    for l in &lines {
        for part in ["ok", "in flight", "/s", "left", "throttled"] {
            assert!(l.contains(part), "{part} missing: {l}");
        }
    }
    // What is really outstanding, never more than the quota's slots.
    for l in &lines {
        let flight = l.split(" | ").find(|p| p.ends_with("in flight")).unwrap();
        let n: u32 = flight.split('/').next().unwrap().trim().parse().unwrap();
        assert!(n <= 15, "{l}");
    }
}

#[test]
fn a_dry_run_request_through_run_prints_the_plan() {
    let dir = std::env::temp_dir().join(format!("sso-fanout-dry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("request.json");
    std::fs::write(&file, r#"{"operation":"assign","permissionSet":"AdministratorAccess","principal":{"type":"GROUP","name":"PlatformAdmins"},"targets":{"filter":"dev-*"},"dryRun":true}"#).unwrap();
    let (code, stdout, stderr) = cli(&["run", "--sim", "29", "--virtual-time", "--request", file.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let plan = parse(&stdout);
    assert!(plan["accounts"].as_array().unwrap().iter().all(|a| a["accountName"].as_str().unwrap().starts_with("dev-")));
    assert!(!stderr.contains("error"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn error_messages_name_the_cause() {
    // Unknown group: the known ones are listed.
    let (code, _, stderr) = cli(&["plan", "--sim", "10", "--virtual-time", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "Platformadmins", "--filter", "*"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("PlatformAdmins") && stderr.contains("Developers"), "{stderr}");
    // Excluding everything the selectors matched blames the exclusion.
    let (code, stdout, _) = cli(&["plan", "--sim", "10", "--virtual-time", "--output", "json", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--filter", "prod-*", "--exclude", "200000000001", "--exclude", "200000000002", "--exclude", "200000000003", "--exclude", "200000000004"]);
    assert_eq!(code, 1);
    let message = parse(&stdout)["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("targets.exclude") && message.contains("all excluded"), "{message}");
    // A huge or control-character argument is not echoed raw.
    let huge = format!("prod-{}\u{1b}[2J", "x".repeat(100_000));
    let (code, _, stderr) = cli(&["plan", "--sim", "10", "--virtual-time", "--operation", "assign", "--permission-set", &huge, "--group", "PlatformAdmins", "--filter", "*"]);
    assert_eq!(code, 1);
    assert!(stderr.len() < 2_000, "{} bytes", stderr.len());
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[test]
fn org_lists_ous_with_ids_and_accounts_with_path_tags_and_status() {
    let (code, stdout, _) = cli(&["org", "--sim", "29"]);
    assert_eq!(code, 0);
    for needle in ["ou-sim0-prodpaym", "Prod/Payments", "ACTIVE", "env=prod", "r-sim0", "(management)"] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
    let (code, stdout, _) = cli(&["org", "--sim", "29", "--output", "json"]);
    assert_eq!(code, 0);
    let doc = parse(&stdout);
    assert_eq!(doc["roots"][0], "r-sim0");
    assert_eq!(doc["accounts"].as_array().unwrap().len(), 30);
    let payments = doc["ous"].as_array().unwrap().iter().find(|o| o["id"] == "ou-sim0-prodpaym").unwrap();
    assert_eq!(payments["path"], "Prod/Payments");
    // Every OU id it prints is accepted by --ou.
    for ou in doc["ous"].as_array().unwrap() {
        let (code, _, stderr) = cli(&["plan", "--sim", "29", "--virtual-time", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--ou", ou["id"].as_str().unwrap()]);
        assert!(code == 0 || stderr.contains("matches at least one ACTIVE"), "{ou}: {stderr}");
    }
}

#[test]
fn report_lists_runs_with_date_and_duration() {
    let dir = std::env::temp_dir().join(format!("sso-fanout-report-{}", std::process::id()));
    let store = dir.join("store.redb");
    let store = store.to_str().unwrap();
    let (code, _, _) = cli(&["run", "--sim", "29", "--virtual-time", "--store", store, "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--filter", "dev-*"]);
    assert_eq!(code, 0);
    let (_, stdout, _) = cli(&["report", "--sim", "29", "--store", store]);
    assert!(stdout.contains("CREATED (UTC)") && stdout.contains("DURATION") && stdout.contains("group PlatformAdmins"), "{stdout}");
    let (_, stdout, _) = cli(&["report", "--sim", "29", "--store", store, "--output", "json"]);
    let runs = parse(&stdout);
    assert!(runs[0]["createdAt"].as_u64().unwrap() > 1_700_000_000);
    assert!(runs[0]["durationSeconds"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ctrl_c_stops_new_work_prints_a_partial_summary_and_marks_the_run_interrupted() {
    let dir = std::env::temp_dir().join(format!("sso-fanout-interrupt-{}", std::process::id()));
    let store = dir.join("store.redb");
    let store = store.to_str().unwrap().to_string();
    let (mut io, captured) = Io::captured();
    let token = io.interrupt.clone().unwrap();
    // Real time (no --virtual-time): interrupt a few seconds into the run.
    let interrupter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(6));
        token.cancel();
    });
    let (code, stdout, stderr) = cli_with(&mut io, &captured, &["run", "--sim", "80", "--store", &store, "--output", "json", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--filter", "*"]);
    interrupter.join().unwrap();
    assert_eq!(code, 130, "{stderr}");
    let s = parse(&stdout);
    assert_eq!(s["outcome"], "interrupted");
    let results = s["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["outcome"] == "succeeded"), "some work was done before the interrupt");
    // Accounts never sent are "not started"; "timed out" is for operations AWS had accepted.
    let unstarted: Vec<&Value> = results.iter().filter(|r| r["outcome"] == "not_started").collect();
    assert!(unstarted.len() > 10, "{}", unstarted.len());
    assert!(unstarted.iter().all(|r| r["reason"].as_str().is_some_and(|x| x.starts_with("not started: the run was interrupted"))), "{unstarted:?}");
    assert_eq!(s["counts"]["notStarted"].as_u64(), Some(unstarted.len() as u64));
    assert!(results.iter().filter(|r| r["outcome"] == "timed_out").all(|r| r["requestId"].is_string()), "{results:?}");
    assert_eq!(results.len() as u64, s["counts"]["total"].as_u64().unwrap());
    let (_, stdout, _) = cli(&["report", "--sim", "80", "--store", &store, "--output", "json"]);
    assert_eq!(parse(&stdout)[0]["status"], "interrupted");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_quota_budget_is_configurable_and_never_above_the_published_limits() {
    let mut args = vec!["plan", "--sim", "29", "--output", "json", "--filter", "*", "--max-outstanding", "6", "--requests-per-second", "9"];
    args.extend_from_slice(REQUEST);
    let (code, stdout, stderr) = cli(&args);
    assert_eq!(code, 0, "{stderr}");
    let plan = parse(&stdout);
    assert_eq!(plan["quota"]["budget"]["maxOutstanding"], 6);
    assert_eq!(plan["quota"]["budget"]["requestsPerSecond"], 9.0);
    assert_eq!(plan["tier"]["inFlight"], 6);
    assert_eq!(plan["quota"]["maxOutstanding"], 15, "the published limit is reported beside the budget");
    for (flag, value) in [("--max-outstanding", "16"), ("--requests-per-second", "25")] {
        let mut args = vec!["plan", "--sim", "29", "--filter", "*", flag, value];
        args.extend_from_slice(REQUEST);
        let (code, _, stderr) = cli(&args);
        assert_eq!(code, 1, "{flag} {value}");
        assert!(stderr.contains(flag) && stderr.contains("Identity Center"), "{stderr}");
    }
}

#[test]
fn the_bench_takes_a_latency_assumption_and_audits_the_rate_by_sliding_window() {
    let run = |latency: &str| {
        let (code, stdout, stderr) = cli(&["bench", "--accounts", "120", "--seed", "3", "--only-sso-fanout", "--latency", latency, "--output", "json"]);
        assert_eq!(code, 0, "{stderr}");
        parse(&stdout)[0].clone()
    };
    let fast = run("1,5");
    let slow = run("10,40");
    assert_eq!(fast["latency"]["medianS"], 1.0);
    assert!(fast["makespan_s"].as_f64().unwrap() < slow["makespan_s"].as_f64().unwrap() / 3.0, "{fast} {slow}");
    for row in [&fast, &slow] {
        assert_eq!(row["violations"], 0, "strict one-second window: {row}");
    }
    let (code, _, stderr) = cli(&["bench", "--accounts", "29", "--latency", "5,1"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("p99 >= median"), "{stderr}");
}

#[test]
fn the_concurrent_scenario_measures_runs_that_each_believe_they_own_the_quota() {
    let (code, stdout, stderr) = cli(&["bench", "--scenario", "concurrent", "--accounts", "120", "--seed", "2", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let row = &parse(&stdout)[0];
    assert_eq!(row["scenario"], "concurrent");
    assert_eq!(row["strategy"], "independent");
    assert_eq!(row["runs"].as_array().unwrap().len(), 3);
    // Today's behaviour: overlapping runs exceed the instance's quota between them.
    assert!(row["throttled"].as_u64().unwrap() > 0, "{row}");
    assert_eq!(row["false_successes"], 0);
    assert!(row["makespan_s"].as_f64().unwrap() >= row["bound_s"].as_f64().unwrap());
}

#[test]
fn the_crash_scenario_resumes_without_repeating_work() {
    let (code, stdout, stderr) = cli(&["bench", "--scenario", "crash", "--accounts", "200", "--seed", "4", "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let row = &parse(&stdout)[0];
    assert_eq!(row["scenario"], "crash");
    assert_eq!(row["failed"], 0, "the re-driven worker converges: {row}");
    assert_eq!(row["false_successes"], 0);
    assert_eq!(row["rerun_writes"], 0, "nothing done twice: {row}");
}

/// A rules document in a temporary file (YAML or JSON as written).
fn rules_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sso-fanout-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plan_of_a_rules_document_exits_2_on_drift_with_the_report_in_table_json_and_markdown() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules-sim.yaml");
    let (code, out, err) = cli(&["plan", "--sim", "29", "--rules", example]);
    assert_eq!(code, 2, "drift exits 2: {err}");
    for wanted in ["prod-admins", "dev-power-users", "MISSING", "undeclared inside `managed`", "ListAccountAssignmentsForPrincipal", "drift:"] {
        assert!(out.contains(wanted), "{wanted:?} missing from:\n{out}");
    }
    let (code, out, _) = cli(&["plan", "--sim", "29", "--rules", example, "--output", "json"]);
    assert_eq!(code, 2);
    let plan = parse(&out);
    let rules = plan["desired"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    assert!(rules.iter().all(|r| r["missing"].is_array() && r["present"].is_number()), "{rules:?}");
    assert!(plan["pairs"].as_array().unwrap().len() >= 5);
    assert!(plan["accounts"].as_array().unwrap().iter().any(|a| a["pair"].as_u64().unwrap_or(0) > 0), "items name their pair");
    let (code, out, _) = cli(&["plan", "--sim", "29", "--rules", example, "--output", "markdown"]);
    assert_eq!(code, 2);
    assert!(out.starts_with("### sso-fanout plan `default`: Drift"), "{out}");
    assert!(out.contains("| `prod-admins` | AdministratorAccess |"), "{out}");
}

#[test]
fn a_bad_rules_document_exits_1_naming_line_column_or_rule_and_changes_nothing() {
    let broken = rules_file("broken.yaml", "version: 1\nrules:\n  - id: a\n    permissionSet: [unclosed\n");
    let (code, _, err) = cli(&["run", "--sim", "29", "--virtual-time", "--rules", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("line") && err.contains("column") && err.contains("nothing was changed"), "{err}");
    let unknown_ou = rules_file(
        "ou.yaml",
        "version: 1\nrules:\n  - id: prod\n    permissionSet: AdministratorAccess\n    principals: [{type: GROUP, name: PlatformAdmins}]\n    targets: [{ous: [ou-sim0-zzzzzzzz]}]\n",
    );
    let (code, _, err) = cli(&["run", "--sim", "29", "--virtual-time", "--rules", unknown_ou.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("rules[0] (prod).targets[0].ous[0]") && err.contains("ou-sim0-zzzzzzzz"), "{err}");
    let (code, _, err) = cli(&["plan", "--sim", "29", "--prune", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--filter", "*"]);
    assert_eq!(code, 1);
    assert!(err.contains("--prune") && err.contains("--rules"), "{err}");
    let (code, _, err) = cli(&["run", "--sim", "29", "--rules", unknown_ou.to_str().unwrap(), "--output", "markdown"]);
    assert_eq!(code, 1);
    assert!(err.contains("markdown"), "{err}");
}

#[test]
fn a_saved_plan_runs_exactly_as_reviewed() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules-sim.yaml");
    let saved = std::env::temp_dir().join(format!("sso-fanout-cli-{}-plan.json", std::process::id()));
    let (code, _, err) = cli(&["plan", "--sim", "29", "--seed", "4", "--rules", example, "--out", saved.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("run --plan"), "{err}");
    let reviewed: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    // The simulator with the same size and seed is the same organization in the same state.
    let (code, out, err) = cli(&["run", "--sim", "29", "--seed", "4", "--virtual-time", "--plan", saved.to_str().unwrap(), "--output", "json"]);
    let summary = parse(&out);
    let changes = reviewed["batches"].as_array().unwrap().iter().map(|b| b["items"].as_array().unwrap().len()).sum::<usize>();
    assert_eq!(summary["results"].as_array().unwrap().iter().filter(|r| r["action"] != "skip").count(), changes, "{err}");
    assert!(code == 0 || code == 2, "{err}");
    // Another organization (seed) is refused, naming both, with nothing changed.
    let (code, _, err) = cli(&["run", "--sim", "29", "--seed", "5", "--virtual-time", "--plan", saved.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("it was made for") && err.contains("nothing was changed"), "{err}");
}

#[test]
fn an_applied_document_is_stored_by_name_and_listed() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules-sim.yaml");
    let store = std::env::temp_dir().join(format!("sso-fanout-cli-{}-documents.redb", std::process::id()));
    let store = store.to_str().unwrap();
    let (code, out, _) = cli(&["documents", "--sim", "29", "--seed", "6", "--store", store]);
    assert_eq!(code, 0);
    assert!(out.contains("no rules document stored"), "{out}");
    let (code, _, err) = cli(&["run", "--sim", "29", "--seed", "6", "--virtual-time", "--store", store, "--rules", example, "--document-name", "baseline", "--prune"]);
    assert!(code == 0 || code == 2, "{err}");
    let (code, out, _) = cli(&["documents", "--sim", "29", "--seed", "6", "--store", store, "--output", "json"]);
    assert_eq!(code, 0);
    let listed = parse(&out);
    assert_eq!(listed[0]["name"], "baseline");
    assert_eq!((listed[0]["rules"].as_u64(), listed[0]["prune"].as_bool()), (Some(4), Some(true)));
    let (code, out, _) = cli(&["documents", "baseline", "--sim", "29", "--seed", "6", "--store", store]);
    assert_eq!(code, 0);
    let request = parse(&out);
    assert_eq!(request["rules"]["rules"][0]["id"], "prod-admins");
    // The stored request is a valid input again (what `--request` and the state machine take).
    assert!(sso_fanout_core::request::RunInput::from_value(request).is_ok());
    // A reconcile takes the stored prune unless told otherwise.
    for (flag, enabled) in [(None, true), (Some("--no-prune"), false)] {
        let mut args = vec!["plan", "--sim", "29", "--seed", "6", "--store", store, "--reconcile", "baseline", "--output", "json"];
        args.extend(flag);
        let (_, out, err) = cli(&args);
        assert_eq!(parse(&out)["desired"]["prune"]["enabled"].as_bool(), Some(enabled), "{flag:?}: {err}");
    }
    let (code, _, err) = cli(&["documents", "nightly", "--sim", "29", "--seed", "6", "--store", store]);
    assert_eq!(code, 1);
    assert!(err.contains("nightly") && err.contains("sso-fanout documents"), "{err}");
    let _ = std::fs::remove_file(store);
}

#[test]
fn a_key_given_twice_is_refused_wherever_a_document_is_read() {
    // The last `operation` would have won: a revoke planned from an assign.
    let doc = r#"{"operation":"assign","operation":"revoke","permissionSet":"AdministratorAccess",
        "principal":{"type":"GROUP","name":"PlatformAdmins"},"targets":{"filter":"*"}}"#;
    for command in ["plan", "run"] {
        let out = sso_fanout(&[command, "--sim", "29", "--virtual-time", "--request", "-", "--output", "json"], Some(doc));
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        let e = json(&out);
        assert_eq!(e["error"]["type"], "InvalidRequest");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains("`operation`") && message.contains("given twice"), "{message}");
        assert!(stderr(&out).contains("nothing was changed"), "{}", stderr(&out));
    }
    let doc = r#"{"operation":"assign","permissionSet":"AdministratorAccess",
        "principal":{"type":"GROUP","name":"PlatformAdmins"},"targets":{"tags":{"env":"prod","env":"dev"}}}"#;
    let out = sso_fanout(&["plan", "--sim", "29", "--request", "-"], Some(doc));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("targets.tags.env"), "{}", stderr(&out));
    let rules = rules_file(
        "twice.yaml",
        "version: 1\nrules:\n  - id: prod\n    permissionSet: AdministratorAccess\n    principals: [{type: GROUP, name: PlatformAdmins}]\n    targets: [{tags: {env: prod, env: dev}}]\n",
    );
    let (code, _, err) = cli(&["run", "--sim", "29", "--virtual-time", "--rules", rules.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("rules[0] (prod).targets[0].tags.env") && err.contains("nothing was changed"), "{err}");
}

#[test]
fn tags_that_contradict_each_other_are_refused_never_resolved_by_order() {
    let (code, _, err) = cli(&["plan", "--sim", "29", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--tag", "env=prod", "--tag", "env=dev"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--tag") && err.contains("env=prod") && err.contains("env=dev") && err.contains("nothing was changed"), "{err}");
    // The same tag twice is no contradiction.
    let (code, out, err) = cli(&["plan", "--sim", "29", "--output", "json", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--tag", "env=prod", "--tag", "env=prod"]);
    assert_eq!(code, 0, "{err}");
    let accounts = parse(&out)["accounts"].as_array().unwrap().len();
    let (_, once, _) = cli(&["plan", "--sim", "29", "--output", "json", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--tag", "env=prod"]);
    assert_eq!(accounts, parse(&once)["accounts"].as_array().unwrap().len());
}

#[test]
fn an_edited_saved_plan_is_refused_by_the_field_and_nothing_runs() {
    let dir = std::env::temp_dir().join(format!("sso-fanout-cli-{}-edited", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("plan.json");
    let store = dir.join("store.redb");
    let (store, saved_path) = (store.to_str().unwrap(), saved.to_str().unwrap());
    let mut args = vec!["plan", "--sim", "29", "--seed", "3", "--store", store, "--filter", "*", "--out", saved_path];
    args.extend_from_slice(REQUEST);
    let (code, _, err) = cli(&args);
    assert_eq!(code, 0, "{err}");
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let edits: &[(&str, Value, &str)] = &[
        ("/quota/budget/maxOutstanding", 999.into(), "quota.budget"),
        ("/batches/0/share/inFlight", 1000.into(), "batches[0].share"),
        ("/settings/accountTimeoutS", 1.into(), "settings"),
        ("/quota/maxOutstanding", 30.into(), "quota"),
    ];
    for (pointer, value, field) in edits {
        let mut edited = original.clone();
        *edited.pointer_mut(pointer).unwrap() = value.clone();
        let file = dir.join("edited.json");
        std::fs::write(&file, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
        let (code, _, err) = cli(&["run", "--sim", "29", "--seed", "3", "--store", store, "--virtual-time", "--plan", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{pointer}: {err}");
        assert!(err.contains(&format!("plan {field}")) && err.contains("nothing was changed"), "{pointer}: {err}");
    }
    let mut unknown = original.clone();
    unknown["extra"] = true.into();
    unknown["settings"]["speed"] = "max".into();
    let file = dir.join("unknown.json");
    std::fs::write(&file, serde_json::to_string(&unknown).unwrap()).unwrap();
    let (code, _, err) = cli(&["run", "--sim", "29", "--seed", "3", "--store", store, "--virtual-time", "--plan", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown field") && err.contains("nothing was changed"), "{err}");
    let text = std::fs::read_to_string(&saved).unwrap().replacen("\"runId\"", "\"settings\": {}, \"runId\"", 1);
    std::fs::write(&file, text).unwrap();
    let (code, _, err) = cli(&["run", "--sim", "29", "--seed", "3", "--store", store, "--virtual-time", "--plan", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("given twice"), "{err}");
    // Nothing ran: the store holds no run. The file as saved still applies.
    let (_, out, _) = cli(&["report", "--sim", "29", "--seed", "3", "--store", store, "--output", "json"]);
    assert_eq!(parse(&out).as_array().unwrap().len(), 0, "{out}");
    let (code, _, err) = cli(&["run", "--sim", "29", "--seed", "3", "--store", store, "--virtual-time", "--plan", saved_path]);
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the binary on 80 simulated accounts in real time, sends it SIGTERM `signals` times
/// (the first after 6 s, the rest 0.3 s apart), and returns its output, the seconds from the
/// first signal to its exit, and the store it used.
fn terminated_run(signals: usize, label: &str) -> (Output, f64, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sso-fanout-sigterm-{}-{label}", std::process::id()));
    let store = dir.join("store.redb");
    let mut args = vec!["run", "--sim", "80", "--store", store.to_str().unwrap(), "--output", "json", "--filter", "*"];
    args.extend_from_slice(REQUEST);
    let child = Command::new(env!("CARGO_BIN_EXE_sso-fanout"))
        .args(&args)
        .env_remove("SSO_FANOUT_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    std::thread::sleep(std::time::Duration::from_secs(6));
    let first = std::time::Instant::now();
    for i in 0..signals {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(sent.success());
    }
    let out = child.wait_with_output().unwrap();
    (out, first.elapsed().as_secs_f64(), store)
}

#[test]
fn sigterm_stops_a_run_as_ctrl_c_does_and_a_second_one_still_leaves_a_summary() {
    for (signals, label) in [(1, "once"), (2, "twice")] {
        let (out, took_s, store) = terminated_run(signals, label);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(130), "{label}: {err}");
        assert!(err.contains("terminated (SIGTERM)"), "{label}: {err}");
        let s = json(&out);
        assert_eq!(s["outcome"], "interrupted", "{label}");
        assert!(s["counts"]["succeeded"].as_u64().unwrap() > 0, "{label}: some work was done");
        assert!(s["counts"]["notStarted"].as_u64().unwrap() > 10, "{label}: {}", s["counts"]);
        if signals == 2 {
            // The second signal ends the grace at once: in-flight operations are recorded now.
            assert!(took_s < sso_fanout_core::engine::INTERRUPT_GRACE.as_secs_f64() - 2.0, "{label}: took {took_s:.1} s");
        }
        let (_, listed, _) = cli(&["report", "--sim", "80", "--store", store.to_str().unwrap(), "--output", "json"]);
        assert_eq!(parse(&listed)[0]["status"], "interrupted", "{label}");
        let _ = std::fs::remove_dir_all(store.parent().unwrap());
    }
}

#[test]
fn a_stored_document_is_replaced_only_when_asked_and_the_plan_says_so() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules-sim.yaml");
    let store = std::env::temp_dir().join(format!("sso-fanout-cli-{}-replace.redb", std::process::id()));
    let store = store.to_str().unwrap();
    let base = ["--sim", "29", "--seed", "8", "--store", store];
    let with = |command: &str, rules: &str, extra: &[&str]| {
        let mut args = vec![command];
        args.extend_from_slice(&base);
        args.extend_from_slice(&["--virtual-time", "--rules", rules]);
        args.extend_from_slice(extra);
        cli(&args)
    };
    let (_, out, _) = with("plan", example, &[]);
    assert!(out.contains("stored as `default` when applied (nothing is stored under that name yet)"), "{out}");
    let (code, _, err) = with("run", example, &[]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = with("plan", example, &[]);
    assert!(out.contains("the same document is stored there now"), "{out}");
    // Another document under the same name: the plan warns, the run is refused, nothing changes.
    let other = rules_file(
        "other.yaml",
        "version: 1\nrules:\n  - id: only\n    permissionSet: ReadOnlyAccess\n    principals: [{type: GROUP, name: Auditors}]\n    targets: [{root: true}]\n",
    );
    let other = other.to_str().unwrap();
    let (_, out, _) = with("plan", other, &[]);
    assert!(out.contains("REPLACING a different document"), "{out}");
    let (code, _, err) = with("run", other, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`default` holds a different document") && err.contains("--replace-document") && err.contains("nothing was changed"), "{err}");
    let mut args = vec!["documents", "default", "--output", "json"];
    args.extend_from_slice(&base);
    let (_, out, _) = cli(&args);
    assert_eq!(parse(&out)["rules"]["rules"].as_array().unwrap().len(), 4, "the stored document is kept: {out}");
    let (code, _, err) = with("run", other, &["--replace-document"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(&args);
    assert_eq!(parse(&out)["rules"]["rules"][0]["id"], "only");
    let (code, _, err) = cli(&["run", "--sim", "29", "--reconcile", "default", "--replace-document"]);
    assert_eq!(code, 1, "a reconcile never stores: {err}");
    let _ = std::fs::remove_file(store);
}

#[test]
fn a_rules_run_gives_scripts_the_pair_of_every_result() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules-sim.yaml");
    let (code, out, err) = cli(&["run", "--sim", "29", "--virtual-time", "--rules", example, "--output", "json"]);
    assert_eq!(code, 0, "the example converges: {err}");
    let s = parse(&out);
    assert_eq!(s["operation"], "reconcile");
    assert!(s.get("permissionSet").is_none() && s.get("principal").is_none(), "no prose in fields that hold an ARN or id: {s}");
    assert_eq!(s["document"], "default");
    let pairs = s["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 5);
    for r in s["results"].as_array().unwrap() {
        let arn = r["permissionSetArn"].as_str().unwrap();
        assert!(arn.starts_with("arn:aws:sso:::permissionSet/"), "{r}");
        assert!(pairs.iter().any(|p| p["permissionSet"]["arn"] == arn && p["principal"]["id"] == r["principalId"]), "{r}");
        assert!(r["principalType"] == "GROUP" || r["principalType"] == "USER", "{r}");
    }
    // A single-pair run keeps the same field types: the plan's objects.
    let out = sim_run(&["--filter", "prod-*"]);
    let s = json(&out);
    assert!(s["permissionSet"]["arn"].is_string() && s["principal"]["id"].is_string(), "{s}");
    assert_eq!(s["pairs"].as_array().unwrap().len(), 1);
    assert!(s["results"].as_array().unwrap().iter().all(|r| r["permissionSetArn"] == s["permissionSet"]["arn"]));
}

#[test]
fn a_store_held_by_a_run_in_progress_is_named_with_its_process() {
    let dir = std::env::temp_dir().join(format!("sso-fanout-held-{}", std::process::id()));
    let store = dir.join("store.redb");
    let mut args = vec!["run", "--sim", "80", "--store", store.to_str().unwrap(), "--filter", "*"];
    args.extend_from_slice(REQUEST);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sso-fanout")).args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Past planning (~5 s of simulated Organizations reads), into the run.
    std::thread::sleep(std::time::Duration::from_secs(8));
    let (code, _, err) = cli(&["report", "--sim", "80", "--store", store.to_str().unwrap()]);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("in use by another sso-fanout process") && err.contains(&format!("pid {}", child.id())) && err.contains("run --sim 80"), "{err}");
    // Once the run has ended, the store reads again.
    let (code, out, err) = cli(&["report", "--sim", "80", "--store", store.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(parse(&out)[0]["status"], "interrupted");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_small_things_a_new_user_meets_are_right() {
    // Sizes past what the simulator is meant for are refused at once, naming the limit.
    for args in [
        vec!["plan", "--sim", "100000", "--operation", "assign", "--permission-set", "A", "--group", "G", "--filter", "*"],
        vec!["org", "--sim", "10000000000"],
        vec!["bench", "--accounts", "29,30000"],
        vec!["sim", "serve", "--accounts", "100000"],
    ] {
        let (code, _, err) = cli(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("20000") && err.contains("simulator"), "{args:?}: {err}");
    }
    // A usage error in JSON lists what is missing.
    let (code, out, _) = cli(&["plan", "--latency", "1,5", "--output", "json"]);
    assert_eq!(code, 1);
    assert!(parse(&out)["error"]["message"].as_str().unwrap().contains("--sim <N>"), "{out}");
    // Flags that would be ignored are refused.
    let mut with_table = vec!["plan", "--sim", "29", "--table", "stack-table", "--filter", "*"];
    with_table.extend_from_slice(REQUEST);
    let (code, _, err) = cli(&with_table);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--table") && err.contains("--sim"), "{err}");
    let (code, _, err) = cli(&["plan", "--sim", "29", "--reconcile", "x", "--no-prune", "--max-deletes", "5"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--max-deletes") && err.contains("--no-prune"), "{err}");
    let mut slow = vec!["plan", "--sim", "29", "--requests-per-second", "0.0001", "--filter", "*"];
    slow.extend_from_slice(REQUEST);
    let (code, _, err) = cli(&slow);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("give 1 to 20"), "{err}");
    // Counts read as English; batches count changes, not accounts.
    let mut one = vec!["plan", "--sim", "29", "--account", "200000000003"];
    one.extend_from_slice(REQUEST);
    let (code, out, err) = cli(&one);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("targets   1 account:") && out.contains("of up to 1 change,"), "{out}");
    // A planning error is not preceded by "planned in", and a hint that works with --sim too.
    let mut none = vec!["plan", "--sim", "29", "--filter", "nothing-*"];
    none.extend_from_slice(REQUEST);
    let (code, _, err) = cli(&none);
    assert_eq!(code, 1);
    assert!(!err.contains("planned in") && err.contains("`sso-fanout org` lists the accounts"), "{err}");
    let (code, _, err) = cli(&["org", "--sim", "29", "--virtual-time"]);
    assert_eq!(code, 1, "org has no --virtual-time: {err}");
    let (code, _, err) = cli(&["org", "--sim", "29"]);
    assert_eq!(code, 0);
    assert!(!err.contains("listing existing assignments") && err.contains("read in"), "{err}");
    // A large simulated organization says how long its first read takes on the real clock.
    let (_, _, err) = cli(&["org", "--sim", "100", "--ous-only"]);
    assert!(err.contains("--virtual-time skips the wait"), "{err}");
}
