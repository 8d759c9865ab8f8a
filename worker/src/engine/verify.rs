//! The verify command: proves that what is stored can be restored. Structural checks use the
//! listing only; `--read-data` checks every segment's tag, decompresses it and parses the archive
//! against the index; `--compare-to` compares the backup's state with a live tree, per file.

use super::reader::{self, ArchiveStream, SegmentSource};
use super::walk::{self, Dereference, Excludes, Found, Visitor};
use crate::catalog::{self, name_prefix, Record};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::index::{nanos, Entry, EntryType};
use crate::storage::Storage;
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How much stored data verify reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// Listing and manifests only.
    None,
    /// Every segment and the archive structure.
    All,
    /// A random share of segments, in percent.
    Subset(f64),
}

/// Everything verify needs.
#[derive(Clone)]
pub struct VerifyOptions {
    /// Where the backups live.
    pub storage: Arc<dyn Storage>,
    /// Segments transferred at once (`--queue-size`).
    pub queue_size: usize,
    /// Backup name.
    pub backup_name: String,
    /// Host part of the storage key.
    pub hostname: String,
    /// Verify the chain of the backup at or before this time (all backups when `None`).
    pub date: Option<Timestamp>,
    /// Passphrase, to check tags of encrypted backups.
    pub pass: Option<Vec<u8>>,
    /// How much data to read.
    pub read: ReadData,
    /// Compare the backup's state with this live tree.
    pub compare_to: Option<PathBuf>,
}

/// The verify result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Backups checked.
    pub checked: Vec<String>,
    /// Every damaged object, named.
    pub damaged: Vec<String>,
    /// Backups whose tags could not be checked (encrypted, no key given).
    pub unkeyed: Vec<String>,
    /// Segments read and checked.
    pub segments_read: u64,
    /// Differences between the backup and `--compare-to`.
    pub differences: Vec<String>,
    /// Whether nothing is damaged.
    pub sound: bool,
}

