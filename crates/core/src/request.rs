//! The run request: one JSON contract for the CLI, Step Functions input, schedules and CI.
//!
//! Parse, don't validate: the request deserializes into types that cannot hold an invalid value
//! (ids are `ids` newtypes, the principal is by name *or* by id, the name filter is parsed,
//! tuning numbers are non-zero, targets have at least one selector). Every error names the
//! field by its JSON path, the value and what is accepted, before anything is read or written.

use crate::error::{FanoutError, Result};
use crate::ids::{AccountId, OuId, PermissionSetArn, PrincipalId};
use crate::model::{Account, Operation, PrincipalType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use wildmatch::WildMatch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    pub operation: Operation,
    pub permission_set: PermissionSetRef,
    pub principal: PrincipalRef,
    pub targets: Targets,
    #[serde(default)]
    pub dry_run: bool,
    /// Re-read the organization from Organizations even when the account cache is fresh.
    #[serde(default)]
    pub refresh_cache: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
}

/// A permission set by ARN, or by name (resolved by the planner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PermissionSetRef {
    Arn(PermissionSetArn),
    Name(String),
}

impl TryFrom<String> for PermissionSetRef {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty name: give a permission set name or ARN".into());
        }
        if text.starts_with("arn:") {
            return PermissionSetArn::parse(text).map(PermissionSetRef::Arn).map_err(|e| format!("{e}, nor a permission set name"));
        }
        Ok(PermissionSetRef::Name(text.to_string()))
    }
}

impl std::str::FromStr for PermissionSetRef {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        PermissionSetRef::try_from(text.to_string())
    }
}

impl From<PermissionSetRef> for String {
    fn from(r: PermissionSetRef) -> String {
        match r {
            PermissionSetRef::Arn(arn) => arn.into(),
            PermissionSetRef::Name(name) => name,
        }
    }
}

impl std::fmt::Display for PermissionSetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PermissionSetRef::Arn(arn) => arn.fmt(f),
            PermissionSetRef::Name(name) => f.write_str(name),
        }
    }
}

/// The principal: a group display name / user name, or an Identity Store id (exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PrincipalFields", into = "PrincipalFields")]
pub enum PrincipalRef {
    Name { kind: PrincipalType, name: String },
    Id { kind: PrincipalType, id: PrincipalId },
}

impl PrincipalRef {
    pub fn kind(&self) -> PrincipalType {
        match self {
            PrincipalRef::Name { kind, .. } | PrincipalRef::Id { kind, .. } => *kind,
        }
    }
}

/// The principal as written in JSON: `{"type", "name"}` or `{"type", "id"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrincipalFields {
    #[serde(rename = "type")]
    kind: PrincipalType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<PrincipalId>,
}

impl TryFrom<PrincipalFields> for PrincipalRef {
    type Error = &'static str;
    fn try_from(p: PrincipalFields) -> std::result::Result<Self, &'static str> {
        match (p.name, p.id) {
            (Some(name), None) if name.trim().is_empty() => Err("an empty `name`: give a group display name or user name"),
            (Some(name), None) => Ok(PrincipalRef::Name { kind: p.kind, name }),
            (None, Some(id)) => Ok(PrincipalRef::Id { kind: p.kind, id }),
            (Some(_), Some(_)) => Err("both `name` and `id`: give exactly one"),
            (None, None) => Err("neither `name` (group display name or user name) nor `id`: give one"),
        }
    }
}

impl From<PrincipalRef> for PrincipalFields {
    fn from(p: PrincipalRef) -> PrincipalFields {
        match p {
            PrincipalRef::Name { kind, name } => PrincipalFields { kind, name: Some(name), id: None },
            PrincipalRef::Id { kind, id } => PrincipalFields { kind, name: None, id: Some(id) },
        }
    }
}

