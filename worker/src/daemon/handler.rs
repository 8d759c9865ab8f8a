//! The life of one delivery: read, reject or claim, acknowledge, wait for a slot, run, record,
//! report.
//!
//! Acknowledgement strategy: a task is acknowledged as soon as it is durably claimed in Redis
//! (state `running`, this node's lease), before it runs. From then on Redis, not the broker, is
//! the source of truth: the lease is renewed every heartbeat, and if the worker dies the reaper of
//! any live worker re-queues the task (see [`super::heartbeat`]). So a backup may run for hours
//! without an unacknowledged delivery hitting RabbitMQ's `consumer_timeout`, and a redelivery
//! (before the acknowledgement reached the broker, or a duplicate publish) finds the claim and is
//! not run twice; one that finds a final state re-publishes the recorded result.
//!
//! Events are delivered at least once: the final event is recorded in Redis before it is
//! published and the task's lease is kept until the broker confirms it (so no reaper publishes it
//! meanwhile), but a confirm lost in a broker restart, or a redelivery after the task finished,
//! publishes the same final event again. Consumers key final events by task id (the dispatcher
//! does); every copy carries the same recorded content.

use super::executor;
use super::session::{self, Gate};
use super::state::{Claim, Lease};
use super::unwind::{self, AbortOnDrop};
use super::{Running, Shared};
use crate::progress::Counters;
use freezer_contracts::{
    ContractError, Event, EventStatus, Readiness, TaskEnvelope, TaskState, DEAD_LETTER_EXCHANGE,
    TASKS_EXCHANGE, UNKNOWN_KIND,
};
use freezer_fleet::amqp::Outgoing;
use freezer_fleet::clock::now;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How long an event or a re-queue is retried through broker outages before it is given up
/// (then the reaper re-publishes a recorded final event later).
const PUBLISH_GIVE_UP: Duration = Duration::from_secs(120);

/// Frees the intake reservation of a delivery however its handling ends.
struct Reservation {
    shared: Arc<Shared>,
    deferred: bool,
}

impl Reservation {
    /// Moves a claimed task that waits for its `not_before` out of the intake's count (into
    /// `deferred`), so the worker takes other tasks meanwhile.
    fn defer(&mut self) {
        if !self.deferred {
            self.deferred = true;
            self.shared.deferred.fetch_add(1, Ordering::SeqCst);
            self.shared.reserved.fetch_sub(1, Ordering::SeqCst);
            self.shared.slot_freed.notify_waiters();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let count = match self.deferred {
            true => &self.shared.deferred,
            false => &self.shared.reserved,
        };
        count.fetch_sub(1, Ordering::SeqCst);
        self.shared.slot_freed.notify_waiters();
    }
}

/// Handles one delivery from `queue`; the intake has already counted it in `reserved`.
pub async fn handle(shared: Arc<Shared>, queue: String, delivery: Delivery) {
    let mut reservation = Reservation {
        shared: shared.clone(),
        deferred: false,
    };
    let message_id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_string());
    let task = match TaskEnvelope::from_json(&delivery.data) {
        Ok(t) => t,
        Err(e) => return reject(&shared, &queue, delivery, message_id.as_deref(), &e).await,
    };
    let span = tracing::info_span!(
        "task",
        task_id = %task.task_id,
        job_id = %task.job_id,
        kind = %task.kind(),
        queue = %queue
    );
    run_task(shared, queue, delivery, task, &mut reservation)
        .instrument(span)
        .await
}

async fn reject(
    shared: &Shared,
    queue: &str,
    delivery: Delivery,
    message_id: Option<&str>,
    error: &ContractError,
) {
    let reason = error.to_string();
    tracing::warn!(message_id = message_id.unwrap_or(""), %reason, "rejecting a task message");
    let dead = Outgoing {
        exchange: DEAD_LETTER_EXCHANGE,
        routing_key: queue,
        body: &delivery.data,
        message_id,
        reason: Some(&reason),
    };
    if let Err(e) = shared.publisher.publish(&dead, PUBLISH_GIVE_UP).await {
        // Not dead-lettered by us: let the broker dead-letter it (reject without requeue).
        tracing::warn!(error = %e, "cannot publish to freezer.dead; rejecting to the queue's dead-letter exchange");
        let _ = delivery
            .acker
            .nack(BasicNackOptions {
                requeue: false,
                ..Default::default()
            })
            .await;
    } else {
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
    }
    let event = Event::rejected(
        &delivery.data,
        message_id,
        &shared.daemon.node,
        now(),
        error,
    );
    let kind = event.kind.map_or(UNKNOWN_KIND, |k| k.as_str());
    shared.metrics.task_done(kind, "rejected");
    if let Err(e) = shared.publisher.event(&event, PUBLISH_GIVE_UP).await {
        tracing::warn!(error = %e, "cannot publish the rejected event");
    }
}

