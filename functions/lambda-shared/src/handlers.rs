//! The three handlers: JSON event in, JSON out, typed errors. Each is one step of
//! `sso_fanout_core::pipeline`, the same code the CLI runs in-process.

use serde_json::Value;
use sso_fanout_core::contract::{BatchOutcome, BatchRef, PlannerOutput, ReporterInput, WorkerOutput, PREVIEW_MAX_BYTES};
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::model::Outcome;
use sso_fanout_core::pipeline::{plan_input, report_run, run_stored_batch, Services};
use sso_fanout_core::planner::PlannerConfig;
use sso_fanout_core::report::{BatchFailure, RunSummary};
use sso_fanout_core::request::RunInput;
use sso_fanout_core::{FanoutError, Result};

/// Planner: the execution input is the run request, a rules document (`{"rules": ...}`) or a
/// reconcile of a stored one (`{"reconcile": "name"}`).
pub async fn plan(services: &Services, config: &PlannerConfig, event: Value) -> Result<PlannerOutput> {
    let input = RunInput::from_value(event)?;
    let plan = plan_input(services, &input, config).await?;
    tracing::info!(run_id = %plan.run_id, changes = plan.changes(), skipped = plan.skipped.len(),
        batches = plan.batches.len(), estimate_s = plan.estimate.seconds, dry_run = input.dry_run(), "planned");
    Ok(PlannerOutput::of(&plan))
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
        not_started: report.count(Outcome::NotStarted),
    };
    tracing::info!(run_id = %out.run_id, batch = out.batch, succeeded = out.succeeded, failed = out.failed,
        timed_out = out.timed_out, not_started = out.not_started, calls = report.stats.calls, throttled = report.stats.throttled, "batch finished");
    Ok(out)
}

/// Reporter: the summary is the execution's output.
pub async fn report(services: &Services, event: Value) -> Result<RunSummary> {
    let input: ReporterInput = parse(event, "{\"runId\": \"run-...\", \"batches\": [...]}")?;
    let failed_batches: Vec<BatchFailure> = input
        .batches
        .iter()
        .filter_map(|b| match b {
            BatchOutcome::Failed(f) => {
                Some(BatchFailure { batch: f.batch, error: f.error.error.clone(), cause: f.error.cause.clone().unwrap_or_default() })
            }
            BatchOutcome::Done(_) => None,
        })
        .collect();
    // The execution's output stays below Step Functions' 256 KB payload limit: the per-account
    // results stay in the store (`sso-fanout report RUN_ID --table ...`).
    let summary = report_run(services.store.as_ref(), &input.run_id, failed_batches, None).await?.fit(PREVIEW_MAX_BYTES);
    tracing::info!(run_id = %summary.run_id, succeeded = summary.counts.succeeded, failed = summary.counts.failed,
        timed_out = summary.counts.timed_out, skipped = summary.counts.skipped, "run reported");
    Ok(summary)
}

fn parse<T: serde::de::DeserializeOwned>(event: Value, expected: &str) -> Result<T> {
    serde_json::from_value(event).map_err(|e| FanoutError::invalid("event", e, format!("an event like {expected}")))
}
