//! `Directory` and `AssignmentOps` on sso-admin and the Identity Store.
//!
//! Two sso-admin clients (see `AwsClients`): lookups made while planning use the SDK's standard
//! retry; the engine's writes and status calls use a client without SDK retries, because the
//! engine paces and retries them inside the 20 requests/s budget.

use crate::errors::{classify, classify_optional};
use crate::util::{answered, bounded};
use async_trait::async_trait;
use aws_sdk_identitystore::types::{AlternateIdentifier, UniqueAttribute};
use aws_sdk_ssoadmin::types::{
    AccountAssignmentOperationStatus, ListAccountAssignmentsFilter, OperationStatusFilter, PrincipalType as SsoPrincipalType,
    StatusValues, TargetType,
};
use aws_smithy_types::Document;
use sso_fanout_core::ids::{AccountId, PermissionSetArn, PrincipalId};
use sso_fanout_core::model::*;
use sso_fanout_core::request::{PermissionSetRef, PrincipalRef};
use sso_fanout_core::pacing::Pacer;
use sso_fanout_core::ports::{AssignmentOps, Directory, PrincipalAssignments, RequestGate};
use sso_fanout_core::{FanoutError, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{Mutex, OnceCell};

/// DescribePermissionSet / ListAccountAssignments calls at once while planning.
const LOOKUP_CONCURRENCY: usize = 4;
/// Requests per second for the per-account assignment listing fallback: half of the 20 req/s
/// sso-admin budget, leaving room for a run that may be executing at the same time.
const FALLBACK_LISTING_RATE: f64 = 10.0;

/// Which Identity Center instance to use; both optional (then `ListInstances` decides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityCenterConfig {
    pub instance_arn: Option<String>,
    pub identity_store_id: Option<String>,
}

pub struct AwsIdentityCenter {
    sso: aws_sdk_ssoadmin::Client,
    engine: aws_sdk_ssoadmin::Client,
    identity_store: aws_sdk_identitystore::Client,
    config: IdentityCenterConfig,
    instance: OnceCell<Instance>,
    permission_sets: Mutex<Option<PermissionSetIndex>>,
    /// What the sso-admin look-ups pass first (`Directory::gate_lookups`).
    lookup_gate: LookupGate,
}

/// The gate set by `Directory::gate_lookups`, if any: every sso-admin look-up request (not
/// `ListInstances`) passes it first. Cloned into the look-ups that run as tasks.
#[derive(Clone, Default)]
struct LookupGate(Arc<std::sync::Mutex<Option<Arc<dyn RequestGate>>>>);

impl LookupGate {
    fn set(&self, gate: Arc<dyn RequestGate>) {
        *self.0.lock().expect("lookup gate") = Some(gate);
    }

    /// Waits for one request's turn (at once without a gate).
    async fn admit(&self) {
        let gate = self.0.lock().expect("lookup gate").clone();
        if let Some(gate) = gate {
            gate.admit().await;
        }
    }
}

#[derive(Default)]
struct PermissionSetIndex {
    by_name: BTreeMap<String, Vec<PermissionSetArn>>,
    by_arn: BTreeMap<PermissionSetArn, String>,
}

impl PermissionSetIndex {
    fn insert(&mut self, arn: PermissionSetArn, name: String) {
        if self.by_arn.insert(arn.clone(), name.clone()).is_none() {
            self.by_name.entry(name).or_default().push(arn);
        }
    }
}

impl AwsIdentityCenter {
    /// `sso` for look-ups (standard retry), `engine` for writes and status calls (no SDK
    /// retries); see `AwsClients::sso_admin` / `sso_admin_engine`.
    pub fn new(
        sso: aws_sdk_ssoadmin::Client,
        engine: aws_sdk_ssoadmin::Client,
        identity_store: aws_sdk_identitystore::Client,
        config: IdentityCenterConfig,
    ) -> AwsIdentityCenter {
        AwsIdentityCenter {
            sso,
            engine,
            identity_store,
            config,
            instance: OnceCell::new(),
            permission_sets: Mutex::new(None),
            lookup_gate: LookupGate::default(),
        }
    }

