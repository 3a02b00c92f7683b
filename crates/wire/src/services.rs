//! The operations, by service (sso-admin here, Organizations and Identity Store in the
//! submodules): request fields and answer shapes as in the botocore service models (sso-admin
//! 2020-07-20, organizations 2016-11-28, identitystore 2020-06-15) and the Rust SDK's
//! deserializers (timestamps as epoch seconds). Each request was validated against its input
//! shape first ([`crate::validate`]), so the handlers only decide what the simulated instance
//! holds.

use crate::{Emulator, Service, WireError};
use serde_json::{json, Value};
use sso_fanout_core::ids::{AccountId, PrincipalId};
use sso_fanout_core::model::{AssignmentKey, OpState, Operation, PrincipalType};
use sso_fanout_sim::{Admitted, Arrival, OpDetail};

mod identity_store;
mod organizations;

pub(crate) use identity_store::identity_store;
pub(crate) use organizations::organizations;

/// sso-admin (`SWBExternalService.<Op>`): each request spends the instance's quota.
pub const SSO_ADMIN_OPERATIONS: &[&str] = &[
    "ListInstances",
    "ListPermissionSets",
    "DescribePermissionSet",
    "CreateAccountAssignment",
    "DeleteAccountAssignment",
    "DescribeAccountAssignmentCreationStatus",
    "DescribeAccountAssignmentDeletionStatus",
    "ListAccountAssignmentCreationStatus",
    "ListAccountAssignmentDeletionStatus",
    "ListAccountAssignments",
    "ListAccountAssignmentsForPrincipal",
];

/// Organizations (`AWSOrganizationsV20161128.<Op>`).
pub const ORGANIZATIONS_OPERATIONS: &[&str] = &[
    "DescribeOrganization",
    "DescribeAccount",
    "ListRoots",
    "ListOrganizationalUnitsForParent",
    "ListAccounts",
    "ListAccountsForParent",
    "ListParents",
    "ListTagsForResource",
];

/// Identity Store (`AWSIdentityStore.<Op>`).
pub const IDENTITY_STORE_OPERATIONS: &[&str] = &[
    "ListGroups",
    "ListUsers",
    "DescribeGroup",
    "DescribeUser",
    "GetGroupId",
    "GetUserId",
];

fn unknown(service: &str, operation: &str) -> WireError {
    WireError::new(
        400,
        "UnknownOperationException",
        format!("{service} operation `{operation}` is not supported by this emulator"),
    )
}

/// A string member of a validated request ("" when the model does not require it and it is
/// absent).
fn member<'a>(input: &'a Value, field: &str) -> &'a str {
    input.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// The service's "invalid request" error for what the model cannot express (a NextToken this
/// emulator never issued).
fn invalid_token(service: Service) -> WireError {
    let message = "The NextToken is not valid";
    match service {
        Service::Organizations => WireError::invalid_input("INVALID_NEXT_TOKEN", message),
        _ => WireError::validation(message),
    }
}

/// One page of `items` as `{key: [...], "NextToken"?}`, `MaxResults` at a time (its range
/// checked by the validator; `default_max` without it). The token is the offset.
fn paged(
    key: &str,
    items: Vec<Value>,
    input: &Value,
    default_max: usize,
    service: Service,
) -> Result<Value, WireError> {
    let max = input
        .get("MaxResults")
        .and_then(Value::as_u64)
        .map_or(default_max, |n| n as usize);
    let start = match input.get("NextToken").and_then(Value::as_str) {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("sim-page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| invalid_token(service))?,
    };
    let end = (start + max).min(items.len());
    let mut out = json!({ key: items[start..end] });
    if end < items.len() {
        out["NextToken"] = json!(format!("sim-page-{end}"));
    }
    Ok(out)
}

/// A page of an sso-admin listing: 100 by default (MaxResults' largest value in the model).
fn sso_paged(key: &str, items: Vec<Value>, input: &Value) -> Result<Value, WireError> {
    paged(key, items, input, 100, Service::SsoAdmin)
}

/// A page of an Organizations listing: 20 by default (MaxResults' largest value in the model).
fn org_paged(key: &str, items: Vec<Value>, input: &Value) -> Result<Value, WireError> {
    paged(key, items, input, 20, Service::Organizations)
}

fn state_name(s: OpState) -> &'static str {
    match s {
        OpState::InProgress => "IN_PROGRESS",
        OpState::Succeeded => "SUCCEEDED",
        OpState::Failed => "FAILED",
    }
}

