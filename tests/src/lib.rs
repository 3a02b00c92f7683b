//! Support for the cross-crate tests.
//!
//! [`binaries::dir`]: the workspace's binaries (CLI and functions), built on demand.
//!
//! [`moto::Moto`]: a local moto server (tests/moto/start.sh, or the one at `MOTO_PORT`), reset
//! and seeded (tests/moto/seed.py) for each test. Tests of one binary share one server and run
//! one at a time (a process-wide lock), so each sees a fresh moto state. A server given by
//! `MOTO_PORT` is reset by every test: do not share it between test processes running at once.
//!
//! [`local_cloud::LocalCloud`]: the real state machine on moto with the built functions
//! (tests/local-cloud), one per test process, and [`local_cloud::execute`] to run it.

pub mod moto {
    use serde_json::Value;
    use sso_fanout_core::ids::{AccountId, PermissionSetArn, PrincipalId};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::{Mutex, MutexGuard, OnceLock};
    use std::time::Duration;

    pub const REGION: &str = "us-east-1";

    /// The repository root (this package lives in `<repo>/tests`).
    pub fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
    }

    fn script() -> PathBuf {
        repo_root().join("tests/moto/start.sh")
    }

    /// The venv's python (installed on first use).
    fn python() -> PathBuf {
        static PYTHON: OnceLock<PathBuf> = OnceLock::new();
        PYTHON
            .get_or_init(|| {
                let out = Command::new("bash").arg(script()).arg("install").output().expect("run tests/moto/start.sh install");
                assert!(out.status.success(), "tests/moto/start.sh install failed:\n{}", String::from_utf8_lossy(&out.stderr));
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
            })
            .clone()
    }

    /// The server's port: `MOTO_PORT` if set, else one server started for this test process
    /// (stopped by start.sh's watcher when the process exits).
    pub fn port() -> u16 {
        static PORT: OnceLock<u16> = OnceLock::new();
        *PORT.get_or_init(|| {
            if let Some(port) = std::env::var("MOTO_PORT").ok().and_then(|p| p.trim().parse().ok()) {
                return port;
            }
            let portfile = std::env::temp_dir().join(format!("sso-fanout-moto-{}.port", std::process::id()));
            let out = Command::new("bash")
                .arg(script())
                .arg(&portfile)
                .env("MOTO_PARENT_PID", std::process::id().to_string())
                .output()
                .expect("run tests/moto/start.sh");
            assert!(out.status.success(), "tests/moto/start.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
            let port = std::fs::read_to_string(&portfile).expect("port file").trim().parse().expect("a port number");
            let _ = std::fs::remove_file(&portfile);
            port
        })
    }

    /// One raw HTTP request to moto's control API; returns (status, body).
    pub fn moto_api(method: &str, path: &str, body: &str) -> (u16, String) {
        let port = port();
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write to moto");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read from moto");
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// A test's exclusive use of the moto server, reset (and seeded) for it.
    pub struct Moto {
        _serial: MutexGuard<'static, ()>,
        pub port: u16,
        pub endpoint: String,
        pub region: String,
        /// What seed.py created (`Value::Null` for [`Moto::empty`]).
        pub seed: Value,
    }

    fn serial() -> MutexGuard<'static, ()> {
        static SERIAL: Mutex<()> = Mutex::new(());
        // A failed test poisons the lock; the next test resets moto anyway.
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reset() {
        let (status, body) = moto_api("POST", "/moto-api/reset", "");
        assert_eq!(status, 200, "moto reset failed: {body}");
    }

    impl Moto {
        /// A freshly reset moto, seeded by tests/moto/seed.py.
        pub fn seeded() -> Moto {
            let mut moto = Moto::empty();
            let out = Command::new(python())
                .arg(repo_root().join("tests/moto/seed.py"))
                .args(["--port", &moto.port.to_string(), "--region", REGION])
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env_remove("AWS_PROFILE")
                .output()
                .expect("run seed.py");
            assert!(out.status.success(), "seed.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
            moto.seed = serde_json::from_slice(&out.stdout).expect("seed.py prints JSON");
            moto
        }

        /// A freshly reset moto with nothing in it.
        pub fn empty() -> Moto {
            let guard = serial();
            let port = port();
            reset();
            Moto { _serial: guard, port, endpoint: format!("http://127.0.0.1:{port}"), region: REGION.into(), seed: Value::Null }
        }

        /// Every client pinned to this server, dummy credentials.
        pub async fn clients(&self) -> sso_fanout_aws::AwsClients {
            sso_fanout_aws::AwsClients::local(&self.endpoint, &self.region).await
        }

        fn str_at(&self, pointer: &str) -> String {
            self.seed.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("seed has no {pointer}")).to_string()
        }

        pub fn instance_arn(&self) -> String {
            self.str_at("/instanceArn")
        }

        pub fn identity_store_id(&self) -> String {
            self.str_at("/identityStoreId")
        }

        pub fn organization_id(&self) -> String {
            self.str_at("/organizationId")
        }

        pub fn management_account_id(&self) -> String {
            self.str_at("/managementAccountId")
        }

        pub fn root_id(&self) -> String {
            self.str_at("/rootId")
        }

        /// OU id by path of names, e.g. "Prod/Payments".
        pub fn ou(&self, path: &str) -> String {
            self.str_at(&format!("/ous/{}", path.replace('~', "~0").replace('/', "~1")))
        }

        pub fn group(&self, name: &str) -> PrincipalId {
            self.str_at(&format!("/groups/{name}")).parse().expect("a principal id")
        }

        pub fn user(&self, name: &str) -> PrincipalId {
            self.str_at(&format!("/users/{name}")).parse().expect("a principal id")
        }

        pub fn permission_set(&self, name: &str) -> PermissionSetArn {
            self.str_at(&format!("/permissionSets/{name}")).parse().expect("a permission set ARN")
        }

        /// Principal ids holding `permission_set_arn` in `account`, as sso-admin lists them
        /// (duplicates kept, so a repeated write shows).
        pub async fn holders(&self, clients: &sso_fanout_aws::AwsClients, account: &str, permission_set_arn: &str) -> Vec<PrincipalId> {
            let pages: Vec<_> = clients
                .sso_admin
                .list_account_assignments()
                .instance_arn(self.instance_arn())
                .account_id(account)
                .permission_set_arn(permission_set_arn)
                .into_paginator()
                .send()
                .try_collect()
                .await
                .expect("ListAccountAssignments");
            pages.iter().flat_map(|p| p.account_assignments()).filter_map(|a| a.principal_id()?.parse().ok()).collect()
        }

        pub fn accounts(&self) -> Vec<Value> {
            self.seed["accounts"].as_array().cloned().unwrap_or_default()
        }

        pub fn account_id(&self, name: &str) -> AccountId {
            self.accounts()
                .iter()
                .find(|a| a["name"] == name)
                .and_then(|a| a["id"].as_str())
                .unwrap_or_else(|| panic!("seed has no account {name}"))
                .parse()
                .expect("an account id")
        }

        /// Seeded account names whose OU path (names) starts with `prefix` (e.g. ["Prod"]).
        pub fn accounts_under(&self, prefix: &[&str]) -> Vec<String> {
            self.accounts()
                .iter()
                .filter(|a| {
                    let names: Vec<&str> = a["ouNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    names.len() >= prefix.len() && names[..prefix.len()] == *prefix
                })
                .filter_map(|a| a["name"].as_str().map(str::to_string))
                .collect()
        }
    }
}

pub mod binaries {
    use serde_json::Value;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;

    /// The directory holding the workspace's binaries (`sso-fanout`, `planner`, `worker`,
    /// `reporter`), built once per test process. A package's binaries are built by
    /// `cargo test` only for that package's own tests, so this package builds them itself.
    /// `--workspace --all-targets` resolves features as `cargo test --workspace` does, so within
    /// that run only the binaries themselves compile. `SSO_FANOUT_BIN_DIR` (or
    /// `LOCAL_CLOUD_BIN_DIR`) skips the build.
    pub fn dir() -> PathBuf {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        DIR.get_or_init(|| {
            if let Some(dir) = std::env::var_os("SSO_FANOUT_BIN_DIR").or_else(|| std::env::var_os("LOCAL_CLOUD_BIN_DIR")) {
                return PathBuf::from(dir);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build
                .current_dir(crate::moto::repo_root())
                .args(["build", "--workspace", "--all-targets", "--message-format=json-render-diagnostics"])
                .stdin(Stdio::null());
            // `cargo test` gives this process the package's CARGO_PKG_* / CARGO_MANIFEST_*
            // variables; passed on, they look like a changed environment to build scripts that
            // watch them (ring's `rerun-if-env-changed=CARGO_PKG_VERSION_MAJOR`), which would
            // rebuild ring and the whole AWS SDK here and again in the next plain cargo run.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                let inherited = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"];
                if inherited.iter().any(|p| key.starts_with(p)) {
                    build.env_remove(key.as_ref());
                }
            }
            let out = build.output().expect("run cargo build");
            assert!(out.status.success(), "cargo build of the workspace binaries failed:\n{}", String::from_utf8_lossy(&out.stderr));
            let mut dirs = BTreeMap::new();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let Ok(msg) = serde_json::from_str::<Value>(line) else { continue };
                // The binaries themselves, not their unit-test harnesses (same target name).
                let is_bin = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin"));
                if msg["reason"] != "compiler-artifact" || !is_bin || msg["profile"]["test"] != false {
                    continue;
                }
                if let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str()) {
                    dirs.insert(name.to_string(), Path::new(exe).parent().expect("a directory").to_path_buf());
                }
            }
            let dir = dirs.get("sso-fanout").cloned().expect("cargo build reported the sso-fanout binary");
            for name in ["planner", "worker", "reporter"] {
                assert_eq!(dirs.get(name), Some(&dir), "{name} is not beside sso-fanout: {dirs:?}");
            }
            dir
        })
        .clone()
    }
}

