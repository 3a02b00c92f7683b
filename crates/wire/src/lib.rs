//! The simulated Organization and IAM Identity Center on the wire: an HTTP server on 127.0.0.1
//! speaking the AWS JSON 1.1 protocol (`X-Amz-Target`, `application/x-amz-json-1.1`, errors as
//! `{"__type", "message"}` with AWS's HTTP status, and Organizations' `Reason` where its model
//! has one), backed by one [`SimCloud`] on the real
//! clock. Any AWS SDK, the AWS CLI or boto3 pointed at it with `AWS_ENDPOINT_URL` (any
//! credentials: SigV4 is accepted unchecked) meets the Identity Center quotas: 20 sso-admin
//! requests in any sliding second (a request is admitted only if fewer than 20 were admitted
//! in the second before it), 15 outstanding assignment operations, one operation per account
//! (`ConflictException`), asynchronous creates/deletes going IN_PROGRESS -> SUCCEEDED/FAILED
//! with the simulator's provisioning latency and fault profile.
//!
//! Every request is validated against its operation's input shape in botocore's service model
//! ([`validate`]; the models are vendored in `models/`), as AWS validates it: a request an SDK
//! would see refused by AWS is refused here, with the service's own error.
//!
//! Every sso-admin request passes [`SimCloud::admit`] at the moment it is received, so the
//! simulator's counters count exactly what the server received; it is validated once admitted
//! (an invalid request spends the quota too). The simulated network delay is applied after the
//! request was admitted (on the way back), so the rate audit sees the arrival times the client
//! produced. Organizations and Identity Store requests are answered from the simulated
//! organization, counted, not throttled.
//!
//! `GET /_sim/stats` answers the counters as JSON (see [`Emulator::stats`]);
//! `GET /_sim/assignments` lists the assignments held now (no quota spent); `GET /_sim/requests`
//! every request received with its arrival time and, for sso-admin, the gate's decision
//! (see [`Emulator::timeline`]). `POST /_sim/assignments` / `DELETE
//! /_sim/assignments` with `{"AccountId", "PermissionSetArn", "PrincipalId"}` create / delete
//! one assignment out of band, as someone in the console would (at once, no quota spent; see
//! [`Emulator::change_out_of_band`]).

pub mod model;
mod services;
pub mod validate;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::{json, Value};
use sso_fanout_core::FanoutError;
use sso_fanout_sim::{Admission, SimCloud, SimConfig};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use model::Service;
pub use services::{IDENTITY_STORE_OPERATIONS, ORGANIZATIONS_OPERATIONS, SSO_ADMIN_OPERATIONS};

/// The `X-Amz-Target` prefixes (botocore's `targetPrefix` of each service model).
pub const SSO_ADMIN_TARGET: &str = "SWBExternalService";
pub const ORGANIZATIONS_TARGET: &str = "AWSOrganizationsV20161128";
pub const IDENTITY_STORE_TARGET: &str = "AWSIdentityStore";

/// An error answer: HTTP status, `__type`, `message` and, for Organizations'
/// `InvalidInputException`, its `Reason`.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub reason: Option<String>,
}

impl WireError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> WireError {
        WireError {
            status,
            code: code.to_string(),
            message: message.into(),
            reason: None,
        }
    }
    /// sso-admin's and Identity Store's refusal of a request they cannot act on.
    pub fn validation(message: impl Into<String>) -> WireError {
        WireError::new(400, "ValidationException", message)
    }
    /// Organizations' refusal of an invalid request, with its `InvalidInputExceptionReason`.
    pub fn invalid_input(reason: &str, message: impl Into<String>) -> WireError {
        WireError {
            reason: Some(reason.to_string()),
            ..WireError::new(400, "InvalidInputException", message)
        }
    }
    pub fn not_found(message: impl Into<String>) -> WireError {
        WireError::new(400, "ResourceNotFoundException", message)
    }

    /// The JSON body: `{"__type", "message"[, "Reason"]}`.
    pub fn body(&self) -> Value {
        let mut body = json!({"__type": self.code, "message": self.message});
        if let Some(reason) = &self.reason {
            body["Reason"] = json!(reason);
        }
        body
    }
}