    pub fn from_clients(clients: &crate::AwsClients, config: IdentityCenterConfig) -> AwsIdentityCenter {
        AwsIdentityCenter::new(
            clients.sso_admin.clone(),
            clients.sso_admin_engine.clone(),
            clients.identity_store.clone(),
            config,
        )
    }

    async fn load_instance(&self) -> Result<Instance> {
        if let (Some(arn), Some(store)) = (&self.config.instance_arn, &self.config.identity_store_id) {
            return Ok(Instance { instance_arn: arn.clone(), identity_store_id: store.clone(), region: self.region() });
        }
        let instances: Vec<_> = self
            .sso
            .list_instances()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListInstances", e))?;
        let found: Vec<Instance> = instances
            .iter()
            .filter_map(|i| {
                Some(Instance {
                    instance_arn: i.instance_arn()?.to_string(),
                    identity_store_id: i.identity_store_id()?.to_string(),
                    region: self.region(),
                })
            })
            .collect();
        let chosen = match &self.config.instance_arn {
            Some(arn) => found.into_iter().find(|i| &i.instance_arn == arn).ok_or_else(|| {
                FanoutError::Config(format!(
                    "Identity Center instance {arn} is not visible here (ListInstances lists {}); check the region and account",
                    instances.iter().filter_map(|i| i.instance_arn()).collect::<Vec<_>>().join(", ")
                ))
            })?,
            None => match found.len() {
                0 => {
                    return Err(FanoutError::Config(
                        "no IAM Identity Center instance in this account and region (ListInstances is empty); \
                         run in the management account or the delegated administrator account, in the instance's region"
                            .into(),
                    ))
                }
                1 => found.into_iter().next().expect("one"),
                _ => {
                    return Err(FanoutError::Config(format!(
                        "{} Identity Center instances: {}; configure the instance ARN",
                        found.len(),
                        found.iter().map(|i| i.instance_arn.as_str()).collect::<Vec<_>>().join(", ")
                    )))
                }
            },
        };
        Ok(Instance {
            identity_store_id: self.config.identity_store_id.clone().unwrap_or(chosen.identity_store_id),
            instance_arn: chosen.instance_arn,
            region: chosen.region,
        })
    }

    /// The region the sso-admin client calls (part of the run's scope).
    fn region(&self) -> String {
        self.sso.config().region().map(|r| r.to_string()).unwrap_or_default()
    }

    async fn instance_arn(&self) -> Result<String> {
        Ok(self.instance().await?.instance_arn)
    }

    /// Every permission set of the instance: ListPermissionSets + DescribePermissionSet each.
    async fn load_permission_sets(&self) -> Result<PermissionSetIndex> {
        let instance_arn = self.instance_arn().await?;
        let mut pages = self.sso.list_permission_sets().instance_arn(&instance_arn).into_paginator().send();
        let mut arns: Vec<PermissionSetArn> = Vec::new();
        let mut more = true;
        while more {
            self.lookup_gate.admit().await;
            let Some(page) = pages.next().await else { break };
            let page = page.map_err(|e| classify("ListPermissionSets", e))?;
            more = page.next_token().is_some_and(|t| !t.is_empty());
            for arn in page.permission_sets() {
                arns.push(answered("ListPermissionSets", Some(arn.as_str()))?);
            }
        }
        let described = bounded(
            LOOKUP_CONCURRENCY,
            arns.into_iter().map(|arn| {
                let (client, instance_arn, gate) = (self.sso.clone(), instance_arn.clone(), self.lookup_gate.clone());
                async move {
                    gate.admit().await;
                    describe_permission_set(&client, &instance_arn, &arn).await
                }
            }),
        )
        .await?;
        let mut index = PermissionSetIndex::default();
        for ps in described {
            index.insert(ps.arn, ps.name);
        }
        Ok(index)
    }

