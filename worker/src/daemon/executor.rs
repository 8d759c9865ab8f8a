//! Runs one task's spec through the engine, exactly as the CLI would (ARCHITECTURE.md §1: the engine
//! knows nothing of AMQP or Redis): [`crate::resolve`] turns the spec into the engine's options
//! (the same code the CLI calls), storages are opened and the blocking engine runs on
//! `spawn_blocking` (see [`super::offload`]: the S3 and SSH clients block on runtimes of their
//! own), and its result or error becomes the task's final event status.
//!
//! Backup and prune of a named backup hold the writer locks of [`super::lock`] (one per storage)
//! while they run; backups record the fencing token and refuse to commit through the lock's
//! commit guard.

use super::lock::{LockError, LockSet};
use super::offload;
use super::unwind::{AbortOnDrop, ReleaseOnDrop};
use super::{Running, Shared};
use crate::engine::{backup, prune, restore, verify};
use crate::error::{Error, Result};
use crate::progress::Counters;
use crate::resolve::{self, Origin};
use freezer_contracts::{EventStatus, TaskSpec};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a task run produced: its final status and the byte counts for the metrics.
pub struct Outcome {
    /// `succeeded` or `failed`.
    pub status: EventStatus,
    /// Bytes read (source or storage).
    pub bytes_read: u64,
    /// Bytes written to storage.
    pub bytes_stored: u64,
}

/// The final status of a run that failed with `e`: its class and exit code as the error says,
/// and its message (with the guidance, when there is some) as the reason.
pub fn failed_status(e: &Error) -> EventStatus {
    EventStatus::Failed {
        error_class: e.class(),
        exit_code: e.kind.exit_code(),
        reason: match &e.guidance {
            Some(g) => format!("{} (hint: {g})", e.message),
            None => e.message.clone(),
        },
    }
}