/// The local cloud (tests/local-cloud: moto in Step Functions execution mode running our built
/// function binaries) for the end-to-end tests of the real state machine, and executions on it.
pub mod local_cloud {
    use serde_json::{json, Value};
    use sso_fanout_aws::AwsClients;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    pub const REGION: &str = "us-east-1";
    /// How long one execution may run before the test gives up on it.
    pub const EXECUTION_DEADLINE: Duration = Duration::from_secs(120);

    /// The local cloud of this test process; stopped when dropped, also when a test panics (the
    /// state directory with the logs is then kept and its path printed).
    pub struct LocalCloud {
        dir: PathBuf,
        /// up.sh's env.json: endpoint, table, state machine ARNs, `seed` (every seeded id).
        pub env: Value,
    }

    impl LocalCloud {
        /// Starts one (tests/local-cloud/up.sh) in `.local-cloud/<label>-<pid>`, with the
        /// binaries of `bin_dir`, the state machine's Retry waits scaled down, and `extra_env`
        /// for up.sh (e.g. `LOCAL_CLOUD_FAIL_BATCH`).
        pub fn up(label: &str, bin_dir: &Path, extra_env: &[(&str, &str)]) -> LocalCloud {
            let dir = crate::moto::repo_root().join(".local-cloud").join(format!("{label}-{}", std::process::id()));
            let started = Instant::now();
            // The guard exists before up.sh runs, so a half-started cloud is stopped too.
            let mut cloud = LocalCloud { dir: dir.clone(), env: Value::Null };
            let mut up = Command::new("bash");
            up.arg(crate::moto::repo_root().join("tests/local-cloud/up.sh"))
                .env("LOCAL_CLOUD_DIR", &dir)
                .env("LOCAL_CLOUD_BIN_DIR", bin_dir)
                .env("LOCAL_CLOUD_RETRY_SCALE", "0.01")
                .env("LOCAL_CLOUD_PARENT_PID", std::process::id().to_string())
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_REGION", REGION)
                .env("AWS_DEFAULT_REGION", REGION)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env_remove("AWS_PROFILE")
                .stdin(Stdio::null());
            for (key, value) in extra_env {
                up.env(key, value);
            }
            let out = up.output().expect("run tests/local-cloud/up.sh");
            assert!(out.status.success(), "tests/local-cloud/up.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
            let text = std::fs::read_to_string(dir.join("env.json")).expect("up.sh writes env.json");
            cloud.env = serde_json::from_str(&text).expect("env.json is JSON");
            let endpoint = cloud.endpoint();
            assert!(endpoint.starts_with("http://127.0.0.1:"), "not a local endpoint: {endpoint}");
            eprintln!("local cloud on {endpoint} in {:.1?}", started.elapsed());
            cloud
        }

        /// The state directory (logs, env.json); removed when the cloud stops after a pass.
        pub fn dir(&self) -> &Path {
            &self.dir
        }

        pub fn endpoint(&self) -> String {
            self.str_at("/endpoint")
        }

        pub fn str_at(&self, pointer: &str) -> String {
            self.env.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("env.json has no {pointer}")).to_string()
        }

