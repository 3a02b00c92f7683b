//! Desired state: a rules document (`rules`) planned against the live organization and Identity
//! Center. The plan is the drift report (per rule: missing, present; in the `managed` scope:
//! undeclared) and the changes that reconcile it: creates, then (with `prune`) deletes inside
//! `managed` only, never on the management or protected accounts, never past `maxDeletes`.
//!
//! The actual state is read with one paginated principal-wide listing per principal (declared
//! or managed), not one call per account. The changes become an ordinary plan whose items name
//! their (permission set, principal) pair: the same batches, state machine and engine run it.

use crate::error::{FanoutError, Result};
use crate::ids::{AccountId, PermissionSetArn, PrincipalId};
use crate::model::*;
use crate::plan::{Pair, Plan, PlanItem, PlanRequest};
use crate::planner::{assemble, gated_scope, inactive_warning, load_org, load_org_with_accounts, size_plan, PlannerConfig};
use crate::ports::{Directory, OrgDirectory};
use crate::quota::Ledger;
use crate::request::{PermissionSetRef, PrincipalRef, Tuning};
use crate::retry::retrying;
use crate::rules::{self, RulesDocument};
use crate::store::{AccountCache, LatencyHistory, LATENCY_SAMPLES_KEPT};
use crate::tiers::LatencyModel;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Deletes a prune may make unless the request says otherwise: enough for everyday clean-up,
/// few enough that a document that lost a rule by mistake cannot wipe an organization.
pub const DEFAULT_MAX_DELETES: u32 = 20;
/// The name a document is stored under when the request gives none.
pub const DEFAULT_NAME: &str = "default";

/// A rules run: the document and how to apply it. The state machine input `{"rules": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RulesRequest {
    pub rules: RulesDocument,
    /// What the document is stored under once applied (a schedule reconciles it by name).
    #[serde(default = "default_name")]
    pub name: String,
    /// Delete undeclared assignments inside `managed` (off unless asked).
    #[serde(default)]
    pub prune: bool,
    /// A prune refuses to run past this many deletes (default `DEFAULT_MAX_DELETES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deletes: Option<u32>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub refresh_cache: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
    /// Reconcile only these accounts (an Organizations event names the account it is about);
    /// empty: every account the document covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountId>,
    /// Made from a stored document (`{"reconcile": name}`): applying it never stores it again,
    /// so a one-off override (prune, maxDeletes, accounts) never becomes the stored setting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconciled: bool,
    /// Applying it may replace a different document stored under `name` (without it, that is
    /// refused: a schedule reconciling `name` would silently apply this one from then on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_document: bool,
}

fn default_name() -> String {
    DEFAULT_NAME.to_string()
}

impl RulesRequest {
    /// A request for `document` with every option at its default.
    pub fn new(document: RulesDocument) -> RulesRequest {
        RulesRequest {
            rules: document,
            name: default_name(),
            prune: false,
            max_deletes: None,
            dry_run: false,
            refresh_cache: false,
            tuning: None,
            accounts: vec![],
            reconciled: false,
            replace_document: false,
        }
    }

    /// Whether applying this request stores its document under its name: a whole document
    /// applied as written, not a reconcile of a stored one nor a run restricted to accounts.
    pub fn stores_document(&self) -> bool {
        !self.dry_run && self.names_document()
    }

    /// Whether this request, applied, would store its document (dry run or not).
    pub fn names_document(&self) -> bool {
        !self.reconciled && self.accounts.is_empty()
    }

    /// Whether `stored` holds this request's document with the same settings (what a schedule
    /// reconciling the name would apply), whatever this run's own options.
    pub fn same_document_as(&self, stored: &RulesRequest) -> bool {
        (&self.rules, self.prune, self.max_deletes, &self.tuning) == (&stored.rules, stored.prune, stored.max_deletes, &stored.tuning)
    }

    /// Parses `{"rules": {...}, ...}`: the document is checked whole first (its errors name
    /// paths inside it, e.g. `rules[2].targets[0].ous[1]`), then the options.
    pub fn from_value(mut value: serde_json::Value) -> Result<RulesRequest> {
        let object = value.as_object_mut().ok_or_else(|| FanoutError::invalid("request", "", "a JSON object"))?;
        let document = object.remove("rules").ok_or_else(|| FanoutError::invalid("rules", "", "the rules document"))?;
        let document = RulesDocument::from_value(document)?;
        object.insert("rules".into(), serde_json::to_value(&document).map_err(|e| FanoutError::Internal(e.to_string()))?);
        let request: RulesRequest = serde_path_to_error::deserialize(value)
            .map_err(|e| FanoutError::invalid(e.path().to_string(), "", e.into_inner().to_string()))?;
        check_name(&request.name)?;
        Ok(request)
    }

