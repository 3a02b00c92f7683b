//! The AWS adapters against moto (tests/moto): every call they make, and the DynamoDB store.
//! Each test gets a freshly reset (and seeded) moto; see `sso_fanout_tests::moto`.

use sso_fanout_aws::{create_table, AwsIdentityCenter, AwsOrgDirectory, DynamoStore, IdentityCenterConfig};
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::*;
use sso_fanout_core::request::{PermissionSetRef, PrincipalRef};
use sso_fanout_core::plan::Plan;
use sso_fanout_core::planner::{decide, PlannerConfig};
use sso_fanout_core::ports::{AssignmentOps, Directory, OrgDirectory};
use sso_fanout_core::report::summarize;
use sso_fanout_core::request::RunRequest;
use sso_fanout_core::store::{AccountCache, LatencyHistory, MemoryStore, RunLog, RunRecord, RunStatus};
use sso_fanout_core::tiers::LatencyModel;
use sso_fanout_core::FanoutError;
use sso_fanout_tests::moto::Moto;
use std::collections::{BTreeMap, BTreeSet};

const TABLE: &str = "sso-fanout-test";

async fn identity_center(moto: &Moto) -> AwsIdentityCenter {
    AwsIdentityCenter::from_clients(&moto.clients().await, IdentityCenterConfig::default())
}

/// A permission set or principal as a request names it.
fn ps(name_or_arn: &str) -> PermissionSetRef {
    name_or_arn.parse().unwrap()
}

fn by_name(kind: PrincipalType, name: &str) -> PrincipalRef {
    PrincipalRef::Name { kind, name: name.into() }
}

fn by_id(kind: PrincipalType, id: &str) -> PrincipalRef {
    PrincipalRef::Id { kind, id: id.parse().unwrap() }
}

fn group(moto: &Moto, name: &str) -> Principal {
    Principal { kind: PrincipalType::Group, id: moto.group(name), name: Some(name.into()) }
}

#[tokio::test]
async fn org_snapshot_walks_the_ou_tree_with_tags_and_status() {
    let moto = Moto::seeded();
    let org = AwsOrgDirectory::new(moto.clients().await.organizations);
    let snap = org.snapshot().await.unwrap();

    assert_eq!(snap.organization_id, moto.organization_id());
    assert_eq!(snap.management_account_id, moto.management_account_id());
    let now = sso_fanout_core::clock::unix_now();
    assert!(snap.fetched_at <= now && snap.fetched_at + 60 > now);
    // 12 seeded accounts + the management account (directly under the root).
    assert_eq!(snap.accounts.len(), 13, "{:#?}", snap.accounts);
    let by_id: BTreeMap<&str, &Account> = snap.accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    let mgmt = by_id[moto.management_account_id().as_str()];
    assert!(mgmt.ou_path.is_empty());
    assert_eq!(mgmt.status, AccountStatus::Active);

    for seeded in moto.accounts() {
        let a = by_id[seeded["id"].as_str().unwrap()];
        assert_eq!(a.name, seeded["name"].as_str().unwrap());
        assert_eq!(a.email, seeded["email"].as_str().unwrap());
        let path: Vec<String> = serde_json::from_value(seeded["ouPath"].clone()).unwrap();
        assert_eq!(a.ou_path, path, "OU path of {} (root child first)", a.name);
        let tags: BTreeMap<String, String> = serde_json::from_value(seeded["tags"].clone()).unwrap();
        assert_eq!(a.tags, tags, "tags of {}", a.name);
        let expected = if seeded["status"] == "SUSPENDED" { AccountStatus::Suspended } else { AccountStatus::Active };
        assert_eq!(a.status, expected, "status of {}", a.name);
    }
    let deep = by_id[moto.account_id("prod-search-002").as_str()];
    assert_eq!(deep.ou_path, vec![moto.ou("Prod"), moto.ou("Prod/Search")]);
    // Bounded concurrency 1 gives the same inventory.
    let serial = AwsOrgDirectory::new(moto.clients().await.organizations).with_concurrency(1).snapshot().await.unwrap();
    assert_eq!(serial.accounts, snap.accounts);

    // Accounts read one by one (DescribeAccount, ListParents up to the root, tags) are the same
    // as in the walk; an unknown id is NotFound.
    let ids: Vec<sso_fanout_core::ids::AccountId> = [deep.id.clone(), mgmt.id.clone()].into();
    let one_by_one = org.accounts(&ids).await.unwrap();
    assert_eq!(one_by_one, vec![deep.clone(), mgmt.clone()]);
    let unknown = org.accounts(&["999999999999".parse().unwrap()]).await.unwrap_err();
    assert!(matches!(unknown, sso_fanout_core::FanoutError::NotFound { .. }), "{unknown:?}");
}

