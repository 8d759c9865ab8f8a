//! The worker daemon under faults (issue #5): workers killed with SIGKILL mid-backup, SIGTERM,
//! writer locks with fencing (concurrent same-name backups, prune against a running backup, a
//! lost lock), a task longer than RabbitMQ's consumer timeout.

use freezer_contracts::{BackupSpec, ErrorClass, EventStatus, PruneSpec, TaskSpec};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Tests that change the shared broker's settings run one at a time.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A source tree that takes several seconds to back up with xz at level 9 (random data does
/// not compress, and xz -9 is slow on it).
fn slow_source(dir: &Path, mib: u64) -> PathBuf {
    let src = dir.join("slow");
    fs::create_dir_all(&src).unwrap();
    for i in 0..mib {
        freezer_e2e::write_random_file(&src.join(format!("f{i:03}")), i, 1 << 20);
    }
    src
}

fn slow_backup(fleet: &Fleet, source: &Path, name: &str) -> BackupSpec {
    serde_json::from_value(json!({
        "path_to_backup": source,
        "backup_name": name,
        "container": fleet.store(),
        "storage": ["local1"],
        "hostname": "test-host",
        "compression": "xz",
        "compression_level": 9,
        "max_segment_size": "1M",
        "queue_size": 1,
    }))
    .unwrap()
}

