//! `freezer-dispatcher`: turns job definitions into tasks on RabbitMQ and follows their results
//! (ARCHITECTURE.md §1, §4, §5). The command line is in [`cli`]; the work is done by the
//! `freezer_dispatcher` library. `serve` logs JSON lines at `info` (a service, ARCHITECTURE.md §6); the
//! other commands log warnings for a human. `FREEZER_LOG` overrides the filter.

mod cli;

use clap::Parser;
use freezer_dispatcher::Error;
use std::process::ExitCode;

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help/--version, as ARCHITECTURE.md §6 wants.
    let cli = cli::Cli::parse();
    let service = matches!(cli.command, cli::Command::Serve);
    let default = if service {
        "info,lapin=warn"
    } else {
        "warn,lapin=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FREEZER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if service {
        logs.json().init();
    } else {
        logs.init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("freezer-dispatcher: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            match e {
                // A wait that ended early says what happens to the task or run, not what failed.
                Error::Timeout(_) | Error::Interrupted(_) => eprintln!("{e}"),
                _ => eprintln!("freezer-dispatcher: {}", e.report()),
            }
            e.exit_code()
        }
    };
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
