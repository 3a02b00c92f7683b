use super::*;
use sso_fanout_sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn quick(accounts: usize) -> SimConfig {
    let mut c = SimConfig::clean(accounts, 3);
    c.call_latency_ms = (0, 0);
    c.latency = sso_fanout_core::tiers::LatencyModel {
        median_s: 0.3,
        p99_s: 0.6,
        samples: 0,
    };
    c
}

/// One raw HTTP/1.1 request; (status, body).
async fn http(addr: SocketAddr, method: &str, target: Option<&str>, body: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let target = target.map(|t| format!("X-Amz-Target: {t}\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/sso/aws4_request, SignedHeaders=host, Signature=00\r\n")).unwrap_or_default();
    let req = format!("{method} / HTTP/1.1\r\nHost: {addr}\r\n{target}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let req = if method == "GET" {
        req.replacen("GET / ", "GET /_sim/stats ", 1)
    } else {
        req
    };
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_assignment_goes_in_progress_then_succeeded_over_http() {
    let server = Server::start(quick(5), 0).await.unwrap();
    let a = server.addr;
    let (st, inst) = http(a, "POST", Some("SWBExternalService.ListInstances"), "{}").await;
    assert_eq!(st, 200, "{inst}");
    let arn = inst["Instances"][0]["InstanceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let ps = server.emulator().sim().permission_sets()[0]
        .arn
        .as_str()
        .to_string();
    let group = server.emulator().sim().principals()[0]
        .id
        .as_str()
        .to_string();
    let body = json!({"InstanceArn": arn, "TargetId": "200000000001", "TargetType": "AWS_ACCOUNT", "PermissionSetArn": ps, "PrincipalType": "GROUP", "PrincipalId": group}).to_string();
    let (st, created) = http(
        a,
        "POST",
        Some("SWBExternalService.CreateAccountAssignment"),
        &body,
    )
    .await;
    assert_eq!(st, 200, "{created}");
    let status = &created["AccountAssignmentCreationStatus"];
    assert_eq!(status["Status"], "IN_PROGRESS");
    assert!(status["CreatedDate"].as_f64().unwrap() > 1.7e9);
    // A second operation on the same account while the first runs: ConflictException, 400.
    let (st, conflict) = http(
        a,
        "POST",
        Some("SWBExternalService.CreateAccountAssignment"),
        &body,
    )
    .await;
    assert_eq!(
        (st, conflict["__type"].as_str()),
        (400, Some("ConflictException")),
        "{conflict}"
    );
    let id = status["RequestId"].as_str().unwrap();
    let listed = json!({"InstanceArn": arn, "Filter": {"Status": "IN_PROGRESS"}}).to_string();
    let (_, l) = http(
        a,
        "POST",
        Some("SWBExternalService.ListAccountAssignmentCreationStatus"),
        &listed,
    )
    .await;
    assert_eq!(l["AccountAssignmentsCreationStatus"][0]["RequestId"], id);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = json!({"InstanceArn": arn, "AccountAssignmentCreationRequestId": id}).to_string();
    let (st, done) = http(
        a,
        "POST",
        Some("SWBExternalService.DescribeAccountAssignmentCreationStatus"),
        &d,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        done["AccountAssignmentCreationStatus"]["Status"], "SUCCEEDED",
        "{done}"
    );
    let (_, stats) = http(a, "GET", None, "").await;
    assert_eq!(stats["calls"]["CreateAccountAssignment"], 2);
    assert_eq!(stats["conflicts"], 1);
    assert_eq!(stats["violations"]["rate"], 0);
    assert!(stats["last_finished_s"].as_f64().unwrap() > 0.0, "{stats}");
    server.stop().await;
}

#[tokio::test]
async fn a_burst_is_throttled_as_aws_throttles() {
    let server = Server::start(quick(3), 0).await.unwrap();
    let e = server.emulator();
    let mut throttled = 0;
    for _ in 0..25 {
        if let Err(w) = e.call("SWBExternalService.ListInstances", &json!({})).await {
            assert_eq!(
                (w.status, w.code.as_str(), w.message.as_str()),
                (400, "ThrottlingException", "Rate exceeded")
            );
            throttled += 1;
        }
    }
    // The bucket refills while the burst arrives (real clock): 4 or 5 refused; the strict
    // window counts every request beyond 20 in the second.
    assert!((1..=5).contains(&throttled), "{throttled}");
    let s = e.stats();
    assert_eq!(s["throttled"], throttled);
    assert_eq!(s["violations"]["rate"], 5);
    assert_eq!(s["calls"]["ListInstances"], 25);
    server.stop().await;
}

#[tokio::test]
async fn organizations_and_identity_store_paginate() {
    let server = Server::start(quick(45), 0).await.unwrap();
    let e = server.emulator();
    let first = e
        .call("AWSOrganizationsV20161128.ListAccounts", &json!({}))
        .await
        .unwrap();
    assert_eq!(first["Accounts"].as_array().unwrap().len(), 20);
    assert_eq!(first["Accounts"][0]["Status"], "ACTIVE");
    let mut token = first["NextToken"].as_str().map(str::to_string);
    let mut n = 20;
    while let Some(t) = token {
        let p = e
            .call(
                "AWSOrganizationsV20161128.ListAccounts",
                &json!({"NextToken": t}),
            )
            .await
            .unwrap();
        n += p["Accounts"].as_array().unwrap().len();
        token = p["NextToken"].as_str().map(str::to_string);
    }
    assert_eq!(n, 46, "members + management");
    let store = e.sim().instance_info().identity_store_id;
    let g = e
        .call("AWSIdentityStore.ListGroups", &json!({"IdentityStoreId": store, "Filters": [{"AttributePath": "DisplayName", "AttributeValue": "PlatformAdmins"}]}))
        .await
        .unwrap();
    assert_eq!(g["Groups"].as_array().unwrap().len(), 1);
    let id = e
        .call("AWSIdentityStore.GetGroupId", &json!({"IdentityStoreId": store, "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": "DisplayName", "AttributeValue": "PlatformAdmins"}}}))
        .await
        .unwrap();
    assert_eq!(id["GroupId"], g["Groups"][0]["GroupId"]);
    let err = e
        .call(
            "AWSOrganizationsV20161128.ListAccountsForParent",
            &json!({"ParentId": "ou-nope-nopenope"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, "ParentNotFoundException");
    server.stop().await;
}
