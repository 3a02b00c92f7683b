//! The `sso-fanout` command line as a library. [`run`] parses the arguments, picks the runtime
//! (one thread for the simulator, so a seed reproduces a run; a paused clock with
//! `--virtual-time`), runs one command and returns the documented exit code, writing only to
//! the [`Io`] it is given: `main.rs` passes the process's streams, tests capture them.
//!
//! | file | what |
//! |---|---|
//! | `args.rs` | clap definitions; request flags -> the same `RunRequest` as `--request FILE` |
//! | `commands.rs` | one function per subcommand |
//! | `backend.rs` | the ports: simulator (`--sim N`) or AWS, and the store |
//! | `store.rs` | the embedded store (one redb file): account cache, runs, results, latencies |
//! | `remote.rs` | `start` / `status` of the deployed state machine |
//! | `output.rs` | human tables and views (JSON is the serde form of the same structs) |
//! | `progress.rs` | live progress: a bar on a terminal, periodic lines in a log |
//! | `io.rs` | stdout / stderr sinks, the interrupt |

pub mod args;
mod backend;
mod commands;
pub mod io;
mod output;
mod progress;
pub mod quota_file;
mod remote;
pub mod store;

pub use io::{Captured, Io};

use args::{Cli, Command, OutputFormat};
use clap::Parser;
use std::ffi::OsString;

/// The exit codes scripts and CI rely on (README "CLI").
pub mod exit {
    /// Every target account succeeded or already was as requested (or nothing to report).
    pub const OK: u8 = 0;
    /// The request was rejected before any change (bad input, usage error) or could not start.
    pub const REJECTED: u8 = 1;
    /// Some accounts failed, timed out or never ran; the summary lists them.
    pub const INCOMPLETE: u8 = 2;
    /// `plan` of a rules document: the live state differs from it.
    pub const DRIFT: u8 = 2;
    /// Interrupted (Ctrl-C): the summary covers what was done; re-running resumes.
    pub const INTERRUPTED: u8 = 130;
}

/// Runs the command line `args` (program name first) and returns its exit code.
pub fn run<I, T>(args: I, io: &mut Io) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &args, io),
    };
    init_logging();
    let output = cli.command.output();
    if output == OutputFormat::Markdown && !matches!(cli.command, Command::Plan(_)) {
        io.err.line("error: --output markdown is the drift report of `plan` (a CI job summary); use table or json here");
        return exit::REJECTED;
    }
    let outcome = match cli.command {
        // The bench builds one paused runtime per simulated run itself.
        Command::Bench(args) => commands::bench(args, io),
        command => {
            // The simulator runs on one thread so that a seed reproduces a run exactly.
            let mut builder = if command.simulated() {
                tokio::runtime::Builder::new_current_thread()
            } else {
                tokio::runtime::Builder::new_multi_thread()
            };
            let runtime = builder.enable_all().start_paused(command.virtual_time()).build().expect("tokio runtime");
            runtime.block_on(commands::dispatch(command, io))
        }
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            if output == OutputFormat::Json {
                io.json(&serde_json::json!({"error": {"type": e.error_type(), "message": e.to_string()}}));
            }
            io.err.line(format!("error: {e}"));
            if e.is_request_error() {
                io.err.line("nothing was changed.");
            }
            exit::REJECTED
        }
    }
}

/// Help and version go to stdout (exit 0); any other argument error is a rejected request
/// (exit 1, never 2, which means "some accounts failed"), as JSON too when asked for.
fn usage_error(e: clap::Error, args: &[OsString], io: &Io) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        io.out.write(&e.render().to_string());
        return exit::OK;
    }
    let wants_json = args.windows(2).any(|w| w[0] == "--output" && w[1] == "json") || args.iter().any(|a| a == "--output=json");
    if wants_json {
        // The first paragraph: "the following required arguments were not provided: --sim <N>".
        let rendered = e.render().to_string();
        let first: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
        let message = first.join(" ").trim_start_matches("error: ").to_string();
        io.json(&serde_json::json!({"error": {"type": "InvalidRequest", "message": message}}));
    }
    io.err.write(&e.render().to_string());
    exit::REJECTED
}

/// `SSO_FANOUT_LOG=debug` shows the engine's decisions on stderr (colours only on a terminal).
fn init_logging() {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SSO_FANOUT_LOG").unwrap_or_else(|_| "off".into()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
