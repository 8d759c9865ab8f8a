//! The worker daemon's progress events and deferred tasks (issue #5): a running backup reports
//! its progress every `progress_interval_ms`; a task whose `not_before` lies ahead waits without
//! taking the worker's only slot.

use freezer_contracts::{BackupSpec, EventStatus, TaskSpec, UtcTime};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use serde_json::json;
use std::fs;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backup_reports_growing_progress_before_its_result() {
    let fleet = Fleet::new().await;
    let mut spec = WorkerSpec::new("p", &[]);
    spec.extra = "progress_interval_ms = 200\n".into();
    let _w = fleet.start(&spec);
    let src = fleet.dir.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..6u64 {
        freezer_e2e::write_random_file(&src.join(format!("f{i}")), i, 1 << 20);
    }
    // 6 MiB at 2 MiB/s: about 3 s, so several progress events.
    let backup: BackupSpec = serde_json::from_value(json!({
        "path_to_backup": src,
        "backup_name": "progress",
        "container": fleet.store(),
        "storage": ["local1"],
        "compression": "none",
        "upload_limit": "2M",
    }))
    .unwrap();
    let task = fleet::task(TaskSpec::Backup(backup));
    fleet.publish(&fleet.node_queue("p"), &task).await;
    let last = fleet.wait_final(&task.task_id).await;
    let EventStatus::Succeeded { result, .. } = &last.status else {
        panic!("backup failed: {last:?}");
    };
    let events = fleet.events_of(&task.task_id);
    let progress: Vec<(u64, u64, u64)> = events
        .iter()
        .filter_map(|e| match e.status {
            EventStatus::Progress {
                files,
                bytes_read,
                bytes_written,
                ..
            } => Some((files, bytes_read, bytes_written)),
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 3, "too few progress events: {events:?}");
    for pair in progress.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1 && pair[0].2 <= pair[1].2,
            "{progress:?}"
        );
        assert_ne!(pair[0], pair[1], "an unchanged progress event was repeated");
    }
    let stored = result["bytes_stored"].as_u64().unwrap();
    let (_, _, written) = *progress.last().unwrap();
    assert!(written > 0 && written <= stored, "{written} of {stored}");
    let order: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(order.first(), Some(&"started"), "{order:?}");
    assert_eq!(order.last(), Some(&"succeeded"), "{order:?}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_for_not_before_does_not_hold_the_only_slot() {
    let fleet = Fleet::new().await;
    let mut spec = WorkerSpec::new("nb", &[]);
    spec.concurrency = 1;
    let _w = fleet.start(&spec);
    let q = fleet.node_queue("nb");
    let start_at = time::OffsetDateTime::now_utc() + Duration::from_secs(4);
    let mut later = fleet::noop(0);
    later.not_before = Some(UtcTime::from_offset_date_time(start_at).unwrap());
    fleet.publish(&q, &later).await;
    // Give the worker time to claim the deferred task, then send one for now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = fleet::noop(0);
    fleet.publish(&q, &now).await;
    let done_now = fleet.wait_final(&now.task_id).await;
    assert!(matches!(done_now.status, EventStatus::Succeeded { .. }));
    assert!(
        time::OffsetDateTime::now_utc() < start_at,
        "the task for now waited for the deferred one"
    );
    let started_later = fleet.wait_started(&later.task_id).await;
    assert!(started_later.at.as_offset_date_time() >= start_at - Duration::from_millis(1));
    let done_later = fleet.wait_final(&later.task_id).await;
    assert!(matches!(done_later.status, EventStatus::Succeeded { .. }));
    fleet.cleanup().await;
}
