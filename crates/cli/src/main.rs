//! `sso-fanout`: the command line. Everything lives in the library (`lib.rs`); this only hands
//! it the process's arguments and streams.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(sso_fanout_cli::run(std::env::args_os(), &mut sso_fanout_cli::Io::std()))
}