/// `PrincipalType` of a validated request (the model's enum: USER or GROUP).
fn principal_type(input: &Value) -> PrincipalType {
    match member(input, "PrincipalType") {
        "USER" => PrincipalType::User,
        _ => PrincipalType::Group,
    }
}

/// An sso-admin request: through the instance's gate first (so it spends the quota whatever
/// it asks, as the rate audit counts it), then validated, then answered. The gate's decision
/// comes back for the request log (`None`: an operation the emulator does not serve).
pub(crate) async fn sso_admin(
    emu: &Emulator,
    operation: &str,
    input: &Value,
) -> (Option<Arrival>, Result<Value, WireError>) {
    let Some(api) = SSO_ADMIN_OPERATIONS
        .iter()
        .copied()
        .find(|o| *o == operation)
    else {
        return (None, Err(unknown("sso-admin", operation)));
    };
    let (arrival, outcome) = emu
        .sim()
        .admit(api, |adm| Ok(admitted(emu, api, input, adm)))
        .await;
    (
        Some(arrival),
        outcome.map_err(WireError::from).and_then(|answer| answer),
    )
}

fn admitted(
    emu: &Emulator,
    api: &'static str,
    input: &Value,
    adm: &mut Admitted<'_>,
) -> Result<Value, WireError> {
    emu.validate(Service::SsoAdmin, api, input)?;
    let arn = member(input, "InstanceArn");
    if api != "ListInstances" && arn != emu.sim().instance_info().instance_arn {
        return Err(WireError::new(
            400,
            "AccessDeniedException",
            format!("User is not authorized to access instance {arn}"),
        ));
    }
    sso_admin_body(emu, api, input, adm)
}

fn status_json(emu: &Emulator, d: &OpDetail) -> Value {
    let mut v = json!({
        "Status": state_name(d.state),
        "RequestId": d.request_id,
        "TargetId": d.key.account_id.as_str(),
        "TargetType": "AWS_ACCOUNT",
        "PermissionSetArn": d.key.permission_set_arn.as_str(),
        "PrincipalType": d.key.principal_type.as_str(),
        "PrincipalId": d.key.principal_id.as_str(),
        "CreatedDate": emu.timestamp(d.created_s),
    });
    if let Some(reason) = &d.failure_reason {
        v["FailureReason"] = json!(reason);
    }
    v
}

