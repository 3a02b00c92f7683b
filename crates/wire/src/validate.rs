//! Every request against its operation's input shape, as AWS validates it before acting: the
//! required members, string and list lengths, numeric ranges, patterns, enums and unions.
//! Members the model does not name are ignored and `null` counts as absent, as on AWS's JSON
//! protocols. A value of the wrong JSON type is a `SerializationException`, as AWS's JSON
//! services answer a body they cannot read into the shape.
//!
//! The refusal takes the service's own error shape (each model's operations list it):
//! sso-admin and Identity Store answer `ValidationException` with AWS's constraint message
//! ("1 validation error detected: Value 'abc' at 'accountId' failed to satisfy constraint:
//! Member must ..."; members named in lowerCamelCase from the top, list items as
//! `name.N.member`, values of `sensitive` shapes not shown); Organizations answers
//! `InvalidInputException` with a `Reason` (`InvalidInputExceptionReason`) and that reason's
//! sentence, followed by the same constraint detail for the first violation.

use crate::model::{Bounds, Model, Service, Shape};
use crate::WireError;
use serde_json::Value;

/// One member that breaks its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// `alternateIdentifier.uniqueAttribute.attributePath`, `filters.1.member.attributeValue`.
    pub path: String,
    /// The value as the message shows it: `None` for an absent (null) or sensitive one.
    pub shown: Option<String>,
    pub constraint: Constraint,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    Required,
    MinLength(f64),
    MaxLength(f64),
    MinValue(f64),
    MaxValue(f64),
    Pattern(String),
    Enum(Vec<String>),
    /// A union with this many members set instead of exactly one.
    OneMemberOfUnion(usize),
}

impl Constraint {
    /// AWS's wording (Coral's constraint messages) after "failed to satisfy constraint: ".
    fn text(&self) -> String {
        match self {
            Constraint::Required => "Member must not be null".into(),
            Constraint::MinLength(n) => {
                format!("Member must have length greater than or equal to {n}")
            }
            Constraint::MaxLength(n) => {
                format!("Member must have length less than or equal to {n}")
            }
            Constraint::MinValue(n) => {
                format!("Member must have value greater than or equal to {n}")
            }
            Constraint::MaxValue(n) => format!("Member must have value less than or equal to {n}"),
            Constraint::Pattern(p) => {
                format!("Member must satisfy regular expression pattern: {p}")
            }
            Constraint::Enum(values) => format!(
                "Member must satisfy enum value set: [{}]",
                values.join(", ")
            ),
            // AWS's text for a union is not known (no served operation of ours has seen one
            // refused): our words.
            Constraint::OneMemberOfUnion(n) => {
                format!("Member must have exactly one member set, found {n}")
            }
        }
    }

    /// Organizations' `InvalidInputExceptionReason` for this constraint, and the sentence its
    /// model documents for that reason (INVALID_PATTERN's as AWS answered it, see
    /// aws-ia/terraform-aws-control_tower_account_factory#287).
    fn organizations_reason(&self) -> (&'static str, &'static str) {
        match self {
            Constraint::Required | Constraint::OneMemberOfUnion(_) => (
                "INPUT_REQUIRED",
                "You must include a value for all required parameters.",
            ),
            Constraint::MinLength(_) => (
                "MIN_LENGTH_EXCEEDED",
                "You provided a string parameter that is shorter than allowed.",
            ),
            Constraint::MaxLength(_) => (
                "MAX_LENGTH_EXCEEDED",
                "You provided a string parameter that is longer than allowed.",
            ),
            Constraint::MinValue(_) => (
                "MIN_VALUE_EXCEEDED",
                "You provided a numeric parameter that has a smaller value than allowed.",
            ),
            Constraint::MaxValue(_) => (
                "MAX_VALUE_EXCEEDED",
                "You provided a numeric parameter that has a larger value than allowed.",
            ),
            Constraint::Pattern(_) => (
                "INVALID_PATTERN",
                "You provided a value that does not match the required pattern.",
            ),
            Constraint::Enum(_) => ("INVALID_ENUM", "You specified an invalid value."),
        }
    }
}

