//! The planner: request -> resolved names -> target accounts -> diff against what exists ->
//! tier, batches, quota shares and an estimate. Pure decisions (`decide`, `estimate_seconds`)
//! are separate from the I/O that gathers their inputs (`make_plan`, `scope`, `load_org`).

use crate::clock::{new_run_id, unix_now};
use crate::error::{FanoutError, Result};
use crate::ids::AccountId;
use crate::model::*;
use std::num::NonZeroU32;
use crate::plan::*;
use crate::quota::Ledger;
use crate::ports::{Directory, OrgDirectory};
use crate::request::RunRequest;
use crate::retry::retrying;
use crate::store::{AccountCache, LatencyHistory, LATENCY_SAMPLES_KEPT};
use crate::targeting;
use crate::tiers::{AwsLimits, BindingLimit, LatencyModel, QuotaBudget, TierTable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Planner settings, read once at start-up (CLI flags or Lambda environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannerConfig {
    /// Identity Center's published limits (what the bound is computed with).
    pub limits: AwsLimits,
    /// What the planner spends of them (the default keeps 10% of the request rate free).
    pub budget: QuotaBudget,
    pub tiers: TierTable,
    /// Wall-clock time a worker may spend on one batch (well inside the Lambda timeout).
    pub worker_time_budget_s: u32,
    /// The account cache is used while younger than this.
    pub account_cache_max_age_s: u64,
    pub default_account_timeout_s: u32,
    pub default_max_retries: u32,
    /// Workers spend one quota ledger shared by every worker and run on the instance: batches
    /// may then run side by side (the Map's MaxConcurrency above 1).
    #[serde(default)]
    pub shared_quota: bool,
}

/// A worker's time budget when the batches run in the CLI's own process: no Lambda timeout
/// ends it, so batches are as large as the run (a whole run is one wave, no drain between
/// batches); the budget only stops a run that hangs.
pub const IN_PROCESS_TIME_BUDGET_S: u32 = 6 * 3600;

impl PlannerConfig {
    /// For runs the CLI executes itself, with the shared quota ledger.
    pub fn in_process() -> PlannerConfig {
        PlannerConfig { worker_time_budget_s: IN_PROCESS_TIME_BUDGET_S, shared_quota: true, ..PlannerConfig::default() }
    }
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            limits: AwsLimits::PUBLISHED,
            budget: QuotaBudget::default(),
            tiers: TierTable::default(),
            worker_time_budget_s: 600,
            account_cache_max_age_s: 3600,
            default_account_timeout_s: 300,
            default_max_retries: 5,
            shared_quota: false,
        }
    }
}

/// The planner's I/O: gathers names, accounts and existing assignments, then `decide`s.
pub async fn make_plan(
    request: &RunRequest,
    config: &PlannerConfig,
    org: &dyn OrgDirectory,
    ic: &dyn Directory,
    cache: &dyn AccountCache,
    history: &dyn LatencyHistory,
    quota: Option<&Ledger>,
) -> Result<Plan> {
    let (instance, scope) = gated_scope(org, ic, quota, config).await?;
    // Independent look-ups run together.
    let (permission_set, principal, snapshot) = tokio::try_join!(
        retrying(|| ic.resolve_permission_set(&request.permission_set)),
        retrying(|| ic.resolve_principal(&request.principal)),
        load_org(org, cache, &scope, request.refresh_cache, config.account_cache_max_age_s),
    )?;
    let selection = targeting::select(&snapshot, &request.targets)?;
    check_selection(request, &selection)?;
    let target_ids: Vec<AccountId> = selection.targets.iter().map(|a| a.id.clone()).collect();
    let existing = retrying(|| ic.assigned_accounts(&principal, &permission_set.arn, &target_ids)).await?;
    let latency = LatencyModel::from_samples(&history.latency_samples(&scope, LATENCY_SAMPLES_KEPT).await?).unwrap_or_default();

    let targets: Vec<(AccountId, String)> = selection.targets.iter().map(|a| (a.id.clone(), a.name.clone())).collect();
    let warnings: Vec<String> = inactive_warning(&selection.inactive).into_iter().collect();
    let decision = decide(request.operation, &targets, &existing, snapshot.accounts.len(), request, config, latency);
    let pair = Pair { permission_set, principal };
    Ok(assemble(PlanRequest::Single(request.clone()), request.operation, (instance, scope), pair, vec![], None, decision, config, warnings))
}

