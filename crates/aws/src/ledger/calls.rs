//! How the ledger talks to DynamoDB: transactions whose cancellations are answers, conditional
//! updates whose failed conditions are answers, what an SDK retry may have hidden, and which
//! failures are `Transient`.

use super::DynamoLedger;
use crate::dynamo::Item;
use crate::errors::{classify, error_code, store_error, SdkError};
use aws_sdk_dynamodb::config::interceptors::{BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::{BoxError, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use sso_fanout_core::retry::Backoff;
use sso_fanout_core::FanoutError;
use sso_fanout_core::Result;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Attempts of one transaction that DynamoDB cancelled for a concurrent transaction on the same
/// items (`TransactionConflict`, not a failed condition) or throttled item by item.
pub(super) const TRANSACTION_ATTEMPTS: u32 = 5;
const TRANSACTION_CONFLICT: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(80));

/// One item's part in a cancelled transaction.
pub(super) struct Reason {
    pub failed: bool,
    /// The item as it was, for writes that asked for it (`ReturnValuesOnConditionCheckFailure`).
    pub item: Option<Item>,
}

pub(super) enum Transaction {
    Written,
    /// Cancelled for failed conditions; one reason per item, in order.
    Cancelled(Vec<Reason>),
}

/// Whether a ledger call may have been applied without its answer reaching us: an SDK attempt
/// was transmitted and not answered (a lost or timed-out answer, a dropped connection), or
/// answered with a 5xx, after which DynamoDB does not say whether the write happened. Then a
/// failed condition may be our own earlier write: the ledger looks at the item before calling
/// it a refusal. Counted over every request of one ledger call.
#[derive(Debug, Default, Clone)]
pub(super) struct Unanswered(Arc<AtomicI64>);

impl Unanswered {
    pub fn maybe_applied(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

impl Intercept for Unanswered {
    fn name(&self) -> &'static str {
        "QuotaLedgerUnanswered"
    }

    fn read_before_transmit(&self, _: &BeforeTransmitInterceptorContextRef<'_>, _: &RuntimeComponents, _: &mut ConfigBag) -> std::result::Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_after_transmit(&self, ctx: &BeforeDeserializationInterceptorContextRef<'_>, _: &RuntimeComponents, _: &mut ConfigBag) -> std::result::Result<(), BoxError> {
        // A 4xx (a failed condition, a throttle, a cancellation) was not applied. AWS does not
        // say whether a write answered with a 5xx (InternalServerError) was: the safe reading
        // is that it may have been.
        if ctx.response().status().as_u16() < 500 {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl DynamoLedger {
    /// One TransactWriteItems. A cancellation for failed conditions is an answer, not an error;
    /// one for a concurrent transaction (or throttling) is retried a few times. SDK retries of
    /// one request reuse its `ClientRequestToken` (the SDK fills it in once per request), so on
    /// DynamoDB a retry of a transaction that was applied answers success; a cancellation
    /// retried here is a new request (nothing was applied).
    pub(super) async fn transact(&self, items: Vec<TransactWriteItem>, call: &Unanswered) -> Result<Transaction> {
        let mut attempt = 0;
        loop {
            self.wrote(items.len(), true);
            let sent = self.client.transact_write_items().set_transact_items(Some(items.clone())).customize().interceptor(call.clone()).send().await;
            let err = match sent {
                Ok(_) => return Ok(Transaction::Written),
                Err(e) => e,
            };
            let reasons: Option<Vec<(String, Option<Item>)>> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(
                    c.cancellation_reasons().iter().map(|r| (r.code().unwrap_or("None").to_string(), r.item().cloned())).collect(),
                ),
                _ => None,
            };
            let Some(reasons) = reasons else { return Err(ledger_error(&self.table, "TransactWriteItems", err)) };
            let benign = |c: &str| c == "None" || c == "ConditionalCheckFailed";
            let complete = reasons.len() == items.len();
            if complete && reasons.iter().all(|(c, _)| benign(c)) && reasons.iter().any(|(c, _)| c != "None") {
                return Ok(Transaction::Cancelled(
                    reasons.into_iter().map(|(c, item)| Reason { failed: c == "ConditionalCheckFailed", item }).collect(),
                ));
            }
            let codes = reasons.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ");
            let retryable = complete
                && reasons.iter().all(|(c, _)| benign(c) || matches!(c.as_str(), "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"));
            if retryable && attempt + 1 < TRANSACTION_ATTEMPTS {
                tokio::time::sleep(TRANSACTION_CONFLICT.random_delay(attempt)).await;
                attempt += 1;
                continue;
            }
            return Err(if retryable {
                FanoutError::Transient {
                    api: "DynamoDB TransactWriteItems".into(),
                    message: format!("table `{}`: cancelled {} times in a row: [{codes}]", self.table, attempt + 1),
                }
            } else {
                FanoutError::Store(format!(
                    "DynamoDB TransactWriteItems on table `{}` cancelled: [{codes}] ({})",
                    self.table,
                    err.message().unwrap_or("no message")
                ))
            });
        }
    }

    /// One UpdateItem whose failed condition is an answer: `Err(item as it was)`, when it asked
    /// for it (`ReturnValuesOnConditionCheckFailure`).
    pub(super) async fn update_if(&self, update: Update, call: &Unanswered) -> Result<std::result::Result<(), Option<Item>>> {
        self.wrote(1, false);
        let out = self
            .client
            .update_item()
            .table_name(update.table_name())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_string))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .customize()
            .interceptor(call.clone())
            .send()
            .await;
        match out {
            Ok(_) => Ok(Ok(())),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(c) => Ok(Err(c.item().cloned())),
                _ => Ok(Err(None)),
            },
            Err(e) => Err(ledger_error(&self.table, "UpdateItem", e)),
        }
    }
}

/// DynamoDB failures of the ledger: throttling, 5xx, timeouts, lost answers and transaction
/// conflicts are `Transient` (retryable; never `Throttled`, which stands for Identity Center's
/// quota), a missing table is `store_error`'s configuration error, anything else a `Store` error.
pub(super) fn ledger_error<E>(table: &str, api: &str, err: SdkError<E>) -> FanoutError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error_code(&err) {
        Some("ResourceNotFoundException") => return store_error(table, api, err),
        // Another request on the same items is still running (the SDK already retried these as
        // throttles): nothing of ours was refused for good.
        Some(code @ ("TransactionInProgressException" | "TransactionConflictException" | "ReplicatedWriteConflictException")) => {
            let message = format!("table `{table}`: {code}: {}", err.message().unwrap_or("no message"));
            return FanoutError::Transient { api: format!("DynamoDB {api}"), message };
        }
        _ => {}
    }
    match classify(api, err) {
        e if e.is_retryable() => FanoutError::Transient { api: format!("DynamoDB {api}"), message: format!("table `{table}`: {e}") },
        e => FanoutError::Store(format!("DynamoDB {api} on table `{table}`: {e}")),
    }
}

pub(super) fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> FanoutError {
    FanoutError::Internal(format!("quota ledger request: {e}"))
}