        /// The seeded member accounts (seed.py's format: id, name, status, ouNames, tags).
        pub fn accounts(&self) -> Vec<Value> {
            self.env["seed"]["accounts"].as_array().cloned().unwrap_or_default()
        }

        /// Ids of the seeded member accounts that are ACTIVE and whose name starts with `prefix`.
        pub fn active_ids(&self, prefix: &str) -> BTreeSet<String> {
            self.accounts()
                .iter()
                .filter(|a| a["status"] == "ACTIVE" && a["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
                .map(|a| a["id"].as_str().unwrap().to_string())
                .collect()
        }

        pub fn account_id(&self, name: &str) -> String {
            let a = self.accounts().into_iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("no account {name}"));
            a["id"].as_str().unwrap().to_string()
        }

        /// The `sso-fanout` binary pointed at this cloud's moto by `AWS_ENDPOINT_URL` alone, with
        /// dummy credentials and nothing else from the caller's environment.
        pub fn cli(&self) -> Command {
            let mut cmd = Command::new(crate::binaries::dir().join("sso-fanout"));
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("AWS_ENDPOINT_URL", self.endpoint())
                .env("AWS_REGION", REGION)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .stdin(Stdio::null());
            cmd
        }

        pub fn tail(&self, file: &str, lines: usize) -> String {
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
            down.arg(crate::moto::repo_root().join("tests/local-cloud/down.sh")).env("LOCAL_CLOUD_DIR", &self.dir).stdin(Stdio::null());
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

    /// A finished execution: its status, output or error, and its history (flattened).
    pub struct Execution {
        pub arn: String,
        pub status: String,
        pub output: Value,
        pub error: String,
        pub cause: String,
        pub history: Vec<Value>,
    }

    impl Execution {
        /// History events of `kind` (e.g. "TaskFailed") as JSON-ish values.
        pub fn events(&self, kind: &str) -> Vec<&Value> {
            self.history.iter().filter(|e| e["type"] == kind).collect()
        }

        /// The planner's output, from the Plan state's exit.
        pub fn plan_output(&self) -> Value {
            self.history
                .iter()
                .find(|e| e["type"] == "TaskStateExited" && e["name"] == "Plan")
                .map(|e| serde_json::from_str(e["output"].as_str().unwrap_or("null")).expect("Plan output is JSON"))
                .unwrap_or_else(|| panic!("{}: no Plan state exit in the history", self.arn))
        }
    }

    /// Starts an execution of `state_machine` with `input` and waits for it to end.
    pub async fn execute(clients: &AwsClients, state_machine: &str, name: Option<&str>, input: &Value) -> Execution {
        let started = Instant::now();
        let arn = clients
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
            let d = clients.sfn.describe_execution().execution_arn(&arn).send().await.expect("DescribeExecution");
            if d.status().as_str() != "RUNNING" {
                break d;
            }
            assert!(started.elapsed() < EXECUTION_DEADLINE, "{arn} still RUNNING after {EXECUTION_DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut history = Vec::new();
        let mut token = None;
        loop {
            let page = clients
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
}
