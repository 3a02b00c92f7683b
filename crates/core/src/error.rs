//! Typed errors. Every error says whether retrying can help (`is_retryable`) and has a fixed
//! name (`error_type`) that Lambda diagnostics and the state machine's Retry/Catch match on.

use thiserror::Error;

pub type Result<T, E = FanoutError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum FanoutError {
    /// The request is wrong; nothing was changed. `field` is a JSON path in the request.
    #[error("invalid request: `{field}`{}: {expected}", value_part(.value))]
    InvalidRequest { field: String, value: String, expected: String },

    /// A named thing (permission set, group, user, OU, account) does not exist.
    #[error("not found: {what} `{name}`{hint}", hint = hint_suffix(.hint))]
    NotFound { what: String, name: String, hint: String },

    /// A name matches more than one thing.
    #[error("ambiguous {what} `{name}`: matches {candidates}; use the id or ARN instead")]
    Ambiguous { what: String, name: String, candidates: String },

    /// Request rate or outstanding-operation quota exceeded (`ThrottlingException`).
    #[error("throttled by {api}: {message}")]
    Throttled { api: String, message: String },

    /// Another operation is running on the same account (`ConflictException`).
    #[error("conflict in {api}: {message}")]
    Conflict { api: String, message: String },

    /// 5xx, timeouts, connection resets: worth another attempt.
    #[error("transient failure in {api}: {message}")]
    Transient { api: String, message: String },

    #[error("access denied in {api}: {message}")]
    AccessDenied { api: String, message: String },

    /// The call is not available here (e.g. an API the endpoint does not implement).
    #[error("{api} is not supported by this endpoint: {message}")]
    Unsupported { api: String, message: String },

    /// AWS rejected the call's parameters (`ValidationException`).
    #[error("{api} rejected the request: {message}")]
    Validation { api: String, message: String },

    #[error("store error: {0}")]
    Store(String),

    #[error("configuration error: {0}")]
    Config(String),

    #[error("internal error: {0}")]
    Internal(String),
}

/// " = <value>", or nothing when the message already quotes it (a decoding error).
fn value_part(value: &str) -> String {
    if value.is_empty() { String::new() } else { format!(" = {value}") }
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() { String::new() } else { format!(" ({hint})") }
}

/// Longest user-supplied value repeated in a message.
const MAX_ECHO_CHARS: usize = 120;

/// A user-supplied value as it is safe to repeat in a message: control characters escaped (no
/// raw escape sequences reach the terminal) and long values cut, saying how long they were.
pub fn printable(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_ECHO_CHARS {
            out.push_str(&format!("... ({} characters in all)", value.chars().count()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl FanoutError {
    pub fn invalid(field: impl Into<String>, value: impl std::fmt::Display, expected: impl Into<String>) -> Self {
        FanoutError::InvalidRequest { field: printable(&field.into()), value: printable(&value.to_string()), expected: expected.into() }
    }

    pub fn not_found(what: impl Into<String>, name: impl Into<String>, hint: impl Into<String>) -> Self {
        FanoutError::NotFound { what: what.into(), name: printable(&name.into()), hint: hint.into() }
    }

    /// Whether the same call may succeed later without any change by the user.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FanoutError::Throttled { .. } | FanoutError::Conflict { .. } | FanoutError::Transient { .. })
    }

    /// Whether the error rejects the request itself (the user must change the input).
    pub fn is_request_error(&self) -> bool {
        matches!(self, FanoutError::InvalidRequest { .. } | FanoutError::NotFound { .. } | FanoutError::Ambiguous { .. })
    }

    /// Fixed names, matched by the state machine's Retry/Catch and by scripts.
    pub fn error_type(&self) -> &'static str {
        match self {
            FanoutError::InvalidRequest { .. } | FanoutError::NotFound { .. } | FanoutError::Ambiguous { .. } => "InvalidRequest",
            FanoutError::Throttled { .. } => "Throttled",
            FanoutError::Conflict { .. } | FanoutError::Transient { .. } => "Retryable",
            FanoutError::AccessDenied { .. } => "AccessDenied",
            FanoutError::Unsupported { .. } | FanoutError::Validation { .. } => "Unsupported",
            FanoutError::Store(_) => "StoreError",
            FanoutError::Config(_) => "ConfigError",
            FanoutError::Internal(_) => "InternalError",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_echo_control_characters_or_huge_values() {
        let e = FanoutError::invalid("targets.filter", "prod\u{1b}[31m-*\n", "a wildcard");
        assert!(!e.to_string().chars().any(|c| c.is_control()), "{e}");
        assert!(e.to_string().contains("prod\\u{1b}[31m-*\\n"), "{e}");
        let huge = "x".repeat(100_000);
        let e = FanoutError::invalid("permissionSet", &huge, "a name");
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
        assert!(e.to_string().contains("100000 characters in all"), "{e}");
    }
}
