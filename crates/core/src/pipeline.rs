//! The planner -> workers -> reporter pipeline as three steps that the Lambda handlers call one
//! each, and that `execute` chains in-process for the CLI.

use crate::engine::{run_batch, BatchContext, BatchReport, EngineEvent, EngineOptions};
use crate::error::{FanoutError, Result};
use crate::model::AccountResult;
use crate::plan::{Plan, PlanRequest};
use crate::planner::{make_plan, PlannerConfig};
use crate::quota::Ledger;
use crate::ports::{AssignmentOps, Directory, OrgDirectory};
use crate::report::{summarize, BatchFailure, RunOutcome, RunSummary};
use crate::desired::{check_saved_plan, make_rules_plan, DocumentStorage, RulesRequest, StoredDocument};
use crate::request::{RunInput, RunRequest};
use crate::store::{RunLog, RunRecord, RunStatus, RunStore};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The ports a run needs, built once per process / Lambda container. Each step hands on only
/// the narrow port it uses.
#[derive(Clone)]
pub struct Services {
    pub org: Arc<dyn OrgDirectory>,
    pub directory: Arc<dyn Directory>,
    pub ops: Arc<dyn AssignmentOps>,
    pub store: Arc<dyn RunStore>,
    /// The quota shared with every worker and run on the instance (None: this run spends the
    /// budget alone).
    pub quota: Option<Ledger>,
}

impl Services {
    /// The usual case: one Identity Center adapter (AWS or the simulator) serves both the
    /// planner's look-ups and the engine's operations.
    pub fn new<I>(org: Arc<dyn OrgDirectory>, identity_center: Arc<I>, store: Arc<dyn RunStore>) -> Services
    where
        I: Directory + AssignmentOps + 'static,
    {
        Services { org, directory: identity_center.clone(), ops: identity_center, store, quota: None }
    }

    /// Workers join the quota kept in `ledger`.
    pub fn with_quota(mut self, ledger: Ledger) -> Services {
        self.quota = Some(ledger);
        self
    }
}

/// Step 1 (planner): validate, resolve, diff, size; store the plan unless it is a dry run.
pub async fn plan_run(services: &Services, request: &RunRequest, config: &PlannerConfig) -> Result<Plan> {
    let store = services.store.as_ref();
    let plan = make_plan(request, config, services.org.as_ref(), services.directory.as_ref(), store, store, services.quota.as_ref()).await?;
    if !request.dry_run {
        services.store.put_run(&RunRecord { plan: plan.clone(), status: RunStatus::Planned, summary: None }).await?;
    }
    Ok(plan)
}

/// Step 1 for any input: a single request, a rules document (stored under its name once the
/// run is planned for real), or a reconcile of a stored document.
pub async fn plan_input(services: &Services, input: &RunInput, config: &PlannerConfig) -> Result<Plan> {
    match input {
        RunInput::Single(request) => plan_run(services, request, config).await,
        RunInput::Rules(request) => {
            let plan = plan_rules(services, request, config).await?;
            if request.stores_document() {
                store_document(services, request, &plan).await?;
            }
            Ok(plan)
        }
        RunInput::Reconcile(reconcile) => {
            let (_, scope) = crate::planner::scope(services.org.as_ref(), services.directory.as_ref()).await?;
            let Some(stored) = services.store.document(&scope, &reconcile.reconcile).await? else {
                let names: Vec<String> = services.store.documents(&scope).await?.into_iter().map(|d| d.name).collect();
                let known = if names.is_empty() { "none yet".to_string() } else { names.join(", ") };
                return Err(FanoutError::not_found(
                    "stored document",
                    &reconcile.reconcile,
                    format!("apply a document under this name first (`sso-fanout run --rules FILE --document-name NAME`); stored here: {known}"),
                ));
            };
            plan_rules(services, &reconcile.apply_to(stored.request), config).await
        }
    }
}

/// Keeps the applied document under its name (see `RulesRequest::stores_document`).
async fn store_document(services: &Services, request: &RulesRequest, plan: &Plan) -> Result<()> {
    let kept = request.clone();
    let document = StoredDocument { name: request.name.clone(), request: kept, run_id: plan.run_id.clone(), stored_at: plan.created_at };
    services.store.put_document(&plan.scope, &document).await
}

