//! The operations, by service: request fields and answer shapes as in the botocore service
//! models (sso-admin 2020-07-20, organizations 2016-11-28, identitystore 2020-06-15) and the
//! Rust SDK's deserializers (timestamps as epoch seconds).

use crate::{Emulator, WireError};
use serde_json::{json, Value};
use sso_fanout_core::ids::{AccountId, PrincipalId};
use sso_fanout_core::model::{
    Account, AccountStatus, AssignmentKey, OpState, Operation, PrincipalType,
};
use sso_fanout_sim::{Admitted, OpDetail};

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

fn string<'a>(input: &'a Value, field: &str) -> Result<&'a str, WireError> {
    input
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WireError::validation(format!("1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null", lower_first(field))))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// One page of `items` per `MaxResults` / `NextToken` (the token is the offset).
fn page(
    items: Vec<Value>,
    input: &Value,
    default_max: usize,
    cap: usize,
    invalid: &str,
) -> Result<(Vec<Value>, Option<String>), WireError> {
    let max = match input.get("MaxResults").and_then(Value::as_u64) {
        Some(0) => {
            return Err(WireError::new(
                400,
                invalid,
                "MaxResults must be at least 1",
            ))
        }
        Some(n) => (n as usize).min(cap),
        None => default_max,
    };
    let start = match input.get("NextToken").and_then(Value::as_str) {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("sim-page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| WireError::new(400, invalid, "The NextToken is not valid"))?,
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| format!("sim-page-{end}"));
    Ok((items[start..end].to_vec(), next))
}

/// A page of an sso-admin listing: MaxResults 1-100, 100 by default (the service model).
fn sso_paged(key: &str, items: Vec<Value>, input: &Value) -> Result<Value, WireError> {
    paged(key, items, input, 100, 100, "ValidationException")
}

fn paged(
    key: &str,
    items: Vec<Value>,
    input: &Value,
    default_max: usize,
    cap: usize,
    invalid: &str,
) -> Result<Value, WireError> {
    let (items, next) = page(items, input, default_max, cap, invalid)?;
    let mut out = json!({ key: items });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

fn state_name(s: OpState) -> &'static str {
    match s {
        OpState::InProgress => "IN_PROGRESS",
        OpState::Succeeded => "SUCCEEDED",
        OpState::Failed => "FAILED",
    }
}

fn principal_type(text: &str) -> Result<PrincipalType, WireError> {
    match text {
        "GROUP" => Ok(PrincipalType::Group),
        "USER" => Ok(PrincipalType::User),
        other => Err(WireError::validation(format!(
            "1 validation error detected: Value '{other}' at 'principalType' failed to satisfy constraint: Member must satisfy enum value set: [USER, GROUP]"
        ))),
    }
}

pub(crate) async fn sso_admin(
    emu: &Emulator,
    operation: &str,
    input: &Value,
) -> Result<Value, WireError> {
    let api: &'static str = SSO_ADMIN_OPERATIONS
        .iter()
        .find(|o| **o == operation)
        .ok_or_else(|| unknown("sso-admin", operation))?;
    if api != "ListInstances" {
        let arn = string(input, "InstanceArn")?;
        if arn != emu.sim().instance_info().instance_arn {
            // Checked at the server, once the request was admitted (it spends the quota too).
            let arn = arn.to_string();
            return emu
                .sim()
                .admit(api, |_| Ok(()))
                .await
                .map_err(WireError::from)
                .and(Err(WireError::new(
                    400,
                    "AccessDeniedException",
                    format!("User is not authorized to access instance {arn}"),
                )));
        }
    }
    let outcome = emu
        .sim()
        .admit(api, |adm| Ok(sso_admin_body(emu, api, input, adm)))
        .await;
    match outcome {
        Ok(answer) => answer,
        Err(e) => Err(e.into()),
    }
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
            paged(
                "Instances",
                instances,
                input,
                10,
                100,
                "ValidationException",
            )
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
            let arn = string(input, "PermissionSetArn")?;
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
            let target = string(input, "TargetId")?;
            let target_type = string(input, "TargetType")?;
            if target_type != "AWS_ACCOUNT" {
                return Err(WireError::validation("TargetType must be AWS_ACCOUNT"));
            }
            let ps = string(input, "PermissionSetArn")?;
            let kind = principal_type(string(input, "PrincipalType")?)?;
            let principal = string(input, "PrincipalId")?;
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
            let id = string(input, id_field)?;
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
            if let Some(w) = wanted {
                if !matches!(w, "IN_PROGRESS" | "SUCCEEDED" | "FAILED") {
                    return Err(WireError::validation(format!("Value '{w}' at 'filter.status' failed to satisfy constraint: Member must satisfy enum value set: [IN_PROGRESS, FAILED, SUCCEEDED]")));
                }
            }
            let items = adm
                .operations(op)
                .iter()
                .filter(|d| wanted.is_none_or(|w| w == state_name(d.state)))
                .map(|d| json!({"Status": state_name(d.state), "RequestId": d.request_id, "CreatedDate": emu.timestamp(d.created_s)}))
                .collect();
            sso_paged(out_field, items, input)
        }
        "ListAccountAssignments" => {
            let account = string(input, "AccountId")?;
            let ps = string(input, "PermissionSetArn")?;
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
            let principal = string(input, "PrincipalId")?;
            let kind = principal_type(string(input, "PrincipalType")?)?;
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
            // MaxResults is 1-100 in the service model.
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

fn status_text(s: AccountStatus) -> &'static str {
    match s {
        AccountStatus::Active => "ACTIVE",
        AccountStatus::Suspended => "SUSPENDED",
        AccountStatus::PendingClosure => "PENDING_CLOSURE",
    }
}

fn account_json(emu: &Emulator, a: &Account) -> Value {
    let org = emu.sim().org();
    json!({
        "Id": a.id.as_str(),
        "Arn": format!("arn:aws:organizations::{}:account/{}/{}", org.management_account_id.as_str(), org.organization_id, a.id.as_str()),
        "Email": a.email,
        "Name": a.name,
        "Status": status_text(a.status),
        "State": status_text(a.status),
        "JoinedMethod": if a.id == org.management_account_id { "CREATED" } else { "INVITED" },
        "JoinedTimestamp": emu.timestamp(0.0) - 86_400.0,
    })
}

fn parent_of(emu: &Emulator, a: &Account) -> String {
    a.ou_path
        .last()
        .cloned()
        .unwrap_or_else(|| emu.sim().org().roots[0].clone())
}

pub(crate) fn organizations(
    emu: &Emulator,
    operation: &str,
    input: &Value,
) -> Result<Value, WireError> {
    let org = emu.sim().org();
    let mgmt = org.management_account_id.as_str();
    let invalid = "InvalidInputException";
    // `ParentId` of the input, a root or OU of the organization (else Organizations' error).
    let parent_id = |input: &Value| -> Result<String, WireError> {
        let id = string(input, "ParentId")?;
        if org.roots.iter().any(|r| r == id) || org.ous.iter().any(|o| o.id == id) {
            Ok(id.to_string())
        } else {
            Err(WireError::new(
                400,
                "ParentNotFoundException",
                format!("We can't find a root or OU with the ParentId that you specified: {id}"),
            ))
        }
    };
    match operation {
        "DescribeOrganization" => {
            let m = org
                .accounts
                .iter()
                .find(|a| a.id == org.management_account_id);
            Ok(json!({"Organization": {
                "Id": org.organization_id,
                "Arn": format!("arn:aws:organizations::{mgmt}:organization/{}", org.organization_id),
                "FeatureSet": "ALL",
                "MasterAccountArn": format!("arn:aws:organizations::{mgmt}:account/{}/{mgmt}", org.organization_id),
                "MasterAccountId": mgmt,
                "MasterAccountEmail": m.map(|a| a.email.as_str()).unwrap_or_default(),
                "AvailablePolicyTypes": [],
            }}))
        }
        "DescribeAccount" => {
            let id = string(input, "AccountId")?;
            let a = org
                .accounts
                .iter()
                .find(|a| a.id.as_str() == id)
                .ok_or_else(|| {
                    WireError::new(
                        400,
                        "AccountNotFoundException",
                        format!("You specified an account that doesn't exist: {id}"),
                    )
                })?;
            Ok(json!({"Account": account_json(emu, a)}))
        }
        "ListRoots" => {
            let roots = org
                .roots
                .iter()
                .map(|r| json!({"Id": r, "Arn": format!("arn:aws:organizations::{mgmt}:root/{}/{r}", org.organization_id), "Name": "Root", "PolicyTypes": []}))
                .collect();
            paged("Roots", roots, input, 20, 20, invalid)
        }
        "ListOrganizationalUnitsForParent" => {
            let parent = parent_id(input)?;
            let ous = org
                .ous
                .iter()
                .filter(|o| o.parent_id == parent)
                .map(|o| json!({"Id": o.id, "Arn": format!("arn:aws:organizations::{mgmt}:ou/{}/{}", org.organization_id, o.id), "Name": o.name}))
                .collect();
            paged("OrganizationalUnits", ous, input, 20, 20, invalid)
        }
        "ListAccounts" => {
            let accounts = org.accounts.iter().map(|a| account_json(emu, a)).collect();
            paged("Accounts", accounts, input, 20, 20, invalid)
        }
        "ListAccountsForParent" => {
            let parent = parent_id(input)?;
            let accounts = org
                .accounts
                .iter()
                .filter(|a| parent_of(emu, a) == parent)
                .map(|a| account_json(emu, a))
                .collect();
            paged("Accounts", accounts, input, 20, 20, invalid)
        }
        "ListParents" => {
            let child = string(input, "ChildId")?;
            let parent = if let Some(a) = org.accounts.iter().find(|a| a.id.as_str() == child) {
                parent_of(emu, a)
            } else if let Some(o) = org.ous.iter().find(|o| o.id == child) {
                o.parent_id.clone()
            } else {
                return Err(WireError::new(400, "ChildNotFoundException", format!("We can't find an organizational unit (OU) or AWS account with the ChildId that you specified: {child}")));
            };
            let kind = if org.roots.contains(&parent) {
                "ROOT"
            } else {
                "ORGANIZATIONAL_UNIT"
            };
            paged(
                "Parents",
                vec![json!({"Id": parent, "Type": kind})],
                input,
                20,
                20,
                invalid,
            )
        }
        "ListTagsForResource" => {
            let id = string(input, "ResourceId")?;
            let a = org
                .accounts
                .iter()
                .find(|a| a.id.as_str() == id)
                .ok_or_else(|| WireError::new(400, "TargetNotFoundException", format!("We can't find a root, OU, account, or policy with the TargetId that you specified: {id}")))?;
            let tags = a
                .tags
                .iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect();
            paged("Tags", tags, input, 20, 20, invalid)
        }
        _ => Err(unknown("Organizations", operation)),
    }
}

pub(crate) fn identity_store(
    emu: &Emulator,
    operation: &str,
    input: &Value,
) -> Result<Value, WireError> {
    let sim = emu.sim();
    let store = sim.instance_info().identity_store_id;
    let given = string(input, "IdentityStoreId")?;
    if given != store {
        return Err(WireError::not_found(format!(
            "Identity store {given} not found"
        )));
    }
    let (kind, id_field, name_field) = match operation {
        "ListGroups" | "DescribeGroup" | "GetGroupId" => {
            (PrincipalType::Group, "GroupId", "DisplayName")
        }
        "ListUsers" | "DescribeUser" | "GetUserId" => (PrincipalType::User, "UserId", "UserName"),
        _ => return Err(unknown("Identity Store", operation)),
    };
    let item = |p: &sso_fanout_core::model::Principal| {
        let name = p.name.clone().unwrap_or_default();
        let mut v = json!({ id_field: p.id.as_str(), name_field: name, "IdentityStoreId": store });
        if kind == PrincipalType::User {
            v["DisplayName"] = json!(name);
        }
        v
    };
    let of_kind = || sim.principals().iter().filter(move |p| p.kind == kind);
    let missing = |what: &str| {
        let mut e = WireError::not_found(format!(
            "{} not found: {what}",
            if kind == PrincipalType::Group {
                "GROUP"
            } else {
                "USER"
            }
        ));
        e.code = "ResourceNotFoundException".into();
        e
    };
    match operation {
        "ListGroups" | "ListUsers" => {
            // The deprecated `Filters` form ([{AttributePath, AttributeValue}]), exact match.
            let filters: Vec<(String, String)> = input
                .get("Filters")
                .and_then(Value::as_array)
                .map(|fs| {
                    fs.iter()
                        .filter_map(|f| {
                            Some((
                                f.get("AttributePath")?.as_str()?.to_string(),
                                f.get("AttributeValue")?.as_str()?.to_string(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            for (path, _) in &filters {
                if path != name_field {
                    return Err(WireError::validation(format!(
                        "Filtering by {path} is not supported; use {name_field}"
                    )));
                }
            }
            let items = of_kind()
                .filter(|p| {
                    filters
                        .iter()
                        .all(|(_, v)| p.name.as_deref() == Some(v.as_str()))
                })
                .map(item)
                .collect();
            paged(
                if kind == PrincipalType::Group {
                    "Groups"
                } else {
                    "Users"
                },
                items,
                input,
                100,
                100,
                "ValidationException",
            )
        }
        "DescribeGroup" | "DescribeUser" => {
            let id = string(input, id_field)?;
            of_kind()
                .find(|p| p.id.as_str() == id)
                .map(item)
                .ok_or_else(|| missing(id))
        }
        _ => {
            // GetGroupId / GetUserId by AlternateIdentifier.UniqueAttribute.
            let path = input
                .pointer("/AlternateIdentifier/UniqueAttribute/AttributePath")
                .and_then(Value::as_str);
            let value = input
                .pointer("/AlternateIdentifier/UniqueAttribute/AttributeValue")
                .and_then(Value::as_str);
            let (Some(path), Some(value)) = (path, value) else {
                return Err(WireError::validation("AlternateIdentifier.UniqueAttribute (AttributePath, AttributeValue) is required"));
            };
            if path != name_field {
                return Err(WireError::validation(format!(
                    "Unsupported attribute path {path}; use {name_field}"
                )));
            }
            let p = of_kind()
                .find(|p| p.name.as_deref() == Some(value))
                .ok_or_else(|| missing(value))?;
            Ok(json!({ id_field: p.id.as_str(), "IdentityStoreId": store }))
        }
    }
}
