//! Running a handler: the Lambda runtime loop, or one-shot mode (`--once`: event JSON on stdin,
//! response JSON on stdout; on error the Lambda-style `{"errorType", "errorMessage"}` and exit
//! status 1), which lets the real state machine run locally with the built binaries.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sso_fanout_core::FanoutError;
use std::future::Future;
use std::io::Read;

fn one_shot() -> bool {
    std::env::args().nth(1).as_deref() == Some("--once")
}

/// Logging: Lambda's default subscriber (stdout, JSON when the function's log format is JSON);
/// in one-shot mode on stderr, so that stdout carries only the response.
pub fn init_logging() {
    if one_shot() {
        lambda_runtime::tracing::init_default_subscriber_with_writer(std::io::stderr);
    } else {
        lambda_runtime::tracing::init_default_subscriber();
    }
}

/// A `FanoutError` as Lambda reports it: `error_type` is the fixed name the state machine's
/// Retry/Catch match (`InvalidRequest`, `Throttled`, `Retryable`, ...).
pub fn diagnostic(e: &FanoutError) -> Diagnostic {
    Diagnostic { error_type: e.error_type().to_string(), error_message: e.to_string() }
}

/// Serves `handler` in the Lambda runtime, or once when the first argument is `--once`.
pub async fn serve<H, F, R>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(Value) -> F,
    F: Future<Output = sso_fanout_core::Result<R>>,
    R: Serialize,
{
    if one_shot() {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        let outcome = match event(&text) {
            Ok(event) => handler(event).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(response) => println!("{}", serde_json::to_string(&response)?),
            Err(e) => {
                tracing::error!(error = %e, error_type = e.error_type(), "invocation failed");
                println!("{}", serde_json::to_string(&diagnostic(&e))?);
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    lambda_runtime::run(service_fn(|invocation: LambdaEvent<Box<RawValue>>| {
        let fut = event(invocation.payload.get()).map(&handler);
        async move {
            let outcome = match fut {
                Ok(fut) => fut.await,
                Err(e) => Err(e),
            };
            outcome.map_err(|e| {
                tracing::error!(error = %e, error_type = e.error_type(), "invocation failed");
                diagnostic(&e)
            })
        }
    }))
    .await
}

/// The event as text, read as every document is (`document::json`): a key given twice is an
/// `InvalidRequest` naming it, never the last one winning.
fn event(text: &str) -> sso_fanout_core::Result<Value> {
    sso_fanout_core::document::json(text, "event")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_with_a_key_given_twice_is_an_invalid_request() {
        let e = event(r#"{"operation":"assign","operation":"revoke"}"#).unwrap_err();
        assert_eq!(diagnostic(&e).error_type, "InvalidRequest");
        assert!(e.to_string().contains("`operation`"), "{e}");
        assert_eq!(event(r#"{"runId":"r","batch":0}"#).unwrap()["batch"], 0);
    }

    #[test]
    fn diagnostics_carry_the_state_machine_names() {
        let d = diagnostic(&FanoutError::invalid("targets.filter", "x", "y"));
        assert_eq!(d.error_type, "InvalidRequest");
        assert!(d.error_message.contains("targets.filter"));
        let d = diagnostic(&FanoutError::Throttled { api: "CreateAccountAssignment".into(), message: "Rate exceeded".into() });
        assert_eq!(d.error_type, "Throttled");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["errorType"], "Throttled", "Lambda's wire names");
    }
}
