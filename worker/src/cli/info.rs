//! `freezer-worker info`: the details of the backups of one name (a listing of one name, printed
//! in full). No task has this kind: a `list` task's JSON result carries the same rows.

use super::{print_json, TransferArgs};
use crate::config::WorkerConfig;
use crate::error::{Error, Result};
use crate::list;
use crate::progress::human_bytes;
use crate::resolve::{self, Origin};
use crate::CancellationToken;
use clap::Args;
use freezer_contracts::ListSpec;

/// `info` options: a list task's (with `--backup-name` required), plus `--backup-id`.
#[derive(Debug, Args)]
#[command(mut_arg("backup_name", |a| a.required(true)))]
pub struct InfoArgs {
    /// Which backups: the options of a list task.
    #[command(flatten)]
    pub spec: ListSpec,
    /// Transfer flags.
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Only this backup.
    #[arg(long)]
    pub backup_id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `info`: exit code 10 when no backup matches.
pub fn run(a: InfoArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let origin = Origin::Cli {
        pass_file: None,
        transfer: a.transfer.into(),
    };
    let plan = resolve::list::resolve(&a.spec, config, &origin)?;
    let name = plan
        .backup_name
        .clone()
        .ok_or_else(|| Error::usage("info needs --backup-name"))?;
    // Unlike a listing, info is about this machine's backups unless told otherwise.
    let host = resolve::host(config, plan.hostname.as_deref())?;
    let storage = plan.open(config, cancel)?;
    let (rows, damaged) = list::list(&*storage, Some(&name), Some(&host))?;
    for d in &damaged {
        eprintln!("warning: {d}");
    }
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| a.backup_id.as_ref().is_none_or(|id| &r.backup_id == id))
        .collect();
    if rows.is_empty() {
        return Err(Error::not_found(format!(
            "no backup {}of {host}_{name} in {}",
            a.backup_id
                .as_deref()
                .map(|i| format!("{i} "))
                .unwrap_or_default(),
            storage.describe("")
        )));
    }
    if a.json {
        print_json(&rows);
        return Ok(0);
    }
    for r in &rows {
        println!("backup {} ({}_{})", r.backup_id, r.hostname, r.backup_name);
        println!(
            "  level {} {:?}, parent {}, chain {}",
            r.level,
            r.kind,
            r.parent_id.as_deref().unwrap_or("-"),
            r.chain_id
        );
        println!("  started {}, finished {}", r.started_at, r.finished_at);
        println!(
            "  {} files, {} entries, read {}, stored {} in {} segments, {}{}",
            r.files,
            r.entries,
            human_bytes(r.bytes_read),
            human_bytes(r.bytes_stored),
            r.segments,
            r.compression,
            if r.encrypted { ", encrypted" } else { "" }
        );
        println!(
            "  restorable: {}",
            if r.restorable {
                "yes"
            } else {
                "NO (an object or an ancestor is missing)"
            }
        );
    }
    Ok(0)
}
