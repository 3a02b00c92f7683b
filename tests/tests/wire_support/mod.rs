//! The wire emulator (`sso-fanout sim serve`) as a child process, for the `wire_*` tests.
#![allow(dead_code)] // each test binary uses a part

use serde_json::Value;
use sso_fanout_tests::binaries;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `sso-fanout sim serve`, stopped with SIGTERM when dropped.
pub struct Emulator {
    child: Child,
    pub endpoint: String,
}

impl Emulator {
    pub fn start(args: &[&str]) -> Emulator {
        let mut child = Command::new(binaries::dir().join("sso-fanout"))
            .args(["sim", "serve", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sso-fanout sim serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the endpoint line");
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
        Emulator { child, endpoint }
    }

    pub fn get(&self, path: &str) -> Value {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).expect("connect to the emulator");
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
    }

    /// `sso-fanout` (the real AWS backend) pointed at this emulator by `AWS_ENDPOINT_URL` alone,
    /// with dummy credentials and `dir` as its home; stdin closed.
    pub fn cli(&self, dir: &Path) -> Command {
        let mut command = Command::new(binaries::dir().join("sso-fanout"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        command
    }

    pub fn stats(&self) -> Value {
        self.get("/_sim/stats")
    }

    /// Accounts holding an assignment now (the simulated organization has only
    /// PlatformAdmins / AdministratorAccess ones).
    pub fn holders(&self) -> BTreeSet<String> {
        self.get("/_sim/assignments")["AccountAssignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["AccountId"].as_str().unwrap().to_string())
            .collect()
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

impl Drop for Emulator {
    fn drop(&mut self) {
        terminate(&self.child);
        let _ = self.child.wait();
    }
}

pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sso-fanout-wire-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
