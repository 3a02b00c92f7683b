use super::*;
use sso_fanout_sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod every_operation;
mod rate;
mod validation;

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

/// A simulated instance that never throttles, so a burst of refused requests is validated.
fn unthrottled(accounts: usize) -> SimConfig {
    let mut c = quick(accounts);
    c.limits.requests_per_second = 1e9;
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
    exchange(&mut s, &req).await
}

/// Sends one raw request, reads the whole answer: (status, JSON body or Null).
async fn exchange(s: &mut tokio::net::TcpStream, req: &str) -> (u16, Value) {
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
    // 20 admitted in the sliding second, the 5 after them refused; the audit counts the same 5.
    assert_eq!(throttled, 5);
    let s = e.stats();
    assert_eq!(s["throttled"], throttled);
    assert_eq!(s["violations"]["rate"], 5);
    assert_eq!(
        s["rate_limit"],
        json!({"limit": 20.0, "received": 25, "admitted": 20, "refused": 5, "storm": 0, "max_admitted_in_window": 20, "max_received_in_window": 25})
    );
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

/// Without a Filter, ListAccountAssignmentsForPrincipal answers every account and every
/// permission set of the principal, 100 per page with NextToken (MaxResults at most 100).
#[tokio::test]
async fn assignments_for_principal_list_every_permission_set_with_next_token() {
    let server = Server::start(quick(120), 0).await.unwrap();
    let e = server.emulator();
    let sim = e.sim();
    let arn = sim.instance_info().instance_arn;
    let group = sim.principals()[0].id.clone();
    let (admin, read_only) = (
        sim.permission_sets()[0].arn.clone(),
        sim.permission_sets()[1].arn.clone(),
    );
    let mut expected = std::collections::BTreeSet::new();
    for (i, account) in sim.org().accounts.iter().skip(1).enumerate() {
        sim.put_assignment_out_of_band(&account.id, &admin, &group)
            .unwrap();
        expected.insert((account.id.as_str().to_string(), admin.as_str().to_string()));
        if i % 4 == 0 {
            sim.put_assignment_out_of_band(&account.id, &read_only, &group)
                .unwrap();
            expected.insert((
                account.id.as_str().to_string(),
                read_only.as_str().to_string(),
            ));
        }
    }
    assert_eq!(expected.len(), 150);
    // Another principal's assignment is not listed.
    sim.put_assignment_out_of_band(&sim.org().accounts[1].id, &admin, &sim.principals()[1].id)
        .unwrap();

    let target = "SWBExternalService.ListAccountAssignmentsForPrincipal";
    // MaxResults is 1-100 in the service model: more is refused, as AWS refuses it.
    let too_many = json!({"InstanceArn": arn, "PrincipalId": group.as_str(), "PrincipalType": "GROUP", "MaxResults": 1000});
    assert_eq!(
        e.call(target, &too_many).await.unwrap_err().code,
        "ValidationException"
    );
    let ask = |token: Option<String>| {
        let mut input = json!({"InstanceArn": arn, "PrincipalId": group.as_str(), "PrincipalType": "GROUP", "MaxResults": 100});
        if let Some(t) = token {
            input["NextToken"] = json!(t);
        }
        input
    };
    let mut listed = std::collections::BTreeSet::new();
    let mut pages = vec![];
    let mut token = None;
    loop {
        let page = e.call(target, &ask(token)).await.unwrap();
        let items = page["AccountAssignments"].as_array().unwrap();
        pages.push(items.len());
        for a in items {
            assert_eq!(
                (a["PrincipalId"].as_str(), a["PrincipalType"].as_str()),
                (Some(group.as_str()), Some("GROUP"))
            );
            listed.insert((
                a["AccountId"].as_str().unwrap().to_string(),
                a["PermissionSetArn"].as_str().unwrap().to_string(),
            ));
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, vec![100, 50]);
    assert_eq!(listed, expected);

    // With the account filter: that account's permission sets only.
    let one = sim.org().accounts[1].id.as_str().to_string();
    let filtered = e
        .call(target, &json!({"InstanceArn": arn, "PrincipalId": group.as_str(), "PrincipalType": "GROUP", "Filter": {"AccountId": one}}))
        .await
        .unwrap();
    assert_eq!(
        filtered["AccountAssignments"].as_array().unwrap().len(),
        2,
        "{filtered}"
    );
    // The group's id asked as a USER: nothing.
    let as_user = e
        .call(
            target,
            &json!({"InstanceArn": arn, "PrincipalId": group.as_str(), "PrincipalType": "USER"}),
        )
        .await
        .unwrap();
    assert_eq!(as_user["AccountAssignments"], json!([]));
    assert_eq!(e.stats()["calls"]["ListAccountAssignmentsForPrincipal"], 5);
    server.stop().await;
}

/// One raw HTTP/1.1 request to a `/_sim/` path; (status, body).
async fn sim_http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    exchange(&mut s, &req).await
}

/// `POST` / `DELETE /_sim/assignments`: out-of-band changes over HTTP, no quota spent.
#[tokio::test]
async fn assignments_change_out_of_band_over_http() {
    let server = Server::start(quick(3), 0).await.unwrap();
    let a = server.addr;
    let sim = server.emulator().sim();
    let (account, ps, group) = (
        sim.org().accounts[1].id.clone(),
        sim.permission_sets()[2].arn.clone(),
        sim.principals()[0].id.clone(),
    );
    let body = json!({"AccountId": account.as_str(), "PermissionSetArn": ps.as_str(), "PrincipalId": group.as_str()}).to_string();
    assert_eq!(
        sim_http(a, "POST", "/_sim/assignments", &body).await,
        (200, json!({"changed": true}))
    );
    assert_eq!(
        sim_http(a, "POST", "/_sim/assignments", &body).await,
        (200, json!({"changed": false}))
    );
    assert!(sim.has_assignment(&account, &ps, &group));
    let (st, listed) = sim_http(a, "GET", "/_sim/assignments", "").await;
    assert_eq!(st, 200);
    assert_eq!(
        listed["AccountAssignments"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(
        sim_http(a, "DELETE", "/_sim/assignments", &body).await,
        (200, json!({"changed": true}))
    );
    assert_eq!(
        sim_http(a, "DELETE", "/_sim/assignments", &body).await,
        (200, json!({"changed": false}))
    );
    assert!(sim.assignments_now().is_empty());
    let unknown = json!({"AccountId": "999999999999", "PermissionSetArn": ps.as_str(), "PrincipalId": group.as_str()}).to_string();
    let (st, err) = sim_http(a, "POST", "/_sim/assignments", &unknown).await;
    assert_eq!(
        (st, err["__type"].as_str()),
        (400, Some("ResourceNotFoundException")),
        "{err}"
    );
    let (st, err) = sim_http(a, "POST", "/_sim/assignments", "{}").await;
    assert_eq!(
        (st, err["__type"].as_str()),
        (400, Some("ValidationException")),
        "{err}"
    );
    assert_eq!(sim.counters().sso_admin_calls(), 0);
    server.stop().await;
}
