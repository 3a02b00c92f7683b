//! Which accounts a request targets. The rule, exactly:
//!
//! 1. An account is *selected* when it matches every selector given among `filter`, `ous` and
//!    `tags` (an account matches `ous` when any listed OU is its parent or an ancestor), or
//!    when its id is listed in `accounts`.
//! 2. Then `exclude` removes accounts by id.
//! 3. Only ACTIVE accounts are targets. The management account is a target only when listed in
//!    `accounts` (a wildcard, OU or tag never selects it).
//!
//! `filter` is a case-sensitive wildcard on the account name (`*` any run, `?` one character),
//! or `tag:Key=Value` (the seed's form; the same as `tags: {Key: Value}`).
//!
//! The tests on one account (name, OU membership, tags: `Criteria`), the split into targets,
//! inactive and excluded accounts (`split`) and the OU id check (`check_ou`) are shared
//! with the selectors of a rules document (`rules`): both select by exactly the same code.

use crate::error::{FanoutError, Result};
use crate::ids::{AccountId, OuId};
use crate::model::{Account, AccountStatus, OrgSnapshot};
use crate::request::{NameFilter, Targets};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

/// Why an account was considered but is not a target (shown by `plan --verbose`).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection<'a> {
    pub targets: Vec<&'a Account>,
    /// Selected but not ACTIVE.
    pub inactive: Vec<&'a Account>,
    /// Ids listed in `accounts` that the organization does not have.
    pub unknown_ids: Vec<String>,
    /// Ids listed in `exclude` that the organization does not have: a typo there would leave
    /// the account meant in the run, so the planner refuses them too.
    pub unknown_excluded: Vec<String>,
    /// Selected accounts that `exclude` removed.
    pub excluded: usize,
}

/// The tests one selector makes of an account, other than by id: every test given must pass
/// (AND); within one test any listed value may match (OR); a test with nothing listed is not
/// made. The one definition of name, OU and tag matching, for `Targets` and rules' selectors.
pub(crate) struct Criteria<'s, N> {
    /// Wildcards on the account name (`NameFilter`s, or what borrows as one).
    pub names: &'s [N],
    /// OU or root ids (checked against the organization first: `check_ou`).
    pub ous: &'s [OuId],
    /// `true`: an OU selects every account below it; `false`: only its direct children.
    pub recursive: bool,
    /// Tags the account must all carry, with these values.
    pub tags: &'s BTreeMap<String, String>,
}

impl<N: Borrow<NameFilter>> Criteria<'_, N> {
    /// Whether no test is given (such criteria would select every account).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ous.is_empty() && self.tags.is_empty()
    }

    pub fn matches(&self, org: &OrgSnapshot, account: &Account) -> bool {
        (self.names.is_empty() || self.names.iter().any(|n| n.borrow().matches(account)))
            && (self.ous.is_empty() || self.ous.iter().any(|ou| in_ou(org, account, ou, self.recursive)))
            && self.tags.iter().all(|(k, v)| account.tags.get(k) == Some(v))
    }
}

/// Whether `account` is in `ou` (an OU or root id of `org`): anywhere below it when
/// `recursive`, else directly in it (for a root: directly under the root, empty `ou_path`).
fn in_ou(org: &OrgSnapshot, account: &Account, ou: &OuId, recursive: bool) -> bool {
    match (org.is_root(ou), recursive) {
        (true, true) => true,
        (true, false) => account.ou_path.is_empty(),
        (false, true) => account.ou_path.iter().any(|p| p == ou.as_str()),
        (false, false) => account.ou_path.last().is_some_and(|p| p == ou.as_str()),
    }
}

