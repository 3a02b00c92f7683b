//! `OrgDirectory` on AWS Organizations: the OU tree walked from the root (no `ListParents` per
//! account), tags per account with bounded concurrency.

use crate::errors::classify;
use crate::util::{answered, bounded};
use async_trait::async_trait;
use aws_sdk_organizations::types::{Account as OrgAccount, AccountState, AccountStatus as OrgAccountStatus, ParentType};
use aws_sdk_organizations::Client;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::model::{Account, AccountStatus, OrgIdentity, OrgSnapshot, OrgUnit};
use sso_fanout_core::clock::unix_now;
use sso_fanout_core::ports::OrgDirectory;
use sso_fanout_core::{FanoutError, Result};
use std::collections::BTreeMap;

/// Organizations calls at once (the OU walk and the tag listing). Organizations throttles
/// per account at a few requests per second; the SDK's retry absorbs the occasional throttle.
pub const ORG_CONCURRENCY: usize = 4;

#[derive(Clone, Debug)]
pub struct AwsOrgDirectory {
    client: Client,
    concurrency: usize,
}

impl AwsOrgDirectory {
    pub fn new(client: Client) -> AwsOrgDirectory {
        AwsOrgDirectory { client, concurrency: ORG_CONCURRENCY }
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> AwsOrgDirectory {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Child OUs and accounts of one parent, all pages of both.
    async fn children(client: Client, parent: String) -> Result<(Vec<(String, String)>, Vec<OrgAccount>)> {
        // (These paginators have no `items()`: flatten the pages.)
        let ou_pages: Vec<_> = client
            .list_organizational_units_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListOrganizationalUnitsForParent", e))?;
        let account_pages: Vec<_> = client
            .list_accounts_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListAccountsForParent", e))?;
        let ous = ou_pages
            .iter()
            .flat_map(|p| p.organizational_units())
            .filter_map(|ou| Some((ou.id()?.to_string(), ou.name().unwrap_or_default().to_string())))
            .collect();
        let accounts = account_pages.into_iter().flat_map(|p| p.accounts.unwrap_or_default()).collect();
        Ok((ous, accounts))
    }

    async fn tags(client: Client, account_id: String) -> Result<BTreeMap<String, String>> {
        let tags: Vec<_> = client
            .list_tags_for_resource()
            .resource_id(&account_id)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("ListTagsForResource", e))?;
        Ok(tags.into_iter().map(|t| (t.key, t.value)).collect())
    }
}

impl AwsOrgDirectory {
    /// One account now: DescribeAccount, its OU path by ListParents up to the root, its tags.
    async fn account(client: Client, id: AccountId) -> Result<Account> {
        let described = client.describe_account().account_id(id.as_str()).send().await.map_err(|e| classify("DescribeAccount", e))?;
        let a = described.account().ok_or_else(|| FanoutError::Internal("DescribeAccount answered without the account".into()))?;
        let mut path = Vec::new();
        let mut child = id.to_string();
        // An OU tree is at most 5 levels deep below the root; the bound only guards a bad answer.
        for _ in 0..8 {
            let parents = client.list_parents().child_id(&child).send().await.map_err(|e| classify("ListParents", e))?;
            let parent = parents.parents().first().ok_or_else(|| FanoutError::Internal(format!("ListParents answered no parent for {child}")))?;
            let parent_id = parent.id().map(str::to_string).ok_or_else(|| FanoutError::Internal("ListParents answered without an id".into()))?;
            if parent.r#type() == Some(&ParentType::Root) {
                break;
            }
            path.push(parent_id.clone());
            child = parent_id;
        }
        path.reverse();
        Ok(Account {
            id: id.clone(),
            name: a.name().unwrap_or_default().to_string(),
            email: a.email().unwrap_or_default().to_string(),
            status: account_status(a),
            ou_path: path,
            tags: Self::tags(client, id.to_string()).await?,
        })
    }
}

