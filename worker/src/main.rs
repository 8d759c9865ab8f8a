//! `freezer-worker`: parses the command line, runs the command, maps errors to exit codes.

use clap::Parser;
use freezer_worker::cli::{self, Cli};
use std::io::IsTerminal;

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FREEZER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    let _ = ctrlc::set_handler(freezer_worker::interrupt);
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("freezer-worker: {e}");
            e.kind.exit_code()
        }
    };
    std::process::exit(code);
}
