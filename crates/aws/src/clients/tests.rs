//! The clients against a local HTTP responder on 127.0.0.1: the ledger clock measured from its
//! `Date`, and the time bounds of the ledger's and the engine's calls.

use super::AwsClients;
use aws_smithy_types::date_time::{DateTime, Format};
use sso_fanout_core::quota::{unix_us, QuotaClock};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
enum Answer {
    /// `200 {}` with a `Date` this many µs from the local clock (None: no `Date`).
    Dated(Option<i64>),
    /// Reads the request and never answers.
    Never,
}

/// A responder answering every request as `answer` says; counts the requests it read.
struct Responder {
    endpoint: String,
    requests: Arc<AtomicU32>,
}

impl Responder {
    fn start(answer: impl Fn(u32) -> Answer + Send + Sync + 'static) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let requests = Arc::new(AtomicU32::new(0));
        let (count, answer) = (requests.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (count, answer) = (count.clone(), answer.clone());
                std::thread::spawn(move || serve(conn, &count, &*answer));
            }
        });
        Responder { endpoint, requests }
    }
}

fn serve(conn: TcpStream, count: &AtomicU32, answer: &dyn Fn(u32) -> Answer) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        reader.read_exact(&mut vec![0; length])?;
        let n = count.fetch_add(1, Ordering::SeqCst);
        match answer(n) {
            Answer::Never => std::thread::sleep(Duration::from_secs(30)),
            Answer::Dated(offset) => {
                let date = offset.map(|o| {
                    let server = DateTime::from_secs((unix_us() as i64 + o).div_euclid(1_000_000));
                    format!("Date: {}\r\n", server.fmt(Format::HttpDate).unwrap())
                });
                let head = format!(
                    "HTTP/1.1 200 OK\r\n{}Content-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: r-{n}\r\nContent-Length: 2\r\n\r\n{{}}",
                    date.unwrap_or_default()
                );
                conn.write_all(head.as_bytes())?;
            }
        }
    }
}

async fn get_item(clients: &AwsClients) -> Result<(), String> {
    let key = aws_sdk_dynamodb::types::AttributeValue::S("k".into());
    clients.ledger_dynamodb.get_item().table_name("t").key("pk", key.clone()).key("sk", key).send().await.map(|_| ()).map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn the_ledger_clock_lands_on_dynamodb_s_clock_and_narrows_as_answers_arrive() {
    // The "server" runs 4.321 s ahead of this machine; its first answer carries no Date.
    const OFFSET: i64 = 4_321_000;
    let responder = Responder::start(|n| Answer::Dated((n > 0).then_some(OFFSET)));
    let clients = AwsClients::local(&responder.endpoint, "us-east-1").await;
    let clock = clients.ledger_clock.clone();
    assert_eq!(clock.uncertainty_us(), u64::MAX, "nothing known before an answer");
    get_item(&clients).await.unwrap();
    assert_eq!((clock.samples(), clock.uncertainty_us()), (0, u64::MAX), "an answer without Date teaches nothing");

    let within = |what: &str| {
        let (truth, now, u) = (unix_us() as i64 + OFFSET, clock.now_us() as i64, clock.uncertainty_us());
        assert!((now - truth).unsigned_abs() <= u, "{what}: read {now}, server at {truth}, uncertainty {u}");
        u
    };
    get_item(&clients).await.unwrap();
    let first = within("after one answer");
    assert!((500_000..600_000).contains(&first), "one answer bounds it to about half a second: {first}");

    // Answers at varied phases of the server's second: one on each side of a boundary pins it.
    let start = Instant::now();
    let mut last = first;
    while start.elapsed() < Duration::from_millis(1_300) {
        get_item(&clients).await.unwrap();
        let u = within("while answers arrive");
        assert!(u <= last, "the uncertainty never grows: {u} after {last}");
        last = u;
        tokio::time::sleep(Duration::from_millis(17)).await;
    }
    eprintln!("ledger clock: {} µs after one answer, {last} µs after {} answers", first, clock.samples());
    assert!(last <= 30_000, "narrowed to the spacing of the answers: {last} µs");
    assert!(clock.samples() >= 20, "{} samples", clock.samples());
    // The run store's client feeds the same clock.
    let before = clock.samples();
    let key = aws_sdk_dynamodb::types::AttributeValue::S("k".into());
    clients.dynamodb.get_item().table_name("t").key("pk", key.clone()).key("sk", key).send().await.unwrap();
    assert_eq!(clock.samples(), before + 1);
}

#[tokio::test]
async fn a_ledger_call_that_is_never_answered_ends_within_its_operation_timeout() {
    let responder = Responder::start(|_| Answer::Never);
    let clients = AwsClients::local(&responder.endpoint, "us-east-1").await;
    let start = Instant::now();
    let e = get_item(&clients).await.unwrap_err();
    let took = start.elapsed();
    assert!(e.contains("Timeout"), "{e}");
    assert!(took >= Duration::from_millis(2_900) && took < Duration::from_millis(3_600), "took {took:?}");
    // 1 s attempts, sent again on a fresh connection: the operation bound ends the third.
    let sent = responder.requests.load(Ordering::SeqCst);
    eprintln!("unanswered ledger call: {sent} attempts, ended after {took:?}");
    assert!((2..=3).contains(&sent), "{sent} attempts");
}

#[tokio::test]
async fn an_engine_create_is_sent_once_and_abandoned_at_the_create_call_bound() {
    let responder = Responder::start(|_| Answer::Never);
    let clients = AwsClients::local(&responder.endpoint, "us-east-1").await;
    let start = Instant::now();
    let e = clients
        .sso_admin_engine
        .create_account_assignment()
        .instance_arn("arn:aws:sso:::instance/ssoins-1111111111111111")
        .target_id("200000000001")
        .target_type(aws_sdk_ssoadmin::types::TargetType::AwsAccount)
        .permission_set_arn("arn:aws:sso:::permissionSet/ssoins-1111111111111111/ps-1111111111111111")
        .principal_type(aws_sdk_ssoadmin::types::PrincipalType::Group)
        .principal_id("g-1")
        .send()
        .await
        .unwrap_err();
    let took = start.elapsed();
    let bound = sso_fanout_core::quota::CREATE_CALL_BOUND;
    assert!(matches!(e, aws_sdk_ssoadmin::error::SdkError::TimeoutError(_)), "{e:?}");
    assert!(took >= bound - Duration::from_millis(100) && took < bound + Duration::from_millis(600), "took {took:?}");
    assert_eq!(responder.requests.load(Ordering::SeqCst), 1, "no SDK retry: the engine owns retrying");
}
