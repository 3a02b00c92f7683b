//! An SDK interceptor that measures DynamoDB's clock: the local Unix time when each attempt is
//! handed to the HTTP client, the local Unix time when its answer's headers arrived, and the
//! answer's `Date` (whole seconds) go to `MeasuredClock::observe`. The server formed `Date`
//! between the two readings, so each answer bounds the offset; answers without a readable
//! `Date` are skipped.

use aws_sdk_dynamodb::config::interceptors::{BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use aws_smithy_types::date_time::{DateTime, Format};
use sso_fanout_core::quota::{unix_us, MeasuredClock};
use std::sync::Arc;

#[derive(Clone)]
pub(super) struct DateClock(Arc<MeasuredClock>);

impl DateClock {
    pub fn new(clock: Arc<MeasuredClock>) -> DateClock {
        DateClock(clock)
    }
}

impl std::fmt::Debug for DateClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DateClock").field("samples", &self.0.samples()).finish()
    }
}

/// When the current attempt left (local Unix µs), kept in the attempt's interceptor state.
#[derive(Debug, Clone, Copy)]
struct SentAt(u64);

impl Storable for SentAt {
    type Storer = StoreReplace<SentAt>;
}

/// The whole seconds of an HTTP `Date` (RFC 9110 IMF-fixdate, as AWS sends it).
fn date_seconds(value: &str) -> Option<u64> {
    DateTime::from_str(value.trim(), Format::HttpDate).ok().and_then(|t| u64::try_from(t.secs()).ok())
}

impl Intercept for DateClock {
    fn name(&self) -> &'static str {
        "LedgerDateClock"
    }

    fn read_before_transmit(&self, _: &BeforeTransmitInterceptorContextRef<'_>, _: &RuntimeComponents, cfg: &mut ConfigBag) -> Result<(), BoxError> {
        // Before the HTTP client takes it (connection set-up included): a wider, never wrong, bound.
        cfg.interceptor_state().store_put(SentAt(unix_us()));
        Ok(())
    }

    fn read_after_transmit(&self, ctx: &BeforeDeserializationInterceptorContextRef<'_>, _: &RuntimeComponents, cfg: &mut ConfigBag) -> Result<(), BoxError> {
        let received = unix_us();
        let date = ctx.response().headers().get("date").and_then(date_seconds);
        if let (Some(SentAt(sent)), Some(server_s)) = (cfg.load::<SentAt>().copied(), date) {
            self.0.observe(sent, received, server_s);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::date_seconds;

    #[test]
    fn reads_http_dates_and_refuses_anything_else() {
        assert_eq!(date_seconds("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(date_seconds("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(date_seconds("1994-11-06T08:49:37Z"), None);
        assert_eq!(date_seconds(""), None);
    }
}
