//! The keeper loop: every heartbeat interval the worker renews the leases of its tasks, writes
//! its heartbeat, and re-queues the tasks of workers that died.
//!
//! - Heartbeat: `worker:<node>` (JSON: node, pools, version, capacity, free slots, running task
//!   ids, time), expiring after three intervals, and the node's score (now, in ms) in the sorted
//!   set `workers`, from which `freezer_fleet_workers_alive` is counted.
//! - Leases: a lease found to be someone else's cancels the local run (it may not finish twice).
//! - Reaper: tasks whose lease expired are published again to the queue they came from (a pool
//!   task reaches another live worker; a node task waits in its node's queue for the node to
//!   return); finished tasks whose final event may not have gone out have it published again.
//!   Bound: a killed worker's task is re-queued within `lease_ttl_ms` + one interval (15 s + 5 s
//!   with the defaults) of its last renewal.

use super::state::Orphan;
use super::Shared;
use freezer_contracts::{Event, TASKS_EXCHANGE};
use freezer_fleet::amqp::Outgoing;
use freezer_fleet::clock::now_ms;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Runs the keeper until the task is aborted.
pub async fn keep(shared: Arc<Shared>) {
    let every = Duration::from_millis(shared.daemon.heartbeat_interval_ms);
    loop {
        renew_leases(&shared).await;
        if let Err(e) = heartbeat(&shared).await {
            tracing::warn!(error = %e, "cannot write the heartbeat");
        }
        if let Err(e) = reap(&shared).await {
            tracing::warn!(error = %e, "cannot look for orphaned tasks");
        }
        tokio::time::sleep(every).await;
    }
}

async fn renew_leases(shared: &Shared) {
    let running: Vec<_> = shared.running.lock().unwrap().values().cloned().collect();
    for r in running {
        match shared.store.renew(&r.lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(task_id = %r.lease.task_id, "task lease taken by another worker: cancelling the local run");
                r.lease_lost.store(true, Ordering::SeqCst);
                r.cancel.cancel();
            }
            Err(e) => {
                tracing::warn!(task_id = %r.lease.task_id, error = %e, "cannot renew a task lease")
            }
        }
    }
}

async fn heartbeat(shared: &Shared) -> redis::RedisResult<()> {
    let d = &shared.daemon;
    let running: Vec<String> = shared.running.lock().unwrap().keys().cloned().collect();
    let free = shared.slots.available_permits();
    let body = json!({
        "node": d.node,
        "pools": d.pools,
        "version": env!("CARGO_PKG_VERSION"),
        "capacity": d.concurrency,
        "free_slots": free,
        "running": running,
        "at_ms": now_ms(),
    });
    let ttl_ms = d.heartbeat_interval_ms * 3;
    let mut conn = shared.store.conn();
    let keys = shared.store.keys();
    let workers = keys.workers();
    let now = now_ms();
    let (_, _, _, alive): ((), i64, i64, i64) = redis::pipe()
        .cmd("SET")
        .arg(keys.worker(&d.node))
        .arg(body.to_string())
        .arg("PX")
        .arg(ttl_ms)
        .cmd("ZADD")
        .arg(&workers)
        .arg(now)
        .arg(&d.node)
        .cmd("ZREMRANGEBYSCORE")
        .arg(&workers)
        .arg("-inf")
        .arg(now.saturating_sub(ttl_ms * 10))
        .cmd("ZCOUNT")
        .arg(&workers)
        .arg(now.saturating_sub(ttl_ms))
        .arg("+inf")
        .query_async(&mut conn)
        .await?;
    shared.metrics.workers_alive.set(alive);
    Ok(())
}

/// Removes this worker's heartbeat (clean shutdown).
pub async fn clear(shared: &Shared) {
    let d = &shared.daemon;
    let mut conn = shared.store.conn();
    let _: redis::RedisResult<()> = redis::pipe()
        .cmd("DEL")
        .arg(shared.store.keys().worker(&d.node))
        .cmd("ZREM")
        .arg(shared.store.keys().workers())
        .arg(&d.node)
        .query_async(&mut conn)
        .await;
}

async fn reap(shared: &Shared) -> redis::RedisResult<()> {
    for orphan in shared.store.orphans().await? {
        match orphan {
            Orphan::Report { id, event } => {
                let Ok(event) = Event::from_json(event.as_bytes()) else {
                    shared.store.reported(&id).await?;
                    continue;
                };
                if shared
                    .publisher
                    .event(&event, Duration::from_secs(5))
                    .await
                    .is_ok()
                {
                    shared.store.reported(&id).await?;
                }
            }
            Orphan::Requeue { id, queue, body } => {
                tracing::info!(task_id = %id, queue = %queue, "re-queueing a task whose worker is gone");
                let msg = Outgoing {
                    exchange: TASKS_EXCHANGE,
                    routing_key: &queue,
                    body: &body,
                    message_id: Some(&id),
                    reason: None,
                };
                if let Err(e) = shared.publisher.publish(&msg, Duration::from_secs(5)).await {
                    tracing::warn!(task_id = %id, error = %e, "cannot re-queue an orphaned task");
                }
            }
        }
    }
    Ok(())
}
