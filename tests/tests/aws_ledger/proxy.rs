//! A proxy to moto that lets one request at a time through (see the test binary's doc: moto is
//! not linearizable under concurrent requests) and injects the faults DynamoDB can produce:
//!
//! - `DropAnswer`: the request is applied, its answer lost (the connection closes before it):
//!   the SDK sees a connection error and sends the request again.
//! - `Delay`: the request reaches DynamoDB only after this long, after the SDK gave up on it (its
//!   attempt timeout) and sent it again: a late duplicate.
//! - `Conflict`: a TransactWriteItems is cancelled for a concurrent transaction
//!   (`TransactionCanceledException`, reason `TransactionConflict`), without reaching moto.
//! - `Throttle(code)`: a 400 `ThrottlingException` / `ProvisionedThroughputExceededException`,
//!   without reaching moto.
//! - `ServerError`: the request is applied and answered with a 500 `InternalServerError`.
//!
//! Faults are given per operation (`X-Amz-Target`) and count, or at random (`chaos`). Every
//! request is logged with its operation, `ClientRequestToken` and the fault it met.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    DropAnswer,
    Delay(Duration),
    Conflict,
    Throttle(&'static str),
    ServerError,
}

/// Faults at random, per mille of the requests of the kinds they apply to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chaos {
    pub drop_answer: u64,
    pub conflict: u64,
    pub throttle: u64,
}

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub op: String,
    pub token: Option<String>,
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct Plan {
    /// (operation, fault, how many more requests meet it)
    rules: Vec<(String, Fault, u32)>,
    chaos: Option<(super::Rng, Chaos)>,
    seen: Vec<Seen>,
}

impl Plan {
    fn fault_for(&mut self, op: &str) -> Option<Fault> {
        if let Some(rule) = self.rules.iter_mut().find(|(o, _, n)| o == op && *n > 0) {
            rule.2 -= 1;
            return Some(rule.1);
        }
        let (rng, chaos) = self.chaos.as_mut()?;
        let roll = rng.below(1_000);
        if roll < chaos.drop_answer {
            Some(Fault::DropAnswer)
        } else if op == "TransactWriteItems" && roll < chaos.drop_answer + chaos.conflict {
            Some(Fault::Conflict)
        } else if roll < chaos.drop_answer + chaos.conflict + chaos.throttle {
            Some(Fault::Throttle(if roll % 2 == 0 { "ThrottlingException" } else { "ProvisionedThroughputExceededException" }))
        } else {
            None
        }
    }
}

pub struct SerialProxy {
    pub endpoint: String,
    /// Held while a request is upstream; false once the proxy is dropped.
    open: Arc<Mutex<bool>>,
    plan: Arc<Mutex<Plan>>,
}

impl SerialProxy {
    pub fn new(upstream: u16) -> SerialProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let open = Arc::new(Mutex::new(true));
        let plan = Arc::new(Mutex::new(Plan::default()));
        let (gate, faults) = (open.clone(), plan.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (gate, faults) = (gate.clone(), faults.clone());
                std::thread::spawn(move || relay(conn, upstream, &gate, &faults));
            }
        });
        SerialProxy { endpoint, open, plan }
    }

    /// The next `times` requests of `op` (e.g. "TransactWriteItems") meet `fault`.
    pub fn inject(&self, op: &str, fault: Fault, times: u32) {
        self.plan.lock().unwrap().rules.push((op.to_string(), fault, times));
    }

    pub fn chaos(&self, seed: u64, chaos: Chaos) {
        self.plan.lock().unwrap().chaos = Some((super::Rng(seed), chaos));
    }

    pub fn calm(&self) {
        let mut plan = self.plan.lock().unwrap();
        plan.chaos = None;
        plan.rules.clear();
    }

    /// The requests received since the last call.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.plan.lock().unwrap().seen)
    }
}

