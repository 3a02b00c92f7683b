//! Everything that crosses the state machine, typed once: what the planner emits, what a Map
//! item is, what a worker returns, what the Catch of a failed batch passes on, what the reporter
//! receives, and the plan preview a dry run returns. The Lambda handlers produce and consume
//! these; the CLI's `start` / `status` read them back from the execution history and output.
//! Field names are the JSON the ASL (`statemachine/sso-fanout.asl.json`) refers to.

use crate::model::{Action, Operation, PermissionSet, Principal};
use crate::desired::DesiredPlan;
use crate::plan::{EngineSettings, Estimate, Pair, Plan, PlanItem, PlanQuota, QuotaShare, TierChoice};
use serde::{Deserialize, Serialize};

/// A Map item: which batch of which run (ItemSelector passes `runId` and `batch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRef {
    pub run_id: String,
    pub batch: u32,
    /// Accounts in the batch (informational, for the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<usize>,
}

/// The planner's output (the Map's input). Batches are references into the stored plan, so the
/// payload stays small whatever the batch size (Step Functions' limit is 256 KB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannerOutput {
    pub run_id: String,
    pub dry_run: bool,
    pub map_concurrency: u32,
    pub batches: Vec<BatchRef>,
    pub estimate_seconds: f64,
    /// The whole preview for a dry run (the execution's output: `OutputPath: $.plan`), a digest
    /// otherwise.
    pub plan: PlanView,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlanView {
    Preview(Box<PlanPreview>),
    Digest(PlanDigest),
}

/// What a non-dry-run planner output says of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDigest {
    pub tier: String,
    pub in_flight: u32,
    pub changes: usize,
    pub skipped: usize,
    pub warnings: Vec<String>,
}

/// The plan as people and scripts read it (CLI `plan --output json`, a dry run's execution
/// output): every target with its action, plus the decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanPreview {
    pub run_id: String,
    pub operation: Operation,
    pub permission_set: PermissionSet,
    pub principal: Principal,
    pub accounts: Vec<PlanItem>,
    pub creates: usize,
    pub deletes: usize,
    pub skips: usize,
    pub tier: TierChoice,
    pub batches: Vec<BatchPreview>,
    pub map_concurrency: u32,
    /// Why `map_concurrency` batches run at once.
    #[serde(default)]
    pub map_reason: String,
    pub settings: EngineSettings,
    pub estimate: Estimate,
    pub quota: PlanQuota,
    pub warnings: Vec<String>,
    /// A rules plan's (permission set, principal) pairs, indexed by each account item's `pair`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<Pair>,
    /// A rules plan's drift report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<DesiredPlan>,
    /// Set when the lists were cut short to fit a payload limit (the counts are whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
}

/// What a dry run's execution output may take: Step Functions refuses a state output above
/// 256 KB, so the preview's lists are cut to fit well below it.
pub const PREVIEW_MAX_BYTES: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPreview {
    pub batch: u32,
    pub accounts: usize,
    pub share: QuotaShare,
}

impl PlanPreview {
    pub fn of(plan: &Plan) -> PlanPreview {
        let count = |action| plan.batches.iter().flat_map(|b| &b.items).filter(|i| i.action == action).count();
        PlanPreview {
            run_id: plan.run_id.clone(),
            operation: plan.operation,
            permission_set: plan.permission_set.clone(),
            principal: plan.principal.clone(),
            accounts: plan.items().into_iter().cloned().collect(),
            creates: count(Action::Create),
            deletes: count(Action::Delete),
            skips: plan.skipped.len(),
            tier: plan.tier.clone(),
            batches: plan.batches.iter().map(|b| BatchPreview { batch: b.index, accounts: b.items.len(), share: b.share }).collect(),
            map_concurrency: plan.map_concurrency,
            map_reason: plan.map_reason.clone(),
            settings: plan.settings,
            estimate: plan.estimate.clone(),
            quota: plan.quota,
            warnings: plan.warnings.clone(),
            pairs: plan.pairs.clone(),
            desired: plan.desired.clone(),
            truncated: None,
        }
    }

    /// The preview with its account and drift lists cut (to 2,000, 500, 100, 20, then 0 entries
    /// each) until its JSON fits `max_bytes`; `truncated` says so.
    pub fn fit(mut self, max_bytes: usize) -> PlanPreview {
        let size = |p: &PlanPreview| serde_json::to_vec(p).map_or(usize::MAX, |v| v.len());
        for cap in [2_000, 500, 100, 20, 0] {
            if size(&self) <= max_bytes {
                break;
            }
            self.accounts.truncate(cap);
            if let Some(d) = &mut self.desired {
                d.cut_lists(cap);
            }
            self.truncated = Some(format!(
                "lists cut to {cap} entries each to fit the {max_bytes}-byte payload limit (counts are whole); `sso-fanout plan` with the same input lists them all"
            ));
        }
        self
    }
}

impl PlannerOutput {
    pub fn of(plan: &Plan) -> PlannerOutput {
        let dry_run = plan.request.dry_run();
        PlannerOutput {
            run_id: plan.run_id.clone(),
            dry_run,
            map_concurrency: plan.map_concurrency,
            batches: if dry_run {
                vec![]
            } else {
                plan.batches.iter().map(|b| BatchRef { run_id: plan.run_id.clone(), batch: b.index, accounts: Some(b.items.len()) }).collect()
            },
            estimate_seconds: plan.estimate.seconds,
            plan: if dry_run {
                PlanView::Preview(Box::new(PlanPreview::of(plan).fit(PREVIEW_MAX_BYTES)))
            } else {
                PlanView::Digest(PlanDigest {
                    tier: plan.tier.name.clone(),
                    in_flight: plan.tier.in_flight,
                    changes: plan.changes(),
                    skipped: plan.skipped.len(),
                    warnings: plan.warnings.clone(),
                })
            },
        }
    }
}

/// A worker's output: one batch done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerOutput {
    pub run_id: String,
    pub batch: u32,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub timed_out: usize,
    #[serde(default)]
    pub not_started: usize,
}

/// What the ASL's Catch -> RecordBatchFailure passes on for a batch that failed for good:
/// `{runId, batch, error: {Error, Cause}}` (Cause can be absent, e.g. States.Timeout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedBatch {
    pub run_id: String,
    pub batch: u32,
    pub error: StepError,
}

/// Step Functions' error object (capitalized keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

/// One result of the Map: a finished batch or a failed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchOutcome {
    Failed(FailedBatch),
    Done(WorkerOutput),
}

/// The reporter's input (the ASL's Report Parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReporterInput {
    pub run_id: String,
    #[serde(default)]
    pub batches: Vec<BatchOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maps_results_parse_as_the_asl_writes_them() {
        let input: ReporterInput = serde_json::from_value(serde_json::json!({
            "runId": "run-1",
            "batches": [
                {"runId": "run-1", "batch": 0, "succeeded": 3, "failed": 1, "skipped": 0, "timedOut": 0},
                {"runId": "run-1", "batch": 1, "error": {"Error": "States.Timeout"}},
                {"runId": "run-1", "batch": 2, "error": {"Error": "Retryable", "Cause": "{\"errorType\":\"Retryable\"}"}}
            ]
        }))
        .unwrap();
        assert!(matches!(&input.batches[0], BatchOutcome::Done(w) if w.succeeded == 3));
        assert!(matches!(&input.batches[1], BatchOutcome::Failed(f) if f.error.error == "States.Timeout" && f.error.cause.is_none()));
        assert!(matches!(&input.batches[2], BatchOutcome::Failed(f) if f.batch == 2 && f.error.cause.is_some()));
    }
}
