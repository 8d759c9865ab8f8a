//! Runs one task's spec through the engine, exactly as the CLI would (DESIGN.md §1: the engine
//! knows nothing of AMQP or Redis): names in the spec are resolved from the worker's
//! configuration, storages are opened and the blocking engine runs on `spawn_blocking` (see
//! [`super::offload`]: the S3 and SSH clients block on runtimes of their own), and its result
//! or error becomes the task's final event status.
//!
//! Backup and prune of a named backup hold the writer locks of [`super::lock`] (one per storage)
//! while they run; backups record the fencing token and refuse to commit through the lock's
//! commit guard.

use super::lock::{LockError, LockSet};
use super::unwind::{AbortOnDrop, ReleaseOnDrop};
use super::Shared;
use crate::codec::Codec;
use crate::config::WorkerConfig;
use crate::engine::backup::{self, BackupOptions};
use crate::engine::prune::{self, PruneOptions};
use crate::engine::restore::{self, RestoreOptions};
use crate::engine::verify::{self, ReadData, VerifyOptions};
use crate::engine::walk::Dereference;
use crate::error::{Error, ErrorKind, Result};
use crate::levels::LevelPolicy;
use crate::progress::Counters;
use crate::retention::KeepPolicy;
use crate::storage::{Storage, StorageRequest, Transfer};
use crate::timestamp::Timestamp;
use freezer_contracts::{ByteSize, ErrorClass, EventStatus, TaskSpec};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a task run produced: its final status and the byte counts for the metrics.
pub struct Outcome {
    /// `succeeded` or `failed`.
    pub status: EventStatus,
    /// Bytes read (source or storage).
    pub bytes_read: u64,
    /// Bytes written to storage.
    pub bytes_stored: u64,
}

/// The contracts' error class of an engine error (decides whether the dispatcher retries).
pub fn error_class(e: &Error) -> ErrorClass {
    match e.kind {
        ErrorKind::Failure if e.transient => ErrorClass::Transient,
        ErrorKind::Failure | ErrorKind::Usage => ErrorClass::Permanent,
        ErrorKind::NotFound => ErrorClass::NotFound,
        ErrorKind::Locked => ErrorClass::Locked,
        ErrorKind::Integrity => ErrorClass::Integrity,
        ErrorKind::Interrupted => ErrorClass::Interrupted,
    }
}

fn failed(e: &Error) -> Outcome {
    Outcome {
        status: EventStatus::Failed {
            error_class: error_class(e),
            exit_code: e.kind.exit_code(),
            reason: e.message.clone(),
        },
        bytes_read: 0,
        bytes_stored: 0,
    }
}

fn succeeded(result: serde_json::Value, exit_code: i32, read: u64, stored: u64) -> Outcome {
    Outcome {
        status: EventStatus::Succeeded { exit_code, result },
        bytes_read: read,
        bytes_stored: stored,
    }
}

/// Runs `spec`; `cancel` stops it (lock lost, shutdown). `rerun`: the task ran before on a
/// worker that died, whose writer lock may outlive it by up to one lock TTL; a re-run waits that
/// long for the lock instead of failing as `locked` at once.
pub async fn execute(
    shared: &Arc<Shared>,
    spec: &TaskSpec,
    counters: Arc<Counters>,
    rerun: bool,
) -> Outcome {
    let patience = if rerun {
        Duration::from_millis(shared.daemon.lease_ttl_ms + shared.daemon.heartbeat_interval_ms)
    } else {
        Duration::ZERO
    };
    match run(shared, spec, counters, patience).await {
        Ok(o) => o,
        Err(e) => failed(&e),
    }
}