impl Violation {
    /// "Value 'abc' at 'accountId' failed to satisfy constraint: Member must ...".
    pub fn message(&self) -> String {
        let value = match (&self.shown, &self.constraint) {
            (None, Constraint::Required) => "Value null".to_string(),
            (None, _) => "Value".to_string(),
            (Some(v), _) => format!("Value '{v}'"),
        };
        format!(
            "{value} at '{}' failed to satisfy constraint: {}",
            self.path,
            self.constraint.text()
        )
    }
}

/// Why a request was refused before the operation ran.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Invalid(Vec<Violation>),
    /// A member of the wrong JSON type: what the service could not read, and where.
    Unreadable(String),
}

/// Validates `input` against `operation`'s input shape in `service`'s model. `Ok` also for an
/// operation the model does not list (the caller answers it as unknown).
pub fn check(service: Service, operation: &str, input: &Value) -> Result<(), WireError> {
    let model = service.model();
    let Some(Some(shape)) = model.operations.get(operation) else {
        return Ok(());
    };
    match violations(model, shape, input) {
        Ok(found) if found.is_empty() => Ok(()),
        Ok(found) => Err(refusal(service, &Refusal::Invalid(found))),
        Err(unreadable) => Err(refusal(service, &Refusal::Unreadable(unreadable))),
    }
}

/// Every violation of `shape` in `input` (the top-level request), or the first member of the
/// wrong type.
pub fn violations(model: &Model, shape: &str, input: &Value) -> Result<Vec<Violation>, String> {
    let mut found = Vec::new();
    walk(model, shape, input, "", &mut found)?;
    Ok(found)
}

/// The service's answer to a refused request.
pub fn refusal(service: Service, refusal: &Refusal) -> WireError {
    match (service, refusal) {
        (_, Refusal::Unreadable(what)) => {
            WireError::new(400, "SerializationException", what.clone())
        }
        (Service::Organizations, Refusal::Invalid(found)) => {
            let first = &found[0];
            let (reason, sentence) = first.constraint.organizations_reason();
            WireError::invalid_input(reason, format!("{sentence} {}", first.message()))
        }
        (_, Refusal::Invalid(found)) => {
            let count = match found.len() {
                1 => "1 validation error detected".to_string(),
                n => format!("{n} validation errors detected"),
            };
            let details: Vec<String> = found.iter().map(Violation::message).collect();
            WireError::validation(format!("{count}: {}", details.join("; ")))
        }
    }
}

fn member_path(parent: &str, member: &str) -> String {
    let mut chars = member.chars();
    let lower: String = chars
        .next()
        .map(|f| f.to_lowercase().chain(chars).collect())
        .unwrap_or_default();
    if parent.is_empty() {
        lower
    } else {
        format!("{parent}.{lower}")
    }
}

/// How a value appears in a message: strings and numbers bare, anything else as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn unreadable(path: &str, expected: &str, value: &Value) -> String {
    let at = if path.is_empty() {
        "the request".to_string()
    } else {
        format!("'{path}'")
    };
    format!("Expected {expected} at {at}, found {}", shown(value))
}

fn within(
    bounds: &Bounds,
    n: f64,
    min: fn(f64) -> Constraint,
    max: fn(f64) -> Constraint,
) -> Vec<Constraint> {
    let mut broken = Vec::new();
    if let Some(lo) = bounds.min.filter(|lo| n < *lo) {
        broken.push(min(lo));
    }
    if let Some(hi) = bounds.max.filter(|hi| n > *hi) {
        broken.push(max(hi));
    }
    broken
}

