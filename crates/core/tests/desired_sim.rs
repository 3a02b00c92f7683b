//! Desired state on the simulated Identity Center (paused clock): a rules document planned,
//! applied, planned again; out-of-band changes found and reconciled; prune only inside
//! `managed`, never past `maxDeletes`; saved plans; stored documents; one operation per account.

use sso_fanout_core::desired::{RulesRequest, DEFAULT_MAX_DELETES};
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::error::FanoutError;
use sso_fanout_core::ids::{AccountId, PermissionSetArn, PrincipalId};
use sso_fanout_core::model::{Action, Operation};
use sso_fanout_core::pipeline::{execute, plan_input, plan_saved, Services};
use sso_fanout_core::plan::Plan;
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::report::RunOutcome;
use sso_fanout_core::request::RunInput;
use sso_fanout_core::rules::RulesDocument;
use sso_fanout_core::store::{DocumentStore, MemoryStore, RunLog};
use sso_fanout_sim::{SimCloud, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

struct Env {
    sim: Arc<SimCloud>,
    store: Arc<MemoryStore>,
    services: Services,
}

fn env(accounts: usize, seed: u64) -> Env {
    let sim = Arc::new(SimCloud::new(SimConfig { extended_directory: true, ..SimConfig::clean(accounts, seed) }));
    let store = Arc::new(MemoryStore::new());
    let services = Services::new(sim.clone(), sim.clone(), store.clone());
    Env { sim, store, services }
}

/// Prod admins (OU-recursive, one excluded), dev power users (OU AND tag, two principals),
/// sandbox read-only (names); `managed` covers all three permission sets for these principals.
fn document() -> RulesDocument {
    RulesDocument::parse(
        r#"
version: 1
rules:
  - id: prod-admins
    permissionSet: AdministratorAccess
    principals: [{type: GROUP, name: PlatformAdmins}]
    targets: [{ous: [ou-sim0-prod0000]}]
    exclude: [{accounts: ["200000000001"]}]
  - id: dev-power
    permissionSet: PowerUserAccess
    principals: [{type: GROUP, name: Developers}, {type: USER, name: alice}]
    targets: [{ous: [ou-sim0-dev00000], tags: {team: platform}}]
  - id: sandbox-read
    permissionSet: ReadOnlyAccess
    principals: [{type: GROUP, name: Auditors}]
    targets: [{names: ["user*-sandbox"]}]
managed:
  permissionSets: [AdministratorAccess, PowerUserAccess, ReadOnlyAccess]
  principals: [{type: GROUP, name: PlatformAdmins}, {type: GROUP, name: Developers}, {type: GROUP, name: Auditors}, {type: USER, name: alice}]
protectedAccounts: ["200000000002"]
"#,
    )
    .expect("valid document")
}

fn rules(prune: bool) -> RulesRequest {
    let mut r = RulesRequest::new(document());
    r.prune = prune;
    r
}

async fn plan(env: &Env, request: &RulesRequest) -> Plan {
    plan_input(&env.services, &RunInput::Rules(request.clone()).into_dry_run(), &PlannerConfig::in_process()).await.expect("plan")
}

async fn apply(env: &Env, input: RunInput) -> (Plan, RunOutcome) {
    let plan = plan_input(&env.services, &input, &PlannerConfig::in_process()).await.expect("plan");
    let summary = execute(&env.services, &plan, EngineOptions { jitter_seed: 3, ..Default::default() }, None).await.expect("execute");
    (plan, summary.outcome)
}

fn arn(sim: &SimCloud, name: &str) -> PermissionSetArn {
    sim.resolve_permission_set_quiet(name).unwrap()
}

fn principal(name: &str) -> PrincipalId {
    sso_fanout_sim::org::principals().into_iter().find(|p| p.name.as_deref() == Some(name)).unwrap().id
}

fn account(n: u64) -> AccountId {
    format!("{:012}", 200_000_000_000u64 + n).parse().unwrap()
}

fn writes(sim: &SimCloud) -> u64 {
    let c = sim.counters();
    c.calls.get("CreateAccountAssignment").copied().unwrap_or(0) + c.calls.get("DeleteAccountAssignment").copied().unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn plan_apply_plan_again_finds_no_drift_and_reads_with_one_listing_per_principal() {
    let env = env(30, 7);
    let first = plan(&env, &rules(false)).await;
    let desired = first.desired.as_ref().unwrap();
    assert!(desired.has_drift());
    let by_rule: BTreeMap<&str, usize> = desired.rules.iter().map(|r| (r.id.as_str(), r.missing.len())).collect();
    // Prod: 12 accounts (ids 1-4, 11-14, 21-24) minus the excluded one; dev platform: 3 per ten x 2 principals.
    assert_eq!(by_rule["prod-admins"], 11, "{by_rule:?}");
    assert_eq!(by_rule["dev-power"], 9 * 2, "{by_rule:?}");
    assert_eq!(by_rule["sandbox-read"], 6, "{by_rule:?}");
    assert_eq!(writes(&env.sim), 0, "a plan writes nothing");
    // Four principals are listed, each with one call (few assignments yet).
    assert_eq!((desired.cost.principals_listed, desired.cost.listing_calls), (4, 4));

    let (applied, outcome) = apply(&env, RunInput::Rules(rules(false))).await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    assert_eq!(applied.changes(), 11 + 18 + 6);
    for item in applied.batches.iter().flat_map(|b| &b.items) {
        let key = applied.assignment_key(item);
        assert!(env.sim.has_assignment(&key.account_id, &key.permission_set_arn, &key.principal_id), "{key:?}");
    }
    let counters = env.sim.counters();
    assert_eq!(counters.violations(), 0, "{counters:?}");
    assert_eq!(counters.conflict_violations, 0, "one operation per account at a time");

    let before = env.sim.counters().calls;
    let again = plan(&env, &rules(false)).await;
    assert!(!again.desired.as_ref().unwrap().has_drift(), "{:?}", again.desired);
    assert_eq!(again.changes(), 0);
    assert_eq!(again.skipped.len(), 35, "every declared assignment is present");
    // The state is read with one listing per principal, never per account.
    let after = env.sim.counters().calls;
    let spent = |api: &str| after.get(api).copied().unwrap_or(0) - before.get(api).copied().unwrap_or(0);
    assert_eq!(spent("ListAccountAssignmentsForPrincipal"), 4);
    assert_eq!(spent("ListAccountAssignments"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_out_of_band_delete_is_drift_and_a_reconcile_of_the_stored_document_restores_it() {
    let env = env(30, 11);
    apply(&env, RunInput::Rules(rules(false))).await;
    let (ps, group) = (arn(&env.sim, "AdministratorAccess"), principal("PlatformAdmins"));
    assert!(env.sim.remove_assignment_out_of_band(&account(3), &ps, &group));
    let drift = plan(&env, &rules(false)).await;
    let missing = &drift.desired.as_ref().unwrap().rules[0].missing;
    assert_eq!(missing.iter().map(|m| m.account_id.clone()).collect::<Vec<_>>(), vec![account(3)]);

    // A schedule sends {"reconcile": "default"}: the stored document is applied again.
    let reconcile = RunInput::from_value(serde_json::json!({"reconcile": "default"})).unwrap();
    let (plan, outcome) = apply(&env, reconcile).await;
    assert_eq!((plan.changes(), outcome), (1, RunOutcome::Succeeded));
    assert!(env.sim.has_assignment(&account(3), &ps, &group));
    let stored = env.store.documents(&plan.scope).await.unwrap();
    assert_eq!(stored.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["default"]);

    let unknown = RunInput::from_value(serde_json::json!({"reconcile": "baseline"})).unwrap();
    let e = plan_input(&env.services, &unknown, &PlannerConfig::in_process()).await.unwrap_err();
    assert!(matches!(e, FanoutError::NotFound { .. }) && e.to_string().contains("baseline") && e.to_string().contains("default"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn prune_deletes_only_undeclared_assignments_inside_managed_and_never_protected_or_management() {
    let env = env(30, 5);
    apply(&env, RunInput::Rules(rules(false))).await;
    let (admin, read_only, billing) = (arn(&env.sim, "AdministratorAccess"), arn(&env.sim, "ReadOnlyAccess"), arn(&env.sim, "BillingAccess"));
    let (admins, auditors, finops) = (principal("PlatformAdmins"), principal("Auditors"), principal("FinOps"));
    let management: AccountId = sso_fanout_sim::org::MANAGEMENT_ACCOUNT_ID.parse().unwrap();
    let undeclared = [(account(1), admin.clone(), admins.clone()), (account(10), read_only.clone(), auditors.clone())];
    let outside = [(account(5), billing.clone(), admins.clone()), (account(6), admin.clone(), finops.clone())];
    let kept = [(account(2), read_only.clone(), auditors.clone()), (management.clone(), admin.clone(), admins.clone())];
    for (a, ps, p) in undeclared.iter().chain(&outside).chain(&kept) {
        assert!(env.sim.put_assignment_out_of_band(a, ps, p).unwrap());
    }

    let report = plan(&env, &rules(false)).await;
    let d = report.desired.as_ref().unwrap();
    let listed: BTreeSet<AccountId> = d.undeclared.iter().map(|e| e.account_id.clone()).collect();
    assert_eq!(listed, BTreeSet::from([account(1), account(10)]));
    assert_eq!(d.protected.len(), 2, "protected and management undeclared are reported, kept");
    assert_eq!(report.changes(), 0, "no prune unless asked");

    let mut prune = rules(true);
    prune.replace_document = true; // the stored settings change: prune on
    let (pruned, outcome) = apply(&env, RunInput::Rules(prune)).await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    assert!(pruned.batches.iter().flat_map(|b| &b.items).all(|i| i.action == Action::Delete));
    assert_eq!(pruned.changes(), 2);
    for (a, ps, p) in &undeclared {
        assert!(!env.sim.has_assignment(a, ps, p), "pruned {a}");
    }
    for (a, ps, p) in outside.iter().chain(&kept) {
        assert!(env.sim.has_assignment(a, ps, p), "outside `managed` or protected: kept in {a}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_prune_past_max_deletes_is_refused_with_nothing_changed() {
    let env = env(30, 8);
    apply(&env, RunInput::Rules(rules(false))).await;
    let (ps, group) = (arn(&env.sim, "ReadOnlyAccess"), principal("Developers"));
    // Accounts 1-22: 21 deletes, as account 2 is protected.
    for n in 1..=(DEFAULT_MAX_DELETES as u64 + 2) {
        env.sim.put_assignment_out_of_band(&account(n), &ps, &group).unwrap();
    }
    let before = writes(&env.sim);
    let e = plan_input(&env.services, &RunInput::Rules(rules(true)), &PlannerConfig::in_process()).await.unwrap_err();
    assert!(e.to_string().contains("maxDeletes") && e.to_string().contains("21"), "{e}");
    assert_eq!(writes(&env.sim), before, "refused before any write");
    assert!(env.store.documents(&env.sim.scope()).await.unwrap().iter().all(|d| !d.request.prune), "the refused document is not stored");

    // The plan shows the refusal; a higher limit lets it run.
    let shown = plan(&env, &rules(true)).await;
    assert!(shown.desired.as_ref().unwrap().prune.refused && shown.changes() == 0);
    let mut allowed = rules(true);
    allowed.max_deletes = Some(25);
    allowed.replace_document = true;
    let (plan, outcome) = apply(&env, RunInput::Rules(allowed)).await;
    assert_eq!((plan.changes(), outcome), (21, RunOutcome::Succeeded));
}

#[tokio::test(start_paused = true)]
async fn creates_run_before_deletes_and_one_account_never_has_two_operations_at_once() {
    let env = env(30, 13);
    // Account 3 moves from "needs admin" to also holding undeclared access: a create and a
    // delete in one account.
    let (read_only, auditors) = (arn(&env.sim, "ReadOnlyAccess"), principal("Auditors"));
    env.sim.put_assignment_out_of_band(&account(3), &read_only, &auditors).unwrap();
    let (plan, outcome) = apply(&env, RunInput::Rules(rules(true))).await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    let chain: Vec<Action> = plan.batches.iter().flat_map(|b| &b.items).filter(|i| i.account_id == account(3)).map(|i| i.action).collect();
    assert_eq!(chain, [Action::Create, Action::Delete]);
    let mut by_account: BTreeMap<AccountId, Vec<(f64, f64, Operation)>> = BTreeMap::new();
    for op in env.sim.operations() {
        by_account.entry(op.account_id.clone()).or_default().push((op.accepted_s, op.done_s, op.operation));
    }
    for (account, mut ops) in by_account {
        ops.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in ops.windows(2) {
            assert!(pair[1].0 >= pair[0].1, "{account}: an operation started before the previous one ended: {ops:?}");
        }
    }
    let ops3: Vec<Operation> = env.sim.operations().into_iter().filter(|o| o.account_id == account(3)).map(|o| o.operation).collect();
    assert_eq!(ops3, [Operation::Assign, Operation::Revoke], "the create first");
}

#[tokio::test(start_paused = true)]
async fn a_saved_plan_applies_exactly_what_was_reviewed_or_is_refused_when_the_state_moved() {
    let env = env(30, 17);
    let reviewed = plan(&env, &rules(false)).await;
    let saved: Plan = serde_json::from_str(&serde_json::to_string(&reviewed).unwrap()).unwrap();
    assert_eq!(saved, reviewed, "a plan file reads back as written");

    // Someone assigns one of the declared assignments in the console meanwhile.
    let (ps, group) = (arn(&env.sim, "AdministratorAccess"), principal("PlatformAdmins"));
    env.sim.put_assignment_out_of_band(&account(4), &ps, &group).unwrap();
    let e = plan_saved(&env.services, &saved, &PlannerConfig::in_process()).await.unwrap_err();
    assert!(e.to_string().contains("1 of its changes are no longer needed"), "{e}");
    assert_eq!(writes(&env.sim), 0);

    env.sim.remove_assignment_out_of_band(&account(4), &ps, &group);
    let plan = plan_saved(&env.services, &saved, &PlannerConfig::in_process()).await.unwrap();
    assert_ne!(plan.run_id, saved.run_id);
    assert_eq!(sso_fanout_core::desired::change_set(&plan), sso_fanout_core::desired::change_set(&saved));
    let summary = execute(&env.services, &plan, EngineOptions::default(), None).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_restricted_to_one_account_touches_only_it_and_unknown_ids_are_refused() {
    let env = env(30, 19);
    apply(&env, RunInput::Rules(rules(false))).await;
    let (ps, group) = (arn(&env.sim, "AdministratorAccess"), principal("PlatformAdmins"));
    env.sim.remove_assignment_out_of_band(&account(3), &ps, &group);
    env.sim.remove_assignment_out_of_band(&account(4), &ps, &group);
    let only = RunInput::from_value(serde_json::json!({"reconcile": "default", "accounts": ["200000000004"]})).unwrap();
    let (plan, _) = apply(&env, only).await;
    assert_eq!(plan.changes(), 1);
    assert!(env.sim.has_assignment(&account(4), &ps, &group));
    assert!(!env.sim.has_assignment(&account(3), &ps, &group), "outside the restriction: left for the next full reconcile");

    let unknown = RunInput::from_value(serde_json::json!({"reconcile": "default", "accounts": ["299999999999"]})).unwrap();
    let e = plan_input(&env.services, &unknown, &PlannerConfig::in_process()).await.unwrap_err();
    assert!(e.to_string().contains("accounts[0]") && e.to_string().contains("299999999999"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn unknown_names_are_refused_naming_the_rule_before_any_write() {
    let env = env(30, 23);
    let mut doc = serde_json::to_value(document()).unwrap();
    doc["rules"][1]["principals"][1]["name"] = "alicia".into();
    let input = RunInput::from_value(serde_json::json!({"rules": doc})).unwrap();
    let e = plan_input(&env.services, &input, &PlannerConfig::in_process()).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("rules[1] (dev-power).principals[1]") && text.contains("alicia"), "{text}");
    let mut doc = serde_json::to_value(document()).unwrap();
    doc["managed"]["permissionSets"][0] = "AdminAccess".into();
    let input = RunInput::from_value(serde_json::json!({"rules": doc})).unwrap();
    let e = plan_input(&env.services, &input, &PlannerConfig::in_process()).await.unwrap_err();
    assert!(e.to_string().contains("managed.permissionSets[0]"), "{e}");
    assert_eq!(writes(&env.sim), 0);
    assert!(env.store.documents(&env.sim.scope()).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_large_dry_run_preview_fits_the_state_machine_payload_with_whole_counts() {
    use sso_fanout_core::contract::{PlanView, PlannerOutput, PREVIEW_MAX_BYTES};
    let env = env(2000, 29);
    let mut request = rules(false);
    request.rules = RulesDocument::parse(
        "version: 1\nrules:\n  - id: everyone-reads\n    permissionSet: ReadOnlyAccess\n    principals: [{type: GROUP, name: Auditors}, {type: GROUP, name: Developers}, {type: USER, name: bob}]\n    targets: [{root: true}]\n",
    )
    .unwrap();
    let plan = plan(&env, &request).await;
    assert_eq!(plan.changes(), 3 * 2000);
    let PlanView::Preview(preview) = PlannerOutput::of(&plan).plan else { panic!("a dry run returns the preview") };
    let size = serde_json::to_vec(&preview).unwrap().len();
    assert!(size <= PREVIEW_MAX_BYTES, "{size} bytes");
    assert!(preview.truncated.is_some());
    assert_eq!(preview.creates, 6000, "counts stay whole");
    let d = preview.desired.as_ref().unwrap();
    assert_eq!(d.rules[0].missing_count, 6000);
    assert!(d.rules[0].missing.len() < 6000 && preview.accounts.len() < 6000);
    // A small plan is not cut.
    let env = self::env(30, 29);
    let small = plan_input(&env.services, &RunInput::Rules(rules(false)).into_dry_run(), &PlannerConfig::in_process()).await.unwrap();
    let PlanView::Preview(preview) = PlannerOutput::of(&small).plan else { panic!() };
    assert!(preview.truncated.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_document_the_organization_refuses_reads_no_assignment_state() {
    let env = env(30, 31);
    let mut doc = serde_json::to_value(document()).unwrap();
    doc["rules"][2]["targets"][0] = serde_json::json!({"ous": ["ou-sim0-zzzzzzzz"]});
    let input = RunInput::from_value(serde_json::json!({"rules": doc})).unwrap();
    let e = plan_input(&env.services, &input, &PlannerConfig::in_process()).await.unwrap_err();
    assert!(e.to_string().contains("rules[2] (sandbox-read).targets[0].ous[0]"), "{e}");
    let calls = env.sim.counters().calls;
    assert_eq!(calls.get("ListAccountAssignmentsForPrincipal"), None, "{calls:?}");
    assert_eq!(writes(&env.sim), 0);
}

#[tokio::test(start_paused = true)]
async fn a_moved_account_is_reconciled_from_a_targeted_read_creates_before_deletes() {
    let env = env(30, 37);
    let mut request = rules(true);
    request.name = "baseline".into();
    apply(&env, RunInput::Rules(request)).await;
    // dev-platform-005 moves to Prod/Payments (MoveAccount): it should lose Developers' and
    // alice's PowerUserAccess and get PlatformAdmins' AdministratorAccess.
    let moved = account(5);
    env.sim.change_account_out_of_band(&moved, Some("ou-sim0-prodpaym"), None).unwrap();
    let org_calls = env.sim.counters().org_calls;
    let event = RunInput::from_value(serde_json::json!({"reconcile": "baseline", "accounts": ["200000000005"]})).unwrap();
    let (plan, outcome) = apply(&env, event).await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    let actions: Vec<Action> = plan.batches.iter().flat_map(|b| &b.items).map(|i| i.action).collect();
    assert_eq!(actions, [Action::Create, Action::Delete, Action::Delete], "creates first: the account never loses access in between");
    assert!(env.sim.has_assignment(&moved, &arn(&env.sim, "AdministratorAccess"), &principal("PlatformAdmins")));
    assert!(!env.sim.has_assignment(&moved, &arn(&env.sim, "PowerUserAccess"), &principal("Developers")));
    assert!(!env.sim.has_assignment(&moved, &arn(&env.sim, "PowerUserAccess"), &principal("alice")));
    // The moved account was read again by itself, not the whole organization.
    let spent = env.sim.counters().org_calls - org_calls;
    assert!(spent <= 10, "{spent} Organizations calls for one account");
    let ops: Vec<Operation> = env.sim.operations().into_iter().filter(|o| o.account_id == moved).map(|o| o.operation).collect();
    assert_eq!(ops[ops.len() - 3..], [Operation::Assign, Operation::Revoke, Operation::Revoke]);
    // The account cache learned the move, so a later plan from the cache sees it too.
    let cached = sso_fanout_core::store::AccountCache::cached_org(env.store.as_ref(), &env.sim.scope()).await.unwrap().unwrap();
    let now = cached.accounts.iter().find(|a| a.id == moved).unwrap();
    assert_eq!(now.ou_path.last().map(String::as_str), Some("ou-sim0-prodpaym"));

    // A tag added to a sandbox account that no rule selects by tag changes nothing.
    env.sim.change_account_out_of_band(&account(8), None, Some(("team", "payments"))).unwrap();
    let event = RunInput::from_value(serde_json::json!({"reconcile": "baseline", "accounts": ["200000000008"]})).unwrap();
    let (plan, _) = apply(&env, event).await;
    assert_eq!(plan.changes(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_account_whose_create_fails_keeps_its_old_access() {
    // Every operation of this instance fails after provisioning (as an IAM role quota would).
    let sim = Arc::new(SimCloud::new(SimConfig {
        extended_directory: true,
        faults: sso_fanout_sim::Faults { late_failure_rate: 1.0, ..Default::default() },
        ..SimConfig::clean(30, 41)
    }));
    let store = Arc::new(MemoryStore::new());
    let env = Env { services: Services::new(sim.clone(), sim.clone(), store.clone()), sim, store };
    let (read_only, auditors) = (arn(&env.sim, "ReadOnlyAccess"), principal("Auditors"));
    // Account 3 (Prod) lacks its admin grant and holds an undeclared one: a create, then a delete.
    env.sim.put_assignment_out_of_band(&account(3), &read_only, &auditors).unwrap();
    let (plan, outcome) = apply(&env, RunInput::Rules(rules(true))).await;
    assert_eq!(outcome, RunOutcome::Incomplete);
    let summary = env.store.results(&plan.run_id).await.unwrap();
    let in_3: Vec<_> = summary.iter().filter(|r| r.account_id == account(3)).collect();
    assert_eq!(in_3.len(), 2, "{in_3:?}");
    let delete = in_3.iter().find(|r| r.action == Action::Delete).unwrap();
    assert!(delete.reason.as_deref().unwrap().contains("a create in this account did not succeed"), "{delete:?}");
    assert!(env.sim.has_assignment(&account(3), &read_only, &auditors), "the old access stays");
    assert!(env.sim.operations().iter().all(|o| !(o.account_id == account(3) && o.operation == Operation::Revoke)), "no delete was sent");
}

#[tokio::test(start_paused = true)]
async fn one_off_overrides_never_become_the_stored_settings() {
    let env = env(30, 43);
    apply(&env, RunInput::Rules(rules(false))).await;
    let stored = || async { env.store.document(&env.sim.scope(), "default").await.unwrap().unwrap().request };
    let before = stored().await;
    assert!(!before.prune);
    // A reconcile with overrides, applied directly and through a saved plan.
    let overridden = RunInput::from_value(serde_json::json!({"reconcile": "default", "prune": true, "maxDeletes": 99})).unwrap();
    apply(&env, overridden.clone()).await;
    let reviewed = plan_input(&env.services, &overridden.into_dry_run(), &PlannerConfig::in_process()).await.unwrap();
    plan_saved(&env.services, &reviewed, &PlannerConfig::in_process()).await.unwrap();
    // A rules run restricted to one account.
    let mut restricted = rules(true);
    restricted.accounts = vec![account(3)];
    apply(&env, RunInput::Rules(restricted)).await;
    assert_eq!(stored().await, before, "the stored document keeps its own settings");
}

#[tokio::test(start_paused = true)]
async fn a_rules_run_split_into_batches_keeps_each_account_in_one_batch_and_converges() {
    // As the deployed planner sizes it: a short worker budget makes many batches, two at a time
    // through the shared quota ledger.
    let env = env(200, 47);
    let ledger = sso_fanout_core::quota::MemoryInstance::new();
    let services = env.services.clone().with_quota(ledger.process());
    let config = PlannerConfig { worker_time_budget_s: 120, shared_quota: true, ..PlannerConfig::default() };
    let plan = plan_input(&services, &RunInput::Rules(rules(true)), &config).await.unwrap();
    assert!(plan.batches.len() >= 3, "{} batches", plan.batches.len());
    let mut batch_of: BTreeMap<AccountId, u32> = BTreeMap::new();
    for b in &plan.batches {
        for i in &b.items {
            assert_eq!(*batch_of.entry(i.account_id.clone()).or_insert(b.index), b.index, "{} split across batches", i.account_id);
        }
    }
    let summary = execute(&services, &plan, EngineOptions { jitter_seed: 5, ..Default::default() }, None).await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Succeeded, "{:?}", summary.failures);
    let counters = env.sim.counters();
    assert_eq!((counters.violations(), counters.conflict_violations), (0, 0), "{counters:?}");
    let again = plan_input(&services, &RunInput::Rules(rules(true)).into_dry_run(), &config).await.unwrap();
    assert!(!again.desired.unwrap().has_drift());
}

#[tokio::test(start_paused = true)]
async fn the_example_document_converges_on_the_simulated_organization() {
    // What `sso-fanout run --sim 29 --rules examples/rules-sim.yaml --prune` plans and runs.
    let sim = Arc::new(SimCloud::new(SimConfig::new(29, 1)));
    let store = Arc::new(MemoryStore::new());
    let env = Env { services: Services::new(sim.clone(), sim.clone(), store.clone()), sim, store };
    let mut request = RulesRequest::new(RulesDocument::parse(sso_fanout_core::rules::EXAMPLE_YAML).unwrap());
    request.prune = true;
    let (applied, outcome) = apply(&env, RunInput::Rules(request.clone())).await;
    assert!(applied.changes() > 0);
    assert_eq!(outcome, RunOutcome::Succeeded, "every change of the example lands");
    let again = plan(&env, &request).await;
    assert!(!again.desired.as_ref().unwrap().has_drift(), "{:?}", again.desired);
    assert_eq!(again.changes(), 0);
}

#[tokio::test(start_paused = true)]
async fn applying_a_document_never_replaces_a_different_one_stored_under_its_name_unless_asked() {
    use sso_fanout_core::desired::StorageState;
    let env = env(30, 11);
    let (first, outcome) = apply(&env, RunInput::Rules(rules(false))).await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    assert_eq!(first.desired.as_ref().unwrap().storage.as_ref().unwrap().state, StorageState::New);
    let (_, scope) = sso_fanout_core::planner::scope(env.sim.as_ref(), env.sim.as_ref()).await.unwrap();
    let stored = |store: Arc<MemoryStore>, scope: sso_fanout_core::model::Scope| async move { store.document(&scope, "default").await.unwrap().unwrap() };

    // The same document again: unchanged, applied.
    let same = plan(&env, &rules(false)).await;
    assert_eq!(same.desired.as_ref().unwrap().storage.as_ref().unwrap().state, StorageState::Unchanged);

    // Another document under the same name: the plan says so, applying it is refused.
    let mut other = rules(false);
    other.rules.rules.truncate(1);
    let planned = plan(&env, &other).await;
    let storage = planned.desired.as_ref().unwrap().storage.clone().unwrap();
    assert_eq!(storage.state, StorageState::Replaces);
    assert_eq!(storage.difference.as_deref(), Some("a different document"));
    let mut pruning = rules(true);
    pruning.max_deletes = Some(3);
    let settings = plan(&env, &pruning).await.desired.unwrap().storage.unwrap();
    assert_eq!(settings.difference.as_deref(), Some("the same document with other settings (prune off -> on, maxDeletes 3)"));
    assert_eq!(storage.replaces.as_ref().map(|(run, _)| run.as_str()), Some(first.run_id.as_str()));
    let before = writes(&env.sim);
    let refused = plan_input(&env.services, &RunInput::Rules(other.clone()), &PlannerConfig::in_process()).await.unwrap_err();
    match &refused {
        FanoutError::InvalidRequest { field, expected, .. } => {
            assert_eq!(field, "name");
            assert!(expected.contains("--replace-document") && expected.contains(&first.run_id), "{expected}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(writes(&env.sim), before, "nothing was changed");
    assert_eq!(stored(env.store.clone(), scope.clone()).await.request.rules, rules(false).rules, "the stored document is kept");

    // Asked to, it replaces it.
    other.replace_document = true;
    let (replaced, _) = apply(&env, RunInput::Rules(other.clone())).await;
    assert_eq!(stored(env.store.clone(), scope.clone()).await.run_id, replaced.run_id);
    assert_eq!(stored(env.store.clone(), scope).await.request.rules, other.rules);
}
