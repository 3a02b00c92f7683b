//! The desired-state rules document: which permission sets which principals hold in which
//! accounts, written in YAML or JSON (the same camelCase keys), and what each rule selects in
//! an organization. Pure: parsing and selection only; `desired` plans and prunes from it.
//!
//! ```yaml
//! version: 1                      # required, must be 1
//! rules:                          # required, non-empty
//!   - id: prod-admins             # unique in the document; 1-64 of [A-Za-z0-9._-]
//!     permissionSet: AdministratorAccess        # a name or an ARN
//!     principals:                 # non-empty; each {type: GROUP|USER, name} or {type, id}
//!       - {type: GROUP, name: PlatformAdmins}
//!     targets:                    # non-empty list of selectors, ORed
//!       - ous: [ou-sim0-prod0000] # OU or root ids; below them (`recursive: false`: directly in them)
//!         tags: {env: prod}       # the account carries every tag listed
//!       - names: ["shared-*"]     # wildcards (`*`, `?`) on the whole account name, case-sensitive
//!       - accounts: ["123456789012"]
//!       - root: true              # every account (`root: false` is refused: leave it out)
//!     exclude:                    # optional selectors: what any of them selects is removed
//!       - accounts: ["200000000007"]
//! managed:                        # optional: the scope a prune may delete in
//!   permissionSets: [AdministratorAccess]
//!   principals: [{type: GROUP, name: PlatformAdmins}]
//! protectedAccounts: ["200000000001"]           # optional: never pruned
//! ```
//!
//! A selector's keys are ANDed (`{ous: [X], tags: {env: prod}}`: below X *and* tagged
//! env=prod), the values listed under one key are ORed (`accounts: [A, B]`: A or B). A
//! selector has at least one of `accounts`, `names`, `ous`, `tags`, `root`; `recursive` only
//! with `ous`. Selection follows `targeting` (the same code): only ACTIVE accounts are targets
//! (a selected inactive account is reported in [`RuleSelection::inactive`]); the management
//! account is selected only by a selector whose `accounts` lists its id (a wildcard, OU, tag or
//! `root` never selects it, and likewise never excludes it).
//!
//! Refused when parsing, before any organization is read: unknown keys, wrong types, a
//! missing or other `version`, an empty list or map anywhere (leave an optional key out
//! instead), a selector without keys, `recursive` without `ous`, `root: false`, an empty tag
//! key, a `tag:` test among `names` (use `tags`), duplicate rule ids, a principal listed twice
//! in one rule, and account ids written as numbers: quote them, since YAML (and JSON) read
//! unquoted digits as a number, which loses leading zeros. Refused by [`select_rules`]: OU,
//! root and account ids the organization does not have (in `targets`, `exclude` and
//! `protectedAccounts`) and a rule that leaves no ACTIVE account.
//!
//! Every error is `FanoutError::InvalidRequest` whose `field` is the path of the offending
//! value inside the document, with the rule's id after its index wherever the rule has a
//! valid id: `rules[2] (prod-admins).targets[0].ous[1]`, `protectedAccounts[0]`, `version`
//! (see [`RulesDocument::rule_field`]); the whole document is `rules document`. Decoding
//! errors keep the decoder's message, which for text gives the line and column.

use crate::error::{printable, FanoutError, Result};
use crate::ids::{AccountId, OuId};
use crate::model::{Account, OrgSnapshot};
use crate::request::{NameFilter, PermissionSetRef, PrincipalRef};
use crate::targeting::{check_ou, split, Criteria};
use serde::de::{self, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;

/// The only version of the document this build reads.
pub const VERSION: u32 = 1;

/// A small document for the simulated organization (`examples/rules-sim.yaml`), so
/// `plan --rules` can be tried without AWS.
pub const EXAMPLE_YAML: &str = include_str!("../../../examples/rules-sim.yaml");

/// Where the document itself is named in errors that are about no one field.
const WHOLE_DOCUMENT: &str = "rules document";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "DocumentFields")]
pub struct RulesDocument {
    pub version: u32,
    pub rules: Vec<Rule>,
    /// The scope a prune may delete in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed: Option<Managed>,
    /// Accounts a prune never deletes in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected_accounts: Vec<AccountId>,
}

/// The document as written, before the checks that span rules.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DocumentFields {
    #[serde(deserialize_with = "version")]
    version: u32,
    #[serde(deserialize_with = "required_list")]
    rules: Vec<Rule>,
    #[serde(default)]
    managed: Option<Managed>,
    #[serde(default, deserialize_with = "account_ids")]
    protected_accounts: Vec<AccountId>,
}

/// One rule: `permission_set` for each of `principals` in every account `targets` selects and
/// `exclude` does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub id: RuleId,
    pub permission_set: PermissionSetRef,
    #[serde(deserialize_with = "required_list")]
    pub principals: Vec<PrincipalRef>,
    #[serde(deserialize_with = "required_list")]
    pub targets: Vec<Selector>,
    #[serde(default, deserialize_with = "optional_list", skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<Selector>,
}

/// The scope a prune may delete in: these permission sets, held by these principals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Managed {
    #[serde(deserialize_with = "required_list")]
    pub permission_sets: Vec<PermissionSetRef>,
    #[serde(deserialize_with = "required_list")]
    pub principals: Vec<PrincipalRef>,
}

/// A rule's id: stable, unique in its document, 1-64 letters, digits, `.`, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RuleId(String);