/// Checks that `ou` is a root or an OU of `org`: an id the organization does not have is
/// refused by name, never read as "everything" or "nothing". `field` names where it is written.
pub(crate) fn check_ou(org: &OrgSnapshot, ou: &OuId, field: impl Into<String>) -> Result<()> {
    if org.is_root(ou) || org.ou(ou).is_some() {
        return Ok(());
    }
    let kind = if ou.is_root() { "root" } else { "OU" };
    Err(FanoutError::invalid(
        field,
        ou,
        format!(
            "an OU or root id of organization {}: {kind} {ou} is not in it (root {}, {} OUs; `sso-fanout org` lists them)",
            org.organization_id,
            org.roots.join(", "),
            org.ous.len()
        ),
    ))
}

/// Checks that every OU id of `targets` is a root or an OU of `org` (see `check_ou`).
pub fn check_ous(org: &OrgSnapshot, targets: &Targets) -> Result<()> {
    targets.ous.iter().enumerate().try_for_each(|(i, ou)| check_ou(org, ou, format!("targets.ous[{i}]")))
}

/// The accounts of `org` that `chosen` selects, minus those `excluded` removes (counted), split
/// into ACTIVE targets and the rest, in the organization's order. `unknown_*` are left empty.
pub(crate) fn split<'a>(org: &'a OrgSnapshot, chosen: impl Fn(&Account) -> bool, excluded: impl Fn(&Account) -> bool) -> Selection<'a> {
    let mut selection = Selection { targets: vec![], inactive: vec![], unknown_ids: vec![], unknown_excluded: vec![], excluded: 0 };
    for account in org.accounts.iter().filter(|a| chosen(a)) {
        if excluded(account) {
            selection.excluded += 1;
        } else if account.status == AccountStatus::Active {
            selection.targets.push(account);
        } else {
            selection.inactive.push(account);
        }
    }
    selection
}

