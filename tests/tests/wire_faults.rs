//! Several `sso-fanout` processes on one machine share Identity Center's quota through the
//! quota file (`--quota-file`, each with a store of its own), against the wire emulator, and
//! are killed with SIGKILL at random points (mid-write of the quota file included, whenever a
//! kill lands there). The processes that follow converge, and the emulator, which audits every
//! request it received, counts no request over the quota: never 15 operations outstanding,
//! never an operation beside a running one in its account, never more than 20 requests in a
//! sliding second.

mod wire_support;

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wire_support::{tempdir, Emulator};

const PERMISSION_SETS: [&str; 3] = ["AdministratorAccess", "ReadOnlyAccess", "PowerUserAccess"];

/// `sso-fanout run` assigning `permission_set` to PlatformAdmins everywhere, with the machine's
/// quota file shared and a store of its own (`store`), pointed at the emulator.
fn spawn(emulator: &Emulator, dir: &Path, store: &str, permission_set: &str) -> Child {
    emulator
        .cli(dir)
        .args(["run", "--operation", "assign", "--permission-set", permission_set, "--group", "PlatformAdmins", "--filter", "*"])
        .args(["--store", dir.join(store).to_str().unwrap(), "--quota-file", dir.join("quota.json").to_str().unwrap(), "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sso-fanout runs")
}

fn summary(child: Child) -> (Option<i32>, Value, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null), stderr)
}

/// A kill time in `range` (ms), different at every call (no seeded crate here: the clock's
/// nanoseconds are random enough to land kills at varied points).
fn somewhen(range: std::ops::Range<u64>) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    Duration::from_millis(range.start + nanos % (range.end - range.start))
}

#[test]
fn processes_killed_at_random_points_never_break_the_quota_and_the_next_ones_converge() {
    let emulator = Emulator::start(&["--accounts", "40", "--seed", "11", "--latency", "2,6", "--clean"]);
    let dir = tempdir("kill9");
    let started = Instant::now();
    // Three runs at once; two are killed with SIGKILL while they work.
    let mut runs: Vec<Child> = PERMISSION_SETS.iter().enumerate().map(|(i, ps)| spawn(&emulator, &dir, &format!("store-{i}.redb"), ps)).collect();
    for (i, after) in [somewhen(1_500..5_000), somewhen(3_000..8_000)].into_iter().enumerate() {
        std::thread::sleep(after.saturating_sub(started.elapsed()));
        let pid = runs[i].id().to_string();
        assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    }
    let mut survivors = Vec::new();
    for child in runs.drain(..) {
        survivors.push(summary(child));
    }
    for killed in &survivors[..2] {
        assert_eq!(killed.0, None, "a kill landed after the run had finished: {}", killed.2);
    }
    assert_eq!(survivors[2].0, Some(0), "the run nobody killed: {}", survivors[2].2);
    // The killed runs again, from their stores: they converge.
    let again: Vec<Child> = (0..2).map(|i| spawn(&emulator, &dir, &format!("store-{i}.redb"), PERMISSION_SETS[i])).collect();
    for child in again {
        let (code, s, stderr) = summary(child);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(s["counts"]["total"], s["counts"]["succeeded"].as_u64().unwrap() + s["counts"]["skipped"].as_u64().unwrap(), "{s}");
    }
    let stats = emulator.stats();
    assert_eq!(stats["violations"]["outstanding"], 0, "{stats}");
    assert_eq!(stats["violations"]["rate"], 0, "{stats}");
    assert_eq!(stats["conflicts"], 0, "{stats}");
    assert!(stats["rate_limit"]["max_admitted_in_window"].as_u64().unwrap() <= 20, "{stats}");
    // Every assignment is there: 40 accounts x 3 permission sets.
    let held = emulator.get("/_sim/assignments")["AccountAssignments"].as_array().unwrap().len();
    assert_eq!(held, 120, "{stats}");
    // The quota file is whole (a kill mid-write leaves the old state or the new one).
    let ledger: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("quota.json")).unwrap()).expect("the quota file parses");
    assert!(ledger["scopes"].is_object(), "{ledger}");
}
