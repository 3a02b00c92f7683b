"""Project-specific checks of infra/template.yaml and the ASL definition.

Run by tests/lint/run.sh with the lint venv's python (needs cfn-lint and
aws-sam-translator). Makes no network calls and needs no AWS credentials.

Subcommands:
  asl-contract  ASL facts the rest of the project relies on (JSONPath only,
                TimeoutSeconds on every Task, Lambda retries, placeholders).
  transform     Runs the real SAM transform (aws-sam-translator) with the ASL
                inlined, checks DefinitionSubstitutions cover the placeholders
                and writes the plain CloudFormation template to OUT.
  iam           Fails on any IAM action '*' / 'service:*' / wildcard, any
                NotAction, and any managed policy other than the allowed ones,
                in the template as written and in the transformed template.
  table-actions Every DynamoDB action the AWS adapters call on the table
                (crates/aws/src: SDK calls, and the Put/Update/Delete/
                ConditionCheck items of TransactWriteItems, each governed by
                its own IAM action) is granted on the table to every function
                (they share the store and ledger adapters), and nothing else is.
  checkov-skips JSON
                Given checkov's JSON report (of the template, and of the
                transformed template if scanned too): it parsed and scanned
                resources, every skipped check has a reason, every skip is in
                resource Metadata (checkov.skip, id + comment; no inline
                `checkov:skip=` comments), and every such skip matched a check
                checkov ran on the template (none stale or mistyped).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
ASL = ROOT / "statemachine" / "sso-fanout.asl.json"

PLACEHOLDERS = {"PlannerFunctionArn", "WorkerFunctionArn", "ReporterFunctionArn"}
LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
# Managed policies SAM attaches on its own; their actions are explicit (logs:*Log*).
ALLOWED_MANAGED_POLICIES = {"AWSLambdaBasicExecutionRole"}


def load_template() -> dict[str, Any]:
    from cfnlint.decode import decode

    tpl, matches = decode(str(TEMPLATE))
    if matches or tpl is None:
        for m in matches or []:
            print(f"  {m}")
        raise SystemExit(f"cannot parse {TEMPLATE}")
    # cfn-lint's node types -> plain JSON types
    return json.loads(json.dumps(tpl, default=str))


def states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in definition.get("States", {}).items():
        yield name, state
        for sub in ("ItemProcessor", "Iterator"):
            if sub in state:
                yield from states(state[sub])
        for branch in state.get("Branches", []):
            yield from states(branch)


def asl_contract() -> list[str]:
    errors: list[str] = []
    text = ASL.read_text()
    definition = json.loads(text)
    found = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))
    if found != PLACEHOLDERS:
        errors.append(f"placeholders are {sorted(found)}, expected {sorted(PLACEHOLDERS)}")
    if "JSONata" in text or "QueryLanguage" in text:
        errors.append("the definition must stay on JSONPath (no QueryLanguage/JSONata)")
    for name, state in states(definition):
        if state.get("Type") != "Task":
            continue
        if not isinstance(state.get("TimeoutSeconds"), int):
            errors.append(f"Task {name}: no explicit TimeoutSeconds")
        retried = {e for r in state.get("Retry", []) for e in r.get("ErrorEquals", [])}
        missing = LAMBDA_ERRORS - retried
        if missing:
            errors.append(f"Task {name}: no retry on {sorted(missing)}")
        for r in state.get("Retry", []):
            if r.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
                errors.append(f"Task {name}: JitterStrategy must be FULL or NONE")
        caught = {e for c in state.get("Catch", []) for e in c.get("ErrorEquals", [])}
        if name == "Plan" and caught:
            errors.append("Task Plan: must not catch (InvalidRequest has to fail the execution)")
    return errors


def transformed_template(out: Path) -> tuple[dict[str, Any], list[str]]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform

    errors: list[str] = []
    tpl = load_template()
    definition = json.loads(ASL.read_text())
    for name, res in tpl.get("Resources", {}).items():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::Serverless::Function":
            # what `sam package` does to a local CodeUri
            props["CodeUri"] = f"s3://sso-fanout-artifacts/{name}.zip"
        if res.get("Type") == "AWS::Serverless::StateMachine":
            uri = props.pop("DefinitionUri", None)
            if uri is not None:
                path = (TEMPLATE.parent / uri).resolve()
                if path != ASL:
                    errors.append(f"{name}: DefinitionUri {uri} is not {ASL.relative_to(ROOT)}")
                props["Definition"] = definition
            subs = set(props.get("DefinitionSubstitutions", {}))
            if subs != PLACEHOLDERS:
                errors.append(f"{name}: DefinitionSubstitutions {sorted(subs)} != {sorted(PLACEHOLDERS)}")

    class NoManagedPolicyLookups:
        def load(self) -> dict[str, str]:
            return {}

    result = transform(tpl, {}, NoManagedPolicyLookups())
    out.write_text(json.dumps(result, indent=2))
    return result, errors


def policy_problems(where: str, node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            if "NotAction" in node:
                yield f"{where}{path}: NotAction is not allowed"
            actions = node.get("Action", [])
            for action in actions if isinstance(actions, list) else [actions]:
                if isinstance(action, str) and "*" in action:
                    yield f"{where}{path}: wildcard IAM action {action!r}"
        for key, value in node.items():
            if key == "ManagedPolicyArns":
                for arn in value if isinstance(value, list) else [value]:
                    name = arn.rsplit("/", 1)[-1] if isinstance(arn, str) else str(arn)
                    if name not in ALLOWED_MANAGED_POLICIES:
                        yield f"{where}{path}.ManagedPolicyArns: {arn!r} not in the allowed list"
            yield from policy_problems(where, value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from policy_problems(where, value, f"{path}[{i}]")


# SDK method -> IAM action. TransactWriteItems has no IAM action of its own: each item is governed
# by the action of its kind ("Using IAM with DynamoDB transactions", DynamoDB developer guide).
DYNAMODB_CALLS = {
    "get_item": "GetItem", "put_item": "PutItem", "update_item": "UpdateItem",
    "delete_item": "DeleteItem", "query": "Query", "scan": "Scan",
    "batch_write_item": "BatchWriteItem", "batch_get_item": "BatchGetItem",
    "transact_get_items": "GetItem",
}
TRANSACTION_ITEMS = {"put": "PutItem", "update": "UpdateItem", "delete": "DeleteItem", "condition_check": "ConditionCheckItem"}
FUNCTIONS = ("PlannerFunction", "WorkerFunction", "ReporterFunction")


def table_actions_used() -> dict[str, set[str]]:
    """IAM action -> the files under crates/aws/src that need it."""
    used: dict[str, set[str]] = {}
    for path in sorted((ROOT / "crates" / "aws" / "src").rglob("*.rs")):
        text = path.read_text()
        if "aws_sdk_dynamodb" not in text:
            continue
        where = str(path.relative_to(ROOT))
        for method, action in DYNAMODB_CALLS.items():
            if re.search(rf"\.{method}\(\)", text):
                used.setdefault(action, set()).add(where)
        for kind, action in TRANSACTION_ITEMS.items():
            if re.search(rf"TransactWriteItem::builder\(\)\s*\.{kind}\(", text):
                used.setdefault(action, set()).add(where)
    return used


def table_grants(function: dict[str, Any]) -> set[str]:
    """dynamodb:* actions a function's inline policies allow on FanoutTable."""
    granted: set[str] = set()
    for policy in function.get("Properties", {}).get("Policies", []) or []:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            if statement.get("Effect") != "Allow" or "FanoutTable" not in json.dumps(statement.get("Resource")):
                continue
            actions = statement.get("Action", [])
            for action in actions if isinstance(actions, list) else [actions]:
                if isinstance(action, str) and action.startswith("dynamodb:"):
                    granted.add(action.removeprefix("dynamodb:"))
    return granted


