//! `freezer-worker list`.

use super::{print_json, TransferArgs};
use crate::config::WorkerConfig;
use crate::error::Result;
use crate::list;
use crate::resolve::{self, ListPlan, Origin};
use crate::CancellationToken;
use clap::Args;
use freezer_contracts::ListSpec;

/// `list` options: a list task's, plus what only a command line has.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The options a list task has too.
    #[command(flatten)]
    pub spec: ListSpec,
    /// Transfer flags (a list task has none).
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl ListArgs {
    /// Resolves these options as a task's spec would be.
    pub fn plan(&self, config: &WorkerConfig) -> Result<ListPlan> {
        let origin = Origin::Cli {
            pass_file: None,
            transfer: self.transfer.into(),
        };
        resolve::list::resolve(&self.spec, config, &origin)
    }
}

/// Runs `list`.
pub fn run(a: ListArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let plan = a.plan(config)?;
    let (rows, damaged) = list::list(
        &*plan.open(config, cancel)?,
        plan.backup_name.as_deref(),
        plan.hostname.as_deref(),
    )?;
    for d in &damaged {
        eprintln!("warning: {d}");
    }
    if a.json {
        print_json(&rows);
    } else {
        print!("{}", list::table(&rows));
    }
    Ok(0)
}
