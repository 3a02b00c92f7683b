//! One function per subcommand. Each returns the process exit code or an error (exit 1), and
//! writes only to the `Io` it is given.

use crate::args::{BenchArgs, CacheAction, Command, OrgArgs, OutputFormat, RunArgs, Scenario};
use crate::backend::{self, Backend};
use crate::exit;
use crate::io::Io;
use crate::output;
use crate::progress::{self, Planning};
use sso_fanout_bench::{self as bench, BenchOptions};
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::model::OrgSnapshot;
use sso_fanout_core::pipeline::{execute, plan_input, plan_saved};
use sso_fanout_core::clock::unix_now;
use sso_fanout_core::contract::PlanPreview;
use sso_fanout_core::plan::Plan;
use sso_fanout_core::planner::{self, load_org, PlannerConfig};
use sso_fanout_core::request::Tuning;
use sso_fanout_core::{FanoutError, Result};
use tokio_util::sync::CancellationToken;

pub async fn dispatch(command: Command, io: &mut Io) -> Result<u8> {
    match command {
        Command::Plan(args) => plan(args, io).await,
        Command::Run(args) => run(args, io).await,
        Command::Bench(args) => bench(args, io),
        Command::Cache { action } => {
            let (refresh, args) = match action {
                CacheAction::Status(args) => (false, args),
                CacheAction::Refresh(args) => (true, args),
            };
            cache(refresh, &backend::connect(&args.backend).await?, args.output, io).await
        }
        Command::Org(args) => org(args, io).await,
        Command::Start(args) => crate::remote::start(args, io).await,
        Command::Status(args) => crate::remote::status(args, io).await,
        Command::Sim { action: crate::args::SimAction::Serve(args) } => sim_serve(args, io).await,
        Command::Report { run_id, backend, output } => report(run_id, &backend::connect(&backend).await?, output, io).await,
        Command::Documents { name, backend, output } => documents(name, &backend::connect(&backend).await?, output, io).await,
    }
}

/// Plans with a "planning" indicator on stderr (names, organization, existing assignments).
/// With `--plan FILE` (run only), the saved plan, checked against the live state.
async fn make_plan(backend: &Backend, args: &RunArgs, dry_run: bool, io: &Io) -> Result<Plan> {
    let config = args.budget.planner_config()?;
    let saved = match &args.request.plan {
        Some(path) if dry_run => return Err(FanoutError::invalid("--plan", path.display(), "a flag of `run`: `plan` makes plans (save one with --out FILE)")),
        Some(path) => Some(read_saved_plan(path)?),
        None => None,
    };
    let input = match &saved {
        Some(_) => None,
        None => Some(args.request.to_input()?),
    };
    simulated_read_note(backend, args.virtual_time, io);
    let planning = Planning::start(io, &backend.store_location, Planning::PLAN);
    let plan = match (saved, input) {
        (Some(saved), _) => plan_saved(&backend.services, &saved, &config).await,
        (None, Some(input)) => plan_input(&backend.services, &if dry_run { input.into_dry_run() } else { input }, &config).await,
        (None, None) => unreachable!("either a saved plan or an input"),
    };
    planning.finish(&plan);
    plan
}

/// A word before a long read of a large simulated organization, so the wait is not a surprise.
fn simulated_read_note(backend: &Backend, virtual_time: bool, io: &Io) {
    match backend.simulated_org_read_s {
        Some(s) if s >= 5.0 && !virtual_time => io.err.line(format!(
            "the simulated Organizations API answers at its own pace: reading the organization takes ~{} on the real clock (a real one is then cached); --virtual-time skips the wait",
            output::secs(s)
        )),
        _ => {}
    }
}

fn read_saved_plan(path: &std::path::Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path).map_err(|e| FanoutError::invalid("--plan", path.display(), format!("a readable plan file ({e})")))?;
    Plan::from_json(&text, &path.display().to_string())
}

fn print_plan(plan: &Plan, args: &RunArgs, io: &Io) {
    match args.output {
        OutputFormat::Json => io.json(&PlanPreview::of(plan)),
        OutputFormat::Markdown if plan.desired.is_some() => io.out.write(&output::drift_markdown(plan)),
        OutputFormat::Markdown => io.out.write(&format!("```\n{}\n{}```\n", output::plan_header(plan), output::plan_table(plan, args.all))),
        OutputFormat::Table => io.out.write(&format!("{}\n{}", output::plan_header(plan), output::plan_table(plan, args.all))),
    }
}

