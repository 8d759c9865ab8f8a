//! The backup command: plan the level, walk and archive, store segments, then the index, then
//! the manifest last. Anything that fails before the manifest leaves an invisible backup, whose
//! objects are removed on the way out.

use super::pipeline::{self, SegmentWriter};
use super::producer::Producer;
use super::reader;
use super::walk::{self, Dereference, Excludes};
use crate::catalog::{self, name_prefix};
use crate::codec::Codec;
use crate::crypto::{self, Keys, PendingKeys};
use crate::error::{Error, Result};
use crate::index::Entry;
use crate::levels::{self, Existing, LevelPolicy};
use crate::lock::NameLock;
use crate::manifest::{
    Compression, Encryption, IndexRef, Kind, Manifest, Source, Totals, FORMAT_VERSION,
};
use crate::progress::{Counters, Progress};
use crate::storage::Storage;
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Everything a backup run needs (the CLI and, later, task specs fill it).
#[derive(Clone)]
pub struct BackupOptions {
    /// Directory or file to back up.
    pub path_to_backup: PathBuf,
    /// Where the backups live.
    pub storage: Arc<dyn Storage>,
    /// Segments transferred at once (`--queue-size`).
    pub queue_size: usize,
    /// Backup name.
    pub backup_name: String,
    /// Host part of the storage key.
    pub hostname: String,
    /// Compression codec.
    pub codec: Codec,
    /// Compression level.
    pub level: i32,
    /// Passphrase when encrypting.
    pub pass: Option<Vec<u8>>,
    /// Level options.
    pub policy: LevelPolicy,
    /// Upper bound of a stored segment.
    pub max_segment_size: usize,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--dereference-symlink`.
    pub dereference: Dereference,
    /// Compute everything, store nothing.
    pub dry_run: bool,
    /// Show progress on a terminal.
    pub progress: bool,
    /// Fencing token of the writer lock held for this run (the daemon's Redis lock), recorded in
    /// the manifest; `None` for the standalone CLI's `flock`.
    pub fencing_token: Option<u64>,
    /// Called right before the manifest is written; an error refuses the commit (the daemon's
    /// check that its lock is still held and no newer fencing token was handed out).
    pub commit_guard: Option<CommitGuard>,
    /// The run's live counters: the terminal progress line and the daemon's progress events read
    /// them while it runs.
    pub counters: Arc<Counters>,
}

/// The check [`BackupOptions::commit_guard`] runs before the commit point.
pub type CommitGuard = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// What a backup run did, printed as the summary or as `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The new backup's id.
    pub backup_id: String,
    /// Its chain.
    pub chain_id: String,
    /// Its parent.
    pub parent_id: Option<String>,
    /// Its level.
    pub level: u32,
    /// Full, incremental or differential.
    pub kind: Kind,
    /// Its directory.
    pub path: String,
    /// Index entries.
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Files whose content was stored in this backup.
    pub files_stored: u64,
    /// Bytes of content read.
    pub bytes_read: u64,
    /// Bytes stored.
    pub bytes_stored: u64,
    /// Files that could not be read.
    pub unreadable: u64,
    /// Wall time.
    pub duration_seconds: f64,
    /// Nothing was stored.
    pub dry_run: bool,
    /// Problems that did not stop the backup.
    pub warnings: Vec<String>,
}

/// Smallest segment size the engine accepts: the contracts' bound, which the resolver checks for
/// every request; the engine checks it again because its chunking needs the room.
pub const MIN_SEGMENT_SIZE: usize = freezer_contracts::MIN_SEGMENT_SIZE as usize;

/// Raw chunk size that keeps a compressed segment under `max_segment_size` even for data that
/// does not compress.
fn raw_chunk_size(codec: Codec, max_segment_size: usize) -> usize {
    match codec {
        Codec::None => max_segment_size,
        _ => max_segment_size - max_segment_size / 64 - 4096,
    }
}