    pub fn max_deletes(&self) -> u32 {
        self.max_deletes.unwrap_or(DEFAULT_MAX_DELETES)
    }
}

/// Stored document names: letters, digits, `.`, `_`, `-` (they become store keys).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(FanoutError::invalid("name", crate::error::printable(name), "1-64 letters, digits, '.', '_' or '-'"))
    }
}

/// `{"reconcile": "baseline"}`: apply the document stored under that name again (an
/// EventBridge schedule, or an Organizations event with `accounts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcileRequest {
    pub reconcile: String,
    /// Only these accounts (e.g. the account an Organizations event is about).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountId>,
    /// Overrides the stored document's `prune` / `maxDeletes` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_deletes: Option<u32>,
    #[serde(default)]
    pub dry_run: bool,
}

impl ReconcileRequest {
    /// The stored request with this reconcile's restrictions and overrides applied.
    pub fn apply_to(&self, mut stored: RulesRequest) -> RulesRequest {
        stored.accounts = self.accounts.clone();
        stored.reconciled = true;
        stored.prune = self.prune.unwrap_or(stored.prune);
        stored.max_deletes = self.max_deletes.or(stored.max_deletes);
        stored.dry_run = self.dry_run;
        // What a reconcile plans against is read again from Organizations: the accounts it is
        // restricted to (an event is about a change the cache may not have seen), else the
        // whole organization (a schedule corrects drift: a stale cache could grant a moved
        // account its old OU's access again).
        stored.refresh_cache = self.accounts.is_empty();
        stored
    }
}

/// Where applying a rules plan stores its document, and what that replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentStorage {
    pub name: String,
    pub state: StorageState,
    /// The run that stored the document this one would replace, and when (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<(String, u64)>,
    /// What differs from the stored one: `a different document`, or its settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageState {
    /// Nothing is stored under the name yet.
    New,
    /// The same document and settings are stored there.
    Unchanged,
    /// A different document (or other settings) is stored there.
    Replaces,
}

impl DocumentStorage {
    pub fn of(request: &RulesRequest, stored: Option<&StoredDocument>) -> DocumentStorage {
        let (state, replaces) = match stored {
            None => (StorageState::New, None),
            Some(d) if request.same_document_as(&d.request) => (StorageState::Unchanged, None),
            Some(d) => (StorageState::Replaces, Some((d.run_id.clone(), d.stored_at))),
        };
        let difference = stored.filter(|_| state == StorageState::Replaces).map(|d| difference(&d.request, request));
        DocumentStorage { name: request.name.clone(), state, replaces, difference }
    }
}

/// `a different document`, or `the same document with other settings (prune off -> on)`.
fn difference(stored: &RulesRequest, new: &RulesRequest) -> String {
    if stored.rules != new.rules {
        return "a different document".into();
    }
    let prune = |r: &RulesRequest| if r.prune { format!("on, maxDeletes {}", r.max_deletes()) } else { "off".into() };
    let mut changed = Vec::new();
    if (stored.prune, stored.max_deletes()) != (new.prune, new.max_deletes()) {
        changed.push(format!("prune {} -> {}", prune(stored), prune(new)));
    }
    if stored.tuning != new.tuning {
        changed.push("tuning".to_string());
    }
    format!("the same document with other settings ({})", changed.join(", "))
}

/// A document stored under a name (what `{"reconcile": name}` applies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDocument {
    pub name: String,
    pub request: RulesRequest,
    /// The run that applied it, and when (Unix seconds).
    pub run_id: String,
    pub stored_at: u64,
}

/// One assignment in the drift report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftEntry {
    pub account_id: AccountId,
    pub account_name: String,
    pub permission_set: String,
    /// `GROUP PlatformAdmins`, `USER alice`.
    pub principal: String,
}

/// What one rule declares and how the live state differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleDrift {
    pub id: String,
    pub permission_set: String,
    pub principals: Vec<String>,
    /// ACTIVE accounts the rule selects (within `accounts` when the request restricts them).
    pub accounts: usize,
    /// Declared assignments that exist.
    pub present: usize,
    /// Declared assignments that do not exist (the creates).
    pub missing: Vec<DriftEntry>,
    /// How many are missing (also when a preview cut `missing` short to fit a payload limit).
    #[serde(default)]
    pub missing_count: usize,
}

