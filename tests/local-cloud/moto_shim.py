#!/usr/bin/env python3
"""moto_server with Lambda invocations routed to our built function binaries (one-shot mode).

    .venv-moto/bin/python tests/local-cloud/moto_shim.py -H 127.0.0.1 -p PORT

moto 5.2.5 cannot run Lambda code without Docker. With `{"lambda": {"use_docker": false}}` every
invoke goes to `moto.awslambda_simple.models.LambdaSimpleBackend.invoke`, which only echoes the
payload. Step Functions' execution mode calls Lambda over HTTP on this very server
(`lambda_eval_utils._invoke_lambda_function` -> boto3 `lambda.invoke` -> `LambdaResponse.invoke`
-> `LambdaSimpleBackend.invoke`), so that one method is the place to patch: it now runs

    <LOCAL_CLOUD_BIN_DIR>/<Handler> --once      (or the function's LOCAL_CLOUD_BINARY)

with the payload on stdin and the function's Environment, and returns stdout as the payload. A
non-zero exit sets `X-Amz-Function-Error: Unhandled`; the payload is then the binary's
`{"errorType", "errorMessage"}`, and moto's interpreter (`StateTaskServiceLambda._from_error`)
uses `errorType` as the state's Error name, so Retry/Catch on `InvalidRequest`, `Throttled`,
`Retryable` and `States.ALL` behave as on AWS.

Other patches, all local-only:
- StartExecution without a name: moto 5.2.5 names the execution "None" (so the second one fails
  with ExecutionAlreadyExists); a UUID is generated as on AWS.
- Step Functions' internal boto3 clients (`boto_client_for`) use `http://localhost:<MOTO_PORT>`;
  they are pinned to 127.0.0.1.
- `LOCAL_CLOUD_RETRY_SCALE` (float, default 1): multiplies the interpreter's Retry waits
  (`retrier_decl` sleeps for real), so tests can exercise the real Retry policy quickly.
- Fault injection, read from the *function's* Environment (never seen by the Rust code):
  `FANOUT_FAIL_BATCH="B[:N][,B[:N]...]"` makes the invocation for batch B (the payload's `batch`)
  fail N times per run (`runId`) before running the binary; N omitted or `*` = always.
  `FANOUT_FAIL_ERROR` (default `Retryable`) is the errorType returned.

Every binary runs with a clean environment: the function's variables, AWS_ENDPOINT_URL forced to
this server on 127.0.0.1, dummy credentials, AWS_EC2_METADATA_DISABLED=true, no profile files.
Binaries' stderr goes to `LOCAL_CLOUD_LAMBDA_LOG` (default: this server's stderr).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _port_from_argv(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a in ("-p", "--port") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--port="):
            return a.split("=", 1)[1]
    return "5000"


ARGV = sys.argv[1:]
PORT = _port_from_argv(ARGV)
# moto's internal calls (Step Functions -> Lambda) use MOTO_PORT; it must be this server's port.
os.environ["MOTO_PORT"] = PORT
for k, v in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ[k] = v
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)

ENDPOINT = f"http://127.0.0.1:{PORT}"
BIN_DIR = Path(os.environ.get("LOCAL_CLOUD_BIN_DIR", REPO / "target" / "debug"))
RETRY_SCALE = float(os.environ.get("LOCAL_CLOUD_RETRY_SCALE", "1") or "1")
LAMBDA_LOG = os.environ.get("LOCAL_CLOUD_LAMBDA_LOG")
_log_lock = threading.Lock()
# (function name, runId, batch) -> injected failures so far
_fault_counts: dict[tuple[str, str, int], int] = {}
_fault_lock = threading.Lock()

# Variables a binary inherits from this process; everything else comes from the function.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "RUST_BACKTRACE", "RUST_LOG", "SSO_FANOUT_LOG")


def _log(text: str) -> None:
    if not text:
        return
    with _log_lock:
        if LAMBDA_LOG:
            with open(LAMBDA_LOG, "a", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        else:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _parse_faults(spec: str) -> dict[int, int | None]:
    """"0:2,3" -> {0: 2, 3: None (always)}."""
    faults: dict[int, int | None] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        batch, _, times = part.partition(":")
        faults[int(batch)] = None if times in ("", "*") else int(times)
    return faults


def _injected_fault(fn_name: str, env: dict[str, str], event: object) -> bytes | None:
    spec = env.get("FANOUT_FAIL_BATCH", "").strip()
    if not spec or not isinstance(event, dict) or "batch" not in event:
        return None
    try:
        faults = _parse_faults(spec)
        batch = int(event["batch"])
    except (TypeError, ValueError):
        return None
    if batch not in faults:
        return None
    limit = faults[batch]
    key = (fn_name, str(event.get("runId", "")), batch)
    with _fault_lock:
        done = _fault_counts.get(key, 0)
        if limit is not None and done >= limit:
            return None
        _fault_counts[key] = done + 1
    error = env.get("FANOUT_FAIL_ERROR", "Retryable") or "Retryable"
    of = "always" if limit is None else f"{done + 1} of {limit}"
    _log(f"[local-cloud] {fn_name}: injected {error} for batch {batch} of {key[1]} ({of})")
    return _error_payload(error, f"injected by the local-cloud shim: batch {batch} fails ({of})")


def _binary_for(fn) -> Path:
    explicit = (fn.environment_vars or {}).get("LOCAL_CLOUD_BINARY")
    if explicit:
        return Path(explicit)
    return BIN_DIR / (fn.handler or fn.function_name)


def _child_env(fn) -> dict[str, str]:
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
            "NO_COLOR": "1",
        }
    )
    for k, v in (fn.environment_vars or {}).items():
        env[k] = str(v)
    # Never anything but this server: forced last, whatever the function's Environment says.
    for k in [k for k in env if k.startswith("AWS_ENDPOINT_URL_") or k in ("AWS_PROFILE", "AWS_SESSION_TOKEN")]:
        del env[k]
    env.update(
        {
            "AWS_ENDPOINT_URL": ENDPOINT,
            "AWS_REGION": fn.region,
            "AWS_DEFAULT_REGION": fn.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
    )
    return env


def run_function(fn, body: str | bytes | None) -> tuple[bytes, bool]:
    """Runs the function's binary once on `body`: (payload, errored)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    body = body or "{}"
    try:
        event = json.loads(body)
    except ValueError:
        event = None
    env = _child_env(fn)
    fault = _injected_fault(fn.function_name, env, event)
    if fault is not None:
        return fault, True
    binary = _binary_for(fn)
    if not os.access(binary, os.X_OK):
        msg = f"no executable {binary} for function {fn.function_name} (build it: cargo build -p fanout-{binary.name})"
        _log(f"[local-cloud] {msg}")
        return _error_payload("LocalCloud.BinaryNotFound", msg), True
    timeout = float(fn.timeout or 900)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(binary), "--once"],
            input=body.encode("utf-8"),
            capture_output=True,
            env=env,
            timeout=timeout,
            cwd=str(REPO),
        )
    except subprocess.TimeoutExpired as e:
        _log((e.stderr or b"").decode("utf-8", "replace"))
        return _error_payload("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds"), True
    elapsed = time.monotonic() - started
    stderr = proc.stderr.decode("utf-8", "replace")
    lines = proc.stdout.strip().splitlines()
    # The response is the last line of stdout (the Lambda runtime's log subscriber also writes
    # to stdout); everything before it is log output.
    payload = lines[-1] if lines else b""
    logs = "\n".join(line.decode("utf-8", "replace") for line in lines[:-1])
    _log(f"[local-cloud] {fn.function_name} exit={proc.returncode} in {elapsed:.2f}s\n{logs}\n{stderr}".rstrip())
    if proc.returncode != 0:
        try:
            parsed = json.loads(payload)
            if isinstance(parsed, dict) and "errorType" in parsed:
                return payload, True
        except ValueError:
            pass
        tail = stderr.strip().splitlines()[-1:] or [""]
        return _error_payload("Runtime.ExitError", f"exit status {proc.returncode}: {tail[0]}"), True
    return payload or b"null", False


