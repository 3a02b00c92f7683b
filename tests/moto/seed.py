#!/usr/bin/env python3
"""Seeds a moto server with a small organization for the adapter tests and prints what it made.

    .venv-moto/bin/python tests/moto/seed.py --port 5000 [--region us-east-1]

Creates (the caller account, 123456789012, becomes the management account in moto):

    Root
    |- Prod                 prod-shared-001
    |  |- Payments          prod-payments-001..003
    |  `- Search            prod-search-001..002
    |- Dev                  dev-payments-001, dev-search-001
    |- Sandbox              sandbox-alice-001, sandbox-bob-001 (closed -> SUSPENDED)
    `- (root)               security-audit-001, shared-network-001, and the management account

Every member account is tagged env=<prod|dev|sandbox|security|shared> and team=<...>.
Identity Store: groups PlatformAdmins and Developers, user alice. Permission sets
AdministratorAccess and ReadOnlyAccess (with SessionDuration: moto omits it otherwise and the
Rust SDK then fails to parse DescribePermissionSet). One pre-existing assignment: PlatformAdmins
has AdministratorAccess in prod-payments-001.

Prints one JSON document (stdout) with every id and ARN; the Rust tests read it.
"""

import argparse
import json
import os
import sys

import boto3

ACCOUNTS = [
    # name, OU path (names, root child first), tags
    ("prod-payments-001", ["Prod", "Payments"], {"env": "prod", "team": "payments"}),
    ("prod-payments-002", ["Prod", "Payments"], {"env": "prod", "team": "payments"}),
    ("prod-payments-003", ["Prod", "Payments"], {"env": "prod", "team": "payments"}),
    ("prod-search-001", ["Prod", "Search"], {"env": "prod", "team": "search"}),
    ("prod-search-002", ["Prod", "Search"], {"env": "prod", "team": "search"}),
    ("prod-shared-001", ["Prod"], {"env": "prod", "team": "platform"}),
    ("dev-payments-001", ["Dev"], {"env": "dev", "team": "payments"}),
    ("dev-search-001", ["Dev"], {"env": "dev", "team": "search"}),
    ("sandbox-alice-001", ["Sandbox"], {"env": "sandbox", "team": "alice"}),
    ("sandbox-bob-001", ["Sandbox"], {"env": "sandbox", "team": "bob"}),
    ("security-audit-001", [], {"env": "security", "team": "security"}),
    ("shared-network-001", [], {"env": "shared", "team": "platform"}),
]
SUSPENDED = {"sandbox-bob-001"}
OU_TREE = [["Prod"], ["Prod", "Payments"], ["Prod", "Search"], ["Dev"], ["Sandbox"]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--region", default="us-east-1")
    args = ap.parse_args()

    # Never real AWS: dummy credentials unless the caller set some, and an explicit endpoint.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{args.port}"

    def client(service: str):
        return boto3.client(service, region_name=args.region, endpoint_url=endpoint)

    org = client("organizations")
    sso = client("sso-admin")
    ids = client("identitystore")

    o = org.create_organization(FeatureSet="ALL")["Organization"]
    root_id = org.list_roots()["Roots"][0]["Id"]

    ous: dict[str, str] = {}
    for path in OU_TREE:
        parent = ous["/".join(path[:-1])] if len(path) > 1 else root_id
        ous["/".join(path)] = org.create_organizational_unit(ParentId=parent, Name=path[-1])["OrganizationalUnit"]["Id"]

    accounts = []
    for name, path, tags in ACCOUNTS:
        status = org.create_account(
            Email=f"{name}@example.com",
            AccountName=name,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )["CreateAccountStatus"]
        account_id = status["AccountId"]
        if path:
            org.move_account(AccountId=account_id, SourceParentId=root_id, DestinationParentId=ous["/".join(path)])
        state = "ACTIVE"
        if name in SUSPENDED:
            # moto 5.2.5 has no suspend call; CloseAccount moves the account straight to SUSPENDED.
            org.close_account(AccountId=account_id)
            state = "SUSPENDED"
        accounts.append(
            {
                "id": account_id,
                "name": name,
                "email": f"{name}@example.com",
                "status": state,
                "ouPath": [ous["/".join(path[: i + 1])] for i in range(len(path))],
                "ouNames": path,
                "tags": tags,
            }
        )

    instance = sso.list_instances()["Instances"][0]
    instance_arn, store_id = instance["InstanceArn"], instance["IdentityStoreId"]

    groups = {}
    for g in ["PlatformAdmins", "Developers"]:
        groups[g] = ids.create_group(IdentityStoreId=store_id, DisplayName=g, Description=f"{g} (seed)")["GroupId"]
    users = {}
    for u in ["alice"]:
        users[u] = ids.create_user(
            IdentityStoreId=store_id,
            UserName=u,
            DisplayName=u.title(),
            Name={"GivenName": u.title(), "FamilyName": "Example"},
            Emails=[{"Value": f"{u}@example.com", "Type": "work", "Primary": True}],
        )["UserId"]

    permission_sets = {}
    for name, duration in [("AdministratorAccess", "PT1H"), ("ReadOnlyAccess", "PT8H")]:
        permission_sets[name] = sso.create_permission_set(
            Name=name, InstanceArn=instance_arn, SessionDuration=duration, Description=f"{name} (seed)"
        )["PermissionSet"]["PermissionSetArn"]

    by_name = {a["name"]: a for a in accounts}
    assignments = []
    pre = {
        "accountId": by_name["prod-payments-001"]["id"],
        "permissionSetArn": permission_sets["AdministratorAccess"],
        "principalType": "GROUP",
        "principalId": groups["PlatformAdmins"],
    }
    sso.create_account_assignment(
        InstanceArn=instance_arn,
        TargetId=pre["accountId"],
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=pre["permissionSetArn"],
        PrincipalType=pre["principalType"],
        PrincipalId=pre["principalId"],
    )
    assignments.append(pre)

    json.dump(
        {
            "endpoint": endpoint,
            "region": args.region,
            "organizationId": o["Id"],
            "managementAccountId": o["MasterAccountId"],
            "rootId": root_id,
            "ous": ous,
            "accounts": accounts,
            "instanceArn": instance_arn,
            "identityStoreId": store_id,
            "groups": groups,
            "users": users,
            "permissionSets": permission_sets,
            "assignments": assignments,
        },
        sys.stdout,
        indent=2,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