def table_actions() -> list[str]:
    used = table_actions_used()
    if not used:
        return ["found no DynamoDB call under crates/aws/src (has the adapter moved?)"]
    resources = load_template().get("Resources", {})
    errors = []
    for name in FUNCTIONS:
        if name not in resources:
            errors.append(f"{name}: not in the template")
            continue
        granted = table_grants(resources[name])
        for action in sorted(set(used) - granted):
            errors.append(f"{name}: dynamodb:{action} not granted on FanoutTable (used by {', '.join(sorted(used[action]))})")
        for action in sorted(granted - set(used)):
            errors.append(f"{name}: dynamodb:{action} granted on FanoutTable but no adapter calls it (least privilege: remove it)")
    return errors


# checkov's text for a suppression without a comment, and the least a reason has to say.
CHECKOV_NO_COMMENT = "No comment provided"
MIN_REASON_CHARS = 20
INLINE_SKIP = re.compile(r"(checkov|bridgecrew|cortex):skip=")


def checkov_skips(report_path: Path) -> list[str]:
    errors: list[str] = []
    report = json.loads(report_path.read_text())
    reports = report if isinstance(report, list) else [report]
    cfn = [r for r in reports if r.get("check_type") == "cloudformation"]
    if not cfn:
        return [f"{report_path.name}: no cloudformation results (did checkov scan the template?)"]
    skipped: set[tuple[str, str]] = set()
    for r in cfn:
        summary = r.get("summary", {})
        if summary.get("parsing_errors", 0) or not summary.get("resource_count", 0):
            errors.append(f"checkov: parsing_errors={summary.get('parsing_errors')}, "
                          f"resource_count={summary.get('resource_count')}: the template was not scanned")
        for c in r.get("results", {}).get("skipped_checks", []):
            resource = c.get("resource", "?").rsplit(".", 1)[-1]
            if str(c.get("file_path", "")).endswith(str(TEMPLATE.relative_to(ROOT))):
                skipped.add((resource, c.get("check_id", "?")))
            comment = (c.get("check_result", {}).get("suppress_comment") or "").strip()
            if comment == CHECKOV_NO_COMMENT or len(comment) < MIN_REASON_CHARS:
                errors.append(f"{resource}: skip of {c.get('check_id')} has no reason "
                              f"(comment {comment!r}; at least {MIN_REASON_CHARS} characters)")

    for lineno, line in enumerate(TEMPLATE.read_text().splitlines(), 1):
        if INLINE_SKIP.search(line):
            errors.append(f"template.yaml:{lineno}: inline checkov suppression; put the skip "
                          "in the resource's Metadata (checkov: skip: - id/comment)")

    for name, res in load_template().get("Resources", {}).items():
        metadata = res.get("Metadata") or {}
        for tool in ("checkov", "bridgecrew"):
            for skip in (metadata.get(tool) or {}).get("skip") or []:
                check_id = skip.get("id") if isinstance(skip, dict) else None
                comment = str(skip.get("comment") or "").strip() if isinstance(skip, dict) else ""
                if not check_id:
                    errors.append(f"{name}: Metadata {tool}.skip entry without an id: {skip!r}")
                    continue
                if len(comment) < MIN_REASON_CHARS:
                    errors.append(f"{name}: Metadata {tool}.skip {check_id} needs a comment giving the reason")
                if (name, check_id) not in skipped:
                    errors.append(f"{name}: Metadata {tool}.skip {check_id} matches no check checkov "
                                  "ran on this resource (stale or mistyped: remove it)")
    return errors


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "asl-contract":
        errors = asl_contract()
    elif cmd == "transform":
        _, errors = transformed_template(Path(argv[2]))
    elif cmd == "table-actions":
        errors = table_actions()
    elif cmd == "checkov-skips":
        errors = checkov_skips(Path(argv[2]))
    elif cmd == "iam":
        errors = list(policy_problems("template.yaml", load_template()))
        transformed = json.loads(Path(argv[2]).read_text())
        errors += list(policy_problems("transformed", transformed))
        # SAM-generated roles must not gain policies we did not write.
        for name, res in transformed.get("Resources", {}).items():
            if res.get("Type") == "AWS::IAM::Role" and name.endswith("FunctionRole"):
                for p in res["Properties"].get("Policies", []):
                    if not p["PolicyName"].startswith(name + "Policy"):
                        errors.append(f"transformed: unexpected policy {p['PolicyName']} on {name}")
    else:
        print(__doc__)
        return 2
    for e in errors:
        print(f"  {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