/// Which accounts the run targets. See `targeting` for the exact rule. Parsed from JSON only
/// with at least one selector among `filter`, `accounts`, `ous` and `tags`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "TargetFields")]
pub struct Targets {
    /// Wildcard on the account name (`*`, `prod-*`, `*-sandbox`), or `tag:Key=Value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<NameFilter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ous: Vec<OuId>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<AccountId>,
}

/// `targets` as written in JSON, before the whole is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetFields {
    #[serde(default)]
    filter: Option<NameFilter>,
    #[serde(default)]
    accounts: Vec<AccountId>,
    #[serde(default)]
    ous: Vec<OuId>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    exclude: Vec<AccountId>,
}

impl TryFrom<TargetFields> for Targets {
    type Error = String;
    fn try_from(t: TargetFields) -> std::result::Result<Self, String> {
        if let Some((k, v)) = t.tags.iter().find(|(k, _)| k.trim().is_empty()) {
            return Err(format!("an empty tag key ({k:?}: {v:?}): tag keys must be non-empty"));
        }
        if t.filter.is_none() && t.accounts.is_empty() && t.ous.is_empty() && t.tags.is_empty() {
            return Err("no selector: give at least one of `filter` (e.g. \"prod-*\" or \"*\" for all), `accounts`, `ous` or `tags`".into());
        }
        Ok(Targets { filter: t.filter, accounts: t.accounts, ous: t.ous, tags: t.tags, exclude: t.exclude })
    }
}

/// Optional overrides; the planner clamps them to the published quotas and says so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tuning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<NonZeroU32>,
    /// Assignment operations in flight at once (the seed's "max concurrent accounts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_timeout_seconds: Option<NonZeroU32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

impl RunRequest {
    /// Parses a JSON document (a key given twice anywhere is refused: see `document`).
    pub fn from_json(text: &str) -> Result<RunRequest> {
        RunRequest::from_value(crate::document::json(text, WHOLE_REQUEST)?)
    }

    /// Parses an already-decoded JSON value (the Lambda event, the CLI's flags).
    pub fn from_value(value: serde_json::Value) -> Result<RunRequest> {
        serde_path_to_error::deserialize(value).map_err(json_error)
    }
}

/// What a run starts from (the CLI's request file, the state machine's input): the single-pair
/// request, `{"rules": ...}` (a rules document), or `{"reconcile": "name"}` (a stored one).
#[derive(Debug, Clone, PartialEq)]
pub enum RunInput {
    Single(RunRequest),
    Rules(crate::desired::RulesRequest),
    Reconcile(crate::desired::ReconcileRequest),
}

impl RunInput {
    /// Tells the three apart by their one required key (`rules`, `reconcile`, else the single
    /// request), then parses that shape, so errors name the fields of the shape meant.
    pub fn from_value(value: serde_json::Value) -> Result<RunInput> {
        if value.get("rules").is_some() {
            return crate::desired::RulesRequest::from_value(value).map(RunInput::Rules);
        }
        if value.get("reconcile").is_some() {
            let request: crate::desired::ReconcileRequest = serde_path_to_error::deserialize(value).map_err(json_error)?;
            crate::desired::check_name(&request.reconcile)?;
            return Ok(RunInput::Reconcile(request));
        }
        RunRequest::from_value(value).map(RunInput::Single)
    }

    /// Parses a JSON document (a key given twice anywhere is refused: see `document`).
    pub fn from_json(text: &str) -> Result<RunInput> {
        RunInput::from_value(crate::document::json(text, WHOLE_REQUEST)?)
    }

    pub fn dry_run(&self) -> bool {
        match self {
            RunInput::Single(r) => r.dry_run,
            RunInput::Rules(r) => r.dry_run,
            RunInput::Reconcile(r) => r.dry_run,
        }
    }

    /// The same input as a dry run (`plan`): planned and shown, nothing stored or changed.
    pub fn into_dry_run(mut self) -> RunInput {
        match &mut self {
            RunInput::Single(r) => r.dry_run = true,
            RunInput::Rules(r) => r.dry_run = true,
            RunInput::Reconcile(r) => r.dry_run = true,
        }
        self
    }
}