    async fn by_name(&self, name: &str) -> Result<PermissionSet> {
        let mut guard = self.permission_sets.lock().await;
        let mut fresh = false;
        if guard.is_none() {
            *guard = Some(self.load_permission_sets().await?);
            fresh = true;
        }
        loop {
            let index = guard.as_ref().expect("loaded");
            match index.by_name.get(name).map(Vec::as_slice) {
                Some([arn]) => return Ok(PermissionSet { arn: arn.clone(), name: name.to_string() }),
                Some(arns) if arns.len() > 1 => {
                    return Err(FanoutError::Ambiguous {
                        what: "permission set".into(),
                        name: name.to_string(),
                        candidates: arns.iter().map(PermissionSetArn::as_str).collect::<Vec<_>>().join(", "),
                    })
                }
                _ if !fresh => {
                    // Created since the cache was filled? Read the list again, once.
                    *guard = Some(self.load_permission_sets().await?);
                    fresh = true;
                }
                _ => {
                    let known: Vec<&str> = index.by_name.keys().map(String::as_str).collect();
                    let hint = if known.is_empty() {
                        "the instance has no permission sets".to_string()
                    } else {
                        let shown = known.iter().take(30).copied().collect::<Vec<_>>().join(", ");
                        let more = if known.len() > 30 { format!(" and {} more", known.len() - 30) } else { String::new() };
                        format!("names are case-sensitive; known permission sets: {shown}{more}")
                    };
                    return Err(FanoutError::not_found("permission set", name, hint));
                }
            }
        }
    }

    async fn by_arn(&self, arn: &PermissionSetArn) -> Result<PermissionSet> {
        if let Some(index) = self.permission_sets.lock().await.as_ref() {
            if let Some(name) = index.by_arn.get(arn) {
                return Ok(PermissionSet { arn: arn.clone(), name: name.clone() });
            }
        }
        let instance_arn = self.instance_arn().await?;
        // arn:aws:sso:::permissionSet/ssoins-X/ps-Y belongs to instance arn:aws:sso:::instance/ssoins-X.
        let ps_instance = arn.instance_id();
        if !instance_arn.ends_with(&format!("/{ps_instance}")) {
            return Err(FanoutError::not_found(
                "permission set",
                arn.as_str(),
                format!("it belongs to instance {ps_instance}, but this run uses {instance_arn}"),
            ));
        }
        self.lookup_gate.admit().await;
        let ps = describe_permission_set(&self.sso, &instance_arn, arn).await.map_err(|e| match e {
            FanoutError::NotFound { .. } | FanoutError::Validation { .. } => {
                FanoutError::not_found("permission set", arn.as_str(), format!("no such permission set in {instance_arn}"))
            }
            other => other,
        })?;
        if let Some(index) = self.permission_sets.lock().await.as_mut() {
            index.insert(ps.arn.clone(), ps.name.clone());
        }
        Ok(ps)
    }

    async fn principal_by_name(&self, kind: PrincipalType, name: &str, store: &str) -> Result<Principal> {
        let (path, what, api) = match kind {
            PrincipalType::Group => ("DisplayName", "group", "GetGroupId"),
            PrincipalType::User => ("UserName", "user", "GetUserId"),
        };
        let alt = AlternateIdentifier::UniqueAttribute(
            UniqueAttribute::builder()
                .attribute_path(path)
                .attribute_value(Document::String(name.to_string()))
                .build()
                .map_err(|e| FanoutError::Internal(format!("{api}: {e}")))?,
        );
        let attribute = if kind == PrincipalType::Group { "display name" } else { "user name" };
        let found = match kind {
            PrincipalType::Group => self
                .identity_store
                .get_group_id()
                .identity_store_id(store)
                .alternate_identifier(alt)
                .send()
                .await
                .map(|o| o.group_id)
                .map_err(|e| classify(api, e)),
            PrincipalType::User => self
                .identity_store
                .get_user_id()
                .identity_store_id(store)
                .alternate_identifier(alt)
                .send()
                .await
                .map(|o| o.user_id)
                .map_err(|e| classify(api, e)),
        };
        let id = match found {
            Ok(id) => id,
            Err(FanoutError::NotFound { .. }) => {
                let known = self.known_principals(kind, store).await;
                return Err(FanoutError::not_found(
                    what,
                    name,
                    format!("no {what} with {attribute} `{name}` in identity store {store}; names are case-sensitive; {known}"),
                ));
            }
            Err(e) => return Err(e),
        };
        Ok(Principal { kind, id: answered(api, Some(&id))?, name: Some(name.to_string()) })
    }

