#!/usr/bin/env bash
# Start an sso-fanout run with the plain AWS CLI and wait for it (no sso-fanout binary needed).
#
#   examples/start-execution.sh examples/assign-prod.json              # ARN from the stack outputs
#   STATE_MACHINE_ARN=arn:aws:states:... examples/start-execution.sh examples/dry-run.json
#
# Needs: aws CLI v2 with credentials for the account the stack runs in.
# Exit codes: 0 = SUCCEEDED, 1 = FAILED/TIMED_OUT/ABORTED (e.g. InvalidRequest), 2 = usage.
set -euo pipefail

REQUEST="${1:-}"
if [ -z "$REQUEST" ] || [ ! -f "$REQUEST" ]; then
  echo "usage: $0 REQUEST.json" >&2
  exit 2
fi
STACK_NAME="${STACK_NAME:-sso-fanout}"
POLL_SECONDS="${POLL_SECONDS:-10}"

if [ -z "${STATE_MACHINE_ARN:-}" ]; then
  STATE_MACHINE_ARN="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query "Stacks[0].Outputs[?OutputKey=='StateMachineArn'].OutputValue" --output text)"
fi

# Execution names must be unique per state machine for 90 days; make one that says what it is.
NAME="$(basename "$REQUEST" .json)-$(date -u +%Y%m%dT%H%M%SZ)-$$"

EXECUTION_ARN="$(aws stepfunctions start-execution \
  --state-machine-arn "$STATE_MACHINE_ARN" \
  --name "$NAME" \
  --input "file://$REQUEST" \
  --query executionArn --output text)"
echo "started $EXECUTION_ARN" >&2

while :; do
  STATUS="$(aws stepfunctions describe-execution --execution-arn "$EXECUTION_ARN" \
    --query status --output text)"
  case "$STATUS" in
    RUNNING | PENDING_REDRIVE) echo "  $(date -u +%H:%M:%S) $STATUS" >&2; sleep "$POLL_SECONDS" ;;
    *) break ;;
  esac
done

if [ "$STATUS" = "SUCCEEDED" ]; then
  # The run summary (or, for a dry run, the plan preview) is the execution output.
  aws stepfunctions describe-execution --execution-arn "$EXECUTION_ARN" --query output --output text
  exit 0
fi

echo "execution $STATUS" >&2
aws stepfunctions describe-execution --execution-arn "$EXECUTION_ARN" \
  --query '{error: error, cause: cause}' --output json >&2
exit 1
