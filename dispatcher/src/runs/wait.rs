//! Following one task to its outcome: its events (fast path) and its record in Redis (the truth,
//! read every `poll` so a missed event, or an event sent while no dispatcher listened, still ends
//! the wait). A task that has no live worker lease by its `expires_at` + `margin` is over: it
//! never started (its node is down, or no worker serves its pool), or its worker died and it can
//! no longer start, since a worker reports an expired task instead of running it.

use freezer_contracts::{Event, EventStatus, TaskEnvelope, TaskState};
use freezer_fleet::Keys;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// How a task ended, as the run engine and `publish --wait` need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `succeeded`, `failed`, `expired` or `rejected`.
    pub status: String,
    /// The node that reported it.
    pub node: Option<String>,
    /// Exit code (the failed event's, 0 on success, 1 for expired and rejected).
    pub exit_code: i32,
    /// Why it did not succeed.
    pub reason: Option<String>,
    /// The final event, when there was one.
    pub event: Option<Event>,
}

impl Outcome {
    /// Whether the task succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == "succeeded"
    }

    /// The outcome a final event reports.
    pub fn of_event(e: &Event) -> Outcome {
        let (exit_code, reason) = match &e.status {
            EventStatus::Succeeded { exit_code, .. } => (*exit_code, None),
            EventStatus::Failed {
                exit_code, reason, ..
            } => (*exit_code, Some(reason.clone())),
            EventStatus::Expired { expires_at } => {
                (1, Some(format!("expired: not started by {expires_at}")))
            }
            EventStatus::Rejected { reason, .. } => (1, Some(format!("rejected: {reason}"))),
            EventStatus::Started | EventStatus::Progress { .. } => (1, None),
        };
        Outcome {
            status: e.status.as_str().into(),
            node: Some(e.node.clone()),
            exit_code,
            reason,
            event: Some(e.clone()),
        }
    }
}

/// Where the wait reads from.
pub struct Watch<'a> {
    /// Redis (task records).
    pub redis: &'a mut ConnectionManager,
    /// The Redis key names.
    pub keys: &'a Keys,
    /// Events, subscribed before the task was published.
    pub events: &'a mut broadcast::Receiver<Arc<Event>>,
    /// Grace after `expires_at` before a task without a live lease counts as expired.
    pub margin: Duration,
    /// How often the Redis record is read.
    pub poll: Duration,
}

/// Waits for the outcome of `task`; `on_event` sees each of its events (progress lines).
pub async fn outcome(
    w: Watch<'_>,
    task: &TaskEnvelope,
    mut on_event: impl FnMut(&Event),
) -> Outcome {
    let mut tick = tokio::time::interval(w.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events_open = true;
    loop {
        tokio::select! {
            r = w.events.recv(), if events_open => match r {
                Ok(e) if e.task_id.as_ref() == Some(&task.task_id) => {
                    on_event(&e);
                    if e.status.is_final() {
                        return Outcome::of_event(&e);
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
            _ = tick.tick() => {
                match poll(w.redis, w.keys, task, w.margin).await {
                    Ok(Some(o)) => return o,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(task_id = %task.task_id, error = %e, "cannot read the task record"),
                }
            }
        }
    }
}

/// One look at the task record: its outcome if it has one (or if it is over, see the module doc).
pub async fn poll(
    redis: &mut ConnectionManager,
    keys: &Keys,
    task: &TaskEnvelope,
    margin: Duration,
) -> redis::RedisResult<Option<Outcome>> {
    let id = task.task_id.as_str();
    let (state, event, node, lease): (Option<String>, Option<String>, Option<String>, bool) =
        redis::pipe()
            .cmd("HGET")
            .arg(keys.task(id))
            .arg("state")
            .cmd("HGET")
            .arg(keys.task(id))
            .arg("event")
            .cmd("HGET")
            .arg(keys.task(id))
            .arg("node")
            .cmd("EXISTS")
            .arg(keys.task_lease(id))
            .query_async(redis)
            .await?;
    let state = state.as_deref().and_then(TaskState::from_stored);
    if state.is_some_and(TaskState::is_final) {
        if let Some(e) = event.and_then(|e| Event::from_json(e.as_bytes()).ok()) {
            return Ok(Some(Outcome::of_event(&e)));
        }
        let status = state.map_or("failed", TaskState::as_str);
        return Ok(Some(Outcome {
            status: status.into(),
            node,
            exit_code: i32::from(status != "succeeded"),
            reason: Some(format!("{status} (its recorded event is unreadable)")),
            event: None,
        }));
    }
    let Some(expires_at) = task.expires_at else {
        return Ok(None);
    };
    let deadline = crate::add(expires_at, margin);
    if lease || freezer_fleet::clock::now() < deadline {
        return Ok(None);
    }
    let reason = match (state, node) {
        (Some(TaskState::Running), Some(n)) => format!(
            "its worker {n} stopped holding it and it could not start again by {expires_at}"
        ),
        _ => format!("no worker started it by {expires_at} (is its node or pool alive?)"),
    };
    Ok(Some(Outcome {
        status: "expired".into(),
        node: None,
        exit_code: 1,
        reason: Some(reason),
        event: None,
    }))
}