    /// "known groups: A, B, C and more" from the first page of the Identity Store's listing,
    /// for the message that reports an unknown name.
    async fn known_principals(&self, kind: PrincipalType, store: &str) -> String {
        const SHOWN: usize = 30;
        let (what, names): (&str, Result<Vec<String>>) = match kind {
            PrincipalType::Group => (
                "groups",
                self.identity_store
                    .list_groups()
                    .identity_store_id(store)
                    .max_results(100)
                    .send()
                    .await
                    .map(|o| o.groups.into_iter().filter_map(|g| g.display_name).collect())
                    .map_err(|e| classify("ListGroups", e)),
            ),
            PrincipalType::User => (
                "users",
                self.identity_store
                    .list_users()
                    .identity_store_id(store)
                    .max_results(100)
                    .send()
                    .await
                    .map(|o| o.users.into_iter().filter_map(|u| u.user_name).collect())
                    .map_err(|e| classify("ListUsers", e)),
            ),
        };
        match names {
            Ok(mut names) if !names.is_empty() => {
                names.sort();
                let more = if names.len() > SHOWN { format!(" and {} more", names.len() - SHOWN) } else { String::new() };
                names.truncate(SHOWN);
                format!("known {what}: {}{more}", names.join(", "))
            }
            Ok(_) => format!("the identity store has no {what}"),
            Err(e) => format!("(listing the {what} failed too: {e})"),
        }
    }

    async fn principal_by_id(&self, kind: PrincipalType, id: &PrincipalId, store: &str) -> Result<Principal> {
        let what = if kind == PrincipalType::Group { "group" } else { "user" };
        let not_found =
            || FanoutError::not_found(format!("{what} id"), id.as_str(), format!("no {what} with this id in identity store {store}"));
        let name = match kind {
            PrincipalType::Group => self
                .identity_store
                .describe_group()
                .identity_store_id(store)
                .group_id(id)
                .send()
                .await
                .map(|o| o.display_name)
                .map_err(|e| classify("DescribeGroup", e)),
            PrincipalType::User => self
                .identity_store
                .describe_user()
                .identity_store_id(store)
                .user_id(id)
                .send()
                .await
                .map(|o| o.user_name)
                .map_err(|e| classify("DescribeUser", e)),
        }
        .map_err(|e| if matches!(e, FanoutError::NotFound { .. }) { not_found() } else { e })?;
        Ok(Principal { kind, id: id.clone(), name })
    }

