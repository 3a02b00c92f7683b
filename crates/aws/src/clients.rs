//! The AWS clients, built once from one `SdkConfig` (per process / Lambda container) and cloned
//! into the adapters (clients are cheap handles over one connection pool).
//!
//! Endpoints: `aws_config` reads `AWS_ENDPOINT_URL` and the service-specific
//! `AWS_ENDPOINT_URL_SSO_ADMIN`, `AWS_ENDPOINT_URL_ORGANIZATIONS`, `AWS_ENDPOINT_URL_IDENTITYSTORE`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SFN` (and `endpoint_url` in the profile) by
//! itself, so [`AwsClients::from_env`] runs unchanged against a local emulator
//! (`tests/tests/aws_env.rs` checks this). [`AwsClients::local`] pins every client to one endpoint
//! with dummy credentials, for tests and `make local-cloud`.
//!
//! Every DynamoDB answer's `Date` feeds [`AwsClients::ledger_clock`] (see `date_clock`): the
//! quota ledger's clock is DynamoDB's.

mod date_clock;
#[cfg(test)]
mod tests;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use sso_fanout_core::quota::{MeasuredClock, CREATE_CALL_BOUND};
use std::sync::Arc;
use std::time::Duration;

/// One attempt of a quota-ledger call: DynamoDB answers its single-item writes and small
/// transactions in milliseconds, so an attempt this slow is stuck (a dead connection, a lost
/// answer) and is better abandoned and sent again on a fresh connection.
const LEDGER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// All attempts of a quota-ledger call (the SDK's standard retry, 3 attempts): a holder learns
/// within this that the ledger is out of reach, well inside `quota::FENCE_AFTER` (8 s), so its
/// own heartbeat retries and the fencing decision run on answers, not on hung calls.
const LEDGER_OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// First back-off of a ledger retry: DynamoDB throttles per partition and recovers within tens
/// of milliseconds; the SDK's default (1 s) would spend the whole operation bound waiting.
const LEDGER_INITIAL_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct AwsClients {
    /// Organizations, with the SDK's standard retry (5 attempts: tag listing throttles at scale).
    pub organizations: aws_sdk_organizations::Client,
    /// Identity Store (name -> id lookups), standard retry.
    pub identity_store: aws_sdk_identitystore::Client,
    /// sso-admin for look-ups made while planning (instances, permission sets, existing
    /// assignments), standard retry.
    pub sso_admin: aws_sdk_ssoadmin::Client,
    /// sso-admin for the engine's calls: Create/DeleteAccountAssignment and the status describes
    /// and listings. SDK retries are **disabled** here on purpose: the engine owns retrying and
    /// pacing. Every sso-admin call spends the account-wide 20 requests/s budget and every
    /// create/delete one of 10 outstanding-operation slots, so a hidden SDK retry would spend
    /// budget the pacer does not see and hide the `ThrottlingException` the pacer backs off on.
    /// Every call, its one attempt included, ends within `quota::CREATE_CALL_BOUND` (answered or
    /// abandoned as `Transient`): a holder cut off from the quota ledger relies on that.
    pub sso_admin_engine: aws_sdk_ssoadmin::Client,
    /// DynamoDB (the run store), standard retry.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// DynamoDB for the quota ledger (`ledger::DynamoLedger`): the same table, with timeouts and
    /// back-off suited to the ledger (`LEDGER_*`).
    pub ledger_dynamodb: aws_sdk_dynamodb::Client,
    /// DynamoDB's clock as measured from the `Date` of every DynamoDB answer (both clients):
    /// the clock of the quota `Ledger` built on `ledger_dynamodb`.
    pub ledger_clock: Arc<MeasuredClock>,
    /// Step Functions (starting executions from the CLI), standard retry.
    pub sfn: aws_sdk_sfn::Client,
    /// The region the clients use, when known.
    pub region: Option<String>,
}

impl AwsClients {
    /// The standard credential/region chain (env, profile, SSO, container, IMDS), optionally
    /// with a named profile and an explicit region. Endpoint env vars apply (see module docs).
    pub async fn from_env(profile: Option<&str>, region: Option<&str>) -> AwsClients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(p) = profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = region {
            loader = loader.region(Region::new(r.to_string()));
        }
        AwsClients::from_sdk_config(&loader.load().await)
    }

    /// Clients from an already loaded configuration.
    pub fn from_sdk_config(config: &SdkConfig) -> AwsClients {
        AwsClients::build(config, None)
    }

    /// Every client pinned to `endpoint` (e.g. `http://127.0.0.1:5000`) with dummy static
    /// credentials: for moto and other local emulators. The endpoint is set on each client, so
    /// no `AWS_ENDPOINT_URL_*` variable or profile setting can redirect a call elsewhere.
    pub async fn local(endpoint: &str, region: &str) -> AwsClients {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(aws_sdk_ssoadmin::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "sso-fanout-local",
            ))
            .endpoint_url(endpoint)
            .load()
            .await;
        AwsClients::build(&config, Some(endpoint))
    }

    fn build(config: &SdkConfig, endpoint: Option<&str>) -> AwsClients {
        macro_rules! client {
            ($krate:ident $(, $setting:ident ( $value:expr ))*) => {{
                let mut b = $krate::config::Builder::from(config);
                if let Some(e) = endpoint {
                    b = b.endpoint_url(e);
                }
                $( b = b.$setting($value); )*
                $krate::Client::from_conf(b.build())
            }};
        }
        let standard = RetryConfig::standard().with_max_attempts(5);
        // One attempt (no SDK retry), so the operation timeout bounds the call as sent: the
        // attempt timeout says the same for clarity should retries ever be enabled here.
        let engine_timeouts =
            TimeoutConfig::builder().operation_timeout(CREATE_CALL_BOUND).operation_attempt_timeout(CREATE_CALL_BOUND).build();
        let ledger_timeouts =
            TimeoutConfig::builder().operation_attempt_timeout(LEDGER_ATTEMPT_TIMEOUT).operation_timeout(LEDGER_OPERATION_TIMEOUT).build();
        let ledger_retry = RetryConfig::standard().with_max_attempts(3).with_initial_backoff(LEDGER_INITIAL_BACKOFF);
        let ledger_clock = Arc::new(MeasuredClock::new());
        let dates = date_clock::DateClock::new(ledger_clock.clone());
        AwsClients {
            organizations: client!(aws_sdk_organizations, retry_config(standard.clone())),
            identity_store: client!(aws_sdk_identitystore),
            sso_admin: client!(aws_sdk_ssoadmin),
            sso_admin_engine: client!(aws_sdk_ssoadmin, retry_config(RetryConfig::disabled()), timeout_config(engine_timeouts)),
            dynamodb: client!(aws_sdk_dynamodb, interceptor(dates.clone())),
            ledger_dynamodb: client!(aws_sdk_dynamodb, interceptor(dates), timeout_config(ledger_timeouts), retry_config(ledger_retry)),
            ledger_clock,
            sfn: client!(aws_sdk_sfn),
            region: config.region().map(|r| r.to_string()),
        }
    }
}

impl std::fmt::Debug for AwsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsClients")
            .field("region", &self.region)
            .field("ledger_clock_offset_us", &self.ledger_clock.offset_us())
            .field("ledger_clock_samples", &self.ledger_clock.samples())
            .finish_non_exhaustive()
    }
}
