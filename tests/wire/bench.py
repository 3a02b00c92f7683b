#!/usr/bin/env python3
"""sso-fanout and the seed's tool (awsideman, unmodified, from PyPI) against fresh wire
emulators (`sso-fanout sim serve`) of the same seed, one after the other.

    tests/wire/bench.py --cli target/debug/sso-fanout --awsideman .venv-awsideman/bin/awsideman \
        --accounts 29,200 --seed 7

Per tool and size: wall time from the tool's first request until the emulator's last
assignment operation finished, requests, throttles, quota violations (strict one-second
sliding window; outstanding operations), ConflictExceptions, accounts the tool reported as
assigned that the emulator does not hold, requests the emulator refused as invalid for the
service model, and how long the tool's process ran. Only ever talks
to 127.0.0.1. Standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

INSTANCE_ARN = "arn:aws:sso:::instance/ssoins-7223000000000001"
IDENTITY_STORE_ID = "d-9067000001"


class Emulator:
    def __init__(self, cli, accounts, seed, latency):
        args = [cli, "sim", "serve", "--accounts", str(accounts), "--seed", str(seed), "--clean", "--port", "0"]
        if latency:
            args += ["--latency", latency]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on http://127.0.0.1:"):
            raise SystemExit(f"emulator did not start: {line!r}")
        self.endpoint = line.split(" ", 2)[2]

    def get(self, path):
        with urllib.request.urlopen(self.endpoint + path, timeout=30) as r:
            return json.load(r)

    def post(self, target, body):
        req = urllib.request.Request(
            self.endpoint + "/",
            data=json.dumps(body).encode(),
            headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def mark(self):
        """The counters just before the measured command."""
        self.base = self.get("/_sim/stats")

    def settle(self, timeout=900):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.get("/_sim/stats")
            if s["outstanding"] == 0:
                return s
            time.sleep(0.5)
        return self.get("/_sim/stats")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def aws_env(home, endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=home,
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    return env


def run_sso_fanout(cli, emu, work, keep=None):
    env = aws_env(work, emu.endpoint)
    args = [cli, "run", "--operation", "assign", "--permission-set", "AdministratorAccess", "--group", "PlatformAdmins",
            "--filter", "*", "--store", os.path.join(work, "store.redb"), "--quota-file", os.path.join(work, "quota.json"),
            "--output", "json"]
    emu.mark()
    started = time.time()
    out = subprocess.run(args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.time() - started
    summary = json.loads(out.stdout)
    reported = {r["accountId"] for r in summary["results"] if r["outcome"] == "succeeded"}
    failed = {r["accountId"] for r in summary["results"] if r["outcome"] in ("failed", "timed_out", "timedOut")}
    return elapsed, reported, failed, f"exit {out.returncode}, counts {summary['counts']}"


def run_awsideman(awsideman, emu, work, keep=None):
    env = aws_env(work, emu.endpoint)
    # Its profile and caches live in this throw-away HOME; credentials for profile `local`.
    os.makedirs(os.path.join(work, ".aws"), exist_ok=True)
    with open(os.path.join(work, ".aws", "credentials"), "w") as f:
        f.write("[local]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    with open(os.path.join(work, ".aws", "config"), "w") as f:
        f.write("[profile local]\nregion = us-east-1\n")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(k)
    # Set-up before the measured run (the simulated instance's ids are fixed: crates/sim/src/org.rs),
    # so that the emulator's first request is the measured run's.
    for args in (["profile", "add", "local", "--region", "us-east-1", "--default"],
                 ["sso", "set", INSTANCE_ARN, IDENTITY_STORE_ID, "--profile", "local"]):
        r = subprocess.run([awsideman] + args, env=env, capture_output=True, text=True, input="y\n")
        if r.returncode != 0:
            raise SystemExit(f"awsideman {' '.join(args)} failed: {r.stdout}\n{r.stderr}")
    shutil.rmtree(os.path.join(work, ".awsideman", "cache"), ignore_errors=True)
    emu.mark()
    args = [awsideman, "assignment", "assign", "AdministratorAccess", "PlatformAdmins", "--filter", "*",
            "--principal-type", "GROUP", "--profile", "local"]
    started = time.time()
    out = subprocess.run(args, env=env, capture_output=True, text=True, input="y\n")
    elapsed = time.time() - started
    with open(os.path.join(work, "awsideman.out"), "w") as f:
        f.write(out.stdout + "\n--- stderr ---\n" + out.stderr)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)
    # Its per-account lines: "✅ name (123456789012): success (0.15s)".
    reported = set(re.findall(r"\((\d{12})\): success", text))
    successful = _count(text, r"Successful:\s*(\d+)")
    failed = _count(text, r"Failed:\s*(\d+)")
    skipped = _count(text, r"Skipped:\s*(\d+)")
    if keep:
        shutil.copy(os.path.join(work, "awsideman.out"), keep)
    note = f"exit {out.returncode}, successful {successful}, failed {failed}, skipped {skipped}"
    return elapsed, (reported if reported else successful), failed, note


def _count(text, pattern):
    m = re.findall(pattern, text)
    return int(m[-1]) if m else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", required=True)
    p.add_argument("--awsideman")
    p.add_argument("--accounts", default="29,200")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--latency", default=None, help="MEDIAN_S,P99_S (default: the simulator's 3,15)")
    p.add_argument("--json", help="write the rows here too")
    a = p.parse_args()
    rows = []
    for n in [int(x) for x in a.accounts.split(",")]:
        tools = [("sso-fanout", run_sso_fanout, a.cli)]
        if a.awsideman:
            tools.append(("awsideman 0.1.2a0", run_awsideman, a.awsideman))
        for name, run, exe in tools:
            emu = Emulator(a.cli, n, a.seed, a.latency)
            work = tempfile.mkdtemp(prefix="sso-fanout-bench-wire-")
            try:
                keep = os.path.join(os.path.dirname(os.path.abspath(a.json)), f"awsideman-{n}.out") if a.json else None
                elapsed, reported, failed, note = run(exe, emu, work, keep)
                base = emu.base
                stats = emu.settle()
                held = {x["AccountId"] for x in emu.get("/_sim/assignments")["AccountAssignments"]}
                if isinstance(reported, set):
                    false_ok = len(reported - held)
                else:
                    # awsideman prints counts, not accounts: reported successes beyond what is held.
                    false_ok = None if reported is None else max(0, reported - len(held))
                calls = {k: v - base["calls"].get(k, 0) for k, v in stats["calls"].items()}
                # The measured run's first request (the set-up made none), else its start.
                first = stats["first_call_s"] if base["first_call_s"] is None else base["now_s"]
                row = {
                    "accounts": n,
                    "tool": name,
                    "wall_s": round((stats["last_finished_s"] or 0) - (first or 0), 1),
                    "process_s": round(elapsed, 1),
                    "requests": sum(calls.values()),
                    "sso_admin_calls": stats["sso_admin_calls"] - base["sso_admin_calls"],
                    "creates": calls.get("CreateAccountAssignment", 0),
                    "throttled": stats["throttled"] - base["throttled"],
                    "violations_rate": stats["violations"]["rate"] - base["violations"]["rate"],
                    "violations_outstanding": stats["violations"]["outstanding"] - base["violations"]["outstanding"],
                    "conflicts": stats["conflicts"] - base["conflicts"],
                    # Requests the emulator refused as invalid for the service model (AWS would too).
                    "invalid": {k: v - base["invalid"].get(k, 0) for k, v in stats["invalid"].items() if v > base["invalid"].get(k, 0)},
                    "held": len(held),
                    "false_successes": false_ok,
                    "note": note,
                    "calls": calls,
                }
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "calls"}), file=sys.stderr, flush=True)
            finally:
                emu.stop()
                shutil.rmtree(work, ignore_errors=True)
    print("| accounts | tool | wall s (first request -> last operation done) | process s | requests | sso-admin calls | creates | throttled | violations (rate / outstanding) | conflicts | assignments held | reported assigned but not | refused as invalid |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        fs = "?" if r["false_successes"] is None else r["false_successes"]
        print(f"| {r['accounts']} | {r['tool']} | {r['wall_s']} | {r['process_s']} | {r['requests']} | {r['sso_admin_calls']} | {r['creates']} | "
              f"{r['throttled']} | {r['violations_rate']} / {r['violations_outstanding']} | {r['conflicts']} | {r['held']} | {fs} | "
              f"{sum(r['invalid'].values())} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