/// Exit 0, or for a rules document 0 when nothing differs and 2 when there is drift.
async fn plan(args: RunArgs, io: &mut Io) -> Result<u8> {
    let backend = backend::connect(&args.backend).await?;
    let plan = make_plan(&backend, &args, true, io).await?;
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&plan).map_err(|e| FanoutError::Internal(e.to_string()))?;
        std::fs::write(path, json + "\n").map_err(|e| FanoutError::invalid("--out", path.display(), format!("a writable file ({e})")))?;
        io.err.line(format!("plan saved to {}: apply exactly it with `sso-fanout run --plan {}`", path.display(), path.display()));
    }
    print_plan(&plan, &args, io);
    Ok(match &plan.desired {
        Some(d) if d.has_drift() => exit::DRIFT,
        _ => exit::OK,
    })
}

async fn run(args: RunArgs, io: &mut Io) -> Result<u8> {
    if let Some(path) = &args.out {
        return Err(FanoutError::invalid("--out", path.display(), "a flag of `plan` (save a plan there, then `run --plan FILE`)"));
    }
    if args.output == OutputFormat::Markdown {
        return Err(FanoutError::invalid("--output", "markdown", "table or json for `run` (markdown is the drift report of `plan`)"));
    }
    let backend = backend::connect(&args.backend).await?;
    let (stop, abandon) = interrupts(io)?;
    let plan = tokio::select! {
        plan = make_plan(&backend, &args, false, io) => plan?,
        _ = stop.cancelled() => {
            io.err.line("interrupted while planning: nothing was changed");
            return Ok(exit::INTERRUPTED);
        }
    };
    if plan.request.dry_run() {
        // `"dryRun": true` in the request: the plan is the whole answer, as in the state machine.
        print_plan(&plan, &args, io);
        return Ok(exit::OK);
    }
    if args.output == OutputFormat::Table {
        io.err.write(&output::plan_header(&plan));
    }
    let options = EngineOptions { jitter_seed: args.backend.seed, stop, abandon, ..Default::default() };
    let (events, watcher) = progress::watch_run(&plan, options.counters.clone(), io);
    let summary = execute(&backend.services, &plan, options, Some(events)).await;
    let _ = watcher.await;
    let summary = summary?;
    match args.output {
        OutputFormat::Json => io.json(&summary),
        OutputFormat::Table | OutputFormat::Markdown => {
            io.out.write(&output::summary(&summary));
            io.out.line(format!("  results kept in {}", backend.store_location));
        }
    }
    Ok(summary.exit_code() as u8)
}

/// The tokens that stop a run: `stop` on the first interrupt (Ctrl-C, or SIGTERM as CI sends
/// when it cancels a job), `abandon` on the second (operations in flight are recorded at once
/// instead of after the grace; the run is still stored as interrupted and its summary printed).
/// A third ends the process at once. Tests pass `Io::interrupt` instead of signals.
fn interrupts(io: &Io) -> Result<(CancellationToken, CancellationToken)> {
    let (stop, abandon) = (CancellationToken::new(), CancellationToken::new());
    if let Some(token) = &io.interrupt {
        let (token, first) = (token.clone(), stop.clone());
        tokio::spawn(async move {
            token.cancelled().await;
            first.cancel();
        });
        return Ok((stop, abandon));
    }
    let mut signals = Signals::listen()?;
    let (first, second, err) = (stop.clone(), abandon.clone(), io.err.clone());
    tokio::spawn(async move {
        let name = signals.next().await;
        err.line(format!(
            "\n{name}: stopping; no new operation starts, the ones in flight get up to {} s to finish (interrupt again to record them at once)",
            sso_fanout_core::engine::INTERRUPT_GRACE.as_secs()
        ));
        first.cancel();
        let name = signals.next().await;
        err.line(format!("{name} again: recording the operations in flight now, with their request ids (once more quits without a summary)"));
        second.cancel();
        let name = signals.next().await;
        err.line(format!("{name}: quit; the run stays `running` in the store; re-run the same request to converge"));
        std::process::exit(exit::INTERRUPTED as i32);
    });
    Ok((stop, abandon))
}

/// SIGINT and SIGTERM, one stream: both interrupt a run the same way.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| FanoutError::Internal(format!("cannot listen for SIGTERM: {e}")))?,
        })
    }

    /// The next signal's name, waiting for it.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
                _ = self.term.recv() => "terminated (SIGTERM)",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted (Ctrl-C)"
        }
    }
}

