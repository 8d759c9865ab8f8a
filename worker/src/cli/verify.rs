//! `freezer-worker verify`.

use super::print_json;
use crate::config::WorkerConfig;
use crate::engine::verify;
use crate::error::{ErrorKind, Result};
use crate::resolve::{self, Origin, TransferFlags, VerifyPlan};
use crate::CancellationToken;
use clap::Args;
use freezer_contracts::{ByteSize, VerifySpec};
use std::path::PathBuf;

/// `verify` options: a verify task's, plus what only a command line has.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The options a verify task has too.
    #[command(flatten)]
    pub spec: VerifySpec,
    /// Passphrase file: needed to check the tags of encrypted backups.
    #[arg(long, env = "FREEZER_ENCRYPT_PASS_FILE")]
    pub encrypt_pass_file: Option<PathBuf>,
    /// Segments transferred at once, 1 to 256 (default: the configuration's, else 16).
    #[arg(long, env = "FREEZER_QUEUE_SIZE")]
    pub queue_size: Option<u32>,
    /// Upload limit in bytes per second over all transfers (suffixes K, M, G).
    #[arg(long, env = "FREEZER_UPLOAD_LIMIT")]
    pub upload_limit: Option<ByteSize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    /// Resolves these options as a task's spec would be.
    pub fn plan(&self, config: &WorkerConfig) -> Result<VerifyPlan> {
        let origin = Origin::Cli {
            pass_file: self.encrypt_pass_file.clone(),
            transfer: TransferFlags {
                queue_size: self.queue_size,
                upload_limit: self.upload_limit,
                download_limit: None,
            },
        };
        resolve::verify::resolve(&self.spec, config, &origin)
    }
}

/// Runs `verify`: exit code 12 when damage was found, 1 when the live tree differs.
pub fn run(a: VerifyArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let opts = a.plan(config)?.open(config, cancel)?;
    let r = verify::verify(&opts, cancel)?;
    if a.json {
        print_json(&r);
    } else {
        for d in &r.damaged {
            println!("DAMAGED: {d}");
        }
        for d in &r.differences {
            println!("DIFFERS: {d}");
        }
        if !r.unkeyed.is_empty() {
            eprintln!(
                "warning: {} encrypted backup(s) were checked for structure only: give --encrypt-pass-file to check their tags",
                r.unkeyed.len()
            );
        }
        println!(
            "verify: {} backup(s), {} segment(s) read: {}{}",
            r.checked.len(),
            r.segments_read,
            if r.sound { "sound" } else { "DAMAGED" },
            if r.differences.is_empty() {
                ""
            } else {
                ", differs from the live tree"
            }
        );
    }
    Ok(if !r.sound {
        ErrorKind::Integrity.exit_code()
    } else if !r.differences.is_empty() {
        1
    } else {
        0
    })
}
