//! Organizations (`AWSOrganizationsV20161128.<Op>`): the simulated organization, read only.

use super::{member, org_paged, unknown};
use crate::{Emulator, Service, WireError};
use serde_json::{json, Value};
use sso_fanout_core::model::{Account, AccountStatus};

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
    emu.validate(Service::Organizations, operation, input)?;
    let org = emu.sim().org();
    let mgmt = org.management_account_id.as_str();
    // `ParentId` of the input, a root or OU of the organization (else Organizations' error).
    let parent_id = |input: &Value| -> Result<String, WireError> {
        let id = member(input, "ParentId");
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
            let id = member(input, "AccountId");
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
            org_paged("Roots", roots, input)
        }
        "ListOrganizationalUnitsForParent" => {
            let parent = parent_id(input)?;
            let ous = org
                .ous
                .iter()
                .filter(|o| o.parent_id == parent)
                .map(|o| json!({"Id": o.id, "Arn": format!("arn:aws:organizations::{mgmt}:ou/{}/{}", org.organization_id, o.id), "Name": o.name}))
                .collect();
            org_paged("OrganizationalUnits", ous, input)
        }
        "ListAccounts" => {
            let accounts = org.accounts.iter().map(|a| account_json(emu, a)).collect();
            org_paged("Accounts", accounts, input)
        }
        "ListAccountsForParent" => {
            let parent = parent_id(input)?;
            let accounts = org
                .accounts
                .iter()
                .filter(|a| parent_of(emu, a) == parent)
                .map(|a| account_json(emu, a))
                .collect();
            org_paged("Accounts", accounts, input)
        }
        "ListParents" => {
            let child = member(input, "ChildId");
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
            org_paged("Parents", vec![json!({"Id": parent, "Type": kind})], input)
        }
        "ListTagsForResource" => {
            let id = member(input, "ResourceId");
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
            org_paged("Tags", tags, input)
        }
        _ => Err(unknown("Organizations", operation)),
    }
}
