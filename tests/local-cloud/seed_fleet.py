#!/usr/bin/env python3
"""Adds a fleet of member accounts to an organization seeded by tests/moto/seed.py, so the
state machine runs on ~30 accounts (seed.py makes 12).

    .venv-moto/bin/python tests/local-cloud/seed_fleet.py --port PORT --count 18

Creates OU Fleet (under the root) with accounts fleet-001..fleet-NNN, tagged env=fleet and
team=fleet-a / fleet-b alternately. Prints {"ous": {"Fleet": id}, "accounts": [...]} in
seed.py's account format.
"""

import argparse
import json
import os
import sys

import boto3


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--count", type=int, default=18)
    args = ap.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    org = boto3.client("organizations", region_name=args.region, endpoint_url=f"http://127.0.0.1:{args.port}")

    root_id = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root_id, Name="Fleet")["OrganizationalUnit"]["Id"]
    accounts = []
    for i in range(1, args.count + 1):
        name = f"fleet-{i:03d}"
        tags = {"env": "fleet", "team": "fleet-a" if i % 2 else "fleet-b"}
        account_id = org.create_account(
            Email=f"{name}@example.com", AccountName=name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )["CreateAccountStatus"]["AccountId"]
        org.move_account(AccountId=account_id, SourceParentId=root_id, DestinationParentId=ou)
        accounts.append(
            {
                "id": account_id,
                "name": name,
                "email": f"{name}@example.com",
                "status": "ACTIVE",
                "ouPath": [ou],
                "ouNames": ["Fleet"],
                "tags": tags,
            }
        )
    json.dump({"ous": {"Fleet": ou}, "accounts": accounts}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