/// What a prune does, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PruneDecision {
    pub enabled: bool,
    pub max_deletes: u32,
    /// Undeclared assignments inside `managed` a prune deletes (0 when not enabled).
    pub deletes: usize,
    /// Refused: more deletes than `max_deletes`; nothing may run.
    pub refused: bool,
}

/// Identity Center calls the plan made to read the actual state.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadCost {
    pub principals_listed: usize,
    /// ListAccountAssignmentsForPrincipal pages (one call each).
    pub listing_calls: u32,
    /// Permission sets and principals resolved by name or id.
    pub lookups: usize,
}

/// A rules plan's drift report (`Plan::desired`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredPlan {
    pub name: String,
    pub rules: Vec<RuleDrift>,
    /// Assignments inside `managed` that no rule declares (deleted by a prune).
    pub undeclared: Vec<DriftEntry>,
    /// How many are undeclared (also when a preview cut `undeclared` short).
    #[serde(default)]
    pub undeclared_count: usize,
    /// Undeclared assignments on the management or a protected account: never deleted.
    pub protected: Vec<DriftEntry>,
    pub prune: PruneDecision,
    pub cost: ReadCost,
    /// The accounts the request was restricted to (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<AccountId>,
    /// Where applying stores the document (None: it stores none, e.g. a reconcile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<DocumentStorage>,
}

impl DesiredPlan {
    pub fn missing(&self) -> usize {
        self.rules.iter().map(|r| r.missing_count).sum()
    }

    /// The live state differs from the document: something is missing, or undeclared inside
    /// `managed` (outside protected accounts).
    pub fn has_drift(&self) -> bool {
        self.missing() > 0 || self.undeclared_count > 0
    }

    /// Cuts every entry list to at most `cap` entries (the counts stay whole).
    pub fn cut_lists(&mut self, cap: usize) {
        for rule in &mut self.rules {
            rule.missing.truncate(cap);
        }
        self.undeclared.truncate(cap);
        self.protected.truncate(cap);
    }
}

/// The changes a plan makes, as (account, permission set, principal, action): what a saved
/// plan is compared with the live state by.
pub fn change_set(plan: &Plan) -> BTreeSet<(AccountId, PermissionSetArn, PrincipalId, Action)> {
    plan.batches
        .iter()
        .flat_map(|b| &b.items)
        .map(|item| {
            let key = plan.assignment_key(item);
            (key.account_id, key.permission_set_arn, key.principal_id, item.action)
        })
        .collect()
}

/// Refuses to apply `saved` when planning it again now gives other changes (someone changed
/// the organization or the assignments since it was reviewed).
pub fn check_saved_plan(saved: &Plan, live: &Plan) -> Result<()> {
    let pairs = saved.pairs.len().max(1);
    if let Some(item) = saved.batches.iter().flat_map(|b| &b.items).find(|i| i.pair as usize >= pairs) {
        return Err(FanoutError::invalid(
            "plan",
            saved.run_id.as_str(),
            format!("a plan as `sso-fanout plan --out` wrote it: an item names pair {} of {pairs}", item.pair),
        ));
    }
    if saved.scope != live.scope {
        return Err(FanoutError::invalid(
            "plan",
            saved.run_id.as_str(),
            format!("a plan made for this organization and instance ({}); it was made for {}", live.scope.key(), saved.scope.key()),
        ));
    }
    let (then, now) = (change_set(saved), change_set(live));
    if then == now {
        return check_saved_sizing(saved, live);
    }
    let gone = then.difference(&now).count();
    let new = now.difference(&then).count();
    let example = then.symmetric_difference(&now).next().map(|(a, ps, p, action)| format!("; e.g. {} {a} {ps} {p}", action.as_str())).unwrap_or_default();
    Err(FanoutError::invalid(
        "plan",
        saved.run_id.as_str(),
        format!(
            "a plan that still matches the live state: since it was made, {gone} of its changes are no longer needed and {new} new ones are{example}; nothing was changed: plan again and review"
        ),
    ))
}

