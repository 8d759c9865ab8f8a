//! The worker daemon with S3 (garage) and SSH (sshd) storages, against the real RabbitMQ and
//! Redis: backup, restore, list, verify and prune tasks on each storage kind, a second backup of
//! the same name while the first holds the lock (`locked`), and an outage (the storage server
//! stopped in the middle of a backup: the task fails with its reason and the daemon goes on).
//!
//! The storage clients own runtimes of their own: opening one, or dropping one, on the daemon's
//! asynchronous runtime used to panic the task's handler and leave the task running forever.
//! A panic in a worker's log fails these tests at once instead of after the patience.

use freezer_contracts::{
    BackupSpec, ErrorClass, EventStatus, ListSpec, PruneSpec, RestoreSpec, TaskEnvelope, TaskSpec,
    VerifySpec,
};
use freezer_e2e::fleet::{self, Fleet, WorkerProc, WorkerSpec};
use freezer_e2e::services::{Garage, Sshd, BUCKET};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes per second a slow backup may upload: long enough to stop a server in the middle of it.
const SLOW_RATE: &str = "2M";

fn source(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let src = dir.join(name);
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    for i in 0..mib {
        freezer_e2e::write_random_file(&src.join(format!("sub/f{i:02}")), i + 1, 1 << 20);
    }
    src
}

fn backup(storage: &str, src: &Path, name: &str, upload_limit: Option<&str>) -> TaskEnvelope {
    let mut v = json!({
        "path_to_backup": src,
        "backup_name": name,
        "storage": [storage],
        "hostname": "test-host",
        "encrypt_key": "main",
        // Full backups: a prune that keeps the last one deletes the others.
        "no_incremental": true,
    });
    if let Some(limit) = upload_limit {
        v["upload_limit"] = json!(limit);
    }
    let spec: BackupSpec = serde_json::from_value(v).unwrap();
    fleet::task(TaskSpec::Backup(spec))
}

