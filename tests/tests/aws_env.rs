//! `AwsClients::from_env` honours the standard endpoint variables: the global
//! `AWS_ENDPOINT_URL` and the service-specific `AWS_ENDPOINT_URL_<SERVICE>`, which wins.
//!
//! Its own test binary: it sets process environment variables, which no other test may observe.

use sso_fanout_aws::{AwsClients, AwsIdentityCenter, AwsOrgDirectory, IdentityCenterConfig};
use sso_fanout_core::model::PrincipalType;
use sso_fanout_core::ports::{Directory, OrgDirectory};
use sso_fanout_core::request::PrincipalRef;
use sso_fanout_core::FanoutError;
use sso_fanout_tests::moto::Moto;

#[tokio::test]
async fn endpoint_variables_are_honoured() {
    let moto = Moto::seeded();
    // Dummy credentials only; no profile, no instance metadata: nothing can reach real AWS.
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/sso-fanout-test-config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/sso-fanout-test-credentials"),
        // Global endpoint: a closed local port. Service-specific ones: moto.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ENDPOINT_URL_SSO_ADMIN", moto.endpoint.as_str()),
        ("AWS_ENDPOINT_URL_IDENTITYSTORE", moto.endpoint.as_str()),
    ] {
        std::env::set_var(k, v);
    }
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_SESSION_TOKEN");

    let clients = AwsClients::from_env(None, None).await;
    assert_eq!(clients.region.as_deref(), Some("us-east-1"));
    let ic = AwsIdentityCenter::from_clients(&clients, IdentityCenterConfig::default());
    assert_eq!(ic.instance().await.unwrap().instance_arn, moto.instance_arn(), "sso-admin via AWS_ENDPOINT_URL_SSO_ADMIN");
    let g = ic.resolve_principal(&PrincipalRef::Name { kind: PrincipalType::Group, name: "PlatformAdmins".into() }).await.unwrap();
    assert_eq!(g.id, moto.group("PlatformAdmins"), "identitystore via AWS_ENDPOINT_URL_IDENTITYSTORE");
    // Organizations has no specific variable: the global one (nothing listens there).
    let e = AwsOrgDirectory::new(clients.organizations.clone()).snapshot().await.unwrap_err();
    assert!(matches!(e, FanoutError::Transient { .. }), "{e:?}");

    // Global endpoint on moto: Organizations answers too.
    std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
    let clients = AwsClients::from_env(None, Some("us-east-1")).await;
    let snap = AwsOrgDirectory::new(clients.organizations).snapshot().await.unwrap();
    assert_eq!(snap.organization_id, moto.organization_id());
}