    /// One principal-wide ListAccountAssignmentsForPrincipal, every page (each through the
    /// lookup gate): every (account, permission set) `principal` holds, in `only_account` if
    /// given (the service filters), and the number of pages.
    async fn list_for_principal(
        &self,
        instance_arn: &str,
        principal: &Principal,
        only_account: Option<&AccountId>,
    ) -> Result<PrincipalAssignments> {
        const API: &str = "ListAccountAssignmentsForPrincipal";
        let request = self
            .sso
            .list_account_assignments_for_principal()
            .instance_arn(instance_arn)
            .principal_id(&principal.id)
            .principal_type(sso_principal_type(principal.kind))
            .set_filter(only_account.map(|a| ListAccountAssignmentsFilter::builder().account_id(a).build()));
        let mut pages = request.into_paginator().send();
        let mut found = PrincipalAssignments::default();
        // The paginator sends the next request only when asked for the next page, and only
        // after a page with a non-empty NextToken: that request passes the gate first.
        let mut more = true;
        while more {
            self.lookup_gate.admit().await;
            let Some(page) = pages.next().await else { break };
            let page = page.map_err(|e| classify_optional(API, e))?;
            found.pages += 1;
            more = page.next_token().is_some_and(|t| !t.is_empty());
            // "Accounts the principal has access to": for a user that may include access it holds
            // through a group, listed under the group's id. Only the principal's own count.
            let own = |a: &&aws_sdk_ssoadmin::types::AccountAssignmentForPrincipal| {
                a.principal_id().is_none_or(|id| id == principal.id.as_str())
                    && a.principal_type().is_none_or(|t| *t == sso_principal_type(principal.kind))
            };
            for a in page.account_assignments().iter().filter(own) {
                let account: AccountId = answered(API, a.account_id())?;
                let permission_set: PermissionSetArn = answered(API, a.permission_set_arn())?;
                found.assignments.insert((account, permission_set));
            }
        }
        Ok(found)
    }

    /// One principal-wide listing (all pages), filtered to the permission set client-side.
    async fn assigned_for_principal(
        &self,
        instance_arn: &str,
        principal: &Principal,
        permission_set_arn: &PermissionSetArn,
        candidates: &[AccountId],
    ) -> Result<BTreeSet<AccountId>> {
        // One target account: let the service filter.
        let only_account = match candidates {
            [only] => Some(only),
            _ => None,
        };
        let listed = self.list_for_principal(instance_arn, principal, only_account).await?;
        Ok(listed.assignments.into_iter().filter(|(_, ps)| ps == permission_set_arn).map(|(account, _)| account).collect())
    }

    /// Per-account listing of the candidates (all pages each), paced within the budget.
    async fn assigned_per_account(
        &self,
        instance_arn: &str,
        principal: &Principal,
        permission_set_arn: &PermissionSetArn,
        candidates: &[AccountId],
    ) -> Result<BTreeSet<AccountId>> {
        let pacer = Arc::new(Pacer::new(FALLBACK_LISTING_RATE));
        let found = bounded(
            LOOKUP_CONCURRENCY,
            candidates.iter().map(|account| {
                let (client, pacer, gate, account) = (self.sso.clone(), pacer.clone(), self.lookup_gate.clone(), account.clone());
                let (instance_arn, ps, principal) = (instance_arn.to_string(), permission_set_arn.to_string(), principal.clone());
                async move {
                    let mut next: Option<String> = None;
                    loop {
                        pacer.acquire().await;
                        gate.admit().await;
                        let page = client
                            .list_account_assignments()
                            .instance_arn(&instance_arn)
                            .account_id(&account)
                            .permission_set_arn(&ps)
                            .set_next_token(next.take())
                            .send()
                            .await
                            .map_err(|e| classify("ListAccountAssignments", e))?;
                        let holds = page.account_assignments().iter().any(|a| {
                            a.principal_id() == Some(principal.id.as_str())
                                && a.principal_type() == Some(&sso_principal_type(principal.kind))
                        });
                        if holds {
                            return Ok(Some(account));
                        }
                        match page.next_token() {
                            Some(t) if !t.is_empty() => next = Some(t.to_string()),
                            _ => return Ok(None),
                        }
                    }
                }
            }),
        )
        .await?;
        Ok(found.into_iter().flatten().collect())
    }
}

async fn describe_permission_set(client: &aws_sdk_ssoadmin::Client, instance_arn: &str, arn: &PermissionSetArn) -> Result<PermissionSet> {
    let out = client
        .describe_permission_set()
        .instance_arn(instance_arn)
        .permission_set_arn(arn)
        .send()
        .await
        .map_err(|e| classify("DescribePermissionSet", e))?;
    let name = out
        .permission_set()
        .and_then(|p| p.name())
        .ok_or_else(|| FanoutError::Internal(format!("DescribePermissionSet {arn} answered without a name")))?;
    Ok(PermissionSet { arn: arn.clone(), name: name.to_string() })
}

