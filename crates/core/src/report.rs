//! The run summary: counts by outcome, failures with reasons, duration vs estimate. Built from
//! the plan and the stored results, so the CLI and the reporter Lambda produce the same thing.

use crate::model::{AccountResult, Outcome};
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub account_id: String,
    pub account_name: String,
    pub outcome: String,
    pub reason: String,
    #[serde(default)]
    pub request_id: Option<String>,
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
}

impl RunSummary {
    /// Exit status for scripts: 0 all good, 2 some accounts did not end as requested.
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            RunOutcome::Succeeded => 0,
            RunOutcome::Incomplete => 2,
        }
    }
}

pub fn summarize(plan: &Plan, results: &[AccountResult], failed_batches: Vec<BatchFailure>, duration_seconds: Option<f64>) -> RunSummary {
    // One result per account: the stored ones win over the plan's skips.
    let mut by_account: BTreeMap<&str, &AccountResult> = BTreeMap::new();
    for r in results {
        by_account.insert(r.account_id.as_str(), r);
    }
    let mut counts = Counts { total: plan.target_count(), ..Default::default() };
    let mut failures = Vec::new();
    for item in plan.items() {
        match by_account.get(item.account_id.as_str()) {
            Some(r) => {
                match r.outcome {
                    Outcome::Succeeded => counts.succeeded += 1,
                    Outcome::Skipped => counts.skipped += 1,
                    Outcome::Failed => counts.failed += 1,
                    Outcome::TimedOut => counts.timed_out += 1,
                }
                if matches!(r.outcome, Outcome::Failed | Outcome::TimedOut) {
                    failures.push(Failure {
                        account_id: r.account_id.clone(),
                        account_name: r.account_name.clone(),
                        outcome: r.outcome.as_str().into(),
                        reason: r.reason.clone().unwrap_or_default(),
                        request_id: r.request_id.clone(),
                    });
                }
            }
            None if item.action == crate::model::Action::Skip => counts.skipped += 1,
            None => {
                counts.missing += 1;
                let batch = plan.batches.iter().find(|b| b.items.iter().any(|i| i.account_id == item.account_id));
                let reason = batch
                    .and_then(|b| failed_batches.iter().find(|f| f.batch == b.index))
                    .map(|f| format!("batch {} failed: {}: {}", f.batch, f.error, f.cause))
                    .unwrap_or_else(|| "no result recorded (the batch did not report)".into());
                failures.push(Failure {
                    account_id: item.account_id.clone(),
                    account_name: item.account_name.clone(),
                    outcome: "missing".into(),
                    reason,
                    request_id: None,
                });
            }
        }
    }
    let ok = counts.failed == 0 && counts.timed_out == 0 && counts.missing == 0 && failed_batches.is_empty();
    RunSummary {
        run_id: plan.run_id.clone(),
        operation: plan.operation.as_str().into(),
        permission_set: plan.permission_set.name.clone(),
        principal: format!("{} {}", plan.principal.kind.as_str(), plan.principal.name.as_deref().unwrap_or(&plan.principal.id)),
        outcome: if ok { RunOutcome::Succeeded } else { RunOutcome::Incomplete },
        counts,
        failures,
        failed_batches,
        estimate_seconds: plan.estimate.seconds,
        duration_seconds,
        tier: plan.tier.name.clone(),
        in_flight: plan.tier.in_flight,
    }
}
