#!/usr/bin/env bash
# Prints the directory holding the built planner/worker/reporter binaries: LOCAL_CLOUD_BIN_DIR
# if set, else `debug/` in cargo's target directory as `cargo metadata` reports it (so
# CARGO_TARGET_DIR and .cargo/config's build.target-dir are respected), else <repo>/target/debug.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -n "${LOCAL_CLOUD_BIN_DIR:-}" ]]; then
    echo "$LOCAL_CLOUD_BIN_DIR"
    exit 0
fi
target="$( (cd "$repo" && cargo metadata --format-version 1 --no-deps 2>/dev/null) |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)"
echo "${target:-$repo/target}/debug"