def _patch() -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.utils import boto_client as sfn_boto_client

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        fn = self.get_function(function_name, qualifier)
        payload, errored = run_function(fn, body)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    LambdaSimpleBackend.invoke = invoke

    # moto 5.2.5's execution mode names an unnamed execution "None" (ARN `...:None`), so a second
    # StartExecution without a name fails with ExecutionAlreadyExists; AWS generates a UUID.
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_start = StepFunctionsParserBackend.start_execution

    def start_execution(self, state_machine_arn, name=None, execution_input=None, trace_header=None):
        import uuid

        return original_start(self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)

    StepFunctionsParserBackend.start_execution = start_execution

    original_client_for = sfn_boto_client.boto_client_for

    def boto_client_for(region, service, state_credentials=None):
        import boto3
        from botocore.config import Config

        from moto.core.models import botocore_stubber

        if botocore_stubber.enabled:
            return original_client_for(region, service, state_credentials)
        return boto3.client(
            service_name=service,
            region_name=region,
            endpoint_url=ENDPOINT,
            aws_access_key_id="ak",
            aws_secret_access_key="sk",
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=99999999,
                read_timeout=99999999,
            ),
        )

    # Every module that imported the name, not only the one defining it.
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("moto.stepfunctions") and getattr(mod, "boto_client_for", None) is original_client_for:
            mod.boto_client_for = boto_client_for
    sfn_boto_client.boto_client_for = boto_client_for
    lambda_eval_utils.boto_client_for = boto_client_for

    if RETRY_SCALE != 1.0:

        class _ScaledTime:
            def __getattr__(self, name):
                return getattr(time, name)

            @staticmethod
            def sleep(seconds):
                time.sleep(max(0.0, seconds) * RETRY_SCALE)

        retrier_decl.time = _ScaledTime()


def main() -> None:
    # Import the Step Functions interpreter modules now so every `boto_client_for` is patched.
    import importlib
    import pkgutil

    import moto.stepfunctions.parser.asl.component.state.exec.state_task.service as services

    for m in pkgutil.iter_modules(services.__path__):
        try:
            importlib.import_module(f"{services.__name__}.{m.name}")
        except Exception:  # an optional integration's import problem must not stop the server
            pass
    _patch()
    print(f"local-cloud shim: functions run from {BIN_DIR}, retry waits x{RETRY_SCALE}", file=sys.stderr, flush=True)
    from moto.server import main as moto_main

    moto_main(ARGV)


if __name__ == "__main__":
    main()
