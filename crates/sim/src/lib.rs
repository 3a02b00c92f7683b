//! The simulated Organization and Identity Center: the same traits as the AWS adapters,
//! in-process, on tokio's clock (paused in tests and benchmarks, so 5,000 accounts simulate in
//! well under a second and every run is reproducible from its seed).
//!
//! Calibrated to the published quotas: at most 20 sso-admin calls (all APIs together) admitted
//! in any sliding second, at most 15 outstanding assignment operations ("There are too many
//! requests processing"), one operation per account (`ConflictException`), lognormal
//! provisioning latency (median 3 s, p99 15 s), 50-150 ms per call. Every request that breaks a
//! quota is counted as a violation; faults the user cannot avoid (throttle storms, 5xx, late
//! FAILED) are injected on purpose and counted apart.

pub mod faulty;
pub mod org;
mod rate;

use sso_fanout_core::error::{FanoutError, Result};
use sso_fanout_core::ids::{AccountId, PermissionSetArn, PrincipalId};
use sso_fanout_core::model::*;
use sso_fanout_core::request::{PermissionSetRef, PrincipalRef};

/// (account, permission set, principal): one assignment as the simulated instance holds it.
type Assignment = (AccountId, PermissionSetArn, PrincipalId);
use sso_fanout_core::ports::{AssignmentOps, Directory, OrgDirectory, PrincipalAssignments, RequestGate};
use sso_fanout_core::tiers::{AwsLimits, LatencyModel};
use async_trait::async_trait;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::time::{sleep, Duration, Instant};

/// Faults on purpose; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Faults {
    /// Share of sso-admin calls that fail with a 5xx.
    pub transient_rate: f64,
    /// Share of operations that end FAILED after provisioning (e.g. account at its IAM role quota).
    pub late_failure_rate: f64,
    /// Windows (start, length) in seconds from the simulator's start in which every sso-admin
    /// call is throttled, as when another tool floods the account-wide quota.
    pub throttle_storms: Vec<(f64, f64)>,
    /// Share of operations that provision far too slowly (ten times the drawn latency).
    pub stuck_rate: f64,
}

impl Faults {
    /// A rough day: 3% 5xx, 3% late FAILED, two throttle storms, 1% very slow operations.
    pub fn chaos() -> Faults {
        Faults { transient_rate: 0.03, late_failure_rate: 0.03, throttle_storms: vec![(4.0, 3.0), (30.0, 5.0)], stuck_rate: 0.01 }
    }
}

/// Attempts of one look-up when the simulated instance answers 5xx (the SDK's standard mode).
const LOOKUP_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub accounts: usize,
    pub suspended_fraction: f64,
    /// Share of accounts in which PlatformAdmins already has AdministratorAccess.
    pub existing_fraction: f64,
    pub latency: LatencyModel,
    pub call_latency_ms: (u64, u64),
    /// The limits the simulated instance enforces (the published ones by default).
    pub limits: AwsLimits,
    pub faults: Faults,
    /// The stack runs in the delegated administrator account: the management account refuses.
    pub delegated_admin: bool,
    /// Organizations: requests per second before it throttles, accounts per page.
    pub org_requests_per_second: f64,
    pub org_page_size: usize,
    /// Whether `ListAccountAssignmentCreationStatus`-style listing works (moto lacks it).
    pub supports_status_listing: bool,
    /// Serve every permission set and group of `org` (8 and 10) instead of the original 3 and 3.
    /// Resolving a permission set by name lists and describes every one, so the larger
    /// directory costs more calls per plan; the published figures use the original one.
    pub extended_directory: bool,
}

impl SimConfig {
    pub fn new(accounts: usize, seed: u64) -> SimConfig {
        SimConfig {
            seed,
            accounts,
            suspended_fraction: 0.03,
            existing_fraction: 0.1,
            latency: LatencyModel::default(),
            call_latency_ms: (50, 150),
            limits: AwsLimits::PUBLISHED,
            faults: Faults::default(),
            delegated_admin: true,
            org_requests_per_second: 20.0,
            org_page_size: 20,
            supports_status_listing: true,
            extended_directory: false,
        }
    }

    /// A clean organization for benchmarks: all accounts ACTIVE, nothing assigned yet.
    pub fn clean(accounts: usize, seed: u64) -> SimConfig {
        SimConfig { suspended_fraction: 0.0, existing_fraction: 0.0, ..SimConfig::new(accounts, seed) }
    }
}

/// One assignment operation as the simulator ran it.
#[derive(Debug, Clone, Serialize)]
pub struct OpRecord {
    pub request_id: String,
    pub account_id: AccountId,
    pub operation: Operation,
    pub accepted_s: f64,
    pub done_s: f64,
    pub failed: bool,
}