pub fn bench(args: BenchArgs, io: &Io) -> Result<u8> {
    if args.repeat == 0 {
        return Err(sso_fanout_core::FanoutError::invalid("--repeat", 0, "a positive number of seeds, e.g. --repeat 10"));
    }
    for &n in &args.accounts {
        backend::check_simulated_size("--accounts", n)?;
    }
    let mut rows = Vec::new();
    let latencies = if args.latency.is_empty() { vec![Default::default()] } else { args.latency.clone() };
    for seed in args.seed..args.seed + args.repeat {
        for &latency in &latencies {
            let options = BenchOptions {
                seed,
                faults: backend::faults(args.faults),
                tuning: args.batch_size.map(|b| Tuning { batch_size: Some(b), ..Default::default() }),
                latency,
            };
            for &n in &args.accounts {
                if args.output == OutputFormat::Table {
                    io.err.line(format!("simulating {n} accounts, seed {seed}, latency {}/{} s...", latency.median_s, latency.p99_s));
                }
                match args.scenario {
                    Scenario::Concurrent => {
                        rows.push(bench::run_concurrent(n, bench::Strategy::Independent, &options)?);
                        rows.push(bench::run_concurrent(n, bench::Strategy::Shared, &options)?);
                    }
                    Scenario::Crash => {
                        rows.push(bench::run_crash(n, bench::Strategy::Independent, &options)?);
                        rows.push(bench::run_crash(n, bench::Strategy::Shared, &options)?);
                    }
                    Scenario::Reconcile => rows.push(bench::run_reconcile(n, &options)?),
                    Scenario::Faults => rows.extend(bench::run_faults(n, &options)?),
                    Scenario::Single if args.only_sso_fanout => rows.push(bench::run_sso_fanout(n, &options)?),
                    Scenario::Single => rows.extend(bench::run_all(&[n], &options)?),
                }
            }
        }
    }
    match args.output {
        OutputFormat::Json => io.json(&rows),
        OutputFormat::Table if args.scenario == Scenario::Faults => io.out.write(&output::faults_table(&rows)),
        OutputFormat::Table if args.repeat > 1 => io.out.write(&output::bench_spread(&rows)),
        OutputFormat::Table | OutputFormat::Markdown => io.out.write(&output::bench_table(&rows)),
    }
    Ok(exit::OK)
}

async fn cache(refresh: bool, backend: &Backend, out: OutputFormat, io: &Io) -> Result<u8> {
    let store = backend.services.store.as_ref();
    let (_, scope) = planner::scope(backend.services.org.as_ref(), backend.services.directory.as_ref()).await?;
    let snapshot = if refresh { Some(load_org(backend.services.org.as_ref(), store, &scope, true, 0).await?) } else { store.cached_org(&scope).await? };
    let Some(org) = snapshot else {
        match out {
            OutputFormat::Json => io.json(&serde_json::json!({"cached": false, "store": backend.store_location, "organizationId": scope.organization_id})),
            OutputFormat::Table | OutputFormat::Markdown => io.out.line(format!(
                "no account cache for organization {} in {} yet: `sso-fanout cache refresh` (or any plan/run) fills it",
                scope.organization_id, backend.store_location
            )),
        }
        return Ok(exit::OK);
    };
    let age_s = unix_now().saturating_sub(org.fetched_at);
    let mut by_status = std::collections::BTreeMap::new();
    for a in &org.accounts {
        *by_status.entry(format!("{:?}", a.status).to_uppercase()).or_insert(0usize) += 1;
    }
    let max_age = PlannerConfig::default().account_cache_max_age_s;
    match out {
        OutputFormat::Json => io.json(&serde_json::json!({
            "cached": true,
            "store": backend.store_location,
            "scope": scope,
            "organizationId": org.organization_id,
            "managementAccountId": org.management_account_id,
            "accounts": org.accounts.len(),
            "ous": org.ous.len(),
            "byStatus": by_status,
            "fetchedAt": org.fetched_at,
            "ageSeconds": age_s,
            "fresh": age_s <= max_age,
        })),
        OutputFormat::Table | OutputFormat::Markdown => {
            let counts: Vec<String> = by_status.iter().map(|(k, v)| format!("{v} {k}")).collect();
            let freshness = if age_s <= max_age { "fresh" } else { "stale: the next plan re-reads Organizations" };
            io.out.write(&format!(
                "account cache in {}\n  organization  {} (management account {}; instance {}, region {})\n  accounts      {} ({}), {} OUs\n  age           {} ({freshness}; max {} s)\n",
                backend.store_location,
                org.organization_id,
                org.management_account_id,
                scope.instance_arn,
                scope.region,
                org.accounts.len(),
                counts.join(", "),
                org.ous.len(),
                output::secs(age_s as f64),
                max_age
            ));
        }
    }
    Ok(exit::OK)
}