impl RuleId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(text: &str) -> std::result::Result<RuleId, String> {
        let valid = !text.is_empty()
            && text.len() <= RuleId::MAX_CHARS
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if valid {
            Ok(RuleId(text.to_string()))
        } else {
            Err(format!(
                "`{}` is not a rule id: 1 to {} letters, digits, '.', '_' or '-'",
                printable(text),
                RuleId::MAX_CHARS
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RuleId {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<RuleId, String> {
        RuleId::parse(&text)
    }
}

impl std::str::FromStr for RuleId {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<RuleId, String> {
        RuleId::parse(text)
    }
}

impl From<RuleId> for String {
    fn from(id: RuleId) -> String {
        id.0
    }
}

impl PartialEq<str> for RuleId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A wildcard on the whole account name (`*` any run, `?` one character), case-sensitive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern(NameFilter);

impl NamePattern {
    pub fn parse(text: &str) -> std::result::Result<NamePattern, String> {
        if text.trim().is_empty() {
            return Err("an empty name pattern: give a wildcard such as \"prod-*\" (or \"*\" for every name)".into());
        }
        match NameFilter::parse(text)? {
            filter @ NameFilter::Name { .. } => Ok(NamePattern(filter)),
            NameFilter::Tag { key, value } => Err(format!(
                "`{}` is a tag test, not a name pattern: write it as `tags: {{{}: {}}}`",
                printable(text.trim()),
                printable(&key),
                printable(&value)
            )),
        }
    }

    pub fn matches(&self, account: &Account) -> bool {
        self.0.matches(account)
    }
}

/// A `NamePattern` tests names exactly as the request's `filter` does (`targeting::Criteria`).
impl Borrow<NameFilter> for NamePattern {
    fn borrow(&self) -> &NameFilter {
        &self.0
    }
}

impl TryFrom<String> for NamePattern {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<NamePattern, String> {
        NamePattern::parse(&text)
    }
}

impl From<NamePattern> for String {
    fn from(p: NamePattern) -> String {
        p.0.into()
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One selector of `targets` or `exclude`: the keys given are ANDed, the values of one key
/// ORed. Empty lists stand for keys that are not given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "SelectorFields")]
pub struct Selector {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<NamePattern>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ous: Vec<OuId>,
    /// How `ous` select: below them (`true`, the default, written only when `false`), or
    /// directly in them (for a root id: the accounts directly under the root).
    #[serde(skip_serializing_if = "is_true")]
    pub recursive: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Every account of the organization (written only when `true`).
    #[serde(skip_serializing_if = "is_false")]
    pub root: bool,
}

/// A selector as written, before its keys are checked together.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SelectorFields {
    #[serde(default, deserialize_with = "account_ids")]
    accounts: Vec<AccountId>,
    #[serde(default, deserialize_with = "optional_list")]
    names: Vec<NamePattern>,
    #[serde(default, deserialize_with = "optional_list")]
    ous: Vec<OuId>,
    #[serde(default)]
    recursive: Option<bool>,
    #[serde(default, deserialize_with = "tag_map")]
    tags: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "root_true")]
    root: bool,
}

impl TryFrom<SelectorFields> for Selector {
    type Error = &'static str;
    fn try_from(s: SelectorFields) -> std::result::Result<Selector, &'static str> {
        if s.recursive.is_some() && s.ous.is_empty() {
            return Err("`recursive` without `ous`: it says how `ous` select; give `ous` or leave `recursive` out");
        }
        if s.accounts.is_empty() && s.names.is_empty() && s.ous.is_empty() && s.tags.is_empty() && !s.root {
            return Err("a selector with no key: give at least one of `accounts`, `names`, `ous`, `tags` or `root: true`");
        }
        Ok(Selector { accounts: s.accounts, names: s.names, ous: s.ous, recursive: s.recursive.unwrap_or(true), tags: s.tags, root: s.root })
    }
}

impl Selector {
    /// Whether this selector selects `account` of `org` (its OU ids must be `org`'s: see
    /// `select_rules`). Inactive accounts match too: the caller splits them off.
    pub fn matches(&self, org: &OrgSnapshot, account: &Account) -> bool {
        let by_id = if self.accounts.is_empty() {
            account.id != org.management_account_id
        } else {
            self.accounts.contains(&account.id)
        };
        // `root: true` adds no test of its own: with no other key, every account but the
        // management account passes.
        by_id && Criteria { names: &self.names, ous: &self.ous, recursive: self.recursive, tags: &self.tags }.matches(org, account)
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl TryFrom<DocumentFields> for RulesDocument {
    type Error = FanoutError;
    /// The checks that span rules: unique rule ids, each principal once per rule.
    fn try_from(d: DocumentFields) -> Result<RulesDocument> {
        let mut first_use: BTreeMap<&RuleId, usize> = BTreeMap::new();
        for (i, rule) in d.rules.iter().enumerate() {
            match first_use.entry(&rule.id) {
                Entry::Occupied(first) => {
                    return Err(FanoutError::invalid(
                        rule_field(i, &rule.id, "id"),
                        &rule.id,
                        format!("a rule id unique in the document: rules[{}] already uses it", first.get()),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
            for (k, principal) in rule.principals.iter().enumerate() {
                if let Some(j) = rule.principals[..k].iter().position(|p| p == principal) {
                    return Err(FanoutError::invalid(
                        rule_field(i, &rule.id, &format!("principals[{k}]")),
                        describe_principal(principal),
                        format!("each principal once per rule: principals[{j}] already lists it"),
                    ));
                }
            }
        }
        Ok(RulesDocument { version: d.version, rules: d.rules, managed: d.managed, protected_accounts: d.protected_accounts })
    }
}

impl RulesDocument {
    /// Parses YAML, or JSON when the first non-blank character is `{` (JSON is YAML too, but
    /// the JSON decoder's messages are better for it; so a YAML document written as one flow
    /// mapping `{...}` must be valid JSON). Syntax errors give the line and column.
    ///
    /// A key given twice anywhere, and documents past `document::LIMITS` (size, nesting, what
    /// YAML aliases expand to) are refused before the typed decoding (see `document`).
    pub fn parse(text: &str) -> Result<RulesDocument> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let json = text.trim_start().starts_with('{');
        let checked = if json { crate::document::json(text, WHOLE_DOCUMENT).map(drop) } else { crate::document::check_yaml(text, WHOLE_DOCUMENT) };
        checked.map_err(|e| match e {
            FanoutError::InvalidRequest { field, value, expected } => {
                let field = if field == WHOLE_DOCUMENT { field } else { with_rule_id(&field, || crate::document::yaml_value_for_messages(text)).unwrap_or(field) };
                FanoutError::InvalidRequest { field, value, expected }
            }
            other => other,
        })?;
        let fields: DocumentFields = if json {
            let mut json = serde_json::Deserializer::from_str(text);
            let fields = serde_path_to_error::deserialize(&mut json).map_err(|e| {
                let path = e.path().to_string();
                decode_error(&path, e.into_inner().to_string(), || serde_json::from_str(text).ok())
            })?;
            json.end().map_err(|e| decode_error(".", e.to_string(), || None))?;
            fields
        } else {
            serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| {
                let path = e.path().to_string();
                let message = without_path_prefix(&path, e.into_inner().to_string());
                decode_error(&path, message, || crate::document::yaml_value_for_messages(text))
            })?
        };
        RulesDocument::try_from(fields)
    }

    /// From an already-decoded JSON value (the state machine's input `{"rules": {...}}`).
    pub fn from_value(value: serde_json::Value) -> Result<RulesDocument> {
        let fields: DocumentFields = serde_path_to_error::deserialize(&value).map_err(|e| {
            let path = e.path().to_string();
            decode_error(&path, e.into_inner().to_string(), || Some(value.clone()))
        })?;
        RulesDocument::try_from(fields)
    }

    /// The error field for `field` of rule `index`: `rules[2] (prod-admins).targets[0]`.
    pub fn rule_field(&self, index: usize, field: &str) -> String {
        rule_field(index, &self.rules[index].id, field)
    }
}

fn rule_field(index: usize, id: &RuleId, field: &str) -> String {
    if field.is_empty() {
        format!("rules[{index}] ({id})")
    } else {
        format!("rules[{index}] ({id}).{field}")
    }
}

/// `GROUP PlatformAdmins`, `USER 906771c1-...`.
fn describe_principal(p: &PrincipalRef) -> String {
    match p {
        PrincipalRef::Name { kind, name } => format!("{} {name}", kind.as_str()),
        PrincipalRef::Id { kind, id } => format!("{} {id}", kind.as_str()),
    }
}

/// A decoding error as a request error: `path` is where it happened (serde_path_to_error's),
/// given the rule's id when `written()`, the document as a plain value, has a valid one there.
fn decode_error(path: &str, message: String, written: impl FnOnce() -> Option<serde_json::Value>) -> FanoutError {
    let field = match path {
        "" | "." => WHOLE_DOCUMENT.to_string(),
        _ => with_rule_id(path, written).unwrap_or_else(|| path.to_string()),
    };
    FanoutError::invalid(field, "", message)
}

/// `rules[2].targets[0]` -> `rules[2] (prod-admins).targets[0]`, if rule 2 has a valid id.
fn with_rule_id(path: &str, written: impl FnOnce() -> Option<serde_json::Value>) -> Option<String> {
    let (index, rest) = path.strip_prefix("rules[")?.split_once(']')?;
    let index: usize = index.parse().ok()?;
    let doc = written()?;
    let id = RuleId::parse(doc.get("rules")?.get(index)?.get("id")?.as_str()?).ok()?;
    Some(rule_field(index, &id, rest.strip_prefix('.').unwrap_or(rest)))
}

/// serde_yaml_ng starts its messages with its own path (`rules[0].accounts[0]: ...`); the
/// field already says where, so that prefix goes.
fn without_path_prefix(path: &str, message: String) -> String {
    match message.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && (path == head || path.starts_with(&format!("{head}.")) || path.starts_with(&format!("{head}["))) => {
            rest.to_string()
        }
        _ => message,
    }
}

fn version<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == VERSION {
        Ok(v)
    } else {
        Err(D::Error::custom(format!("version {v} is not one this sso-fanout reads: write `version: {VERSION}`")))
    }
}

fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D, empty: &str) -> std::result::Result<Vec<T>, D::Error> {
    let items = Vec::<T>::deserialize(d)?;
    if items.is_empty() {
        return Err(D::Error::custom(empty));
    }
    Ok(items)
}

fn required_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> std::result::Result<Vec<T>, D::Error> {
    list(d, "an empty list: give at least one")
}

fn optional_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> std::result::Result<Vec<T>, D::Error> {
    list(d, "an empty list: give at least one, or leave the key out")
}

fn account_ids<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<AccountId>, D::Error> {
    Ok(optional_list::<D, QuotedAccountId>(d)?.into_iter().map(|q| q.0).collect())
}

fn tag_map<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    let tags = BTreeMap::<String, String>::deserialize(d)?;
    if tags.is_empty() {
        return Err(D::Error::custom("an empty map: give at least one `Key: Value`, or leave the key out"));
    }
    if let Some((k, v)) = tags.iter().find(|(k, _)| k.trim().is_empty()) {
        return Err(D::Error::custom(format!("an empty tag key ({:?}: {:?}): tag keys must be non-empty", printable(k), printable(v))));
    }
    Ok(tags)
}

fn root_true<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    if bool::deserialize(d)? {
        Ok(true)
    } else {
        Err(D::Error::custom("`root: false` selects nothing: leave `root` out (`root: true` selects every account)"))
    }
}

/// An account id written as text. A number is refused, never read as an id: unquoted, YAML
/// and JSON read 12 digits as a number, and other readers of the same file drop its leading
/// zeros.
struct QuotedAccountId(AccountId);

impl<'de> Deserialize<'de> for QuotedAccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<QuotedAccountId, D::Error> {
        d.deserialize_any(QuotedAccountIdVisitor)
    }
}

