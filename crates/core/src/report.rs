//! The run summary: counts by outcome, failures with reasons, duration vs estimate. Built from
//! the plan and the stored results, so the CLI and the reporter Lambda produce the same thing.

use crate::ids::{AccountId, PermissionSetArn, PrincipalId};
use crate::model::{result_key, AccountResult, Action, Outcome, PermissionSet, Principal, PrincipalType};
use crate::plan::{Pair, Plan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub total: usize,
    pub succeeded: usize,
    pub skipped: usize,
    pub failed: usize,
    pub timed_out: usize,
    /// Never sent (interrupted, out of time or quota, held back by the account's chain).
    pub not_started: usize,
    /// Planned changes with no stored result (a batch that never reported).
    pub missing: usize,
}

/// How one target account ended, as the summary reports it: the stored outcome, or `missing`
/// for a planned change with no stored result (its batch never reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountOutcome {
    Succeeded,
    Skipped,
    Failed,
    TimedOut,
    NotStarted,
    Missing,
}

impl AccountOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountOutcome::Succeeded => "succeeded",
            AccountOutcome::Skipped => "skipped",
            AccountOutcome::Failed => "failed",
            AccountOutcome::TimedOut => "timed_out",
            AccountOutcome::NotStarted => "not_started",
            AccountOutcome::Missing => "missing",
        }
    }

    pub fn is_ok(self) -> bool {
        matches!(self, AccountOutcome::Succeeded | AccountOutcome::Skipped)
    }
}

impl From<Outcome> for AccountOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Succeeded => AccountOutcome::Succeeded,
            Outcome::Skipped => AccountOutcome::Skipped,
            Outcome::Failed => AccountOutcome::Failed,
            Outcome::TimedOut => AccountOutcome::TimedOut,
            Outcome::NotStarted => AccountOutcome::NotStarted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub account_id: AccountId,
    pub account_name: String,
    pub outcome: AccountOutcome,
    pub reason: String,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(flatten)]
    pub assignment: AssignmentOf,
}

/// Whose assignment a result is about, for scripts: the same three fields in every run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentOf {
    pub permission_set_arn: PermissionSetArn,
    pub principal_type: PrincipalType,
    pub principal_id: PrincipalId,
}

/// One target account in the summary: what the plan did there and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountReport {
    pub account_id: AccountId,
    pub account_name: String,
    pub action: Action,
    pub outcome: AccountOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub assignment: AssignmentOf,
}

/// A batch whose worker failed for good (from the state machine's Catch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchFailure {
    pub batch: u32,
    pub error: String,
    pub cause: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every target succeeded or was already as requested.
    Succeeded,
    /// Some accounts failed, timed out or never ran.
    Incomplete,
    /// The user stopped the run; the summary covers what was done until then.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    /// `assign` or `revoke`; `reconcile` for a rules run.
    pub operation: String,
    /// A single-pair run's permission set and principal, as in the plan (a rules run has no one
    /// pair: see `document` and `pairs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_set: Option<PermissionSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// A rules run's document name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// Every (permission set, principal) pair the run may change (one in a single-pair run).
    pub pairs: Vec<Pair>,
    pub outcome: RunOutcome,
    pub counts: Counts,
    pub failures: Vec<Failure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_batches: Vec<BatchFailure>,
    pub estimate_seconds: f64,
    /// From the start of execution (in-process) or the plan (deployed) to the report.
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    pub tier: String,
    pub in_flight: u32,
    /// The plan's warnings (accounts left out, clamped tuning), repeated for whoever reads only
    /// the summary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Every target account with its outcome, request id and reason. Left out of the state
    /// machine's output (its payload limit is 256 KB); `sso-fanout report RUN_ID` has it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<AccountReport>,
    /// Set when `failures` was cut short to fit a payload limit (the counts are whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
}

impl RunSummary {
    /// `ReadOnlyAccess to GROUP Auditors`: a result's pair for people, in a rules run (None in
    /// a single-pair run, whose one pair the summary names).
    pub fn pair_label(&self, of: &AssignmentOf) -> Option<String> {
        self.document.as_ref()?;
        let pair = self.pairs.iter().find(|p| p.permission_set.arn == of.permission_set_arn && p.principal.id == of.principal_id)?;
        Some(format!("{} to {}", pair.permission_set.name, crate::desired::describe(&pair.principal)))
    }