/// Account status from the newer `State` field when present, else the deprecated `Status`.
/// States the domain has no name for (PENDING_ACTIVATION, CLOSED, unknown) are not ACTIVE and
/// map to `Suspended`, so they are never targets.
pub fn account_status(account: &OrgAccount) -> AccountStatus {
    if let Some(state) = account.state() {
        return match state {
            AccountState::Active => AccountStatus::Active,
            AccountState::PendingClosure => AccountStatus::PendingClosure,
            _ => AccountStatus::Suspended,
        };
    }
    match account.status() {
        Some(OrgAccountStatus::Active) => AccountStatus::Active,
        Some(OrgAccountStatus::PendingClosure) => AccountStatus::PendingClosure,
        _ => AccountStatus::Suspended,
    }
}

#[async_trait]
impl OrgDirectory for AwsOrgDirectory {
    async fn identity(&self) -> Result<OrgIdentity> {
        let org = self.client.describe_organization().send().await.map_err(|e| classify("DescribeOrganization", e))?;
        let org = org
            .organization()
            .ok_or_else(|| FanoutError::Internal("DescribeOrganization answered without an organization".into()))?;
        match (org.id(), org.master_account_id()) {
            (Some(id), management @ Some(_)) if !id.is_empty() => Ok(OrgIdentity {
                organization_id: id.to_string(),
                management_account_id: answered("DescribeOrganization", management)?,
            }),
            _ => Err(FanoutError::Internal("DescribeOrganization answered without the organization id or management account".into())),
        }
    }

    async fn snapshot(&self) -> Result<OrgSnapshot> {
        let OrgIdentity { organization_id, management_account_id } = self.identity().await?;

        let root_pages: Vec<_> =
            self.client.list_roots().into_paginator().send().try_collect().await.map_err(|e| classify("ListRoots", e))?;
        let roots: Vec<String> = root_pages.iter().flat_map(|p| p.roots()).filter_map(|r| r.id()).map(str::to_string).collect();
        if roots.is_empty() {
            return Err(FanoutError::Internal("ListRoots answered without a root".into()));
        }

        // Breadth-first over the OU tree, one level at a time, `concurrency` parents at once.
        let mut level: Vec<(String, Vec<String>)> = roots.iter().map(|id| (id.clone(), vec![])).collect();
        let mut ous: Vec<OrgUnit> = Vec::new();
        let mut accounts: Vec<Account> = Vec::new();
        while !level.is_empty() {
            let client = self.client.clone();
            let listed =
                bounded(self.concurrency, level.iter().map(|(parent, _)| Self::children(client.clone(), parent.clone()))).await?;
            let mut next = Vec::new();
            for ((parent, path), (children, members)) in level.iter().zip(listed) {
                for a in members {
                    accounts.push(Account {
                        id: answered("ListAccountsForParent", a.id())?,
                        name: a.name().unwrap_or_default().to_string(),
                        email: a.email().unwrap_or_default().to_string(),
                        status: account_status(&a),
                        ou_path: path.clone(),
                        tags: BTreeMap::new(),
                    });
                }
                for (ou_id, name) in children {
                    let mut child = path.clone();
                    child.push(ou_id.clone());
                    ous.push(OrgUnit { id: ou_id.clone(), name, parent_id: parent.clone() });
                    next.push((ou_id, child));
                }
            }
            level = next;
        }

        let tags = bounded(self.concurrency, accounts.iter().map(|a| Self::tags(self.client.clone(), a.id.to_string()))).await?;
        for (account, tags) in accounts.iter_mut().zip(tags) {
            account.tags = tags;
        }
        accounts.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(OrgSnapshot { organization_id, management_account_id, roots, ous, accounts, fetched_at: unix_now() })
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>> {
        bounded(self.concurrency, ids.iter().map(|id| Self::account(self.client.clone(), id.clone()))).await
    }
}