/// The plan from what the planner found and decided (`warnings` come before the decision's).
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    request: PlanRequest,
    operation: Operation,
    (instance, scope): (Instance, Scope),
    first: Pair,
    pairs: Vec<Pair>,
    desired: Option<crate::desired::DesiredPlan>,
    decision: Decision,
    config: &PlannerConfig,
    mut warnings: Vec<String>,
) -> Plan {
    warnings.extend(decision.warnings);
    Plan {
        run_id: new_run_id(),
        created_at: unix_now(),
        request,
        operation,
        instance,
        scope,
        permission_set: first.permission_set,
        principal: first.principal,
        skipped: decision.skipped,
        batches: decision.batches,
        map_concurrency: decision.map_concurrency,
        map_reason: decision.map_reason,
        tier: decision.tier,
        settings: decision.settings,
        estimate: decision.estimate,
        quota: PlanQuota { limits: config.limits, budget: config.budget },
        warnings,
        pairs,
        desired,
    }
}

/// `scope`, and from then on the look-ups spend the instance's shared request rate (running
/// workers spend the same rate: the look-ups take their turn).
pub(crate) async fn gated_scope(org: &dyn OrgDirectory, ic: &dyn Directory, quota: Option<&Ledger>, config: &PlannerConfig) -> Result<(Instance, Scope)> {
    let (instance, scope) = scope(org, ic).await?;
    if let Some(ledger) = quota {
        ic.gate_lookups(ledger.rate(&scope, config.budget));
    }
    Ok((instance, scope))
}

/// Selected accounts that are not ACTIVE, named (the first few): they are left out, never silently.
pub(crate) fn inactive_warning(inactive: &[&Account]) -> Option<String> {
    const NAMED: usize = 5;
    if inactive.is_empty() {
        return None;
    }
    let named: Vec<String> = inactive.iter().take(NAMED).map(|a| format!("{} ({}, {:?})", a.id, a.name, a.status)).collect();
    let more = inactive.len().saturating_sub(NAMED);
    Some(format!(
        "{} selected account(s) are not ACTIVE and are left out: {}{}",
        inactive.len(),
        named.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    ))
}

/// The Identity Center instance and the scope (organization, instance, region) this caller
/// works on: two calls, one to sso-admin and one to Organizations.
pub async fn scope(org: &dyn OrgDirectory, ic: &dyn Directory) -> Result<(Instance, Scope)> {
    let (instance, identity) = tokio::try_join!(retrying(|| ic.instance()), retrying(|| org.identity()))?;
    let scope = Scope::new(&identity, &instance);
    Ok((instance, scope))
}

/// The account cache of `scope` when fresh, else Organizations (and the cache is refreshed).
/// A cached snapshot that is not this scope's organization, or predates the OU tree, is never
/// used.
pub async fn load_org(org: &dyn OrgDirectory, store: &dyn AccountCache, scope: &Scope, refresh: bool, max_age_s: u64) -> Result<OrgSnapshot> {
    if !refresh {
        if let Some(cached) = store.cached_org(scope).await? {
            let fresh = unix_now().saturating_sub(cached.fetched_at) <= max_age_s;
            if fresh && scope.owns(&cached) && !cached.roots.is_empty() {
                return Ok(cached);
            }
        }
    }
    let fresh = retrying(|| org.snapshot()).await?;
    if !scope.owns(&fresh) {
        // The credentials changed organization between the two calls: refuse rather than guess.
        return Err(FanoutError::Config(format!(
            "Organizations answered for organization {} (management account {}), but this run was scoped to {} ({}); \
             check that one profile and region are used throughout",
            fresh.organization_id, fresh.management_account_id, scope.organization_id, scope.management_account_id
        )));
    }
    store.put_org(scope, &fresh).await?;
    Ok(fresh)
}

