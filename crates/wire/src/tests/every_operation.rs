//! A table of one well-formed request per served operation, each member of which is then
//! broken in every way its shape forbids: mutations derived from the vendored model's raw JSON
//! (not from the validator), each answered with the service's error naming the member.

use super::*;
use std::collections::BTreeSet;

fn target(service: Service, operation: &str) -> String {
    format!("{}.{operation}", service.model().target_prefix)
}

/// One well-formed request per served operation, on a simulated organization of 5 accounts.
fn well_formed(e: &Emulator, created: &str, deleted: &str) -> Vec<(Service, &'static str, Value)> {
    let sim = e.sim();
    let i = sim.instance_info();
    let (arn, store) = (i.instance_arn.as_str(), i.identity_store_id.as_str());
    let ps = sim.permission_sets()[0].arn.as_str();
    let group = sim.principals()[0].id.as_str();
    let alice = sim
        .principals()
        .iter()
        .find(|p| p.name.as_deref() == Some("alice"))
        .unwrap()
        .id
        .as_str();
    let account = |n: usize| sim.org().accounts[n].id.as_str();
    let assignment = |n: usize| json!({"InstanceArn": arn, "TargetId": account(n), "TargetType": "AWS_ACCOUNT", "PermissionSetArn": ps, "PrincipalType": "GROUP", "PrincipalId": group});
    let status_list = json!({"InstanceArn": arn, "MaxResults": 100, "NextToken": "sim-page-0", "Filter": {"Status": "IN_PROGRESS"}});
    let page = |max: u32| json!({"MaxResults": max, "NextToken": "sim-page-0"});
    let with = |mut base: Value, extra: Value| {
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    };
    use Service::*;
    vec![
        (
            SsoAdmin,
            "ListInstances",
            with(page(10), json!({"RegionScope": "CURRENT_REGION"})),
        ),
        (
            SsoAdmin,
            "ListPermissionSets",
            with(page(100), json!({"InstanceArn": arn})),
        ),
        (
            SsoAdmin,
            "DescribePermissionSet",
            json!({"InstanceArn": arn, "PermissionSetArn": ps}),
        ),
        (SsoAdmin, "CreateAccountAssignment", assignment(3)),
        (SsoAdmin, "DeleteAccountAssignment", assignment(4)),
        (
            SsoAdmin,
            "DescribeAccountAssignmentCreationStatus",
            json!({"InstanceArn": arn, "AccountAssignmentCreationRequestId": created}),
        ),
        (
            SsoAdmin,
            "DescribeAccountAssignmentDeletionStatus",
            json!({"InstanceArn": arn, "AccountAssignmentDeletionRequestId": deleted}),
        ),
        (
            SsoAdmin,
            "ListAccountAssignmentCreationStatus",
            status_list.clone(),
        ),
        (SsoAdmin, "ListAccountAssignmentDeletionStatus", status_list),
        (
            SsoAdmin,
            "ListAccountAssignments",
            with(
                page(100),
                json!({"InstanceArn": arn, "AccountId": account(1), "PermissionSetArn": ps}),
            ),
        ),
        (
            SsoAdmin,
            "ListAccountAssignmentsForPrincipal",
            with(
                page(100),
                json!({"InstanceArn": arn, "PrincipalId": group, "PrincipalType": "GROUP", "Filter": {"AccountId": account(1)}}),
            ),
        ),
        (Organizations, "DescribeOrganization", json!({})),
        (
            Organizations,
            "DescribeAccount",
            json!({"AccountId": account(1)}),
        ),
        (Organizations, "ListRoots", page(20)),
        (
            Organizations,
            "ListOrganizationalUnitsForParent",
            with(page(20), json!({"ParentId": "r-sim0"})),
        ),
        (Organizations, "ListAccounts", page(20)),
        (
            Organizations,
            "ListAccountsForParent",
            with(page(20), json!({"ParentId": "ou-sim0-prod0000"})),
        ),
        (
            Organizations,
            "ListParents",
            with(page(20), json!({"ChildId": account(1)})),
        ),
        (
            Organizations,
            "ListTagsForResource",
            json!({"ResourceId": account(1), "NextToken": "sim-page-0"}),
        ),
        (
            IdentityStore,
            "ListGroups",
            with(
                page(100),
                json!({"IdentityStoreId": store, "Filters": [{"AttributePath": "DisplayName", "AttributeValue": "PlatformAdmins"}]}),
            ),
        ),
        (
            IdentityStore,
            "ListUsers",
            with(
                page(100),
                json!({"IdentityStoreId": store, "Extensions": ["aws:identitystore:enterprise"], "Filters": [{"AttributePath": "UserName", "AttributeValue": "alice"}]}),
            ),
        ),
        (
            IdentityStore,
            "DescribeGroup",
            json!({"IdentityStoreId": store, "GroupId": group}),
        ),
        (
            IdentityStore,
            "DescribeUser",
            json!({"IdentityStoreId": store, "UserId": alice, "Extensions": ["aws:identitystore:enterprise"]}),
        ),
        (
            IdentityStore,
            "GetGroupId",
            json!({"IdentityStoreId": store, "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": "PlatformAdmins"}}}),
        ),
        (
            IdentityStore,
            "GetUserId",
            json!({"IdentityStoreId": store, "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "alice"}}}),
        ),
    ]
}

