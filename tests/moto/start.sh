#!/usr/bin/env bash
# Local AWS endpoint for the adapter tests: moto (pinned in requirements.txt) on 127.0.0.1.
#
#   tests/moto/start.sh [PORTFILE]        install if needed, start moto on a free port; write the
#                                          port to PORTFILE, or print MOTO_PORT=<port> on stdout
#   tests/moto/start.sh stop [PORTFILE|PORT]   stop the server started with that PORTFILE / port
#   tests/moto/start.sh install           only create/update <repo>/.venv-moto; print its python
#
# Environment:
#   PYTHON            interpreter used to create the venv (default: python3)
#   MOTO_STATE_DIR    where pid and log files go (default: ${TMPDIR:-/tmp}/sso-fanout-moto)
#   MOTO_PARENT_PID   when set, the server is stopped as soon as that process exits (the Rust
#                     test helper passes its own pid, so test runs never leave servers behind)
#
# Idempotent and quiet: the venv is (re)built only when requirements.txt changes. Works as root on
# a fresh clone with access to PyPI only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/.venv-moto"
state="${MOTO_STATE_DIR:-${TMPDIR:-/tmp}/sso-fanout-moto}"
mkdir -p "$state"

log() { echo "moto: $*" >&2; }

install() {
    local stamp="$venv/.requirements.sha256" want
    want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
    # Two test binaries may start at once on a fresh clone: one installs, the other waits.
    exec 9>"$state/install.lock"
    flock 9
    if [[ -x "$venv/bin/moto_server" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        exec 9>&-
        return 0
    fi
    log "installing moto into $venv (once; takes a minute)"
    if [[ ! -x "$venv/bin/python" ]]; then
        "${PYTHON:-python3}" -m venv "$venv" || {
            log "cannot create a venv with ${PYTHON:-python3} (on Debian/Ubuntu: apt-get install python3-venv)"
            exit 1
        }
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
    echo "$want" >"$stamp"
    exec 9>&-
}

free_port() {
    "$venv/bin/python" - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

answers() {
    "$venv/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
EOF
}

start() {
    local portfile="${1:-}" port pid pidfile logfile
    install
    # Server logs stay for a day after a run (to read after a failed test), then go.
    find "$state" -maxdepth 1 -name 'moto-*.log' -mmin +1440 -delete 2>/dev/null || true
    for _ in 1 2 3; do
        port="$(free_port)"
        logfile="$state/moto-$port.log"
        pidfile="${portfile:+$portfile.pid}"
        pidfile="${pidfile:-$state/moto-$port.pid}"
        # setsid: the server outlives this script and is not killed with the caller's process group.
        setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$pidfile"
        for _ in $(seq 1 150); do
            if answers "$port"; then
                if [[ -n "${MOTO_PARENT_PID:-}" ]]; then
                    # Watcher: stop the server when the parent (a test process) is gone.
                    setsid bash -c 'while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done; kill "$1" 2>/dev/null; rm -f "$2"' \
                        "$MOTO_PARENT_PID" "$pid" "$pidfile" >/dev/null 2>&1 </dev/null &
                fi
                if [[ -n "$portfile" ]]; then
                    echo "$port" >"$portfile"
                else
                    echo "MOTO_PORT=$port"
                fi
                log "listening on 127.0.0.1:$port (pid $pid, log $logfile)"
                return 0
            fi
            if ! kill -0 "$pid" 2>/dev/null; then
                break # exited: most likely the port was taken in the meantime; try another one
            fi
            sleep 0.2
        done
        kill "$pid" 2>/dev/null || true
        rm -f "$pidfile"
        log "server on port $port did not come up; log follows"
        tail -n 20 "$logfile" >&2 || true
    done
    log "giving up"
    exit 1
}

stop() {
    local arg="${1:-}" pidfile
    if [[ -z "$arg" ]]; then
        log "usage: start.sh stop PORTFILE|PORT"
        exit 2
    elif [[ -f "$arg.pid" ]]; then
        pidfile="$arg.pid"
    elif [[ "$arg" =~ ^[0-9]+$ && -f "$state/moto-$arg.pid" ]]; then
        pidfile="$state/moto-$arg.pid"
    else
        log "no pid file for $arg"
        exit 1
    fi
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
}

case "${1:-}" in
    stop) stop "${2:-}" ;;
    install) install && echo "$venv/bin/python" ;;
    *) start "${1:-}" ;;
esac
