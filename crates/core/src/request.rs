//! The run request: one JSON contract for the CLI, Step Functions input, schedules and CI.
//! Parsing is strict (unknown fields are errors) and validation names the field, the value and
//! what is accepted, before anything is changed anywhere.

use crate::error::{FanoutError, Result};
use crate::model::{Account, Operation, PrincipalType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wildmatch::WildMatch;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    pub operation: Operation,
    /// A permission set name or ARN.
    pub permission_set: String,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrincipalRef {
    #[serde(rename = "type")]
    pub kind: PrincipalType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Which accounts the run targets. See `targeting` for the exact rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Targets {
    /// Wildcard on the account name (`*`, `prod-*`, `*-sandbox`), or `tag:Key=Value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ous: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Optional overrides; the planner clamps them to the published quotas and says so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tuning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Assignment operations in flight at once (the seed's "max concurrent accounts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

impl RunRequest {
    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<RunRequest> {
        let request: RunRequest = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text)).map_err(json_error)?;
        request.validate()?;
        Ok(request)
    }

    /// Parses and validates an already-decoded JSON value (the Lambda event).
    pub fn from_value(value: serde_json::Value) -> Result<RunRequest> {
        let request: RunRequest = serde_path_to_error::deserialize(value).map_err(json_error)?;
        request.validate()?;
        Ok(request)
    }

    /// Checks everything that can be checked without calling AWS.
    pub fn validate(&self) -> Result<()> {
        let ps = self.permission_set.trim();
        if ps.is_empty() {
            return Err(FanoutError::invalid("permissionSet", "\"\"", "a permission set name or ARN"));
        }
        if ps.starts_with("arn:") && !is_permission_set_arn(ps) {
            return Err(FanoutError::invalid(
                "permissionSet",
                ps,
                "an ARN of the form arn:aws:sso:::permissionSet/ssoins-<16 hex>/ps-<16 hex>, or a permission set name",
            ));
        }
        match (&self.principal.name, &self.principal.id) {
            (None, None) => {
                return Err(FanoutError::invalid("principal", "{}", "`name` (group display name or user name) or `id`"))
            }
            (Some(_), Some(_)) => {
                return Err(FanoutError::invalid("principal", "both name and id", "exactly one of `name` or `id`"))
            }
            (Some(n), None) if n.trim().is_empty() => {
                return Err(FanoutError::invalid("principal.name", "\"\"", "a non-empty group display name or user name"))
            }
            (None, Some(id)) if !is_identity_store_id(id) => {
                return Err(FanoutError::invalid(
                    "principal.id",
                    id,
                    "an Identity Store id (a UUID, optionally prefixed by a 10-hex-digit store prefix and '-')",
                ))
            }
            _ => {}
        }
        let t = &self.targets;
        for (i, id) in t.accounts.iter().enumerate() {
            check_account_id(&format!("targets.accounts[{i}]"), id)?;
        }
        for (i, id) in t.exclude.iter().enumerate() {
            check_account_id(&format!("targets.exclude[{i}]"), id)?;
        }
        for (i, ou) in t.ous.iter().enumerate() {
            if !is_ou_or_root_id(ou) {
                return Err(FanoutError::invalid(
                    format!("targets.ous[{i}]"),
                    ou,
                    "an OU id like ou-ab12-cd34ef56 (or a root id like r-ab12)",
                ));
            }
        }
        for (k, v) in &t.tags {
            if k.trim().is_empty() {
                return Err(FanoutError::invalid("targets.tags", format!("{k:?}: {v:?}"), "non-empty tag keys"));
            }
        }
        if let Some(filter) = &t.filter {
            NameFilter::parse(filter)?;
        }
        if t.filter.is_none() && t.accounts.is_empty() && t.ous.is_empty() && t.tags.is_empty() {
            return Err(FanoutError::invalid(
                "targets",
                "no selector",
                "at least one of `filter` (e.g. \"prod-*\" or \"*\" for all), `accounts`, `ous` or `tags`",
            ));
        }
        if let Some(tuning) = &self.tuning {
            for (field, value) in [
                ("tuning.batchSize", tuning.batch_size),
                ("tuning.concurrency", tuning.concurrency),
                ("tuning.accountTimeoutSeconds", tuning.account_timeout_seconds),
            ] {
                if value == Some(0) {
                    return Err(FanoutError::invalid(field, 0, "a positive number"));
                }
            }
        }
        Ok(())
    }
}

/// A decoding error with the JSON path of the field it is about (`tuning.concurrency`,

/// `targets.filter`: a wildcard on the account name, or `tag:Key=Value`.
#[derive(Debug, Clone)]
pub enum NameFilter {
    Name(WildMatch),
    Tag { key: String, value: String },
}

impl NameFilter {
    pub fn parse(text: &str) -> Result<NameFilter> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FanoutError::invalid("targets.filter", "\"\"", "a wildcard such as \"*\", \"prod-*\" or \"tag:env=prod\""));
        }
        if let Some(rest) = text.strip_prefix("tag:") {
            return match rest.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok(NameFilter::Tag { key: k.to_string(), value: v.to_string() }),
                _ => Err(FanoutError::invalid("targets.filter", text, "tag:Key=Value, e.g. tag:env=prod")),
            };
        }
        Ok(NameFilter::Name(WildMatch::new(text)))
    }

    pub fn matches(&self, account: &Account) -> bool {
        match self {
            NameFilter::Name(w) => w.matches(&account.name),
            NameFilter::Tag { key, value } => account.tags.get(key) == Some(value),
        }
    }
}

