//! Identity Store (`AWSIdentityStore.<Op>`): the simulated groups and users, read only.

use super::{member, paged, unknown};
use crate::{Emulator, Service, WireError};
use serde_json::{json, Value};
use sso_fanout_core::model::PrincipalType;

/// The last segment of an identifier that may be given as an ARN (Identity Store accepts
/// `d-1234567890` or `arn:aws:identitystore::111122223333:identitystore/d-1234567890`, a group
/// id or `arn:aws:identitystore:::group/<id>`: its model's patterns).
fn without_arn(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// Whether `path` names the attribute `name`. The Identity Store API reference documents
/// `displayName` / `userName` (GetGroupIdRequest / GetUserIdRequest in the model) and
/// `DisplayName` / `UserName` (Filter.AttributePath); the Terraform AWS provider's own
/// `aws_identitystore_group` example (and public configurations built on it) send
/// `DisplayName` to GetGroupId, and AWS answers them. Compared without case: both spellings AWS
/// is known to take, and the other casings too (AWS's answer to those is not documented).
fn names_attribute(path: &str, name: &str) -> bool {
    path.eq_ignore_ascii_case(name)
}

pub(crate) fn identity_store(
    emu: &Emulator,
    operation: &str,
    input: &Value,
) -> Result<Value, WireError> {
    let (kind, id_field, name_field) = match operation {
        "ListGroups" | "DescribeGroup" | "GetGroupId" => {
            (PrincipalType::Group, "GroupId", "DisplayName")
        }
        "ListUsers" | "DescribeUser" | "GetUserId" => (PrincipalType::User, "UserId", "UserName"),
        _ => return Err(unknown("Identity Store", operation)),
    };
    emu.validate(Service::IdentityStore, operation, input)?;
    let sim = emu.sim();
    let store = sim.instance_info().identity_store_id;
    let given = member(input, "IdentityStoreId");
    if without_arn(given) != store {
        return Err(WireError::not_found(format!(
            "Identity store {given} not found"
        )));
    }
    let item = |p: &sso_fanout_core::model::Principal| {
        let name = p.name.clone().unwrap_or_default();
        let mut v = json!({ id_field: p.id.as_str(), name_field: name, "IdentityStoreId": store });
        if kind == PrincipalType::User {
            v["DisplayName"] = json!(name);
        }
        v
    };
    let of_kind = || sim.principals().iter().filter(move |p| p.kind == kind);
    let named = |name: &str| of_kind().find(|p| p.name.as_deref() == Some(name));
    let missing = |what: &str| WireError::not_found(format!("{} not found: {what}", kind.as_str()));
    match operation {
        "ListGroups" | "ListUsers" => {
            // The deprecated `Filters` form: at most one (the model's length), exact match.
            let filter = input.pointer("/Filters/0");
            let wanted = match filter {
                None => None,
                Some(f) if names_attribute(member(f, "AttributePath"), name_field) => {
                    Some(member(f, "AttributeValue"))
                }
                // AWS's answer is not documented: our words.
                Some(f) => {
                    return Err(WireError::validation(format!(
                        "Filtering by {} is not supported; use {name_field}",
                        member(f, "AttributePath")
                    )))
                }
            };
            let items = of_kind()
                .filter(|p| wanted.is_none_or(|w| p.name.as_deref() == Some(w)))
                .map(item)
                .collect();
            let key = if kind == PrincipalType::Group {
                "Groups"
            } else {
                "Users"
            };
            paged(key, items, input, 100, Service::IdentityStore)
        }
        "DescribeGroup" | "DescribeUser" => {
            let id = member(input, id_field);
            of_kind()
                .find(|p| p.id.as_str() == without_arn(id))
                .map(item)
                .ok_or_else(|| missing(id))
        }
        _ => {
            // GetGroupId / GetUserId: AlternateIdentifier is a union (the validator saw exactly
            // one member). The simulated principals have no external ids and no emails.
            let Some(unique) = input.pointer("/AlternateIdentifier/UniqueAttribute") else {
                return Err(missing("no principal has that external id"));
            };
            let path = member(unique, "AttributePath");
            let value = unique
                .get("AttributeValue")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let found = if names_attribute(path, name_field) {
                named(value)
            } else if kind == PrincipalType::User && names_attribute(path, "emails.value") {
                None
            } else {
                // The API reference: "the only valid path is displayName" (groups), "userName
                // and emails.value" (users). AWS's message is not documented: our words.
                let valid = if kind == PrincipalType::Group {
                    "displayName"
                } else {
                    "userName or emails.value"
                };
                return Err(WireError::validation(format!(
                    "Unsupported attribute path {path}: use {valid}"
                )));
            };
            let p = found.ok_or_else(|| missing(value))?;
            Ok(json!({ id_field: p.id.as_str(), "IdentityStoreId": store }))
        }
    }
}
