//! One function per subcommand. Each returns the process exit code or an error (exit 1).

use crate::args::{BenchArgs, CacheAction, Command, FaultProfile, OutputFormat, RunArgs};
use crate::backend::{self, Backend};
use crate::output;
use sso_fanout_core::bench::{self, BenchOptions};
use sso_fanout_core::engine::EngineOptions;
use sso_fanout_core::pipeline::{execute, plan_run};
use sso_fanout_core::plan::{self, load_org, unix_now, PlannerConfig};
use sso_fanout_core::request::Tuning;
use sso_fanout_core::sim::Faults;
use sso_fanout_core::Result;
use std::io::IsTerminal;

pub async fn dispatch(command: Command) -> Result<u8> {
    match command {
        Command::Plan(args) => plan(args).await,
        Command::Run(args) => run(args).await,
        Command::Bench(args) => unreachable!("the bench runs outside the runtime: {args:?}"),
        Command::Cache { action } => {
            let (refresh, args) = match action {
                CacheAction::Status(args) => (false, args),
                CacheAction::Refresh(args) => (true, args),
            };
            cache(refresh, &backend::connect(&args.backend).await?, args.output).await
        }
        Command::Start(args) => crate::remote::start(args).await,
        Command::Status(args) => crate::remote::status(args).await,
        Command::Report { run_id, backend, output } => report(run_id, &backend::connect(&backend).await?, output).await,
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).expect("serializable"));
}

async fn plan(args: RunArgs) -> Result<u8> {
    let mut request = args.request.to_request()?;
    request.dry_run = true;
    let backend = backend::connect(&args.backend).await?;
    let plan = plan_run(&backend.services, &request, &PlannerConfig::default()).await?;
    match args.output {
        OutputFormat::Json => print_json(&plan.preview()),
        OutputFormat::Table => print!("{}\n{}", output::plan_header(&plan), output::plan_table(&plan, args.all)),
    }
    Ok(0)
}

async fn run(args: RunArgs) -> Result<u8> {
    let request = args.request.to_request()?;
    let backend = backend::connect(&args.backend).await?;
    let plan = plan_run(&backend.services, &request, &PlannerConfig::default()).await?;
    let human = args.output == OutputFormat::Table;
    if human {
        eprint!("{}", output::plan_header(&plan));
    }
    let visible = human && std::io::stderr().is_terminal();
    let (events, progress) = crate::progress::spawn(plan.changes() as u64, plan.estimate.seconds, visible);
    let options = EngineOptions { jitter_seed: args.backend.seed, ..Default::default() };
    let summary = execute(&backend.services, &plan, options, Some(events)).await;
    let _ = progress.await;
    let summary = summary?;
    match args.output {
        OutputFormat::Json => print_json(&summary),
        OutputFormat::Table => {
            print!("{}", output::summary(&summary));
            println!("  results kept in {}", backend.store_location);
        }
    }
    Ok(summary.exit_code() as u8)
}

pub fn bench(args: BenchArgs) -> Result<u8> {
    if args.repeat == 0 || args.accounts.contains(&0) {
        return Err(sso_fanout_core::FanoutError::invalid("--accounts/--repeat", 0, "positive numbers, e.g. --accounts 29,500,5000 --repeat 20"));
    }
    let mut rows = Vec::new();
    for seed in args.seed..args.seed + args.repeat {
        let options = BenchOptions {
            seed,
            faults: match args.faults {
                FaultProfile::None => Faults::default(),
                FaultProfile::Chaos => Faults::chaos(),
            },
            tuning: args.batch_size.map(|b| Tuning { batch_size: Some(b), ..Default::default() }),
        };
        for &n in &args.accounts {
            if args.output == OutputFormat::Table {
                eprintln!("simulating {n} accounts, seed {seed}...");
            }
            if args.only_sso_fanout {
                rows.push(bench::run_sso_fanout(n, &options)?);
            } else {
                rows.extend(bench::run_all(&[n], &options)?);
            }
        }
    }
    match args.output {
        OutputFormat::Json => print_json(&rows),
        OutputFormat::Table if args.repeat > 1 => print!("{}", output::bench_spread(&rows)),
        OutputFormat::Table => print!("{}", output::bench_table(&rows)),
    }
    Ok(0)
}