impl From<FanoutError> for WireError {
    fn from(e: FanoutError) -> WireError {
        match e {
            FanoutError::Throttled { message, .. } => {
                WireError::new(400, "ThrottlingException", message)
            }
            FanoutError::Conflict { message, .. } => {
                WireError::new(400, "ConflictException", message)
            }
            FanoutError::Transient { .. } => WireError::new(
                500,
                "InternalServerException",
                "An internal failure has occurred. Try again later.",
            ),
            FanoutError::AccessDenied { message, .. } => {
                WireError::new(400, "AccessDeniedException", message)
            }
            FanoutError::Validation { message, .. } => WireError::validation(message),
            FanoutError::NotFound { what, name, .. } => {
                WireError::not_found(format!("The {what} {name} does not exist."))
            }
            other => WireError::new(500, "InternalServerException", other.to_string()),
        }
    }
}

/// The server's state: the simulated cloud and what the server itself counts.
pub struct Emulator {
    sim: SimCloud,
    /// Unix time (s) of the simulator's start: timestamps answered are `epoch + elapsed`.
    epoch: f64,
    /// (lowest, highest) simulated network round trip added to every answer, ms.
    call_latency_ms: (u64, u64),
    calls: Mutex<BTreeMap<String, u64>>,
    first_call_s: Mutex<Option<f64>>,
    requests: AtomicU64,
    /// Every request received: seconds since start, operation, and for sso-admin the gate's
    /// decision.
    timeline: Mutex<Vec<(f64, String, Option<Admission>)>>,
    /// Requests refused by the validator, by operation.
    invalid: Mutex<BTreeMap<String, u64>>,
}

