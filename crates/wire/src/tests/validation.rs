//! Every request validated against botocore's model, as AWS validates it: the models, the
//! patterns, and the documented examples (`every_operation` has the table of all operations).

use super::*;
use crate::model::{compile_pattern, Model};
use std::collections::BTreeSet;

#[test]
fn every_model_parses_and_every_pattern_compiles() {
    for service in Service::ALL {
        let model =
            Model::parse(service.source()).unwrap_or_else(|e| panic!("{}: {e}", service.name()));
        assert_eq!(
            model.unsupported_patterns,
            vec![],
            "{}: patterns Rust's regex cannot compile",
            service.name()
        );
        assert!(model.shapes.len() > 5, "{}", service.name());
    }
}

#[test]
fn the_models_list_exactly_the_served_operations() {
    let served = [
        (Service::SsoAdmin, SSO_ADMIN_TARGET, SSO_ADMIN_OPERATIONS),
        (
            Service::Organizations,
            ORGANIZATIONS_TARGET,
            ORGANIZATIONS_OPERATIONS,
        ),
        (
            Service::IdentityStore,
            IDENTITY_STORE_TARGET,
            IDENTITY_STORE_OPERATIONS,
        ),
    ];
    for (service, prefix, operations) in served {
        let model = service.model();
        assert_eq!(model.target_prefix, prefix);
        let listed: BTreeSet<&str> = model.operations.keys().map(String::as_str).collect();
        assert_eq!(
            listed,
            operations.iter().copied().collect(),
            "{}: run tests/wire/models.py",
            service.name()
        );
    }
}

#[test]
fn patterns_match_the_whole_value_with_ascii_digits_and_word_characters() {
    let account = compile_pattern(r"\d{12}").unwrap();
    assert!(account.is_match("123456789012"));
    assert!(
        !account.is_match("x123456789012"),
        "a value that only contains a match"
    );
    assert!(
        !account.is_match("١٢٣٤٥٦٧٨٩٠١٢"),
        "Arabic-Indic digits are not \\d on AWS"
    );
    let table = compile_pattern("[a-zA-Z0-9_.-]+").unwrap();
    assert!(!table.is_match("\"smart-dcb-messages\""), "aws/aws-cli#790");
    let word = compile_pattern(r"[\w+=,.@-]+").unwrap();
    assert!(word.is_match("a_b=c") && !word.is_match("é"));
    let uuid =
        compile_pattern(r"\b[0-9a-f]{8}\b-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-\b[0-9a-f]{12}\b")
            .unwrap();
    assert!(uuid.is_match("00000007-5e11-4a5b-9c0d-000000000001"));
    // Organizations' alternation without a group: both sides anchored by the whole-value rule.
    let parent =
        compile_pattern(r"^(r-[0-9a-z]{4,32})|(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})$").unwrap();
    assert!(parent.is_match("r-sim0") && !parent.is_match("r-sim0 and more"));
}