#[tokio::test]
async fn resolves_instance_permission_sets_and_principals() {
    let moto = Moto::seeded();
    let ic = identity_center(&moto).await;

    let inst = ic.instance().await.unwrap();
    assert_eq!(inst.instance_arn, moto.instance_arn());
    assert_eq!(inst.identity_store_id, moto.identity_store_id());

    let admin = ic.resolve_permission_set(&ps("AdministratorAccess")).await.unwrap();
    assert_eq!(admin, PermissionSet { arn: moto.permission_set("AdministratorAccess"), name: "AdministratorAccess".into() });
    let ro = ic.resolve_permission_set(&ps(&moto.permission_set("ReadOnlyAccess"))).await.unwrap();
    assert_eq!(ro.name, "ReadOnlyAccess");
    match ic.resolve_permission_set(&ps("PowerUserAccess")).await.unwrap_err() {
        FanoutError::NotFound { what, name, hint } => {
            assert_eq!((what.as_str(), name.as_str()), ("permission set", "PowerUserAccess"));
            assert!(hint.contains("AdministratorAccess") && hint.contains("ReadOnlyAccess"), "{hint}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    // A well-formed ARN of this instance that does not exist.
    let instance_suffix = moto.instance_arn().rsplit('/').next().unwrap().to_string();
    let missing = format!("arn:aws:sso:::permissionSet/{instance_suffix}/ps-0123456789abcdef");
    assert!(matches!(ic.resolve_permission_set(&ps(&missing)).await.unwrap_err(), FanoutError::NotFound { .. }));

    let g = ic.resolve_principal(&by_name(PrincipalType::Group, "PlatformAdmins")).await.unwrap();
    assert_eq!(g, group(&moto, "PlatformAdmins"));
    let u = ic.resolve_principal(&by_name(PrincipalType::User, "alice")).await.unwrap();
    assert_eq!(u.id, moto.user("alice"));
    let developers = ic.resolve_principal(&by_id(PrincipalType::Group, &moto.group("Developers"))).await.unwrap();
    assert_eq!(developers.name.as_deref(), Some("Developers"));
    let user_by_id = ic.resolve_principal(&by_id(PrincipalType::User, &moto.user("alice"))).await.unwrap();
    assert_eq!(user_by_id.name.as_deref(), Some("alice"));

    let e = ic.resolve_principal(&by_name(PrincipalType::Group, "platformadmins")).await.unwrap_err();
    assert!(
        matches!(&e, FanoutError::NotFound { what, hint, .. } if what == "group" && hint.contains("case-sensitive")),
        "{e:?}"
    );
    let e = ic.resolve_principal(&by_name(PrincipalType::User, "bob")).await.unwrap_err();
    assert!(matches!(&e, FanoutError::NotFound { what, .. } if what == "user"), "{e:?}");
    let e = ic.resolve_principal(&by_id(PrincipalType::Group, "906771c1-0071-7057-3a0c-1d1c4ba2c2e8")).await.unwrap_err();
    assert!(matches!(&e, FanoutError::NotFound { what, .. } if what == "group id"), "{e:?}");
    assert!(e.is_request_error());
}

#[tokio::test]
async fn assignments_create_describe_list_delete() {
    let moto = Moto::seeded();
    let ic = identity_center(&moto).await;
    let admins = group(&moto, "PlatformAdmins");
    let ps = moto.permission_set("AdministratorAccess");
    let candidates: Vec<AccountId> = moto.accounts().iter().map(|a| a["id"].as_str().unwrap().parse().unwrap()).collect();

    let pre = moto.account_id("prod-payments-001");
    let target = moto.account_id("prod-payments-002");
    let assigned = ic.assigned_accounts(&admins, &ps, &candidates).await.unwrap();
    assert_eq!(assigned, BTreeSet::from([pre.clone()]), "the seeded assignment");
    // Another permission set of the same principal is not counted; nor is another principal.
    assert!(ic.assigned_accounts(&admins, &moto.permission_set("ReadOnlyAccess"), &candidates).await.unwrap().is_empty());
    assert!(ic.assigned_accounts(&group(&moto, "Developers"), &ps, &candidates).await.unwrap().is_empty());

    let key = AssignmentKey {
        account_id: target.clone(),
        permission_set_arn: ps.clone(),
        principal_type: PrincipalType::Group,
        principal_id: admins.id.clone(),
    };
    let created = ic.create_assignment(&key).await.unwrap();
    assert_eq!(created.state, OpState::Succeeded, "moto finishes at once");
    assert!(!created.request_id.is_empty());
    let status = ic.operation_status(Operation::Assign, &created.request_id).await.unwrap();
    assert_eq!(status.state, OpState::Succeeded);
    assert_eq!(status.request_id, created.request_id);
    assert_eq!(ic.assigned_accounts(&admins, &ps, &candidates).await.unwrap(), BTreeSet::from([pre.clone(), target.clone()]));
    // A single candidate uses the service-side account filter.
    assert_eq!(
        ic.assigned_accounts(&admins, &ps, std::slice::from_ref(&target)).await.unwrap(),
        BTreeSet::from([target.clone()])
    );

    let deleted = ic.delete_assignment(&key).await.unwrap();
    assert_eq!(deleted.state, OpState::Succeeded);
    let status = ic.operation_status(Operation::Revoke, &deleted.request_id).await.unwrap();
    assert_eq!(status.state, OpState::Succeeded);
    let e = ic.delete_assignment(&key).await.unwrap_err();
    assert!(matches!(&e, FanoutError::NotFound { hint, .. } if hint == "already absent"), "{e:?}");
    assert_eq!(ic.assigned_accounts(&admins, &ps, &candidates).await.unwrap(), BTreeSet::from([pre]));

    let e = ic.operation_status(Operation::Assign, "00000000-0000-0000-0000-000000000000").await.unwrap_err();
    assert!(matches!(e, FanoutError::NotFound { .. }), "{e:?}");

    // moto 5.2.5 answers the status listings with an HTML 500: Unsupported (the engine then
    // describes each operation).
    for op in [Operation::Assign, Operation::Revoke] {
        let e = ic.in_progress_operations(op).await.unwrap_err();
        assert!(matches!(e, FanoutError::Unsupported { .. }), "{op:?}: {e:?}");
    }
}

/// One principal-wide listing answers every account and every permission set of the principal.
#[tokio::test]
async fn principal_assignments_span_permission_sets() {
    let moto = Moto::seeded();
    let ic = identity_center(&moto).await;
    let admins = group(&moto, "PlatformAdmins");
    let (admin, read_only) = (moto.permission_set("AdministratorAccess"), moto.permission_set("ReadOnlyAccess"));
    let pre = moto.account_id("prod-payments-001");
    let other = moto.account_id("dev-search-001");

    let seeded = ic.principal_assignments(&admins).await.unwrap();
    assert_eq!(seeded.assignments, BTreeSet::from([(pre.clone(), admin.clone())]), "the seeded assignment");
    assert_eq!(seeded.pages, 1);

    // ReadOnlyAccess in the same account and in another one.
    for account in [&pre, &other] {
        let key = AssignmentKey {
            account_id: account.clone(),
            permission_set_arn: read_only.clone(),
            principal_type: PrincipalType::Group,
            principal_id: admins.id.clone(),
        };
        assert_eq!(ic.create_assignment(&key).await.unwrap().state, OpState::Succeeded, "moto finishes at once");
    }
    let all = ic.principal_assignments(&admins).await.unwrap();
    assert_eq!(
        all.assignments,
        BTreeSet::from([(pre.clone(), admin.clone()), (pre.clone(), read_only.clone()), (other.clone(), read_only.clone())])
    );
    assert_eq!(all.pages, 1);
    // Another principal holds nothing: one (empty) page.
    let developers = ic.principal_assignments(&group(&moto, "Developers")).await.unwrap();
    assert_eq!((developers.assignments.len(), developers.pages), (0, 1));
}

#[tokio::test]
async fn dynamo_org_cache_round_trip_and_replacement() {
    let moto = Moto::seeded();
    let clients = moto.clients().await;
    create_table(&clients.dynamodb, TABLE).await.unwrap();
    create_table(&clients.dynamodb, TABLE).await.expect("idempotent");
    let store = DynamoStore::new(clients.dynamodb.clone(), TABLE);
    let org = AwsOrgDirectory::new(clients.organizations.clone());
    let ic = AwsIdentityCenter::from_clients(&clients, IdentityCenterConfig::default());
    let (_, scope) = sso_fanout_core::planner::scope(&org, &ic).await.unwrap();
    assert_eq!(scope.organization_id, moto.organization_id());
    assert_eq!(scope.region, moto.region);
    assert_eq!(store.cached_org(&scope).await.unwrap(), None);

    let snap = org.snapshot().await.unwrap();
    assert_eq!(snap.roots, vec![moto.root_id()]);
    assert!(snap.ou(&moto.ou("Prod/Payments")).is_some_and(|o| o.name == "Payments" && o.parent_id == moto.ou("Prod")));
    store.put_org(&scope, &snap).await.unwrap();
    assert_eq!(store.cached_org(&scope).await.unwrap().as_ref(), Some(&snap));
    // Another organization, instance or region never sees this cache.
    for other in [
        Scope { organization_id: "o-otherorg01".into(), ..scope.clone() },
        Scope { instance_arn: "arn:aws:sso:::instance/ssoins-0000000000000000".into(), ..scope.clone() },
        Scope { region: "eu-west-1".into(), ..scope.clone() },
    ] {
        assert_eq!(store.cached_org(&other).await.unwrap(), None, "{other:?}");
    }

    // A 10,000-account organization is far above the 400 KB item limit: stored in parts.
    let big = synthetic_org(10_000);
    assert!(serde_json::to_string(&big).unwrap().len() > 1_000_000);
    store.put_org(&scope, &big).await.unwrap();
    assert_eq!(store.cached_org(&scope).await.unwrap().as_ref(), Some(&big));
    // The replaced version's parts are deleted: only the current version's remain.
    let scan = clients.dynamodb.scan().table_name(TABLE).send().await.unwrap();
    let org_partitions: BTreeSet<String> =
        scan.items().iter().filter_map(|i| i.get("pk")?.as_s().ok().cloned()).filter(|pk| pk.starts_with("ORGSNAP#")).collect();
    assert_eq!(org_partitions.len(), 1, "{org_partitions:?}");
}

fn test_scope(org: &str) -> Scope {
    Scope {
        organization_id: org.into(),
        management_account_id: "100000000000".parse().unwrap(),
        instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111".into(),
        region: "us-east-1".into(),
    }
}

fn synthetic_org(n: usize) -> OrgSnapshot {
    OrgSnapshot {
        organization_id: "o-abcdef1234".into(),
        management_account_id: "100000000000".parse().unwrap(),
        roots: vec!["r-ab12".into()],
        ous: vec![],
        accounts: (0..n)
            .map(|i| Account {
                id: format!("{:012}", 200_000_000_000u64 + i as u64).parse().unwrap(),
                name: format!("workload-{i:05}"),
                email: format!("aws+workload-{i:05}@example.com"),
                status: if i % 97 == 0 { AccountStatus::Suspended } else { AccountStatus::Active },
                ou_path: vec!["ou-ab12-cd34ef56".into(), format!("ou-ab12-{:08}", i % 50)],
                tags: BTreeMap::from([("env".into(), "prod".into()), ("team".into(), format!("team-{}", i % 40))]),
            })
            .collect(),
        fetched_at: 1_790_000_000,
    }
}

/// A real plan (the planner's own `decide`) over `n` accounts, `skipped` of them already done.
fn synthetic_plan(run_id: &str, created_at: u64, n: usize, skipped: usize, batch_size: u32) -> Plan {
    let request = RunRequest::from_value(serde_json::json!({
        "operation": "assign",
        "permissionSet": "AdministratorAccess",
        "principal": {"type": "GROUP", "name": "PlatformAdmins"},
        "targets": {"filter": "*"},
        "tuning": {"batchSize": batch_size}
    }))
    .unwrap();
    let targets: Vec<(AccountId, String)> =
        (0..n).map(|i| (format!("{:012}", 200_000_000_000u64 + i as u64).parse().unwrap(), format!("workload-{i:05}"))).collect();
    let existing: BTreeSet<AccountId> = targets.iter().take(skipped).map(|(id, _)| id.clone()).collect();
    let config = PlannerConfig::default();
    // A model learned from past runs: batches are sized by it, not by the cautious first-run sizing.
    let d = decide(Operation::Assign, &targets, &existing, n, &request, &config, LatencyModel { samples: 100, ..LatencyModel::default() });
    Plan {
        run_id: run_id.into(),
        created_at,
        request: sso_fanout_core::plan::PlanRequest::Single(request),
        operation: Operation::Assign,
        instance: Instance {
            instance_arn: "arn:aws:sso:::instance/ssoins-1111222233334444".into(),
            identity_store_id: "d-1234567890".into(),
            region: "us-east-1".into(),
        },
        scope: test_scope("o-abcdef1234"),
        permission_set: PermissionSet {
            arn: "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-aaaabbbbccccdddd".parse().unwrap(),
            name: "AdministratorAccess".into(),
        },
        principal: Principal {
            kind: PrincipalType::Group,
            id: "906771c1-0071-7057-3a0c-1d1c4ba2c2e8".parse().unwrap(),
            name: Some("PlatformAdmins".into()),
        },
        skipped: d.skipped,
        batches: d.batches,
        map_concurrency: d.map_concurrency,
        map_reason: d.map_reason,
        tier: d.tier,
        settings: d.settings,
        estimate: d.estimate,
        quota: Default::default(),
        warnings: d.warnings,
        pairs: vec![],
        desired: None,
    }
}

fn result(plan: &Plan, account: &str, outcome: Outcome) -> AccountResult {
    AccountResult {
        run_id: plan.run_id.clone(),
        batch: 0,
        account_id: account.parse().unwrap(),
        account_name: format!("name-{account}"),
        action: Action::Create,
        pair: 0,
        outcome,
        request_id: Some(format!("req-{account}")),
        reason: (outcome != Outcome::Succeeded)
            .then(|| format!("{} because the account is at its IAM role quota", outcome.as_str())),
        attempts: 1,
        duration_ms: 1234,
        provisioning_ms: Some(900),
    }
}

#[tokio::test]
async fn dynamo_runs_with_many_batches_are_reassembled() {
    let moto = Moto::empty();
    let clients = moto.clients().await;
    create_table(&clients.dynamodb, TABLE).await.unwrap();
    let store = DynamoStore::new(clients.dynamodb.clone(), TABLE).with_retention_days(30);

    // 10,000 accounts: 2,000 skipped, 8,000 changes in 16 batches of 500.
    let plan = synthetic_plan("run-20261127T035012Z-0001", 1_790_000_000, 10_000, 2_000, 500);
    assert_eq!((plan.batches.len(), plan.skipped.len(), plan.changes()), (16, 2_000, 8_000));
    assert!(serde_json::to_string(&plan).unwrap().len() > 400_000, "the plan alone would not fit one item");
    let record = RunRecord { plan: plan.clone(), status: RunStatus::Planned, summary: None };
    store.put_run(&record).await.unwrap();
    assert_eq!(store.get_run(&plan.run_id).await.unwrap().as_ref(), Some(&record));
    let e = store.put_run(&record).await.unwrap_err();
    assert!(matches!(&e, FanoutError::Store(m) if m.contains("exists")), "{e:?}");
    assert_eq!(store.get_run("run-does-not-exist").await.unwrap(), None);

    store.update_run(&plan.run_id, RunStatus::Running, None).await.unwrap();
    assert_eq!(store.get_run(&plan.run_id).await.unwrap().unwrap().status, RunStatus::Running);

    // A summary with 5,000 failures (reasons and all) is larger than one item too.
    let results: Vec<AccountResult> = plan
        .batches
        .iter()
        .flat_map(|b| &b.items)
        .enumerate()
        .map(|(i, item)| result(&plan, &item.account_id, if i % 8 < 5 { Outcome::Failed } else { Outcome::Succeeded }))
        .collect();
    let summary = summarize(&plan, &results, vec![], Some(321.5));
    assert_eq!(summary.counts.failed, 5_000);
    store.update_run(&plan.run_id, RunStatus::Finished, Some(&summary)).await.unwrap();
    let back = store.get_run(&plan.run_id).await.unwrap().unwrap();
    assert_eq!((back.status, back.summary.as_ref()), (RunStatus::Finished, Some(&summary)));
    assert_eq!(back.plan, plan);
    // A second report replaces the first (and the first's parts are removed).
    let mut again = summary.clone();
    again.duration_seconds = Some(400.0);
    store.update_run(&plan.run_id, RunStatus::Finished, Some(&again)).await.unwrap();
    assert_eq!(store.get_run(&plan.run_id).await.unwrap().unwrap().summary, Some(again));
    let e = store.update_run("run-nope", RunStatus::Running, None).await.unwrap_err();
    assert!(matches!(e, FanoutError::Store(_)), "{e:?}");

    // Small parts: every value split into many items still reassembles exactly.
    let small = DynamoStore::new(clients.dynamodb.clone(), TABLE).with_part_bytes(2_000).with_page_size(7);
    let plan2 = synthetic_plan("run-20261127T035013Z-0002", 1_790_000_100, 300, 40, 37);
    let record2 =
        RunRecord { plan: plan2.clone(), status: RunStatus::Planned, summary: Some(summarize(&plan2, &[], vec![], None)) };
    small.put_run(&record2).await.unwrap();
    assert_eq!(small.get_run(&plan2.run_id).await.unwrap(), Some(record2));

    // Listing: most recent first, limited.
    let plan3 = synthetic_plan("run-20261127T035014Z-0003", 1_790_000_200, 3, 0, 10);
    store.put_run(&RunRecord { plan: plan3.clone(), status: RunStatus::Planned, summary: None }).await.unwrap();
    let listed: Vec<String> = store.list_runs(10).await.unwrap().into_iter().map(|r| r.plan.run_id).collect();
    assert_eq!(listed, vec![plan3.run_id.clone(), plan2.run_id.clone(), plan.run_id.clone()]);
    let listed: Vec<String> = store.list_runs(2).await.unwrap().into_iter().map(|r| r.plan.run_id).collect();
    assert_eq!(listed, vec![plan3.run_id, plan2.run_id]);
}

#[tokio::test]
async fn dynamo_results_are_never_downgraded_and_paginate() {
    let moto = Moto::empty();
    let clients = moto.clients().await;
    create_table(&clients.dynamodb, TABLE).await.unwrap();
    let dynamo = DynamoStore::new(clients.dynamodb.clone(), TABLE).with_page_size(25);
    let memory = MemoryStore::new();
    let plan = synthetic_plan("run-20261127T035012Z-00aa", 1_790_000_000, 10, 0, 10);
    let accounts: Vec<String> = (0..150).map(|i| format!("{:012}", 300_000_000_000u64 + i)).collect();

    // The same sequence of writes on both stores: DynamoDB must behave like the reference.
    let mut writes = Vec::new();
    for (i, a) in accounts.iter().enumerate() {
        writes.push(result(&plan, a, if i % 3 == 0 { Outcome::TimedOut } else { Outcome::Succeeded }));
    }
    for (i, a) in accounts.iter().enumerate() {
        match i % 3 {
            0 => writes.push(result(&plan, a, Outcome::Failed)), // final over timed_out: replaces
            1 => writes.push(result(&plan, a, Outcome::TimedOut)), // timed_out over final: ignored
            _ => writes.push(result(&plan, a, Outcome::Succeeded)), // duplicate: still one item
        }
    }
    for w in &writes {
        dynamo.put_result(w).await.unwrap();
        memory.put_result(w).await.unwrap();
    }
    let sorted = |mut v: Vec<AccountResult>| {
        v.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        v
    };
    let from_dynamo = sorted(dynamo.results(&plan.run_id).await.unwrap());
    let from_memory = sorted(memory.results(&plan.run_id).await.unwrap());
    assert_eq!(from_dynamo.len(), 150, "one result per account, across 6 pages of 25");
    assert_eq!(from_dynamo, from_memory);
    assert_eq!(from_dynamo.iter().filter(|r| r.outcome == Outcome::TimedOut).count(), 0);
    assert_eq!(from_dynamo.iter().filter(|r| r.outcome == Outcome::Failed).count(), 50);
    assert!(dynamo.results("run-other").await.unwrap().is_empty());

    // Results carry a TTL.
    let item = clients
        .dynamodb
        .get_item()
        .table_name(TABLE)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("RESULTS#{}", plan.run_id)))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(accounts[0].clone()))
        .send()
        .await
        .unwrap();
    let ttl: u64 = item.item().unwrap()["expiresAt"].as_n().unwrap().parse().unwrap();
    let days = sso_fanout_core::store::DEFAULT_RETENTION_DAYS as u64;
    assert!(ttl > sso_fanout_core::clock::unix_now() + (days - 1) * 86_400, "default retention is {days} days");
}