fn sso_principal_type(kind: PrincipalType) -> SsoPrincipalType {
    match kind {
        PrincipalType::Group => SsoPrincipalType::Group,
        PrincipalType::User => SsoPrincipalType::User,
    }
}

/// The domain's view of an `AccountAssignmentOperationStatus`.
pub fn op_status(api: &str, status: Option<&AccountAssignmentOperationStatus>) -> Result<OpStatus> {
    let s = status.ok_or_else(|| FanoutError::Internal(format!("{api} answered without a status")))?;
    let request_id = s.request_id().ok_or_else(|| FanoutError::Internal(format!("{api} answered without a RequestId")))?;
    let state = match s.status() {
        Some(StatusValues::InProgress) => OpState::InProgress,
        Some(StatusValues::Succeeded) => OpState::Succeeded,
        Some(StatusValues::Failed) => OpState::Failed,
        other => return Err(FanoutError::Internal(format!("{api}: unknown status {other:?} for request {request_id}"))),
    };
    // A describe names the assignment (create and delete answers do too): how a request id
    // seen in a status listing is told apart. Absent or malformed parts leave it unnamed.
    let target = (|| {
        Some(AssignmentKey {
            account_id: s.target_id()?.parse().ok()?,
            permission_set_arn: s.permission_set_arn()?.parse().ok()?,
            principal_type: match s.principal_type()? {
                SsoPrincipalType::Group => PrincipalType::Group,
                SsoPrincipalType::User => PrincipalType::User,
                _ => return None,
            },
            principal_id: s.principal_id()?.parse().ok()?,
        })
    })();
    Ok(OpStatus { target, ..OpStatus::of(request_id, state, s.failure_reason().map(str::to_string)) })
}

#[async_trait]
impl Directory for AwsIdentityCenter {
    fn gate_lookups(&self, gate: Arc<dyn RequestGate>) {
        self.lookup_gate.set(gate);
    }

    async fn instance(&self) -> Result<Instance> {
        self.instance.get_or_try_init(|| self.load_instance()).await.cloned()
    }

    async fn resolve_permission_set(&self, permission_set: &PermissionSetRef) -> Result<PermissionSet> {
        match permission_set {
            PermissionSetRef::Arn(arn) => self.by_arn(arn).await,
            PermissionSetRef::Name(name) => self.by_name(name).await,
        }
    }

    async fn resolve_principal(&self, principal: &PrincipalRef) -> Result<Principal> {
        let store = self.instance().await?.identity_store_id;
        match principal {
            PrincipalRef::Id { kind, id } => self.principal_by_id(*kind, id, &store).await,
            PrincipalRef::Name { kind, name } => self.principal_by_name(*kind, name.trim(), &store).await,
        }
    }

    async fn assigned_accounts(
        &self,
        principal: &Principal,
        permission_set_arn: &PermissionSetArn,
        candidates: &[AccountId],
    ) -> Result<BTreeSet<AccountId>> {
        let instance_arn = self.instance_arn().await?;
        match self.assigned_for_principal(&instance_arn, principal, permission_set_arn, candidates).await {
            Ok(found) => Ok(found),
            Err(e @ (FanoutError::Unsupported { .. } | FanoutError::AccessDenied { .. } | FanoutError::Validation { .. })) => {
                tracing::info!(error = %e, accounts = candidates.len(),
                    "principal-wide assignment listing unavailable; listing each target account");
                self.assigned_per_account(&instance_arn, principal, permission_set_arn, candidates).await
            }
            Err(e) => Err(e),
        }
    }

    async fn principal_assignments(&self, principal: &Principal) -> Result<PrincipalAssignments> {
        let instance_arn = self.instance_arn().await?;
        self.list_for_principal(&instance_arn, principal, None).await.map_err(|e| match e {
            FanoutError::Unsupported { api, message } => FanoutError::Unsupported {
                message: format!(
                    "{message}; the principal-wide assignment listing is unavailable here, and listing every \
                     assignment of a principal has no per-account fallback"
                ),
                api,
            },
            other => other,
        })
    }
}