/// Counters: every call, and every quota the caller broke.
///
/// The request rate is counted two ways, both over the sliding second `(t - 1 s, t]` before a
/// request arriving at `t`:
///
/// - the **audit** of every sso-admin request *received*, refused or not: one that finds the
///   limit's worth (20) received before it is a `window_violations` (the strictest reading of
///   "20 requests per second": the caller sent too many, whatever the instance did with them);
///   `max_in_window` is the most received in any sliding second;
/// - the **limiter** (what the instance lets through): `admitted` requests, `rate_violations`
///   refused by it, `max_admitted_in_window` the most admitted in any sliding second.
///
/// `sso_admin_calls()` (every request received) = `admitted` + `rate_violations` +
/// `storm_throttles`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimCounters {
    /// sso-admin requests received, by operation.
    pub calls: BTreeMap<&'static str, u64>,
    /// Requests the rate limiter refused ("Rate exceeded"; the caller broke the quota).
    pub rate_violations: u64,
    /// Requests that arrived with the limit's worth already received in the second before them.
    pub window_violations: u64,
    /// The most requests received in any sliding second.
    pub max_in_window: u64,
    /// Requests the rate limiter let through (including those then failed by an injected 5xx).
    pub admitted: u64,
    /// The most requests admitted in any sliding second.
    pub max_admitted_in_window: u64,
    /// Creates/deletes refused with "too many requests processing".
    pub outstanding_violations: u64,
    /// Creates/deletes refused because the account had an operation running.
    pub conflict_violations: u64,
    /// Throttled by an injected storm (not the caller's fault; never reaches the limiter).
    pub storm_throttles: u64,
    pub injected_5xx: u64,
    pub org_calls: u64,
    pub identity_store_calls: u64,
}

impl SimCounters {
    /// Every sso-admin request received.
    pub fn sso_admin_calls(&self) -> u64 {
        self.calls.values().sum()
    }
    /// Every request that broke a quota: the sliding-window rate audit, the outstanding
    /// operations, one operation per account. (A request the limiter refused found the limit's
    /// worth admitted, so received, before it: it is a window violation too, not counted again.)
    pub fn violations(&self) -> u64 {
        self.window_violations.max(self.rate_violations) + self.outstanding_violations + self.conflict_violations
    }
    pub fn throttled(&self) -> u64 {
        self.rate_violations + self.outstanding_violations + self.storm_throttles
    }
}

/// How the simulated instance's gate decided on one sso-admin request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Admission {
    Admitted,
    /// Refused by the rate limiter.
    RateLimited,
    /// Refused by an injected throttle storm.
    Storm,
}

/// When one sso-admin request reached the instance (seconds since the simulator started) and
/// what its gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Arrival {
    pub at_s: f64,
    pub admission: Admission,
}

struct PendingOp {
    account_id: AccountId,
    key: Assignment,
    operation: Operation,
    accepted: Instant,
    done: Instant,
    failure: Option<String>,
}

struct State {
    rng: SmallRng,
    org_tokens: f64,
    org_last: Instant,
    next_request: u64,
    ops: HashMap<String, PendingOp>,
    finished: HashMap<String, OpStatus>,
    active_by_account: HashMap<AccountId, String>,
    /// (account, permission set ARN, principal id)
    assignments: HashSet<Assignment>,
    counters: SimCounters,
    log: Vec<OpRecord>,
    /// The sso-admin requests of the last second: the rate audit and limiter.
    rate: rate::RateWindows,
    /// What each create/delete asked for and when it was accepted (the describes' answer).
    requests: HashMap<String, (AssignmentKey, Operation, Instant)>,
}

pub struct SimCloud {
    config: SimConfig,
    org: OrgSnapshot,
    permission_sets: Vec<PermissionSet>,
    principals: Vec<Principal>,
    started: Instant,
    state: Mutex<State>,
    /// What the planner's look-ups pass first (`Directory::gate_lookups`).
    lookup_gate: Mutex<Option<Arc<dyn RequestGate>>>,
    /// Accounts moved or re-tagged out of band since the organization was generated.
    changed_accounts: Mutex<HashMap<AccountId, Account>>,
}

impl SimCloud {
    pub fn new(config: SimConfig) -> SimCloud {
        let org = org::generate(&org::OrgSpec { accounts: config.accounts, seed: config.seed, suspended_fraction: config.suspended_fraction });
        let (permission_sets, principals) = org::directory(config.extended_directory);
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let mut assignments = HashSet::new();
        for a in org.accounts.iter().filter(|a| a.id != org.management_account_id) {
            if rng.random_bool(config.existing_fraction.clamp(0.0, 1.0)) {
                assignments.insert((a.id.clone(), permission_sets[0].arn.clone(), principals[0].id.clone()));
            }
        }
        let now = Instant::now();
        SimCloud {
            state: Mutex::new(State {
                rng,
                org_tokens: config.org_requests_per_second,
                org_last: now,
                next_request: 1,
                ops: HashMap::new(),
                finished: HashMap::new(),
                active_by_account: HashMap::new(),
                assignments,
                counters: SimCounters::default(),
                log: Vec::new(),
                rate: rate::RateWindows::default(),
                requests: HashMap::new(),
            }),
            config,
            org,
            permission_sets,
            principals,
            started: now,
            lookup_gate: Mutex::new(None),
            changed_accounts: Mutex::new(HashMap::new()),
        }
    }

    fn the_instance() -> Instance {
        Instance { instance_arn: org::INSTANCE_ARN.into(), identity_store_id: org::IDENTITY_STORE_ID.into(), region: SIM_REGION.into() }
    }