async fn run(
    shared: &Arc<Shared>,
    spec: &TaskSpec,
    counters: Arc<Counters>,
    patience: Duration,
) -> Result<Outcome> {
    let config = &shared.config;
    let cancel = counters.cancel.clone().unwrap_or_default();
    match spec {
        TaskSpec::Noop(s) => {
            let sleep = tokio::time::sleep(Duration::from_millis(s.sleep_ms));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => return Ok(succeeded(json!({}), 0, 0, 0)),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(Error::interrupted());
                        }
                    }
                }
            }
        }
        TaskSpec::Backup(s) => {
            refuse_hooks(&s.hooks)?;
            let host = host(shared, s.hostname.clone());
            crate::cli::check_name("hostname", &host)?;
            crate::cli::check_name("backup_name", &s.backup_name)?;
            let codec = codec(s.compression.unwrap_or_default());
            let level = s.compression_level.unwrap_or(codec.default_level());
            codec.validate_level(level)?;
            let pass = key(config, s.encrypt_key.as_deref())?;
            let transfer = transfer(config, s.queue_size, s.upload_limit, None)?;
            let storage = open(shared, &s.storage, &s.container, &transfer).await?;
            let max_segment = s.max_segment_size.map_or(2 << 20, ByteSize::bytes);
            // As the CLI: under an upload limit objects stay small enough for the limit to hold.
            let max_segment = match transfer.upload_limit {
                Some(limit) => max_segment.min(crate::storage::max_object_for(limit)),
                None => max_segment,
            };
            let scopes = scopes(&s.storage, &s.container, &host, &s.backup_name);
            let locks = if s.dry_run {
                None
            } else {
                Some(lock(shared, scopes, patience).await?)
            };
            let guard: Option<backup::CommitGuard> = locks.as_ref().map(|l| {
                let l = l.clone();
                let handle = tokio::runtime::Handle::current();
                Arc::new(move || {
                    handle
                        .block_on(l.check())
                        .map_err(|m| Error::new(ErrorKind::Locked, m))
                }) as backup::CommitGuard
            });
            let opts = BackupOptions {
                path_to_backup: s.path_to_backup.clone(),
                storage,
                queue_size: transfer.queue_size,
                backup_name: s.backup_name.clone(),
                hostname: host,
                codec,
                level,
                pass,
                policy: LevelPolicy {
                    no_incremental: s.no_incremental,
                    max_level: s.max_level,
                    always_level: s.always_level,
                    restart_days: s.restart_always_level,
                },
                max_segment_size: usize::try_from(max_segment).unwrap_or(usize::MAX),
                excludes: s.exclude.clone(),
                dereference: deref(s.dereference_symlink.unwrap_or_default()),
                dry_run: s.dry_run,
                progress: false,
                fencing_token: locks.as_ref().and_then(LockSet::fence),
                commit_guard: guard,
                counters: counters.clone(),
            };
            let r = locked(shared, locks, cancel, move || backup::backup(&opts)).await?;
            let code = if r.unreadable > 0 { 3 } else { 0 };
            let (read, stored) = (r.bytes_read, r.bytes_stored);
            Ok(succeeded(to_json(&r), code, read, stored))
        }
        TaskSpec::Restore(s) => {
            refuse_hooks(&s.hooks)?;
            let transfer = transfer(config, s.queue_size, None, s.download_limit)?;
            let opts = RestoreOptions {
                storage: open(shared, &s.storage, &s.container, &transfer).await?,
                queue_size: transfer.queue_size,
                backup_name: s.backup_name.clone(),
                hostname: host(shared, s.hostname.clone()),
                target: s.restore_abs_path.clone(),
                date: date(s.restore_from_date.as_deref())?,
                overwrite: s.overwrite,
                pass: key(config, s.encrypt_key.as_deref())?,
                dry_run: s.dry_run,
                progress: false,
                counters: counters.clone(),
            };
            let r = blocking(move || restore::restore(&opts)).await?;
            let written = r.bytes_written;
            Ok(succeeded(to_json(&r), 0, 0, written))
        }
        TaskSpec::Prune(s) => {
            let transfer = transfer(config, None, None, None)?;
            let storage = open(shared, &s.storage, &s.container, &transfer).await?;
            let host = match (&s.backup_name, s.hostname.clone()) {
                (Some(_), h) => Some(host(shared, h)),
                (None, h) => h,
            };
            // Prune of one name takes its lock (fails fast as `locked` while a backup of it
            // runs). A prune of every name in a container takes none: it deletes only what
            // retention lets go and debris older than the grace period, never a running
            // backup's fresh segments.
            let locks = match (&s.backup_name, &host, s.dry_run) {
                (Some(name), Some(h), false) => {
                    Some(lock(shared, scopes(&s.storage, &s.container, h, name), patience).await?)
                }
                _ => None,
            };
            let opts = PruneOptions {
                storage,
                backup_name: s.backup_name.clone(),
                hostname: host,
                policy: KeepPolicy {
                    older_than_days: s.remove_older_than,
                    before: s
                        .remove_from_date
                        .as_deref()
                        .map(Timestamp::parse_user_date_start)
                        .transpose()?,
                    last: s.keep_last,
                    hourly: s.keep_hourly,
                    daily: s.keep_daily,
                    weekly: s.keep_weekly,
                    monthly: s.keep_monthly,
                    yearly: s.keep_yearly,
                },
                debris_grace_hours: s.debris_grace_hours.unwrap_or(1.0),
                dry_run: s.dry_run,
            };
            let r = locked(shared, locks, cancel, move || prune::prune(&opts)).await?;
            Ok(succeeded(to_json(&r), 0, 0, 0))
        }
        TaskSpec::Verify(s) => {
            let transfer = transfer(config, None, None, s.download_limit)?;
            let read = match (s.read_data, s.read_data_subset) {
                (true, _) => ReadData::All,
                (false, Some(p)) => ReadData::Subset(p),
                (false, None) => ReadData::None,
            };
            let opts = VerifyOptions {
                storage: open(shared, &s.storage, &s.container, &transfer).await?,
                queue_size: transfer.queue_size,
                hostname: host(shared, s.hostname.clone()),
                backup_name: s.backup_name.clone(),
                date: date(s.restore_from_date.as_deref())?,
                pass: key(config, s.encrypt_key.as_deref())?,
                read,
                compare_to: s.compare_to.clone(),
            };
            let r = blocking(move || verify::verify(&opts)).await?;
            if !r.sound {
                return Err(Error::integrity(format!(
                    "verify found damage: {}",
                    r.damaged.join("; ")
                )));
            }
            let code = if r.differences.is_empty() { 0 } else { 1 };
            Ok(succeeded(to_json(&r), code, 0, 0))
        }
        TaskSpec::List(s) => {
            let transfer = transfer(config, None, None, None)?;
            let storage = open(shared, &s.storage, &s.container, &transfer).await?;
            let name = s.backup_name.clone();
            let host = s.hostname.clone();
            let (rows, _damaged) =
                blocking(move || crate::list::list(&*storage, name.as_deref(), host.as_deref()))
                    .await?;
            Ok(succeeded(to_json(&rows), 0, 0, 0))
        }
    }
}