impl Emulator {
    /// A simulated cloud from `config`. Its `call_latency_ms` becomes the delay added to every
    /// answer after the request was admitted; the simulator itself runs with none (it sees
    /// every request when the server receives it).
    pub fn new(mut config: SimConfig) -> Emulator {
        let call_latency_ms = config.call_latency_ms;
        config.call_latency_ms = (0, 0);
        let sim = SimCloud::new(config);
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
            - sim.elapsed_s();
        Emulator {
            sim,
            epoch,
            call_latency_ms,
            calls: Mutex::new(BTreeMap::new()),
            first_call_s: Mutex::new(None),
            requests: AtomicU64::new(0),
            timeline: Mutex::new(Vec::new()),
            invalid: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn sim(&self) -> &SimCloud {
        &self.sim
    }

    /// Unix seconds of a moment given in seconds since the simulator started.
    pub(crate) fn timestamp(&self, elapsed_s: f64) -> f64 {
        ((self.epoch + elapsed_s) * 1000.0).round() / 1000.0
    }

    /// Counts a request as it is received; seconds since start.
    fn record_call(&self, operation: &str) -> f64 {
        let now = self.sim.elapsed_s();
        self.first_call_s
            .lock()
            .expect("first call")
            .get_or_insert(now);
        *self
            .calls
            .lock()
            .expect("calls")
            .entry(operation.to_string())
            .or_default() += 1;
        self.requests.fetch_add(1, Ordering::Relaxed);
        now
    }

    /// `GET /_sim/requests`: every request received, oldest first, as
    /// `[seconds since start, operation, decision]`; the decision is the sso-admin gate's
    /// (`"admitted"`, `"rate_limited"`, `"storm"`, at the moment it decided) and `null` for
    /// requests no quota applies to (Organizations, Identity Store, unknown operations).
    pub fn timeline(&self) -> Value {
        let mut all = self.timeline.lock().expect("timeline").clone();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        json!(all)
    }

    /// Validates `input` against `operation`'s input shape; a refusal is counted.
    pub(crate) fn validate(
        &self,
        service: Service,
        operation: &str,
        input: &Value,
    ) -> Result<(), WireError> {
        validate::check(service, operation, input).inspect_err(|_| {
            *self
                .invalid
                .lock()
                .expect("invalid")
                .entry(operation.to_string())
                .or_default() += 1;
        })
    }

    /// The counters as `GET /_sim/stats` answers them.
    ///
    /// `calls`: every request received, by operation (all three services); `requests`: their
    /// sum; `sso_admin_calls`: the sso-admin ones; `throttled`: sso-admin requests refused with
    /// ThrottlingException (rate limit, outstanding operations, injected storms); `conflicts`:
    /// ConflictException answers; `violations.rate`: sso-admin requests that arrived with 20
    /// others received in the second before them (the audit: strict sliding window over every
    /// request received, refused or not); `violations.outstanding`: creates/deletes beyond 15
    /// outstanding; `rate_limit`: what the limiter did with the sso-admin requests
    /// (`received` = `admitted` + `refused` + `storm`; `max_admitted_in_window`, never above
    /// `limit`, beside the audit's `max_received_in_window`); `rate_refused` / `max_in_window`:
    /// the same as `rate_limit.refused` / `.max_received_in_window` (older names);
    /// `invalid`: requests the validator refused, by operation; `outstanding`: operations
    /// provisioning now; `first_call_s` / `last_finished_s`: seconds since the server started
    /// of the first request and of the end of the last finished operation.
    pub fn stats(&self) -> Value {
        let c = self.sim.counters();
        let ops = self.sim.operations();
        let outstanding = self.sim.outstanding();
        let last_finished = ops
            .iter()
            .map(|o| o.done_s)
            .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
        let failed = ops.iter().filter(|o| o.failed).count();
        json!({
            "calls": *self.calls.lock().expect("calls"),
            "requests": self.requests.load(Ordering::Relaxed),
            "sso_admin_calls": c.sso_admin_calls(),
            "throttled": c.throttled(),
            "conflicts": c.conflict_violations,
            "violations": {"outstanding": c.outstanding_violations, "rate": c.window_violations},
            "rate_refused": c.rate_violations,
            "storm_throttles": c.storm_throttles,
            "injected_5xx": c.injected_5xx,
            "max_in_window": c.max_in_window,
            "rate_limit": {
                "limit": self.sim.config().limits.requests_per_second,
                "received": c.sso_admin_calls(),
                "admitted": c.admitted,
                "refused": c.rate_violations,
                "storm": c.storm_throttles,
                "max_admitted_in_window": c.max_admitted_in_window,
                "max_received_in_window": c.max_in_window,
            },
            "invalid": *self.invalid.lock().expect("invalid"),
            "outstanding": outstanding,
            "operations": {"finished": ops.len(), "failed": failed},
            "first_call_s": *self.first_call_s.lock().expect("first call"),
            "last_finished_s": last_finished,
            "now_s": self.sim.elapsed_s(),
        })
    }

    /// `GET /_sim/assignments`: every assignment held now.
    pub fn assignments(&self) -> Value {
        let all: Vec<Value> = self
            .sim
            .assignments_now()
            .into_iter()
            .map(|(a, ps, p)| json!({"AccountId": a.as_str(), "PermissionSetArn": ps.as_str(), "PrincipalId": p.as_str()}))
            .collect();
        json!({ "AccountAssignments": all })
    }

    /// `POST` (`add`) / `DELETE /_sim/assignments`: creates or deletes the assignment `input`
    /// names (`AccountId`, `PermissionSetArn`, `PrincipalId`) out of band, at once, without
    /// spending the quota. Answers `{"changed": bool}` (false: it already was / was not held).
    pub fn change_out_of_band(&self, add: bool, input: &Value) -> Result<Value, WireError> {
        fn field<T: sso_fanout_core::ids::Identifier>(
            input: &Value,
            name: &str,
        ) -> Result<T, WireError> {
            let text = input
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| WireError::validation(format!("{name} is required")))?;
            T::parse_id(text).map_err(|e| WireError::validation(format!("{name}: {e}")))
        }
        let account = field(input, "AccountId")?;
        let permission_set = field(input, "PermissionSetArn")?;
        let principal = field(input, "PrincipalId")?;
        let changed = if add {
            self.sim
                .put_assignment_out_of_band(&account, &permission_set, &principal)
                .map_err(WireError::from)?
        } else {
            self.sim
                .remove_assignment_out_of_band(&account, &permission_set, &principal)
        };
        Ok(json!({ "changed": changed }))
    }

    /// Answers one AWS JSON 1.1 request (`target` = the `X-Amz-Target` header).
    pub async fn call(&self, target: &str, input: &Value) -> Result<Value, WireError> {
        let (service, operation) = target.split_once('.').unwrap_or((target, ""));
        let received_s = self.record_call(operation);
        let (arrival, answer) = match service {
            SSO_ADMIN_TARGET => services::sso_admin(self, operation, input).await,
            ORGANIZATIONS_TARGET => (None, services::organizations(self, operation, input)),
            IDENTITY_STORE_TARGET => (None, services::identity_store(self, operation, input)),
            _ => (
                None,
                Err(WireError::new(
                    400,
                    "UnknownOperationException",
                    format!("unknown target `{target}`"),
                )),
            ),
        };
        let (at_s, admission) = arrival.map_or((received_s, None), |a| (a.at_s, Some(a.admission)));
        self.timeline
            .lock()
            .expect("timeline")
            .push((at_s, operation.to_string(), admission));
        answer
    }

    async fn respond(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = req.into_parts();
        if parts.method == Method::GET {
            return Ok(match parts.uri.path() {
                "/_sim/stats" => reply(200, "application/json", &self.stats()),
                "/_sim/assignments" => reply(200, "application/json", &self.assignments()),
                "/_sim/requests" => reply(200, "application/json", &self.timeline()),
                _ => reply(
                    404,
                    "application/json",
                    &json!({"message": "GET /_sim/stats or /_sim/assignments"}),
                ),
            });
        }
        let out_of_band = parts.uri.path() == "/_sim/assignments"
            && (parts.method == Method::POST || parts.method == Method::DELETE);
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return Ok(reply(
                    400,
                    JSON_11,
                    &json!({"__type": "SerializationException", "message": "unreadable body"}),
                ))
            }
        };
        let input: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(reply(
                        400,
                        JSON_11,
                        &json!({"__type": "SerializationException", "message": e.to_string()}),
                    ))
                }
            }
        };
        if out_of_band {
            return Ok(
                match self.change_out_of_band(parts.method == Method::POST, &input) {
                    Ok(v) => reply(200, "application/json", &v),
                    Err(e) => reply(e.status, "application/json", &e.body()),
                },
            );
        }
        let answer = self.call(&target, &input).await;
        let (lo, hi) = self.call_latency_ms;
        if hi > 0 {
            let ms = rand::rng().random_range(lo..=hi.max(lo));
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok(match answer {
            Ok(v) => reply(200, JSON_11, &v),
            Err(e) => {
                let mut r = reply(e.status, JSON_11, &e.body());
                if let Ok(v) = e.code.parse() {
                    r.headers_mut().insert("x-amzn-errortype", v);
                }
                r
            }
        })
    }
}

const JSON_11: &str = "application/x-amz-json-1.1";

fn reply(status: u16, content_type: &str, body: &Value) -> Response<Full<Bytes>> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .header(
            "x-amzn-requestid",
            format!("5e110000-0000-4000-8000-{id:012x}"),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    emulator: Arc<Emulator>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0: any free port) and serves `config`'s simulated cloud.
    pub async fn start(config: SimConfig, port: u16) -> std::io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let emulator = Arc::new(Emulator::new(config));
        let (shutdown, mut stop) = watch::channel(false);
        let served = emulator.clone();
        let task = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let _ = stream.set_nodelay(true);
                let emulator = served.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| emulator.clone().respond(req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
                    }
                });
            }
        });
        Ok(Server {
            addr,
            emulator,
            shutdown,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn emulator(&self) -> &Arc<Emulator> {
        &self.emulator
    }

    /// Stops accepting connections and closes the open ones.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests;