/// What a saved plan says it spends (the quota budget, each batch's share, the engine's
/// settings) must be what planning its request again under this run's configuration gives:
/// the same limits as flags and the environment. An edited file (`"budget": 999`,
/// `"accountTimeoutS": 1`) is refused by the field, never obeyed. The batches themselves are
/// sized again when the plan is applied (from the latencies observed by then).
fn check_saved_sizing(saved: &Plan, live: &Plan) -> Result<()> {
    let budget = |q: &crate::plan::PlanQuota| format!("{} outstanding, {} req/s", q.budget.max_outstanding, q.budget.requests_per_second);
    let limits = |q: &crate::plan::PlanQuota| format!("{} outstanding, {} req/s", q.limits.max_outstanding, q.limits.requests_per_second);
    let refuse = |field: &str, value: String, now: String| {
        Err(FanoutError::invalid(
            format!("plan {field}"),
            value,
            format!(
                "what planning the saved request again gives: {now} (this run's --max-outstanding / --requests-per-second or their                  environment variables, and the request's tuning); nothing was changed: plan again, or run with the budget the plan was made with"
            ),
        ))
    };
    if saved.quota.limits != live.quota.limits {
        return refuse("quota", limits(&saved.quota), format!("Identity Center's published limits, {}", limits(&live.quota)));
    }
    if saved.quota.budget != live.quota.budget {
        return refuse("quota.budget", budget(&saved.quota), budget(&live.quota));
    }
    if saved.settings != live.settings {
        return refuse("settings", format!("{:?}", saved.settings), format!("{:?}", live.settings));
    }
    if let Some(live_share) = live.batches.first().map(|b| b.share) {
        if let Some(batch) = saved.batches.iter().find(|b| b.share != live_share) {
            return refuse(
                &format!("batches[{}].share", batch.index),
                format!("{} in flight, {} req/s", batch.share.in_flight, batch.share.requests_per_second),
                format!("{} in flight, {} req/s", live_share.in_flight, live_share.requests_per_second),
            );
        }
    }
    Ok(())
}

/// The planner's I/O for a rules request: scope, organization, names, one listing per
/// principal; then `reconcile` decides.
#[allow(clippy::too_many_arguments)]
pub async fn make_rules_plan(
    request: &RulesRequest,
    config: &PlannerConfig,
    org: &dyn OrgDirectory,
    ic: &dyn Directory,
    cache: &dyn AccountCache,
    history: &dyn LatencyHistory,
    quota: Option<&Ledger>,
) -> Result<Plan> {
    let doc = &request.rules;
    let (instance, run_scope) = gated_scope(org, ic, quota, config).await?;
    // A prune decides what to delete from a complete, current listing of the organization, or,
    // restricted to some accounts, from those accounts read again on top of the cache.
    let max_age = config.account_cache_max_age_s;
    let organization = async {
        if request.accounts.is_empty() || request.refresh_cache {
            load_org(org, cache, &run_scope, request.refresh_cache || request.prune, max_age).await
        } else {
            load_org_with_accounts(org, cache, &run_scope, &request.accounts, max_age).await
        }
    };
    // The organization and the document's names are read side by side (neither needs the
    // other); the assignments are read only once the whole document is valid.
    let (snapshot, names) = tokio::try_join!(organization, resolve_names(doc, ic))?;
    check_known_accounts(&snapshot, &request.accounts)?;
    let selections = rules::select_rules(doc, &snapshot)?;
    let ResolvedNames { permission_sets, principals, mut cost } = names;
    let actual = list_assignments(&principals, ic, &mut cost).await?;
    let latency = LatencyModel::from_samples(&history.latency_samples(&run_scope, LATENCY_SAMPLES_KEPT).await?).unwrap_or_default();

    let inputs = ReconcileInputs { doc, request, org: &snapshot, selections: &selections, permission_sets: &permission_sets, principals: &principals, actual: &actual };
    let outcome = reconcile(&inputs);
    let mut warnings: Vec<String> = inactive_warning(&selections.iter().flat_map(|s| s.inactive.iter().copied()).collect::<Vec<_>>()).into_iter().collect();
    warnings.extend(outcome.warnings);
    let decision = size_plan(outcome.changes, outcome.present, Operation::Assign, snapshot.accounts.len(), request.tuning.as_ref(), config, latency);
    let mut desired = outcome.desired;
    desired.cost = cost;
    let first = outcome.pairs.first().cloned().expect("a document declares at least one pair");
    Ok(assemble(
        PlanRequest::Rules(request.clone()),
        Operation::Assign,
        (instance, run_scope),
        first,
        outcome.pairs,
        Some(desired),
        decision,
        config,
        warnings,
    ))
}