/// The host part of storage keys: the task's `hostname`, else the worker's `[daemon] hostname`,
/// else this machine's host name.
fn host(shared: &Shared, given: Option<String>) -> String {
    crate::cli::hostname(given.or_else(|| shared.daemon.hostname.clone()))
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn refuse_hooks(hooks: &[String]) -> Result<()> {
    if hooks.is_empty() {
        Ok(())
    } else {
        Err(Error::usage("hooks are not available in this build"))
    }
}

fn codec(c: freezer_contracts::Compression) -> Codec {
    use freezer_contracts::Compression as C;
    match c {
        C::Zstd => Codec::Zstd,
        C::Gzip => Codec::Gzip,
        C::Bzip2 => Codec::Bzip2,
        C::Xz => Codec::Xz,
        C::None => Codec::None,
    }
}

fn deref(d: freezer_contracts::Dereference) -> Dereference {
    use freezer_contracts::Dereference as D;
    match d {
        D::None => Dereference::None,
        D::Soft => Dereference::Soft,
        D::Hard => Dereference::Hard,
        D::All => Dereference::All,
    }
}

fn date(s: Option<&str>) -> Result<Option<Timestamp>> {
    s.map(Timestamp::parse_user_date).transpose()
}

/// The passphrase of the key named in a task (never the passphrase itself: tasks carry names).
fn key(config: &WorkerConfig, name: Option<&str>) -> Result<Option<Vec<u8>>> {
    name.map(|n| crate::crypto::read_pass_file(config.key_file(n)?))
        .transpose()
}

/// Transfer settings: the spec's over the configuration's, as flags over the file in the CLI.
fn transfer(
    config: &WorkerConfig,
    queue_size: Option<u32>,
    upload: Option<ByteSize>,
    download: Option<ByteSize>,
) -> Result<Transfer> {
    Transfer::merge(
        &config.transfer,
        queue_size.map(|q| q as usize),
        upload.map(ByteSize::bytes),
        download.map(ByteSize::bytes),
    )
}

/// Opens the named storages on the blocking pool, as a storage that is never dropped on the
/// runtime (see [`super::offload`]).
async fn open(
    shared: &Arc<Shared>,
    names: &[String],
    container: &str,
    transfer: &Transfer,
) -> Result<Arc<dyn Storage>> {
    // Tasks name configured storages only: a bare backend kind would let a task pick any
    // directory or bucket the worker can reach.
    for n in names {
        if !shared.config.storages.contains_key(n) {
            return Err(Error::usage(format!(
                "unknown storage {n:?}: not in this worker's configuration"
            )));
        }
    }
    let request = StorageRequest {
        names: names.to_vec(),
        // Empty: each named storage's own container.
        container: (!container.is_empty()).then(|| container.to_string()),
    };
    super::offload::open(shared.clone(), request, transfer.clone()).await
}

fn scopes(storages: &[String], container: &str, host: &str, name: &str) -> Vec<String> {
    storages
        .iter()
        .map(|s| freezer_contracts::lock_scope(s, container, host, name))
        .collect()
}

/// Takes the writer locks, retrying a busy lock for up to `patience`.
async fn lock(shared: &Arc<Shared>, scopes: Vec<String>, patience: Duration) -> Result<LockSet> {
    let started = std::time::Instant::now();
    let r = loop {
        let r = LockSet::acquire(
            shared.store.conn(),
            shared.store.prefix(),
            scopes.clone(),
            shared.daemon.lease_ttl_ms,
        )
        .await;
        match r {
            Err(LockError::Busy(_)) if started.elapsed() < patience => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => break r,
        }
    };
    shared
        .metrics
        .lock_wait
        .observe(started.elapsed().as_secs_f64());
    r.map_err(|e| match e {
        LockError::Busy(scope) => Error::new(
            ErrorKind::Locked,
            format!("{scope} is being written by another worker"),
        ),
        LockError::Redis(e) => Error::transient(format!("cannot take the writer lock: {e}")),
    })
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::failure(format!("the engine panicked: {e}"))))
}

