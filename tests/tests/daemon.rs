//! The worker daemon's run loop against the real RabbitMQ and Redis: tasks on node and pool
//! queues, every engine kind through the fleet, poison messages, duplicate delivery.

use freezer_contracts::{
    BackupSpec, ErrorClass, EventStatus, ListSpec, PruneSpec, RestoreSpec, TaskSpec, VerifySpec,
};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

fn backup_spec(fleet: &Fleet, source: &Path, name: &str) -> BackupSpec {
    serde_json::from_value(json!({
        "path_to_backup": source,
        "backup_name": name,
        "container": fleet.store(),
        "storage": ["local1"],
        "hostname": "test-host",
    }))
    .unwrap()
}

fn source_tree(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    fs::write(src.join("sub/b.bin"), freezer_e2e::random_bytes(7, 300_000)).unwrap();
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_node_and_pool_queues_run_once_on_the_right_workers() {
    let fleet = Fleet::new().await;
    let workers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| fleet.start(&WorkerSpec::new(n, &["p"])))
        .collect();

    // A node task runs on its node.
    let t = fleet::noop(0);
    fleet.publish(&fleet.node_queue("b"), &t).await;
    let e = fleet.wait_final(&t.task_id).await;
    assert!(
        matches!(e.status, EventStatus::Succeeded { exit_code: 0, .. }),
        "{e:?}"
    );
    assert_eq!(e.node, fleet.name("b"));
    assert_eq!(e.job_id.as_deref(), Some("job-test"));

    // Pool tasks: each runs exactly once, on some worker of the pool.
    let tasks: Vec<_> = (0..30).map(|_| fleet::noop(50)).collect();
    for t in &tasks {
        fleet.publish(&fleet.pool_queue("p"), t).await;
    }
    let mut by_node: HashMap<String, usize> = HashMap::new();
    for t in &tasks {
        let e = fleet.wait_final(&t.task_id).await;
        assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
        *by_node.entry(e.node.clone()).or_default() += 1;
        assert_eq!(
            fleet.task_field(&t.task_id, "state").await.as_deref(),
            Some("succeeded")
        );
        assert_eq!(
            fleet.task_field(&t.task_id, "runs").await.as_deref(),
            Some("1")
        );
    }
    for t in &tasks {
        let started = fleet
            .events_of(&t.task_id)
            .iter()
            .filter(|e| matches!(e.status, EventStatus::Started))
            .count();
        assert_eq!(started, 1, "task {} started {started} times", t.task_id);
    }
    assert!(by_node.keys().all(|n| workers.iter().any(|w| &w.node == n)));
    eprintln!("pool tasks per node: {by_node:?}");

    // Past a lease period and several reaper passes: every final event went out once, and no
    // task is left in the set of unreported tasks.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    for t in &tasks {
        let finals = fleet
            .events_of(&t.task_id)
            .iter()
            .filter(|e| e.status.is_final())
            .count();
        assert_eq!(finals, 1, "task {} reported {finals} times", t.task_id);
    }
    let mut c = fleet.redis().await;
    let unreported: Vec<String> = redis::cmd("SMEMBERS")
        .arg(fleet.keys().running())
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(unreported.is_empty(), "{unreported:?}");

    // Heartbeats: node, pools, version, free slots, running tasks.
    let hb: String = redis::cmd("GET")
        .arg(fleet.keys().worker(&fleet.name("a")))
        .query_async(&mut c)
        .await
        .unwrap();
    let hb: serde_json::Value = serde_json::from_str(&hb).unwrap();
    assert_eq!(hb["node"], json!(fleet.name("a")));
    assert_eq!(hb["pools"], json!([fleet.name("p")]));
    assert_eq!(hb["capacity"], json!(4));
    assert!(hb["free_slots"].is_u64() && hb["running"].is_array() && hb["version"].is_string());

    // Logs are JSON lines with the task and job ids.
    let log = workers[1].log_text();
    let line = log
        .lines()
        .find(|l| l.contains("task succeeded"))
        .expect("a task log line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(v["span"]["task_id"], json!(t.task_id.to_string()));
    assert_eq!(v["span"]["job_id"], json!("job-test"));
    drop(workers);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_kind_runs_through_the_fleet_as_the_cli_would() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("a", &[]));
    let q = fleet.node_queue("a");
    let src = source_tree(&fleet.dir);

    let mut spec = backup_spec(&fleet, &src, "docs");
    spec.encrypt_key = Some("main".into());
    let t = fleet::task(TaskSpec::Backup(spec));
    fleet.publish(&q, &t).await;
    let e = fleet.wait_final(&t.task_id).await;
    let EventStatus::Succeeded {
        exit_code: 0,
        result,
    } = &e.status
    else {
        panic!("backup failed: {e:?}")
    };
    assert!(result["backup_id"].is_string(), "{result}");
    let manifests = fleet::manifests(&fleet.store());
    assert_eq!(manifests.len(), 1);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifests[0]).unwrap()).unwrap();
    assert!(
        manifest["fencing_token"].as_u64().is_some_and(|t| t >= 1),
        "{manifest}"
    );

    let target = fleet.dir.join("restored");
    let restore: RestoreSpec = serde_json::from_value(json!({
        "backup_name": "docs", "container": fleet.store(), "storage": ["local1"],
        "hostname": "test-host", "restore_abs_path": target, "encrypt_key": "main",
    }))
    .unwrap();
    let t = fleet::task(TaskSpec::Restore(restore));
    fleet.publish(&q, &t).await;
    let e = fleet.wait_final(&t.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(
        fs::read(target.join("sub/b.bin")).unwrap(),
        fs::read(src.join("sub/b.bin")).unwrap()
    );

    let list: ListSpec = serde_json::from_value(json!({
        "container": fleet.store(), "storage": ["local1"],
    }))
    .unwrap();
    let t = fleet::task(TaskSpec::List(list));
    fleet.publish(&q, &t).await;
    let e = fleet.wait_final(&t.task_id).await;
    let EventStatus::Succeeded { result, .. } = &e.status else {
        panic!("{e:?}")
    };
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{result}");

    let verify: VerifySpec = serde_json::from_value(json!({
        "backup_name": "docs", "container": fleet.store(), "storage": ["local1"],
        "hostname": "test-host", "encrypt_key": "main", "read_data": true,
    }))
    .unwrap();
    let t = fleet::task(TaskSpec::Verify(verify));
    fleet.publish(&q, &t).await;
    let e = fleet.wait_final(&t.task_id).await;
    assert!(
        matches!(e.status, EventStatus::Succeeded { exit_code: 0, .. }),
        "{e:?}"
    );

    let prune: PruneSpec = serde_json::from_value(json!({
        "backup_name": "docs", "container": fleet.store(), "storage": ["local1"],
        "hostname": "test-host", "keep_last": 1,
    }))
    .unwrap();
    let t = fleet::task(TaskSpec::Prune(prune));
    fleet.publish(&q, &t).await;
    let e = fleet.wait_final(&t.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    assert_eq!(fleet::manifests(&fleet.store()).len(), 1);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_rejected_with_their_reason_and_the_worker_goes_on() {
    let fleet = Fleet::new().await;
    let dead = fleet.watch_dead().await;
    let w = fleet.start(&WorkerSpec::new("a", &[]));
    let q = fleet.node_queue("a");
    let good = fleet::noop(0);
    let mut wrong_version: serde_json::Value =
        serde_json::from_slice(&fleet::noop(0).to_json()).unwrap();
    wrong_version["schema_version"] = json!(99);
    let mut typo: serde_json::Value = serde_json::from_slice(&fleet::noop(0).to_json()).unwrap();
    typo["spec"] = json!({"sleep_msec": 5});
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"{not json".to_vec(), "msg-garbage", "not a JSON object"),
        (
            serde_json::to_vec(&wrong_version).unwrap(),
            "msg-version",
            "schema_version 99",
        ),
        (
            serde_json::to_vec(&typo).unwrap(),
            "msg-typo",
            "spec.sleep_msec",
        ),
    ];
    for (body, id, _) in &cases {
        fleet.publish_raw(&q, body, Some(id)).await;
    }
    for (_, id, reason) in &cases {
        let e = fleet
            .wait_event(&format!("the rejection of {id}"), |e| {
                matches!(&e.status, EventStatus::Rejected { message_id: Some(m), .. } if m == id)
            })
            .await;
        let EventStatus::Rejected { reason: got, .. } = &e.status else {
            unreachable!()
        };
        assert!(got.contains(reason), "{id}: {got}");
        assert_eq!(e.routing_key().split('.').nth(2), Some("rejected"));
        fleet::wait_until("the dead letter", fleet::PATIENCE, || {
            dead.lock().unwrap().iter().any(|(_, m, r)| {
                m.as_deref() == Some(*id) && r.as_deref().is_some_and(|r| r.contains(reason))
            })
        });
    }

    // Names the worker does not know, and a task that expired: reported, not dead-lettered.
    let src = source_tree(&fleet.dir);
    let mut spec = backup_spec(&fleet, &src, "x");
    spec.storage = vec!["nowhere".into()];
    let unknown_storage = fleet::task(TaskSpec::Backup(spec));
    let mut spec = backup_spec(&fleet, &src, "x");
    spec.encrypt_key = Some("nokey".into());
    let unknown_key = fleet::task(TaskSpec::Backup(spec));
    for (t, what) in [(&unknown_storage, "nowhere"), (&unknown_key, "nokey")] {
        fleet.publish(&q, t).await;
        let e = fleet.wait_final(&t.task_id).await;
        let EventStatus::Failed {
            error_class,
            reason,
            ..
        } = &e.status
        else {
            panic!("{e:?}")
        };
        assert_eq!(*error_class, ErrorClass::Permanent);
        assert!(reason.contains(what), "{reason}");
    }
    let mut expired = fleet::noop(0);
    expired.expires_at = Some(freezer_contracts::UtcTime::parse("2020-01-01T00:00:00Z").unwrap());
    fleet.publish(&q, &expired).await;
    let e = fleet.wait_final(&expired.task_id).await;
    assert!(matches!(e.status, EventStatus::Expired { .. }), "{e:?}");
    assert_eq!(
        fleet.task_field(&expired.task_id, "state").await.as_deref(),
        Some("expired")
    );

    // Still serving.
    fleet.publish(&q, &good).await;
    let e = fleet.wait_final(&good.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    assert!(w.log_text().contains("rejecting a task message"));
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_runs_once_and_gets_the_recorded_result() {
    let fleet = Fleet::new().await;
    let _a = fleet.start(&WorkerSpec::new("a", &["p"]));
    let _b = fleet.start(&WorkerSpec::new("b", &["p"]));
    let q = fleet.pool_queue("p");
    let src = source_tree(&fleet.dir);
    let t = fleet::task(TaskSpec::Backup(backup_spec(&fleet, &src, "dup")));
    // Two copies at once: one runs, the other finds it running (or finished).
    fleet.publish(&q, &t).await;
    fleet.publish(&q, &t).await;
    let first = fleet.wait_final(&t.task_id).await;
    assert!(
        matches!(first.status, EventStatus::Succeeded { .. }),
        "{first:?}"
    );
    // A copy after it finished gets the recorded result again.
    let before = fleet
        .events_of(&t.task_id)
        .iter()
        .filter(|e| e.status.is_final())
        .count();
    fleet.publish(&q, &t).await;
    fleet
        .wait_event("the recorded result again", |_| {
            fleet
                .events_of(&t.task_id)
                .iter()
                .filter(|e| e.status.is_final())
                .count()
                > before
        })
        .await;
    let events = fleet.events_of(&t.task_id);
    let started = events
        .iter()
        .filter(|e| matches!(e.status, EventStatus::Started))
        .count();
    assert_eq!(started, 1, "{events:?}");
    for e in events.iter().filter(|e| e.status.is_final()) {
        assert_eq!(e.status, first.status, "a republished result differs");
    }
    assert_eq!(
        fleet::manifests(&fleet.store()).len(),
        1,
        "the backup ran twice"
    );
    assert_eq!(
        fleet.task_field(&t.task_id, "runs").await.as_deref(),
        Some("1")
    );
    fleet.cleanup().await;
}