/// A document's permission sets and principals as Identity Center knows them, keyed by the
/// reference as written.
struct ResolvedNames {
    permission_sets: BTreeMap<String, PermissionSet>,
    principals: BTreeMap<String, Principal>,
    cost: ReadCost,
}

/// Resolves every distinct name or id once; an unknown one is refused naming the rule (or
/// `managed` entry) that used it.
async fn resolve_names(doc: &RulesDocument, ic: &dyn Directory) -> Result<ResolvedNames> {
    let mut cost = ReadCost::default();
    let mut permission_sets: BTreeMap<String, PermissionSet> = BTreeMap::new();
    let mut principals: BTreeMap<String, Principal> = BTreeMap::new();
    for (field, reference) in permission_set_refs(doc) {
        if let std::collections::btree_map::Entry::Vacant(slot) = permission_sets.entry(reference.to_string()) {
            let found = retrying(|| ic.resolve_permission_set(reference)).await.map_err(|e| refused(&field, &reference.to_string(), e))?;
            cost.lookups += 1;
            slot.insert(found);
        }
    }
    for (field, reference) in principal_refs(doc) {
        if let std::collections::btree_map::Entry::Vacant(slot) = principals.entry(principal_text(reference)) {
            let found = retrying(|| ic.resolve_principal(reference)).await.map_err(|e| refused(&field, &principal_text(reference), e))?;
            cost.lookups += 1;
            slot.insert(found);
        }
    }
    Ok(ResolvedNames { permission_sets, principals, cost })
}

/// Every assignment the principals hold: one paginated principal-wide listing each.
async fn list_assignments(principals: &BTreeMap<String, Principal>, ic: &dyn Directory, cost: &mut ReadCost) -> Result<BTreeSet<Triple>> {
    let mut actual = BTreeSet::new();
    let listed: BTreeMap<&PrincipalId, &Principal> = principals.values().map(|p| (&p.id, p)).collect();
    for principal in listed.values() {
        let found = retrying(|| ic.principal_assignments(principal)).await?;
        cost.principals_listed += 1;
        cost.listing_calls += found.pages;
        actual.extend(found.assignments.into_iter().map(|(account, ps)| (account, ps, principal.id.clone())));
    }
    Ok(actual)
}

/// `accounts` of a rules request must be accounts of the organization: an unknown id is refused
/// by name, never read as "all".
fn check_known_accounts(org: &OrgSnapshot, accounts: &[AccountId]) -> Result<()> {
    for (i, id) in accounts.iter().enumerate() {
        if !org.accounts.iter().any(|a| &a.id == id) {
            return Err(FanoutError::invalid(
                format!("accounts[{i}]"),
                id,
                format!("an account of organization {} (run `sso-fanout cache refresh` if it was just created)", org.organization_id),
            ));
        }
    }
    Ok(())
}

/// A name the document uses that Identity Center does not know, as a request error naming the
/// field (with its rule id) that used it.
fn refused(field: &str, value: &str, error: FanoutError) -> FanoutError {
    match error {
        FanoutError::NotFound { .. } | FanoutError::Ambiguous { .. } | FanoutError::InvalidRequest { .. } => {
            FanoutError::invalid(field, crate::error::printable(value), format!("a name or id Identity Center knows: {error}"))
        }
        other => other,
    }
}

fn principal_text(p: &PrincipalRef) -> String {
    match p {
        PrincipalRef::Name { kind, name } => format!("{} {name}", kind.as_str()),
        PrincipalRef::Id { kind, id } => format!("{} {id}", kind.as_str()),
    }
}

/// Every permission set reference with the field it is written in.
fn permission_set_refs(doc: &RulesDocument) -> Vec<(String, &PermissionSetRef)> {
    let mut refs: Vec<(String, &PermissionSetRef)> = doc.rules.iter().enumerate().map(|(i, r)| (doc.rule_field(i, "permissionSet"), &r.permission_set)).collect();
    if let Some(managed) = &doc.managed {
        refs.extend(managed.permission_sets.iter().enumerate().map(|(i, p)| (format!("managed.permissionSets[{i}]"), p)));
    }
    refs
}

