//! A panic inside a task becomes a failed task (class permanent, with the panic message): its
//! lease and writer locks are released, its slot freed, and the daemon goes on. The panic is
//! injected by the worker's debug-build hook `FREEZER_DEBUG_PANIC_SCOPE` while the task holds
//! its writer lock.

use freezer_contracts::{BackupSpec, ErrorClass, EventStatus, TaskEnvelope, TaskSpec};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use serde_json::json;
use std::fs;
use std::time::{Duration, Instant};

fn backup(fleet: &Fleet, name: &str) -> TaskEnvelope {
    let src = fleet.dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    let spec: BackupSpec = serde_json::from_value(json!({
        "path_to_backup": src, "backup_name": name, "container": fleet.store(),
        "storage": ["local1"], "hostname": "test-host",
    }))
    .unwrap();
    fleet::task(TaskSpec::Backup(spec))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_task_fails_it_releases_its_lease_and_locks_and_frees_its_slot() {
    let fleet = Fleet::new().await;
    let mut spec = WorkerSpec::new("a", &[]);
    // One slot: the next task runs only if the panicked one gave its slot back.
    spec.concurrency = 1;
    spec.env = vec![("FREEZER_DEBUG_PANIC_SCOPE".into(), "test-host_boom".into())];
    let worker = fleet.start(&spec);
    let q = fleet.node_queue("a");

    let boom = backup(&fleet, "boom");
    fleet.publish(&q, &boom).await;
    let e = fleet.wait_final(&boom.task_id).await;
    let at_final = Instant::now();
    let EventStatus::Failed {
        error_class,
        exit_code,
        reason,
    } = &e.status
    else {
        panic!("the panicking task did not fail: {e:?}")
    };
    assert_eq!(*error_class, ErrorClass::Permanent, "{reason}");
    assert_eq!(*exit_code, 1);
    assert!(reason.contains("panicked"), "{reason}");
    assert!(reason.contains("injected panic"), "{reason}");
    assert_eq!(
        fleet.task_field(&boom.task_id, "state").await.as_deref(),
        Some("failed")
    );

    // Its writer lock is released (not left to expire: the test's lock TTL is 3 s and the lock
    // was renewed every 0.5 s until the panic) and its lease is gone.
    let lock_key = format!(
        "{}lock:{}",
        fleet.prefix,
        freezer_contracts::lock_scope(
            "local1",
            &fleet.store().display().to_string(),
            "test-host",
            "boom"
        )
    );
    let mut c = fleet.redis().await;
    loop {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&lock_key)
            .query_async(&mut c)
            .await
            .unwrap();
        if !exists {
            break;
        }
        assert!(
            at_final.elapsed() < Duration::from_millis(1500),
            "the writer lock of the panicked task was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lease: bool = redis::cmd("EXISTS")
        .arg(format!("{}task:{}:lease", fleet.prefix, boom.task_id))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!lease, "the panicked task's lease is still held");

    // The slot is free and the daemon goes on: the next task on the only slot succeeds, and the
    // panicked task is no longer running on this worker.
    let fine = backup(&fleet, "fine");
    fleet.publish(&q, &fine).await;
    let e = fleet.wait_final(&fine.task_id).await;
    assert!(
        matches!(e.status, EventStatus::Succeeded { exit_code: 0, .. }),
        "{e:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hb: String = redis::cmd("GET")
        .arg(format!("{}worker:{}", fleet.prefix, fleet.name("a")))
        .query_async(&mut c)
        .await
        .unwrap();
    let hb: serde_json::Value = serde_json::from_str(&hb).unwrap();
    assert_eq!(hb["running"], json!([]), "{hb}");
    assert_eq!(hb["free_slots"], json!(1), "{hb}");
    let unreported: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}running", fleet.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(unreported.is_empty(), "{unreported:?}");
    // One final event: nobody re-ran or re-reported it.
    let finals = fleet
        .events_of(&boom.task_id)
        .iter()
        .filter(|e| e.status.is_final())
        .count();
    assert_eq!(finals, 1);
    assert!(worker.log_text().contains("the task panicked: failing it"));
    drop(worker);
    fleet.cleanup().await;
}
