//! `sso-fanout`: the CLI. Parses arguments, picks the runtime (a virtual clock for simulator
//! runs that ask for it), runs a command and maps its outcome to the documented exit codes.

mod args;
mod aws;
mod backend;
mod commands;
mod output;
mod progress;
mod remote;

use args::{Cli, Command, OutputFormat};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SSO_FANOUT_LOG").unwrap_or_else(|_| "off".into()))
        .with_writer(std::io::stderr)
        .init();
    let (output, virtual_time, simulated) = match &cli.command {
        Command::Plan(a) | Command::Run(a) => (a.output, a.virtual_time, a.backend.sim.is_some()),
        Command::Bench(b) => (b.output, false, true),
        Command::Cache { action: args::CacheAction::Status(c) | args::CacheAction::Refresh(c) } => (c.output, false, c.backend.sim.is_some()),
        Command::Report { output, backend, .. } => (*output, false, backend.sim.is_some()),
        Command::Start(a) => (a.output, false, false),
        Command::Status(a) => (a.output, false, false),
    };
    // The simulator runs on one thread so that a seed reproduces a run exactly.
    let mut builder = if simulated { tokio::runtime::Builder::new_current_thread() } else { tokio::runtime::Builder::new_multi_thread() };
    let outcome = match cli.command {
        // The bench builds one paused runtime per simulated run itself.
        Command::Bench(args) => commands::bench(args),
        command => builder.enable_all().start_paused(virtual_time).build().expect("tokio runtime").block_on(commands::dispatch(command)),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if output == OutputFormat::Json {
                let doc = serde_json::json!({"error": {"type": e.error_type(), "message": e.to_string()}});
                println!("{doc}");
            }
            eprintln!("error: {e}");
            if e.is_request_error() {
                eprintln!("nothing was changed.");
            }
            ExitCode::from(1)
        }
    }
}
