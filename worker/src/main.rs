//! `freezer-worker`: parses the command line, runs the command, maps errors to exit codes and
//! prints them with their causes and a `hint:` line when the error carries guidance.

use clap::Parser;
use freezer_worker::cli::{self, Cli};
use std::io::IsTerminal;

/// Keeps memory bounded by what the pipeline holds: glibc otherwise raises its mmap threshold after
/// the first large free and keeps freed multi-MiB chunk buffers in per-thread arenas.
fn bound_allocator() {
    // SAFETY: mallopt only changes allocator tunables; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

fn main() {
    bound_allocator();
    let cli = Cli::parse();
    if matches!(cli.command, cli::Command::Run) {
        // The daemon logs JSON and handles SIGTERM itself (finish or abandon tasks, then exit 0).
        let code = match freezer_worker::config::WorkerConfig::load(cli.config.as_deref()) {
            Ok(config) => freezer_worker::daemon::main(config),
            Err(e) => {
                eprintln!("freezer-worker: {}", e.report());
                e.kind.exit_code()
            }
        };
        std::process::exit(code);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("FREEZER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    // The root token of this run: SIGINT/SIGTERM cancel it, the engine stops at its next check.
    let cancel = freezer_worker::CancellationToken::new();
    let on_signal = cancel.clone();
    let _ = ctrlc::set_handler(move || on_signal.cancel());
    let code = match cli::run(cli, &cancel) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("freezer-worker: {}", e.report());
            e.kind.exit_code()
        }
    };
    std::process::exit(code);
}