struct QuotedAccountIdVisitor;

impl QuotedAccountIdVisitor {
    fn number<E: de::Error>(written: String) -> std::result::Result<QuotedAccountId, E> {
        let quoted = if written.len() < 12 && written.bytes().all(|b| b.is_ascii_digit()) { format!("{written:0>12}") } else { written.clone() };
        Err(E::custom(format!(
            "account id {written} is written as a number: quote account ids, e.g. \"{quoted}\" (unquoted, YAML and JSON \
             read digits as a number, which loses leading zeros)"
        )))
    }
}

impl<'de> de::Visitor<'de> for QuotedAccountIdVisitor {
    type Value = QuotedAccountId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a 12-digit account id in quotes, e.g. \"123456789012\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<QuotedAccountId, E> {
        AccountId::parse(text).map(QuotedAccountId).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<QuotedAccountId, E> {
        QuotedAccountIdVisitor::number(n.to_string())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<QuotedAccountId, E> {
        QuotedAccountIdVisitor::number(n.to_string())
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> std::result::Result<QuotedAccountId, E> {
        QuotedAccountIdVisitor::number(n.to_string())
    }

    fn visit_i128<E: de::Error>(self, n: i128) -> std::result::Result<QuotedAccountId, E> {
        QuotedAccountIdVisitor::number(n.to_string())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> std::result::Result<QuotedAccountId, E> {
        QuotedAccountIdVisitor::number(n.to_string())
    }
}

/// What one rule selects in an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSelection<'a> {
    /// The rule's index in `RulesDocument::rules`.
    pub rule: usize,
    /// ACTIVE accounts selected and not excluded, in the organization's order (never empty).
    pub accounts: Vec<&'a Account>,
    /// Selected, not excluded, but not ACTIVE: reported, not targeted.
    pub inactive: Vec<&'a Account>,
    /// Selected accounts that `exclude` removed.
    pub excluded: usize,
}

/// What each rule of `doc` selects in `org`, in document order, after checking every OU, root
/// and account id of the document against `org` (an unknown one is refused by its field, never
/// read as "nothing"). A rule that leaves no ACTIVE account is refused, saying what its targets
/// matched and what `exclude` and inactivity took away.
pub fn select_rules<'a>(doc: &RulesDocument, org: &'a OrgSnapshot) -> Result<Vec<RuleSelection<'a>>> {
    for (i, rule) in doc.rules.iter().enumerate() {
        for (key, selectors) in [("targets", &rule.targets), ("exclude", &rule.exclude)] {
            for (j, selector) in selectors.iter().enumerate() {
                for (k, ou) in selector.ous.iter().enumerate() {
                    check_ou(org, ou, doc.rule_field(i, &format!("{key}[{j}].ous[{k}]")))?;
                }
                for (k, id) in selector.accounts.iter().enumerate() {
                    check_account(org, id, || doc.rule_field(i, &format!("{key}[{j}].accounts[{k}]")))?;
                }
            }
        }
    }
    for (i, id) in doc.protected_accounts.iter().enumerate() {
        check_account(org, id, || format!("protectedAccounts[{i}]"))?;
    }
    doc.rules.iter().enumerate().map(|(i, rule)| select_rule(doc, i, rule, org)).collect()
}