fn walk(
    model: &Model,
    shape: &str,
    value: &Value,
    path: &str,
    found: &mut Vec<Violation>,
) -> Result<(), String> {
    let mut broken: Vec<Constraint> = Vec::new();
    let mut sensitive = false;
    match model.shape(shape) {
        Shape::Document => {}
        Shape::Structure {
            members,
            required,
            union,
        } => {
            let fields = value
                .as_object()
                .ok_or_else(|| unreadable(path, "an object", value))?;
            let mut set = 0;
            for (name, target) in members {
                match fields.get(name) {
                    None | Some(Value::Null) => {
                        if required.contains(name) {
                            found.push(Violation {
                                path: member_path(path, name),
                                shown: None,
                                constraint: Constraint::Required,
                            });
                        }
                    }
                    Some(member) => {
                        set += 1;
                        walk(model, target, member, &member_path(path, name), found)?;
                    }
                }
            }
            if *union && set != 1 {
                broken.push(Constraint::OneMemberOfUnion(set));
            }
        }
        Shape::List { member, length } => {
            let items = value
                .as_array()
                .ok_or_else(|| unreadable(path, "a list", value))?;
            broken.extend(within(
                length,
                items.len() as f64,
                Constraint::MinLength,
                Constraint::MaxLength,
            ));
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}.{}.member", i + 1);
                if item.is_null() {
                    found.push(Violation {
                        path: at,
                        shown: None,
                        constraint: Constraint::Required,
                    });
                } else {
                    walk(model, member, item, &at, found)?;
                }
            }
        }
        Shape::Map {
            key,
            value: target,
            length,
        } => {
            let entries = value
                .as_object()
                .ok_or_else(|| unreadable(path, "a map", value))?;
            broken.extend(within(
                length,
                entries.len() as f64,
                Constraint::MinLength,
                Constraint::MaxLength,
            ));
            for (k, v) in entries {
                walk(model, key, &Value::String(k.clone()), path, found)?;
                if !v.is_null() {
                    walk(model, target, v, &format!("{path}.{k}"), found)?;
                }
            }
        }
        Shape::String {
            length,
            pattern,
            enumeration,
            sensitive: hidden,
        } => {
            let text = value
                .as_str()
                .ok_or_else(|| unreadable(path, "a string", value))?;
            sensitive = *hidden;
            // Smithy counts a string's length in Unicode scalar values.
            broken.extend(within(
                length,
                text.chars().count() as f64,
                Constraint::MinLength,
                Constraint::MaxLength,
            ));
            if let Some(p) = pattern.as_ref().filter(|p| !p.matches(text)) {
                broken.push(Constraint::Pattern(p.source.clone()));
            }
            if let Some(values) = enumeration
                .as_ref()
                .filter(|values| !values.iter().any(|v| v == text))
            {
                broken.push(Constraint::Enum(values.clone()));
            }
        }
        Shape::Integer { bits, range } => {
            let n = value
                .as_i64()
                .filter(|n| *bits == 64 || i32::try_from(*n).is_ok());
            let n = n.ok_or_else(|| unreadable(path, &format!("a {bits}-bit integer"), value))?;
            broken.extend(within(
                range,
                n as f64,
                Constraint::MinValue,
                Constraint::MaxValue,
            ));
        }
        Shape::Number { range } => {
            let n = value
                .as_f64()
                .ok_or_else(|| unreadable(path, "a number", value))?;
            broken.extend(within(range, n, Constraint::MinValue, Constraint::MaxValue));
        }
        Shape::Boolean => {
            value
                .as_bool()
                .ok_or_else(|| unreadable(path, "a boolean", value))?;
        }
        Shape::Timestamp => {
            value
                .as_f64()
                .ok_or_else(|| unreadable(path, "a timestamp (epoch seconds)", value))?;
        }
        Shape::Blob => {
            value
                .as_str()
                .ok_or_else(|| unreadable(path, "base64 text", value))?;
        }
    }
    let shown_value = (!sensitive).then(|| shown(value));
    found.extend(broken.into_iter().map(|constraint| Violation {
        path: path.to_string(),
        shown: shown_value.clone(),
        constraint,
    }));
    Ok(())
}