    /// The scope a run on this simulated instance plans against, without a call (for test and
    /// bench set-up that must not spend the quota it measures).
    pub fn scope(&self) -> Scope {
        let identity = OrgIdentity { organization_id: self.org.organization_id.clone(), management_account_id: self.org.management_account_id.clone() };
        Scope::new(&identity, &SimCloud::the_instance())
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn org(&self) -> &OrgSnapshot {
        &self.org
    }

    pub fn counters(&self) -> SimCounters {
        self.state.lock().expect("sim").counters.clone()
    }

    /// Every operation that has finished by now (still provisioning ones are not listed).
    pub fn operations(&self) -> Vec<OpRecord> {
        let mut s = self.state.lock().expect("sim");
        self.settle(&mut s, Instant::now());
        s.log.clone()
    }

    /// Operations still provisioning now.
    pub fn outstanding(&self) -> usize {
        let mut s = self.state.lock().expect("sim");
        self.settle(&mut s, Instant::now());
        s.ops.len()
    }

    /// Whether `principal` holds `permission_set_arn` in `account_id`, right now.
    pub fn has_assignment(&self, account_id: &AccountId, permission_set_arn: &PermissionSetArn, principal_id: &PrincipalId) -> bool {
        let mut s = self.state.lock().expect("sim");
        self.settle(&mut s, Instant::now());
        s.assignments.contains(&(account_id.clone(), permission_set_arn.clone(), principal_id.clone()))
    }

    /// When every accepted operation will have finished (seconds since the simulator started).
    pub fn all_done_s(&self) -> f64 {
        let s = self.state.lock().expect("sim");
        let pending = s.ops.values().map(|o| self.secs(o.done)).fold(0.0, f64::max);
        s.log.iter().map(|r| r.done_s).fold(pending, f64::max)
    }

    pub fn elapsed_s(&self) -> f64 {
        self.secs(Instant::now())
    }

    fn secs(&self, t: Instant) -> f64 {
        t.duration_since(self.started).as_secs_f64()
    }

    /// The provisioning latency of `account_id` for `op`: the same in every run with the same
    /// seed, so strategies compared side by side face the same work.
    pub fn provisioning_latency(&self, account_id: &str, op: Operation) -> Duration {
        let mut rng = SmallRng::seed_from_u64(mix(self.config.seed, account_id, op as u64));
        let l = &self.config.latency;
        let dist = LogNormal::new(l.median_s.ln(), l.sigma()).expect("valid lognormal");
        let mut secs: f64 = dist.sample(&mut rng);
        if rng.random_bool(self.config.faults.stuck_rate.clamp(0.0, 1.0)) {
            secs *= 10.0;
        }
        Duration::from_secs_f64(secs.clamp(0.2, 900.0))
    }

    fn late_failure(&self, account_id: &str, op: Operation) -> Option<String> {
        if self.config.delegated_admin && self.org.management_account_id == account_id {
            return Some("The management account cannot be assigned by a delegated administrator".into());
        }
        let mut rng = SmallRng::seed_from_u64(mix(self.config.seed ^ 0xfa11, account_id, op as u64));
        rng.random_bool(self.config.faults.late_failure_rate.clamp(0.0, 1.0)).then(|| {
            "Received a 409 status error: the account has reached its IAM role quota".to_string()
        })
    }

    /// Moves operations whose time has come to their final state.
    fn settle(&self, s: &mut State, now: Instant) {
        let done: Vec<String> = s.ops.iter().filter(|(_, o)| o.done <= now).map(|(id, _)| id.clone()).collect();
        for id in done {
            let op = s.ops.remove(&id).expect("listed");
            s.active_by_account.remove(&op.account_id);
            let failed = op.failure.is_some();
            if !failed {
                match op.operation {
                    Operation::Assign => s.assignments.insert(op.key.clone()),
                    Operation::Revoke => s.assignments.remove(&op.key),
                };
            }
            s.log.push(OpRecord {
                request_id: id.clone(),
                account_id: op.account_id.clone(),
                operation: op.operation,
                accepted_s: self.secs(op.accepted),
                done_s: self.secs(op.done),
                failed,
            });
            let state = if failed { OpState::Failed } else { OpState::Succeeded };
            s.finished.insert(id.clone(), OpStatus::of(id, state, op.failure));
        }
    }

    fn in_storm(&self, now: Instant) -> bool {
        let t = self.secs(now);
        self.config.faults.throttle_storms.iter().any(|(start, len)| t >= *start && t < start + len)
    }

    /// Network delay of half a call, drawn from the configured range.
    fn half_call(&self) -> Duration {
        let (lo, hi) = self.config.call_latency_ms;
        let ms = self.state.lock().expect("sim").rng.random_range(lo..=hi.max(lo));
        Duration::from_millis(ms / 2)
    }

    /// A look-up's sso-admin request: through the lookup gate, if one is set.
    async fn lookup_call<T>(&self, api: &'static str, body: impl Fn(&mut State, Instant) -> Result<T>) -> Result<T> {
        let gate = self.lookup_gate.lock().expect("gate").clone();
        // As the AWS adapter's SDK does for look-ups (standard retry mode): up to three attempts
        // on a 5xx, each a request of its own.
        for attempt in 1..=LOOKUP_ATTEMPTS {
            if let Some(gate) = &gate {
                gate.admit().await;
            }
            match self.sso_call(api, &body).await {
                Err(FanoutError::Transient { .. }) if attempt < LOOKUP_ATTEMPTS => sleep(Duration::from_millis(50 * attempt as u64)).await,
                other => return other,
            }
        }
        unreachable!("the last attempt returns")
    }

    /// One sso-admin request: travel, quota checks and `body` at the server, travel back.
    ///
    /// (`body` runs once, when the request reaches the server.)
    async fn sso_call<T>(&self, api: &'static str, body: impl FnOnce(&mut State, Instant) -> Result<T>) -> Result<T> {
        self.gated_call(api, body).await.1
    }

    /// `sso_call`, also telling when the request arrived and how the instance's gate decided.
    async fn gated_call<T>(&self, api: &'static str, body: impl FnOnce(&mut State, Instant) -> Result<T>) -> (Arrival, Result<T>) {
        sleep(self.half_call()).await;
        let answer = {
            let mut s = self.state.lock().expect("sim");
            let now = Instant::now();
            *s.counters.calls.entry(api).or_default() += 1;
            let admission = self.gate(&mut s, now);
            let result = if admission != Admission::Admitted {
                Err(FanoutError::Throttled { api: api.into(), message: "Rate exceeded".into() })
            } else {
                let fault = self.config.faults.transient_rate;
                if fault > 0.0 && s.rng.random_bool(fault.clamp(0.0, 1.0)) {
                    s.counters.injected_5xx += 1;
                    Err(FanoutError::Transient { api: api.into(), message: "InternalServerException (simulated 500)".into() })
                } else {
                    self.settle(&mut s, now);
                    body(&mut s, now)
                }
            };
            (Arrival { at_s: self.secs(now), admission }, result)
        };
        sleep(self.half_call()).await;
        answer
    }

    /// The instance's request gate for one sso-admin request arriving `now`: the rate audit of
    /// every request received, the injected storms, then the rate limiter (`rate.rs`).
    fn gate(&self, s: &mut State, now: Instant) -> Admission {
        let limit = self.config.limits.requests_per_second;
        s.rate.audit(now, limit, &mut s.counters);
        if self.in_storm(now) {
            s.counters.storm_throttles += 1;
            Admission::Storm
        } else if s.rate.admit(now, limit, &mut s.counters) {
            Admission::Admitted
        } else {
            Admission::RateLimited
        }
    }

    fn start_operation(&self, s: &mut State, now: Instant, key: &AssignmentKey, op: Operation, api: &'static str) -> Result<OpStatus> {
        if s.active_by_account.contains_key(&key.account_id) {
            s.counters.conflict_violations += 1;
            return Err(FanoutError::Conflict {
                api: api.into(),
                message: format!("An operation is already in progress for account {}", key.account_id),
            });
        }
        if s.ops.len() >= self.config.limits.max_outstanding as usize {
            s.counters.outstanding_violations += 1;
            return Err(FanoutError::Throttled { api: api.into(), message: "There are too many requests processing".into() });
        }
        let tuple = (key.account_id.clone(), key.permission_set_arn.clone(), key.principal_id.clone());
        if op == Operation::Revoke && !s.assignments.contains(&tuple) {
            return Err(FanoutError::not_found("account assignment", format!("{} in {}", key.permission_set_arn, key.account_id), ""));
        }
        let id = format!("{:08x}-5e11-4a5b-9c0d-{:012x}", self.config.seed as u32, s.next_request);
        s.next_request += 1;
        let done = now + self.provisioning_latency(&key.account_id, op);
        s.active_by_account.insert(key.account_id.clone(), id.clone());
        s.requests.insert(id.clone(), (key.clone(), op, now));
        s.ops.insert(
            id.clone(),
            PendingOp { account_id: key.account_id.clone(), key: tuple, operation: op, accepted: now, done, failure: self.late_failure(&key.account_id, op) },
        );
        Ok(OpStatus::of(id, OpState::InProgress, None))
    }

    async fn org_calls(&self, calls: u64) {
        // Organizations throttles at its own rate: wait for its tokens, as the SDK's retries would.
        let wait = {
            let mut s = self.state.lock().expect("sim");
            s.counters.org_calls += calls;
            let now = Instant::now();
            let rate = self.config.org_requests_per_second;
            s.org_tokens = (s.org_tokens + now.duration_since(s.org_last).as_secs_f64() * rate).min(rate);
            s.org_last = now;
            s.org_tokens -= calls as f64;
            if s.org_tokens < 0.0 { Duration::from_secs_f64(-s.org_tokens / rate) } else { Duration::ZERO }
        };
        sleep(wait + self.half_call() * 2).await;
    }
}

fn mix(seed: u64, account: &str, salt: u64) -> u64 {
    // FNV-1a over the account id, folded with the seed and salt (stable across platforms).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.rotate_left(17) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in account.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x1000_0000_01b3);
    }
    h
}