/// Every principal reference with the field it is written in.
fn principal_refs(doc: &RulesDocument) -> Vec<(String, &PrincipalRef)> {
    let mut refs = Vec::new();
    for (i, rule) in doc.rules.iter().enumerate() {
        refs.extend(rule.principals.iter().enumerate().map(|(j, p)| (doc.rule_field(i, &format!("principals[{j}]")), p)));
    }
    if let Some(managed) = &doc.managed {
        refs.extend(managed.principals.iter().enumerate().map(|(i, p)| (format!("managed.principals[{i}]"), p)));
    }
    refs
}

/// What `reconcile` decides from.
pub struct ReconcileInputs<'a> {
    pub doc: &'a RulesDocument,
    pub request: &'a RulesRequest,
    pub org: &'a OrgSnapshot,
    pub selections: &'a [rules::RuleSelection<'a>],
    /// Resolved, keyed by the reference as written (`PermissionSetRef` text / `TYPE name-or-id`).
    pub permission_sets: &'a BTreeMap<String, PermissionSet>,
    pub principals: &'a BTreeMap<String, Principal>,
    /// Every (account, permission set, principal) the listed principals hold.
    pub actual: &'a BTreeSet<(AccountId, PermissionSetArn, PrincipalId)>,
}

/// What `reconcile` decided.
pub struct Reconciled {
    pub pairs: Vec<Pair>,
    /// Creates then deletes per account; accounts with the longest chains first.
    pub changes: Vec<PlanItem>,
    /// Declared assignments that exist (the plan's skipped items).
    pub present: Vec<PlanItem>,
    pub desired: DesiredPlan,
    pub warnings: Vec<String>,
}

type Triple = (AccountId, PermissionSetArn, PrincipalId);