fn failed(e: &Error) -> Outcome {
    Outcome {
        status: failed_status(e),
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

/// Runs `spec` for the task `running`, whose token stops it (lock or lease lost, the end of
/// the shutdown's grace period). `rerun`: the task ran before on a worker that died, whose
/// writer lock may outlive it by up to one lock TTL; a re-run waits that long for the lock
/// instead of failing as `locked` at once.
pub async fn execute(
    shared: &Arc<Shared>,
    spec: &TaskSpec,
    running: &Running,
    rerun: bool,
) -> Outcome {
    let patience = if rerun {
        Duration::from_millis(shared.daemon.lease_ttl_ms + shared.daemon.heartbeat_interval_ms)
    } else {
        Duration::ZERO
    };
    let (counters, cancel) = (running.counters.clone(), running.cancel.clone());
    match run(shared, spec, counters, cancel, patience).await {
        Ok(o) => o,
        Err(e) => failed(&e),
    }
}

async fn run(
    shared: &Arc<Shared>,
    spec: &TaskSpec,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    patience: Duration,
) -> Result<Outcome> {
    let config = &shared.config;
    // The engine runs on a blocking thread and checks its own clone of the token.
    let token = cancel.clone();
    match spec {
        TaskSpec::Noop(s) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(s.sleep_ms)) => {
                    Ok(succeeded(json!({}), 0, 0, 0))
                }
                _ = cancel.cancelled() => Err(Error::interrupted()),
            }
        }
        TaskSpec::Backup(s) => {
            let plan = resolve::backup::resolve(s, config, &Origin::Task)?;
            let scopes = plan.lock_scopes();
            let (c, k) = (counters.clone(), cancel.clone());
            let mut opts = offload::open(
                shared,
                move |config| plan.open(config, false, c, &k),
                |o| &mut o.storage,
            )
            .await?;
            let locks = if opts.dry_run {
                None
            } else {
                Some(lock(shared, scopes, patience).await?)
            };
            opts.fencing_token = locks.as_ref().and_then(LockSet::fence);
            opts.commit_guard = locks.as_ref().map(|l| {
                let l = l.clone();
                let handle = tokio::runtime::Handle::current();
                Arc::new(move || handle.block_on(l.check()).map_err(Error::locked))
                    as backup::CommitGuard
            });
            let r = locked(shared, locks, cancel, move || backup::backup(&opts, &token)).await?;
            let code = if r.unreadable > 0 { 3 } else { 0 };
            let (read, stored) = (r.bytes_read, r.bytes_stored);
            Ok(succeeded(to_json(&r), code, read, stored))
        }
        TaskSpec::Restore(s) => {
            let plan = resolve::restore::resolve(s, config, &Origin::Task)?;
            let (c, k) = (counters.clone(), cancel.clone());
            let opts = offload::open(
                shared,
                move |config| plan.open(config, false, c, &k),
                |o| &mut o.storage,
            )
            .await?;
            let r = blocking(move || restore::restore(&opts, &token)).await?;
            let written = r.bytes_written;
            Ok(succeeded(to_json(&r), 0, 0, written))
        }
        TaskSpec::Prune(s) => {
            let plan = resolve::prune::resolve(s, config, &Origin::Task)?;
            let scopes = plan.lock_scopes().filter(|_| !plan.dry_run);
            let k = cancel.clone();
            let opts = offload::open(
                shared,
                move |config| plan.open(config, &k),
                |o| &mut o.storage,
            )
            .await?;
            // Prune of one name takes its lock (fails fast as `locked` while a backup of it
            // runs); a prune of every name in a container takes none (see `lock_scopes`).
            let locks = match scopes {
                Some(scopes) => Some(lock(shared, scopes, patience).await?),
                None => None,
            };
            let r = locked(shared, locks, cancel, move || prune::prune(&opts, &token)).await?;
            Ok(succeeded(to_json(&r), 0, 0, 0))
        }
        TaskSpec::Verify(s) => {
            let plan = resolve::verify::resolve(s, config, &Origin::Task)?;
            let k = cancel.clone();
            let opts = offload::open(
                shared,
                move |config| plan.open(config, &k),
                |o| &mut o.storage,
            )
            .await?;
            let r = blocking(move || verify::verify(&opts, &token)).await?;
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
            let plan = resolve::list::resolve(s, config, &Origin::Task)?;
            let (name, host) = (plan.backup_name.clone(), plan.hostname.clone());
            let k = cancel.clone();
            let storage = offload::open(shared, move |config| plan.open(config, &k), |s| s).await?;
            let (rows, _damaged) =
                blocking(move || crate::list::list(&*storage, name.as_deref(), host.as_deref()))
                    .await?;
            Ok(succeeded(to_json(&rows), 0, 0, 0))
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
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
            // A poll that remains: the lock is a Redis key another (possibly dead) worker
            // holds, and nothing announces its release or expiry, so a re-run tries again.
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
        LockError::Busy(scope) => {
            Error::locked(format!("{scope} is being written by another worker"))
        }
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
/// (`cancel`, the task's token) and fails it as `locked`. The locks are released afterwards.
async fn locked<T: Send + 'static>(
    shared: &Arc<Shared>,
    locks: Option<LockSet>,
    cancel: CancellationToken,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let Some(locks) = locks else {
        return blocking(f).await;
    };
    let lost = Arc::new(AtomicBool::new(false));
    let release = ReleaseOnDrop::new(locks.clone());
    let renewer = {
        let (locks, lost, cancel, shared) = (locks.clone(), lost.clone(), cancel, shared.clone());
        let every = Duration::from_millis(shared.daemon.heartbeat_interval_ms);
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
            cancel.cancel();
        }))
    };
    super::unwind::inject(&locks);
    let r = blocking(f).await;
    drop(renewer);
    release.release().await;
    if lost.load(Ordering::SeqCst) {
        return Err(Error::locked(
            "the writer lock was lost while the task ran; the task was aborted",
        ));
    }
    r
}
