//! The restore command: pick the point in time, check every key and tag that can be checked before
//! writing, then rebuild the recorded tree, fetching each file once from the backup that holds it.

use super::extract::{validate_path, SparseWriter, Target};
use super::reader::{self, ArchiveStream};
use crate::catalog::{self, name_prefix, Record};
use crate::error::{Error, ErrorKind, Result};
use crate::index::{Entry, EntryType};
use crate::progress::{Counters, Progress};
use crate::storage::Storage;
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Everything a restore needs.
#[derive(Clone)]
pub struct RestoreOptions {
    /// Where the backups live.
    pub storage: Arc<dyn Storage>,
    /// Segments transferred at once (`--queue-size`).
    pub queue_size: usize,
    /// Backup name.
    pub backup_name: String,
    /// Host part of the storage key.
    pub hostname: String,
    /// Where to restore.
    pub target: PathBuf,
    /// Restore the newest backup at or before this time.
    pub date: Option<Timestamp>,
    /// Allow a non-empty target.
    pub overwrite: bool,
    /// Passphrase for encrypted backups.
    pub pass: Option<Vec<u8>>,
    /// Check and report, write nothing.
    pub dry_run: bool,
    /// Show progress on a terminal.
    pub progress: bool,
    /// The run's live counters (progress line, the daemon's progress events).
    pub counters: Arc<Counters>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub backup_id: String,
    /// Its level.
    pub level: u32,
    /// The backups read, level 0 first.
    pub chain: Vec<String>,
    /// Index entries restored.
    pub entries: u64,
    /// Regular files restored.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Wall time.
    pub duration_seconds: f64,
    /// Nothing was written.
    pub dry_run: bool,
    /// Metadata that could not be applied.
    pub warnings: Vec<String>,
}

