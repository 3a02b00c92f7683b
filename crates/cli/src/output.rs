//! Human output: aligned tables and the plan / summary views. JSON output is the serde form of
//! the same structs, printed by `main`.

use sso_fanout_bench::BenchRow;
use sso_fanout_core::model::{Action, OrgSnapshot};
use sso_fanout_core::clock::compact_utc;
use sso_fanout_core::plan::Plan;
use sso_fanout_core::report::{RunOutcome, RunSummary};
use sso_fanout_core::store::RunRecord;
use std::fmt::Write;

/// Left-aligned columns, two spaces apart; numeric-looking cells right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || ".-x%".contains(c));
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| if numeric(c) { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect();
        let _ = writeln!(out, "  {}", parts.join("  ").trim_end());
    };
    line(headers.to_vec(), &mut out);
    line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `1 account`, `29 accounts`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

pub fn secs(s: f64) -> String {
    if s >= 120.0 { format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64) } else { format!("{s:.1}s") }
}

pub fn plan_header(plan: &Plan) -> String {
    let mut out = String::new();
    let p = &plan.principal;
    let creates = plan.batches.iter().flat_map(|b| &b.items).filter(|i| i.action == Action::Create).count();
    let deletes = plan.changes() - creates;
    let verb = if plan.request.dry_run() { "Plan" } else { "Run" };
    match &plan.desired {
        Some(d) => {
            let _ = writeln!(out, "{verb} {} reconcile \"{}\": {} rules, {} (permission set, principal) pairs", plan.run_id, d.name, d.rules.len(), plan.all_pairs().len());
            let _ = writeln!(
                out,
                "  changes   {creates} create, {deletes} delete; {} assignments already as declared",
                plan.skipped.len()
            );
            if let Some(storage) = &d.storage {
                let _ = writeln!(out, "  document  {}", storage_text(storage));
            }
        }
        None => {
            let _ = writeln!(
                out,
                "{verb} {} {} {} {}",
                plan.run_id,
                plan.operation.as_str(),
                plan.permission_set.name,
                format_args!("{} {}", p.kind.as_str().to_lowercase(), p.name.as_deref().unwrap_or(&p.id)),
            );
            let _ = writeln!(
                out,
                "  targets   {}: {creates} create, {deletes} delete, {} already as requested (skip)",
                count(plan.target_count(), "account"),
                plan.skipped.len()
            );
        }
    }
    let t = &plan.tier;
    let _ = writeln!(
        out,
        "  tier      {} ({} accounts in the organization): asks {} at once -> {} in flight, {:.0} req/s",
        t.name, t.org_accounts, t.requested_concurrency, t.in_flight, t.requests_per_second
    );
    let _ = writeln!(out, "  binding   {}", t.binding_text);
    let _ = writeln!(
        out,
        "  batches   {} of up to {}, {} at a time ({})",
        plan.batches.len(),
        count(plan.batches.iter().map(|b| b.items.len()).max().unwrap_or(0), "change"),
        plan.map_concurrency,
        plan.map_reason
    );
    let l = &plan.estimate.latency;
    let source = if l.samples > 0 { format!("learned from {} past operations", l.samples) } else { "default assumption".into() };
    let _ = writeln!(
        out,
        "  estimate  {} for {} changes (provisioning median {:.1}s, p99 {:.1}s: {source})",
        secs(plan.estimate.seconds),
        plan.estimate.changes,
        l.median_s,
        l.p99_s
    );
    for w in &plan.warnings {
        let _ = writeln!(out, "  warning   {w}");
    }
    out
}

/// Where applying stores the document, and whether that replaces another.
fn storage_text(s: &sso_fanout_core::desired::DocumentStorage) -> String {
    use sso_fanout_core::desired::StorageState;
    match (&s.state, &s.replaces) {
        (StorageState::Replaces, Some((run_id, at))) => format!(
            "stored as `{}` when applied, REPLACING {} stored there by run {run_id} at {} (refused unless --replace-document; or give another --document-name)",
            s.name,
            s.difference.as_deref().unwrap_or("a different document"),
            compact_utc(*at)
        ),
        (StorageState::Unchanged, _) => format!("stored as `{}` when applied (the same document is stored there now)", s.name),
        _ => format!("stored as `{}` when applied (nothing is stored under that name yet)", s.name),
    }
}

