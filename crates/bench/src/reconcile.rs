//! The `reconcile` scenario: a rules document of 40 rules (8 permission sets, 12 principals;
//! OU, OU-recursive, tag, name and root selectors with excludes) over a simulated organization
//! whose assignments partly exist already and partly are undeclared inside `managed`, applied
//! with `prune`. Several operations per account must run one after another, so the bound is the
//! usual one (work / slots, the request rate, the slowest operation) or the longest per-account
//! chain, whichever is larger.

use super::*;
use sso_fanout_core::desired::RulesRequest;
use sso_fanout_core::model::Action;
use sso_fanout_core::pipeline::plan_input;
use sso_fanout_core::request::RunInput;
use sso_fanout_core::rules::RulesDocument;
use sso_fanout_sim::org::{GROUPS, OUS, PERMISSION_SETS, USERS};

/// Rules in the generated document.
pub const RULES: usize = 40;

/// The generated document: rule `i` gives permission set `i % 8` to one group (and every fifth
/// rule also to a user) in the accounts one selector shape picks.
pub fn document(seed: u64) -> Result<RulesDocument> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x7275_6c65);
    let envs = ["prod", "dev", "sandbox", "shared"];
    let teams = ["payments", "search", "platform"];
    let names = ["prod-payments-*", "prod-search-*", "dev-platform-*", "user*-sandbox", "shared-services-*"];
    let mut rules = Vec::with_capacity(RULES);
    for i in 0..RULES {
        let group = GROUPS[(i * 3 + rng.random_range(0..GROUPS.len())) % GROUPS.len()];
        let mut principals = vec![serde_json::json!({"type": "GROUP", "name": group})];
        if i % 5 == 0 {
            principals.push(serde_json::json!({"type": "USER", "name": USERS[i / 5 % USERS.len()]}));
        }
        let ou = OUS[rng.random_range(0..OUS.len())].0;
        let (targets, exclude) = match i % 6 {
            0 => (serde_json::json!([{"ous": [ou]}]), None),
            1 => (serde_json::json!([{"tags": {"env": envs[rng.random_range(0..envs.len())]}}]), None),
            2 => (serde_json::json!([{"names": [names[rng.random_range(0..names.len())]]}]), None),
            3 => (
                serde_json::json!([{"ous": ["ou-sim0-prod0000"], "tags": {"team": teams[rng.random_range(0..2)]}}]),
                Some(serde_json::json!([{"tags": {"cost-center": format!("cc-{}", 100 + rng.random_range(0..7))}}])),
            ),
            4 => (serde_json::json!([{"ous": [ou], "recursive": false}, {"names": [names[rng.random_range(0..names.len())]]}]), None),
            _ => (
                serde_json::json!([{"tags": {"team": teams[rng.random_range(0..teams.len())]}}]),
                Some(serde_json::json!([{"names": ["user*-sandbox"]}])),
            ),
        };
        let mut rule = serde_json::json!({
            "id": format!("rule-{i:02}"),
            "permissionSet": PERMISSION_SETS[i % PERMISSION_SETS.len()],
            "principals": principals,
            "targets": targets,
        });
        if let Some(exclude) = exclude {
            rule["exclude"] = exclude;
        }
        rules.push(rule);
    }
    let principals: Vec<serde_json::Value> = GROUPS
        .iter()
        .map(|g| serde_json::json!({"type": "GROUP", "name": g}))
        .chain(USERS.iter().map(|u| serde_json::json!({"type": "USER", "name": u})))
        .collect();
    RulesDocument::from_value(serde_json::json!({
        "version": 1,
        "rules": rules,
        "managed": {"permissionSets": PERMISSION_SETS, "principals": principals},
    }))
}

/// Prepares the organization: a share of the declared assignments exists already, and a share
/// of accounts holds managed assignments no rule declares (the prune's work).
fn seed_state(sim: &SimCloud, declared: &[(AccountId, PermissionSetArn, PrincipalId)], seed: u64) -> Result<()> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x7374_6174);
    for (account, ps, principal) in declared {
        if rng.random_bool(0.3) {
            sim.put_assignment_out_of_band(account, ps, principal)?;
        }
    }
    let sets = sso_fanout_sim::org::permission_sets();
    let principals = sso_fanout_sim::org::principals();
    let declared: BTreeSet<_> = declared.iter().cloned().collect();
    for account in targets(sim) {
        if !rng.random_bool(0.25) {
            continue;
        }
        for _ in 0..rng.random_range(1..=3) {
            let ps = &sets[rng.random_range(0..sets.len())].arn;
            let principal = &principals[rng.random_range(0..principals.len())].id;
            if !declared.contains(&(account.clone(), ps.clone(), principal.clone())) {
                sim.put_assignment_out_of_band(&account, ps, principal)?;
            }
        }
    }
    Ok(())
}

