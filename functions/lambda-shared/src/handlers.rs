//! The three handlers: JSON event in, JSON out, typed errors. Each is one step of
//! `sso_fanout_core::pipeline`, the same code the CLI runs in-process.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::model::Outcome;
use sso_fanout_core::pipeline::{plan_run, report_run, run_stored_batch, Services};
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::report::{BatchFailure, RunSummary};
use sso_fanout_core::request::RunRequest;
use sso_fanout_core::{FanoutError, Result};

/// A Map item: which batch of which run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRef {
    pub run_id: String,
    pub batch: u32,
    /// Accounts in the batch (informational, for the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannerOutput {
    pub run_id: String,
    pub dry_run: bool,
    pub map_concurrency: u32,
    /// References into the stored plan: small whatever the batch size (payload limit 256 KB).
    pub batches: Vec<BatchRef>,
    pub estimate_seconds: f64,
    /// The full preview for dry runs (the execution's output); a short digest otherwise.
    pub plan: Value,
}

/// Planner: the execution input is the run request.
pub async fn plan(services: &Services, config: &PlannerConfig, event: Value) -> Result<PlannerOutput> {
    let request = RunRequest::from_value(event)?;
    let plan = plan_run(services, &request, config).await?;
    tracing::info!(run_id = %plan.run_id, changes = plan.changes(), skipped = plan.skipped.len(),
        batches = plan.batches.len(), estimate_s = plan.estimate.seconds, dry_run = request.dry_run, "planned");
    let preview = if request.dry_run {
        plan.preview()
    } else {
        serde_json::json!({"tier": plan.tier.name, "inFlight": plan.tier.in_flight, "changes": plan.changes(),
            "skipped": plan.skipped.len(), "warnings": plan.warnings})
    };
    Ok(PlannerOutput {
        run_id: plan.run_id.clone(),
        dry_run: request.dry_run,
        map_concurrency: plan.map_concurrency,
        batches: if request.dry_run {
            vec![]
        } else {
            plan.batches.iter().map(|b| BatchRef { run_id: plan.run_id.clone(), batch: b.index, accounts: Some(b.items.len()) }).collect()
        },
        estimate_seconds: plan.estimate.seconds,
        plan: preview,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerOutput {
    pub run_id: String,
    pub batch: u32,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub timed_out: usize,
}

/// Worker: one batch, to verified completion.
pub async fn work(services: &Services, event: Value) -> Result<WorkerOutput> {
    let item: BatchRef = parse(event, "{\"runId\": \"run-...\", \"batch\": 0}")?;
    let report = run_stored_batch(services, &item.run_id, item.batch, EngineOptions::default(), None).await?;
    let out = WorkerOutput {
        run_id: item.run_id,
        batch: item.batch,
        succeeded: report.count(Outcome::Succeeded),
        failed: report.count(Outcome::Failed),
        skipped: report.count(Outcome::Skipped),
        timed_out: report.count(Outcome::TimedOut),
    };
    tracing::info!(run_id = %out.run_id, batch = out.batch, succeeded = out.succeeded, failed = out.failed,
        timed_out = out.timed_out, calls = report.stats.calls, throttled = report.stats.throttled, "batch finished");
    Ok(out)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReporterInput {
    run_id: String,
    /// The Map's results: worker outputs, or `{runId, batch, error: {Error, Cause}}` for a
    /// batch that failed after its retries.
    #[serde(default)]
    batches: Vec<Value>,
}

/// Reporter: the summary is the execution's output.
pub async fn report(services: &Services, event: Value) -> Result<RunSummary> {
    let input: ReporterInput = parse(event, "{\"runId\": \"run-...\", \"batches\": [...]}")?;
    let failed_batches: Vec<BatchFailure> = input
        .batches
        .iter()
        .filter_map(|b| {
            let error = b.get("error")?;
            let text = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            Some(BatchFailure { batch: b.get("batch").and_then(Value::as_u64).unwrap_or(0) as u32, error: text("Error"), cause: text("Cause") })
        })
        .collect();
    let mut summary = report_run(services.store.as_ref(), &input.run_id, failed_batches, None).await?;
    // The execution's output stays far below Step Functions' 256 KB payload limit: the
    // per-account results stay in the store (`sso-fanout report RUN_ID --table ...`).
    summary.results.clear();
    tracing::info!(run_id = %summary.run_id, succeeded = summary.counts.succeeded, failed = summary.counts.failed,
        timed_out = summary.counts.timed_out, skipped = summary.counts.skipped, "run reported");
    Ok(summary)
}

fn parse<T: serde::de::DeserializeOwned>(event: Value, expected: &str) -> Result<T> {
    serde_json::from_value(event).map_err(|e| FanoutError::invalid("event", e, format!("an event like {expected}")))
}
