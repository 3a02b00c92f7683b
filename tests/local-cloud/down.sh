#!/usr/bin/env bash
# Stops the local cloud started by up.sh (the server's process group: moto and any function
# binary still running). Keeps the logs; --purge removes them too (and the directory if empty).
#
#   bash tests/local-cloud/down.sh [--purge]        LOCAL_CLOUD_DIR as for up.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${LOCAL_CLOUD_DIR:-$repo/.local-cloud}"

stop_group() {
    local pid="$1"
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

if [[ -f "$dir/watcher.pid" ]]; then
    kill "$(cat "$dir/watcher.pid")" 2>/dev/null || true
    rm -f "$dir/watcher.pid"
fi
if [[ -f "$dir/moto.pid" ]]; then
    pid="$(cat "$dir/moto.pid")"
    stop_group "$pid"
    echo "local-cloud: stopped (pid $pid)" >&2
else
    echo "local-cloud: not running ($dir/moto.pid not found)" >&2
fi
rm -f "$dir/moto.pid" "$dir/port" "$dir/env.json" "$dir/env.sh"
if [[ "${1:-}" == "--purge" ]]; then
    # Only the files up.sh writes (the default directory may hold other instances' directories,
    # e.g. the e2e test's .local-cloud/e2e-<pid>), then the directory if that left it empty.
    rm -f "$dir/moto.log" "$dir/functions.log" "$dir/seed-base.json" "$dir/seed-fleet.json" "$dir/seed.json"
    rmdir "$dir" 2>/dev/null || true
fi
