//! The one place where AWS SDK errors become `FanoutError`s.
//!
//! Classification uses the modeled error code (`ProvideErrorMetadata::code()`) and the SDK's
//! error kinds (timeout, dispatch failure, unparseable response), never the message text:
//!
//! | AWS answer | `FanoutError` |
//! |---|---|
//! | `ThrottlingException`, `TooManyRequestsException`, HTTP 429 | `Throttled` |
//! | `ConflictException`, `ConcurrentModificationException` | `Conflict` |
//! | 5xx, `InternalServerException`, `ServiceException`, timeouts, dispatch failures | `Transient` |
//! | `AccessDeniedException`, expired/unknown credentials | `AccessDenied` |
//! | `ResourceNotFoundException` (and Organizations' `*NotFoundException`) | `NotFound` |
//! | `ValidationException`, `InvalidInputException` | `Validation` |
//! | `UnknownOperationException`, `NotImplemented` | `Unsupported` |
//! | anything else | `Internal` |
//!
//! APIs that an endpoint may lack (the status listings, the principal-wide assignment listing)
//! use [`classify_optional`]: there an answer without any parseable error (moto 5.2.5 answers
//! `ListAccountAssignmentCreationStatus` with an HTML "500 Internal Server Error" page whose
//! text says "has not been implemented") is `Unsupported`, so the caller falls back to the
//! calls every endpoint has. Real AWS always answers these APIs with a modeled JSON error.

use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use sso_fanout_core::FanoutError;

/// The raw HTTP response type shared by every generated AWS SDK crate.
pub type HttpResponse = aws_sdk_ssoadmin::config::http::HttpResponse;
/// `SdkError` of any service (the type is shared by every generated crate).
pub type SdkError<E> = aws_sdk_ssoadmin::error::SdkError<E, HttpResponse>;

/// Maps an SDK error of `api` (an operation name such as `CreateAccountAssignment`).
pub fn classify<E>(api: &str, err: SdkError<E>) -> FanoutError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    classify_inner(api, &err, false)
}

/// Like [`classify`], for APIs an endpoint may not implement: an unparseable answer (no error
/// code: an HTML page, plain text, a 404/501) or an unparseable success body is `Unsupported`.
pub fn classify_optional<E>(api: &str, err: SdkError<E>) -> FanoutError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    classify_inner(api, &err, true)
}

/// DynamoDB (the run store): every failure is a `Store` error naming the call and AWS's code.
/// A table that does not exist is a configuration error naming it (`--table`, `FANOUT_TABLE`).
pub fn store_error<E>(table: &str, api: &str, err: SdkError<E>) -> FanoutError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if err.code() == Some("ResourceNotFoundException") {
        return FanoutError::Config(format!(
            "DynamoDB table `{table}` does not exist in this account and region ({api}); check --table / FANOUT_TABLE, --region and --profile"
        ));
    }
    FanoutError::Store(format!("DynamoDB {api} on table `{table}`: {}", classify_inner(api, &err, false)))
}

/// The modeled error code of an SDK error, if the service sent one.
pub fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    err.code()
}