/// Assignments per page of the assignment listings (ListAccountAssignmentsForPrincipal's
/// largest `MaxResults`).
const LIST_PAGE_SIZE: usize = 100;

/// The simulator's region name: its scope never equals a real one.
pub const SIM_REGION: &str = "sim";

#[async_trait]
impl OrgDirectory for SimCloud {
    async fn identity(&self) -> Result<OrgIdentity> {
        // DescribeOrganization.
        self.org_calls(1).await;
        Ok(OrgIdentity { organization_id: self.org.organization_id.clone(), management_account_id: self.org.management_account_id.clone() })
    }

    async fn snapshot(&self) -> Result<OrgSnapshot> {
        self.org_calls(org::read_calls(self.org.accounts.len(), self.config.org_page_size)).await;
        let mut snapshot = self.org.clone();
        let changed = self.changed_accounts.lock().expect("sim").clone();
        for account in snapshot.accounts.iter_mut() {
            if let Some(now) = changed.get(&account.id) {
                *account = now.clone();
            }
        }
        snapshot.fetched_at = sso_fanout_core::clock::unix_now();
        Ok(snapshot)
    }

    async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let account = self.account_now(id).ok_or_else(|| FanoutError::not_found("account", id.as_str(), "AccountNotFoundException"))?;
            // DescribeAccount, ListParents per level up to the root, ListTagsForResource.
            self.org_calls(2 + account.ou_path.len() as u64 + 1).await;
            found.push(account);
        }
        Ok(found)
    }
}