async fn run_task(
    shared: Arc<Shared>,
    queue: String,
    delivery: Delivery,
    task: TaskEnvelope,
    reservation: &mut Reservation,
) {
    let id = task.task_id.to_string();
    // Claim, retrying through a Redis outage; the delivery stays unacknowledged meanwhile.
    let mut delay = Duration::from_millis(100);
    let (claim, lease) = loop {
        match shared.store.claim(&id, &queue, &delivery.data).await {
            Ok(c) => break c,
            Err(e) if shared.stopping.is_cancelled() => {
                tracing::warn!(error = %e, "cannot claim while stopping; returning the task to its queue");
                let _ = delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim the task in Redis; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    };
    let runs = match claim {
        Claim::Finished { event } => {
            tracing::info!("task already finished: publishing its recorded result again");
            if let Ok(event) = Event::from_json(event.as_bytes()) {
                let _ = shared.publisher.event(&event, PUBLISH_GIVE_UP).await;
            }
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            return;
        }
        Claim::Busy { node } => {
            tracing::info!(holder = %node, "task is running already: not starting it twice");
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            return;
        }
        Claim::Claimed { runs } => {
            if runs > 1 {
                tracing::info!(runs, "running a task again: its previous worker is gone");
            }
            runs
        }
    };
    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
    let running = Running {
        lease: lease.clone(),
        counters: Arc::new(Counters::default()),
        cancel: shared.runs.child_token(),
        lease_lost: Arc::new(AtomicBool::new(false)),
        rerun: runs > 1,
    };
    shared
        .running
        .lock()
        .unwrap()
        .insert(id.clone(), running.clone());
    shared.metrics.in_flight.inc();
    let run = execute(
        &shared,
        &queue,
        &delivery.data,
        &task,
        &running,
        reservation,
    );
    if let Err(message) = unwind::caught(run).await {
        tracing::error!(%message, "the task panicked: failing it");
        shared.metrics.task_done(task.kind().as_str(), "failed");
        finish(&shared, &task, &lease, unwind::failed(&message)).await;
    }
    shared.metrics.in_flight.dec();
    shared.running.lock().unwrap().remove(&id);
}

async fn execute(
    shared: &Arc<Shared>,
    queue: &str,
    body: &[u8],
    task: &TaskEnvelope,
    running: &Running,
    reservation: &mut Reservation,
) {
    let (lease, rerun) = (&running.lease, running.rerun);
    let kind = task.kind().as_str();
    // A session task sent to a node that is not a member can never meet its session.
    if let Some(status) = task
        .session
        .as_ref()
        .and_then(|s| session::check_member(&shared.daemon.node, s))
    {
        shared.metrics.task_done(kind, "failed");
        tracing::warn!("task failed: this node is not a member of its session");
        return finish(shared, task, lease, status).await;
    }
    // The window: expired tasks are reported, early ones wait (claimed, so no timeout applies).
    loop {
        match task.readiness(now()) {
            Readiness::Ready => break,
            Readiness::Expired => return expire(shared, task, lease).await,
            Readiness::NotYet(d) => {
                reservation.defer();
                if shared.sleep_or_stop(d).await {
                    return abandon(shared, queue, body, task, lease).await;
                }
            }
        }
    }
    // A slot, unless the worker stops first.
    let permit = tokio::select! {
        p = shared.slots.clone().acquire_owned() => p.expect("the slot semaphore is never closed"),
        _ = shared.stopping.cancelled() => return abandon(shared, queue, body, task, lease).await,
    };
    if shared.stopping.is_cancelled() {
        drop(permit);
        return abandon(shared, queue, body, task, lease).await;
    }
    // It may have expired while it waited for the slot: report it, never run it late.
    if matches!(task.readiness(now()), Readiness::Expired) {
        drop(permit);
        tracing::warn!("task expired while it waited for an execution slot");
        return expire(shared, task, lease).await;
    }
    // A session member waits for the others holding its slot, so that it starts the moment the
    // barrier opens.
    if let Some(s) = &task.session {
        match session::gather(shared, task, s, running).await {
            Gate::Go => {}
            Gate::Fail(status) => {
                drop(permit);
                shared.metrics.task_done(kind, "failed");
                if let EventStatus::Failed { reason, .. } = &status {
                    tracing::warn!(%reason, "task failed at its session barrier");
                }
                return finish(shared, task, lease, status).await;
            }
            Gate::Stop => {
                drop(permit);
                return abandon(shared, queue, body, task, lease).await;
            }
            Gate::Lost => {
                tracing::warn!(
                    "task lease lost at the session barrier: leaving the task to its new holder"
                );
                return;
            }
        }
    }
    tracing::info!("task started");
    let started = Event::for_task(task, &shared.daemon.node, now(), EventStatus::Started);
    if let Err(e) = shared.publisher.event(&started, PUBLISH_GIVE_UP).await {
        tracing::warn!(error = %e, "cannot publish the started event");
    }
    let clock = Instant::now();
    let reporter = AbortOnDrop(tokio::spawn(report_progress(
        shared.clone(),
        task.clone(),
        running.counters.clone(),
    )));
    let outcome = executor::execute(shared, &task.spec, running, rerun).await;
    drop(reporter);
    drop(permit);
    if running.lease_lost.load(Ordering::SeqCst) {
        tracing::warn!("task lease lost while running: leaving the task to its new holder");
        return;
    }
    if running.cancel.is_cancelled() && shared.stopping.is_cancelled() {
        if let EventStatus::Failed { .. } = outcome.status {
            return abandon(shared, queue, body, task, lease).await;
        }
    }
    let m = &shared.metrics;
    let label = super::metrics::KindLabel { kind: kind.into() };
    m.duration
        .get_or_create(&label)
        .observe(clock.elapsed().as_secs_f64());
    m.bytes_read
        .get_or_create(&label)
        .inc_by(outcome.bytes_read);
    m.bytes_stored
        .get_or_create(&label)
        .inc_by(outcome.bytes_stored);
    match &outcome.status {
        EventStatus::Succeeded { .. } => {
            m.task_done(kind, "succeeded");
            m.last_success
                .get_or_create(&super::metrics::JobLabel {
                    job_id: task.job_id.clone(),
                })
                .set(now().unix_seconds() as f64);
            tracing::info!(
                duration_seconds = clock.elapsed().as_secs_f64(),
                "task succeeded"
            );
        }
        EventStatus::Failed {
            reason,
            error_class,
            ..
        } => {
            m.task_done(kind, "failed");
            tracing::warn!(%reason, error_class = error_class.as_str(), "task failed");
        }
        _ => {}
    }
    finish(shared, task, lease, outcome.status).await
}

/// Publishes a `progress` event every `progress_interval_ms` while the task runs, when its
/// counters moved. Best effort: a progress event that cannot be published within a second is
/// skipped (the next one carries the newer totals).
async fn report_progress(shared: Arc<Shared>, task: TaskEnvelope, counters: Arc<Counters>) {
    let every = shared.daemon.progress_interval_ms;
    if every == 0 {
        return;
    }
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_millis(every)).await;
        let status = EventStatus::Progress {
            entries: counters.entries.load(Ordering::Relaxed),
            files: counters.files_stored.load(Ordering::Relaxed),
            bytes_read: counters.bytes_read.load(Ordering::Relaxed),
            bytes_written: counters.bytes_stored.load(Ordering::Relaxed),
        };
        if last.as_ref() == Some(&status) {
            continue;
        }
        let event = Event::for_task(&task, &shared.daemon.node, now(), status.clone());
        if let Err(e) = shared.publisher.event(&event, Duration::from_secs(1)).await {
            tracing::debug!(error = %e, "progress event skipped");
        }
        last = Some(status);
    }
}