/// What a broken request must be answered with.
#[derive(Debug)]
enum Expect {
    /// The service's validation error naming `path`, its message (Coral style) containing
    /// `constraint`, Organizations' `Reason` being `reason`.
    Refused {
        path: String,
        constraint: String,
        reason: &'static str,
    },
    /// A member of the wrong type.
    Unreadable { path: String },
}

/// One way to break a request: set (or remove, `None`) the member at a JSON pointer.
#[derive(Debug)]
struct Mutation {
    pointer: String,
    value: Option<Value>,
    expect: Expect,
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// Patterns every string satisfies: nothing to break.
const MATCH_ANYTHING: &[&str] = &[r"[\s\S]*", r"[\S\s]*"];

/// Every way the raw model's `shape` forbids, for the member `value` at (`pointer`, `path`).
fn mutations(
    shapes: &Value,
    shape: &str,
    value: &Value,
    pointer: &str,
    path: &str,
    out: &mut Vec<Mutation>,
) {
    let def = &shapes[shape];
    let refused = |constraint: String, reason: &'static str| Expect::Refused {
        path: path.to_string(),
        constraint,
        reason,
    };
    let n = |key: &str| def[key].as_f64();
    let mut push = |value: Value, expect: Expect| {
        out.push(Mutation {
            pointer: pointer.to_string(),
            value: Some(value),
            expect,
        })
    };
    match def["type"].as_str().unwrap() {
        "structure" if def["document"] == true => {}
        "structure" => {
            push(
                json!("not an object"),
                Expect::Unreadable {
                    path: path.to_string(),
                },
            );
            let required: Vec<&str> = def["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (name, member) in def["members"].as_object().unwrap() {
                let (at, named) = (
                    format!("{pointer}/{name}"),
                    if path.is_empty() {
                        lower_first(name)
                    } else {
                        format!("{path}.{}", lower_first(name))
                    },
                );
                if required.contains(&name.as_str()) {
                    out.push(Mutation { pointer: at.clone(), value: None, expect: Expect::Refused { path: named.clone(), constraint: format!("Value null at '{named}' failed to satisfy constraint: Member must not be null"), reason: "INPUT_REQUIRED" } });
                }
                if let Some(v) = value.get(name) {
                    mutations(
                        shapes,
                        member["shape"].as_str().unwrap(),
                        v,
                        &at,
                        &named,
                        out,
                    );
                }
            }
        }
        "list" => {
            push(
                json!({}),
                Expect::Unreadable {
                    path: path.to_string(),
                },
            );
            let first = value[0].clone();
            if let Some(max) = n("max") {
                push(
                    json!(vec![first.clone(); max as usize + 1]),
                    refused(
                        format!("Member must have length less than or equal to {max}"),
                        "MAX_LENGTH_EXCEEDED",
                    ),
                );
            }
            if let Some(min) = n("min").filter(|m| *m > 0.0) {
                push(
                    json!([]),
                    refused(
                        format!("Member must have length greater than or equal to {min}"),
                        "MIN_LENGTH_EXCEEDED",
                    ),
                );
            }
            mutations(
                shapes,
                def["member"]["shape"].as_str().unwrap(),
                &first,
                &format!("{pointer}/0"),
                &format!("{path}.1.member"),
                out,
            );
        }
        "string" => {
            push(
                json!(12),
                Expect::Unreadable {
                    path: path.to_string(),
                },
            );
            let text = value.as_str().unwrap();
            if let Some(max) = n("max") {
                push(
                    json!("a".repeat(max as usize + 1)),
                    refused(
                        format!("Member must have length less than or equal to {max}"),
                        "MAX_LENGTH_EXCEEDED",
                    ),
                );
            }
            if let Some(min) = n("min").filter(|m| *m > 0.0) {
                push(
                    json!(""),
                    refused(
                        format!("Member must have length greater than or equal to {min}"),
                        "MIN_LENGTH_EXCEEDED",
                    ),
                );
            }
            if let Some(pattern) = def["pattern"]
                .as_str()
                .filter(|p| !MATCH_ANYTHING.contains(p))
            {
                // The same length, its last character a control character no pattern allows.
                let broken: String = text
                    .chars()
                    .take(text.chars().count() - 1)
                    .chain(['\u{7}'])
                    .collect();
                push(
                    json!(broken),
                    refused(
                        format!("Member must satisfy regular expression pattern: {pattern}"),
                        "INVALID_PATTERN",
                    ),
                );
            }
            if def["enum"].is_array() {
                push(
                    json!("NOT_A_VALUE"),
                    refused(
                        "Member must satisfy enum value set: [".into(),
                        "INVALID_ENUM",
                    ),
                );
            }
        }
        "integer" | "long" => {
            push(
                json!("10"),
                Expect::Unreadable {
                    path: path.to_string(),
                },
            );
            if let Some(max) = n("max") {
                push(
                    json!(max as i64 + 1),
                    refused(
                        format!("Member must have value less than or equal to {max}"),
                        "MAX_VALUE_EXCEEDED",
                    ),
                );
            }
            if let Some(min) = n("min") {
                push(
                    json!(min as i64 - 1),
                    refused(
                        format!("Member must have value greater than or equal to {min}"),
                        "MIN_VALUE_EXCEEDED",
                    ),
                );
            }
        }
        other => panic!("no mutations for {other} ({shape}): add them"),
    }
}

