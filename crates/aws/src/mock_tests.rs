//! What moto cannot produce, with aws-smithy-mocks: IN_PROGRESS / FAILED statuses, throttling,
//! conflicts, HTML 500s, not-found deletes, ambiguous names, listing fallbacks.
//!
//! Errors are mocked as the HTTP answers AWS sends (status + awsJson error body), so the SDK's
//! own deserializer produces the typed error and its code, exactly as in production.

use crate::identity_center::{AwsIdentityCenter, IdentityCenterConfig};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssoadmin::operation::create_account_assignment::{CreateAccountAssignmentError, CreateAccountAssignmentOutput};
use aws_sdk_ssoadmin::operation::describe_account_assignment_creation_status::DescribeAccountAssignmentCreationStatusOutput;
use aws_sdk_ssoadmin::operation::describe_account_assignment_deletion_status::DescribeAccountAssignmentDeletionStatusOutput;
use aws_sdk_ssoadmin::operation::describe_permission_set::DescribePermissionSetOutput;
use aws_sdk_ssoadmin::operation::list_account_assignment_creation_status::ListAccountAssignmentCreationStatusOutput;
use aws_sdk_ssoadmin::operation::list_account_assignments::ListAccountAssignmentsOutput;
use aws_sdk_ssoadmin::operation::list_account_assignments_for_principal::ListAccountAssignmentsForPrincipalOutput;
use aws_sdk_ssoadmin::operation::list_instances::ListInstancesOutput;
use aws_sdk_ssoadmin::operation::list_permission_sets::ListPermissionSetsOutput;
use aws_sdk_ssoadmin::types::{
    AccountAssignment, AccountAssignmentForPrincipal, AccountAssignmentOperationStatus, AccountAssignmentOperationStatusMetadata, InstanceMetadata,
    PermissionSet as SsoPermissionSet, PrincipalType as SsoPrincipalType, StatusValues,
};
use aws_sdk_ssoadmin::Client;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use sso_fanout_core::model::*;
use sso_fanout_core::ids::AccountId;
use sso_fanout_core::ports::{AssignmentOps, Directory, PrincipalAssignments, RequestGate};
use sso_fanout_core::request::PermissionSetRef;
use sso_fanout_core::FanoutError;

const INSTANCE: &str = "arn:aws:sso:::instance/ssoins-1111222233334444";
const STORE: &str = "d-1234567890";
const PS: &str = "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-aaaabbbbccccdddd";
const GROUP: &str = "906771c1-0071-7057-3a0c-1d1c4ba2c2e8";

fn mock_sso(rules: &[&Rule]) -> Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let conf = aws_sdk_ssoadmin::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ssoadmin::config::Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        // As the engine's client: no SDK retries (the engine retries).
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

fn unused_identity_store() -> aws_sdk_identitystore::Client {
    let conf = aws_sdk_identitystore::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_identitystore::config::Credentials::new("testing", "testing", None, None, "mock"))
        .http_client(create_mock_http_client())
        .interceptor(MockResponseInterceptor::new())
        .build();
    aws_sdk_identitystore::Client::from_conf(conf)
}

fn configured() -> IdentityCenterConfig {
    IdentityCenterConfig { instance_arn: Some(INSTANCE.into()), identity_store_id: Some(STORE.into()) }
}

fn ic(rules: &[&Rule]) -> AwsIdentityCenter {
    ic_with(rules, configured())
}

fn ic_with(rules: &[&Rule], config: IdentityCenterConfig) -> AwsIdentityCenter {
    let client = mock_sso(rules);
    AwsIdentityCenter::new(client.clone(), client, unused_identity_store(), config)
}

/// A permission set by name or ARN, as a request names it.
fn by(name_or_arn: &str) -> PermissionSetRef {
    name_or_arn.parse().unwrap()
}

fn key(account: &str) -> AssignmentKey {
    AssignmentKey {
        account_id: account.parse().unwrap(),
        permission_set_arn: PS.parse().unwrap(),
        principal_type: PrincipalType::Group,
        principal_id: GROUP.parse().unwrap(),
    }
}