/// Step 1 for a plan saved by `plan --out`: planned again from its own request under this
/// run's configuration, and applied (a new run id, stored) only if the changes, the budget and
/// the settings are still the ones saved, else refused (`check_saved_plan`). What runs is the
/// plan made now: nothing in the file but its request is trusted.
pub async fn plan_saved(services: &Services, saved: &Plan, config: &PlannerConfig) -> Result<Plan> {
    let input = match &saved.request {
        PlanRequest::Single(r) => RunInput::Single(r.clone()),
        PlanRequest::Rules(r) => RunInput::Rules(r.clone()),
    }
    .into_dry_run();
    let mut plan = plan_input(services, &input, config).await?;
    check_saved_plan(saved, &plan)?;
    match &mut plan.request {
        PlanRequest::Single(r) => r.dry_run = false,
        PlanRequest::Rules(r) => r.dry_run = false,
    }
    refuse_refused_prune(&plan)?;
    refuse_replacing_a_document(&plan)?;
    services.store.put_run(&RunRecord { plan: plan.clone(), status: RunStatus::Planned, summary: None }).await?;
    if let PlanRequest::Rules(request) = &plan.request {
        if request.stores_document() {
            store_document(services, request, &plan).await?;
        }
    }
    Ok(plan)
}

/// Plans a rules request; stores the run unless it is a dry run, and refuses a prune past its
/// `maxDeletes` before anything runs.
async fn plan_rules(services: &Services, request: &RulesRequest, config: &PlannerConfig) -> Result<Plan> {
    let store = services.store.as_ref();
    let mut plan = make_rules_plan(request, config, services.org.as_ref(), services.directory.as_ref(), store, store, services.quota.as_ref()).await?;
    if request.names_document() {
        let stored = services.store.document(&plan.scope, &request.name).await?;
        if let Some(desired) = plan.desired.as_mut() {
            desired.storage = Some(DocumentStorage::of(request, stored.as_ref()));
        }
    }
    if !request.dry_run {
        refuse_refused_prune(&plan)?;
        refuse_replacing_a_document(&plan)?;
        services.store.put_run(&RunRecord { plan: plan.clone(), status: RunStatus::Planned, summary: None }).await?;
    }
    Ok(plan)
}

/// Applying a document never replaces a different one stored under its name unless the request
/// says so (`replaceDocument`): a schedule that reconciles the name would apply it from then on.
pub fn refuse_replacing_a_document(plan: &Plan) -> Result<()> {
    let (PlanRequest::Rules(request), Some(storage)) = (&plan.request, plan.desired.as_ref().and_then(|d| d.storage.as_ref())) else {
        return Ok(());
    };
    match (&storage.replaces, request.replace_document) {
        (Some((run_id, stored_at)), false) => Err(FanoutError::invalid(
            "name",
            &storage.name,
            format!(
                "a name no other document is stored under: `{}` holds {} (stored by run {run_id} at {}), which a schedule reconciling it applies; nothing was changed: \
                 give another name (--document-name), or replace it (--replace-document, \"replaceDocument\": true)",
                storage.name,
                storage.difference.as_deref().unwrap_or("a different document"),
                crate::clock::compact_utc(*stored_at)
            ),
        )),
        _ => Ok(()),
    }
}

/// A plan whose prune is past `maxDeletes` never runs (not even its creates).
pub fn refuse_refused_prune(plan: &Plan) -> Result<()> {
    match plan.desired.as_ref().map(|d| &d.prune) {
        Some(prune) if prune.refused => Err(FanoutError::invalid(
            "maxDeletes",
            prune.max_deletes,
            format!(
                "at least the deletes this prune would make: it would delete the {} undeclared assignments inside `managed`; nothing was changed: check the document, or raise maxDeletes (--max-deletes) if they are meant to go",
                plan.desired.as_ref().map_or(0, |d| d.undeclared_count)
            ),
        )),
        _ => Ok(()),
    }
}