pub fn plan_table(plan: &Plan, all: bool) -> String {
    const SHOWN: usize = 40;
    if plan.desired.is_some() {
        return drift_report(plan, all);
    }
    let items = plan.items();
    let rows: Vec<Vec<String>> = items
        .iter()
        .take(if all { usize::MAX } else { SHOWN })
        .map(|i| vec![i.account_id.to_string(), i.account_name.clone(), i.action.as_str().to_string()])
        .collect();
    let mut out = table(&["ACCOUNT", "NAME", "ACTION"], &rows);
    if !all && items.len() > SHOWN {
        let _ = writeln!(out, "  ... and {} more (--all lists every account; --output json for scripts)", items.len() - SHOWN);
    }
    out
}

/// One stored document in `documents --output json`.
pub fn document_listing(d: &sso_fanout_core::desired::StoredDocument) -> serde_json::Value {
    serde_json::json!({
        "name": d.name,
        "storedAt": d.stored_at,
        "runId": d.run_id,
        "rules": d.request.rules.rules.len(),
        "prune": d.request.prune,
        "maxDeletes": d.request.max_deletes(),
    })
}

/// The stored documents of one scope as a table.
pub fn documents_table(documents: &[sso_fanout_core::desired::StoredDocument], store: &str, scope: &sso_fanout_core::model::Scope) -> String {
    if documents.is_empty() {
        return format!(
            "no rules document stored in {store} for organization {} yet: `sso-fanout run --rules FILE --document-name NAME` stores one\n",
            scope.organization_id
        );
    }
    let rows: Vec<Vec<String>> = documents
        .iter()
        .map(|d| {
            let prune = if d.request.prune { format!("yes (max {})", d.request.max_deletes()) } else { "no".into() };
            vec![d.name.clone(), compact_utc(d.stored_at), d.request.rules.rules.len().to_string(), prune, d.run_id.clone()]
        })
        .collect();
    table(&["NAME", "STORED", "RULES", "PRUNE", "APPLIED BY RUN"], &rows)
}

