//! `make local-cloud` finds the function binaries wherever cargo builds them.

use std::process::Command;

fn bin_dir(env: &[(&str, &str)]) -> String {
    let script = sso_fanout_tests::moto::repo_root().join("tests/local-cloud/bin-dir.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script).env_remove("LOCAL_CLOUD_BIN_DIR").env_remove("CARGO_TARGET_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn binaries_are_found_in_cargos_target_dir() {
    assert_eq!(bin_dir(&[("CARGO_TARGET_DIR", "/tmp/elsewhere")]), "/tmp/elsewhere/debug");
    assert_eq!(bin_dir(&[("LOCAL_CLOUD_BIN_DIR", "/opt/bins"), ("CARGO_TARGET_DIR", "/tmp/elsewhere")]), "/opt/bins");
    assert!(bin_dir(&[]).ends_with("/debug"));
}