/// `targets.accounts`): serde's message says what was found and what is expected.
fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> FanoutError {
    let path = e.path().to_string();
    let field = if path.is_empty() || path == "." { "request".to_string() } else { path };
    let inner = e.into_inner();
    // Values decoded by Lambda have no position; text from a file or stdin does.
    let at = if inner.line() == 0 { "the request".to_string() } else { format!("line {}, column {}", inner.line(), inner.column()) };
    FanoutError::invalid(field, at, format!("{inner}; see README \"The request\""))
}

fn check_account_id(field: &str, id: &str) -> Result<()> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(FanoutError::invalid(field, id, "a 12-digit AWS account id"))
    }
}

pub fn is_permission_set_arn(s: &str) -> bool {
    // arn:<partition>:sso:::permissionSet/ssoins-<hex>/ps-<hex>
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sso"), Some(""), Some(""), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let segs: Vec<&str> = resource.split('/').collect();
    !partition.is_empty()
        && segs.len() == 3
        && segs[0] == "permissionSet"
        && hex_suffix(segs[1], "ssoins-")
        && hex_suffix(segs[2], "ps-")
}

fn hex_suffix(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_identity_store_id(s: &str) -> bool {
    // Identity Store ids are UUIDs, optionally prefixed with "<10 hex>-".
    let uuid = match s.len() {
        36 => s,
        47 if s.as_bytes()[10] == b'-' && s[..10].bytes().all(|b| b.is_ascii_hexdigit()) => &s[11..],
        _ => return false,
    };
    uuid.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn is_ou_or_root_id(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix("ou-") {
        let mut it = rest.splitn(2, '-');
        let (Some(a), Some(b)) = (it.next(), it.next()) else { return false };
        (4..=32).contains(&a.len()) && (8..=32).contains(&b.len()) && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_alphanumeric() && !c.is_ascii_uppercase())
    } else if let Some(rest) = s.strip_prefix("r-") {
        (4..=32).contains(&rest.len()) && rest.bytes().all(|c| c.is_ascii_alphanumeric() && !c.is_ascii_uppercase())
    } else {
        false
    }
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
    fn recognises_arns_and_ids() {
        assert!(is_permission_set_arn("arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef"));
        assert!(!is_permission_set_arn("arn:aws:sso:::instance/ssoins-1234567890abcdef"));
        assert!(is_identity_store_id("906771c1-0071-7057-3a0c-1d1c4ba2c2e8"));
        assert!(is_identity_store_id("9067729b3d-94f1e788-9f0d-4a6f-a4d4-0fc2b1b0a6e3".replacen("94f1e788", "94f1e788", 1).as_str()));
        assert!(is_ou_or_root_id("ou-ab12-cd34ef56"));
        assert!(!is_ou_or_root_id("ou-AB12-cd34ef56"));
        assert!(is_ou_or_root_id("r-ab12"));
    }
}
