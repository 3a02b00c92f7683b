#!/usr/bin/env python3
"""Regenerates crates/wire/models/<service>.json, the request shapes the wire emulator validates
every request against, from botocore's service models (Apache-2.0, see
crates/wire/models/README.md).

    python3 -m venv /tmp/bc && /tmp/bc/bin/pip install botocore==1.44.8
    /tmp/bc/bin/python tests/wire/models.py          # or .venv-moto/bin/python (same pin)

Keeps, per service: the metadata, each served operation's input shape name (the operations
listed in crates/wire/src/services.rs), and every shape reachable from those inputs, without
documentation strings. One shape per line, sorted, so a
botocore upgrade shows as a reviewable diff. Refuses a botocore other than the one pinned in
tests/moto/requirements.txt unless --any-version is given. Standard library + botocore only.
"""

import argparse
import gzip
import json
import os
import re
import sys

import botocore

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "crates", "wire", "models")

# Each service's served operations are read from this constant of crates/wire/src/services.rs
# (its tests check that the vendored models list exactly those).
SERVICES = {
    "sso-admin": ("2020-07-20", "SSO_ADMIN_OPERATIONS"),
    "organizations": ("2016-11-28", "ORGANIZATIONS_OPERATIONS"),
    "identitystore": ("2020-06-15", "IDENTITY_STORE_OPERATIONS"),
}
SERVED = os.path.join(REPO, "crates", "wire", "src", "services.rs")

# Prose, not constraints.
DROPPED = {"documentation", "documentationUrl", "deprecatedMessage", "examples"}
METADATA = ("apiVersion", "protocol", "jsonVersion", "targetPrefix", "serviceId")


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k not in DROPPED}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def load(service, version):
    base = os.path.join(os.path.dirname(botocore.__file__), "data", service, version)
    for name, opener in (("service-2.json", open), ("service-2.json.gz", gzip.open)):
        path = os.path.join(base, name)
        if os.path.exists(path):
            with opener(path, "rt", encoding="utf-8") as f:
                return json.load(f)
    raise SystemExit(f"no service-2.json for {service} {version} in {base}")


def reachable(model, roots):
    seen = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        shape = model["shapes"][name]
        refs = [m["shape"] for m in shape.get("members", {}).values()]
        refs += [shape[k]["shape"] for k in ("member", "key", "value") if k in shape]
        stack.extend(refs)
    return seen


def render(service, version, model, operations):
    missing = [o for o in operations if o not in model["operations"]]
    if missing:
        raise SystemExit(f"{service}: not in botocore's model: {missing}")
    inputs = {o: model["operations"][o].get("input", {}).get("shape") for o in operations}
    shapes = reachable(model, [s for s in inputs.values() if s])
    source = f"botocore {botocore.__version__} botocore/data/{service}/{version}/service-2.json (Apache-2.0)"
    lines = ["{", f' "_source": {json.dumps(source)},']
    meta = {k: model["metadata"][k] for k in METADATA if k in model["metadata"]}
    lines.append(f' "metadata": {json.dumps(meta, sort_keys=True)},')
    lines.append(f' "operations": {json.dumps(inputs, sort_keys=True)},')
    lines.append(' "shapes": {')
    body = [f'  {json.dumps(n)}: {json.dumps(strip(model["shapes"][n]), sort_keys=True, ensure_ascii=False)}'
            for n in sorted(shapes)]
    lines.append(",\n".join(body))
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def served_operations(constant):
    with open(SERVED, encoding="utf-8") as f:
        m = re.search(rf"pub const {constant}: &\[&str\] = &\[(.*?)\];", f.read(), re.S)
    if not m:
        raise SystemExit(f"no {constant} in {SERVED}")
    return re.findall(r'"(\w+)"', m.group(1))


def pinned_botocore():
    with open(os.path.join(REPO, "tests", "moto", "requirements.txt"), encoding="utf-8") as f:
        m = re.search(r"^botocore==(\S+)$", f.read(), re.M)
    return m.group(1) if m else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--any-version", action="store_true", help="accept a botocore other than the pinned one")
    a = p.parse_args()
    pin = pinned_botocore()
    if botocore.__version__ != pin and not a.any_version:
        raise SystemExit(f"botocore {botocore.__version__} is not the pinned {pin} (tests/moto/requirements.txt); --any-version to go on")
    os.makedirs(OUT, exist_ok=True)
    for service, (version, constant) in SERVICES.items():
        text = render(service, version, load(service, version), served_operations(constant))
        path = os.path.join(OUT, f"{service}.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{os.path.relpath(path, REPO)}: {len(text)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
