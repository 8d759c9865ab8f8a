//! `freezer-worker restore`.

use super::print_json;
use crate::config::WorkerConfig;
use crate::engine::restore;
use crate::error::Result;
use crate::progress::human_bytes;
use crate::resolve::{self, Origin, RestorePlan, TransferFlags};
use crate::CancellationToken;
use clap::Args;
use freezer_contracts::{ByteSize, RestoreSpec};
use std::path::PathBuf;

/// `restore` options: a restore task's, plus what only a command line has.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The options a restore task has too.
    #[command(flatten)]
    pub spec: RestoreSpec,
    /// Passphrase file for encrypted backups.
    #[arg(long, env = "FREEZER_ENCRYPT_PASS_FILE")]
    pub encrypt_pass_file: Option<PathBuf>,
    /// Upload limit in bytes per second over all transfers (suffixes K, M, G).
    #[arg(long, env = "FREEZER_UPLOAD_LIMIT")]
    pub upload_limit: Option<ByteSize>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl RestoreArgs {
    /// Resolves these options as a task's spec would be.
    pub fn plan(&self, config: &WorkerConfig) -> Result<RestorePlan> {
        let origin = Origin::Cli {
            pass_file: self.encrypt_pass_file.clone(),
            transfer: TransferFlags {
                upload_limit: self.upload_limit,
                ..TransferFlags::default()
            },
        };
        resolve::restore::resolve(&self.spec, config, &origin)
    }
}

/// Runs `restore`.
pub fn run(a: RestoreArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let opts = a
        .plan(config)?
        .open(config, !a.json, Default::default(), cancel)?;
    let r = restore::restore(&opts, cancel)?;
    if a.json {
        print_json(&r);
    } else {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        let speed = r.bytes_written as f64 / r.duration_seconds.max(1e-6);
        println!(
            "{}restore of {} (level {}, {} backup(s) read): {} entries, {} files, {}, {}/s, {:.2} s",
            if r.dry_run { "dry run: " } else { "" },
            r.backup_id,
            r.level,
            r.chain.len(),
            r.entries,
            r.files,
            human_bytes(r.bytes_written),
            human_bytes(speed as u64),
            r.duration_seconds
        );
    }
    Ok(0)
}