/// Reports a task whose `expires_at` passed before it could start: expired, never run.
async fn expire(shared: &Shared, task: &TaskEnvelope, lease: &Lease) {
    let expires_at = task.expires_at.unwrap_or_else(now);
    shared.metrics.task_done(task.kind().as_str(), "expired");
    finish(shared, task, lease, EventStatus::Expired { expires_at }).await
}

/// Records the final state, then publishes the final event, then marks it reported.
async fn finish(shared: &Shared, task: &TaskEnvelope, lease: &Lease, status: EventStatus) {
    let state = TaskState::after(&status);
    let event = Event::for_task(task, &shared.daemon.node, now(), status);
    let body = event.to_json();
    let mut delay = Duration::from_millis(100);
    let deadline = Instant::now() + PUBLISH_GIVE_UP;
    loop {
        match shared.store.finish(lease, state.as_str(), &body).await {
            Ok(true) => {
                session::record_result(shared, task, &event.status).await;
                break;
            }
            Ok(false) => {
                tracing::warn!("task lease lost before the result was recorded: not reporting it");
                return;
            }
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "cannot record the result; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record the result; the task will be run again");
                return;
            }
        }
    }
    match shared.publisher.event(&event, PUBLISH_GIVE_UP).await {
        Ok(()) => {
            let _ = shared.store.reported_by(lease).await;
        }
        Err(e) => tracing::warn!(error = %e, "cannot publish the final event; the reaper will"),
    }
}

/// Gives a claimed task back (shutdown): the lease is released and the task published to its
/// queue again, so another worker (or this node when it returns) runs it.
async fn abandon(shared: &Shared, queue: &str, body: &[u8], task: &TaskEnvelope, lease: &Lease) {
    tracing::info!("abandoning the task: giving it back to its queue");
    let id = task.task_id.to_string();
    let msg = Outgoing {
        exchange: TASKS_EXCHANGE,
        routing_key: queue,
        body,
        message_id: Some(&id),
        reason: None,
    };
    // Release first so the re-published copy can be claimed at once; if the publish fails the
    // reaper re-queues it (the record says running and no lease exists).
    let _ = shared.store.release(lease).await;
    if let Err(e) = shared
        .publisher
        .publish(&msg, Duration::from_secs(10))
        .await
    {
        tracing::warn!(error = %e, "cannot re-queue the abandoned task; the reaper will");
    }
}