fn apply(request: &Value, m: &Mutation) -> Value {
    let mut out = request.clone();
    let (parent, key) = m.pointer.rsplit_once('/').unwrap();
    match (out.pointer_mut(parent).unwrap(), &m.value) {
        (Value::Object(o), None) => {
            o.remove(key);
        }
        (Value::Object(o), Some(v)) => {
            o.insert(key.to_string(), v.clone());
        }
        (Value::Array(a), Some(v)) => a[key.parse::<usize>().unwrap()] = v.clone(),
        other => panic!("cannot apply {m:?} to {other:?}"),
    }
    out
}

fn check_refusal(service: Service, operation: &str, m: &Mutation, err: &WireError) {
    let context = format!("{operation} {m:?}: {err:?}");
    match (&m.expect, service) {
        (Expect::Unreadable { path }, _) => {
            assert_eq!(err.code, "SerializationException", "{context}");
            assert!(err.message.contains(&format!("'{path}'")), "{context}");
        }
        (Expect::Refused { path, reason, .. }, Service::Organizations) => {
            assert_eq!(
                (err.code.as_str(), err.reason.as_deref()),
                ("InvalidInputException", Some(*reason)),
                "{context}"
            );
            assert!(
                err.message
                    .contains(&format!("at '{path}' failed to satisfy constraint")),
                "{context}"
            );
        }
        (
            Expect::Refused {
                path, constraint, ..
            },
            _,
        ) => {
            assert_eq!(
                (err.status, err.code.as_str()),
                (400, "ValidationException"),
                "{context}"
            );
            assert!(
                err.message.starts_with("1 validation error detected: ")
                    || err.message.contains("validation errors detected: "),
                "{context}"
            );
            assert!(
                err.message
                    .contains(&format!("at '{path}' failed to satisfy constraint")),
                "{context}"
            );
            assert!(err.message.contains(constraint.as_str()), "{context}");
        }
    }
}

