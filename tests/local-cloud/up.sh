#!/usr/bin/env bash
# The real state machine, locally: moto (tests/moto's pinned venv) in Step Functions execution
# mode on 127.0.0.1, its Lambda invocations running our built binaries once per invoke
# (moto_shim.py), seeded with an organization of 30 member accounts. Builds nothing: run
# `cargo build -p fanout-planner -p fanout-worker -p fanout-reporter` first (`make local-cloud` does).
#
#   bash tests/local-cloud/up.sh        start; writes $LOCAL_CLOUD_DIR/env.json and env.sh
#   bash tests/local-cloud/down.sh      stop
#
# Environment (all optional):
#   LOCAL_CLOUD_DIR          state directory (default <repo>/.local-cloud)
#   LOCAL_CLOUD_BIN_DIR      where planner/worker/reporter are (default <repo>/target/debug)
#   LOCAL_CLOUD_RETRY_SCALE  multiply the state machine's Retry waits (default 1; tests use less)
#   LOCAL_CLOUD_FAIL_BATCH   also create state machine sso-fanout-faults whose worker fails
#                            batches on purpose, e.g. "0:2,1" (batch 0 twice, batch 1 always)
#   LOCAL_CLOUD_PARENT_PID   stop the server when that process exits (the Rust test passes its pid)
#   LOCAL_CLOUD_FLEET        extra fleet-NNN accounts on top of tests/moto/seed.py's 12 (default 18)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${LOCAL_CLOUD_DIR:-$repo/.local-cloud}"
bin_dir="$(bash "$here/bin-dir.sh")"

log() { echo "local-cloud: $*" >&2; }

# Never real AWS, whatever the caller's environment holds.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
for name in $(compgen -e); do
    if [[ "$name" == AWS_ENDPOINT_URL_* ]]; then unset "$name"; fi
done
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$dir/moto.pid" && [[ -f "$dir/env.json" ]]; then
    log "already running (pid $(cat "$dir/moto.pid")); $dir/env.json. Stop it with tests/local-cloud/down.sh"
    exit 0
fi

for b in planner worker reporter; do
    if [[ ! -x "$bin_dir/$b" ]]; then
        log "missing $bin_dir/$b: build the functions (cargo build -p fanout-planner -p fanout-worker -p fanout-reporter), or point LOCAL_CLOUD_BIN_DIR at the directory that holds planner, worker and reporter"
        exit 1
    fi
done

python="$(bash "$repo/tests/moto/start.sh" install)"
mkdir -p "$dir"
rm -f "$dir/env.json" "$dir/env.sh" "$dir/functions.log"

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

answers() {
    "$python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
except urllib.error.HTTPError:
    pass
EOF
}

port=""
for _ in 1 2 3; do
    candidate="$(free_port)"
    : >"$dir/moto.log"
    # setsid: own process group, so down.sh stops the server and any function binary it runs.
    LOCAL_CLOUD_BIN_DIR="$bin_dir" LOCAL_CLOUD_LAMBDA_LOG="$dir/functions.log" \
        setsid "$python" "$here/moto_shim.py" -H 127.0.0.1 -p "$candidate" >>"$dir/moto.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/moto.pid"
    for _ in $(seq 1 150); do
        if answers "$candidate"; then
            port="$candidate"
            break 2
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -- "-$pid" 2>/dev/null || true
    rm -f "$dir/moto.pid"
    log "server on port $candidate did not come up; log follows"
    tail -n 20 "$dir/moto.log" >&2 || true
done
if [[ -z "$port" ]]; then
    log "giving up"
    exit 1
fi
echo "$port" >"$dir/port"

if [[ -n "${LOCAL_CLOUD_PARENT_PID:-}" ]]; then
    # shellcheck disable=SC2016 # $0/$1 are the inner shell's arguments
    setsid bash -c 'while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -- "-$1" 2>/dev/null' \
        "$LOCAL_CLOUD_PARENT_PID" "$pid" >/dev/null 2>&1 </dev/null &
    echo $! >"$dir/watcher.pid"
fi

fail() {
    log "$1; server log: $dir/moto.log"
    tail -n 30 "$dir/moto.log" >&2 || true
    bash "$here/down.sh" >/dev/null 2>&1 || true
    exit 1
}

# Execution mode first: the Step Functions backend is chosen per request from this setting.
"$python" - "$port" <<'EOF' || fail "could not enable execution mode"
import json, sys, urllib.request
body = json.dumps({"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/moto-api/config", data=body,
                             headers={"Content-Type": "application/json"}, method="POST")
urllib.request.urlopen(req, timeout=10).read()
EOF

"$python" "$repo/tests/moto/seed.py" --port "$port" >"$dir/seed-base.json" || fail "tests/moto/seed.py failed"
"$python" "$here/seed_fleet.py" --port "$port" --count "${LOCAL_CLOUD_FLEET:-18}" >"$dir/seed-fleet.json" || fail "seed_fleet.py failed"
"$python" - "$dir" <<'EOF' || fail "could not merge the seed data"
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
seed = json.loads((d / "seed-base.json").read_text())
fleet = json.loads((d / "seed-fleet.json").read_text())
seed["ous"].update(fleet["ous"])
seed["accounts"].extend(fleet["accounts"])
(d / "seed.json").write_text(json.dumps(seed, indent=2) + "\n")
EOF

"$python" "$here/provision.py" --port "$port" --seed "$dir/seed.json" --out "$dir" --pid "$pid" \
    --log "$dir/moto.log" --lambda-log "$dir/functions.log" >/dev/null || fail "provisioning failed"

log "moto on http://127.0.0.1:$port (pid $pid) with state machine $(
    "$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["stateMachineArn"])' "$dir/env.json")"
log "  details: $dir/env.json; function output: $dir/functions.log; server log: $dir/moto.log"
log "  try:     source $dir/env.sh && target/debug/sso-fanout start --wait --operation assign --permission-set AdministratorAccess --group PlatformAdmins --filter 'fleet-*'"
log "  stop:    bash tests/local-cloud/down.sh"