fn sso_admin_body(
    emu: &Emulator,
    api: &'static str,
    input: &Value,
    adm: &mut Admitted<'_>,
) -> Result<Value, WireError> {
    let sim = emu.sim();
    let org = sim.org();
    match api {
        "ListInstances" => {
            let i = sim.instance_info();
            let instances = vec![json!({
                "InstanceArn": i.instance_arn,
                "IdentityStoreId": i.identity_store_id,
                "OwnerAccountId": org.management_account_id.as_str(),
                "Name": "sim",
                "CreatedDate": emu.timestamp(0.0),
                "Status": "ACTIVE",
            })];
            paged("Instances", instances, input, 10, Service::SsoAdmin)
        }
        "ListPermissionSets" => {
            let arns = sim
                .permission_sets()
                .iter()
                .map(|p| json!(p.arn.as_str()))
                .collect();
            sso_paged("PermissionSets", arns, input)
        }
        "DescribePermissionSet" => {
            let arn = member(input, "PermissionSetArn");
            let ps = sim
                .permission_sets()
                .iter()
                .find(|p| p.arn.as_str() == arn)
                .ok_or_else(|| {
                    WireError::not_found(format!("Could not find PermissionSet with ID {arn}"))
                })?;
            Ok(json!({"PermissionSet": {
                "Name": ps.name,
                "PermissionSetArn": ps.arn.as_str(),
                "Description": format!("{} (simulated)", ps.name),
                "CreatedDate": emu.timestamp(0.0),
                "SessionDuration": "PT1H",
            }}))
        }
        "CreateAccountAssignment" | "DeleteAccountAssignment" => {
            let op = if api == "CreateAccountAssignment" {
                Operation::Assign
            } else {
                Operation::Revoke
            };
            let target = member(input, "TargetId");
            let ps = member(input, "PermissionSetArn");
            let kind = principal_type(input);
            let principal = member(input, "PrincipalId");
            let account_id = AccountId::parse(target)
                .map_err(|e| WireError::validation(format!("TargetId: {e}")))?;
            if !org.accounts.iter().any(|a| a.id == account_id) {
                return Err(WireError::validation(format!(
                    "The target account {target} is not a member of the organization"
                )));
            }
            let permission_set_arn = sim
                .permission_sets()
                .iter()
                .find(|p| p.arn.as_str() == ps)
                .map(|p| p.arn.clone())
                .ok_or_else(|| {
                    WireError::not_found(format!("Could not find PermissionSet with ID {ps}"))
                })?;
            let principal_id = sim
                .principals()
                .iter()
                .find(|p| p.kind == kind && p.id.as_str() == principal)
                .map(|p| p.id.clone())
                .ok_or_else(|| {
                    WireError::not_found(format!(
                        "Could not find {} with ID {principal}",
                        kind.as_str()
                    ))
                })?;
            let key = AssignmentKey {
                account_id,
                permission_set_arn,
                principal_type: kind,
                principal_id,
            };
            let started = adm.start_operation(&key, op).map_err(|e| match e {
                sso_fanout_core::FanoutError::NotFound { .. } => {
                    WireError::not_found(format!("Could not find an account assignment for {} {principal} with permission set {ps} in account {target}", kind.as_str()))
                }
                other => other.into(),
            })?;
            let detail = adm.operation(&started.request_id).ok_or_else(|| {
                WireError::new(500, "InternalServerException", "lost the request")
            })?;
            let field = if op == Operation::Assign {
                "AccountAssignmentCreationStatus"
            } else {
                "AccountAssignmentDeletionStatus"
            };
            Ok(json!({ field: status_json(emu, &detail) }))
        }
        "DescribeAccountAssignmentCreationStatus" | "DescribeAccountAssignmentDeletionStatus" => {
            let (op, id_field, out_field) = if api == "DescribeAccountAssignmentCreationStatus" {
                (
                    Operation::Assign,
                    "AccountAssignmentCreationRequestId",
                    "AccountAssignmentCreationStatus",
                )
            } else {
                (
                    Operation::Revoke,
                    "AccountAssignmentDeletionRequestId",
                    "AccountAssignmentDeletionStatus",
                )
            };
            let id = member(input, id_field);
            let detail = adm
                .operation(id)
                .filter(|d| d.operation == op)
                .ok_or_else(|| {
                    WireError::not_found(format!("Could not find request with ID {id}"))
                })?;
            Ok(json!({ out_field: status_json(emu, &detail) }))
        }
        "ListAccountAssignmentCreationStatus" | "ListAccountAssignmentDeletionStatus" => {
            let (op, out_field) = if api == "ListAccountAssignmentCreationStatus" {
                (Operation::Assign, "AccountAssignmentsCreationStatus")
            } else {
                (Operation::Revoke, "AccountAssignmentsDeletionStatus")
            };
            let wanted = input.pointer("/Filter/Status").and_then(Value::as_str);
            let items = adm
                .operations(op)
                .iter()
                .filter(|d| wanted.is_none_or(|w| w == state_name(d.state)))
                .map(|d| json!({"Status": state_name(d.state), "RequestId": d.request_id, "CreatedDate": emu.timestamp(d.created_s)}))
                .collect();
            sso_paged(out_field, items, input)
        }
        "ListAccountAssignments" => {
            let account = member(input, "AccountId");
            let ps = member(input, "PermissionSetArn");
            let items = adm
                .assignments()
                .iter()
                .filter(|(a, p, _)| a.as_str() == account && p.as_str() == ps)
                .map(|(a, p, who)| {
                    json!({"AccountId": a.as_str(), "PermissionSetArn": p.as_str(), "PrincipalType": kind_of(emu, who), "PrincipalId": who.as_str()})
                })
                .collect();
            sso_paged("AccountAssignments", items, input)
        }
        "ListAccountAssignmentsForPrincipal" => {
            let principal = member(input, "PrincipalId");
            let kind = principal_type(input);
            // Without a Filter: every account and every permission set of the principal.
            let only_account = input.pointer("/Filter/AccountId").and_then(Value::as_str);
            let items = adm
                .assignments()
                .iter()
                .filter(|(a, _, who)| {
                    who.as_str() == principal
                        && kind_of(emu, who) == kind.as_str()
                        && only_account.is_none_or(|o| o == a.as_str())
                })
                .map(|(a, p, who)| json!({"AccountId": a.as_str(), "PermissionSetArn": p.as_str(), "PrincipalId": who.as_str(), "PrincipalType": kind.as_str()}))
                .collect();
            sso_paged("AccountAssignments", items, input)
        }
        _ => Err(unknown("sso-admin", api)),
    }
}

fn kind_of(emu: &Emulator, id: &PrincipalId) -> &'static str {
    emu.sim()
        .principals()
        .iter()
        .find(|p| &p.id == id)
        .map(|p| p.kind.as_str())
        .unwrap_or("GROUP")
}