/// Runs `f` on the blocking pool while `locks` (if any) are renewed; losing one cancels the run
/// and fails it as `locked`. The locks are released afterwards.
async fn locked<T: Send + 'static>(
    shared: &Arc<Shared>,
    locks: Option<LockSet>,
    cancel: Arc<AtomicBool>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let Some(locks) = locks else {
        return blocking(f).await;
    };
    let lost = Arc::new(AtomicBool::new(false));
    let release = ReleaseOnDrop::new(locks.clone());
    let renewer = {
        let (locks, lost, cancel, shared) = (locks.clone(), lost.clone(), cancel, shared.clone());
        let every = Duration::from_millis(shared.daemon.heartbeat_interval_ms.max(100));
        let ttl = Duration::from_millis(shared.daemon.lease_ttl_ms);
        AbortOnDrop(tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                match locks.renew().await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => break,
                    // Redis unreachable: the lock may still be ours until its TTL runs out.
                    Err(e) if last_ok.elapsed() < ttl => {
                        tracing::warn!(error = %e, "cannot renew the writer lock; retrying");
                        continue;
                    }
                    Err(_) => break,
                }
            }
            tracing::warn!("writer lock lost: aborting the task");
            shared.metrics.locks_lost.inc();
            lost.store(true, Ordering::SeqCst);
            cancel.store(true, Ordering::SeqCst);
        }))
    };
    super::unwind::inject(&locks);
    let r = blocking(f).await;
    drop(renewer);
    release.release().await;
    if lost.load(Ordering::SeqCst) {
        return Err(Error::new(
            ErrorKind::Locked,
            "the writer lock was lost while the task ran; the task was aborted",
        ));
    }
    r
}
