//! The prune command: applies a retention policy to each backup name of a container and removes
//! the debris of interrupted runs. A backup is deleted manifest first (children before parents), then
//! its objects, so an interrupted prune never leaves a visible but broken backup; rerunning it
//! finishes the job. It needs no key: manifests are plain JSON.

use crate::catalog::{self, name_prefix, Record};
use crate::error::{Error, Result};
use crate::lock::NameLock;
use crate::retention::{self, Candidate, KeepPolicy, KeepReason};
use crate::storage::{ObjectInfo, Storage};
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything a prune needs.
#[derive(Clone)]
pub struct PruneOptions {
    /// Where the backups live.
    pub storage: Arc<dyn Storage>,
    /// Only this backup name (all names when `None`).
    pub backup_name: Option<String>,
    /// Only this host (all hosts when `None`).
    pub hostname: Option<String>,
    /// The retention policy.
    pub policy: KeepPolicy,
    /// Debris (objects of backups without a manifest) younger than this is left alone: it may
    /// belong to a backup still running on another machine.
    pub debris_grace_hours: f64,
    /// Report, delete nothing.
    pub dry_run: bool,
}

/// A backup that is kept.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    /// Its id.
    pub backup_id: String,
    /// Its level.
    pub level: u32,
    /// Why it stays.
    pub reason: KeepReason,
}

/// A backup that is (or would be) deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    /// Its id.
    pub backup_id: String,
    /// Its level.
    pub level: u32,
    /// Its directory.
    pub path: String,
    /// Bytes freed.
    pub bytes: u64,
}

/// Leftovers of an interrupted run.
#[derive(Debug, Clone, Serialize)]
pub struct Debris {
    /// The directory.
    pub path: String,
    /// Objects in it.
    pub objects: usize,
    /// Bytes freed.
    pub bytes: u64,
}

/// What happened to one `<host>_<name>`.
#[derive(Debug, Clone, Serialize)]
pub struct NameReport {
    /// `<host>_<name>`.
    pub name: String,
    /// Kept backups, newest first.
    pub kept: Vec<Kept>,
    /// Deleted backups, newest first.
    pub deleted: Vec<Deleted>,
    /// Removed debris.
    pub debris: Vec<Debris>,
    /// Manifests that could not be read (left alone).
    pub damaged: Vec<String>,
}

/// The prune result.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// One report per backup name.
    pub names: Vec<NameReport>,
    /// Storage list requests made.
    pub list_requests: u64,
}