fn check_account(org: &OrgSnapshot, id: &AccountId, field: impl FnOnce() -> String) -> Result<()> {
    if org.accounts.iter().any(|a| &a.id == id) {
        return Ok(());
    }
    Err(FanoutError::invalid(
        field(),
        id,
        format!(
            "an account id of organization {}: {id} is not in it ({} accounts; `sso-fanout org` lists them, \
             `sso-fanout cache refresh` re-reads a new account)",
            org.organization_id,
            org.accounts.len()
        ),
    ))
}

fn select_rule<'a>(doc: &RulesDocument, i: usize, rule: &Rule, org: &'a OrgSnapshot) -> Result<RuleSelection<'a>> {
    let selection = split(org, |a| rule.targets.iter().any(|s| s.matches(org, a)), |a| rule.exclude.iter().any(|s| s.matches(org, a)));
    if selection.targets.is_empty() {
        let matched = selection.excluded + selection.inactive.len();
        let what = if matched == 0 {
            format!("its targets match no account of organization {} ({} accounts)", org.organization_id, org.accounts.len())
        } else {
            let inactive: Vec<String> = selection.inactive.iter().take(5).map(|a| format!("{} ({}, {})", a.name, a.id, format!("{:?}", a.status).to_uppercase())).collect();
            let more = if selection.inactive.len() > 5 { format!(" and {} more", selection.inactive.len() - 5) } else { String::new() };
            let inactive = if inactive.is_empty() { String::new() } else { format!(": {}{more}", inactive.join(", ")) };
            format!(
                "its targets match {matched} account(s); `exclude` removes {}; not ACTIVE: {}{inactive}",
                selection.excluded,
                selection.inactive.len()
            )
        };
        return Err(FanoutError::invalid(doc.rule_field(i, "targets"), "", format!("a rule that selects at least one ACTIVE account: {what}")));
    }
    Ok(RuleSelection { rule: i, accounts: selection.targets, inactive: selection.inactive, excluded: selection.excluded })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountStatus, OrgUnit};
    use serde_json::json;

    /// (field, whole message) of a request error.
    fn refused(result: Result<impl fmt::Debug>) -> (String, String) {
        match result {
            Err(e @ FanoutError::InvalidRequest { .. }) => {
                let text = e.to_string();
                let FanoutError::InvalidRequest { field, .. } = e else { unreachable!() };
                (field, text)
            }
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    /// A minimal valid document in JSON form.
    fn base() -> serde_json::Value {
        json!({
            "version": 1,
            "rules": [
                {"id": "prod-admins", "permissionSet": "AdministratorAccess",
                 "principals": [{"type": "GROUP", "name": "PlatformAdmins"}],
                 "targets": [{"ous": ["ou-sim0-prod0000"]}]},
                {"id": "auditors", "permissionSet": "ReadOnlyAccess",
                 "principals": [{"type": "GROUP", "name": "Auditors"}],
                 "targets": [{"root": true}]}
            ]
        })
    }

    fn from_json(v: serde_json::Value) -> Result<RulesDocument> {
        RulesDocument::from_value(v)
    }

    use crate::targeting::tests::acct;

    const PROD: &str = "ou-sim0-prod0000";
    const PAYM: &str = "ou-sim0-prodpaym";
    const SRCH: &str = "ou-sim0-prodsrch";
    const DEV: &str = "ou-sim0-dev00000";
    const PLATF: &str = "ou-sim0-devplatf";

    /// A small organization shaped like the simulator's, plus an account directly in Prod and
    /// one directly under the root.
    fn org() -> OrgSnapshot {
        use AccountStatus::*;
        let ous = [
            (PROD, "r-sim0", "Prod"),
            (PAYM, PROD, "Payments"),
            (SRCH, PROD, "Search"),
            (DEV, "r-sim0", "Dev"),
            (PLATF, DEV, "Platform"),
            ("ou-sim0-sandbox0", "r-sim0", "Sandbox"),
            ("ou-sim0-shared00", "r-sim0", "Shared"),
        ];
        OrgSnapshot {
            organization_id: "o-test".into(),
            management_account_id: "100000000000".parse().unwrap(),
            roots: vec!["r-sim0".into()],
            ous: ous.iter().map(|(id, parent, name)| OrgUnit { id: id.to_string(), name: name.to_string(), parent_id: parent.to_string() }).collect(),
            fetched_at: 0,
            accounts: vec![
                acct("100000000000", "management", Active, &[], &[]),
                acct("200000000001", "prod-payments-001", Active, &[PROD, PAYM], &[("env", "prod"), ("team", "payments")]),
                acct("200000000002", "prod-search-002", Active, &[PROD, SRCH], &[("env", "prod"), ("team", "search")]),
                acct("200000000003", "prod-payments-003", Suspended, &[PROD, PAYM], &[("env", "prod"), ("team", "payments")]),
                acct("200000000005", "dev-platform-005", Active, &[DEV, PLATF], &[("env", "dev"), ("team", "platform")]),
                acct("200000000008", "user008-sandbox", Active, &["ou-sim0-sandbox0"], &[("env", "sandbox"), ("team", "platform")]),
                acct("200000000010", "shared-services-010", Active, &["ou-sim0-shared00"], &[("env", "shared"), ("team", "platform")]),
                acct("200000000011", "prod-direct-011", Active, &[PROD], &[("env", "prod")]),
                acct("200000000012", "legacy-012", Active, &[], &[("env", "legacy")]),
            ],
        }
    }

    /// The ids each rule of a one-or-more-rule document selects in `org()`.
    fn selected(doc: &RulesDocument) -> Vec<Vec<String>> {
        let o = org();
        select_rules(doc, &o).unwrap().iter().map(|s| s.accounts.iter().map(|a| a.id.to_string()).collect()).collect()
    }

    /// A one-rule document with these targets (and exclude, unless null).
    fn rule(targets: serde_json::Value, exclude: serde_json::Value) -> RulesDocument {
        let mut r = json!({"id": "r1", "permissionSet": "ReadOnlyAccess", "principals": [{"type": "USER", "name": "alice"}], "targets": targets});
        if !exclude.is_null() {
            r["exclude"] = exclude;
        }
        from_json(json!({"version": 1, "rules": [r]})).expect("valid document")
    }

    fn ids_of(targets: serde_json::Value) -> Vec<String> {
        selected(&rule(targets, serde_json::Value::Null)).remove(0)
    }

    #[test]
    fn a_key_given_twice_is_refused_by_its_path_with_the_rule_id() {
        let yaml = "version: 1\nrules:\n  - id: prod-admins\n    permissionSet: A\n    principals: [{type: GROUP, name: G}]\n    \
                    targets:\n      - tags: {env: prod, env: dev}\n";
        let (field, text) = refused(RulesDocument::parse(yaml));
        assert_eq!(field, "rules[0] (prod-admins).targets[0].tags.env");
        assert!(text.contains("given twice") && text.contains("line 7"), "{text}");
        let json = r#"{"version": 1, "rules": [{"id": "prod-admins", "permissionSet": "A",
            "principals": [{"type": "GROUP", "name": "G"}], "targets": [{"tags": {"env": "prod", "env": "dev"}}]}]}"#;
        assert_eq!(refused(RulesDocument::parse(json)).0, "rules[0] (prod-admins).targets[0].tags.env");
        // A rule whose id itself is given twice is named by its index alone.
        let yaml = "version: 1\nrules:\n  - id: a\n    id: b\n";
        assert_eq!(refused(RulesDocument::parse(yaml)).0, "rules[0] (a).id");
        let yaml = "version: 1\nversion: 1\nrules: []\n";
        assert_eq!(refused(RulesDocument::parse(yaml)).0, "version");
    }

    #[test]
    fn alias_amplification_is_refused_before_the_document_is_decoded() {
        let mut yaml = format!("version: 1\nbig: &big \"{}\"\nrules:\n  - id: a\n    exclude:\n", "x".repeat(1 << 20));
        for _ in 0..10_000 {
            yaml.push_str("      - accounts: [*big]\n");
        }
        let (field, text) = refused(RulesDocument::parse(&yaml));
        assert!(field.starts_with("rules[0]"), "{field}");
        assert!(text.contains("aliases"), "{text}");
    }

    #[test]
    fn yaml_and_json_forms_of_one_document_parse_equal() {
        let yaml = r#"
version: 1
rules:
  - id: prod-admins
    permissionSet: AdministratorAccess
    principals:
      - {type: GROUP, name: PlatformAdmins}
      - {type: USER, id: 906771c1-0071-7057-3a0c-1d1c4ba2c2e8}
    targets:
      - ous: [ou-sim0-prod0000]
        recursive: false
        tags: {env: prod}
      - names: ["shared-*"]
      - accounts: ["123456789012"]
      - root: true
    exclude:
      - accounts: ["200000000007"]
managed:
  permissionSets: [AdministratorAccess, "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef"]
  principals: [{type: GROUP, name: PlatformAdmins}]
protectedAccounts: ["200000000001"]
"#;
        let json = r#"{
  "version": 1,
  "rules": [{
    "id": "prod-admins", "permissionSet": "AdministratorAccess",
    "principals": [{"type": "GROUP", "name": "PlatformAdmins"}, {"type": "USER", "id": "906771c1-0071-7057-3a0c-1d1c4ba2c2e8"}],
    "targets": [{"ous": ["ou-sim0-prod0000"], "recursive": false, "tags": {"env": "prod"}}, {"names": ["shared-*"]},
                {"accounts": ["123456789012"]}, {"root": true}],
    "exclude": [{"accounts": ["200000000007"]}]
  }],
  "managed": {"permissionSets": ["AdministratorAccess", "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef"],
              "principals": [{"type": "GROUP", "name": "PlatformAdmins"}]},
  "protectedAccounts": ["200000000001"]
}"#;
        let from_yaml = RulesDocument::parse(yaml).unwrap();
        let from_json_text = RulesDocument::parse(json).unwrap();
        assert_eq!(from_yaml, from_json_text);
        assert_eq!(from_json(serde_json::from_str(json).unwrap()).unwrap(), from_yaml);
        let rule = &from_yaml.rules[0];
        assert_eq!(rule.id, "prod-admins");
        assert!(matches!(rule.permission_set, PermissionSetRef::Name(ref n) if n == "AdministratorAccess"));
        assert!(matches!(rule.principals[1], PrincipalRef::Id { kind: crate::model::PrincipalType::User, .. }));
        assert!(!rule.targets[0].recursive && rule.targets[1].recursive);
        assert!(rule.targets[3].root);
        assert!(matches!(from_yaml.managed.as_ref().unwrap().permission_sets[1], PermissionSetRef::Arn(_)));
        assert_eq!(from_yaml.protected_accounts, ["200000000001"]);
    }

    #[test]
    fn a_parsed_document_serializes_back_to_the_same_document() {
        let doc = RulesDocument::parse(EXAMPLE_YAML).unwrap();
        let as_json = serde_json::to_value(&doc).unwrap();
        assert_eq!(from_json(as_json.clone()).unwrap(), doc);
        assert_eq!(RulesDocument::parse(&serde_json::to_string_pretty(&doc).unwrap()).unwrap(), doc);
        let as_yaml = serde_yaml_ng::to_string(&doc).unwrap();
        assert_eq!(RulesDocument::parse(&as_yaml).unwrap(), doc, "{as_yaml}");
        // Account ids are written as (quoted) text, defaults are left out.
        assert_eq!(as_json["protectedAccounts"], json!(["200000000002"]));
        assert_eq!(as_json["rules"][0]["targets"], json!([{"ous": ["ou-sim0-prod0000"]}]));
        // A document in canonical form comes back exactly.
        let mut v = base();
        v["rules"][0]["targets"] = json!([{"ous": ["ou-sim0-prod0000"], "recursive": false, "tags": {"env": "prod"}}, {"names": ["shared-*"], "accounts": ["123456789012"]}]);
        v["rules"][0]["exclude"] = json!([{"root": true}]);
        v["managed"] = json!({"permissionSets": ["ReadOnlyAccess"], "principals": [{"type": "USER", "id": "906771c1-0071-7057-3a0c-1d1c4ba2c2e8"}]});
        v["protectedAccounts"] = json!(["200000000001"]);
        assert_eq!(serde_json::to_value(from_json(v.clone()).unwrap()).unwrap(), v);
        // Plain serde reads the document with the same checks.
        assert_eq!(serde_json::from_value::<RulesDocument>(v.clone()).unwrap(), from_json(v).unwrap());
        let mut v = base();
        v["rules"][1]["id"] = "prod-admins".into();
        assert!(serde_json::from_value::<RulesDocument>(v).unwrap_err().to_string().contains("rules[1] (prod-admins).id"));
    }

    #[test]
    fn the_example_parses_and_selects_in_a_simulator_shaped_organization() {
        let doc = RulesDocument::parse(EXAMPLE_YAML).unwrap();
        let ids: Vec<&str> = doc.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["prod-admins", "dev-power-users", "auditors-read-only", "shared-services-admin"]);
        let o = org();
        let selections = select_rules(&doc, &o).unwrap();
        let by_rule: Vec<Vec<&str>> = selections.iter().map(|s| s.accounts.iter().map(|a| a.name.as_str()).collect()).collect();
        assert_eq!(by_rule[0], ["prod-search-002", "prod-direct-011"]);
        assert_eq!((selections[0].excluded, selections[0].inactive.len()), (1, 1));
        assert_eq!(by_rule[1], ["dev-platform-005", "user008-sandbox"]);
        assert_eq!(by_rule[2].len(), 7, "every ACTIVE member account (never the management account)");
        assert!(!by_rule[2].contains(&"management"));
        assert_eq!(by_rule[3], ["shared-services-010"]);
        assert_eq!(selections.iter().map(|s| s.rule).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn unknown_fields_are_refused_by_name_and_path() {
        let mut v = base();
        v["rules"][0]["targets"][0]["recursve"] = false.into();
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "rules[0] (prod-admins).targets[0].recursve");
        assert!(text.contains("unknown field `recursve`"), "{text}");
        let mut v = base();
        v["rules"][1]["permissionSets"] = json!(["x"]);
        assert_eq!(refused(from_json(v)).0, "rules[1] (auditors).permissionSets");
        let mut v = base();
        v["prune"] = true.into();
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "prune");
        assert!(text.contains("unknown field `prune`"), "{text}");
        let mut v = base();
        v["managed"] = json!({"permissionSets": ["A"], "principals": [{"type": "GROUP", "name": "G"}], "accounts": []});
        assert_eq!(refused(from_json(v)).0, "managed.accounts");
        let yaml = "version: 1\nrules:\n  - id: a\n    permissionSet: A\n    principals: [{type: GROUP, name: G}]\n    targets: [{root: true}]\n    excludes: []\n";
        let (field, text) = refused(RulesDocument::parse(yaml));
        assert_eq!(field, "rules[0] (a).excludes");
        assert!(text.contains("unknown field `excludes`") && text.contains("line 7 column 5"), "{text}");
    }

    #[test]
    fn wrong_types_and_malformed_values_name_their_path() {
        for (pointer, value, field) in [
            ("/rules/0/targets/0/ous/0", json!("prod"), "rules[0] (prod-admins).targets[0].ous[0]"),
            ("/rules/0/targets", json!({"root": true}), "rules[0] (prod-admins).targets"),
            ("/rules/1/targets/0/root", json!("yes"), "rules[1] (auditors).targets[0].root"),
            ("/rules/0/principals/0", json!({"type": "ROBOT", "name": "x"}), "rules[0] (prod-admins).principals[0].type"),
            ("/rules/0/permissionSet", json!("arn:aws:sso:::permissionSet/nope"), "rules[0] (prod-admins).permissionSet"),
            ("/rules/1/targets/0", json!({"tags": {"env": 1}}), "rules[1] (auditors).targets[0].tags.env"),
            ("/rules/1/targets/0", json!({"names": ["tag:env=prod"]}), "rules[1] (auditors).targets[0].names[0]"),
            ("/rules/1/targets/0", json!({"names": [" "]}), "rules[1] (auditors).targets[0].names[0]"),
            ("/rules/1/targets/0", json!({"accounts": ["12345"]}), "rules[1] (auditors).targets[0].accounts[0]"),
            ("/rules/1/id", json!("not an id!"), "rules[1].id"),
            ("/rules/1/id", json!("x".repeat(65)), "rules[1].id"),
        ] {
            let mut v = base();
            *v.pointer_mut(pointer).unwrap() = value;
            assert_eq!(refused(from_json(v)).0, field, "{pointer}");
        }
        let mut v = base();
        v["rules"][1]["targets"][0] = json!({"names": ["tag:env=prod"]});
        assert!(refused(from_json(v)).1.contains("tags: {env: prod}"));
        let mut v = base();
        v["rules"][1]["id"] = "not an id!".into();
        assert!(refused(from_json(v)).1.contains("letters, digits"));
        assert!(RuleId::parse(&"x".repeat(64)).is_ok());
        let (field, _) = refused(RulesDocument::parse("[1, 2]"));
        assert_eq!(field, "rules document");
    }

    #[test]
    fn version_must_be_given_and_be_1() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("version");
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "rules document");
        assert!(text.contains("missing field `version`"), "{text}");
        let mut v = base();
        v["version"] = 2.into();
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "version");
        assert!(text.contains("version 2") && text.contains("version: 1"), "{text}");
        let (field, _) = refused(RulesDocument::parse("version: \"one\"\nrules: []\n"));
        assert_eq!(field, "version");
    }

    #[test]
    fn duplicate_rule_ids_name_both_indexes() {
        let mut v = base();
        let copy = v["rules"][0].clone();
        v["rules"].as_array_mut().unwrap().push(copy);
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "rules[2] (prod-admins).id");
        assert!(text.contains("rules[0] already uses it") && text.contains("= prod-admins"), "{text}");
    }

    #[test]
    fn empty_lists_and_maps_are_refused() {
        for (pointer, field) in [
            ("/rules", "rules"),
            ("/rules/0/principals", "rules[0] (prod-admins).principals"),
            ("/rules/0/targets", "rules[0] (prod-admins).targets"),
            ("/rules/0/targets/0/ous", "rules[0] (prod-admins).targets[0].ous"),
        ] {
            let mut v = base();
            *v.pointer_mut(pointer).unwrap() = json!([]);
            let (got, text) = refused(from_json(v));
            assert_eq!(got, field);
            assert!(text.contains("an empty list"), "{text}");
        }
        for (key, empty, field) in [
            ("names", json!([]), "rules[1] (auditors).targets[0].names"),
            ("accounts", json!([]), "rules[1] (auditors).targets[0].accounts"),
            ("tags", json!({}), "rules[1] (auditors).targets[0].tags"),
        ] {
            let mut v = base();
            v["rules"][1]["targets"][0][key] = empty;
            let (got, text) = refused(from_json(v));
            assert_eq!(got, field);
            assert!(text.contains("leave the key out"), "{text}");
        }
        for (key, value, field) in [
            ("exclude", json!([]), "rules[0] (prod-admins).exclude"),
            ("managed", json!({"permissionSets": [], "principals": [{"type": "GROUP", "name": "G"}]}), "managed.permissionSets"),
            ("managed", json!({"permissionSets": ["A"], "principals": []}), "managed.principals"),
            ("protectedAccounts", json!([]), "protectedAccounts"),
        ] {
            let mut v = base();
            if key == "exclude" {
                v["rules"][0][key] = value;
            } else {
                v[key] = value;
            }
            assert_eq!(refused(from_json(v)).0, field);
        }
    }

    #[test]
    fn selector_shapes_are_checked() {
        for (selector, needle) in [
            (json!({}), "no key"),
            (json!({"recursive": true}), "`recursive` without `ous`"),
            (json!({"tags": {"env": "prod"}, "recursive": false}), "`recursive` without `ous`"),
        ] {
            let mut v = base();
            v["rules"][1]["exclude"] = json!([{"accounts": ["200000000001"]}, selector]);
            let (field, text) = refused(from_json(v));
            assert_eq!(field, "rules[1] (auditors).exclude[1]");
            assert!(text.contains(needle), "{text}");
        }
        let mut v = base();
        v["rules"][1]["targets"][0]["root"] = false.into();
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "rules[1] (auditors).targets[0].root");
        assert!(text.contains("`root: false`") && text.contains("leave `root` out"), "{text}");
        let mut v = base();
        v["rules"][1]["targets"][0]["tags"] = json!({" ": "x"});
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "rules[1] (auditors).targets[0].tags");
        assert!(text.contains("empty tag key"), "{text}");
    }

    #[test]
    fn a_principal_listed_twice_in_one_rule_is_refused() {
        let mut v = base();
        v["rules"][1]["principals"] = json!([{"type": "GROUP", "name": "Auditors"}, {"type": "USER", "name": "bob"}, {"type": "GROUP", "name": "Auditors"}]);
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "rules[1] (auditors).principals[2]");
        assert!(text.contains("GROUP Auditors") && text.contains("principals[0] already lists it"), "{text}");
        // The same name as another type is another principal.
        let mut v = base();
        v["rules"][1]["principals"] = json!([{"type": "GROUP", "name": "ops"}, {"type": "USER", "name": "ops"}]);
        assert!(from_json(v).is_ok());
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let yaml = "version: 1\nrules:\n  - id: a\n    permissionSet: \"AdministratorAccess\n    principals: []\n";
        let (field, text) = refused(RulesDocument::parse(yaml));
        assert!(text.contains("line 4 column"), "{field}: {text}");
        let yaml = "version: 1\nrules:\n  - id: a\n    targets: [{root: true}\n";
        let (field, text) = refused(RulesDocument::parse(yaml));
        assert!(text.contains("line 5 column"), "{field}: {text}");
        let json = "{\n  \"version\": 1,\n  \"rules\": [\n    {\"id\": \"a\",}\n  ]\n}";
        let (_, text) = refused(RulesDocument::parse(json));
        assert!(text.contains("line 4 column"), "{text}");
        let (field, text) = refused(RulesDocument::parse(&format!("{} trailing", base())));
        assert_eq!(field, "rules document");
        assert!(text.contains("trailing") && text.contains("line 1 column"), "{text}");
        // A value error in YAML text also says where it is.
        let yaml = "version: 1\nrules:\n  - id: a\n    permissionSet: A\n    principals: [{type: GROUP, name: G}]\n    targets:\n      - ous: [prod]\n";
        let (field, text) = refused(RulesDocument::parse(yaml));
        assert_eq!(field, "rules[0] (a).targets[0].ous[0]");
        assert!(text.contains("line 7 column") && text.contains("`prod` is not an OU id"), "{text}");
        assert!(!text.contains("rules[0].targets"), "the path is said once: {text}");
    }

    #[test]
    fn account_ids_written_as_numbers_are_refused_with_the_quoting_hint() {
        let yaml = |ids: &str| {
            format!("version: 1\nrules:\n  - id: a\n    permissionSet: A\n    principals: [{{type: GROUP, name: G}}]\n    targets:\n      - accounts: [{ids}]\n")
        };
        let (field, text) = refused(RulesDocument::parse(&yaml("\"200000000001\", 200000000007")));
        assert_eq!(field, "rules[0] (a).targets[0].accounts[1]");
        assert!(text.contains("quote account ids") && text.contains("\"200000000007\"") && text.contains("line 7"), "{text}");
        let (_, text) = refused(RulesDocument::parse(&yaml("0o17")));
        assert!(text.contains("account id 15 is written as a number"), "{text}");
        let (_, text) = refused(RulesDocument::parse("version: 1\nrules: [{id: a, permissionSet: A, principals: [{type: GROUP, name: G}], targets: [{root: true}]}]\nprotectedAccounts: [12345678901]\n"));
        assert!(text.contains("`protectedAccounts[0]`") && text.contains("\"012345678901\""), "{text}");
        // JSON numbers too.
        let mut v = base();
        v["protectedAccounts"] = json!([123456789012u64]);
        let (field, text) = refused(from_json(v));
        assert_eq!(field, "protectedAccounts[0]");
        assert!(text.contains("quote account ids"), "{text}");
        // Quoted, in either form, they are ids.
        let doc = RulesDocument::parse(&yaml("'200000000001', \"200000000002\"")).unwrap();
        assert_eq!(doc.rules[0].targets[0].accounts, ["200000000001", "200000000002"]);
    }

    #[test]
    fn keys_of_a_selector_are_anded_and_selectors_ored() {
        assert_eq!(ids_of(json!([{"ous": [PROD], "tags": {"team": "search"}}])), ["200000000002"]);
        assert_eq!(ids_of(json!([{"accounts": ["200000000001", "200000000005"], "names": ["prod-*"]}])), ["200000000001"]);
        assert_eq!(ids_of(json!([{"names": ["dev-*", "*-sandbox"], "tags": {"team": "platform"}}])), ["200000000005", "200000000008"]);
        assert_eq!(ids_of(json!([{"tags": {"env": "prod", "team": "payments"}}])), ["200000000001"]);
        assert_eq!(
            ids_of(json!([{"ous": [SRCH]}, {"names": ["shared-*"]}, {"accounts": ["200000000012"]}])),
            ["200000000002", "200000000010", "200000000012"]
        );
        // Names are anchored and case-sensitive.
        assert_eq!(ids_of(json!([{"names": ["prod-payments-00?"]}])), ["200000000001"]);
        let o = org();
        let e = select_rules(&rule(json!([{"names": ["payments"]}, {"names": ["PROD-*"]}]), serde_json::Value::Null), &o).unwrap_err();
        assert!(e.to_string().contains("match no account"), "{e}");
    }

    #[test]
    fn exclude_subtracts_what_any_of_its_selectors_selects() {
        let doc = rule(json!([{"root": true}]), json!([{"ous": [PROD]}, {"accounts": ["200000000010"]}]));
        assert_eq!(selected(&doc)[0], ["200000000005", "200000000008", "200000000012"]);
        let o = org();
        let s = &select_rules(&doc, &o).unwrap()[0];
        assert_eq!((s.excluded, s.inactive.len()), (5, 0), "4 in Prod (one suspended) and one by id");
        // Exclude selectors have the same shape and meaning.
        let doc = rule(json!([{"ous": [PROD]}]), json!([{"tags": {"team": "payments"}}]));
        assert_eq!(selected(&doc)[0], ["200000000002", "200000000011"]);
    }

    #[test]
    fn ous_select_below_them_unless_recursive_is_false() {
        assert_eq!(ids_of(json!([{"ous": [PROD]}])), ["200000000001", "200000000002", "200000000011"]);
        assert_eq!(ids_of(json!([{"ous": [PROD], "recursive": false}])), ["200000000011"]);
        assert_eq!(ids_of(json!([{"ous": [PAYM], "recursive": false}])), ["200000000001"]);
        assert_eq!(ids_of(json!([{"ous": [DEV, SRCH], "recursive": false}])), ["200000000002"]);
        // A root: every member account, or with `recursive: false` those directly under it.
        assert_eq!(ids_of(json!([{"ous": ["r-sim0"]}])).len(), 7);
        assert_eq!(ids_of(json!([{"ous": ["r-sim0"], "recursive": false}])), ["200000000012"]);
    }

    #[test]
    fn root_and_patterns_never_select_the_management_account_its_id_does() {
        let all = ids_of(json!([{"root": true}]));
        assert_eq!(all.len(), 7);
        assert!(!all.contains(&"100000000000".to_string()));
        for targets in [json!([{"names": ["*"]}]), json!([{"ous": ["r-sim0"]}]), json!([{"names": ["management"]}, {"root": true}])] {
            assert!(!ids_of(targets).contains(&"100000000000".to_string()));
        }
        assert_eq!(ids_of(json!([{"accounts": ["100000000000"]}])), ["100000000000"]);
        // Listed by id and matching the selector's other keys.
        assert_eq!(ids_of(json!([{"accounts": ["100000000000"], "names": ["manage*"]}])), ["100000000000"]);
        assert_eq!(ids_of(json!([{"accounts": ["100000000000", "200000000001"], "root": true}])), ["100000000000", "200000000001"]);
        // A pattern in `exclude` does not remove it either; its id does.
        let doc = rule(json!([{"accounts": ["100000000000", "200000000001"]}]), json!([{"names": ["*"], "tags": {"env": "prod"}}, {"root": true}]));
        assert_eq!(selected(&doc)[0], ["100000000000"]);
        let doc = rule(json!([{"accounts": ["100000000000", "200000000001"]}]), json!([{"accounts": ["100000000000"]}]));
        assert_eq!(selected(&doc)[0], ["200000000001"]);
    }

    #[test]
    fn inactive_accounts_are_reported_not_targeted() {
        let doc = rule(json!([{"ous": [PAYM]}]), serde_json::Value::Null);
        let o = org();
        let s = &select_rules(&doc, &o).unwrap()[0];
        assert_eq!(s.accounts.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["200000000001"]);
        assert_eq!(s.inactive.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["200000000003"]);
        // Excluded inactive accounts are counted as excluded, not reported as inactive.
        let doc = rule(json!([{"ous": [PAYM]}]), json!([{"accounts": ["200000000003"]}]));
        let s = &select_rules(&doc, &o).unwrap()[0];
        assert_eq!((s.inactive.len(), s.excluded), (0, 1));
    }

    #[test]
    fn unknown_ous_accounts_and_protected_ids_are_refused_with_the_rule_id() {
        let o = org();
        let mut v = base();
        v["rules"][0]["targets"][0]["ous"] = json!([PROD, "ou-zzzz-zzzzzzzz"]);
        let (field, text) = refused(select_rules(&from_json(v).unwrap(), &o));
        assert_eq!(field, "rules[0] (prod-admins).targets[0].ous[1]");
        assert!(text.contains("ou-zzzz-zzzzzzzz") && text.contains("o-test"), "{text}");
        let mut v = base();
        v["rules"][1]["exclude"] = json!([{"ous": ["r-zzzz"]}]);
        let (field, text) = refused(select_rules(&from_json(v).unwrap(), &o));
        assert_eq!(field, "rules[1] (auditors).exclude[0].ous[0]");
        assert!(text.contains("root r-zzzz is not in it"), "{text}");
        let mut v = base();
        v["rules"][1]["exclude"] = json!([{"accounts": ["200000000001"]}, {"accounts": ["200000000002", "999999999999"]}]);
        let (field, text) = refused(select_rules(&from_json(v).unwrap(), &o));
        assert_eq!(field, "rules[1] (auditors).exclude[1].accounts[1]");
        assert!(text.contains("999999999999 is not in it"), "{text}");
        let mut v = base();
        v["rules"][0]["targets"] = json!([{"accounts": ["999999999999"]}]);
        assert_eq!(refused(select_rules(&from_json(v).unwrap(), &o)).0, "rules[0] (prod-admins).targets[0].accounts[0]");
        let mut v = base();
        v["protectedAccounts"] = json!(["200000000001", "999999999998"]);
        let (field, text) = refused(select_rules(&from_json(v).unwrap(), &o));
        assert_eq!(field, "protectedAccounts[1]");
        assert!(text.contains("999999999998"), "{text}");
    }

    #[test]
    fn a_rule_that_leaves_no_active_account_is_refused_saying_why() {
        let o = org();
        let mut v = base();
        v["rules"][1]["targets"] = json!([{"tags": {"env": "staging"}}]);
        let (field, text) = refused(select_rules(&from_json(v).unwrap(), &o));
        assert_eq!(field, "rules[1] (auditors).targets");
        assert!(text.contains("match no account"), "{text}");
        let mut v = base();
        v["rules"][0]["targets"] = json!([{"ous": [PAYM]}]);
        v["rules"][0]["exclude"] = json!([{"accounts": ["200000000001"]}]);
        let (field, text) = refused(select_rules(&from_json(v).unwrap(), &o));
        assert_eq!(field, "rules[0] (prod-admins).targets");
        assert!(
            text.contains("match 2 account(s); `exclude` removes 1; not ACTIVE: 1: prod-payments-003 (200000000003, SUSPENDED)"),
            "{text}"
        );
    }
}
