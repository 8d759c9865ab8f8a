//! A task whose `expires_at` passes while it waits for an execution slot is reported `expired`,
//! not run late (issue 12: expiry was checked only before the wait for a slot). The window is
//! open to a deferred task (`not_before` in the future): it is taken from the queue while every
//! slot is busy, and becomes due while they still are.

use freezer_contracts::{EventStatus, UtcTime};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_expires_while_waiting_for_a_slot_is_reported_expired_not_run() {
    let fleet = Fleet::new().await;
    let mut spec = WorkerSpec::new("a", &[]);
    // One slot, held by a 6 s task: the deferred task becomes due after 2 s, then waits for the
    // slot past its expiry at 4 s.
    spec.concurrency = 1;
    let _worker = fleet.start(&spec);
    let q = fleet.node_queue("a");

    // The deferred task first: it is taken, claimed and set aside (it holds no intake slot);
    // then the long task takes the only slot before the deferred one becomes due.
    let mut late = fleet::noop(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let at = |s: u64| UtcTime::from_unix_seconds((now + Duration::from_secs(s)).as_secs() as i64);
    late.not_before = Some(at(2).unwrap());
    late.expires_at = Some(at(4).unwrap());
    fleet.publish(&q, &late).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let long = fleet::noop(6_000);
    fleet.publish(&q, &long).await;
    fleet.wait_started(&long.task_id).await;

    let first = fleet.wait_final(&long.task_id).await;
    assert!(
        matches!(first.status, EventStatus::Succeeded { .. }),
        "{first:?}"
    );
    let e = fleet.wait_final(&late.task_id).await;
    assert!(
        matches!(e.status, EventStatus::Expired { .. }),
        "a task that expired while waiting for a slot ran anyway: {e:?}"
    );
    assert_eq!(
        fleet.task_field(&late.task_id, "state").await.as_deref(),
        Some("expired")
    );
}