fn classify_inner<E>(api: &str, err: &SdkError<E>, optional: bool) -> FanoutError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let api_s = api.to_string();
    let transient = |message: String| FanoutError::Transient { api: api_s.clone(), message };
    if let Some(credentials) = credentials_error(err) {
        // No credentials (or a profile that cannot produce them) is not a fault to retry.
        return FanoutError::AccessDenied {
            api: api_s,
            message: format!(
                "no usable AWS credentials ({}); set --profile / AWS_PROFILE, export credentials, or log in (aws sso login)",
                error_chain(credentials)
            ),
        };
    }
    match err {
        SdkError::TimeoutError(_) => return transient("timed out".into()),
        SdkError::DispatchFailure(_) => return transient(format!("request not delivered: {}", DisplayErrorContext(err))),
        SdkError::ConstructionFailure(_) => {
            return FanoutError::Internal(format!("{api}: could not build the request: {}", DisplayErrorContext(err)))
        }
        SdkError::ResponseError(_) if optional => {
            return FanoutError::Unsupported { api: api_s, message: format!("unparseable answer: {}", DisplayErrorContext(err)) }
        }
        // A response that could not be read or parsed (cut off, garbled): worth another attempt.
        SdkError::ResponseError(_) => return transient(format!("unreadable response: {}", DisplayErrorContext(err))),
        SdkError::ServiceError(_) => {}
        _ => return FanoutError::Internal(format!("{api}: {}", DisplayErrorContext(err))),
    }

    let message = err.message().unwrap_or("").to_string();
    if let Some(code) = err.code() {
        let message = if message.is_empty() { code.to_string() } else { format!("{code}: {message}") };
        return match code {
            "ThrottlingException"
            | "Throttling"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException"
            | "RequestThrottled"
            | "SlowDown" => FanoutError::Throttled { api: api_s, message },
            "ConflictException" | "ConcurrentModificationException" | "TransactionConflictException" => {
                FanoutError::Conflict { api: api_s, message }
            }
            "InternalServerException"
            | "InternalServerError"
            | "InternalFailure"
            | "InternalError"
            | "ServiceException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException" => FanoutError::Transient { api: api_s, message },
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "MissingAuthenticationTokenException" => FanoutError::AccessDenied { api: api_s, message },
            "AWSOrganizationsNotInUseException" => FanoutError::Config(format!(
                "{api}: this account is not part of an AWS Organization ({message}); run in the management account or the \
                 Identity Center delegated administrator account"
            )),
            "ResourceNotFoundException"
            | "AccountNotFoundException"
            | "ParentNotFoundException"
            | "OrganizationalUnitNotFoundException"
            | "TargetNotFoundException"
            | "ChildNotFoundException" => FanoutError::not_found("resource", api, message),
            "ExecutionDoesNotExist" | "StateMachineDoesNotExist" => FanoutError::not_found("resource", api, message),
            "ValidationException"
            | "InvalidInputException"
            | "InvalidParameterException"
            | "SerializationException"
            | "InvalidArn"
            | "InvalidName"
            | "InvalidExecutionInput" => {
                FanoutError::Validation { api: api_s, message }
            }
            "UnknownOperationException"
            | "NotImplemented"
            | "NotImplementedException"
            | "UnsupportedAPIEndpointException"
            | "UnsupportedOperation" => FanoutError::Unsupported { api: api_s, message },
            _ => FanoutError::Internal(format!("{api}: {message}")),
        };
    }

    // No modeled error: judge by the raw HTTP answer.
    let raw = err.raw_response();
    let status = raw.map(|r| r.status().as_u16()).unwrap_or(0);
    let body = raw.and_then(|r| r.body().bytes()).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    let content_type = raw.and_then(|r| r.headers().get("content-type")).unwrap_or("").to_ascii_lowercase();
    let unparseable = content_type.contains("html")
        || serde_json::from_str::<serde_json::Value>(&body).map(|v| !v.is_object()).unwrap_or(!body.trim().is_empty());
    let detail = format!("HTTP {status}{}", summarize_body(&body));
    if optional && (unparseable || matches!(status, 404 | 405 | 501)) {
        return FanoutError::Unsupported { api: api_s, message: format!("no parseable answer ({detail})") };
    }
    match status {
        429 => FanoutError::Throttled { api: api_s, message: detail },
        500..=599 => transient(detail),
        401 | 403 => FanoutError::AccessDenied { api: api_s, message: detail },
        _ => FanoutError::Internal(format!("{api}: unexpected answer {detail}")),
    }
}

/// The credential provider's error, when the request failed because no credentials could be
/// loaded (the SDK reports it as a dispatch failure); a provider that timed out is left to the
/// transient path.
fn credentials_error<E>(err: &SdkError<E>) -> Option<&aws_credential_types::provider::error::CredentialsError>
where
    E: std::error::Error + 'static,
{
    use aws_credential_types::provider::error::CredentialsError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return (!matches!(c, CredentialsError::ProviderTimedOut(_))).then_some(c);
        }
        source = e.source();
    }
    None
}

/// "outer: inner: innermost", one line (the SDK's own context adds a debug dump).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A short, single-line excerpt of a response body for error messages (HTML tags dropped).
fn summarize_body(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(if c.is_whitespace() { ' ' } else { c }),
            _ => {}
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        let cut: String = text.chars().take(200).collect();
        format!(": {cut}{}", if text.chars().count() > 200 { "..." } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::summarize_body;

    #[test]
    fn body_summary_drops_markup() {
        let html = "<!doctype html>\n<html><title>500 Internal Server Error</title><h1>Internal Server Error</h1></html>";
        assert_eq!(summarize_body(html), ": 500 Internal Server Error Internal Server Error");
        assert_eq!(summarize_body(""), "");
    }
}