/// A rules plan's drift report: per rule, then undeclared, then the changes in run order.
pub fn drift_report(plan: &Plan, all: bool) -> String {
    const SHOWN: usize = 40;
    let Some(d) = &plan.desired else { return String::new() };
    let rows: Vec<Vec<String>> = d
        .rules
        .iter()
        .map(|r| vec![r.id.clone(), r.permission_set.clone(), r.principals.join(", "), r.accounts.to_string(), r.present.to_string(), r.missing_count.to_string()])
        .collect();
    let mut out = table(&["RULE", "PERMISSION SET", "PRINCIPALS", "ACCOUNTS", "PRESENT", "MISSING"], &rows);
    let managed = if d.undeclared_count == 0 && d.protected.is_empty() { "none".to_string() } else { format!("{} (+{} on protected accounts, kept)", d.undeclared_count, d.protected.len()) };
    let _ = writeln!(out, "\n  undeclared inside `managed`: {managed}");
    let p = &d.prune;
    let prune = match (p.enabled, p.refused) {
        (false, _) => format!("off (--prune deletes the undeclared; at most {} deletes)", p.max_deletes),
        (true, true) => format!("REFUSED: {} deletes exceed maxDeletes {}; nothing will run", d.undeclared_count, p.max_deletes),
        (true, false) => format!("{} deletes (maxDeletes {})", p.deletes, p.max_deletes),
    };
    let _ = writeln!(out, "  prune: {prune}");
    let c = &d.cost;
    let _ = writeln!(
        out,
        "  read:  {} ListAccountAssignmentsForPrincipal calls for {} principals, {} name look-ups",
        c.listing_calls, c.principals_listed, c.lookups
    );
    let verdict = if d.has_drift() { "drift: the live state differs from the document" } else { "no drift: the live state is as declared" };
    let _ = writeln!(out, "  {verdict}\n");
    let changes: Vec<&sso_fanout_core::plan::PlanItem> = plan.batches.iter().flat_map(|b| &b.items).collect();
    if changes.is_empty() {
        return out;
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .take(if all { usize::MAX } else { SHOWN })
        .map(|i| {
            let (ps, principal) = plan.pair(i.pair);
            vec![i.account_id.to_string(), i.account_name.clone(), i.action.as_str().to_string(), ps.name.clone(), sso_fanout_core::desired::describe(principal)]
        })
        .collect();
    out.push_str(&table(&["ACCOUNT", "NAME", "ACTION", "PERMISSION SET", "PRINCIPAL"], &rows));
    if !all && changes.len() > SHOWN {
        let _ = writeln!(out, "  ... and {} more (--all lists every change; --output json for scripts)", changes.len() - SHOWN);
    }
    out
}

/// The drift report as Markdown, for a CI job summary or a pull-request comment.
pub fn drift_markdown(plan: &Plan) -> String {
    const SHOWN: usize = 50;
    let mut out = String::new();
    let Some(d) = &plan.desired else { return out };
    let creates = plan.batches.iter().flat_map(|b| &b.items).filter(|i| i.action == Action::Create).count();
    let deletes = plan.changes() - creates;
    let verdict = if d.has_drift() { "Drift" } else { "No drift" };
    let _ = writeln!(out, "### sso-fanout plan `{}`: {verdict}\n", d.name);
    let _ = writeln!(
        out,
        "**{creates}** to create, **{deletes}** to delete, {} already as declared; estimate {} ({} in flight, {:.0} req/s).\n",
        plan.skipped.len(),
        secs(plan.estimate.seconds),
        plan.tier.in_flight,
        plan.tier.requests_per_second
    );
    if let Some(storage) = &d.storage {
        let _ = writeln!(out, "Document: {}.\n", storage_text(storage));
    }
    let _ = writeln!(out, "| rule | permission set | principals | accounts | present | missing |");
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
    for r in &d.rules {
        let _ = writeln!(out, "| `{}` | {} | {} | {} | {} | {} |", r.id, r.permission_set, r.principals.join(", "), r.accounts, r.present, r.missing_count);
    }
    let p = &d.prune;
    let _ = writeln!(
        out,
        "\nUndeclared inside `managed`: {} ({} on protected accounts, kept). Prune: {}.",
        d.undeclared_count,
        d.protected.len(),
        match (p.enabled, p.refused) {
            (false, _) => format!("off (max {} deletes)", p.max_deletes),
            (true, true) => format!("**refused**, {} deletes exceed maxDeletes {}", d.undeclared_count, p.max_deletes),
            (true, false) => format!("{} deletes (max {})", p.deletes, p.max_deletes),
        }
    );
    let changes: Vec<&sso_fanout_core::plan::PlanItem> = plan.batches.iter().flat_map(|b| &b.items).collect();
    if !changes.is_empty() {
        let _ = writeln!(out, "\n<details><summary>{} changes</summary>\n", changes.len());
        let _ = writeln!(out, "| account | name | action | permission set | principal |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for i in changes.iter().take(SHOWN) {
            let (ps, principal) = plan.pair(i.pair);
            let _ = writeln!(out, "| {} | {} | {} | {} | {} |", i.account_id, i.account_name, i.action.as_str(), ps.name, sso_fanout_core::desired::describe(principal));
        }
        if changes.len() > SHOWN {
            let _ = writeln!(out, "\n... and {} more (`--output json` lists all)", changes.len() - SHOWN);
        }
        let _ = writeln!(out, "\n</details>");
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "\n> warning: {w}");
    }
    let _ = writeln!(out, "\n<sub>read: {} ListAccountAssignmentsForPrincipal calls for {} principals, {} name look-ups</sub>", d.cost.listing_calls, d.cost.principals_listed, d.cost.lookups);
    out
}

