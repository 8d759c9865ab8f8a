//! `freezer-worker prune`.

use super::{print_json, TransferArgs};
use crate::config::WorkerConfig;
use crate::engine::prune;
use crate::error::Result;
use crate::progress::human_bytes;
use crate::resolve::{self, Origin, PrunePlan};
use crate::CancellationToken;
use clap::Args;
use freezer_contracts::PruneSpec;

/// `prune` options: a prune task's, plus what only a command line has.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The options a prune task has too.
    #[command(flatten)]
    pub spec: PruneSpec,
    /// Transfer flags (a prune task has none).
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl PruneArgs {
    /// Resolves these options as a task's spec would be.
    pub fn plan(&self, config: &WorkerConfig) -> Result<PrunePlan> {
        let origin = Origin::Cli {
            pass_file: None,
            transfer: self.transfer.into(),
        };
        resolve::prune::resolve(&self.spec, config, &origin)
    }
}

/// Runs `prune`.
pub fn run(a: PruneArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let r = prune::prune(&a.plan(config)?.open(config, cancel)?, cancel)?;
    if a.json {
        print_json(&r);
        return Ok(0);
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    for n in &r.names {
        for d in &n.damaged {
            eprintln!("warning: {d}");
        }
        for d in &n.deleted {
            println!(
                "{verb} {} backup {} level {} ({})",
                n.name,
                d.backup_id,
                d.level,
                human_bytes(d.bytes)
            );
        }
        for d in &n.debris {
            println!(
                "{verb} debris {} ({} objects, {})",
                d.path,
                d.objects,
                human_bytes(d.bytes)
            );
        }
        let bytes: u64 = n.deleted.iter().map(|d| d.bytes).sum::<u64>()
            + n.debris.iter().map(|d| d.bytes).sum::<u64>();
        println!(
            "{}: kept {}, {verb} {} backup(s) and {} debris dir(s), {}",
            n.name,
            n.kept.len(),
            n.deleted.len(),
            n.debris.len(),
            human_bytes(bytes)
        );
    }
    Ok(0)
}