/// Runs verify; cancelling `cancel` stops it (exit 130) between backups, the segment readers
/// taking no further segment and the archive check no further entry.
pub fn verify(opts: &VerifyOptions, cancel: &CancellationToken) -> Result<VerifyReport> {
    opts.storage.check_container()?;
    let storage = opts.storage.clone();
    let hn = name_prefix(&opts.hostname, &opts.backup_name);
    let objects = storage.list(&format!("{hn}/"))?;
    let (records, damaged) = catalog::load_from(&*storage, &objects)?;
    let mut report = VerifyReport {
        damaged: damaged.iter().map(|d| d.error.message.clone()).collect(),
        ..Default::default()
    };
    if records.is_empty() && damaged.is_empty() {
        return Err(Error::not_found(format!(
            "no backup of {hn} in {}",
            storage.describe("")
        )));
    }
    let target = catalog::pick_restore_point(&records, opts.date);
    let scope: Vec<&Record> = match (opts.date, target) {
        (Some(d), None) => {
            return Err(Error::not_found(format!(
                "no backup of {hn} at or before {}",
                d.rfc3339()
            )))
        }
        (Some(_), Some(t)) => chain_or_partial(&records, t, &mut report),
        (None, _) => records.iter().collect(),
    };
    for r in &scope {
        if let Some(p) = &r.manifest.parent_id {
            if !records.iter().any(|x| &x.manifest.backup_id == p) {
                report.damaged.push(format!(
                    "backup {}: its parent {p} is missing (manifest deleted or damaged): the chain is incomplete",
                    r.manifest.backup_id
                ));
            }
        }
    }
    report.damaged.dedup();

    // Manifest tags: the passphrase check for encrypted backups.
    // Per backup: None when its manifest failed, Some(None) when unencrypted or no key was given.
    let keys: Vec<Option<Option<Keys>>> =
        reader::open_each_keys(&*storage, &scope, opts.pass.as_deref())
            .into_iter()
            .zip(&scope)
            .map(|(k, r)| match (&r.manifest.encryption, &opts.pass, k) {
                (Some(_), None, _) => Some(None),
                (_, _, Ok(k)) => Some(k),
                (_, _, Err(e)) => {
                    report
                        .damaged
                        .push(format!("backup {}: {e}", r.manifest.backup_id));
                    None
                }
            })
            .collect();

    let sizes: HashMap<&str, u64> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    for (r, k) in scope.iter().zip(&keys) {
        if cancel.is_cancelled() {
            return Err(Error::interrupted());
        }
        report.checked.push(r.manifest.backup_id.clone());
        if r.manifest.encryption.is_some() && matches!(k, Some(None)) {
            report.unkeyed.push(r.manifest.backup_id.clone());
        }
        let missing = catalog::missing_objects(r, &sizes, |key| storage.describe(key));
        let structurally_whole = missing.is_empty();
        report.damaged.extend(missing);
        let Some(keys) = k else { continue };
        if opts.read == ReadData::None || report.unkeyed.contains(&r.manifest.backup_id) {
            continue;
        }
        let index = match reader::read_index(&*storage, r, keys.as_ref()) {
            Ok(i) => Some(i),
            Err(e) => {
                report.damaged.push(e.message);
                None
            }
        };
        let all_ok = read_segments(&storage, r, keys.clone(), opts.read, &mut report, cancel);
        if opts.read == ReadData::All && all_ok && structurally_whole {
            if let Some(index) = index {
                let queue = opts.queue_size;
                check_archive(
                    &storage,
                    r,
                    keys.clone(),
                    &index,
                    queue,
                    &mut report,
                    cancel,
                );
            }
        }
    }
    // A run cancelled while checking the last backup may have recorded false damage.
    if cancel.is_cancelled() {
        return Err(Error::interrupted());
    }

    if let Some(live) = &opts.compare_to {
        let t = target.ok_or_else(|| Error::not_found(format!("no backup of {hn} to compare")))?;
        let chain = catalog::chain_of(&records, t)?;
        let chain_keys = reader::open_all_keys(&*storage, &chain, opts.pass.as_deref())?;
        let index = reader::read_index(&*storage, t, chain_keys.last().and_then(|k| k.as_ref()))?;
        compare(
            &storage,
            &chain,
            &chain_keys,
            &index,
            live,
            opts.queue_size,
            &mut report,
        )?;
    }
    report.damaged.sort();
    report.damaged.dedup();
    report.sound = report.damaged.is_empty();
    Ok(report)
}

fn chain_or_partial<'a>(
    records: &'a [Record],
    t: &'a Record,
    report: &mut VerifyReport,
) -> Vec<&'a Record> {
    match catalog::chain_of(records, t) {
        Ok(c) => c,
        Err(e) => {
            report.damaged.push(e.message);
            vec![t]
        }
    }
}