#[async_trait]
impl AssignmentOps for AwsIdentityCenter {
    async fn create_assignment(&self, key: &AssignmentKey) -> Result<OpStatus> {
        let out = self
            .engine
            .create_account_assignment()
            .instance_arn(self.instance_arn().await?)
            .target_id(&key.account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&key.permission_set_arn)
            .principal_type(sso_principal_type(key.principal_type))
            .principal_id(&key.principal_id)
            .send()
            .await
            .map_err(|e| classify("CreateAccountAssignment", e))?;
        op_status("CreateAccountAssignment", out.account_assignment_creation_status())
    }

    async fn delete_assignment(&self, key: &AssignmentKey) -> Result<OpStatus> {
        let out = self
            .engine
            .delete_account_assignment()
            .instance_arn(self.instance_arn().await?)
            .target_id(&key.account_id)
            .target_type(TargetType::AwsAccount)
            .permission_set_arn(&key.permission_set_arn)
            .principal_type(sso_principal_type(key.principal_type))
            .principal_id(&key.principal_id)
            .send()
            .await
            .map_err(|e| match classify("DeleteAccountAssignment", e) {
                FanoutError::NotFound { .. } => FanoutError::not_found(
                    "account assignment",
                    format!(
                        "{} {} / {} in {}",
                        key.principal_type.as_str(),
                        key.principal_id,
                        key.permission_set_arn,
                        key.account_id
                    ),
                    "already absent",
                ),
                other => other,
            })?;
        op_status("DeleteAccountAssignment", out.account_assignment_deletion_status())
    }

    async fn operation_status(&self, op: Operation, request_id: &str) -> Result<OpStatus> {
        let instance_arn = self.instance_arn().await?;
        let not_found = |e: FanoutError| match e {
            FanoutError::NotFound { .. } => FanoutError::not_found(
                format!("{} request", op.as_str()),
                request_id,
                "Identity Center keeps operation statuses for a limited time",
            ),
            other => other,
        };
        match op {
            Operation::Assign => {
                let api = "DescribeAccountAssignmentCreationStatus";
                let out = self
                    .engine
                    .describe_account_assignment_creation_status()
                    .instance_arn(instance_arn)
                    .account_assignment_creation_request_id(request_id)
                    .send()
                    .await
                    .map_err(|e| not_found(classify(api, e)))?;
                op_status(api, out.account_assignment_creation_status())
            }
            Operation::Revoke => {
                let api = "DescribeAccountAssignmentDeletionStatus";
                let out = self
                    .engine
                    .describe_account_assignment_deletion_status()
                    .instance_arn(instance_arn)
                    .account_assignment_deletion_request_id(request_id)
                    .send()
                    .await
                    .map_err(|e| not_found(classify(api, e)))?;
                op_status(api, out.account_assignment_deletion_status())
            }
        }
    }

    async fn in_progress_operations(&self, op: Operation) -> Result<BTreeSet<String>> {
        let instance_arn = self.instance_arn().await?;
        let filter = OperationStatusFilter::builder().status(StatusValues::InProgress).build();
        let items: Vec<_> = match op {
            Operation::Assign => self
                .engine
                .list_account_assignment_creation_status()
                .instance_arn(instance_arn)
                .filter(filter)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify_optional("ListAccountAssignmentCreationStatus", e))?,
            Operation::Revoke => self
                .engine
                .list_account_assignment_deletion_status()
                .instance_arn(instance_arn)
                .filter(filter)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify_optional("ListAccountAssignmentDeletionStatus", e))?,
        };
        // The filter asks for IN_PROGRESS only; an endpoint that ignores it must not make a
        // finished operation look pending.
        Ok(items
            .into_iter()
            .filter(|s| matches!(s.status(), Some(StatusValues::InProgress)))
            .filter_map(|s| s.request_id)
            .collect())
    }
}