/// `targets.filter`: a wildcard on the account name, or `tag:Key=Value`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NameFilter {
    Name { pattern: String, matcher: WildMatch },
    Tag { key: String, value: String },
}

impl PartialEq for NameFilter {
    fn eq(&self, other: &NameFilter) -> bool {
        String::from(self.clone()) == String::from(other.clone())
    }
}

impl NameFilter {
    pub fn parse(text: &str) -> std::result::Result<NameFilter, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty filter: give a wildcard such as \"*\", \"prod-*\" or \"tag:env=prod\"".into());
        }
        if let Some(rest) = text.strip_prefix("tag:") {
            return match rest.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok(NameFilter::Tag { key: k.to_string(), value: v.to_string() }),
                _ => Err(format!("`{}` is not tag:Key=Value (e.g. tag:env=prod)", crate::error::printable(text))),
            };
        }
        Ok(NameFilter::Name { pattern: text.to_string(), matcher: WildMatch::new(text) })
    }

    pub fn matches(&self, account: &Account) -> bool {
        match self {
            NameFilter::Name { matcher, .. } => matcher.matches(&account.name),
            NameFilter::Tag { key, value } => account.tags.get(key) == Some(value),
        }
    }
}

impl TryFrom<String> for NameFilter {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        NameFilter::parse(&text)
    }
}

impl From<NameFilter> for String {
    fn from(f: NameFilter) -> String {
        match f {
            NameFilter::Name { pattern, .. } => pattern,
            NameFilter::Tag { key, value } => format!("tag:{key}={value}"),
        }
    }
}

impl std::fmt::Display for NameFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from(self.clone()))
    }
}

/// Where the request itself is named in errors that are about no one field.
const WHOLE_REQUEST: &str = "request";