/// The organization with `ids` read again from Organizations (a few calls each) on top of the
/// account cache: what a reconcile of the accounts an event names plans against. An account
/// now in an OU the cached tree does not have means the tree changed: it is all read again.
/// An id the organization does not have is refused by name (`accounts[i]`).
pub async fn load_org_with_accounts(org: &dyn OrgDirectory, store: &dyn AccountCache, scope: &Scope, ids: &[AccountId], max_age_s: u64) -> Result<OrgSnapshot> {
    let mut snapshot = load_org(org, store, scope, false, max_age_s).await?;
    let fresh = match retrying(|| org.accounts(ids)).await {
        Ok(fresh) => fresh,
        Err(FanoutError::NotFound { name, .. }) => {
            let index = ids.iter().position(|id| name.contains(id.as_str())).unwrap_or(0);
            let id = ids.get(index).map(ToString::to_string).unwrap_or(name);
            return Err(FanoutError::invalid(format!("accounts[{index}]"), id, format!("an account of organization {}", scope.organization_id)));
        }
        Err(e) => return Err(e),
    };
    if fresh.iter().any(|a| a.ou_path.iter().any(|ou| snapshot.ou(ou).is_none())) {
        return load_org(org, store, scope, true, max_age_s).await;
    }
    for account in fresh {
        match snapshot.accounts.iter_mut().find(|a| a.id == account.id) {
            Some(known) => *known = account,
            None => snapshot.accounts.push(account),
        }
    }
    // The cache learns them too (its age unchanged: the rest was not read again), so a later
    // plan from the cache does not see a moved account in its old OU.
    store.put_org(scope, &snapshot).await?;
    Ok(snapshot)
}