pub fn summary(s: &RunSummary) -> String {
    let mut out = String::new();
    let c = &s.counts;
    let verdict = match s.outcome {
        RunOutcome::Succeeded => "done: every target account is as requested",
        RunOutcome::Incomplete => "incomplete: some accounts are not as requested",
        RunOutcome::Interrupted => "interrupted: re-run the same request to finish (accounts done are skipped)",
    };
    let _ = writeln!(out, "\n{} {verdict}", s.run_id);
    let _ = writeln!(
        out,
        "  {} succeeded, {} skipped, {} failed, {} timed out{}{} of {} targets",
        c.succeeded,
        c.skipped,
        c.failed,
        c.timed_out,
        if c.not_started > 0 { format!(", {} not started", c.not_started) } else { String::new() },
        if c.missing > 0 { format!(", {} missing", c.missing) } else { String::new() },
        c.total
    );
    if let Some(d) = s.duration_seconds {
        let _ = writeln!(out, "  took {} (estimate {})", secs(d), secs(s.estimate_seconds));
    }
    for w in &s.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    if !s.failures.is_empty() {
        let rows: Vec<Vec<String>> = s
            .failures
            .iter()
            .map(|f| match s.pair_label(&f.assignment) {
                Some(a) => vec![f.account_id.to_string(), f.account_name.clone(), a, f.outcome.as_str().to_string(), f.reason.clone()],
                None => vec![f.account_id.to_string(), f.account_name.clone(), f.outcome.as_str().to_string(), f.reason.clone()],
            })
            .collect();
        let _ = writeln!(out);
        let headers: &[&str] = if s.document.is_some() {
            &["ACCOUNT", "NAME", "ASSIGNMENT", "OUTCOME", "REASON"]
        } else {
            &["ACCOUNT", "NAME", "OUTCOME", "REASON"]
        };
        out.push_str(&table(headers, &rows));
        let _ = writeln!(out, "  Re-running the same request retries only these accounts.");
    }
    out
}