#[async_trait]
impl Directory for SimCloud {
    fn gate_lookups(&self, gate: Arc<dyn RequestGate>) {
        *self.lookup_gate.lock().expect("gate") = Some(gate);
    }

    async fn instance(&self) -> Result<Instance> {
        self.lookup_call("ListInstances", |_, _| Ok(SimCloud::the_instance())).await
    }

    async fn resolve_permission_set(&self, permission_set: &PermissionSetRef) -> Result<PermissionSet> {
        let wanted = permission_set.to_string();
        let sets = self.permission_sets.clone();
        let describes = self.lookup_call("ListPermissionSets", |_, _| Ok(sets.len())).await?;
        for _ in 0..describes {
            self.lookup_call("DescribePermissionSet", |_, _| Ok(())).await?;
        }
        self.permission_sets
            .iter()
            .find(|p| match permission_set {
                PermissionSetRef::Arn(arn) => &p.arn == arn,
                PermissionSetRef::Name(name) => &p.name == name,
            })
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = self.permission_sets.iter().map(|p| p.name.as_str()).collect();
                FanoutError::not_found("permission set", wanted, format!("known: {}", known.join(", ")))
            })
    }

    async fn resolve_principal(&self, principal: &PrincipalRef) -> Result<Principal> {
        let kind = principal.kind();
        self.state.lock().expect("sim").counters.identity_store_calls += 1;
        sleep(self.half_call() * 2).await;
        let what = match kind {
            PrincipalType::Group => "group",
            PrincipalType::User => "user",
        };
        self.principals
            .iter()
            .find(|p| {
                p.kind == kind
                    && match principal {
                        PrincipalRef::Id { id, .. } => &p.id == id,
                        PrincipalRef::Name { name, .. } => p.name.as_deref() == Some(name.as_str()),
                    }
            })
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = self.principals.iter().filter(|p| p.kind == kind).filter_map(|p| p.name.as_deref()).collect();
                let asked = match principal {
                    PrincipalRef::Id { id, .. } => id.to_string(),
                    PrincipalRef::Name { name, .. } => name.clone(),
                };
                FanoutError::not_found(what, asked, format!("names are case-sensitive; known {what}s: {}", known.join(", ")))
            })
    }

    async fn assigned_accounts(
        &self,
        principal: &Principal,
        permission_set_arn: &PermissionSetArn,
        _candidates: &[AccountId],
    ) -> Result<BTreeSet<AccountId>> {
        let found: BTreeSet<AccountId> = {
            let mut s = self.state.lock().expect("sim");
            self.settle(&mut s, Instant::now());
            s.assignments
                .iter()
                .filter(|(_, ps, p)| ps == permission_set_arn && p == &principal.id)
                .map(|(a, _, _)| a.clone())
                .collect()
        };
        // ListAccountAssignmentsForPrincipal returns up to 100 per page.
        let pages = found.len().div_ceil(LIST_PAGE_SIZE).max(1);
        for _ in 0..pages {
            self.lookup_call("ListAccountAssignmentsForPrincipal", |_, _| Ok(())).await?;
        }
        Ok(found)
    }

    async fn principal_assignments(&self, principal: &Principal) -> Result<PrincipalAssignments> {
        // What the instance holds when the first page's request arrives; one more request per
        // further 100 assignments.
        let assignments: BTreeSet<(AccountId, PermissionSetArn)> = self
            .lookup_call("ListAccountAssignmentsForPrincipal", |s, _| {
                Ok(s.assignments.iter().filter(|(_, _, p)| p == &principal.id).map(|(a, ps, _)| (a.clone(), ps.clone())).collect())
            })
            .await?;
        let pages = assignments.len().div_ceil(LIST_PAGE_SIZE).max(1);
        for _ in 1..pages {
            self.lookup_call("ListAccountAssignmentsForPrincipal", |_, _| Ok(())).await?;
        }
        Ok(PrincipalAssignments { assignments, pages: pages as u32 })
    }
}

#[async_trait]
impl AssignmentOps for SimCloud {
    async fn create_assignment(&self, key: &AssignmentKey) -> Result<OpStatus> {
        self.sso_call("CreateAccountAssignment", |s, now| self.start_operation(s, now, key, Operation::Assign, "CreateAccountAssignment"))
            .await
    }

    async fn delete_assignment(&self, key: &AssignmentKey) -> Result<OpStatus> {
        self.sso_call("DeleteAccountAssignment", |s, now| self.start_operation(s, now, key, Operation::Revoke, "DeleteAccountAssignment"))
            .await
    }

