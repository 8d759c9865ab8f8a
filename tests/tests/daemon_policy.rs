//! The worker's `[policy]` against the real RabbitMQ and Redis: a task that would read or write
//! outside the configured roots, or act for another host, fails (class permanent) with the rule
//! named, and nothing is read or written; a task inside the policy runs.

use freezer_contracts::{ErrorClass, EventStatus, TaskSpec};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use serde_json::{json, Value};
use std::fs;

/// Publishes `spec` as a task of `kind` to `queue` and returns its final status.
async fn run(
    fleet: &Fleet,
    queue: &str,
    kind: freezer_contracts::TaskKind,
    spec: Value,
) -> EventStatus {
    let t = fleet::task(TaskSpec::from_parts(kind, spec).unwrap());
    fleet.publish(queue, &t).await;
    fleet.wait_final(&t.task_id).await.status
}

/// The reason of a permanent failure (panics on any other outcome).
fn refusal(status: &EventStatus) -> &str {
    match status {
        EventStatus::Failed {
            error_class: ErrorClass::Permanent,
            reason,
            ..
        } => reason,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_policy_backup_and_restore_tasks_are_refused_with_their_reason() {
    use freezer_contracts::TaskKind::{Backup, Restore};
    let fleet = Fleet::new().await;
    let data = fleet.dir.join("data");
    let outside = fleet.dir.join("data2");
    let restore_root = fleet.dir.join("restore");
    for d in [&data, &outside, &restore_root] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(data.join("a.txt"), b"alpha\n").unwrap();
    fs::write(outside.join("secret"), b"not for tasks\n").unwrap();
    // A link inside the root that leads out of it.
    std::os::unix::fs::symlink(&outside, data.join("escape")).unwrap();
    let mut spec = WorkerSpec::new("a", &[]);
    spec.policy = Some(format!(
        "backup_roots = [{:?}]\nrestore_roots = [{:?}]\n",
        data.display().to_string(),
        restore_root.display().to_string()
    ));
    spec.extra = "hostname = \"policy-host\"\n".into();
    let _w = fleet.start(&spec);
    let q = fleet.node_queue("a");
    let backup = |path: &std::path::Path, extra: Value| {
        let mut v = json!({"path_to_backup": path, "backup_name": "docs", "storage": ["local1"]});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };

    // Out of policy: a path outside the roots (a prefix trick), a symlink escape, another host,
    // a container outside the storage's.
    let s = run(&fleet, &q, Backup, backup(&outside, json!({}))).await;
    let r = refusal(&s);
    assert!(
        r.starts_with(&format!("policy: path_to_backup {}", outside.display()))
            && r.contains("is outside [policy] backup_roots"),
        "{r}"
    );
    let s = run(&fleet, &q, Backup, backup(&data.join("escape"), json!({}))).await;
    assert!(refusal(&s).contains("resolved to"), "{s:?}");
    let s = run(
        &fleet,
        &q,
        Backup,
        backup(&data, json!({"hostname": "other"})),
    )
    .await;
    assert!(refusal(&s).contains("not in [policy] hosts"), "{s:?}");
    let s = run(&fleet, &q, Backup, backup(&data, json!({"container": "/"}))).await;
    assert!(refusal(&s).starts_with("policy: container \"/\""), "{s:?}");
    assert!(fleet::manifests(&fleet.store()).is_empty());

    // In policy: the backup runs.
    let s = run(&fleet, &q, Backup, backup(&data, json!({}))).await;
    assert!(matches!(s, EventStatus::Succeeded { .. }), "{s:?}");

    // A restore outside restore_roots, with overwrite, is refused and writes nothing.
    let s = run(
        &fleet,
        &q,
        Restore,
        json!({"backup_name": "docs", "storage": ["local1"], "restore_abs_path": outside,
               "overwrite": true}),
    )
    .await;
    let r = refusal(&s);
    assert!(
        r.starts_with(&format!("policy: restore_abs_path {}", outside.display()))
            && r.contains("is outside [policy] restore_roots"),
        "{r}"
    );
    assert!(!outside.join("a.txt").exists());

    // Inside: restored.
    let target = restore_root.join("docs");
    let s = run(
        &fleet,
        &q,
        Restore,
        json!({"backup_name": "docs", "storage": ["local1"], "restore_abs_path": target}),
    )
    .await;
    assert!(matches!(s, EventStatus::Succeeded { .. }), "{s:?}");
    assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha\n");
    fleet.cleanup().await;
}