/// Waits for the final event of `t`; fails at once when the worker's log shows a panic.
async fn final_of(fleet: &Fleet, worker: &WorkerProc, t: &TaskEnvelope) -> (EventStatus, f64) {
    let started = Instant::now();
    let end = started + fleet::PATIENCE * 2;
    loop {
        if let Some(e) = fleet
            .events_of(&t.task_id)
            .into_iter()
            .find(|e| e.status.is_final())
        {
            return (e.status, started.elapsed().as_secs_f64());
        }
        let log = worker.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            panic!("the worker panicked running {} task: {line}", t.kind());
        }
        assert!(Instant::now() < end, "task {} never finished", t.task_id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_ok(
    fleet: &Fleet,
    worker: &WorkerProc,
    storage: &str,
    t: &TaskEnvelope,
) -> serde_json::Value {
    fleet.publish(&fleet.node_queue("a"), t).await;
    let (status, secs) = final_of(fleet, worker, t).await;
    eprintln!("{storage}: {} task: {secs:.2} s", t.kind());
    match status {
        EventStatus::Succeeded {
            exit_code: 0,
            result,
        } => result,
        other => panic!("{} task did not succeed: {other:?}", t.kind()),
    }
}

/// Waits until some writer lock of this fleet is held in Redis.
async fn wait_for_lock(fleet: &Fleet) {
    let mut c = fleet.redis().await;
    let end = Instant::now() + fleet::PATIENCE;
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}lock:*", fleet.prefix))
            .query_async(&mut c)
            .await
            .unwrap();
        if !keys.is_empty() {
            return;
        }
        assert!(Instant::now() < end, "the backup never took its lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every task kind on `storage`, the `locked` path, then an outage made by `stop` and ended by
/// `resume`.
async fn every_task_on(
    fleet: &Fleet,
    worker: &WorkerProc,
    storage: &str,
    stop: impl FnOnce(),
    resume: impl FnOnce(),
) {
    let q = fleet.node_queue("a");
    let small = source(&fleet.dir, &format!("small-{storage}"), 1);
    let slow = source(&fleet.dir, &format!("slow-{storage}"), 12);

    let first = run_ok(
        fleet,
        worker,
        storage,
        &backup(storage, &small, "docs", None),
    )
    .await;
    assert!(first["backup_id"].is_string(), "{first}");

    // A second backup of the name while a slow one holds the lock: `locked`, and the worker
    // drops the storage it opened for it.
    let holder = backup(storage, &slow, "docs", Some(SLOW_RATE));
    fleet.publish(&q, &holder).await;
    fleet.wait_started(&holder.task_id).await;
    wait_for_lock(fleet).await;
    let second = backup(storage, &small, "docs", None);
    fleet.publish(&q, &second).await;
    let (status, secs) = final_of(fleet, worker, &second).await;
    eprintln!("{storage}: locked backup task: {secs:.2} s");
    match status {
        EventStatus::Failed {
            error_class: ErrorClass::Locked,
            exit_code: 11,
            ..
        } => {}
        other => panic!("the second backup was not refused as locked: {other:?}"),
    }
    let (status, secs) = final_of(fleet, worker, &holder).await;
    eprintln!("{storage}: slow backup task (12 MiB at {SLOW_RATE}/s): {secs:.2} s");
    assert!(
        matches!(status, EventStatus::Succeeded { .. }),
        "{status:?}"
    );

    let target = fleet.dir.join(format!("restored-{storage}"));
    let restore: RestoreSpec = serde_json::from_value(json!({
        "backup_name": "docs", "storage": [storage], "hostname": "test-host",
        "restore_abs_path": target, "encrypt_key": "main",
    }))
    .unwrap();
    run_ok(
        fleet,
        worker,
        storage,
        &fleet::task(TaskSpec::Restore(restore)),
    )
    .await;
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(
        fs::read(target.join("sub/f05")).unwrap(),
        fs::read(slow.join("sub/f05")).unwrap()
    );

    let verify: VerifySpec = serde_json::from_value(json!({
        "backup_name": "docs", "storage": [storage], "hostname": "test-host",
        "encrypt_key": "main", "read_data": true,
    }))
    .unwrap();
    run_ok(
        fleet,
        worker,
        storage,
        &fleet::task(TaskSpec::Verify(verify)),
    )
    .await;

    let prune: PruneSpec = serde_json::from_value(json!({
        "backup_name": "docs", "storage": [storage], "hostname": "test-host", "keep_last": 1,
    }))
    .unwrap();
    run_ok(fleet, worker, storage, &fleet::task(TaskSpec::Prune(prune))).await;
    let list: ListSpec = serde_json::from_value(json!({ "storage": [storage] })).unwrap();
    let rows = run_ok(
        fleet,
        worker,
        storage,
        &fleet::task(TaskSpec::List(list.clone())),
    )
    .await;
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");

    // The server goes away in the middle of a backup: the task fails with a reason, and once
    // the server is back the same worker runs the next task.
    let doomed = backup(storage, &slow, "outage", Some(SLOW_RATE));
    fleet.publish(&q, &doomed).await;
    fleet.wait_started(&doomed.task_id).await;
    wait_for_lock(fleet).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop();
    let stopped = Instant::now();
    // Once its uploads have run out of retries the backup deletes the segments it wrote, each
    // delete retried as long again: the server comes back when that cleanup starts (or the
    // task ended), so the test does not wait minutes for it.
    let end = stopped + fleet::PATIENCE;
    while !worker.log_text().contains(r#""operation":"delete""#)
        && !fleet
            .events_of(&doomed.task_id)
            .iter()
            .any(|e| e.status.is_final())
    {
        assert!(Instant::now() < end, "the backup never gave up its uploads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{storage}: outage: the backup gave up {:.2} s after the server stopped",
        stopped.elapsed().as_secs_f64()
    );
    resume();
    let (status, _) = final_of(fleet, worker, &doomed).await;
    eprintln!(
        "{storage}: outage: backup task failed {:.2} s after the server stopped: {status:?}",
        stopped.elapsed().as_secs_f64()
    );
    let EventStatus::Failed {
        error_class,
        reason,
        ..
    } = &status
    else {
        panic!("a backup through an outage succeeded: {status:?}")
    };
    assert!(
        matches!(error_class, ErrorClass::Transient | ErrorClass::Permanent),
        "{error_class:?}: {reason}"
    );
    assert!(!reason.is_empty());
    let after = run_ok(
        fleet,
        worker,
        storage,
        &backup(storage, &small, "after", None),
    )
    .await;
    assert!(after["backup_id"].is_string(), "{after}");
}

fn worker_with(fleet: &Fleet, storages: &str) -> WorkerProc {
    let mut spec = WorkerSpec::new("a", &[]);
    spec.extra = format!("\n{storages}");
    fleet.start(&spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_storage_runs_every_task_kind_in_the_daemon_with_locked_and_outage() {
    let Some(garage) = Garage::start("daemon-s3") else {
        return;
    };
    let fleet = Fleet::new().await;
    let entry = garage.storage_entry(
        "bucket",
        &format!("{BUCKET}/fleet-{}", fleet.id),
        &fleet.dir,
    );
    let worker = worker_with(&fleet, &entry);
    every_task_on(
        &fleet,
        &worker,
        "bucket",
        || garage.halt(),
        || garage.resume(),
    )
    .await;
    drop(worker);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_storage_runs_every_task_kind_in_the_daemon_with_locked_and_outage() {
    let Some(sshd) = Sshd::start("daemon-ssh") else {
        return;
    };
    let fleet = Fleet::new().await;
    let remote = fleet.dir.join("remote");
    fs::create_dir_all(&remote).unwrap();
    let worker = worker_with(&fleet, &sshd.storage_entry("vault", &remote, None));
    every_task_on(&fleet, &worker, "vault", || sshd.kill(), || sshd.resume()).await;
    drop(worker);
    fleet.cleanup().await;
}