/// Step 2 (worker): run one stored batch.
pub async fn run_stored_batch(
    services: &Services,
    run_id: &str,
    batch_index: u32,
    options: EngineOptions,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
) -> Result<BatchReport> {
    let record = load_run(services.store.as_ref(), run_id).await?;
    let batch = record.plan.batches.iter().find(|b| b.index == batch_index).ok_or_else(|| {
        FanoutError::invalid("batch", batch_index, format!("a batch index below {} for run {run_id}", record.plan.batches.len()))
    })?;
    if record.status == RunStatus::Planned {
        services.store.update_run(run_id, RunStatus::Running, None).await?;
    }
    // Know the instance before the first paced call: a worker process that discovered it in
    // the middle of its first paced creates would send them together once the answer came.
    services.directory.instance().await?;
    // A re-driven batch (its worker died or was retried) resumes from the stored results.
    let prior: Vec<AccountResult> = services.store.results(run_id).await?.into_iter().filter(|r| r.batch == batch_index).collect();
    let ctx = BatchContext::from_plan(&record.plan);
    let log: Arc<dyn RunLog> = services.store.clone();
    let mut options = options;
    if let (None, Some(ledger)) = (&options.quota, &services.quota) {
        options.quota = Some(ledger.holder(&record.plan.scope, run_id, Some(batch_index), record.plan.quota.budget, services.ops.clone()));
    }
    run_batch(services.ops.clone(), log, services.store.as_ref(), &ctx, batch, &prior, options, events).await
}

/// Step 3 (reporter): the summary from the plan and the stored results; stored with the run.
/// `duration_seconds` defaults to the wall time since the plan was made (what the deployed
/// reporter sees); in-process runs pass their own clock's measure.
pub async fn report_run(
    store: &dyn RunLog,
    run_id: &str,
    failed_batches: Vec<BatchFailure>,
    duration_seconds: Option<f64>,
) -> Result<RunSummary> {
    let record = load_run(store, run_id).await?;
    let results = store.results(run_id).await?;
    let duration = duration_seconds.unwrap_or_else(|| crate::clock::unix_now().saturating_sub(record.plan.created_at) as f64);
    let summary = summarize(&record.plan, &results, failed_batches, Some(duration));
    store.update_run(run_id, RunStatus::Finished, Some(&summary)).await?;
    Ok(summary)
}

async fn load_run(store: &dyn RunLog, run_id: &str) -> Result<RunRecord> {
    store.get_run(run_id).await?.ok_or_else(|| FanoutError::not_found("run", run_id, "check the run id (`sso-fanout report` lists recent runs)"))
}

/// Runs a stored plan in-process the way the state machine does: batches with at most
/// `map_concurrency` at once, a failed batch recorded and the others carried on, then the report.
pub async fn execute(
    services: &Services,
    plan: &Plan,
    options: EngineOptions,
    events: Option<mpsc::UnboundedSender<EngineEvent>>,
) -> Result<RunSummary> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(plan.map_concurrency.max(1) as usize));
    let mut options = options;
    if let (None, Some(ledger)) = (&options.quota, &services.quota) {
        // Batches in one process are one holder: one queue of accounts, no share split among
        // them. (Deployed, each worker Lambda is its own holder.)
        options.quota = Some(ledger.holder(&plan.scope, &plan.run_id, None, plan.quota.budget, services.ops.clone()));
    }
    let mut workers = JoinSet::new();
    for batch in &plan.batches {
        let (services, gate, events, run_id, index) = (services.clone(), gate.clone(), events.clone(), plan.run_id.clone(), batch.index);
        let mut options = options.clone();
        options.jitter_seed = options.jitter_seed.wrapping_add(index as u64);
        workers.spawn(async move {
            let _slot = gate.acquire_owned().await.expect("gate is never closed");
            (index, run_stored_batch(&services, &run_id, index, options, events).await)
        });
    }
    let mut failed_batches = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let (index, outcome) = joined.map_err(|e| FanoutError::Internal(format!("worker task failed: {e}")))?;
        if let Err(e) = outcome {
            failed_batches.push(BatchFailure { batch: index, error: e.error_type().into(), cause: e.to_string() });
        }
    }
    failed_batches.sort_by_key(|f| f.batch);
    let mut summary = report_run(services.store.as_ref(), &plan.run_id, failed_batches, Some(started.elapsed().as_secs_f64())).await?;
    if options.stop.is_cancelled() {
        summary.outcome = RunOutcome::Interrupted;
        services.store.update_run(&plan.run_id, RunStatus::Interrupted, Some(&summary)).await?;
    }
    Ok(summary)
}