/// Checks the index before anything is written: safe paths, links that resolve, sources in chain.
fn check_index(entries: &[Entry], chain: &[&Record]) -> Result<()> {
    let ids: HashSet<&str> = chain
        .iter()
        .map(|r| r.manifest.backup_id.as_str())
        .collect();
    let mut files = HashSet::new();
    let mut dirs: HashSet<&[u8]> = HashSet::new();
    for e in entries {
        validate_path(&e.path.0)?;
        // Every parent must be a directory of this index, listed before its children: nothing is
        // ever written through a symlink or a file of the backup itself.
        let parent = match e.path.0.iter().rposition(|b| *b == b'/') {
            Some(i) => &e.path.0[..i],
            None => &b"."[..],
        };
        // A single-file backup is one entry with no root directory.
        let single_file = entries.len() == 1 && e.kind != EntryType::Dir;
        if e.path.0 != b"." && !single_file && !dirs.contains(parent) {
            return Err(Error::integrity(format!(
                "refusing index entry {}: its parent {} is not a directory of the backup",
                e.path,
                String::from_utf8_lossy(parent)
            )));
        }
        if e.kind == EntryType::Dir {
            dirs.insert(&e.path.0);
        }
        match e.kind {
            EntryType::File => {
                let ok = e.stored_in.as_deref().is_some_and(|s| ids.contains(s));
                if !ok {
                    return Err(Error::integrity(format!(
                        "index entry {} refers to a backup outside the chain",
                        e.path
                    )));
                }
                files.insert(e.path.0.as_slice());
            }
            EntryType::Hardlink => {
                let target = e.link.as_ref().map(|l| l.0.as_slice()).unwrap_or_default();
                if !files.contains(target) {
                    return Err(Error::integrity(format!(
                        "index entry {} links to a file not restored before it",
                        e.path
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs a restore; cancelling `cancel` stops it between files (exit 130), removing the file
/// being written.
pub fn restore(opts: &RestoreOptions, cancel: &CancellationToken) -> Result<RestoreReport> {
    let started = Instant::now();
    opts.storage.check_container()?;
    let storage = opts.storage.clone();
    let (records, damaged) = catalog::load_name(&*storage, &opts.hostname, &opts.backup_name)?;
    let target = catalog::pick_restore_point(&records, opts.date).ok_or_else(|| {
        let mut msg = format!(
            "no backup of {} in {}",
            name_prefix(&opts.hostname, &opts.backup_name),
            storage.describe("")
        );
        if let Some(d) = opts.date {
            msg.push_str(&format!(" at or before {}", d.rfc3339()));
        }
        if let Some(d) = damaged.first() {
            msg.push_str(&format!(
                " ({} damaged manifest(s), e.g. {})",
                damaged.len(),
                d.error
            ));
        }
        Error::not_found(msg).with_guidance(
            "`freezer-worker list` shows the backups of a container, with their host and name",
        )
    })?;
    // A damaged manifest newer than the chosen point could be the backup the user wanted.
    if let Some(d) = damaged
        .iter()
        .find(|d| d.key.contains(&target.manifest.chain_id))
    {
        tracing::warn!("{}", d.error);
    }
    let chain = catalog::chain_of(&records, target)?;
    let keys = reader::open_all_keys(&*storage, &chain, opts.pass.as_deref())?;
    let index = reader::read_index(&*storage, target, keys.last().and_then(|k| k.as_ref()))?;
    check_index(&index, &chain)?;

    let files: Vec<&Entry> = index.iter().filter(|e| e.kind == EntryType::File).collect();
    let mut report = RestoreReport {
        backup_id: target.manifest.backup_id.clone(),
        level: target.manifest.level,
        chain: chain.iter().map(|r| r.manifest.backup_id.clone()).collect(),
        entries: index.len() as u64,
        files: files.len() as u64,
        bytes_written: 0,
        duration_seconds: 0.0,
        dry_run: opts.dry_run,
        warnings: Vec::new(),
    };
    if opts.dry_run {
        report.bytes_written = files.iter().map(|e| e.size).sum();
        report.duration_seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    let counters = opts.counters.clone();
    let _progress = Progress::start("restoring", counters.clone(), opts.progress);
    let mut t = Target::open(&opts.target, opts.overwrite)?;
    for e in index.iter().filter(|e| e.kind == EntryType::Dir) {
        t.mkdir(&e.path.0)?;
    }
    for (rec, k) in chain.iter().zip(&keys) {
        let mut wanted: HashMap<&[u8], &Entry> = files
            .iter()
            .filter(|e| e.stored_in.as_deref() == Some(rec.manifest.backup_id.as_str()))
            .map(|e| (e.path.0.as_slice(), *e))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let stream = ArchiveStream::open(storage.clone(), rec, k.clone(), opts.queue_size);
        let errors = stream.error.clone();
        let outcome = extract_files(&mut t, stream, &mut wanted, &counters, cancel);
        let stream_error = errors.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (outcome, stream_error) {
            (_, Some(e)) => return Err(e),
            (Err(e), None) => return Err(e),
            (Ok(()), None) => {}
        }
        if let Some((path, _)) = wanted.iter().next() {
            return Err(Error::integrity(format!(
                "backup {} lacks {} file(s) its index places there, e.g. {}",
                rec.manifest.backup_id,
                wanted.len(),
                String::from_utf8_lossy(path)
            )));
        }
    }
    for e in &index {
        match e.kind {
            EntryType::Hardlink => t.hardlink(
                &e.path.0,
                &e.link.as_ref().map(|l| l.0.clone()).unwrap_or_default(),
            )?,
            EntryType::Fifo | EntryType::Char | EntryType::Block => {
                t.special(e)?;
                t.apply_at(e)?;
            }
            _ => {}
        }
    }
    // Symlinks last: no write above can pass through one of them.
    for e in index.iter().filter(|e| e.kind == EntryType::Symlink) {
        t.symlink(
            &e.path.0,
            &e.link.as_ref().map(|l| l.0.clone()).unwrap_or_default(),
        )?;
        t.apply_at(e)?;
    }
    for e in index.iter().rev().filter(|e| e.kind == EntryType::Dir) {
        t.apply_dir(e)?;
    }
    report.bytes_written = counters.bytes_read.load(Ordering::Relaxed);
    report.warnings = std::mem::take(&mut t.warnings);
    report.duration_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Streams one backup's archive and writes the files `wanted` from it.
fn extract_files(
    t: &mut Target,
    stream: ArchiveStream,
    wanted: &mut HashMap<&[u8], &Entry>,
    counters: &Counters,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut archive = tar::Archive::new(stream);
    let bad_archive = |e: std::io::Error| Error::new(ErrorKind::Integrity, format!("archive: {e}"));
    let mut buf = vec![0u8; 256 * 1024];
    for item in archive.entries().map_err(bad_archive)? {
        if cancel.is_cancelled() {
            return Err(Error::interrupted());
        }
        let mut item = item.map_err(bad_archive)?;
        if item.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Some(entry) = wanted.remove(&*item.path_bytes()) else {
            continue;
        };
        if item.size() != entry.size {
            return Err(Error::integrity(format!(
                "archive entry {} has {} bytes, the index says {}",
                entry.path,
                item.size(),
                entry.size
            )));
        }
        let file = t.create_file(&entry.path.0)?;
        let mut w = SparseWriter::new(&file);
        let copied = (|| -> Result<()> {
            loop {
                let n = item.read(&mut buf).map_err(bad_archive)?;
                if n == 0 {
                    break;
                }
                w.write(&buf[..n]).map_err(|e| Error::io(&entry.path, e))?;
                counters.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            }
            w.finish().map_err(|e| Error::io(&entry.path, e))?;
            Ok(())
        })();
        if let Err(e) = copied {
            drop(file);
            t.remove(&entry.path.0);
            return Err(e);
        }
        counters.files_stored.fetch_add(1, Ordering::Relaxed);
        t.apply_fd(&file, entry);
    }
    Ok(())
}