async fn org(args: OrgArgs, io: &Io) -> Result<u8> {
    let backend = backend::connect(&args.backend).await?;
    simulated_read_note(&backend, false, io);
    let planning = Planning::start(io, &backend.store_location, Planning::ORG);
    let loaded: Result<OrgSnapshot> = async {
        let (_, scope) = planner::scope(backend.services.org.as_ref(), backend.services.directory.as_ref()).await?;
        let max_age = PlannerConfig::default().account_cache_max_age_s;
        load_org(backend.services.org.as_ref(), backend.services.store.as_ref(), &scope, args.refresh_cache, max_age).await
    }
    .await;
    planning.finish(&loaded);
    let org = loaded?;
    match args.output {
        OutputFormat::Json => io.json(&output::org_document(&org, args.ous_only)),
        OutputFormat::Table | OutputFormat::Markdown => io.out.write(&output::org_view(&org, args.ous_only)),
    }
    Ok(exit::OK)
}

async fn report(run_id: Option<String>, backend: &Backend, out: OutputFormat, io: &Io) -> Result<u8> {
    let store = backend.services.store.as_ref();
    let Some(run_id) = run_id else {
        let runs = store.list_runs(20).await?;
        match out {
            OutputFormat::Json => io.json(&runs.iter().map(output::run_listing).collect::<Vec<_>>()),
            OutputFormat::Table | OutputFormat::Markdown => io.out.write(&output::runs_table(&runs)),
        }
        return Ok(exit::OK);
    };
    let record = store
        .get_run(&run_id)
        .await?
        .ok_or_else(|| sso_fanout_core::FanoutError::not_found("run", &run_id, format!("no such run in {}", backend.store_location)))?;
    let Some(summary) = record.summary else {
        match out {
            OutputFormat::Json => io.json(&serde_json::json!({"runId": run_id, "status": record.status})),
            OutputFormat::Table | OutputFormat::Markdown => io.out.line(format!("{run_id} is {:?}: no summary yet", record.status)),
        }
        return Ok(exit::OK);
    };
    match out {
        OutputFormat::Json => io.json(&summary),
        OutputFormat::Table | OutputFormat::Markdown => io.out.write(&output::summary(&summary)),
    }
    Ok(summary.exit_code() as u8)
}

/// The stored rules documents of this scope, or one of them (its request as JSON: the document
/// with its name, prune and maxDeletes, ready for `--request`).
async fn documents(name: Option<String>, backend: &Backend, out: OutputFormat, io: &Io) -> Result<u8> {
    let (_, scope) = planner::scope(backend.services.org.as_ref(), backend.services.directory.as_ref()).await?;
    let store = backend.services.store.as_ref();
    let Some(name) = name else {
        let documents = store.documents(&scope).await?;
        match out {
            OutputFormat::Json => io.json(&documents.iter().map(output::document_listing).collect::<Vec<_>>()),
            OutputFormat::Table | OutputFormat::Markdown => io.out.write(&output::documents_table(&documents, &backend.store_location, &scope)),
        }
        return Ok(exit::OK);
    };
    let document = store.document(&scope, &name).await?.ok_or_else(|| {
        FanoutError::not_found("stored document", &name, format!("`sso-fanout documents` lists those stored in {} for organization {}", backend.store_location, scope.organization_id))
    })?;
    io.json(&document.request);
    Ok(exit::OK)
}

/// `sim serve`: the simulated organization as an AWS endpoint on 127.0.0.1 until SIGINT/SIGTERM.
async fn sim_serve(args: crate::args::SimServeArgs, io: &mut Io) -> Result<u8> {
    backend::check_simulated_size("--accounts", args.accounts)?;
    let mut config = if args.clean { sso_fanout_sim::SimConfig::clean(args.accounts, args.seed) } else { sso_fanout_sim::SimConfig::new(args.accounts, args.seed) };
    config.faults = crate::backend::faults(args.faults);
    if let Some(latency) = args.latency {
        config.latency = latency;
    }
    let server = sso_fanout_wire::Server::start(config, args.port)
        .await
        .map_err(|e| sso_fanout_core::FanoutError::Config(format!("cannot listen on 127.0.0.1:{}: {e}", args.port)))?;
    io.out.line(format!("listening on {}", server.endpoint()));
    Signals::listen()?.next().await;
    let stats = server.emulator().stats();
    server.stop().await;
    io.err.line(format!("stopped; stats: {stats}"));
    Ok(exit::OK)
}