/// Runs a backup; cancelling `cancel` stops it (exit 130) before the commit point, leaving only
/// objects that are removed on the way out.
pub fn backup(opts: &BackupOptions, cancel: &CancellationToken) -> Result<BackupReport> {
    let started = Instant::now();
    let start_time = Timestamp::now();
    if opts.max_segment_size < MIN_SEGMENT_SIZE {
        return Err(Error::usage(format!(
            "max_segment_size must be at least {MIN_SEGMENT_SIZE}"
        )));
    }
    let source = std::path::absolute(&opts.path_to_backup)
        .map_err(|e| Error::io(opts.path_to_backup.display(), e))?;
    let source_meta = std::fs::metadata(&source).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found(format!(
            "--path-to-backup {} does not exist",
            source.display()
        )),
        _ => Error::io(source.display(), e),
    })?;
    let excludes = Excludes::new(&opts.excludes)?;
    let storage = &*opts.storage;
    let prefix = name_prefix(&opts.hostname, &opts.backup_name);
    // A dry run creates nothing: a container that does not exist yet simply has no backups.
    let container_exists = if opts.dry_run {
        match storage.check_container() {
            Ok(()) => true,
            Err(e) if e.kind == crate::error::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        }
    } else {
        storage.prepare()?;
        true
    };
    let _lock = if opts.dry_run {
        NameLock::none()
    } else {
        storage.lock_name(&prefix)?
    };
    let (walked, walker) = walk::spawn(
        source.clone(),
        opts.dereference,
        excludes,
        storage.local_dirs(),
    );
    let (records, damaged) = if container_exists {
        catalog::load_name(storage, &opts.hostname, &opts.backup_name)?
    } else {
        (Vec::new(), Vec::new())
    };
    for d in &damaged {
        tracing::warn!("ignoring {}: {}", d.key, d.error);
    }

    let existing: Vec<Existing> = records
        .iter()
        .map(|r| Existing {
            id: r.manifest.backup_id.clone(),
            chain: r.manifest.chain_id.clone(),
            level: r.manifest.level,
            time: r.time,
        })
        .collect();
    let plan = levels::plan(&opts.policy, &existing, start_time);
    let parent = plan.parent.map(|i| &records[i]);
    let backup_ts = Timestamp::now_after(records.last().map(|r| r.time));
    let backup_id = backup_ts.to_string();
    let chain_id = parent.map_or(backup_id.clone(), |p| p.manifest.chain_id.clone());
    let dir = format!("{prefix}/{chain_id}/{}_{backup_id}", plan.level);

    // The parent's index (encrypted: one KDF run) is on the critical path while the walk runs
    // on its own thread; the new backup's KDF starts after it and overlaps the archiving.
    let iterations = crypto::iterations_for_new_backup()?;
    let salt = crypto::random_salt();
    let parent_entries: Vec<Entry> = {
        let parent_entries = match parent {
            Some(p) => {
                if p.manifest.encryption.is_some() && opts.pass.is_none() {
                    Err(Error::usage(format!(
                        "the parent backup {} is encrypted: give --encrypt-pass-file, or --no-incremental",
                        p.manifest.backup_id
                    )))
                } else {
                    reader::open_keys(storage, p, opts.pass.as_deref()).and_then(|k| {
                        tracing::debug!(elapsed = ?started.elapsed(), "parent keys derived");
                        let index = reader::read_index(storage, p, k.as_ref());
                        tracing::debug!(elapsed = ?started.elapsed(), "parent index loaded");
                        index
                    })
                }
            }
            None => Ok(Vec::new()),
        };
        parent_entries?
    };
    let pending_keys = opts
        .pass
        .clone()
        .map(|p| PendingKeys::spawn(p, salt, iterations));

    tracing::debug!(elapsed = ?started.elapsed(), level = plan.level, "planned; keys derived, parent index loaded");
    let counters = opts.counters.clone();
    let _progress = Progress::start("backing up", counters.clone(), opts.progress);
    let written = Mutex::new(Vec::new());
    let result = (|| -> Result<BackupReport> {
        let writer = SegmentWriter {
            storage,
            prefix: dir.clone(),
            keys: pending_keys.clone(),
            dry_run: opts.dry_run,
            queue_size: opts.queue_size,
            counters: &counters,
        };
        let chunk = raw_chunk_size(opts.codec, opts.max_segment_size);
        let (codec, level) = (opts.codec, opts.level);
        let out = pipeline::run(codec, level, chunk, writer, &written, cancel, |sink| {
            let mut producer = Producer::new(
                sink,
                (source.clone(), source_meta.is_dir()),
                backup_id.clone(),
                parent_entries,
                opts.dereference,
                &counters,
            );
            for item in walked {
                producer.add(item)?;
            }
            walker
                .join()
                .unwrap_or_else(|_| Err(Error::failure("the walk thread panicked")))?;
            tracing::debug!(elapsed = ?started.elapsed(), "walk consumed");
            producer.finish()?;
            let (entries, files) = (producer.index.entries, producer.index.files);
            let index_bytes = producer.index.finish()?;
            Ok((
                index_bytes,
                entries,
                files,
                producer.warnings,
                producer.unreadable,
            ))
        })?;
        let (mut index_bytes, entries, files, warnings, unreadable) = out.produced;
        let keys: Option<Keys> = pending_keys.as_ref().map(|k| k.get().clone());
        tracing::debug!(elapsed = ?started.elapsed(), segments = out.segments.len(), "archive stored");

        if let Some(k) = &keys {
            k.encrypt_index(&mut index_bytes);
        }
        let index_ref = IndexRef {
            size: index_bytes.len() as u64,
            tag: crypto::index_tag(keys.as_ref(), &index_bytes),
        };
        let bytes_stored = out.segments.iter().map(|s| s.size).sum::<u64>() + index_ref.size;
        let totals = Totals {
            entries,
            files,
            bytes_read: counters
                .bytes_read
                .load(std::sync::atomic::Ordering::Relaxed),
            bytes_stored,
            unreadable,
        };
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            backup_id: backup_id.clone(),
            parent_id: parent.map(|p| p.manifest.backup_id.clone()),
            chain_id: chain_id.clone(),
            hostname: opts.hostname.clone(),
            backup_name: opts.backup_name.clone(),
            level: plan.level,
            kind: plan.kind,
            engine: "tar".into(),
            mode: "fs".into(),
            started_at: start_time.rfc3339(),
            finished_at: Timestamp::now().rfc3339(),
            source: Source {
                path: source.display().to_string(),
                kind: super::producer::source_kind(&source_meta).into(),
            },
            compression: Compression {
                codec: opts.codec,
                level: opts.level,
            },
            encryption: keys.as_ref().map(|k| Encryption::new(iterations, k.salt())),
            segments: out.segments,
            index: index_ref,
            totals: totals.clone(),
            fencing_token: opts.fencing_token,
            tool_version: format!("freezer-worker {}", env!("CARGO_PKG_VERSION")),
            manifest_tag: String::new(),
        };
        if cancel.is_cancelled() {
            return Err(Error::interrupted());
        }
        if !opts.dry_run {
            let index_key = format!("{dir}/index");
            written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(index_key.clone());
            storage.put(&index_key, &index_bytes)?;
            tracing::debug!(elapsed = ?started.elapsed(), "index stored");
            // Segments and index must be durable before the manifest makes them a backup.
            storage.sync(&written.lock().unwrap_or_else(|p| p.into_inner()))?;
            tracing::debug!(elapsed = ?started.elapsed(), "segments and index synced");
            if let Some(guard) = &opts.commit_guard {
                guard()?;
            }
            // The commit point: from here on the backup exists.
            let manifest_key = format!("{dir}/manifest.json");
            // Recorded first: a manifest whose sync fails is removed with the rest.
            written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(manifest_key.clone());
            storage.put(&manifest_key, &manifest.to_json(keys.as_ref()))?;
            storage.sync(&[manifest_key])?;
            tracing::debug!(elapsed = ?started.elapsed(), "manifest committed");
        }
        Ok(BackupReport {
            backup_id: backup_id.clone(),
            chain_id: chain_id.clone(),
            parent_id: manifest.parent_id.clone(),
            level: plan.level,
            kind: plan.kind,
            path: storage.describe(&dir),
            entries: totals.entries,
            files,
            files_stored: counters
                .files_stored
                .load(std::sync::atomic::Ordering::Relaxed),
            bytes_read: totals.bytes_read,
            bytes_stored,
            unreadable,
            duration_seconds: started.elapsed().as_secs_f64(),
            dry_run: opts.dry_run,
            warnings,
        })
    })();
    if result.is_err() {
        // Debris of a failed run: remove what was written, newest first so a manifest goes
        // before its segments (prune also cleans what a kill leaves).
        for key in written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
        {
            let _ = storage.delete(key);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::storage::memory::MemoryStorage;

    #[test]
    fn a_cancelled_backup_fails_as_interrupted_and_leaves_no_backup() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a"), vec![7u8; 300_000]).unwrap();
        let storage = Arc::new(MemoryStorage::new("m"));
        let opts = BackupOptions {
            path_to_backup: src.path().to_path_buf(),
            storage: storage.clone(),
            queue_size: 1,
            backup_name: "n".into(),
            hostname: "h".into(),
            codec: Codec::None,
            level: 0,
            pass: None,
            policy: LevelPolicy {
                no_incremental: true,
                max_level: None,
                always_level: None,
                restart_days: None,
            },
            max_segment_size: MIN_SEGMENT_SIZE,
            excludes: Vec::new(),
            dereference: Dereference::None,
            dry_run: false,
            progress: false,
            fencing_token: None,
            commit_guard: None,
            counters: Default::default(),
        };
        let cancel = CancellationToken::new();
        cancel.cancel();
        let e = backup(&opts, &cancel).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Interrupted, "{e}");
        assert!(
            !storage.keys().iter().any(|k| k.ends_with("manifest.json")),
            "{:?}",
            storage.keys()
        );
        // The same run with a token nobody cancels completes.
        let r = backup(&opts, &CancellationToken::new()).unwrap();
        assert_eq!(r.files, 1);
    }
}
