//! The standalone command line (`freezer-worker backup|restore|list|...`): option names follow
//! OpenStack Freezer's agent (ARCHITECTURE.md §6) so its users' scripts carry over.
//!
//! Each command parses into the contracts' spec of its kind (the same type a task carries),
//! flattened with the few flags only a command line has (`--encrypt-pass-file`, `--json`, transfer
//! flags the spec lacks); [`crate::resolve`] turns that into the engine's options exactly as it
//! does for a task. One module per command: its arguments, then how it runs and prints.

pub mod backup;
pub mod info;
pub mod list;
pub mod prune;
pub mod restore;
pub mod verify;

use crate::config::WorkerConfig;
use crate::error::Result;
use crate::resolve::TransferFlags;
use crate::CancellationToken;
use clap::{Args, Parser, Subcommand};
use freezer_contracts::ByteSize;
use std::path::PathBuf;

pub use backup::BackupArgs;
pub use info::InfoArgs;
pub use list::ListArgs;
pub use prune::PruneArgs;
pub use restore::RestoreArgs;
pub use verify::VerifyArgs;

/// `freezer-worker`: back up, restore and list backups.
#[derive(Debug, Parser)]
#[command(
    name = "freezer-worker",
    version,
    about = "Freezer backup worker (standalone commands)"
)]
pub struct Cli {
    /// Worker configuration file (named storages, S3/SSH settings, transfer limits, keys);
    /// default /etc/freezer/worker.toml when it exists.
    #[arg(long, global = true, env = "FREEZER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The standalone commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a directory or file.
    Backup(BackupArgs),
    /// Restore a backup into a directory.
    Restore(RestoreArgs),
    /// List the backups in a container.
    List(ListArgs),
    /// Show the details of backups (all of a name, or one by id).
    Info(InfoArgs),
    /// Delete backups a retention policy lets go, never breaking a chain; remove debris.
    Prune(PruneArgs),
    /// Check that stored backups are sound (and, with --read-data, restorable).
    Verify(VerifyArgs),
    /// Run the worker daemon: consume tasks from RabbitMQ (the `[daemon]` section of --config).
    Run,
}

/// Runs a parsed command until it ends or `cancel` (the CLI's root token, which its SIGINT
/// handler cancels) stops it; returns the process exit code.
pub fn run(cli: Cli, cancel: &CancellationToken) -> Result<i32> {
    let config = WorkerConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Backup(a) => backup::run(a, &config, cancel),
        Command::Restore(a) => restore::run(a, &config, cancel),
        Command::List(a) => list::run(a, &config, cancel),
        Command::Info(a) => info::run(a, &config, cancel),
        Command::Prune(a) => prune::run(a, &config, cancel),
        Command::Verify(a) => verify::run(a, &config, cancel),
        Command::Run => Ok(crate::daemon::main(config)),
    }
}

/// The transfer flags of the commands whose spec has none (list, info, prune): every command
/// takes all three, as it always has.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct TransferArgs {
    /// Segments transferred at once, 1 to 256.
    #[arg(long, env = "FREEZER_QUEUE_SIZE")]
    pub queue_size: Option<u32>,
    /// Upload limit in bytes per second over all transfers (suffixes K, M, G).
    #[arg(long, env = "FREEZER_UPLOAD_LIMIT")]
    pub upload_limit: Option<ByteSize>,
    /// Download limit in bytes per second over all transfers (suffixes K, M, G).
    #[arg(long, env = "FREEZER_DOWNLOAD_LIMIT")]
    pub download_limit: Option<ByteSize>,
}

impl From<TransferArgs> for TransferFlags {
    fn from(a: TransferArgs) -> TransferFlags {
        TransferFlags {
            queue_size: a.queue_size,
            upload_limit: a.upload_limit,
            download_limit: a.download_limit,
        }
    }
}

/// Prints a report as pretty JSON (`--json`).
fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("report serializes")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_options_conflict() {
        let r = Cli::try_parse_from([
            "freezer-worker",
            "backup",
            "-F",
            "/x",
            "-N",
            "n",
            "-C",
            "/c",
            "--max-level",
            "2",
            "--always-level",
            "1",
        ]);
        assert!(r.is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