/// An awsJson 1.1 error body as sso-admin sends it.
fn aws_error(code: &str, message: &str) -> Option<String> {
    Some(format!(r#"{{"__type":"com.amazonaws.swbexternalservice#{code}","Message":"{message}"}}"#))
}

const MOTO_HTML_500: &str = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n\
    <h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. \
    Either the server is overloaded or there is an error in the application.</p>\n";

fn op(status: StatusValues, id: &str, reason: Option<&str>) -> AccountAssignmentOperationStatus {
    AccountAssignmentOperationStatus::builder()
        .status(status)
        .request_id(id)
        .set_failure_reason(reason.map(str::to_string))
        .target_id("111111111111")
        .permission_set_arn(PS)
        .build()
}

#[tokio::test]
async fn create_in_progress_then_failed_with_reason() {
    let create = mock!(Client::create_account_assignment).then_output(|| {
        CreateAccountAssignmentOutput::builder()
            .account_assignment_creation_status(op(StatusValues::InProgress, "req-1", None))
            .build()
    });
    let reason = "Received a 404 status error: Not supported policy arn:aws:iam::aws:policy/Nope.";
    let describe = mock!(Client::describe_account_assignment_creation_status)
        .match_requests(|r| r.account_assignment_creation_request_id() == Some("req-1") && r.instance_arn() == Some(INSTANCE))
        .sequence()
        .output(|| {
            DescribeAccountAssignmentCreationStatusOutput::builder()
                .account_assignment_creation_status(op(StatusValues::InProgress, "req-1", None))
                .build()
        })
        .output(move || {
            DescribeAccountAssignmentCreationStatusOutput::builder()
                .account_assignment_creation_status(op(StatusValues::Failed, "req-1", Some(reason)))
                .build()
        })
        .build();
    let ic = ic(&[&create, &describe]);

    let accepted = ic.create_assignment(&key("111111111111")).await.unwrap();
    assert_eq!(accepted, OpStatus::of("req-1", OpState::InProgress, None));
    let still = ic.operation_status(Operation::Assign, "req-1").await.unwrap();
    assert_eq!(still.state, OpState::InProgress);
    let done = ic.operation_status(Operation::Assign, "req-1").await.unwrap();
    assert_eq!(done.state, OpState::Failed);
    assert_eq!(done.failure_reason.as_deref(), Some(reason));
    assert_eq!(create.num_calls(), 1);
    assert_eq!(describe.num_calls(), 2);
}

#[tokio::test]
async fn deletion_status_succeeded() {
    let describe = mock!(Client::describe_account_assignment_deletion_status).then_output(|| {
        DescribeAccountAssignmentDeletionStatusOutput::builder()
            .account_assignment_deletion_status(op(StatusValues::Succeeded, "del-1", None))
            .build()
    });
    let ic = ic(&[&describe]);
    let st = ic.operation_status(Operation::Revoke, "del-1").await.unwrap();
    assert_eq!(st.state, OpState::Succeeded);
}

#[tokio::test]
async fn throttling_and_conflict_are_typed_and_retryable() {
    let rule = mock!(Client::create_account_assignment)
        .sequence()
        .http_status(400, aws_error("ThrottlingException", "There are too many requests processing"))
        .http_status(400, aws_error("ConflictException", "An operation is already in progress for this account"))
        .build();
    let ic = ic(&[&rule]);

    let e = ic.create_assignment(&key("111111111111")).await.unwrap_err();
    assert!(
        matches!(&e, FanoutError::Throttled { api, message } if api == "CreateAccountAssignment" && message.contains("too many")),
        "{e:?}"
    );
    assert!(e.is_retryable());
    let e = ic.create_assignment(&key("111111111111")).await.unwrap_err();
    assert!(matches!(&e, FanoutError::Conflict { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(rule.num_calls(), 2, "no SDK retry on the engine's client");
}

#[tokio::test]
async fn typed_modeled_errors_map_by_code() {
    // The same, built from the SDK's typed error (as a service answer deserializes to).
    let rule = mock!(Client::create_account_assignment).then_error(|| {
        CreateAccountAssignmentError::ThrottlingException(
            aws_sdk_ssoadmin::types::error::ThrottlingException::builder()
                .message("slow down")
                .meta(ErrorMetadata::builder().code("ThrottlingException").message("slow down").build())
                .build(),
        )
    });
    let e = ic(&[&rule]).create_assignment(&key("111111111111")).await.unwrap_err();
    assert!(matches!(e, FanoutError::Throttled { .. }), "{e:?}");
}

#[tokio::test]
async fn server_errors_are_transient_access_denied_is_not() {
    let rule = mock!(Client::create_account_assignment)
        .sequence()
        .http_status(500, aws_error("InternalServerException", "oops"))
        .http_status(503, Some(MOTO_HTML_500.to_string()))
        .http_status(400, aws_error("AccessDeniedException", "not authorized to perform sso:CreateAccountAssignment"))
        .http_status(400, aws_error("ValidationException", "1 validation error"))
        .build();
    let ic = ic(&[&rule]);
    let e = ic.create_assignment(&key("111111111111")).await.unwrap_err();
    assert!(matches!(e, FanoutError::Transient { .. }), "{e:?}");
    // An HTML error page on an API every endpoint has: transient, not "unsupported".
    let e = ic.create_assignment(&key("111111111111")).await.unwrap_err();
    assert!(matches!(e, FanoutError::Transient { .. }), "{e:?}");
    let e = ic.create_assignment(&key("111111111111")).await.unwrap_err();
    assert!(matches!(e, FanoutError::AccessDenied { .. }) && !e.is_retryable(), "{e:?}");
    let e = ic.create_assignment(&key("111111111111")).await.unwrap_err();
    assert!(matches!(e, FanoutError::Validation { .. }), "{e:?}");
}

#[tokio::test]
async fn html_500_on_status_listing_is_unsupported() {
    let rule =
        mock!(Client::list_account_assignment_creation_status).sequence().http_status(500, Some(MOTO_HTML_500.into())).build();
    let e = ic(&[&rule]).in_progress_operations(Operation::Assign).await.unwrap_err();
    assert!(
        matches!(&e, FanoutError::Unsupported { api, message }
        if api == "ListAccountAssignmentCreationStatus" && message.contains("500 Internal Server Error")),
        "{e:?}"
    );
    assert_eq!(e.error_type(), "Unsupported");
}

#[tokio::test]
async fn status_listing_pages_and_keeps_only_in_progress() {
    let rule = mock!(Client::list_account_assignment_creation_status)
        .match_requests(|r| r.filter().and_then(|f| f.status()) == Some(&StatusValues::InProgress))
        .sequence()
        .output(|| {
            let meta = |id: &str, st| AccountAssignmentOperationStatusMetadata::builder().request_id(id).status(st).build();
            ListAccountAssignmentCreationStatusOutput::builder()
                .account_assignments_creation_status(meta("a", StatusValues::InProgress))
                .account_assignments_creation_status(meta("b", StatusValues::InProgress))
                .next_token("page-2")
                .build()
        })
        .output(|| {
            let meta = |id: &str, st| AccountAssignmentOperationStatusMetadata::builder().request_id(id).status(st).build();
            ListAccountAssignmentCreationStatusOutput::builder()
                .account_assignments_creation_status(meta("c", StatusValues::InProgress))
                // An endpoint ignoring the filter must not make a finished operation look pending.
                .account_assignments_creation_status(meta("d", StatusValues::Succeeded))
                .build()
        })
        .build();
    let ids = ic(&[&rule]).in_progress_operations(Operation::Assign).await.unwrap();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn delete_of_missing_assignment_is_not_found() {
    let rule = mock!(Client::delete_account_assignment)
        .sequence()
        .http_status(400, aws_error("ResourceNotFoundException", "Assignment does not exist"))
        .build();
    let e = ic(&[&rule]).delete_assignment(&key("111111111111")).await.unwrap_err();
    assert!(
        matches!(&e, FanoutError::NotFound { what, hint, .. } if what == "account assignment" && hint == "already absent"),
        "{e:?}"
    );
}

fn permission_set_rules(names: &'static [(&'static str, &'static str)]) -> (Rule, Rule) {
    let list = mock!(Client::list_permission_sets).then_output(move || {
        ListPermissionSetsOutput::builder()
            .set_permission_sets(Some(names.iter().map(|(arn, _)| arn.to_string()).collect()))
            .build()
    });
    let describe = mock!(Client::describe_permission_set).then_compute_output(move |req| {
        let arn = req.permission_set_arn().unwrap_or_default();
        let name = names.iter().find(|(a, _)| *a == arn).map(|(_, n)| *n).unwrap_or("?");
        DescribePermissionSetOutput::builder()
            .permission_set(SsoPermissionSet::builder().permission_set_arn(arn).name(name).build())
            .build()
    });
    (list, describe)
}

#[tokio::test]
async fn permission_set_names_resolve_once_and_report_ambiguity_and_unknowns() {
    static SETS: &[(&str, &str)] = &[
        ("arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-0000000000000001", "AdministratorAccess"),
        ("arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-0000000000000002", "ReadOnlyAccess"),
        ("arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-0000000000000003", "Billing"),
        ("arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-0000000000000004", "Billing"),
    ];
    let (list, describe) = permission_set_rules(SETS);
    let ic = ic(&[&list, &describe]);

    let ps = ic.resolve_permission_set(&by("ReadOnlyAccess")).await.unwrap();
    assert_eq!(ps.arn, SETS[1].0);
    let again = ic.resolve_permission_set(&by("AdministratorAccess")).await.unwrap();
    assert_eq!(again.arn, SETS[0].0);
    assert_eq!(list.num_calls(), 1, "the name -> ARN map is cached");
    assert_eq!(describe.num_calls(), 4);

    let e = ic.resolve_permission_set(&by("Billing")).await.unwrap_err();
    assert!(
        matches!(&e, FanoutError::Ambiguous { candidates, .. } if candidates.contains("ps-0000000000000003") && candidates.contains("ps-0000000000000004")),
        "{e:?}"
    );

    let e = ic.resolve_permission_set(&by("administratoraccess")).await.unwrap_err();
    match &e {
        FanoutError::NotFound { what, hint, .. } => {
            assert_eq!(what, "permission set");
            assert!(hint.contains("AdministratorAccess") && hint.contains("ReadOnlyAccess"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(list.num_calls(), 2, "a miss re-reads the list once (a set created since)");

    // By ARN: from the cache, no call.
    let by_arn = ic.resolve_permission_set(&by(SETS[2].0)).await.unwrap();
    assert_eq!(by_arn.name, "Billing");
    assert_eq!(describe.num_calls(), 8);
    // An ARN of another instance is refused without a call.
    let e =
        ic.resolve_permission_set(&by("arn:aws:sso:::permissionSet/ssoins-9999999999999999/ps-0000000000000001")).await.unwrap_err();
    assert!(matches!(e, FanoutError::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn principal_listing_unavailable_falls_back_to_per_account_listing() {
    let for_principal = mock!(Client::list_account_assignments_for_principal)
        .sequence()
        .http_status(400, aws_error("AccessDeniedException", "only the management account"))
        .build();
    let per_account = mock!(Client::list_account_assignments).then_compute_output(|req| {
        let holder = if req.account_id() == Some("222222222222") { GROUP } else { "someone-else" };
        ListAccountAssignmentsOutput::builder()
            .account_assignments(
                AccountAssignment::builder()
                    .account_id(req.account_id().unwrap_or_default())
                    .permission_set_arn(PS)
                    .principal_type(SsoPrincipalType::Group)
                    .principal_id(holder)
                    .build(),
            )
            .build()
    });
    let ic = ic(&[&for_principal, &per_account]);
    let principal = Principal { kind: PrincipalType::Group, id: GROUP.parse().unwrap(), name: None };
    let candidates: Vec<AccountId> = ["111111111111", "222222222222", "333333333333"].iter().map(|a| a.parse().unwrap()).collect();
    let found = ic.assigned_accounts(&principal, &PS.parse().unwrap(), &candidates).await.unwrap();
    assert_eq!(found.into_iter().collect::<Vec<_>>(), vec!["222222222222"]);
    assert_eq!(for_principal.num_calls(), 1);
    assert_eq!(per_account.num_calls(), 3);
}

/// A `RequestGate` that admits at once and counts.
#[derive(Default)]
struct CountingGate(std::sync::atomic::AtomicU32);

impl CountingGate {
    fn admitted(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl RequestGate for CountingGate {
    async fn admit(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn for_principal_item(account: &str, permission_set: &str) -> AccountAssignmentForPrincipal {
    AccountAssignmentForPrincipal::builder()
        .account_id(account)
        .permission_set_arn(permission_set)
        .principal_type(SsoPrincipalType::Group)
        .principal_id(GROUP)
        .build()
}

#[tokio::test]
async fn principal_assignments_lists_every_page_and_permission_set_through_the_gate() {
    const PS2: &str = "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-0000000000000002";
    const PS3: &str = "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-0000000000000003";
    // Page 1 without a token, page 2 with page 1's token; never a filter (every account).
    let for_principal = mock!(Client::list_account_assignments_for_principal)
        .match_requests(|r| {
            r.instance_arn() == Some(INSTANCE)
                && r.principal_id() == Some(GROUP)
                && r.principal_type() == Some(&SsoPrincipalType::Group)
                && r.filter().is_none()
        })
        .then_compute_output(|r| match r.next_token() {
            None => ListAccountAssignmentsForPrincipalOutput::builder()
                .account_assignments(for_principal_item("111111111111", PS))
                .account_assignments(for_principal_item("111111111111", PS2))
                .next_token("page-2")
                .build(),
            Some(token) => {
                assert_eq!(token, "page-2");
                ListAccountAssignmentsForPrincipalOutput::builder()
                    .account_assignments(for_principal_item("222222222222", PS3))
                    .account_assignments(for_principal_item("333333333333", PS))
                    .build()
            }
        });
    let ic = ic(&[&for_principal]);
    let gate = std::sync::Arc::new(CountingGate::default());
    ic.gate_lookups(gate.clone());
    let principal = Principal { kind: PrincipalType::Group, id: GROUP.parse().unwrap(), name: None };

    let found = ic.principal_assignments(&principal).await.unwrap();
    let pair = |a: &str, ps: &str| (a.parse().unwrap(), ps.parse().unwrap());
    assert_eq!(
        found,
        PrincipalAssignments {
            assignments: [pair("111111111111", PS), pair("111111111111", PS2), pair("222222222222", PS3), pair("333333333333", PS)]
                .into_iter()
                .collect(),
            pages: 2,
        }
    );
    assert_eq!(for_principal.num_calls(), 2);
    assert_eq!(gate.admitted(), 2, "each page's request passes the lookup gate");

    // `assigned_accounts` takes the same path and keeps one permission set.
    let candidates: Vec<AccountId> = ["111111111111", "222222222222", "333333333333"].iter().map(|a| a.parse().unwrap()).collect();
    let assigned = ic.assigned_accounts(&principal, &PS.parse().unwrap(), &candidates).await.unwrap();
    assert_eq!(assigned.into_iter().collect::<Vec<_>>(), vec!["111111111111", "333333333333"]);
    assert_eq!((for_principal.num_calls(), gate.admitted()), (4, 4));
}

#[tokio::test]
async fn principal_assignments_has_no_per_account_fallback() {
    let per_account = mock!(Client::list_account_assignments).then_output(|| ListAccountAssignmentsOutput::builder().build());
    let principal = Principal { kind: PrincipalType::Group, id: GROUP.parse().unwrap(), name: None };

    // An endpoint without the listing (moto's HTML 500): Unsupported, saying so.
    let html = mock!(Client::list_account_assignments_for_principal).sequence().http_status(500, Some(MOTO_HTML_500.into())).build();
    let e = ic(&[&html, &per_account]).principal_assignments(&principal).await.unwrap_err();
    assert!(
        matches!(&e, FanoutError::Unsupported { api, message }
            if api == "ListAccountAssignmentsForPrincipal" && message.contains("no per-account fallback")),
        "{e:?}"
    );
    // Refused (e.g. not the management account): AccessDenied as AWS said it.
    let denied = mock!(Client::list_account_assignments_for_principal)
        .sequence()
        .http_status(400, aws_error("AccessDeniedException", "only the management account"))
        .build();
    let e = ic(&[&denied, &per_account]).principal_assignments(&principal).await.unwrap_err();
    assert!(matches!(&e, FanoutError::AccessDenied { api, .. } if api == "ListAccountAssignmentsForPrincipal"), "{e:?}");
    assert_eq!((html.num_calls(), denied.num_calls(), per_account.num_calls()), (1, 1, 0));
}

#[tokio::test]
async fn instance_discovery() {
    let inst = |n: &str| {
        InstanceMetadata::builder()
            .instance_arn(format!("arn:aws:sso:::instance/ssoins-{n}"))
            .identity_store_id(format!("d-{n}"))
            .build()
    };
    let one = mock!(Client::list_instances)
        .then_output(move || ListInstancesOutput::builder().instances(inst("1111111111111111")).build());
    let found = ic_with(&[&one], IdentityCenterConfig::default()).instance().await.unwrap();
    assert_eq!(found.identity_store_id, "d-1111111111111111");

    let two = mock!(Client::list_instances).then_output(move || {
        ListInstancesOutput::builder().instances(inst("1111111111111111")).instances(inst("2222222222222222")).build()
    });
    let e = ic_with(&[&two], IdentityCenterConfig::default()).instance().await.unwrap_err();
    assert!(matches!(&e, FanoutError::Config(m) if m.contains("2 Identity Center instances")), "{e:?}");

    let none = mock!(Client::list_instances).then_output(|| ListInstancesOutput::builder().build());
    let e = ic_with(&[&none], IdentityCenterConfig::default()).instance().await.unwrap_err();
    assert!(matches!(e, FanoutError::Config(_)), "{e:?}");

    // Configured ARN and store id: no call at all.
    let unused = mock!(Client::list_instances).then_output(|| ListInstancesOutput::builder().build());
    let configured = ic_with(&[&unused], configured()).instance().await.unwrap();
    assert_eq!(configured.instance_arn, INSTANCE);
    assert_eq!(unused.num_calls(), 0);
}

mod organizations {
    use crate::org::{account_status, AwsOrgDirectory};
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_organizations::operation::describe_organization::DescribeOrganizationOutput;
    use aws_sdk_organizations::operation::list_accounts_for_parent::ListAccountsForParentOutput;
    use aws_sdk_organizations::operation::list_organizational_units_for_parent::ListOrganizationalUnitsForParentOutput;
    use aws_sdk_organizations::operation::list_roots::ListRootsOutput;
    use aws_sdk_organizations::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_organizations::types::{
        Account, AccountState, AccountStatus as OrgStatus, Organization, OrganizationalUnit, Root, Tag,
    };
    use aws_sdk_organizations::Client;
    use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
    use sso_fanout_core::model::AccountStatus;
    use sso_fanout_core::ports::OrgDirectory;
    use std::collections::BTreeMap;

    fn client(rules: &[&Rule]) -> Client {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        let conf = aws_sdk_organizations::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_organizations::config::Credentials::new("testing", "testing", None, None, "mock"))
            .http_client(create_mock_http_client())
            .interceptor(interceptor)
            .build();
        Client::from_conf(conf)
    }

    fn account(id: &str, name: &str) -> Account {
        Account::builder().id(id).name(name).email(format!("{name}@example.com")).state(AccountState::Active).build()
    }

    fn ou(id: &str) -> OrganizationalUnit {
        OrganizationalUnit::builder().id(id).name(id).build()
    }

    #[test]
    fn status_prefers_state_over_deprecated_status() {
        let both = Account::builder().id("1").state(AccountState::Suspended).status(OrgStatus::Active).build();
        assert_eq!(account_status(&both), AccountStatus::Suspended);
        let old = Account::builder().id("1").status(OrgStatus::PendingClosure).build();
        assert_eq!(account_status(&old), AccountStatus::PendingClosure);
        let closed = Account::builder().id("1").state(AccountState::Closed).build();
        assert_eq!(account_status(&closed), AccountStatus::Suspended, "not ACTIVE: never a target");
        assert_eq!(account_status(&Account::builder().id("1").state(AccountState::Active).build()), AccountStatus::Active);
    }

    /// root -> {ou-a, ou-b (second page)}, ou-a -> ou-c; accounts on several pages; tags paged.
    #[tokio::test]
    async fn walks_every_page_of_the_ou_tree_and_tags() {
        let org = mock!(Client::describe_organization).then_output(|| {
            DescribeOrganizationOutput::builder()
                .organization(Organization::builder().id("o-abc").master_account_id("100000000000").build())
                .build()
        });
        let roots =
            mock!(Client::list_roots).then_output(|| ListRootsOutput::builder().roots(Root::builder().id("r-1").build()).build());
        let ous = mock!(Client::list_organizational_units_for_parent).then_compute_output(|req| {
            let b = ListOrganizationalUnitsForParentOutput::builder();
            match (req.parent_id(), req.next_token()) {
                (Some("r-1"), None) => b.organizational_units(ou("ou-a")).next_token("t1").build(),
                (Some("r-1"), Some("t1")) => b.organizational_units(ou("ou-b")).build(),
                (Some("ou-a"), _) => b.organizational_units(ou("ou-c")).build(),
                _ => b.build(),
            }
        });
        let accounts = mock!(Client::list_accounts_for_parent).then_compute_output(|req| {
            let b = ListAccountsForParentOutput::builder();
            match (req.parent_id(), req.next_token()) {
                (Some("r-1"), None) => b.accounts(account("100000000000", "management")).next_token("p2").build(),
                (Some("r-1"), Some("p2")) => b.accounts(account("100000000001", "loose")).build(),
                (Some("ou-b"), _) => b.accounts(account("200000000000", "b-1")).build(),
                (Some("ou-c"), None) => b.accounts(account("300000000000", "c-1")).next_token("p2").build(),
                (Some("ou-c"), Some("p2")) => b
                    .accounts(
                        Account::builder()
                            .id("300000000001")
                            .name("c-2")
                            .email("c-2@example.com")
                            .status(OrgStatus::Suspended)
                            .build(),
                    )
                    .build(),
                _ => b.build(),
            }
        });
        let tags = mock!(Client::list_tags_for_resource).then_compute_output(|req| {
            let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
            let b = ListTagsForResourceOutput::builder();
            match (req.resource_id(), req.next_token()) {
                (Some("300000000000"), None) => b.tags(tag("env", "prod")).next_token("n").build(),
                (Some("300000000000"), Some("n")) => b.tags(tag("team", "payments")).build(),
                _ => b.build(),
            }
        });
        let dir = AwsOrgDirectory::new(client(&[&org, &roots, &ous, &accounts, &tags]));
        let snap = dir.snapshot().await.unwrap();
        assert_eq!((snap.organization_id.as_str(), snap.management_account_id.as_str()), ("o-abc", "100000000000"));
        let by_name: BTreeMap<&str, _> = snap.accounts.iter().map(|a| (a.name.as_str(), a)).collect();
        assert_eq!(by_name.len(), 5, "{:?}", by_name.keys());
        assert!(by_name["management"].ou_path.is_empty() && by_name["loose"].ou_path.is_empty());
        assert_eq!(by_name["b-1"].ou_path, vec!["ou-b"]);
        assert_eq!(by_name["c-1"].ou_path, vec!["ou-a", "ou-c"]);
        assert_eq!(by_name["c-2"].status, AccountStatus::Suspended);
        assert_eq!(
            by_name["c-1"].tags,
            BTreeMap::from([("env".to_string(), "prod".to_string()), ("team".to_string(), "payments".to_string())])
        );
        assert_eq!(tags.num_calls(), 6, "one listing per account, plus the second page");
    }
}

mod dynamodb {
    use crate::dynamo::DynamoStore;
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
    use sso_fanout_core::store::LatencyHistory;

    fn client(rules: &[&Rule]) -> Client {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "mock"))
            .http_client(create_mock_http_client())
            .interceptor(interceptor)
            .build();
        Client::from_conf(conf)
    }

    fn samples_item(version: u64, samples: &[u64]) -> GetItemOutput {
        GetItemOutput::builder()
            .item("pk", AttributeValue::S("LATENCY".into()))
            .item("sk", AttributeValue::S("SAMPLES".into()))
            .item("version", AttributeValue::N(version.to_string()))
            .item("samples", AttributeValue::L(samples.iter().map(|s| AttributeValue::N(s.to_string())).collect()))
            .build()
    }

    /// Another worker wrote between our read and our write: the conditional put fails, the
    /// store re-reads and appends to the newer list (DynamoDB's conditional write is atomic;
    /// moto's is not guaranteed to be, so this is checked here rather than there).
    #[tokio::test]
    async fn latency_append_retries_on_a_concurrent_writer() {
        let get =
            mock!(Client::get_item).sequence().output(|| samples_item(3, &[1, 2])).output(|| samples_item(4, &[1, 2, 7])).build();
        let put = mock!(Client::put_item)
            .sequence()
            .http_status(
                400,
                Some(
                    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#
                        .into(),
                ),
            )
            .output(|| PutItemOutput::builder().build())
            .build();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = {
            let seen = seen.clone();
            mock!(Client::put_item)
                .match_requests(move |req| {
                    let version =
                        req.expression_attribute_values().and_then(|v| v.get(":v")).and_then(|v| v.as_n().ok()).cloned();
                    let samples: Vec<String> = match req.item().and_then(|i| i.get("samples")) {
                        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_n().ok().cloned()).collect(),
                        _ => vec![],
                    };
                    seen.lock().unwrap().push((req.condition_expression().map(str::to_string), version, samples));
                    false // observe only; `put` answers
                })
                .then_output(|| PutItemOutput::builder().build())
        };
        let store = DynamoStore::new(client(&[&record, &get, &put]), "t");
        let scope = sso_fanout_core::model::Scope {
            organization_id: "o-abcdef1234".into(),
            management_account_id: "100000000000".into(),
            instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111".into(),
            region: "us-east-1".into(),
        };
        store.add_latency_samples(&scope, &[9]).await.unwrap();
        assert_eq!(get.num_calls(), 2);
        assert_eq!(put.num_calls(), 2);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], (Some("#v = :v".into()), Some("3".into()), vec!["1".into(), "2".into(), "9".into()]));
        assert_eq!(seen[1], (Some("#v = :v".into()), Some("4".into()), vec!["1".into(), "2".into(), "7".into(), "9".into()]));
    }
}

#[tokio::test]
async fn a_users_listing_keeps_only_the_users_own_assignments_not_its_groups() {
    const USER: &str = "a1b2c3d4-0000-4000-8000-000000000001";
    let for_user = mock!(Client::list_account_assignments_for_principal)
        .match_requests(|r| r.principal_id() == Some(USER) && r.principal_type() == Some(&SsoPrincipalType::User))
        .then_output(|| {
            let own = AccountAssignmentForPrincipal::builder()
                .account_id("111111111111")
                .permission_set_arn(PS)
                .principal_type(SsoPrincipalType::User)
                .principal_id(USER)
                .build();
            // Access the user has through a group it belongs to, listed under the group.
            ListAccountAssignmentsForPrincipalOutput::builder()
                .account_assignments(own)
                .account_assignments(for_principal_item("222222222222", PS))
                .build()
        });
    let ic = ic(&[&for_user]);
    let user = Principal { kind: PrincipalType::User, id: USER.parse().unwrap(), name: None };
    let found = ic.principal_assignments(&user).await.unwrap();
    assert_eq!(found.assignments, [("111111111111".parse().unwrap(), PS.parse().unwrap())].into_iter().collect());
    let candidates: Vec<AccountId> = ["111111111111", "222222222222"].iter().map(|a| a.parse().unwrap()).collect();
    let held = ic.assigned_accounts(&user, &PS.parse().unwrap(), &candidates).await.unwrap();
    assert_eq!(held, ["111111111111".parse().unwrap()].into_iter().collect(), "a group's grant is not the user's own: it is created");
}