/// Reads the chosen segments on all cores; records every damaged one. Returns whether all were sound.
fn read_segments(
    storage: &Arc<dyn Storage>,
    r: &Record,
    keys: Option<Keys>,
    read: ReadData,
    report: &mut VerifyReport,
    cancel: &CancellationToken,
) -> bool {
    let source = SegmentSource::new(storage.clone(), r, keys);
    let picks: Vec<usize> = match read {
        ReadData::Subset(pct) => {
            let n = source.len();
            let want = ((n as f64 * pct / 100.0).ceil() as usize).clamp(usize::from(n > 0), n);
            let mut all: Vec<usize> = (0..n).collect();
            // A cheap random shuffle: verify needs coverage over runs, not cryptographic choice.
            let mut seed = [0u8; 8];
            let _ = getrandom::fill(&mut seed);
            let mut x = u64::from_le_bytes(seed) | 1;
            for i in (1..all.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                all.swap(i, (x % (i as u64 + 1)) as usize);
            }
            all.truncate(want);
            all.sort_unstable();
            all
        }
        _ => (0..source.len()).collect(),
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (tx, rx) = crossbeam_channel::unbounded();
    for k in &picks {
        let _ = tx.send(*k);
    }
    drop(tx);
    let problems: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|_| {
                let rx = rx.clone();
                let source = &source;
                s.spawn(move || {
                    rx.iter()
                        .take_while(|_| !cancel.is_cancelled())
                        .filter_map(|k| source.load(k).err().map(|e| e.message))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    report.segments_read += picks.len() as u64;
    let ok = problems.is_empty();
    report.damaged.extend(problems);
    ok
}

/// Parses the archive and checks it holds every file the index places in this backup.
fn check_archive(
    storage: &Arc<dyn Storage>,
    r: &Record,
    keys: Option<Keys>,
    index: &[Entry],
    queue_size: usize,
    report: &mut VerifyReport,
    cancel: &CancellationToken,
) {
    let id = r.manifest.backup_id.as_str();
    let mut wanted: HashMap<&[u8], u64> = index
        .iter()
        .filter(|e| e.kind == EntryType::File && e.stored_in.as_deref() == Some(id))
        .map(|e| (e.path.0.as_slice(), e.size))
        .collect();
    let stream = ArchiveStream::open(storage.clone(), r, keys, queue_size);
    let mut archive = tar::Archive::new(stream);
    let outcome = (|| -> std::io::Result<()> {
        for item in archive.entries()? {
            if cancel.is_cancelled() {
                break;
            }
            let item = item?;
            if item.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = item.path_bytes().into_owned();
            if let Some(size) = wanted.remove(path.as_slice()) {
                if size != item.size() {
                    report.damaged.push(format!(
                        "backup {id}: archive entry {} has {} bytes, the index says {size}",
                        String::from_utf8_lossy(&path),
                        item.size()
                    ));
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        report
            .damaged
            .push(format!("backup {id}: archive does not parse: {e}"));
    }
    if !wanted.is_empty() {
        report.damaged.push(format!(
            "backup {id}: archive lacks {} file(s) its index places there",
            wanted.len()
        ));
    }
}

struct Live {
    entries: HashMap<Vec<u8>, std::fs::Metadata>,
    unreadable: Vec<String>,
}

impl Visitor for Live {
    fn visit(&mut self, found: Found<'_>) -> Result<()> {
        self.entries.insert(found.rel.to_vec(), found.meta);
        Ok(())
    }
    fn unreadable(&mut self, abs: &Path, err: std::io::Error) {
        self.unreadable.push(format!("{}: {err}", abs.display()));
    }
}

fn live_type(m: &std::fs::Metadata) -> EntryType {
    // A socket is reported as a file: it is never in a backup, so it shows as a difference.
    EntryType::from_mode(m.mode()).unwrap_or(EntryType::File)
}

/// Compares the backup's recorded state with the live tree `live`, per entry, naming differences.
fn compare(
    storage: &Arc<dyn Storage>,
    chain: &[&Record],
    keys: &[Option<Keys>],
    index: &[Entry],
    live: &Path,
    queue_size: usize,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut l = Live {
        entries: HashMap::new(),
        unreadable: Vec::new(),
    };
    walk::walk(live, Dereference::None, &Excludes::new(&[])?, &mut l)?;
    report.differences.extend(l.unreadable);
    let root_is_dir = index.first().is_some_and(|e| e.path.0 == b".");
    let abs_of = |rel: &[u8]| -> PathBuf {
        if rel == b"." || !root_is_dir {
            live.to_path_buf()
        } else {
            live.join(std::ffi::OsStr::from_bytes(rel))
        }
    };
    let mut seen = HashSet::new();
    let mut content_check: HashSet<&[u8]> = HashSet::new();
    for e in index {
        let p = e.path.to_string();
        seen.insert(e.path.0.as_slice());
        let Some(m) = l.entries.get(&e.path.0) else {
            report.differences.push(format!(
                "{p}: in the backup, missing from {}",
                live.display()
            ));
            continue;
        };
        let want = if e.kind == EntryType::Hardlink {
            EntryType::File
        } else {
            e.kind
        };
        if live_type(m) != want {
            report.differences.push(format!(
                "{p}: type {want:?} in the backup, {:?} live",
                live_type(m)
            ));
            continue;
        }
        let mut diffs = Vec::new();
        if e.kind == EntryType::File && m.size() != e.size {
            diffs.push(format!("size {} vs {}", e.size, m.size()));
        }
        if m.mode() & 0o7777 != e.mode {
            diffs.push(format!("mode {:o} vs {:o}", e.mode, m.mode() & 0o7777));
        }
        if (m.uid(), m.gid()) != (e.uid, e.gid) {
            diffs.push(format!(
                "owner {}:{} vs {}:{}",
                e.uid,
                e.gid,
                m.uid(),
                m.gid()
            ));
        }
        if matches!(e.kind, EntryType::File | EntryType::Symlink)
            && nanos(m.mtime(), m.mtime_nsec()) != e.mtime_ns
        {
            diffs.push("mtime".to_string());
        }
        if e.kind == EntryType::Symlink {
            let target = std::fs::read_link(abs_of(&e.path.0)).ok();
            let want = e.link.as_ref().map(|l| l.0.clone());
            if target.map(|t| t.as_os_str().as_bytes().to_vec()) != want {
                diffs.push("symlink target".to_string());
            }
        }
        if diffs.is_empty() && e.kind == EntryType::File {
            content_check.insert(e.path.0.as_slice());
        }
        if !diffs.is_empty() {
            report
                .differences
                .push(format!("{p}: {} (backup vs live)", diffs.join(", ")));
        }
    }
    let mut extra: Vec<String> = l
        .entries
        .keys()
        .filter(|k| !seen.contains(k.as_slice()))
        .map(|k| format!("{}: live, not in the backup", String::from_utf8_lossy(k)))
        .collect();
    extra.sort();
    report.differences.extend(extra);

    // Content: stream each backup of the chain once and compare its files with the live ones.
    let mut buf_a = vec![0u8; 256 * 1024];
    let mut buf_b = vec![0u8; 256 * 1024];
    for (r, k) in chain.iter().zip(keys) {
        let id = r.manifest.backup_id.as_str();
        let mut wanted: HashSet<&[u8]> = index
            .iter()
            .filter(|e| {
                e.stored_in.as_deref() == Some(id) && content_check.contains(e.path.0.as_slice())
            })
            .map(|e| e.path.0.as_slice())
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let stream = ArchiveStream::open(storage.clone(), r, k.clone(), queue_size);
        let errors = stream.error.clone();
        let mut archive = tar::Archive::new(stream);
        let entries = archive
            .entries()
            .map_err(|e| Error::integrity(format!("backup {id}: {e}")))?;
        for item in entries {
            let mut item = item.map_err(|e| {
                errors
                    .lock()
                    .ok()
                    .and_then(|mut s| s.take())
                    .unwrap_or_else(|| Error::integrity(format!("backup {id}: {e}")))
            })?;
            let path = item.path_bytes().into_owned();
            if !wanted.remove(path.as_slice()) {
                continue;
            }
            let mut file = match std::fs::File::open(abs_of(&path)) {
                Ok(f) => f,
                Err(e) => {
                    report.differences.push(format!(
                        "{}: cannot read live file: {e}",
                        String::from_utf8_lossy(&path)
                    ));
                    continue;
                }
            };
            let same = (|| -> std::io::Result<bool> {
                loop {
                    let n = item.read(&mut buf_a)?;
                    if n == 0 {
                        return Ok(file.read(&mut buf_b[..1])? == 0);
                    }
                    file.read_exact(&mut buf_b[..n])?;
                    if buf_a[..n] != buf_b[..n] {
                        return Ok(false);
                    }
                }
            })();
            if !same.unwrap_or(false) {
                report.differences.push(format!(
                    "{}: content differs",
                    String::from_utf8_lossy(&path)
                ));
            }
        }
        if let Some(e) = errors.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
    }
    Ok(())
}