    /// The summary without its per-account results, its failures cut (to 1,000, 200, 50, then 0)
    /// until its JSON fits `max_bytes`: the state machine's output (Step Functions refuses one
    /// above 256 KB). The store keeps everything (`sso-fanout report RUN_ID`).
    pub fn fit(mut self, max_bytes: usize) -> RunSummary {
        self.results.clear();
        let size = |s: &RunSummary| serde_json::to_vec(s).map_or(usize::MAX, |v| v.len());
        let all = self.failures.len();
        for cap in [1_000, 200, 50, 0] {
            if size(&self) <= max_bytes {
                break;
            }
            self.failures.truncate(cap);
            self.truncated = Some(format!(
                "failures cut to the first {cap} of {all} to fit Step Functions' payload limit; `sso-fanout report {} --table TABLE` lists every account",
                self.run_id
            ));
        }
        self
    }

    /// Exit status for scripts: 0 all good, 2 some accounts did not end as requested, 130
    /// interrupted.
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            RunOutcome::Succeeded => 0,
            RunOutcome::Incomplete => 2,
            // 128 + SIGINT, as shells report an interrupted command.
            RunOutcome::Interrupted => 130,
        }
    }
}

pub fn summarize(plan: &Plan, results: &[AccountResult], failed_batches: Vec<BatchFailure>, duration_seconds: Option<f64>) -> RunSummary {
    // One result per account: the stored ones win over the plan's skips.
    let by_key: BTreeMap<String, &AccountResult> = results.iter().map(|r| (r.key(), r)).collect();
    let mut counts = Counts { total: plan.target_count(), ..Default::default() };
    let mut reports = Vec::with_capacity(counts.total);
    let rules = plan.desired.is_some();
    for item in plan.items() {
        let key = plan.assignment_key(item);
        let assignment = AssignmentOf { permission_set_arn: key.permission_set_arn, principal_type: key.principal_type, principal_id: key.principal_id };
        let report = match by_key.get(&result_key(&item.account_id, item.pair)) {
            Some(r) => AccountReport {
                account_id: r.account_id.clone(),
                account_name: r.account_name.clone(),
                action: item.action,
                outcome: r.outcome.into(),
                request_id: r.request_id.clone(),
                reason: r.reason.clone(),
                assignment,
            },
            None if item.action == Action::Skip => AccountReport {
                account_id: item.account_id.clone(),
                account_name: item.account_name.clone(),
                action: item.action,
                outcome: AccountOutcome::Skipped,
                request_id: None,
                reason: Some("already as requested".into()),
                assignment,
            },
            None => {
                let batch = plan.batches.iter().find(|b| b.items.iter().any(|i| i.account_id == item.account_id));
                let reason = batch
                    .and_then(|b| failed_batches.iter().find(|f| f.batch == b.index))
                    .map(|f| format!("batch {} failed: {}: {}", f.batch, f.error, f.cause))
                    .unwrap_or_else(|| "no result recorded (the batch did not report)".into());
                AccountReport {
                    account_id: item.account_id.clone(),
                    account_name: item.account_name.clone(),
                    action: item.action,
                    outcome: AccountOutcome::Missing,
                    request_id: None,
                    reason: Some(reason),
                    assignment,
                }
            }
        };
        match report.outcome {
            AccountOutcome::Succeeded => counts.succeeded += 1,
            AccountOutcome::Skipped => counts.skipped += 1,
            AccountOutcome::Failed => counts.failed += 1,
            AccountOutcome::TimedOut => counts.timed_out += 1,
            AccountOutcome::NotStarted => counts.not_started += 1,
            AccountOutcome::Missing => counts.missing += 1,
        }
        reports.push(report);
    }
    let failures = reports
        .iter()
        .filter(|r| !r.outcome.is_ok())
        .map(|r| Failure {
            account_id: r.account_id.clone(),
            account_name: r.account_name.clone(),
            outcome: r.outcome,
            reason: r.reason.clone().unwrap_or_default(),
            request_id: r.request_id.clone(),
            assignment: r.assignment.clone(),
        })
        .collect();
    let ok = counts.failed == 0 && counts.timed_out == 0 && counts.not_started == 0 && counts.missing == 0 && failed_batches.is_empty();
    RunSummary {
        run_id: plan.run_id.clone(),
        operation: if rules { "reconcile".into() } else { plan.operation.as_str().into() },
        permission_set: (!rules).then(|| plan.permission_set.clone()),
        principal: (!rules).then(|| plan.principal.clone()),
        document: plan.desired.as_ref().map(|d| d.name.clone()),
        pairs: plan.all_pairs().into_iter().map(|(ps, p)| Pair { permission_set: ps.clone(), principal: p.clone() }).collect(),
        outcome: if ok { RunOutcome::Succeeded } else { RunOutcome::Incomplete },
        counts,
        failures,
        failed_batches,
        estimate_seconds: plan.estimate.seconds,
        duration_seconds,
        tier: plan.tier.name.clone(),
        in_flight: plan.tier.in_flight,
        warnings: plan.warnings.clone(),
        results: reports,
        truncated: None,
    }
}
