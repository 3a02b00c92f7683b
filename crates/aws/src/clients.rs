//! The AWS clients, built once from one `SdkConfig` (per process / Lambda container) and cloned
//! into the adapters (clients are cheap handles over one connection pool).
//!
//! Endpoints: `aws_config` reads `AWS_ENDPOINT_URL` and the service-specific
//! `AWS_ENDPOINT_URL_SSO_ADMIN`, `AWS_ENDPOINT_URL_ORGANIZATIONS`, `AWS_ENDPOINT_URL_IDENTITYSTORE`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SFN` (and `endpoint_url` in the profile) by
//! itself, so [`AwsClients::from_env`] runs unchanged against a local emulator
//! (`tests/tests/aws_env.rs` checks this). [`AwsClients::local`] pins every client to one endpoint
//! with dummy credentials, for tests and `make local-cloud`.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::time::Duration;

/// One request to sso-admin for an assignment write or status check should answer within this;
/// a slower attempt is abandoned (`Transient`) and the engine decides whether to try again.
const ENGINE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
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
    pub sso_admin_engine: aws_sdk_ssoadmin::Client,
    /// DynamoDB (the run store), standard retry.
    pub dynamodb: aws_sdk_dynamodb::Client,
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
        AwsClients {
            organizations: client!(aws_sdk_organizations, retry_config(standard.clone())),
            identity_store: client!(aws_sdk_identitystore),
            sso_admin: client!(aws_sdk_ssoadmin),
            sso_admin_engine: client!(
                aws_sdk_ssoadmin,
                retry_config(RetryConfig::disabled()),
                timeout_config(TimeoutConfig::builder().operation_attempt_timeout(ENGINE_ATTEMPT_TIMEOUT).build())
            ),
            dynamodb: client!(aws_sdk_dynamodb),
            sfn: client!(aws_sdk_sfn),
            region: config.region().map(|r| r.to_string()),
        }
    }
}