    async fn operation_status(&self, op: Operation, request_id: &str) -> Result<OpStatus> {
        let api = match op {
            Operation::Assign => "DescribeAccountAssignmentCreationStatus",
            Operation::Revoke => "DescribeAccountAssignmentDeletionStatus",
        };
        self.sso_call(api, |s, _| {
            // A describe names the assignment the request is for, as AWS's does.
            let target = s.requests.get(request_id).map(|(key, _, _)| key.clone());
            if s.ops.contains_key(request_id) {
                return Ok(OpStatus { target, ..OpStatus::of(request_id, OpState::InProgress, None) });
            }
            let finished = s.finished.get(request_id).cloned().ok_or_else(|| FanoutError::not_found("request", request_id, ""))?;
            Ok(OpStatus { target, ..finished })
        })
        .await
    }

    async fn in_progress_operations(&self, op: Operation) -> Result<BTreeSet<String>> {
        let api = match op {
            Operation::Assign => "ListAccountAssignmentCreationStatus",
            Operation::Revoke => "ListAccountAssignmentDeletionStatus",
        };
        if !self.config.supports_status_listing {
            return Err(FanoutError::Unsupported { api: api.into(), message: "not implemented by this endpoint".into() });
        }
        self.sso_call(api, |s, _| Ok(s.ops.iter().filter(|(_, o)| o.operation == op).map(|(id, _)| id.clone()).collect())).await
    }
}

impl SimCloud {
    /// `ListAccountAssignments` for one account and permission set (the seed's existence check).
    pub async fn list_account_assignments(&self, account_id: &AccountId, permission_set_arn: &PermissionSetArn) -> Result<Vec<PrincipalId>> {
        self.lookup_call("ListAccountAssignments", |s, _| {
            Ok(s.assignments
                .iter()
                .filter(|(a, ps, _)| a == account_id && ps == permission_set_arn)
                .map(|(_, _, p)| p.clone())
                .collect())
        })
        .await
    }
}

impl SimCloud {
    /// A permission set's ARN by name without spending calls (bench set-up).
    pub fn resolve_permission_set_quiet(&self, name: &str) -> Result<PermissionSetArn> {
        self.permission_sets.iter().find(|p| p.name == name).map(|p| p.arn.clone()).ok_or_else(|| FanoutError::not_found("permission set", name, ""))
    }
}

/// One create/delete request as the instance knows it (for a wire emulator's describes and listings).
#[derive(Debug, Clone, Serialize)]
pub struct OpDetail {
    pub request_id: String,
    pub operation: Operation,
    pub key: AssignmentKey,
    /// When it was accepted, seconds since the simulator started.
    pub created_s: f64,
    pub state: OpState,
    pub failure_reason: Option<String>,
}

/// A request the simulated instance admitted (within its quotas): what its handler may read
/// and do, at the moment it arrived.
pub struct Admitted<'a> {
    sim: &'a SimCloud,
    s: &'a mut State,
    now: Instant,
}

impl Admitted<'_> {
    /// Starts a create (`Assign`) or delete (`Revoke`), with the outstanding-operation and
    /// per-account checks of `create_assignment` / `delete_assignment`.
    pub fn start_operation(&mut self, key: &AssignmentKey, op: Operation) -> Result<OpStatus> {
        let api = match op {
            Operation::Assign => "CreateAccountAssignment",
            Operation::Revoke => "DeleteAccountAssignment",
        };
        self.sim.start_operation(self.s, self.now, key, op, api)
    }

    /// Every assignment held now: (account, permission set ARN, principal id).
    pub fn assignments(&self) -> Vec<(AccountId, PermissionSetArn, PrincipalId)> {
        let mut all: Vec<_> = self.s.assignments.iter().cloned().collect();
        all.sort();
        all
    }

    /// One create/delete request by id.
    pub fn operation(&self, request_id: &str) -> Option<OpDetail> {
        self.sim.detail(self.s, request_id)
    }

    /// Every create (`Assign`) or delete (`Revoke`) request, oldest first.
    pub fn operations(&self, op: Operation) -> Vec<OpDetail> {
        let mut ids: Vec<(&String, Instant)> = self.s.requests.iter().filter(|(_, r)| r.1 == op).map(|(id, r)| (id, r.2)).collect();
        ids.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
        ids.into_iter().filter_map(|(id, _)| self.sim.detail(self.s, id)).collect()
    }
}