#[tokio::test]
async fn dynamo_latency_samples_are_bounded_and_ordered() {
    let moto = Moto::empty();
    let clients = moto.clients().await;
    create_table(&clients.dynamodb, TABLE).await.unwrap();
    let store = std::sync::Arc::new(DynamoStore::new(clients.dynamodb.clone(), TABLE));
    let scope = test_scope("o-abcdef1234");
    assert!(store.latency_samples(&scope, 500).await.unwrap().is_empty());
    store.add_latency_samples(&scope, &(0..300).collect::<Vec<u64>>()).await.unwrap();
    store.add_latency_samples(&scope, &(300..600).collect::<Vec<u64>>()).await.unwrap();
    let all = store.latency_samples(&scope, 10_000).await.unwrap();
    assert_eq!(all, (100..600).collect::<Vec<u64>>(), "the most recent 500, oldest first");
    assert_eq!(store.latency_samples(&scope, 3).await.unwrap(), vec![597, 598, 599]);
    assert!(store.latency_samples(&test_scope("o-simulated1"), 500).await.unwrap().is_empty(), "another scope's history is its own");

    // Concurrent writers (workers finishing together) all succeed (optimistic retries) and the
    // list stays bounded. That no update is lost rests on DynamoDB's atomic conditional write,
    // which moto does not guarantee under concurrency: the retry itself is checked with mocks
    // (crates/aws `latency_append_retries_on_a_concurrent_writer`).
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..5u64 {
        let store = store.clone();
        let scope = scope.clone();
        tasks.spawn(async move { store.add_latency_samples(&scope, &[10_000 + w; 4]).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let after = store.latency_samples(&scope, 10_000).await.unwrap();
    assert_eq!(after.len(), 500);
    assert!(after.iter().rev().take(4).all(|v| *v >= 10_000), "the newest samples are last");
}