/// The forms the issue found refused or let through, answered as AWS answers them.
#[tokio::test]
async fn the_documented_examples_are_answered_as_aws_answers_them() {
    let server = Server::start(unthrottled(5), 0).await.unwrap();
    let e = server.emulator();
    let sim = e.sim();
    let store = sim.instance_info().identity_store_id;
    let arn = sim.instance_info().instance_arn;
    let group = sim.principals()[0].id.as_str().to_string();
    let by = |path: &str, value: &str| json!({"IdentityStoreId": store, "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": path, "AttributeValue": value}}});
    let is = |op: &str| format!("{IDENTITY_STORE_TARGET}.{op}");

    // GetGroupId by the documented `displayName` and by Terraform's `DisplayName`.
    for path in ["displayName", "DisplayName"] {
        let found = e
            .call(&is("GetGroupId"), &by(path, "PlatformAdmins"))
            .await
            .unwrap();
        assert_eq!(found["GroupId"], group, "{path}");
    }
    for path in ["userName", "UserName"] {
        let found = e.call(&is("GetUserId"), &by(path, "alice")).await.unwrap();
        assert!(found["UserId"].as_str().is_some(), "{path}: {found}");
    }
    // A documented path no simulated user has a value for: not found, not refused.
    let err = e
        .call(&is("GetUserId"), &by("emails.value", "alice@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "ResourceNotFoundException", "{err:?}");
    let err = e
        .call(&is("GetGroupId"), &by("title", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "ValidationException", "{err:?}");
    // The identity store by ARN, as the API reference allows.
    let by_arn = json!({"IdentityStoreId": format!("arn:aws:identitystore::111122223333:identitystore/{store}"), "GroupId": group});
    assert_eq!(
        e.call(&is("DescribeGroup"), &by_arn).await.unwrap()["DisplayName"],
        "PlatformAdmins"
    );

    let err = e
        .call(
            "SWBExternalService.ListPermissionSets",
            &json!({"InstanceArn": arn, "MaxResults": 1000}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("ValidationException", "1 validation error detected: Value '1000' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 100")
    );
    let err = e
        .call(
            "AWSOrganizationsV20161128.ListAccounts",
            &json!({"MaxResults": 25}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.reason.as_deref()),
        ("InvalidInputException", Some("MAX_VALUE_EXCEEDED")),
        "{err:?}"
    );
    assert!(err.message.contains("'maxResults'"), "{err:?}");
    let err = e
        .call(
            "AWSOrganizationsV20161128.DescribeAccount",
            &json!({"AccountId": "abc"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.reason.as_deref()),
        ("InvalidInputException", Some("INVALID_PATTERN")),
        "{err:?}"
    );
    assert!(
        err.message
            .starts_with("You provided a value that does not match the required pattern."),
        "{err:?}"
    );
    // A well-formed id that is not in the organization: now AccountNotFoundException.
    let err = e
        .call(
            "AWSOrganizationsV20161128.DescribeAccount",
            &json!({"AccountId": "999999999999"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, "AccountNotFoundException");

    // On the wire: `__type`, `message`, Organizations' `Reason`, and the error type header.
    let (status, body) = http(
        server.addr,
        "POST",
        Some("AWSOrganizationsV20161128.DescribeAccount"),
        r#"{"AccountId":"abc"}"#,
    )
    .await;
    assert_eq!(
        (status, &body["__type"], &body["Reason"]),
        (
            400,
            &json!("InvalidInputException"),
            &json!("INVALID_PATTERN")
        ),
        "{body}"
    );
    // Several violations at once, in one message; an unknown member is ignored.
    let body = json!({"InstanceArn": "arn:aws:sso:::instance/nope", "TargetId": "12", "TargetType": "S3", "PermissionSetArn": "x", "PrincipalType": "ROLE", "PrincipalId": group, "Extra": 1});
    let err = e
        .call("SWBExternalService.CreateAccountAssignment", &body)
        .await
        .unwrap_err();
    // Each broken constraint is one error ('12' is both too short and not 12 digits).
    assert!(
        err.message.starts_with("7 validation errors detected: "),
        "{err:?}"
    );
    for part in ["'instanceArn'", "'targetId'", "'targetType'", "'permissionSetArn'", "Value 'ROLE' at 'principalType' failed to satisfy constraint: Member must satisfy enum value set: [USER, GROUP]"] {
        assert!(err.message.contains(part), "{part}: {err:?}");
    }
    assert!(!err.message.contains("extra"), "{err:?}");
    assert_eq!(e.stats()["invalid"]["CreateAccountAssignment"], 1);
    server.stop().await;
}

#[tokio::test]
async fn unions_take_exactly_one_member_and_sensitive_values_are_not_shown() {
    let server = Server::start(unthrottled(3), 0).await.unwrap();
    let e = server.emulator();
    let store = e.sim().instance_info().identity_store_id;
    let target = format!("{IDENTITY_STORE_TARGET}.GetGroupId");
    let unique = json!({"AttributePath": "displayName", "AttributeValue": "PlatformAdmins"});
    let external = json!({"Issuer": "idp", "Id": "x"});
    for (alternate, set) in [
        (json!({}), 0),
        (
            json!({"UniqueAttribute": unique, "ExternalId": external}),
            2,
        ),
    ] {
        let err = e
            .call(
                &target,
                &json!({"IdentityStoreId": store, "AlternateIdentifier": alternate}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, "ValidationException");
        assert!(err.message.contains(&format!("at 'alternateIdentifier' failed to satisfy constraint: Member must have exactly one member set, found {set}")), "{err:?}");
    }
    let err = e
        .call(
            &target,
            &json!({"IdentityStoreId": store, "AlternateIdentifier": {"ExternalId": external}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code, "ResourceNotFoundException",
        "no simulated principal has an external id"
    );
    let secret = "x".repeat(1025);
    let listing = json!({"IdentityStoreId": store, "Filters": [{"AttributePath": "DisplayName", "AttributeValue": secret}]});
    let err = e
        .call(&format!("{IDENTITY_STORE_TARGET}.ListGroups"), &listing)
        .await
        .unwrap_err();
    assert_eq!(err.message, "1 validation error detected: Value at 'filters.1.member.attributeValue' failed to satisfy constraint: Member must have length less than or equal to 1024");
    server.stop().await;
}
