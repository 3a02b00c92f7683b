#!/usr/bin/env bash
# Lint the deployable artifacts: the state machine (ASL) and the SAM template.
#
#   bash tests/lint/run.sh        # from the repo root (CI does exactly this)
#
# Installs its own pinned tools on first use (needs PyPI and the npm registry):
#   - Python venv <repo>/.venv-lint with tests/lint/requirements.txt (cfn-lint, aws-sam-translator)
#   - tests/lint/node_modules from tests/lint/package-lock.json (asl-validator, aws-local-stepfunctions)
#     via `npm ci`
# Makes no AWS calls and needs no credentials. Exits non-zero if any check fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LINT_DIR="$ROOT/tests/lint"
VENV="${LINT_VENV:-$ROOT/.venv-lint}"
ASL="statemachine/sso-fanout.asl.json"
TEMPLATE="infra/template.yaml"
cd "$ROOT"

log() { printf '%s\n' "$*"; }

for tool in python3 node npm; do
  command -v "$tool" >/dev/null || { log "lint: '$tool' not found on PATH"; exit 1; }
done

# ------------------------------------------------------------------ tools
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
  log "setup: creating Python venv $VENV"
  python3 -m venv "$VENV"
fi
# The venv sits at the repo root; make it ignore itself instead of touching the root .gitignore.
[ -f "$VENV/.gitignore" ] || printf '*\n' > "$VENV/.gitignore"
REQ_STAMP="$VENV/.lint-requirements.sha256"
if [ "$(cat "$REQ_STAMP" 2>/dev/null || true)" != "$(sha "$LINT_DIR/requirements.txt")" ]; then
  log "setup: pip install -r tests/lint/requirements.txt"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$LINT_DIR/requirements.txt"
  sha "$LINT_DIR/requirements.txt" > "$REQ_STAMP"
fi

NPM_STAMP="$LINT_DIR/node_modules/.lint-package-lock.sha256"
if [ "$(cat "$NPM_STAMP" 2>/dev/null || true)" != "$(sha "$LINT_DIR/package-lock.json")" ]; then
  log "setup: npm ci (tests/lint)"
  (cd "$LINT_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  sha "$LINT_DIR/package-lock.json" > "$NPM_STAMP"
fi

PY="$VENV/bin/python"
CFN_LINT="$VENV/bin/cfn-lint"
ASL_VALIDATOR="$LINT_DIR/node_modules/.bin/asl-validator"
log "tools: cfn-lint $("$CFN_LINT" --version | awk '{print $2}'), aws-sam-translator $("$PY" -c 'import samtranslator; print(samtranslator.__version__)'), asl-validator $("$ASL_VALIDATOR" --version), node $(node --version)"

# ------------------------------------------------------------------ checks
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TRANSFORMED="$WORK/template.transformed.json"

passed=0
failed=0
failures=()

# check NAME CMD...: runs CMD, prints one PASS/FAIL line, shows CMD's output on failure.
check() {
  local name="$1"
  shift
  if "$@" >"$WORK/out" 2>&1; then
    passed=$((passed + 1))
    log "PASS  $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    log "FAIL  $name"
    sed 's/^/      /' "$WORK/out"
  fi
}

check "asl: $ASL is well-formed JSON" \
  "$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$ASL"
if [ "$failed" -eq 0 ]; then
  check "asl: asl-validator" "$ASL_VALIDATOR" --json-path "$ASL"
  check "asl: project contract (JSONPath only, task timeouts, Lambda retries, placeholders)" \
    "$PY" "$LINT_DIR/check_template.py" asl-contract
  check "asl: behaviour smoke test (aws-local-stepfunctions, stubbed Lambdas)" \
    node "$LINT_DIR/asl-smoke.mjs"
fi

# cfn-lint validates SAM resources against the SAM schema (it no longer runs the transform).
check "template: cfn-lint $TEMPLATE" "$CFN_LINT" --non-zero-exit-code warning -- "$TEMPLATE"

# The real SAM transform, then lint the plain CloudFormation it produces.
check "template: SAM transform (aws-sam-translator, ASL inlined, substitutions cover placeholders)" \
  "$PY" "$LINT_DIR/check_template.py" transform "$TRANSFORMED"
if [ -s "$TRANSFORMED" ]; then
  check "template: cfn-lint of the transformed CloudFormation" \
    "$CFN_LINT" --non-zero-exit-code warning -- "$TRANSFORMED"
  check "template: no IAM action '*' / 'service:*' / wildcard, no NotAction, no extra managed policies" \
    "$PY" "$LINT_DIR/check_template.py" iam "$TRANSFORMED"
else
  failed=$((failed + 1))
  failures+=("IAM wildcard check (skipped: no transformed template)")
  log "FAIL  template: IAM wildcard check skipped, the transform failed"
fi

log ""
if [ "$failed" -gt 0 ]; then
  log "failed checks:"
  for f in "${failures[@]}"; do log "  - $f"; done
fi
log "lint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