#[tokio::test]
async fn every_served_operation_takes_a_well_formed_request_and_refuses_each_bad_member_by_name() {
    let server = Server::start(unthrottled(5), 0).await.unwrap();
    let e = server.emulator();
    let sim = e.sim();
    let (ps, group) = (
        sim.permission_sets()[0].arn.clone(),
        sim.principals()[0].id.clone(),
    );
    let account = |n: usize| sim.org().accounts[n].id.clone();
    for n in [2, 4] {
        sim.put_assignment_out_of_band(&account(n), &ps, &group)
            .unwrap();
    }
    // A create and a delete to describe.
    let i = sim.instance_info();
    let assignment = |n: usize| json!({"InstanceArn": i.instance_arn, "TargetId": account(n).as_str(), "TargetType": "AWS_ACCOUNT", "PermissionSetArn": ps.as_str(), "PrincipalType": "GROUP", "PrincipalId": group.as_str()});
    let created = e
        .call("SWBExternalService.CreateAccountAssignment", &assignment(1))
        .await
        .unwrap();
    let deleted = e
        .call("SWBExternalService.DeleteAccountAssignment", &assignment(2))
        .await
        .unwrap();
    let table = well_formed(
        e,
        created["AccountAssignmentCreationStatus"]["RequestId"]
            .as_str()
            .unwrap(),
        deleted["AccountAssignmentDeletionStatus"]["RequestId"]
            .as_str()
            .unwrap(),
    );
    let served: BTreeSet<&str> = SSO_ADMIN_OPERATIONS
        .iter()
        .chain(ORGANIZATIONS_OPERATIONS)
        .chain(IDENTITY_STORE_OPERATIONS)
        .copied()
        .collect();
    assert_eq!(
        table.iter().map(|(_, op, _)| *op).collect::<BTreeSet<_>>(),
        served,
        "one row per served operation"
    );

    let mut tried = 0u64;
    for (service, operation, request) in &table {
        let target = target(*service, operation);
        let raw: Value = serde_json::from_str(service.source()).unwrap();
        let Some(input) = raw["operations"][operation].as_str() else {
            assert_eq!(request, &json!({}), "{operation} takes no input");
            continue;
        };
        let mut broken = Vec::new();
        mutations(&raw["shapes"], input, request, "", "", &mut broken);
        broken.retain(|m| !m.pointer.is_empty()); // the request itself as a non-object: not JSON 1.1
        assert!(!broken.is_empty(), "{operation}");
        for m in &broken {
            let err = e
                .call(&target, &apply(request, m))
                .await
                .expect_err(&format!("{operation} {m:?} accepted"));
            check_refusal(*service, operation, m, &err);
            tried += 1;
        }
        // The well-formed request, with a member the model does not name (ignored).
        let mut extra = request.clone();
        extra["SomethingNew"] = json!({"x": [1, 2]});
        let answer = e.call(&target, &extra).await;
        assert!(answer.is_ok(), "{operation} {extra}: {answer:?}");
    }
    assert!(tried > 150, "{tried} broken requests");
    let invalid = e.stats()["invalid"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(invalid, tried, "every refusal counted in /_sim/stats");
    server.stop().await;
}
