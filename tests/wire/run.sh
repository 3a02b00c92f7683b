#!/usr/bin/env bash
# `make bench-wire`: sso-fanout (the CLI on its real AWS SDK path) and the seed's tool itself
# (awsideman, pinned, unmodified, from PyPI in its own venv) against fresh wire emulators
# (`sso-fanout sim serve`, 127.0.0.1 only) of the same seed, one after the other.
#
#   tests/wire/run.sh [ACCOUNTS] [SEED]      default: 29,200 and 7
#
# Environment: PYTHON (default python3), CLI (default target/debug/sso-fanout, built if absent),
# LATENCY (MEDIAN_S,P99_S; default the simulator's 3,15), SKIP_AWSIDEMAN=1 (sso-fanout only).
# Results: the markdown table on stdout; rows (JSON) and awsideman's own output under
# target/bench-wire/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
accounts="${1:-29,200}"
seed="${2:-7}"
cli="${CLI:-$repo/target/debug/sso-fanout}"
venv="$repo/target/venv-awsideman"
out="$repo/target/bench-wire"
pin="awsideman==0.1.2a0"

if [[ ! -x "$cli" ]]; then
    (cd "$repo" && "${CARGO:-cargo}" build --quiet -p sso-fanout-cli)
fi

args=(--cli "$cli" --accounts "$accounts" --seed "$seed" --json "$out/rows.json")
if [[ -n "${LATENCY:-}" ]]; then
    args+=(--latency "$LATENCY")
fi
if [[ "${SKIP_AWSIDEMAN:-0}" != 1 ]]; then
    # Its own venv (it pins boto3/botocore 1.34.69), (re)built only when the pin changes.
    if [[ ! -x "$venv/bin/awsideman" || "$(cat "$venv/.pin" 2>/dev/null)" != "$pin" ]]; then
        echo "bench-wire: installing $pin into $venv (once)" >&2
        rm -rf "$venv"
        "${PYTHON:-python3}" -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$pin"
        echo "$pin" > "$venv/.pin"
    fi
    args+=(--awsideman "$venv/bin/awsideman")
fi
mkdir -p "$out"
python3 "$here/bench.py" "${args[@]}"