/// Pure: the drift report and the changes, from the document's selections and the actual state.
pub fn reconcile(inputs: &ReconcileInputs<'_>) -> Reconciled {
    let ReconcileInputs { doc, request, org, selections, permission_sets, principals, actual } = inputs;
    let only: BTreeSet<&AccountId> = request.accounts.iter().collect();
    let in_scope = |id: &AccountId| only.is_empty() || only.contains(id);
    let names: BTreeMap<&AccountId, &str> = org.accounts.iter().map(|a| (&a.id, a.name.as_str())).collect();
    let active: BTreeSet<&AccountId> = org.accounts.iter().filter(|a| a.status == AccountStatus::Active).map(|a| &a.id).collect();
    let ps_names: BTreeMap<&PermissionSetArn, &PermissionSet> = permission_sets.values().map(|p| (&p.arn, p)).collect();
    let by_id: BTreeMap<&PrincipalId, &Principal> = principals.values().map(|p| (&p.id, p)).collect();

    // The pair table: every declared pair in document order, then pairs only a prune touches.
    let mut pairs: Vec<Pair> = Vec::new();
    let mut pair_index: BTreeMap<(PermissionSetArn, PrincipalId), u32> = BTreeMap::new();
    let mut index_of = |ps: &PermissionSet, p: &Principal, pairs: &mut Vec<Pair>| -> u32 {
        *pair_index.entry((ps.arn.clone(), p.id.clone())).or_insert_with(|| {
            pairs.push(Pair { permission_set: ps.clone(), principal: p.clone() });
            pairs.len() as u32 - 1
        })
    };
    let entry = |(account, ps, p): &Triple| DriftEntry {
        account_id: account.clone(),
        account_name: names.get(account).map(|n| n.to_string()).unwrap_or_default(),
        permission_set: ps_names.get(ps).map(|x| x.name.clone()).unwrap_or_else(|| ps.to_string()),
        principal: by_id.get(p).map(|x| describe(x)).unwrap_or_else(|| p.to_string()),
    };

    let mut declared: BTreeMap<Triple, u32> = BTreeMap::new();
    let mut drift = Vec::with_capacity(doc.rules.len());
    for selection in selections.iter() {
        let rule = &doc.rules[selection.rule];
        let ps = &permission_sets[&rule.permission_set.to_string()];
        // One principal written by name and by id counts once.
        let mut rule_principals: Vec<&Principal> = Vec::new();
        for p in rule.principals.iter().map(|p| &principals[&principal_text(p)]) {
            if !rule_principals.iter().any(|q| q.id == p.id) {
                rule_principals.push(p);
            }
        }
        let accounts: Vec<&Account> = selection.accounts.iter().copied().filter(|a| in_scope(&a.id)).collect();
        let mut report = RuleDrift {
            id: rule.id.to_string(),
            permission_set: ps.name.clone(),
            principals: rule_principals.iter().map(|p| describe(p)).collect(),
            accounts: accounts.len(),
            present: 0,
            missing: vec![],
            missing_count: 0,
        };
        for principal in &rule_principals {
            let pair = index_of(ps, principal, &mut pairs);
            for account in &accounts {
                let triple = (account.id.clone(), ps.arn.clone(), principal.id.clone());
                if actual.contains(&triple) {
                    report.present += 1;
                } else {
                    report.missing.push(entry(&triple));
                    report.missing_count += 1;
                }
                declared.entry(triple).or_insert(pair);
            }
        }
        drift.push(report);
    }

    // Undeclared inside `managed`: its permission sets x its principals, ACTIVE accounts of
    // this organization only (an assignment in an account the listing does not know is left).
    let managed: Option<(BTreeSet<&PermissionSetArn>, BTreeSet<&PrincipalId>)> = doc.managed.as_ref().map(|m| {
        (
            m.permission_sets.iter().map(|r| &permission_sets[&r.to_string()].arn).collect(),
            m.principals.iter().map(|r| &principals[&principal_text(r)].id).collect(),
        )
    });
    let protected: BTreeSet<&AccountId> = doc.protected_accounts.iter().chain(std::iter::once(&org.management_account_id)).collect();
    let (mut undeclared, mut kept) = (Vec::new(), Vec::new());
    if let Some((sets, ids)) = &managed {
        for triple in actual.iter() {
            let (account, ps, p) = triple;
            if !sets.contains(ps) || !ids.contains(p) || declared.contains_key(triple) || !active.contains(account) || !in_scope(account) {
                continue;
            }
            if protected.contains(account) { kept.push(triple.clone()) } else { undeclared.push(triple.clone()) }
        }
    }

    let max_deletes = request.max_deletes();
    let refused = request.prune && undeclared.len() > max_deletes as usize;
    let mut warnings = Vec::new();
    if refused {
        warnings.push(format!(
            "prune refused: {} undeclared assignments inside `managed` exceed maxDeletes {max_deletes}; nothing will be deleted or created (raise --max-deletes if they are meant to go)",
            undeclared.len()
        ));
    }
    if !kept.is_empty() {
        warnings.push(format!("{} undeclared assignment(s) on the management or protected accounts are never pruned", kept.len()));
    }

    // Items per account: creates (document order), then deletes; longest chains first.
    let mut chains: BTreeMap<&AccountId, Vec<PlanItem>> = BTreeMap::new();
    let mut present = Vec::new();
    let item = |(account, _, _): &Triple, pair: u32, action: Action| PlanItem {
        account_id: account.clone(),
        account_name: names.get(account).map(|n| n.to_string()).unwrap_or_default(),
        action,
        pair,
    };
    for (triple, pair) in &declared {
        if actual.contains(triple) {
            present.push(item(triple, *pair, Action::Skip));
        } else {
            chains.entry(&triple.0).or_default().push(item(triple, *pair, Action::Create));
        }
    }
    if request.prune && !refused {
        for triple in &undeclared {
            let (ps, p) = (ps_names[&triple.1], by_id[&triple.2]);
            let pair = index_of(ps, p, &mut pairs);
            chains.entry(&triple.0).or_default().push(item(triple, pair, Action::Delete));
        }
    }
    if refused {
        chains.clear();
    }
    let mut chains: Vec<Vec<PlanItem>> = chains.into_values().collect();
    for chain in &mut chains {
        chain.sort_by_key(|i| i.action); // Create < Delete
    }
    chains.sort_by_key(|c| std::cmp::Reverse(c.len()));
    let deletes = if request.prune && !refused { undeclared.len() } else { 0 };
    let desired = DesiredPlan {
        name: request.name.clone(),
        rules: drift,
        undeclared: undeclared.iter().map(&entry).collect(),
        undeclared_count: undeclared.len(),
        protected: kept.iter().map(&entry).collect(),
        prune: PruneDecision { enabled: request.prune, max_deletes, deletes, refused },
        cost: ReadCost::default(),
        accounts: request.accounts.clone(),
        storage: None,
    };
    Reconciled { pairs, changes: chains.into_iter().flatten().collect(), present, desired, warnings }
}

/// `GROUP PlatformAdmins`, or the id where the name is unknown.
pub fn describe(p: &Principal) -> String {
    format!("{} {}", p.kind.as_str(), p.name.as_deref().unwrap_or(p.id.as_str()))
}