pub fn select<'a>(org: &'a OrgSnapshot, targets: &Targets) -> Result<Selection<'a>> {
    check_ous(org, targets)?;
    let listed: BTreeSet<&str> = targets.accounts.iter().map(AccountId::as_str).collect();
    let excluded: BTreeSet<&str> = targets.exclude.iter().map(AccountId::as_str).collect();
    let criteria = Criteria { names: targets.filter.as_slice(), ous: &targets.ous, recursive: true, tags: &targets.tags };
    let by_selectors = |a: &Account| !criteria.is_empty() && a.id != org.management_account_id && criteria.matches(org, a);

    let mut selection = split(org, |a| listed.contains(a.id.as_str()) || by_selectors(a), |a| excluded.contains(a.id.as_str()));
    let known: BTreeSet<&str> = org.accounts.iter().map(|a| a.id.as_str()).collect();
    selection.unknown_ids = listed.iter().filter(|id| !known.contains(*id)).map(|s| s.to_string()).collect();
    selection.unknown_excluded = excluded.iter().filter(|id| !known.contains(*id)).map(|s| s.to_string()).collect();
    Ok(selection)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::request::NameFilter;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn targets(v: serde_json::Value) -> Targets {
        serde_json::from_value(v).expect("valid targets")
    }

    /// A test account (also for `rules`' tests).
    pub(crate) fn acct(id: &str, name: &str, status: AccountStatus, ous: &[&str], tags: &[(&str, &str)]) -> Account {
        Account {
            id: id.parse().unwrap(),
            name: name.into(),
            email: format!("{name}@example.com"),
            status,
            ou_path: ous.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    fn org() -> OrgSnapshot {
        use AccountStatus::*;
        OrgSnapshot {
            organization_id: "o-test".into(),
            management_account_id: "000000000000".parse().unwrap(),
            roots: vec!["r-root".into()],
            ous: ["ou-prod-aaaaaaaa", "ou-prod-bbbbbbbb", "ou-dev0-cccccccc"]
                .iter()
                .map(|id| crate::model::OrgUnit { id: id.to_string(), name: id.to_string(), parent_id: "r-root".into() })
                .collect(),
            fetched_at: 0,
            accounts: vec![
                acct("000000000000", "management", Active, &[], &[]),
                acct("111111111111", "prod-payments", Active, &["ou-prod-aaaaaaaa"], &[("env", "prod")]),
                acct("222222222222", "prod-search", Active, &["ou-prod-aaaaaaaa", "ou-prod-bbbbbbbb"], &[("env", "prod"), ("team", "search")]),
                acct("333333333333", "dev-sandbox", Active, &["ou-dev0-cccccccc"], &[("env", "dev")]),
                acct("444444444444", "prod-legacy", Suspended, &["ou-prod-aaaaaaaa"], &[("env", "prod")]),
            ],
        }
    }

    fn ids(t: &Targets) -> Vec<String> {
        let o = org();
        select(&o, t).unwrap().targets.iter().map(|a| a.id.to_string()).collect()
    }

    #[test]
    fn wildcard_selects_active_non_management_accounts() {
        let t = targets(json!({"filter": "*"}));
        assert_eq!(ids(&t), ["111111111111", "222222222222", "333333333333"]);
        let t = targets(json!({"filter": "prod-*"}));
        assert_eq!(ids(&t), ["111111111111", "222222222222"]);
        let t = targets(json!({"filter": "*-sandbox"}));
        assert_eq!(ids(&t), ["333333333333"]);
    }

    #[test]
    fn suspended_accounts_are_reported_not_targeted() {
        let o = org();
        let s = select(&o, &targets(json!({"filter": "prod-*"}))).unwrap();
        assert_eq!(s.inactive.len(), 1);
        assert_eq!(s.inactive[0].id, "444444444444");
    }

    #[test]
    fn selectors_are_anded_and_accounts_are_ored() {
        let t = targets(json!({"filter": "prod-*", "tags": {"team": "search"}}));
        assert_eq!(ids(&t), ["222222222222"]);
        let t = targets(json!({"tags": {"team": "search"}, "accounts": ["333333333333"]}));
        assert_eq!(ids(&t), ["222222222222", "333333333333"]);
    }

    #[test]
    fn ou_selection_is_recursive() {
        let t = targets(json!({"ous": ["ou-prod-aaaaaaaa"]}));
        assert_eq!(ids(&t), ["111111111111", "222222222222"]);
        let t = targets(json!({"ous": ["ou-prod-bbbbbbbb"]}));
        assert_eq!(ids(&t), ["222222222222"]);
    }

    #[test]
    fn unknown_roots_and_ous_are_refused_by_name_never_widened() {
        let o = org();
        for bad in ["r-zzzz", "ou-zzzz-zzzzzzzz"] {
            let t = targets(json!({"ous": ["ou-dev0-cccccccc", bad]}));
            let e = select(&o, &t).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("targets.ous[1]") && text.contains(bad) && text.contains("o-test"), "{text}");
        }
        // The organization's own root selects every ACTIVE member account.
        let t = targets(json!({"ous": ["r-root"]}));
        assert_eq!(ids(&t), ["111111111111", "222222222222", "333333333333"]);
    }

    #[test]
    fn unknown_excluded_ids_are_reported() {
        let o = org();
        let t = targets(json!({"filter": "*", "exclude": ["111111111112"]}));
        assert_eq!(select(&o, &t).unwrap().unknown_excluded, ["111111111112"]);
    }

    #[test]
    fn tag_filter_form_equals_tags_map() {
        let a = targets(json!({"filter": "tag:env=prod"}));
        let b = targets(json!({"tags": {"env": "prod"}}));
        assert_eq!(ids(&a), ids(&b));
        assert!(NameFilter::parse("tag:=x").is_err());
    }

    #[test]
    fn management_account_only_when_listed() {
        let t = targets(json!({"filter": "*", "exclude": ["111111111111"]}));
        assert!(!ids(&t).contains(&"000000000000".to_string()));
        assert!(!ids(&t).contains(&"111111111111".to_string()));
        let t = targets(json!({"accounts": ["000000000000", "999999999999"]}));
        assert_eq!(ids(&t), ["000000000000"]);
        let o = org();
        assert_eq!(select(&o, &t).unwrap().unknown_ids, ["999999999999"]);
    }
}
