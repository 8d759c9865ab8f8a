//! `freezer-worker backup`.

use super::print_json;
use crate::config::WorkerConfig;
use crate::engine::backup;
use crate::error::Result;
use crate::progress::human_bytes;
use crate::resolve::{self, BackupPlan, Origin, TransferFlags};
use crate::CancellationToken;
use clap::Args;
use freezer_contracts::{BackupSpec, ByteSize};
use std::path::PathBuf;

/// `backup` options: a backup task's, plus what only a command line has.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The options a backup task has too.
    #[command(flatten)]
    pub spec: BackupSpec,
    /// Encrypt with the passphrase on this file's first line.
    #[arg(long, env = "FREEZER_ENCRYPT_PASS_FILE")]
    pub encrypt_pass_file: Option<PathBuf>,
    /// Download limit in bytes per second over all transfers (suffixes K, M, G).
    #[arg(long, env = "FREEZER_DOWNLOAD_LIMIT")]
    pub download_limit: Option<ByteSize>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BackupArgs {
    /// Resolves these options as a task's spec would be.
    pub fn plan(&self, config: &WorkerConfig) -> Result<BackupPlan> {
        let origin = Origin::Cli {
            pass_file: self.encrypt_pass_file.clone(),
            transfer: TransferFlags {
                download_limit: self.download_limit,
                ..TransferFlags::default()
            },
        };
        resolve::backup::resolve(&self.spec, config, &origin)
    }
}

/// Runs `backup`; exit code 3 when some files could not be read.
pub fn run(a: BackupArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let opts = a
        .plan(config)?
        .open(config, !a.json, Default::default(), cancel)?;
    let r = backup::backup(&opts, cancel)?;
    if a.json {
        print_json(&r);
    } else {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        let ratio = if r.bytes_stored > 0 {
            r.bytes_read as f64 / r.bytes_stored as f64
        } else {
            0.0
        };
        let speed = r.bytes_read as f64 / r.duration_seconds.max(1e-6);
        println!(
            "{}backup {} level {} ({:?}): {} files, {} stored now; read {}, stored {}, ratio {ratio:.2}, {}/s, {:.2} s",
            if r.dry_run { "dry run: " } else { "" },
            r.backup_id,
            r.level,
            r.kind,
            r.files,
            r.files_stored,
            human_bytes(r.bytes_read),
            human_bytes(r.bytes_stored),
            human_bytes(speed as u64),
            r.duration_seconds
        );
    }
    if r.unreadable > 0 {
        eprintln!(
            "freezer-worker: {} file(s) could not be read completely; the backup was written without them",
            r.unreadable
        );
        return Ok(3);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use clap::Parser;
    use freezer_contracts::ByteSize;

    fn segment_size(v: &str) -> Result<Option<ByteSize>, clap::Error> {
        let cli =
            Cli::try_parse_from(["freezer-worker", "backup", "-F", "/x", "-N", "n", "-M", v])?;
        let Command::Backup(a) = cli.command else {
            unreachable!()
        };
        Ok(a.spec.max_segment_size)
    }

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(segment_size("4M").unwrap(), Some(ByteSize(4 << 20)));
        assert_eq!(segment_size("512k").unwrap(), Some(ByteSize(512 << 10)));
        assert_eq!(segment_size("1000").unwrap(), Some(ByteSize(1000)));
        assert!(segment_size("3X").is_err());
        assert!(segment_size("").is_err());
    }
}