impl Drop for SerialProxy {
    /// Waits for the request upstream, if any, and lets no other through: a test that failed
    /// with tasks still running leaves nothing behind in the next test's moto.
    fn drop(&mut self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
}

fn relay(client: TcpStream, upstream: u16, gate: &Mutex<bool>, plan: &Mutex<Plan>) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut client = client;
    loop {
        let Some(request) = read_message(&mut from_client, true)? else {
            return Ok(()); // the client closed the connection
        };
        let (op, token, items) = describe(&request);
        let fault = {
            let mut plan = plan.lock().unwrap();
            let fault = plan.fault_for(&op);
            plan.seen.push(Seen { op: op.clone(), token, fault });
            fault
        };
        if let Some(Fault::Delay(d)) = fault {
            std::thread::sleep(d); // the SDK gives up on this connection meanwhile
        }
        let response = {
            let open = gate.lock().unwrap_or_else(|e| e.into_inner());
            if !*open {
                return Ok(());
            }
            match fault {
                Some(Fault::Conflict) => refusal("TransactionCanceledException", &cancellation(items)),
                Some(Fault::Throttle(code)) => refusal(code, "\"message\":\"Rate of requests exceeds the allowed throughput.\""),
                _ => {
                    let up = TcpStream::connect(("127.0.0.1", upstream))?;
                    up.set_nodelay(true)?;
                    (&up).write_all(&request)?;
                    // Read the answer by its Content-Length: waiting for the server to close costs more.
                    let answer = read_message(&mut BufReader::new(up), false)?.unwrap_or_default();
                    if fault == Some(Fault::ServerError) {
                        answer_with(500, "Internal Server Error", "InternalServerError", "\"message\":\"Internal server error\"")
                    } else {
                        answer
                    }
                }
            }
        };
        if matches!(fault, Some(Fault::DropAnswer | Fault::Delay(_))) {
            return Ok(()); // applied; the answer never reaches the client
        }
        client.write_all(&response)?;
    }
}

/// The operation (`X-Amz-Target` after the dot), the ClientRequestToken and the number of
/// TransactItems of a request.
fn describe(request: &[u8]) -> (String, Option<String>, usize) {
    let text = String::from_utf8_lossy(request);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let op = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("x-amz-target:").then(|| l.rsplit('.').next().unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let token = json["ClientRequestToken"].as_str().map(str::to_string);
    let items = json["TransactItems"].as_array().map_or(0, Vec::len);
    (op, token, items)
}

/// Reasons of a transaction cancelled for a concurrent one: the first item conflicts.
fn cancellation(items: usize) -> String {
    let reasons: Vec<&str> = (0..items.max(1))
        .map(|i| if i == 0 { r#"{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}"# } else { r#"{"Code":"None"}"# })
        .collect();
    let codes: Vec<&str> = (0..items.max(1)).map(|i| if i == 0 { "TransactionConflict" } else { "None" }).collect();
    format!(
        "\"Message\":\"Transaction cancelled, please refer cancellation reasons for specific reasons [{}]\",\"CancellationReasons\":[{}]",
        codes.join(", "),
        reasons.join(",")
    )
}

/// A 400 answer of DynamoDB (awsJson1_0) with `code` and the members `fields`.
fn refusal(code: &str, fields: &str) -> Vec<u8> {
    answer_with(400, "Bad Request", code, fields)
}

fn answer_with(status: u16, reason: &str, code: &str, fields: &str) -> Vec<u8> {
    let body = format!("{{\"__type\":\"com.amazonaws.dynamodb.v20120810#{code}\",{fields}}}");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: fault-{code}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One HTTP/1.1 message with a Content-Length body (or none); a request gets `Connection:
/// close` (moto closes every connection anyway). None at end of stream.
fn read_message(from: &mut impl BufRead, request: bool) -> std::io::Result<Option<Vec<u8>>> {
    let (mut message, mut length) = (Vec::new(), 0usize);
    loop {
        let mut line = String::new();
        if from.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if !(request && lower.starts_with("connection:")) {
            message.extend_from_slice(line.as_bytes());
        }
    }
    if request {
        message.extend_from_slice(b"Connection: close\r\n");
    }
    message.extend_from_slice(b"\r\n");
    let start = message.len();
    message.resize(start + length, 0);
    std::io::Read::read_exact(from, &mut message[start..])?;
    Ok(Some(message))
}