impl SimCloud {
    /// One sso-admin request received from outside (a wire emulator): travels, is counted,
    /// audited and throttled exactly as the simulator's own calls are; `body` runs only if the
    /// instance admits it. Also answers when it arrived and how the gate decided (for the
    /// emulator's request log).
    pub async fn admit<T>(&self, api: &'static str, body: impl FnOnce(&mut Admitted<'_>) -> Result<T>) -> (Arrival, Result<T>) {
        self.gated_call(api, |s, now| body(&mut Admitted { sim: self, s, now })).await
    }

    fn detail(&self, s: &State, request_id: &str) -> Option<OpDetail> {
        let (key, operation, accepted) = s.requests.get(request_id)?;
        let (state, failure_reason) = if s.ops.contains_key(request_id) {
            (OpState::InProgress, None)
        } else {
            let f = s.finished.get(request_id)?;
            (f.state, f.failure_reason.clone())
        };
        Some(OpDetail { request_id: request_id.to_string(), operation: *operation, key: key.clone(), created_s: self.secs(*accepted), state, failure_reason })
    }

    /// The permission sets of the instance (no call spent).
    pub fn permission_sets(&self) -> &[PermissionSet] {
        &self.permission_sets
    }

    /// The Identity Store's groups and users (no call spent).
    pub fn principals(&self) -> &[Principal] {
        &self.principals
    }

    /// The Identity Center instance (no call spent).
    pub fn instance_info(&self) -> Instance {
        SimCloud::the_instance()
    }

    /// An account as Organizations has it now (after out-of-band moves and tags).
    fn account_now(&self, id: &AccountId) -> Option<Account> {
        let changed = self.changed_accounts.lock().expect("sim").get(id).cloned();
        changed.or_else(|| self.org.accounts.iter().find(|a| &a.id == id).cloned())
    }

    /// Moves an account to another OU and/or sets one of its tags, out of band (as someone in
    /// the Organizations console would): `snapshot` and `accounts` answer with it from now on;
    /// `org()` keeps the organization as generated. Unknown account or OU: `NotFound`.
    pub fn change_account_out_of_band(&self, id: &AccountId, move_to: Option<&str>, tag: Option<(&str, &str)>) -> Result<()> {
        let mut account = self.account_now(id).ok_or_else(|| FanoutError::not_found("account", id.as_str(), "not in the simulated organization"))?;
        if let Some(ou) = move_to {
            if ou != org::ROOT_ID && !org::OUS.iter().any(|(o, _, _)| *o == ou) {
                return Err(FanoutError::not_found("OU", ou, "not in the simulated organization"));
            }
            account.ou_path = org::ou_path(ou);
        }
        if let Some((key, value)) = tag {
            account.tags.insert(key.to_string(), value.to_string());
        }
        self.changed_accounts.lock().expect("sim").insert(id.clone(), account);
        Ok(())
    }

    /// Creates an assignment out of band, as someone in the console would: at once, no call
    /// spent or counted, no operation recorded. `Ok(false)` if it was already held. Unknown
    /// account, permission set or principal: `NotFound`.
    pub fn put_assignment_out_of_band(
        &self,
        account_id: &AccountId,
        permission_set_arn: &PermissionSetArn,
        principal_id: &PrincipalId,
    ) -> Result<bool> {
        if !self.org.accounts.iter().any(|a| &a.id == account_id) {
            return Err(FanoutError::not_found("account", account_id.as_str(), "not in the simulated organization"));
        }
        if !self.permission_sets.iter().any(|p| &p.arn == permission_set_arn) {
            return Err(FanoutError::not_found("permission set", permission_set_arn.as_str(), "not on the simulated instance"));
        }
        if !self.principals.iter().any(|p| &p.id == principal_id) {
            return Err(FanoutError::not_found("principal", principal_id.as_str(), "not in the simulated identity store"));
        }
        let mut s = self.state.lock().expect("sim");
        self.settle(&mut s, Instant::now());
        Ok(s.assignments.insert((account_id.clone(), permission_set_arn.clone(), principal_id.clone())))
    }

    /// Deletes an assignment out of band, as someone in the console would: at once, no call
    /// spent or counted, no operation recorded. `false` if it was not held.
    pub fn remove_assignment_out_of_band(
        &self,
        account_id: &AccountId,
        permission_set_arn: &PermissionSetArn,
        principal_id: &PrincipalId,
    ) -> bool {
        let mut s = self.state.lock().expect("sim");
        self.settle(&mut s, Instant::now());
        s.assignments.remove(&(account_id.clone(), permission_set_arn.clone(), principal_id.clone()))
    }

    /// Every assignment held now (no call spent): (account, permission set ARN, principal id).
    pub fn assignments_now(&self) -> Vec<(AccountId, PermissionSetArn, PrincipalId)> {
        let mut s = self.state.lock().expect("sim");
        self.settle(&mut s, Instant::now());
        let mut all: Vec<_> = s.assignments.iter().cloned().collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A `RequestGate` that admits at once and counts.
    #[derive(Default)]
    struct CountingGate(std::sync::atomic::AtomicU32);

    #[async_trait]
    impl RequestGate for CountingGate {
        async fn admit(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Every (account, permission set) of the principal, whatever the permission set; one
    /// counted, gated ListAccountAssignmentsForPrincipal per 100 assignments (at least one).
    #[tokio::test(start_paused = true)]
    async fn principal_assignments_lists_every_permission_set_one_call_per_100() {
        let sim = SimCloud::new(SimConfig { call_latency_ms: (0, 0), ..SimConfig::clean(150, 1) });
        let gate = Arc::new(CountingGate::default());
        sim.gate_lookups(gate.clone());
        let (admins, developers) = (sim.principals()[0].clone(), sim.principals()[1].clone());
        let (admin_ps, ro_ps) = (sim.permission_sets()[0].arn.clone(), sim.permission_sets()[1].arn.clone());
        let members: Vec<AccountId> =
            sim.org().accounts.iter().filter(|a| a.id != sim.org().management_account_id).map(|a| a.id.clone()).collect();
        let mut expected = BTreeSet::new();
        for (i, account) in members.iter().enumerate() {
            assert!(sim.put_assignment_out_of_band(account, &admin_ps, &admins.id).unwrap());
            expected.insert((account.clone(), admin_ps.clone()));
            if i % 5 == 0 {
                assert!(sim.put_assignment_out_of_band(account, &ro_ps, &admins.id).unwrap());
                expected.insert((account.clone(), ro_ps.clone()));
            }
        }
        assert_eq!(expected.len(), 180);
        // Another principal's assignment is not listed.
        sim.put_assignment_out_of_band(&members[0], &admin_ps, &developers.id).unwrap();

        let found = sim.principal_assignments(&admins).await.unwrap();
        assert_eq!(found, PrincipalAssignments { assignments: expected, pages: 2 });
        assert_eq!(sim.counters().calls["ListAccountAssignmentsForPrincipal"], 2);
        assert_eq!(gate.0.load(std::sync::atomic::Ordering::SeqCst), 2);

        // Nothing held: one page, empty.
        let alice = sim.principals().iter().find(|p| p.name.as_deref() == Some("alice")).unwrap().clone();
        assert_eq!(sim.principal_assignments(&alice).await.unwrap(), PrincipalAssignments { assignments: BTreeSet::new(), pages: 1 });
        assert_eq!(sim.counters().calls["ListAccountAssignmentsForPrincipal"], 3);
    }

    /// Out-of-band changes (the console): at once, no call spent, seen by the next listing.
    #[tokio::test(start_paused = true)]
    async fn assignments_change_out_of_band_without_a_call() {
        let sim = SimCloud::new(SimConfig { call_latency_ms: (0, 0), ..SimConfig::clean(5, 1) });
        let (group, ps) = (sim.principals()[0].id.clone(), sim.permission_sets()[2].arn.clone());
        let account = sim.org().accounts[1].id.clone();
        assert!(!sim.has_assignment(&account, &ps, &group));
        assert!(sim.put_assignment_out_of_band(&account, &ps, &group).unwrap());
        assert!(!sim.put_assignment_out_of_band(&account, &ps, &group).unwrap(), "already held");
        assert!(sim.has_assignment(&account, &ps, &group));
        assert_eq!(sim.assignments_now(), vec![(account.clone(), ps.clone(), group.clone())]);
        assert!(sim.remove_assignment_out_of_band(&account, &ps, &group));
        assert!(!sim.remove_assignment_out_of_band(&account, &ps, &group), "already gone");
        assert!(sim.assignments_now().is_empty());
        assert_eq!(sim.counters().sso_admin_calls(), 0);
        assert!(sim.operations().is_empty());

        let unknown_account: AccountId = "999999999999".parse().unwrap();
        let e = sim.put_assignment_out_of_band(&unknown_account, &ps, &group).unwrap_err();
        assert!(matches!(&e, FanoutError::NotFound { what, .. } if what == "account"), "{e:?}");
        let unknown_ps: PermissionSetArn = "arn:aws:sso:::permissionSet/ssoins-7223000000000001/ps-00000000000000ff".parse().unwrap();
        let e = sim.put_assignment_out_of_band(&account, &unknown_ps, &group).unwrap_err();
        assert!(matches!(&e, FanoutError::NotFound { what, .. } if what == "permission set"), "{e:?}");

        // A revoke of an assignment deleted out of band is NotFound, as on AWS.
        sim.put_assignment_out_of_band(&account, &ps, &group).unwrap();
        sim.remove_assignment_out_of_band(&account, &ps, &group);
        let key = AssignmentKey { account_id: account, permission_set_arn: ps, principal_type: PrincipalType::Group, principal_id: group };
        assert!(matches!(sim.delete_assignment(&key).await.unwrap_err(), FanoutError::NotFound { .. }));
    }

    /// The limiter and the audit read "20 per second" the same way, over the sliding second
    /// `(t - 1 s, t]`: 20 calls at once are admitted; 10 more half a second later are refused
    /// (a 20/s token bucket refilled 10 tokens by then and let them through: 30 in one second)
    /// and counted by the audit; one just under a second after the first 20 is refused, one a
    /// second after them admitted.
    #[tokio::test(start_paused = true)]
    async fn the_limiter_and_the_audit_read_the_same_sliding_second() {
        let sim = Arc::new(SimCloud::new(SimConfig { call_latency_ms: (0, 0), ..SimConfig::clean(5, 1) }));
        let started = tokio::time::Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let sim = sim.clone();
            calls.spawn(async move { sim.instance().await });
        }
        while let Some(call) = calls.join_next().await {
            assert!(call.unwrap().is_ok(), "the first 20 are admitted");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..10 {
            assert!(matches!(sim.instance().await, Err(FanoutError::Throttled { .. })));
        }
        let c = sim.counters();
        assert_eq!((c.admitted, c.rate_violations, c.max_admitted_in_window), (20, 10, 20), "{c:?}");
        assert_eq!((c.window_violations, c.max_in_window), (10, 30), "the audit counts what was received: {c:?}");
        assert_eq!(c.violations(), 10);
        tokio::time::sleep_until(started + Duration::from_millis(999)).await;
        assert!(sim.instance().await.is_err(), "20 admitted within the last second");
        tokio::time::sleep_until(started + Duration::from_secs(1)).await;
        assert!(sim.instance().await.is_ok(), "the first 20 are a full second old: out of the window");
        let c = sim.counters();
        assert_eq!((c.admitted, c.rate_violations, c.max_admitted_in_window), (21, 11, 20), "{c:?}");
        assert_eq!(c.sso_admin_calls(), c.admitted + c.rate_violations + c.storm_throttles);
    }
}