/// A decoding error with the JSON path of the field it is about (`tuning.concurrency`,
/// `targets.accounts`): serde's message says what was found and what is expected.
fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> FanoutError {
    let path = e.path().to_string();
    let field = if path.is_empty() || path == "." { WHOLE_REQUEST.to_string() } else { path };
    // serde's message quotes the value and, for text from a file or stdin, its line and column.
    FanoutError::invalid(field, "", format!("{}; see README \"The request\"", e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "operation": "assign",
            "permissionSet": "AdministratorAccess",
            "principal": {"type": "GROUP", "name": "PlatformAdmins"},
            "targets": {"filter": "prod-*"}
        })
    }

    fn field_of(err: FanoutError) -> String {
        match err {
            FanoutError::InvalidRequest { field, .. } => field,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_documented_example() {
        let text = r#"{"operation":"assign","permissionSet":"AdministratorAccess",
            "principal":{"type":"GROUP","name":"PlatformAdmins"},
            "targets":{"filter":"prod-*","accounts":[],"ous":[],"tags":{"env":"prod"},"exclude":[]},
            "dryRun":false}"#;
        let r = RunRequest::from_json(text).unwrap();
        assert_eq!(r.operation, Operation::Assign);
        assert_eq!(r.targets.tags.get("env").map(String::as_str), Some("prod"));
    }

    #[test]
    fn rejects_unknown_fields_and_operations() {
        let mut v = base();
        v["targetz"] = serde_json::json!({});
        let e = RunRequest::from_value(v).unwrap_err();
        assert!(e.to_string().contains("targetz"), "{e}");
        let mut v = base();
        v["operation"] = "grant".into();
        let e = RunRequest::from_value(v).unwrap_err();
        assert!(e.to_string().contains("grant") && e.to_string().contains("revoke"), "{e}");
        assert_eq!(field_of(e), "operation");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let mut v = base();
        v["tuning"] = serde_json::json!({"concurrency": "10"});
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "tuning.concurrency");
        let mut v = base();
        v["targets"] = serde_json::json!({"accounts": "123456789012"});
        let e = RunRequest::from_value(v).unwrap_err();
        assert!(e.to_string().contains("a sequence"), "{e}");
        assert_eq!(field_of(e), "targets.accounts");
        let text = r#"{"operation":"assign","permissionSet":"A","principal":{"type":"GROUP","name":"G"},"targets":{"filter":"*"},"dryRun":"yes"}"#;
        assert_eq!(field_of(RunRequest::from_json(text).unwrap_err()), "dryRun");
    }

    #[test]
    fn a_key_given_twice_is_refused_never_resolved_by_order() {
        let text = r#"{"operation":"assign","operation":"revoke","permissionSet":"A",
            "principal":{"type":"GROUP","name":"G"},"targets":{"filter":"*"}}"#;
        for parsed in [RunRequest::from_json(text).map(|_| ()), RunInput::from_json(text).map(|_| ())] {
            let e = parsed.unwrap_err();
            assert!(e.to_string().contains("given twice"), "{e}");
            assert_eq!(field_of(e), "operation");
        }
        let text = r#"{"operation":"assign","permissionSet":"A","principal":{"type":"GROUP","name":"G"},
            "targets":{"tags":{"env":"prod","env":"dev"}}}"#;
        assert_eq!(field_of(RunInput::from_json(text).unwrap_err()), "targets.tags.env");
        let text = r#"{"rules":{"version":1,"version":1,"rules":[]}}"#;
        assert_eq!(field_of(RunInput::from_json(text).unwrap_err()), "rules.version");
    }

    #[test]
    fn rejects_malformed_ids_naming_the_field() {
        let mut v = base();
        v["targets"]["accounts"] = serde_json::json!(["123456789012", "12345"]);
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "targets.accounts[1]");
        let mut v = base();
        v["targets"]["ous"] = serde_json::json!(["prod"]);
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "targets.ous[0]");
        let mut v = base();
        v["permissionSet"] = "arn:aws:sso:::permissionSet/nope".into();
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "permissionSet");
        let mut v = base();
        v["principal"] = serde_json::json!({"type": "USER", "id": "not-a-uuid"});
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "principal.id");
    }

    #[test]
    fn requires_a_selector_and_a_principal() {
        let mut v = base();
        v["targets"] = serde_json::json!({"exclude": ["123456789012"]});
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "targets");
        let mut v = base();
        v["principal"] = serde_json::json!({"type": "GROUP"});
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "principal");
    }

    #[test]
    fn zero_tuning_and_ambiguous_principals_are_refused_at_parse_time() {
        let mut v = base();
        v["tuning"] = serde_json::json!({"batchSize": 0});
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "tuning.batchSize");
        let mut v = base();
        v["principal"] = serde_json::json!({"type": "GROUP", "name": "G", "id": "906771c1-0071-7057-3a0c-1d1c4ba2c2e8"});
        let e = RunRequest::from_value(v).unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        let mut v = base();
        v["targets"]["filter"] = "tag:=x".into();
        assert_eq!(field_of(RunRequest::from_value(v).unwrap_err()), "targets.filter");
    }

    #[test]
    fn a_parsed_request_serializes_back_to_the_same_document() {
        let mut v = base();
        v["principal"] = serde_json::json!({"type": "USER", "id": "906771c1-0071-7057-3a0c-1d1c4ba2c2e8"});
        v["targets"] = serde_json::json!({"filter": "tag:env=prod", "ous": ["ou-ab12-cd34ef56"], "exclude": ["123456789012"]});
        let r = RunRequest::from_value(v.clone()).unwrap();
        assert!(matches!(r.principal, PrincipalRef::Id { kind: PrincipalType::User, .. }));
        let again = RunRequest::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(again, r);
        assert_eq!(serde_json::to_value(&r).unwrap()["targets"], v["targets"]);
    }
}