/// Ids as a user wrote them: `a, b, c`.
fn join_ids<T: std::fmt::Display>(ids: &[T]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn check_selection(request: &RunRequest, selection: &targeting::Selection<'_>) -> Result<()> {
    let unknown = [
        ("accounts", &selection.unknown_ids, &request.targets.accounts, "run `sso-fanout cache refresh` if it was just created"),
        ("exclude", &selection.unknown_excluded, &request.targets.exclude, "an unknown id excludes nothing: check for a typo"),
    ];
    for (field, unknown_ids, listed, hint) in unknown {
        if let Some(id) = unknown_ids.first() {
            let index = listed.iter().position(|a| a == id).unwrap_or(0);
            return Err(FanoutError::invalid(format!("targets.{field}[{index}]"), id, format!("an account of this organization ({hint})")));
        }
    }
    if selection.targets.is_empty() {
        let t = &request.targets;
        let (field, value) = match (&t.filter, t.ous.is_empty(), t.tags.is_empty()) {
            _ if selection.excluded > 0 && selection.inactive.is_empty() => ("targets.exclude", join_ids(&t.exclude)),
            (Some(f), _, _) => ("targets.filter", format!("\"{f}\"")),
            (None, false, _) => ("targets.ous", join_ids(&t.ous)),
            (None, true, false) => ("targets.tags", format!("{:?}", t.tags)),
            _ => ("targets", "the selection".to_string()),
        };
        let why = if selection.excluded > 0 && selection.inactive.is_empty() {
            format!("a selection that leaves at least one ACTIVE account (the selectors matched {}, all excluded)", selection.excluded)
        } else if selection.inactive.is_empty() {
            "a selection that matches at least one ACTIVE account (nothing matched; `sso-fanout org` lists the accounts with their OU path and tags)".to_string()
        } else {
            format!("a selection that matches at least one ACTIVE account ({} matched, none ACTIVE)", selection.inactive.len())
        };
        return Err(FanoutError::invalid(field, value, why));
    }
    Ok(())
}

/// Everything the planner decides, given its inputs.
pub struct Decision {
    pub skipped: Vec<PlanItem>,
    pub batches: Vec<Batch>,
    pub map_concurrency: u32,
    pub map_reason: String,
    pub tier: TierChoice,
    pub settings: EngineSettings,
    pub estimate: Estimate,
    pub warnings: Vec<String>,
}

/// Pure planning of a single-pair request: diff, then `size_plan`.
pub fn decide(
    operation: Operation,
    targets: &[(AccountId, String)],
    existing: &BTreeSet<AccountId>,
    org_accounts: usize,
    request: &RunRequest,
    config: &PlannerConfig,
    latency: LatencyModel,
) -> Decision {
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    for (id, name) in targets {
        let has = existing.contains(id);
        let action = match (operation, has) {
            (Operation::Assign, false) => Action::Create,
            (Operation::Revoke, true) => Action::Delete,
            _ => Action::Skip,
        };
        let item = PlanItem { account_id: id.clone(), account_name: name.clone(), action, pair: 0 };
        if action == Action::Skip { skipped.push(item) } else { changes.push(item) }
    }
    size_plan(changes, skipped, operation, org_accounts, request.tuning.as_ref(), config, latency)
}

/// Tier, clamps, batches and estimate for `changes`. Items of one account stay together, in
/// order, in one batch (the engine runs them one after another).
pub fn size_plan(
    changes: Vec<PlanItem>,
    skipped: Vec<PlanItem>,
    operation: Operation,
    org_accounts: usize,
    tuning: Option<&crate::request::Tuning>,
    config: &PlannerConfig,
    latency: LatencyModel,
) -> Decision {
    let budget = &config.budget;
    let tuning = tuning.cloned().unwrap_or_default();
    let mut warnings = Vec::new();

    // Concurrency: the tier's (or the user's) wish, clamped to the outstanding-operation quota.
    let tier = config.tiers.pick(org_accounts);
    let requested = tuning.concurrency.map(NonZeroU32::get).unwrap_or_else(|| config.tiers.concurrency(tier, operation));
    let in_flight = requested.min(budget.max_outstanding).max(1);
    if tuning.concurrency.is_some_and(|c| c.get() > budget.max_outstanding) {
        warnings.push(format!(
            "tuning.concurrency {requested} clamped to {in_flight}: the budget is {} outstanding assignment operations (Identity Center allows {})",
            budget.max_outstanding, config.limits.max_outstanding
        ));
    }
    let rate = budget.requests_per_second;

    // Time budget: a worker must finish its batch well inside the Lambda timeout.
    let mut time_budget_s = config.worker_time_budget_s;
    let mut account_timeout_s = tuning.account_timeout_seconds.map(NonZeroU32::get).unwrap_or(config.default_account_timeout_s);
    if account_timeout_s > time_budget_s {
        warnings.push(format!(
            "tuning.accountTimeoutSeconds {account_timeout_s} clamped to {time_budget_s}: the worker's time budget"
        ));
        account_timeout_s = time_budget_s;
    }
    time_budget_s = time_budget_s.max(account_timeout_s);
    let max_retries = tuning.max_retries.unwrap_or(config.default_max_retries).min(20);
    if tuning.max_retries.is_some_and(|r| r > 20) {
        warnings.push("tuning.maxRetries clamped to 20".into());
    }

    // Batches: as large as fit in the time budget (fewer drains, fewer transitions).
    // Plan to use 80% of the budget: the rest absorbs slower-than-assumed provisioning.
    let sizing = if latency.samples == 0 {
        warnings.push(format!(
            "no provisioning latencies observed on this instance yet: batches are sized for slow provisioning (median {} s, p99 {} s); later runs size them from what this one observes",
            LatencyModel::UNKNOWN_FOR_SIZING.median_s, LatencyModel::UNKNOWN_FOR_SIZING.p99_s
        ));
        LatencyModel::UNKNOWN_FOR_SIZING
    } else {
        latency
    };
    let per_change_s = sizing.mean_s() + CALL_OVERHEAD_S;
    let usable_s = time_budget_s as f64 * BUDGET_USE - sizing.p99_s;
    let fit_at = |slots: u32| (usable_s * slots as f64 / per_change_s).floor().max(slots as f64) as u32;
    // With the shared quota, a run too large for one worker runs two batches side by side: the
    // ledger splits the slots between them, so one batch's drain is the other's full speed and
    // the run never drops to zero between batches. Each then gets half the slots, so it must
    // fit the time budget at half.
    let (map_concurrency, map_reason) = match () {
        _ if changes.len() as u32 <= fit_at(in_flight) => (1, "one batch holds every change".to_string()),
        _ if !config.shared_quota => (1, "no shared quota ledger: each batch spends the whole budget, so batches run one after another".to_string()),
        _ => (SIDE_BY_SIDE, format!(
            "{SIDE_BY_SIDE} batches at a time share the {in_flight} slots through the quota ledger: no drain between batches"
        )),
    };
    let fit = fit_at((in_flight / map_concurrency).max(1));
    let wanted = tuning.batch_size.map(NonZeroU32::get).or(tier.batch_size).unwrap_or(fit);
    let batch_size = wanted.min(fit).max(1);
    if wanted > fit {
        warnings.push(format!(
            "batch size {wanted} clamped to {fit}: a worker must finish within {time_budget_s} s at {} operations in flight",
            (in_flight / map_concurrency).max(1)
        ));
    }
    // Even batches: 500 changes that fit 498 to a batch become 250 + 250, not 498 + 2 (a
    // second drain for two accounts).
    let batch_count = changes.len().div_ceil(batch_size as usize).max(1);
    let batch_size = changes.len().div_ceil(batch_count).max(1);
    let share = QuotaShare { in_flight, requests_per_second: rate };
    let longest_chain = account_chains(&changes).iter().map(Vec::len).max().unwrap_or(0);
    // One account's operations run one after another within one worker.
    if longest_chain as f64 * per_change_s > usable_s {
        warnings.push(format!(
            "one account has {longest_chain} changes: one after another they need ~{:.0} s, more than a worker's {time_budget_s} s budget allows; the rest of that account is left for a re-run (or run it from the CLI, which has no such limit)",
            longest_chain as f64 * per_change_s
        ));
    }
    let batches: Vec<Batch> = chunk_by_account(changes, batch_size)
        .into_iter()
        .enumerate()
        .map(|(i, items)| Batch { index: i as u32, share, items })
        .collect();
    let map_concurrency = map_concurrency.min(batches.len().max(1) as u32);

    let (seconds, binding) = if map_concurrency > 1 {
        // Batches side by side keep the slots busy across batch ends: one drain in all.
        let all = Batch { index: 0, share, items: batches.iter().flat_map(|b| b.items.clone()).collect() };
        estimate_seconds(std::slice::from_ref(&all), &latency)
    } else {
        estimate_seconds(&batches, &latency)
    };
    // One account's operations run one after another: its chain is a bound of its own.
    let seconds = seconds.max(longest_chain as f64 * (latency.mean_s() + CALL_OVERHEAD_S));
    let tier_choice = TierChoice {
        name: tier.name.clone(),
        org_accounts,
        requested_concurrency: requested,
        in_flight,
        requests_per_second: rate,
        binding,
        binding_text: binding.describe(budget),
    };
    Decision {
        skipped,
        estimate: Estimate { seconds, changes: batches.iter().map(|b| b.items.len()).sum(), latency },
        batches,
        map_concurrency,
        map_reason,
        tier: tier_choice,
        settings: EngineSettings { account_timeout_s, max_retries, time_budget_s },
        warnings,
    }
}

/// Items grouped by account, each group in its given order, groups in order of first appearance.
pub fn account_chains(items: &[PlanItem]) -> Vec<Vec<PlanItem>> {
    let mut chains: Vec<Vec<PlanItem>> = Vec::new();
    let mut index: std::collections::HashMap<&AccountId, usize> = std::collections::HashMap::new();
    for item in items {
        let at = *index.entry(&item.account_id).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[at].push(item.clone());
    }
    chains
}

/// Consecutive batches of about `size` items that never split one account's chain.
/// A chain goes to the current batch while it fits whole, else starts the next one (a chain
/// longer than `size` is a batch of its own).
fn chunk_by_account(items: Vec<PlanItem>, size: usize) -> Vec<Vec<PlanItem>> {
    let mut batches: Vec<Vec<PlanItem>> = Vec::new();
    for chain in account_chains(&items) {
        match batches.last_mut() {
            Some(last) if last.len() + chain.len() <= size => last.extend(chain),
            _ => batches.push(chain),
        }
    }
    batches
}

/// Batches that run at once with the shared quota (the Map state's MaxConcurrency). Two are
/// enough to hide one batch's drain behind the other; more would only split the same slots
/// further and shrink every batch.
const SIDE_BY_SIDE: u32 = 2;
/// Create call + detection lag per change, on top of provisioning latency.
const CALL_OVERHEAD_S: f64 = 0.25;
/// Share of the worker's time budget a batch is planned to take.
const BUDGET_USE: f64 = 0.8;

/// The quota model, per batch (batches run one after another): with more changes than slots,
/// the in-flight-bound (or rate-bound, two calls per change) steady state plus the drain of the
/// last wave, whose slowest operation runs E[max of `in_flight` latencies] instead of the mean;
/// with fewer, the slowest of them. Calibrated against Monte-Carlo list scheduling (within ~3%).
pub fn estimate_seconds(batches: &[Batch], latency: &LatencyModel) -> (f64, BindingLimit) {
    let mut total = 0.0;
    let mut binding = BindingLimit::OutstandingOperations;
    for b in batches {
        let n = b.items.len();
        let slots = b.share.in_flight.max(1) as usize;
        if n <= slots {
            total += latency.expected_max_s(n) + CALL_OVERHEAD_S;
            binding = BindingLimit::SlowestAccount;
            continue;
        }
        let by_slots = n as f64 * (latency.mean_s() + CALL_OVERHEAD_S) / slots as f64;
        let by_rate = 2.0 * n as f64 / b.share.requests_per_second;
        let drain = latency.expected_max_s(slots) - latency.mean_s();
        binding = if by_rate > by_slots { BindingLimit::RequestRate } else { BindingLimit::OutstandingOperations };
        total += by_slots.max(by_rate) + drain;
    }
    (total, binding)
}
