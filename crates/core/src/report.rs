//! The run summary: counts by outcome, failures with reasons, duration vs estimate. Built from
//! the plan and the stored results, so the CLI and the reporter Lambda produce the same thing.

use crate::ids::AccountId;
use crate::model::{result_key, AccountResult, Action, Outcome};
use crate::plan::Plan;
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
    Missing,
}

impl AccountOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountOutcome::Succeeded => "succeeded",
            AccountOutcome::Skipped => "skipped",
            AccountOutcome::Failed => "failed",
            AccountOutcome::TimedOut => "timed_out",
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
    /// A rules run's (permission set, principal) of this result: `ReadOnlyAccess to GROUP Auditors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
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
    /// A rules run's (permission set, principal) of this result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
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
    pub operation: String,
    pub permission_set: String,
    pub principal: String,
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
}

impl RunSummary {
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
        let assignment = rules.then(|| {
            let (ps, principal) = plan.pair(item.pair);
            format!("{} to {}", ps.name, crate::desired::describe(principal))
        });
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
    let ok = counts.failed == 0 && counts.timed_out == 0 && counts.missing == 0 && failed_batches.is_empty();
    RunSummary {
        run_id: plan.run_id.clone(),
        operation: if rules { "reconcile".into() } else { plan.operation.as_str().into() },
        permission_set: if rules { format!("{} pairs", plan.all_pairs().len()) } else { plan.permission_set.name.clone() },
        principal: match &plan.desired {
            Some(d) => format!("document {}", d.name),
            None => crate::desired::describe(&plan.principal),
        },
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
    }
}