/// Applies the generated document with `prune` on a simulated organization of `accounts`.
pub fn run_reconcile(accounts: usize, options: &BenchOptions) -> Result<BenchRow> {
    paused_runtime().block_on(async {
        // Eight permission sets and twelve principals: the extended directory.
        let sim = Arc::new(SimCloud::new(SimConfig { extended_directory: true, ..sim_for(accounts, options).config().clone() }));
        let store = Arc::new(MemoryStore::new());
        prime_account_cache(&sim, store.as_ref()).await?;
        let instance = MemoryInstance::new();
        let services = Services::new(sim.clone(), sim.clone(), store.clone()).with_quota(instance.process());
        let config = PlannerConfig::in_process();
        let mut request = RulesRequest::new(document(options.seed)?);
        request.prune = true;
        request.max_deletes = Some(u32::MAX);
        request.tuning = options.tuning.clone();

        // What the document declares, from a dry run before anything exists.
        let preview = plan_input(&services, &RunInput::Rules(request.clone()).into_dry_run(), &config).await?;
        let declared: Vec<_> = preview.batches.iter().flat_map(|b| &b.items).map(|i| key_of(&preview, i)).collect();
        seed_state(&sim, &declared, options.seed)?;

        let (t0, t0_sim) = (Instant::now(), sim.elapsed_s());
        let plan = plan_input(&services, &RunInput::Rules(request.clone()), &config).await?;
        let engine = EngineOptions { jitter_seed: options.seed, ..Default::default() };
        let summary = execute(&services, &plan, engine.clone(), None).await?;
        let measured = measure(&sim, t0, t0_sim);

        // Truth: every create now held, every delete gone.
        let results = store.results(&plan.run_id).await?;
        let items: BTreeMap<String, &sso_fanout_core::plan::PlanItem> =
            plan.batches.iter().flat_map(|b| &b.items).map(|i| (sso_fanout_core::model::result_key(&i.account_id, i.pair), i)).collect();
        let false_successes = results
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded)
            .filter(|r| {
                let Some(item) = items.get(&r.key()) else { return false };
                let (a, ps, p) = key_of(&plan, item);
                sim.has_assignment(&a, &ps, &p) != (item.action == Action::Create)
            })
            .count();
        let failed = summary.counts.failed + summary.counts.timed_out + summary.counts.not_started + summary.counts.missing;
        let mut row = row(accounts, options, "sso-fanout", &sim, &targets(&sim), measured, failed, false_successes);
        let (bound_s, greedy_s) = chain_references(&sim, &plan);
        row.scenario = "reconcile".into();
        row.bound_s = bound_s;
        row.greedy_s = greedy_s;
        row.ratio = row.makespan_s / bound_s;
        row.estimate_s = Some(plan.estimate.seconds);
        row.dynamo_writes_per_change = Some(writes_per_change(&instance.ledger, plan.changes()));
        row.changes = Some(plan.changes());
        row.deletes = Some(plan.batches.iter().flat_map(|b| &b.items).filter(|i| i.action == Action::Delete).count());
        row.longest_chain = Some(sso_fanout_core::planner::account_chains(&plan.batches.iter().flat_map(|b| b.items.clone()).collect::<Vec<_>>()).iter().map(Vec::len).max().unwrap_or(0));

        // Planned again: no drift, and what reading the state costs.
        let calls = sim.counters().sso_admin_calls();
        let again = plan_input(&services, &RunInput::Rules(request).into_dry_run(), &config).await?;
        row.rerun_api_calls = Some(sim.counters().sso_admin_calls() - calls);
        // The changes a second plan still finds (0 unless some failed): shown as re-run writes.
        row.rerun_writes = Some(again.changes() as u64);
        Ok(row)
    })
}

fn key_of(plan: &sso_fanout_core::plan::Plan, item: &sso_fanout_core::plan::PlanItem) -> (AccountId, PermissionSetArn, PrincipalId) {
    let key = plan.assignment_key(item);
    (key.account_id, key.permission_set_arn, key.principal_id)
}

/// (bound, greedy reference) for the plan's changes: the bound also counts the longest chain of
/// one account's operations, which run one after another.
fn chain_references(sim: &SimCloud, plan: &sso_fanout_core::plan::Plan) -> (f64, f64) {
    let items: Vec<&sso_fanout_core::plan::PlanItem> = plan.batches.iter().flat_map(|b| &b.items).collect();
    let latency = |i: &sso_fanout_core::plan::PlanItem| {
        let op = if i.action == Action::Delete { Operation::Revoke } else { Operation::Assign };
        sim.provisioning_latency(&i.account_id, op).as_secs_f64()
    };
    let latencies: Vec<f64> = items.iter().map(|i| latency(i)).collect();
    let mut chains: BTreeMap<&AccountId, f64> = BTreeMap::new();
    for i in &items {
        *chains.entry(&i.account_id).or_default() += latency(i);
    }
    let longest = chains.values().cloned().fold(0.0, f64::max);
    let limits = &sim.config().limits;
    (makespan_bound(&latencies, limits, 2.0).max(longest), greedy_makespan(&latencies, limits.max_outstanding as usize))
}