/// Size of the slow source: enough for a backup of a few seconds on a loaded 2-core machine.
const SLOW_MIB: u64 = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_backups_at_the_same_moment_never_interleave() {
    let fleet = Fleet::new().await;
    let _a = fleet.start(&WorkerSpec::new("a", &[]));
    let _b = fleet.start(&WorkerSpec::new("b", &[]));
    let src = slow_source(&fleet.dir, SLOW_MIB);
    let ta = fleet::task(TaskSpec::Backup(slow_backup(&fleet, &src, "same")));
    let tb = fleet::task(TaskSpec::Backup(slow_backup(&fleet, &src, "same")));
    let (qa, qb) = (fleet.node_queue("a"), fleet.node_queue("b"));
    tokio::join!(fleet.publish(&qa, &ta), fleet.publish(&qb, &tb));
    let ea = fleet.wait_final(&ta.task_id).await;
    let eb = fleet.wait_final(&tb.task_id).await;
    let ok: Vec<_> = [&ea, &eb]
        .into_iter()
        .filter(|e| matches!(e.status, EventStatus::Succeeded { .. }))
        .collect();
    for e in [&ea, &eb] {
        if let EventStatus::Failed {
            error_class,
            exit_code,
            reason,
        } = &e.status
        {
            assert_eq!(*error_class, ErrorClass::Locked, "{reason}");
            assert_eq!(*exit_code, 11);
        }
    }
    assert!(!ok.is_empty(), "neither backup succeeded: {ea:?} {eb:?}");
    // Every backup written carries its own fencing token; two that both succeeded ran one after
    // the other.
    let manifests: Vec<serde_json::Value> = fleet::manifests(&fleet.store())
        .iter()
        .map(|p| serde_json::from_slice(&fs::read(p).unwrap()).unwrap())
        .collect();
    assert_eq!(manifests.len(), ok.len());
    if manifests.len() == 2 {
        let (m0, m1) = (&manifests[0], &manifests[1]);
        assert_ne!(m0["fencing_token"], m1["fencing_token"]);
        let disjoint = m0["finished_at"].as_str() <= m1["started_at"].as_str()
            || m1["finished_at"].as_str() <= m0["started_at"].as_str();
        assert!(disjoint, "two backups of one name interleaved: {m0} {m1}");
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_fails_fast_against_a_running_backup_and_a_lost_lock_aborts_the_backup() {
    let fleet = Fleet::new().await;
    let _a = fleet.start(&WorkerSpec::new("a", &[]));
    let q = fleet.node_queue("a");
    let src = slow_source(&fleet.dir, SLOW_MIB);
    let backup = fleet::task(TaskSpec::Backup(slow_backup(&fleet, &src, "held")));
    fleet.publish(&q, &backup).await;
    fleet.wait_started(&backup.task_id).await;
    let lock_key = fleet.keys().lock(&freezer_contracts::lock_scope(
        "local1",
        &fleet.store().display().to_string(),
        "test-host",
        "held",
    ));
    let mut c = fleet.redis().await;
    let end = std::time::Instant::now() + fleet::PATIENCE;
    loop {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&lock_key)
            .query_async(&mut c)
            .await
            .unwrap();
        if exists {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the backup never took its lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Prune of the same name while the backup writes: refused at once as locked.
    let prune: PruneSpec = serde_json::from_value(json!({
        "backup_name": "held", "container": fleet.store(), "storage": ["local1"],
        "hostname": "test-host", "keep_last": 1,
    }))
    .unwrap();
    let prune = fleet::task(TaskSpec::Prune(prune));
    fleet.publish(&q, &prune).await;
    let e = fleet.wait_final(&prune.task_id).await;
    assert!(
        matches!(
            e.status,
            EventStatus::Failed {
                error_class: ErrorClass::Locked,
                exit_code: 11,
                ..
            }
        ),
        "{e:?}"
    );

    // Someone else takes the lock (as after an expiry): the backup aborts and commits nothing.
    let _: () = redis::cmd("SET")
        .arg(&lock_key)
        .arg("intruder")
        .query_async(&mut c)
        .await
        .unwrap();
    let e = fleet.wait_final(&backup.task_id).await;
    let EventStatus::Failed {
        error_class,
        reason,
        ..
    } = &e.status
    else {
        panic!("the backup finished anyway: {e:?}")
    };
    assert_eq!(*error_class, ErrorClass::Locked, "{reason}");
    assert!(
        fleet::manifests(&fleet.store()).is_empty(),
        "a backup was committed without its lock"
    );
    // The intruder's lock is not released by the aborted task.
    let holder: Option<String> = redis::cmd("GET")
        .arg(&lock_key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("intruder"));
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_backup_of_a_killed_worker_is_run_again_by_another() {
    let fleet = Fleet::new().await;
    let mut workers = [
        fleet.start(&WorkerSpec::new("a", &["p"])),
        fleet.start(&WorkerSpec::new("b", &["p"])),
    ];
    let src = slow_source(&fleet.dir, SLOW_MIB);
    let t = fleet::task(TaskSpec::Backup(slow_backup(&fleet, &src, "killed")));
    fleet.publish(&fleet.pool_queue("p"), &t).await;
    let started = fleet.wait_started(&t.task_id).await;
    let victim = workers.iter().position(|w| w.node == started.node).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    workers[victim].signal(libc::SIGKILL);
    assert_eq!(workers[victim].wait_exit(Duration::from_secs(10)), None);
    // Nothing visible from the killed run.
    assert!(fleet::manifests(&fleet.store()).is_empty());
    // Re-run (lease 3 s + heartbeat 0.5 s in the tests) by the survivor, once.
    let e = fleet.wait_final(&t.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    assert_ne!(e.node, started.node);
    assert_eq!(fleet::manifests(&fleet.store()).len(), 1);
    assert_eq!(
        fleet.task_field(&t.task_id, "runs").await.as_deref(),
        Some("2")
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_backup_of_a_killed_worker_runs_when_the_node_returns() {
    let fleet = Fleet::new().await;
    let spec = WorkerSpec::new("a", &[]);
    let mut a = fleet.start(&spec);
    let _other = fleet.start(&WorkerSpec::new("b", &[]));
    let src = slow_source(&fleet.dir, SLOW_MIB);
    let t = fleet::task(TaskSpec::Backup(slow_backup(&fleet, &src, "node")));
    fleet.publish(&fleet.node_queue("a"), &t).await;
    fleet.wait_started(&t.task_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10));
    drop(a);
    // Node b's reaper re-queues it to a's queue, where it waits; nothing runs it meanwhile.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(fleet::manifests(&fleet.store()).is_empty());
    let _a = fleet.start(&spec);
    let e = fleet.wait_final(&t.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    assert_eq!(e.node, fleet.name("a"));
    assert_eq!(fleet::manifests(&fleet.store()).len(), 1);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_short_tasks_gives_back_long_ones_and_exits_0() {
    let fleet = Fleet::new().await;
    let mut spec = WorkerSpec::new("a", &["p"]);
    spec.grace_seconds = 3;
    let mut a = fleet.start(&spec);
    let short = fleet::noop(1000);
    let long = fleet::noop(120_000);
    fleet.publish(&fleet.node_queue("a"), &short).await;
    fleet.publish(&fleet.pool_queue("p"), &long).await;
    fleet.wait_started(&short.task_id).await;
    fleet.wait_started(&long.task_id).await;
    a.signal(libc::SIGTERM);
    assert_eq!(
        a.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        a.log_text()
    );
    let e = fleet.wait_final(&short.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    // The long one was given back to the pool, not reported: another worker takes it.
    assert!(fleet
        .events_of(&long.task_id)
        .iter()
        .all(|e| !e.status.is_final()));
    let mut c = fleet.redis().await;
    let hb: Option<String> = redis::cmd("GET")
        .arg(fleet.keys().worker(&a.node))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(hb.is_none(), "the heartbeat outlived the worker");
    let _b = fleet.start(&WorkerSpec::new("b", &["p"]));
    fleet
        .wait_event("the long task to start on b", |e| {
            e.task_id.as_ref() == Some(&long.task_id)
                && matches!(e.status, EventStatus::Started)
                && e.node == fleet.name("b")
        })
        .await;
    fleet.cleanup().await;
}

/// Sets RabbitMQ's `consumer_timeout` back to its default (30 min) when dropped.
struct RestoreConsumerTimeout;

impl Drop for RestoreConsumerTimeout {
    fn drop(&mut self) {
        let restored = std::process::Command::new("rabbitmqctl")
            .args([
                "eval",
                "application:set_env(rabbit, consumer_timeout, 1800000).",
            ])
            .output();
        if !restored.is_ok_and(|o| o.status.success()) {
            eprintln!("warning: could not set RabbitMQ's consumer_timeout back to 1800000 ms");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_longer_than_the_consumer_timeout_completes_once() {
    let _guard = BROKER.lock().await;
    let set = |ms: u64| {
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "eval",
                &format!("application:set_env(rabbit, consumer_timeout, {ms})."),
            ])
            .output()
            .expect("rabbitmqctl");
        assert!(out.status.success(), "{out:?}");
    };
    set(2000);
    // Back to RabbitMQ's default however the test ends: a timeout or a failed assertion must
    // not leave the machine's broker closing every channel after 2 s.
    let _restore = RestoreConsumerTimeout;
    let fleet = Fleet::new().await;
    let mut spec = WorkerSpec::new("a", &[]);
    spec.concurrency = 1;
    let a = fleet.start(&spec);
    let src = slow_source(&fleet.dir, SLOW_MIB);
    // RabbitMQ 3.10 checks the timeout once a minute (`examples/consumer_timeout_probe.rs`: a
    // channel holding an unacknowledged delivery is closed ~60 s after it got it, with the
    // timeout at 2 s). So: a backup longer than the timeout, then a task of 70 s, which a check
    // must see, with a third task queued behind them (buffered deliveries must not sit
    // unacknowledged either).
    let backup = fleet::task(TaskSpec::Backup(slow_backup(&fleet, &src, "long")));
    let long = fleet::noop(70_000);
    let after = fleet::noop(0);
    let q = fleet.node_queue("a");
    fleet.publish(&q, &backup).await;
    fleet.publish(&q, &long).await;
    fleet.publish(&q, &after).await;
    let results = [
        fleet.wait_final(&backup.task_id).await,
        fleet.wait_final(&long.task_id).await,
        fleet.wait_final(&after.task_id).await,
    ];
    for e in &results {
        assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    }
    for t in [&backup, &long, &after] {
        let started = fleet
            .events_of(&t.task_id)
            .iter()
            .filter(|e| matches!(e.status, EventStatus::Started))
            .count();
        assert_eq!(started, 1);
    }
    assert_eq!(fleet::manifests(&fleet.store()).len(), 1);
    assert!(
        !a.log_text().contains("lost the broker connection"),
        "the channel was closed: {}",
        a.log_text()
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_two_storages_locks_both_and_a_writer_of_either_waits_its_turn() {
    let fleet = Fleet::new().await;
    let store2 = fleet.dir.join("store2");
    let mut spec = WorkerSpec::new("a", &[]);
    spec.extra = format!(
        "\n[storages.local2]\ntype = \"local\"\ncontainer = {:?}\n",
        store2.display().to_string()
    );
    let _a = fleet.start(&spec);
    spec.node = "b".into();
    let _b = fleet.start(&spec);
    let src = slow_source(&fleet.dir, SLOW_MIB);
    // Named storages with their own containers: the task names them only.
    let both = |storages: serde_json::Value| -> TaskSpec {
        let mut s = serde_json::to_value(slow_backup(&fleet, &src, "multi")).unwrap();
        s.as_object_mut().unwrap().remove("container");
        s["storage"] = storages;
        TaskSpec::Backup(serde_json::from_value(s).unwrap())
    };
    let first = fleet::task(both(json!(["local1", "local2"])));
    fleet.publish(&fleet.node_queue("a"), &first).await;
    fleet.wait_started(&first.task_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A backup of the same name to the second storage alone, on another worker: locked.
    let second = fleet::task(both(json!(["local2"])));
    fleet.publish(&fleet.node_queue("b"), &second).await;
    let e = fleet.wait_final(&second.task_id).await;
    assert!(
        matches!(
            e.status,
            EventStatus::Failed {
                error_class: ErrorClass::Locked,
                exit_code: 11,
                ..
            }
        ),
        "{e:?}"
    );
    let e = fleet.wait_final(&first.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    assert_eq!(fleet::manifests(&fleet.store()).len(), 1);
    assert_eq!(fleet::manifests(&store2).len(), 1);
    // Both locks were released: the same backup to local2 alone now runs.
    let third = fleet::task(both(json!(["local2"])));
    fleet.publish(&fleet.node_queue("b"), &third).await;
    let e = fleet.wait_final(&third.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    assert_eq!(fleet::manifests(&store2).len(), 2);
    fleet.cleanup().await;
}
