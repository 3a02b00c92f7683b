#!/usr/bin/env bash
# Lint the deployable artifacts: the state machine (ASL) and the SAM template, including a
# checkov security scan of the template.
#
#   bash tests/lint/run.sh        # from the repo root (CI does exactly this)
#
# Installs its own pinned tools on first use (needs PyPI and the npm registry):
#   - Python venv <repo>/.venv-lint with tests/lint/requirements.txt (cfn-lint, aws-sam-translator)
#   - Python venv <repo>/.venv-checkov with tests/lint/requirements-checkov.txt (checkov; its own
#     venv because its pins conflict with cfn-lint's)
#   - tests/lint/node_modules from tests/lint/package-lock.json (asl-validator, aws-local-stepfunctions)
#     via `npm ci`
# Makes no AWS calls and needs no credentials; checkov runs offline (see checkov_scan).
# Exits non-zero if any check fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LINT_DIR="$ROOT/tests/lint"
VENV="${LINT_VENV:-$ROOT/.venv-lint}"
CHECKOV_VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
ASL="statemachine/sso-fanout.asl.json"
TEMPLATE="infra/template.yaml"
cd "$ROOT"

log() { printf '%s\n' "$*"; }

for tool in python3 node npm; do
  command -v "$tool" >/dev/null || { log "lint: '$tool' not found on PATH"; exit 1; }
done

# ------------------------------------------------------------------ tools
sha() { sha256sum "$1" | cut -d' ' -f1; }

# setup_venv DIR REQUIREMENTS STAMP_NAME: a venv with the pinned requirements, reinstalled when
# the requirements file changes.
setup_venv() {
  local venv="$1" req="$2" stamp="$1/$3"
  if [ ! -x "$venv/bin/python" ]; then
    log "setup: creating Python venv $venv"
    python3 -m venv "$venv"
  fi
  # The venv sits at the repo root; make it ignore itself instead of touching the root .gitignore.
  [ -f "$venv/.gitignore" ] || printf '*\n' > "$venv/.gitignore"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$(sha "$req")" ]; then
    log "setup: pip install -r ${req#"$ROOT"/} into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
    sha "$req" > "$stamp"
  fi
}
setup_venv "$VENV" "$LINT_DIR/requirements.txt" .lint-requirements.sha256
setup_venv "$CHECKOV_VENV" "$LINT_DIR/requirements-checkov.txt" .checkov-requirements.sha256

NPM_STAMP="$LINT_DIR/node_modules/.lint-package-lock.sha256"
if [ "$(cat "$NPM_STAMP" 2>/dev/null || true)" != "$(sha "$LINT_DIR/package-lock.json")" ]; then
  log "setup: npm ci (tests/lint)"
  (cd "$LINT_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  sha "$LINT_DIR/package-lock.json" > "$NPM_STAMP"
fi

PY="$VENV/bin/python"
CFN_LINT="$VENV/bin/cfn-lint"
ASL_VALIDATOR="$LINT_DIR/node_modules/.bin/asl-validator"
CHECKOV="$CHECKOV_VENV/bin/checkov"
# (checkov's version from the package metadata: `checkov --version` would check PyPI for a newer one)
log "tools: cfn-lint $("$CFN_LINT" --version | awk '{print $2}'), aws-sam-translator $("$PY" -c 'import samtranslator; print(samtranslator.__version__)'), checkov $("$CHECKOV_VENV/bin/python" -c 'from importlib.metadata import version; print(version("checkov"))'), asl-validator $("$ASL_VALIDATOR" --version), node $(node --version)"

# ------------------------------------------------------------------ checks
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TRANSFORMED="$WORK/template.transformed.json"

passed=0
failed=0
failures=()

# check NAME CMD...: runs CMD, prints one PASS/FAIL line (with its time), shows CMD's output on failure.
check() {
  local name="$1" start=$SECONDS
  shift
  if "$@" >"$WORK/out" 2>&1; then
    passed=$((passed + 1))
    log "PASS  $name ($((SECONDS - start)) s)"
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

check "template: every DynamoDB action the adapters call is granted to each function, and no other" \
  "$PY" "$LINT_DIR/check_template.py" table-actions

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

# checkov: the security scan of the template as written and, when the transform worked, of the
# CloudFormation it becomes (what is deployed: it adds the functions' generated IAM roles, which
# the SAM-level scan does not see). Exceptions live in the template itself (resource Metadata
# checkov.skip, each with a comment; SAM copies them to the generated functions); the next check
# holds them to that.
# Offline by construction, so a CI runner without internet cannot hang on it:
#   --skip-download, BC_SKIP_MAPPING      no policy metadata download from Prisma Cloud
#   CKV_SKIP_PACKAGE_UPDATE_CHECK         no "is there a newer checkov?" request to PyPI
#   BC_API_KEY unset, HOME a fresh dir    no API key (not even ~/.bridgecrew/credentials), so no platform calls
#   cwd a fresh dir                       no .checkov.yaml (cwd or home) can skip checks outside the template
#   timeout                               a hang still ends
# CKV_PARSE_ERROR_FAIL: a template checkov cannot parse fails instead of scanning as empty.
# Not --quiet: it would also drop the skipped checks from the JSON report the next check reads;
# the filter below prints what --quiet would (the summary and every check that did not pass).
checkov_scan() {
  local dir="$WORK/checkov" rc=0 files=(--file "$ROOT/$TEMPLATE")
  [ ! -s "$TRANSFORMED" ] || files+=(--file "$TRANSFORMED")
  mkdir -p "$dir"
  (cd "$dir" && env -u BC_API_KEY -u PRISMA_API_URL -u BC_API_URL HOME="$dir" \
    CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE CKV_PARSE_ERROR_FAIL=true \
    timeout -k 10 300 "$CHECKOV" --framework cloudformation "${files[@]}" --skip-download \
    --compact -o cli -o json --output-file-path "$dir/report.txt,$WORK/checkov.json" \
    >"$dir/stdout" 2>&1) || rc=$?
  if [ -s "$dir/report.txt" ]; then
    awk '/^Check: /   { if (b != "" && b !~ /PASSED for/) printf "%s", b; b = $0 "\n"; next }
         b != ""      { b = b $0 "\n"; next }
         /checks: /   { print }
         END          { if (b != "" && b !~ /PASSED for/) printf "%s", b }' "$dir/report.txt" |
      sed -e "s#File: .*/$TEMPLATE#File: $TEMPLATE#" -e "s#File: .*/${TRANSFORMED##*/}#File: (transformed) ${TRANSFORMED##*/}#"
  fi
  # 1 = failed checks (shown above); anything else is checkov's own trouble: show what it said.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ] || [ ! -s "$dir/report.txt" ]; then
    cat "$dir/stdout"
  fi
  [ "$rc" -ne 124 ] || log "checkov: timed out after 300 s"
  return "$rc"
}
check "template: checkov, template and transformed CloudFormation (every failing check fixed or skipped with a reason)" checkov_scan
if [ -s "$WORK/checkov.json" ]; then
  check "template: every checkov skip is in resource Metadata with a reason, none stale" \
    "$PY" "$LINT_DIR/check_template.py" checkov-skips "$WORK/checkov.json"
else
  failed=$((failed + 1))
  failures+=("checkov skip reasons (skipped: checkov wrote no results)")
  log "FAIL  template: checkov skip reasons not checked, checkov wrote no results"
fi

log ""
if [ "$failed" -gt 0 ]; then
  log "failed checks:"
  for f in "${failures[@]}"; do log "  - $f"; done
fi
log "lint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