/// Runs a prune; cancelling `cancel` stops it (exit 130) between names and between deletions,
/// where stopping is safe: every backup still visible keeps its parent, and objects whose
/// manifest is gone are debris the next run removes.
pub fn prune(opts: &PruneOptions, cancel: &CancellationToken) -> Result<PruneReport> {
    let stop = || match cancel.is_cancelled() {
        true => Err(Error::interrupted()),
        false => Ok(()),
    };
    if opts.policy.is_empty() {
        return Err(Error::usage(
            "prune needs a policy: --remove-older-than, --remove-from-date or a --keep-* option",
        ));
    }
    opts.storage.check_container()?;
    let storage = &*opts.storage;
    let prefix = catalog::listing_prefix(opts.hostname.as_deref(), opts.backup_name.as_deref());
    let objects = storage.list(&prefix)?;
    let now = Timestamp::now();

    // Group every object by the backup directory it belongs to, and directories by name.
    let mut dirs: BTreeMap<String, Vec<&ObjectInfo>> = BTreeMap::new();
    for o in &objects {
        if let Some(dir) = catalog::backup_dir_of(&o.key) {
            dirs.entry(dir.to_string()).or_default().push(o);
        }
    }
    let (records, damaged) = catalog::load_from(storage, &objects)?;
    let wanted = |hn: &str| -> bool {
        let by_name = opts
            .backup_name
            .as_ref()
            .is_none_or(|n| hn.ends_with(&format!("_{n}")));
        let by_host = opts
            .hostname
            .as_ref()
            .is_none_or(|h| hn.starts_with(&format!("{h}_")));
        by_name && by_host
    };
    let mut names: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        let hn = name_prefix(&r.manifest.hostname, &r.manifest.backup_name);
        if wanted(&hn) {
            names.entry(hn).or_default().push(r);
        }
    }
    for dir in dirs.keys() {
        let hn = dir.split('/').next().unwrap_or_default().to_string();
        if wanted(&hn) {
            names.entry(hn).or_default();
        }
    }

    let mut report = PruneReport {
        dry_run: opts.dry_run,
        names: Vec::new(),
        list_requests: 1,
    };
    for (hn, recs) in names {
        stop()?;
        let _lock = if opts.dry_run {
            NameLock::none()
        } else {
            storage.lock_name(&hn)?
        };
        let candidates: Vec<Candidate> = recs
            .iter()
            .map(|r| Candidate {
                id: r.manifest.backup_id.clone(),
                parent: r.manifest.parent_id.clone(),
                time: r.time,
            })
            .collect();
        let decision = retention::decide(&opts.policy, &candidates, now);
        let by_id: BTreeMap<&str, &Record> = recs
            .iter()
            .map(|r| (r.manifest.backup_id.as_str(), *r))
            .collect();
        let mut nr = NameReport {
            name: hn.clone(),
            kept: decision
                .keep
                .iter()
                .map(|(id, reason)| Kept {
                    backup_id: id.clone(),
                    level: by_id.get(id.as_str()).map_or(0, |r| r.manifest.level),
                    reason: *reason,
                })
                .collect(),
            deleted: Vec::new(),
            debris: Vec::new(),
            damaged: damaged
                .iter()
                .filter(|d| d.key.starts_with(&format!("{hn}/")))
                .map(|d| d.error.message.clone())
                .collect(),
        };
        for id in &decision.delete {
            let r = by_id[id.as_str()];
            let objs = dirs.get(&r.dir).map(Vec::as_slice).unwrap_or_default();
            nr.deleted.push(Deleted {
                backup_id: id.clone(),
                level: r.manifest.level,
                path: storage.describe(&r.dir),
                bytes: objs.iter().map(|o| o.size).sum(),
            });
        }
        // Debris: backup directories of this name with no manifest, untouched for the grace period.
        let grace_micros = (opts.debris_grace_hours * 3_600_000_000.0) as i64;
        let mut debris_dirs = Vec::new();
        let damaged_dirs: Vec<&str> = damaged
            .iter()
            .filter_map(|d| catalog::backup_dir_of(&d.key))
            .collect();
        for (dir, objs) in dirs.range(format!("{hn}/")..) {
            if !dir.starts_with(&format!("{hn}/")) {
                break;
            }
            let has_manifest = objs.iter().any(|o| o.key.ends_with("/manifest.json"));
            if has_manifest || damaged_dirs.contains(&dir.as_str()) {
                continue;
            }
            let newest = objs.iter().filter_map(|o| o.modified).max();
            let old_enough = newest.is_none_or(|m| now.micros - m.micros >= grace_micros);
            if old_enough {
                debris_dirs.push(dir.clone());
                nr.debris.push(Debris {
                    path: storage.describe(dir),
                    objects: objs.len(),
                    bytes: objs.iter().map(|o| o.size).sum(),
                });
            }
        }
        if !opts.dry_run {
            // Manifests first, newest first: every backup still visible keeps its parent.
            for id in &decision.delete {
                stop()?;
                storage.delete(&format!("{}/manifest.json", by_id[id.as_str()].dir))?;
            }
            for id in &decision.delete {
                stop()?;
                delete_objects(storage, dirs.get(&by_id[id.as_str()].dir))?;
            }
            for dir in &debris_dirs {
                stop()?;
                delete_objects(storage, dirs.get(dir))?;
            }
            storage.tidy(&format!("{hn}/"))?;
        }
        report.names.push(nr);
    }
    Ok(report)
}

/// Deletes a backup directory's objects (its manifest is already gone: the commit point first).
fn delete_objects(storage: &dyn Storage, objs: Option<&Vec<&ObjectInfo>>) -> Result<()> {
    for o in objs.map(Vec::as_slice).unwrap_or_default() {
        storage.delete(&o.key)?;
    }
    Ok(())
}
