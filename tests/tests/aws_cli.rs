//! The `sso-fanout` binary against moto, through the SDK's standard endpoint variable only
//! (`AWS_ENDPOINT_URL`), as a user would point it at an emulator: assign by OU (recursive), by tag
//! and by name filter, re-run (nothing to do), revoke, each verified by reading sso-admin back.

use serde_json::Value;
use sso_fanout_aws::AwsClients;
use sso_fanout_tests::{binaries, moto::Moto};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary pointed at moto by `AWS_ENDPOINT_URL` alone, with dummy credentials (or none).
fn command(moto: &Moto, credentials: bool) -> Command {
    let mut cmd = Command::new(binaries::dir().join("sso-fanout"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", &moto.region)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    if credentials {
        cmd.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing");
    } else {
        cmd.env("AWS_CONFIG_FILE", "/dev/null").env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    }
    cmd
}

/// A command that takes a store (plan, run, cache, report), JSON output.
fn sso_fanout(moto: &Moto, store: &Path, args: &[&str]) -> Output {
    let quota_file = store.with_file_name("quota.json");
    command(moto, true)
        .args(args)
        .args(["--store", store.to_str().unwrap(), "--quota-file", quota_file.to_str().unwrap(), "--output", "json"])
        .output()
        .expect("sso-fanout runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {} stderr {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// How many times PlatformAdmins holds AdministratorAccess in `account` (2 would be a duplicate).
async fn holders(clients: &AwsClients, moto: &Moto, account: &str) -> usize {
    let admins = moto.group("PlatformAdmins");
    moto.holders(clients, account, &moto.permission_set("AdministratorAccess")).await.iter().filter(|p| **p == admins).count()
}

const ASSIGN: &[&str] = &["run", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins"];
const REVOKE: &[&str] = &["run", "--operation", "revoke", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins"];

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[tokio::test]
async fn cli_assigns_by_ou_tag_and_filter_reruns_and_revokes_on_moto() {
    let moto = Moto::seeded();
    let clients = moto.clients().await;
    let dir = tempdir();
    let store = dir.join("store.redb");
    let ids = |names: &[&str]| names.iter().map(|n| moto.account_id(n)).collect::<Vec<_>>();

    // By OU, recursive: Prod holds Payments and Search.
    let prod_ou = moto.ou("Prod");
    let out = sso_fanout(&moto, &store, &with(ASSIGN, &["--ou", &prod_ou]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(&out);
    let prod: Vec<String> = moto.accounts_under(&["Prod"]).iter().map(|n| moto.account_id(n).to_string()).collect();
    assert_eq!(s["counts"]["total"].as_u64().unwrap() as usize, prod.len());
    for a in &prod {
        assert_eq!(holders(&clients, &moto, a).await, 1, "{a}");
    }

    // By tag: the dev accounts.
    let out = sso_fanout(&moto, &store, &with(ASSIGN, &["--tag", "env=dev"]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for a in ids(&["dev-payments-001", "dev-search-001"]) {
        assert_eq!(holders(&clients, &moto, &a).await, 1, "{a}");
    }

    // By name filter: sandbox-* selects alice's (bob's is SUSPENDED: reported, not targeted).
    let out = sso_fanout(&moto, &store, &with(ASSIGN, &["--filter", "sandbox-*"]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["counts"]["total"], 1);
    assert_eq!(holders(&clients, &moto, &moto.account_id("sandbox-alice-001")).await, 1);
    assert_eq!(holders(&clients, &moto, &moto.account_id("sandbox-bob-001")).await, 0);
    assert_eq!(holders(&clients, &moto, &moto.account_id("security-audit-001")).await, 0, "not selected");

    // Re-run everything: all skipped, no duplicates.
    let out = sso_fanout(&moto, &store, &with(ASSIGN, &["--ou", &prod_ou]));
    let s = json(&out);
    assert_eq!(s["counts"]["skipped"], s["counts"]["total"], "{s}");
    assert_eq!(s["counts"]["succeeded"], 0);
    for a in &prod {
        assert_eq!(holders(&clients, &moto, a).await, 1, "no duplicate in {a}");
    }

    // Revoke by OU; the others stay.
    let out = sso_fanout(&moto, &store, &with(REVOKE, &["--ou", &prod_ou]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for a in &prod {
        assert_eq!(holders(&clients, &moto, a).await, 0, "{a}");
    }
    assert_eq!(holders(&clients, &moto, &moto.account_id("dev-search-001")).await, 1);

    // The account cache in the embedded store serves cache status.
    let out = sso_fanout(&moto, &store, &["cache", "status"]);
    let cache = json(&out);
    assert_eq!(cache["cached"], true);
    assert_eq!(cache["accounts"].as_u64().unwrap() as usize, moto.accounts().len() + 1, "members + management");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sso-fanout-aws-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a new user hit: a store shared between the simulator and a real organization (or two
/// profiles) must never plan one organization's run over another's cached accounts, and an OU
/// or root id the organization does not have is refused by name instead of selecting everything.
#[tokio::test]
async fn the_account_cache_and_ou_ids_never_cross_organizations() {
    let moto = Moto::seeded();
    let clients = moto.clients().await;
    let dir = tempdir().join("cross");
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("store.redb");

    // 1. A simulated run fills the same store with the simulated organization's accounts.
    let out = sso_fanout(&moto, &store, &with(ASSIGN, &["--sim", "29", "--virtual-time", "--filter", "prod-*"]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // 2. The same request on moto plans over moto's organization, not the cached simulated one.
    let out = sso_fanout(&moto, &store, &with(ASSIGN, &["--filter", "prod-*"]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(&out);
    let prod: Vec<String> = moto.accounts_under(&["Prod"]).iter().map(|n| moto.account_id(n).to_string()).collect();
    assert_eq!(s["counts"]["total"].as_u64().unwrap() as usize, prod.len(), "{s}");
    for a in &prod {
        assert_eq!(holders(&clients, &moto, a).await, 1, "{a}");
    }
    for r in s["results"].as_array().unwrap() {
        assert!(prod.contains(&r["accountId"].as_str().unwrap().to_string()), "{r} is not one of moto's prod accounts");
    }

    // 3. A root id that is not the organization's is refused by name, nothing is written.
    let out = sso_fanout(&moto, &store, &with(REVOKE, &["--ou", "r-zzzz"]));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let e = json(&out);
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("r-zzzz") && message.contains(&moto.organization_id()), "{message}");
    let out = sso_fanout(&moto, &store, &with(REVOKE, &["--ou", "ou-zzzz-zzzzzzzz"]));
    assert_eq!(out.status.code(), Some(1));
    for a in &prod {
        assert_eq!(holders(&clients, &moto, a).await, 1, "a refused revoke left {a} untouched");
    }

    // 4. The organization's real root id selects every ACTIVE member account.
    let out = sso_fanout(&moto, &store, &with(&["plan", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins"], &["--ou", &moto.root_id()]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let active = moto.accounts().iter().filter(|a| a["name"] != "sandbox-bob-001").count();
    assert_eq!(json(&out)["accounts"].as_array().unwrap().len(), active);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Errors from the AWS side name what to fix instead of dumping a raw HTTP answer.
#[tokio::test]
async fn aws_errors_name_the_thing_to_fix() {
    let moto = Moto::seeded();
    let dir = tempdir().join("errors");
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("store.redb");

    let out = command(&moto, true)
        .args(["status", "arn:aws:states:us-east-1:123456789012:execution:nope:nope", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let message = json(&out)["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("EXECUTION_ARN") && !message.contains("HTTP/1.1") && !message.contains("<html"), "{message}");

    let out = command(&moto, true).args(["report", "--table", "nope", "--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = json(&out)["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("table `nope` does not exist"), "{message}");

    // No credentials at all: said at once, not retried as a transient failure.
    let started = std::time::Instant::now();
    let out = command(&moto, false)
        .args(["plan", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins", "--filter", "*"])
        .args(["--store", store.to_str().unwrap(), "--output", "json"])
        .env("HOME", &dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = json(&out);
    assert_eq!(e["error"]["type"], "AccessDenied", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("no usable AWS credentials"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "took {:?}", started.elapsed());
    std::fs::remove_dir_all(dir).unwrap();
}
