#!/usr/bin/env python3
"""Provisions a running moto (started by up.sh through moto_shim.py) with the deployed stack's
shape (after up.sh enabled execution mode): the DynamoDB table, the three functions, the real state machine.

    .venv-moto/bin/python tests/local-cloud/provision.py --port PORT --seed SEED.json --out DIR

SEED.json is tests/moto/seed.py's output merged with seed_fleet.py's (up.sh does that). Writes
DIR/env.json (everything a test or a person needs) and DIR/env.sh (exports for the CLI).

Optional environment:
  LOCAL_CLOUD_TABLE        table name (default sso-fanout-local)
  LOCAL_CLOUD_FAIL_BATCH   also create function sso-fanout-worker-faults (the worker with
                           FANOUT_FAIL_BATCH=<value>, read by the shim) and state machine
                           sso-fanout-faults (the same definition pointing at it)
  LOCAL_CLOUD_FAIL_ERROR   errorType the injected failures use (default Retryable)
  SSO_FANOUT_LOG           passed to the functions (e.g. debug)
"""

import argparse
import io
import json
import os
import shlex
import sys
import zipfile
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parent.parent.parent
DEFINITION = REPO / "statemachine" / "sso-fanout.asl.json"
ACCOUNT = "123456789012"  # moto's default account (also the organization's management account)

# Mirrors infra/template.yaml (MemorySize, Timeout).
FUNCTIONS = {
    "Planner": ("sso-fanout-planner", "planner", 120),
    "Worker": ("sso-fanout-worker", "worker", 900),
    "Reporter": ("sso-fanout-reporter", "reporter", 120),
}


def placeholder_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n# local-cloud: moto_shim.py runs target/debug/<Handler> --once instead\n")
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--seed", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--log", default="")
    ap.add_argument("--lambda-log", default="")
    args = ap.parse_args()

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        os.environ[k] = v
    endpoint = f"http://127.0.0.1:{args.port}"
    out = Path(args.out)
    seed = json.loads(Path(args.seed).read_text())

    def client(service: str):
        return boto3.client(service, region_name=args.region, endpoint_url=endpoint)

    # The table: crates/aws `create_table` (pk S / sk S, on demand, TTL expiresAt).
    table = os.environ.get("LOCAL_CLOUD_TABLE") or "sso-fanout-local"
    ddb = client("dynamodb")
    ddb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"})

    iam = client("iam")
    trust = lambda svc: json.dumps(  # noqa: E731
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": svc}, "Action": "sts:AssumeRole"}]}
    )
    fn_role = iam.create_role(RoleName="sso-fanout-local-functions", AssumeRolePolicyDocument=trust("lambda.amazonaws.com"))["Role"]["Arn"]
    sfn_role = iam.create_role(RoleName="sso-fanout-local-statemachine", AssumeRolePolicyDocument=trust("states.amazonaws.com"))["Role"]["Arn"]

    env_vars = {
        "FANOUT_TABLE": table,
        "IDENTITY_CENTER_INSTANCE_ARN": seed["instanceArn"],
        "IDENTITY_STORE_ID": seed["identityStoreId"],
        # The shim forces this anyway; set so the configuration reads like the deployed one.
        "AWS_ENDPOINT_URL": endpoint,
    }
    if os.environ.get("SSO_FANOUT_LOG"):
        env_vars["SSO_FANOUT_LOG"] = os.environ["SSO_FANOUT_LOG"]

    lam = client("lambda")
    code = placeholder_zip()

    def create_function(name: str, handler: str, timeout: int, extra: dict) -> str:
        return lam.create_function(
            FunctionName=name,
            Runtime="provided.al2023",
            Handler=handler,
            Role=fn_role,
            Code={"ZipFile": code},
            MemorySize=256,
            Timeout=timeout,
            Environment={"Variables": {**env_vars, **extra}},
        )["FunctionArn"]

    functions = {key: create_function(name, handler, timeout, {}) for key, (name, handler, timeout) in FUNCTIONS.items()}

    sfn = client("stepfunctions")
    template = DEFINITION.read_text()

    def create_machine(name: str, arns: dict) -> str:
        definition = template
        for key, arn in arns.items():
            definition = definition.replace("${" + key + "FunctionArn}", arn)
        assert "${" not in definition, "unsubstituted ${...} left in the definition"
        return sfn.create_state_machine(name=name, definition=definition, roleArn=sfn_role, type="STANDARD")["stateMachineArn"]

    machine = create_machine("sso-fanout", functions)

    result = {
        "endpoint": endpoint,
        "port": args.port,
        "region": args.region,
        "pid": args.pid,
        "log": args.log,
        "lambdaLog": args.lambda_log,
        "table": table,
        "stateMachineArn": machine,
        "functions": functions,
        "seed": seed,
    }

    fail = os.environ.get("LOCAL_CLOUD_FAIL_BATCH", "").strip()
    if fail:
        extra = {"FANOUT_FAIL_BATCH": fail, "FANOUT_FAIL_ERROR": os.environ.get("LOCAL_CLOUD_FAIL_ERROR") or "Retryable"}
        faulty = create_function("sso-fanout-worker-faults", "worker", 900, extra)
        result["faults"] = {
            "stateMachineArn": create_machine("sso-fanout-faults", {**functions, "Worker": faulty}),
            "workerFunctionArn": faulty,
            "failBatch": fail,
            "error": extra["FANOUT_FAIL_ERROR"],
        }

    out.mkdir(parents=True, exist_ok=True)
    (out / "env.json").write_text(json.dumps(result, indent=2) + "\n")
    exports = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": args.region,
        "AWS_DEFAULT_REGION": args.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "SSO_FANOUT_STATE_MACHINE": machine,
        "FANOUT_TABLE": table,
        "IDENTITY_CENTER_INSTANCE_ARN": seed["instanceArn"],
        "IDENTITY_STORE_ID": seed["identityStoreId"],
        "LOCAL_CLOUD_PORT": str(args.port),
    }
    (out / "env.sh").write_text(
        "# source me: the local cloud started by tests/local-cloud/up.sh\n"
        + "unset AWS_PROFILE AWS_SESSION_TOKEN\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items())
    )
    json.dump({"stateMachineArn": machine, "endpoint": endpoint, "table": table}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