/// `bench --scenario faults`: each fault's invariant counters (0 is kept), what the fault kept
/// from finishing, and what the ledger wrote.
pub fn faults_table(rows: &[BenchRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .filter_map(|r| r.faults.as_ref().map(|f| (r, f)))
        .map(|(r, f)| {
            vec![
                r.accounts.to_string(),
                r.strategy.clone(),
                format!("{:.1}", r.makespan_s),
                f.outstanding_violations.to_string(),
                f.conflict_violations.to_string(),
                f.rate_violations.to_string(),
                f.max_in_window.to_string(),
                f.lost_slots.to_string(),
                r.false_successes.to_string(),
                r.failed.to_string(),
                f.timed_out.to_string(),
                f.not_started.to_string(),
                f.sent_again.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                r.dynamo_writes_per_change.map(|w| format!("{w:.2}")).unwrap_or_else(|| "-".into()),
                format!("{:.2}", f.write_units_per_change),
            ]
        })
        .collect();
    let mut out = table(
        &["ACCOUNTS", "FAULT", "MAKESPAN_S", "OUTSTANDING_V", "CONFLICT_V", "RATE_V", "MAX_IN_1S", "LOST_SLOTS", "FALSE_OK", "FAILED", "TIMED_OUT", "NOT_STARTED", "SENT_AGAIN", "WRITES/CHANGE", "WCU/CHANGE"],
        &body,
    );
    out.push_str(
        "\n  OUTSTANDING_V / CONFLICT_V / RATE_V: requests that found 15 operations outstanding, an operation\n  running in their account, 20 requests in the second before them (every run together; all 0 is the\n  quota kept); MAX_IN_1S: most requests in any sliding second; LOST_SLOTS: slots a new holder could\n  not get afterwards; TIMED_OUT / NOT_STARTED: accounts the fault kept from finishing (re-run\n  converges); SENT_AGAIN: where one permission set is assigned, operations sent again in an account once the first ended; WRITES/CHANGE and\n  WCU/CHANGE: the ledger's DynamoDB item writes and write units (transaction items bill 2).\n",
    );
    out
}

pub fn bench_table(rows: &[BenchRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.accounts.to_string(),
                r.strategy.clone(),
                format!("{}/{}", r.latency.median_s, r.latency.p99_s),
                format!("{:.1}", r.accepted_s),
                format!("{:.1}", r.makespan_s),
                format!("{:.1}", r.reported_s),
                r.estimate_s.map(|e| format!("{e:.1}")).unwrap_or_else(|| "-".into()),
                format!("{:.1}", r.bound_s),
                format!("{:.2}", r.ratio),
                format!("{:.1}", r.greedy_s),
                r.api_calls.to_string(),
                r.throttled.to_string(),
                r.violations.to_string(),
                r.failed.to_string(),
                r.false_successes.to_string(),
                r.rerun_api_calls.map(|c| format!("{c}/{}", r.rerun_writes.unwrap_or(0))).unwrap_or_else(|| "-".into()),
                r.dynamo_writes_per_change.map(|w| format!("{w:.2}")).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = table(
        &["SCENARIO", "ACCOUNTS", "STRATEGY", "LATENCY", "ACCEPTED_S", "MAKESPAN_S", "REPORTED_S", "ESTIMATE_S", "BOUND_S", "RATIO", "GREEDY_S", "API_CALLS", "THROTTLED", "VIOLATIONS", "FAILED", "FALSE_OK", "RERUN_CALLS/WRITES", "LEDGER_WRITES/CHANGE"],
        &body,
    );
    for r in rows.iter().filter(|r| !r.runs.is_empty()) {
        let runs: Vec<String> = r.runs.iter().map(|t| format!("{} {:.0}-{:.1} s", t.permission_set, t.started_s, t.finished_s)).collect();
        let _ = writeln!(out, "  {} x{} runs on one instance: {}", r.accounts, r.runs.len(), runs.join(", "));
    }
    for r in rows.iter() {
        if let (Some(changes), Some(deletes), Some(chain)) = (r.changes, r.deletes, r.longest_chain) {
            let _ = writeln!(
                out,
                "  {} accounts, {} rules: {changes} changes ({deletes} deletes by prune), {:.1} per account, longest chain {chain} (the bound counts it); re-plan: {} sso-admin calls, {} changes left",
                r.accounts,
                sso_fanout_bench::reconcile::RULES,
                changes as f64 / r.accounts as f64,
                r.rerun_api_calls.unwrap_or(0),
                r.rerun_writes.unwrap_or(0)
            );
        }
    }
    out.push_str(
        "\n  makespan: until every assignment actually finished; reported: until the tool returned;\n  ratio = makespan / bound (docs/design.md lower bound); greedy: ideal list scheduling of the same\n  latencies with no overhead (the best any scheduler blind to latencies does on average);\n  FALSE_OK: reported successful, not SUCCEEDED; VIOLATIONS: requests over a quota, the rate read as a\n  strict one-second sliding window; LATENCY: simulated provisioning median/p99 s (--latency);\n  LEDGER_WRITES/CHANGE: shared-quota item writes per change, as the DynamoDB ledger makes them.\n",
    );
    out
}

/// Over several seeds: per size, strategy and latency, makespan/bound and makespan/greedy spread.
pub fn bench_spread(rows: &[BenchRow]) -> String {
    let mut groups: Vec<((usize, String, String), Vec<&BenchRow>)> = Vec::new();
    for r in rows {
        let key = (r.accounts, r.strategy.clone(), format!("{}/{}", r.latency.median_s, r.latency.p99_s));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let stats = |xs: Vec<f64>| {
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let min = xs.iter().cloned().fold(f64::MAX, f64::min);
        let max = xs.iter().cloned().fold(0.0, f64::max);
        format!("{mean:.3} ({min:.3}-{max:.3})")
    };
    let body: Vec<Vec<String>> = groups
        .into_iter()
        .map(|((n, strategy, latency), g)| {
            vec![
                n.to_string(),
                strategy,
                latency,
                g.len().to_string(),
                stats(g.iter().map(|r| r.ratio).collect()),
                stats(g.iter().map(|r| r.makespan_s / r.greedy_s).collect()),
                stats(g.iter().map(|r| r.greedy_s / r.bound_s).collect()),
                g.iter().map(|r| r.violations).sum::<u64>().to_string(),
                g.iter().map(|r| r.failed).sum::<usize>().to_string(),
                g.iter().map(|r| r.false_successes).sum::<usize>().to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &["ACCOUNTS", "STRATEGY", "LATENCY", "SEEDS", "MAKESPAN/BOUND mean (min-max)", "MAKESPAN/GREEDY", "GREEDY/BOUND", "VIOLATIONS", "FAILED", "FALSE_OK"],
        &body,
    );
    out.push_str("\n  greedy/bound: how far even ideal latency-blind scheduling is from the bound for these latencies.\n");
    out
}

/// `report` without a run id: the recent runs with when, what and how they ended.
pub fn runs_table(runs: &[RunRecord]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let p = &r.plan;
            let outcome = match &r.summary {
                Some(s) => format!("{:?}", s.outcome).to_lowercase(),
                None => format!("{:?}", r.status).to_lowercase(),
            };
            let duration = r.summary.as_ref().and_then(|s| s.duration_seconds).map(secs).unwrap_or_else(|| "-".into());
            vec![
                p.run_id.clone(),
                compact_utc(p.created_at),
                p.operation.as_str().into(),
                p.permission_set.name.clone(),
                format!("{} {}", p.principal.kind.as_str().to_lowercase(), p.principal.name.as_deref().unwrap_or(&p.principal.id)),
                p.target_count().to_string(),
                outcome,
                duration,
            ]
        })
        .collect();
    table(&["RUN", "CREATED (UTC)", "OPERATION", "PERMISSION SET", "PRINCIPAL", "TARGETS", "OUTCOME", "DURATION"], &rows)
}

/// `report --output json` without a run id: one object per run.
pub fn run_listing(r: &RunRecord) -> serde_json::Value {
    serde_json::json!({
        "runId": r.plan.run_id,
        "createdAt": r.plan.created_at,
        "status": r.status,
        "operation": r.plan.operation,
        "permissionSet": r.plan.permission_set.name,
        "principal": r.plan.principal,
        "targets": r.plan.target_count(),
        "durationSeconds": r.summary.as_ref().and_then(|s| s.duration_seconds),
        "summary": r.summary,
    })
}

/// Each OU with its path of names, parent and number of accounts directly in it.
fn ou_rows(org: &OrgSnapshot) -> Vec<(String, String, String, usize)> {
    let mut rows: Vec<(String, String, String, usize)> = org
        .ous
        .iter()
        .map(|ou| {
            let mut path = vec![ou.id.clone()];
            let mut parent = ou.parent_id.as_str();
            while let Some(p) = org.ou(parent) {
                path.push(p.id.clone());
                parent = p.parent_id.as_str();
            }
            path.reverse();
            let direct = org.accounts.iter().filter(|a| a.ou_path.last() == Some(&ou.id)).count();
            (ou.id.clone(), org.ou_names(&path), ou.parent_id.clone(), direct)
        })
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    rows
}

pub fn org_view(org: &OrgSnapshot, ous_only: bool) -> String {
    let mut out = String::new();
    let at_root = org.accounts.iter().filter(|a| a.ou_path.is_empty()).count();
    let _ = writeln!(
        out,
        "organization {} (management account {}), root {} ({} accounts directly under it), read {} UTC",
        org.organization_id,
        org.management_account_id,
        org.roots.join(", "),
        at_root,
        compact_utc(org.fetched_at)
    );
    let _ = writeln!(out, "
OUs ({}; `--ou ID` selects an OU and everything below it, a root id the whole organization)", org.ous.len());
    let rows: Vec<Vec<String>> =
        ou_rows(org).into_iter().map(|(id, path, parent, n)| vec![id, path, parent, n.to_string()]).collect();
    out.push_str(&table(&["OU", "PATH", "PARENT", "ACCOUNTS"], &rows));
    if ous_only {
        return out;
    }
    let _ = writeln!(out, "
Accounts ({}; only ACTIVE ones are targets, the management account only by id)", org.accounts.len());
    let rows: Vec<Vec<String>> = org
        .accounts
        .iter()
        .map(|a| {
            let tags: Vec<String> = a.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut name = a.name.clone();
            if a.id == org.management_account_id {
                name.push_str(" (management)");
            }
            vec![a.id.to_string(), name, format!("{:?}", a.status).to_uppercase(), org.ou_names(&a.ou_path), tags.join(",")]
        })
        .collect();
    out.push_str(&table(&["ACCOUNT", "NAME", "STATUS", "OU PATH", "TAGS"], &rows));
    out
}

pub fn org_document(org: &OrgSnapshot, ous_only: bool) -> serde_json::Value {
    let ous: Vec<serde_json::Value> = ou_rows(org)
        .into_iter()
        .map(|(id, path, parent, n)| serde_json::json!({"id": id, "path": path, "parentId": parent, "accounts": n}))
        .collect();
    let mut doc = serde_json::json!({
        "organizationId": org.organization_id,
        "managementAccountId": org.management_account_id,
        "roots": org.roots,
        "fetchedAt": org.fetched_at,
        "ous": ous,
    });
    if !ous_only {
        doc["accounts"] = org
            .accounts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id, "name": a.name, "email": a.email, "status": a.status,
                    "ouPath": a.ou_path, "ouNames": org.ou_names(&a.ou_path), "tags": a.tags,
                    "management": a.id == org.management_account_id,
                })
            })
            .collect();
    }
    doc
}