async fn cache(refresh: bool, backend: &Backend, out: OutputFormat) -> Result<u8> {
    let store = backend.services.store.as_ref();
    let (_, scope) = plan::scope(backend.services.org.as_ref(), backend.services.ic.as_ref()).await?;
    let snapshot = if refresh { Some(load_org(backend.services.org.as_ref(), store, &scope, true, 0).await?) } else { store.cached_org(&scope).await? };
    let Some(org) = snapshot else {
        match out {
            OutputFormat::Json => print_json(&serde_json::json!({"cached": false, "store": backend.store_location})),
            OutputFormat::Table => println!("no account cache in {} yet: `sso-fanout cache refresh` (or any plan/run) fills it", backend.store_location),
        }
        return Ok(0);
    };
    let age_s = unix_now().saturating_sub(org.fetched_at);
    let mut by_status = std::collections::BTreeMap::new();
    for a in &org.accounts {
        *by_status.entry(format!("{:?}", a.status).to_uppercase()).or_insert(0usize) += 1;
    }
    let max_age = PlannerConfig::default().account_cache_max_age_s;
    match out {
        OutputFormat::Json => print_json(&serde_json::json!({
            "cached": true,
            "store": backend.store_location,
            "organizationId": org.organization_id,
            "managementAccountId": org.management_account_id,
            "accounts": org.accounts.len(),
            "byStatus": by_status,
            "fetchedAt": org.fetched_at,
            "ageSeconds": age_s,
            "fresh": age_s <= max_age,
        })),
        OutputFormat::Table => {
            println!("account cache in {}", backend.store_location);
            println!("  organization  {} (management account {})", org.organization_id, org.management_account_id);
            let counts: Vec<String> = by_status.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!("  accounts      {} ({})", org.accounts.len(), counts.join(", "));
            let freshness = if age_s <= max_age { "fresh" } else { "stale: the next plan re-reads Organizations" };
            println!("  age           {} ({freshness}; max {} s)", output::secs(age_s as f64), max_age);
        }
    }
    Ok(0)
}

async fn report(run_id: Option<String>, backend: &Backend, out: OutputFormat) -> Result<u8> {
    let store = backend.services.store.as_ref();
    let Some(run_id) = run_id else {
        let runs = store.list_runs(20).await?;
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                let outcome = r.summary.as_ref().map(|s| format!("{:?}", s.outcome).to_lowercase()).unwrap_or_else(|| format!("{:?}", r.status).to_lowercase());
                vec![r.plan.run_id.clone(), r.plan.operation.as_str().into(), r.plan.permission_set.name.clone(), r.plan.target_count().to_string(), outcome]
            })
            .collect();
        match out {
            OutputFormat::Json => print_json(&runs.iter().map(|r| serde_json::json!({"runId": r.plan.run_id, "status": r.status, "summary": r.summary})).collect::<Vec<_>>()),
            OutputFormat::Table => print!("{}", output::table(&["RUN", "OPERATION", "PERMISSION SET", "TARGETS", "OUTCOME"], &rows)),
        }
        return Ok(0);
    };
    let record = store
        .get_run(&run_id)
        .await?
        .ok_or_else(|| sso_fanout_core::FanoutError::not_found("run", &run_id, format!("no such run in {}", backend.store_location)))?;
    let Some(summary) = record.summary else {
        match out {
            OutputFormat::Json => print_json(&serde_json::json!({"runId": run_id, "status": record.status})),
            OutputFormat::Table => println!("{run_id} is {:?}: no summary yet", record.status),
        }
        return Ok(0);
    };
    match out {
        OutputFormat::Json => print_json(&summary),
        OutputFormat::Table => print!("{}", output::summary(&summary)),
    }
    Ok(summary.exit_code() as u8)
}
