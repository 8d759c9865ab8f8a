//! The run engine: turns each [`DueRun`] into tasks, follows them, applies OpenStack Freezer's
//! rules, and records the run (ARCHITECTURE.md §5; the reference's §7.2).
//!
//! - A run starts only if its run id was never seen ([`record::create`]: `HSETNX`): the same due
//!   run sent twice, by a scheduler or by two dispatchers, is published once.
//! - Actions run in order. An action runs if it is `mandatory` or no earlier action failed;
//!   otherwise it is `skipped`. The job's result is `failed` if any action failed, else
//!   `succeeded`.
//! - A failed action is tried again up to `max_retries` times, each retry a new task
//!   ([`TaskEnvelope::retry`]: new id, next attempt) with `not_before` = now + `retry_interval`
//!   and its own window (`expires_at` = `not_before` + `expires_after`). As in OpenStack Freezer,
//!   any failure is retried, whatever its error class (a job that asks for retries gets them),
//!   and so is an expired task (its node may be back). A **rejected** task is not retried: the
//!   worker refused the message itself (a spec it does not understand), and the same spec would
//!   be refused again.
//! - A task that no worker holds by its `expires_at` + [`Ctx::expiry_margin`] counts as expired
//!   ([`wait`]): a dead node cannot hang a run.
//! - Sessions: each attempt of an action is one task per member node, on the node's queue, with
//!   [`Session`] `{ id: run id, tag: "<action index>" ("<index>.<attempt>" for retries, so a
//!   retry meets at a fresh barrier), members, hold-off, policy }`. A restore without
//!   `restore_from_date` gets the run's fire time, so every member restores the same point. The
//!   action succeeds only if every member succeeded; the reason names the others.
//! - Runs of one job may overlap: each run id is its own run (the scheduler coalesces missed
//!   fire times into one run).
//! - Leadership: the engine acts only while `leader` is true. On becoming leader it connects,
//!   consumes the shared events queue and resumes every run of `runs:active` from its record
//!   (tasks published but unknown to the workers are published again under the same id, which
//!   the workers run at most once); on losing it (or at shutdown) it stops its runs where they
//!   are, for the next leader to resume.

pub mod record;
pub mod wait;

use crate::bus::Bus;
use crate::config::DispatcherSection;
use crate::error::{Error, Result};
use crate::jobs::DueRun;
use crate::metrics::Metrics;
use freezer_contracts::{
    node_queue, pool_queue, Session, TaskEnvelope, TaskSpec, TaskState, UtcTime,
};
use freezer_fleet::{amqp, Keys};
use record::{ActionState, PlanTarget, RunDoc, TaskRecord};
use redis::aio::ConnectionManager;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;
use wait::Outcome;

/// What the engine shares with its runs.
pub struct Ctx {
    /// The `[dispatcher]` settings (URLs, prefix, events queue, history length).
    pub config: DispatcherSection,
    /// The Redis key names under `config.key_prefix`.
    pub keys: Keys,
    /// Redis.
    pub redis: ConnectionManager,
    /// The broker.
    pub bus: Arc<Bus>,
    /// Metric handles.
    pub metrics: Metrics,
    /// Grace after a task's `expires_at` before a task no worker holds counts as expired.
    pub expiry_margin: Duration,
    /// How often a waiting run reads its tasks' records.
    pub poll: Duration,
    /// How long a publish is retried through broker outages before the task counts as failed.
    pub publish_give_up: Duration,
}

impl Ctx {
    /// A context with default timings (margin 60 s, poll 2 s, publish give-up 60 s).
    pub fn new(config: DispatcherSection, redis: ConnectionManager, metrics: Metrics) -> Ctx {
        Ctx {
            keys: Keys::new(config.key_prefix.clone()),
            config,
            redis,
            bus: Bus::new(),
            metrics,
            expiry_margin: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            publish_give_up: Duration::from_secs(60),
        }
    }
}

/// A Redis connection that reconnects by itself (lazy: no error until used).
pub fn redis(url: &str) -> Result<ConnectionManager> {
    freezer_fleet::redis_conn::connect(url)
        .map_err(|e| Error::setting_from(format!("redis_url {url}"), e))
}

/// Runs the engine until `shutdown` completes: due runs from `due` are started while `leader`
/// is true (and dropped, with a warning, while it is not: the leader's scheduler fires them).
pub async fn drive(
    ctx: Arc<Ctx>,
    mut due: mpsc::Receiver<DueRun>,
    mut leader: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut inputs = Inputs {
        due_open: true,
        leader_open: true,
    };
    let mut census = tokio::time::interval(Duration::from_secs(5));
    loop {
        ctx.metrics.leader.set(0);
        // A run sent right after the lead was won may arrive before the engine noticed the
        // change: it is kept for the term that starts now, not dropped.
        let mut early = Vec::new();
        while !*leader.borrow() {
            tokio::select! {
                _ = &mut shutdown => return,
                r = leader.changed(), if inputs.leader_open => inputs.leader_open = r.is_ok(),
                d = due.recv(), if inputs.due_open => match d {
                    Some(d) if *leader.borrow() => early.push(d),
                    Some(d) => tracing::warn!(run_id = %d.run_id, "not the leader: not starting a due run"),
                    None => inputs.due_open = false,
                },
                _ = census.tick() => count_workers(&ctx).await,
            }
        }
        ctx.metrics.leader.set(1);
        tracing::info!("leading: resuming runs in progress and starting due runs");
        if lead(
            &ctx,
            early,
            &mut due,
            &mut leader,
            &mut shutdown,
            &mut inputs,
            &mut census,
        )
        .await
        {
            ctx.metrics.leader.set(0);
            return;
        }
        tracing::info!("no longer leading: runs in progress are left to the next leader");
    }
}

/// Which inputs of [`drive`] are still open.
struct Inputs {
    due_open: bool,
    leader_open: bool,
}

/// One term as leader; true when the engine is to stop.
async fn lead(
    ctx: &Arc<Ctx>,
    early: Vec<DueRun>,
    due: &mut mpsc::Receiver<DueRun>,
    leader: &mut watch::Receiver<bool>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    inputs: &mut Inputs,
    census: &mut tokio::time::Interval,
) -> bool {
    let (stop_link, stop_rx) = watch::channel(false);
    let link = tokio::spawn(keep_link(ctx.clone(), stop_rx));
    let mut runs = JoinSet::new();
    let resumed = loop {
        match record::active(&mut ctx.redis.clone(), &ctx.keys).await {
            Ok(docs) => break docs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the runs in progress; retrying");
                tokio::select! {
                    _ = &mut *shutdown => { let _ = stop_link.send(true); return true; }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    for doc in resumed {
        tracing::info!(run_id = %doc.run_id, job_id = %doc.job_id, "resuming a run");
        spawn_run(ctx, &mut runs, doc);
    }
    for d in early {
        start(ctx, &mut runs, d).await;
    }
    let stop = loop {
        tokio::select! {
            _ = &mut *shutdown => break true,
            r = leader.changed(), if inputs.leader_open => {
                inputs.leader_open = r.is_ok();
                if !*leader.borrow() { break false; }
            }
            d = due.recv(), if inputs.due_open => match d {
                Some(d) => start(ctx, &mut runs, d).await,
                None => inputs.due_open = false,
            },
            Some(_) = runs.join_next() => {}
            _ = census.tick() => count_workers(ctx).await,
        }
    };
    runs.abort_all();
    while runs.join_next().await.is_some() {}
    let _ = stop_link.send(true);
    let abort = link.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), link)
        .await
        .is_err()
    {
        abort.abort();
    }
    stop
}

/// Starts the run `d` unless its run id was seen before.
async fn start(ctx: &Arc<Ctx>, runs: &mut JoinSet<()>, d: DueRun) {
    let doc = RunDoc::new(&d.run_id, d.fire_time, record::Plan::of(&d.job));
    ctx.metrics.job(&doc.job_id);
    let mut delay = Duration::from_millis(200);
    for _ in 0..5 {
        match record::create(&mut ctx.redis.clone(), &ctx.keys, &doc).await {
            Ok(true) => return spawn_run(ctx, runs, doc),
            Ok(false) => {
                tracing::info!(run_id = %d.run_id, "run seen before: not starting it again");
                return;
            }
            Err(e) => {
                tracing::warn!(run_id = %d.run_id, error = %e, "cannot record the run; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    tracing::error!(run_id = %d.run_id, "cannot record the run in Redis: not started");
}

fn spawn_run(ctx: &Arc<Ctx>, runs: &mut JoinSet<()>, doc: RunDoc) {
    let span = tracing::info_span!("run", run_id = %doc.run_id, job_id = %doc.job_id);
    runs.spawn(execute(ctx.clone(), doc).instrument(span));
}

/// Sets `freezer_fleet_workers_alive` from the heartbeats.
async fn count_workers(ctx: &Ctx) {
    match crate::status::workers(&mut ctx.redis.clone(), &ctx.keys).await {
        Ok(w) => {
            let live = w.iter().filter(|w| w.live).count() as i64;
            ctx.metrics.workers_alive.set(live);
        }
        Err(e) => tracing::debug!(error = %e, "cannot count the workers"),
    }
}

/// Keeps a broker connection while leading: topology, publisher, and the events queue feeding
/// the bus; reconnects with backoff (0.2 s doubling to 10 s).
async fn keep_link(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let queue = ctx.config.events_queue.clone();
    let mut delay = Duration::from_millis(200);
    while !*stop.borrow() {
        let linked = tokio::select! {
            r = link_once(&ctx, &queue) => r,
            _ = stop.changed() => return,
        };
        match linked {
            Ok((conn, ch)) => {
                delay = Duration::from_millis(200);
                tracing::info!("connected to the broker");
                let stopped = tokio::select! {
                    r = ctx.bus.feed(&ch, &queue) => {
                        if let Err(e) = r { tracing::warn!(error = %e.report(), "lost the broker connection; reconnecting"); }
                        false
                    }
                    _ = stop.changed() => true,
                };
                ctx.bus.detach().await;
                amqp::close(conn).await;
                if stopped {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e.report(), "cannot set up the broker connection"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn link_once(ctx: &Ctx, queue: &str) -> Result<(lapin::Connection, lapin::Channel)> {
    let conn = amqp::connect(&ctx.config.amqp_url).await?;
    ctx.bus.attach(&conn).await?;
    Bus::declare_events_queue(&conn, queue).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(200, lapin::options::BasicQosOptions::default())
        .await?;
    Ok((conn, ch))
}

/// Writes the run record, retrying until Redis takes it (a run does not go on unrecorded).
async fn save(ctx: &Ctx, doc: &RunDoc) {
    let mut delay = Duration::from_millis(100);
    while let Err(e) = record::save(&mut ctx.redis.clone(), &ctx.keys, doc).await {
        tracing::warn!(error = %e, "cannot record the run; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Executes (or resumes) a run to its end.
async fn execute(ctx: Arc<Ctx>, mut doc: RunDoc) {
    for i in 0..doc.actions.len() {
        if matches!(
            doc.actions[i].state,
            ActionState::Succeeded | ActionState::Failed | ActionState::Skipped
        ) {
            continue;
        }
        let failed_before = doc.actions[..i]
            .iter()
            .any(|a| a.state == ActionState::Failed);
        if failed_before && !doc.plan.actions[i].mandatory {
            tracing::info!(action = i, "skipping: an earlier action failed");
            doc.actions[i].state = ActionState::Skipped;
            doc.actions[i].reason =
                Some("an earlier action failed and this one is not mandatory".into());
            save(&ctx, &doc).await;
            continue;
        }
        run_action(&ctx, &mut doc, i).await;
    }
    let failed = doc.actions.iter().any(|a| a.state == ActionState::Failed);
    let result = if failed { "failed" } else { "succeeded" };
    doc.result = Some(result.into());
    let end = freezer_fleet::clock::now();
    doc.ended_at = Some(end);
    let mut delay = Duration::from_millis(100);
    while let Err(e) = record::finish(
        &mut ctx.redis.clone(),
        &ctx.keys,
        &doc,
        ctx.config.history_len,
    )
    .await
    {
        tracing::warn!(error = %e, "cannot record the end of the run; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    ctx.metrics
        .run_done(&doc.job_id, !failed, end.unix_seconds() as f64);
    tracing::info!(result, "run finished");
}

/// Runs action `i` through its attempts.
async fn run_action(ctx: &Ctx, doc: &mut RunDoc, i: usize) {
    let mut fresh = false;
    if doc.actions[i].attempts == 0 {
        start_attempt(ctx, doc, i).await;
        fresh = true;
    }
    loop {
        wait_current(ctx, doc, i, fresh).await;
        let rec = &doc.actions[i];
        let current: Vec<&TaskRecord> = rec
            .tasks
            .iter()
            .filter(|t| t.attempt == rec.attempts)
            .collect();
        let bad: Vec<&TaskRecord> = current
            .iter()
            .copied()
            .filter(|t| t.outcome.as_deref() != Some("succeeded"))
            .collect();
        if bad.is_empty() {
            let rec = &mut doc.actions[i];
            rec.state = ActionState::Succeeded;
            rec.current.clear();
            tracing::info!(action = i, attempts = rec.attempts, "action succeeded");
            save(ctx, doc).await;
            return;
        }
        let rejected = bad.iter().any(|t| t.outcome.as_deref() == Some("rejected"));
        let reason = describe_failures(&doc.plan.target, &bad);
        let retries_left = rec.attempts <= doc.plan.actions[i].max_retries;
        if rejected || !retries_left {
            let rec = &mut doc.actions[i];
            tracing::warn!(action = i, attempts = rec.attempts, %reason, "action failed");
            rec.state = ActionState::Failed;
            rec.reason = Some(reason);
            rec.current.clear();
            save(ctx, doc).await;
            return;
        }
        tracing::info!(action = i, attempt = rec.attempts, %reason, "action failed; retrying");
        doc.actions[i].reason = Some(reason);
        start_attempt(ctx, doc, i).await;
        fresh = true;
    }
}

/// The failing tasks, named by member node (sessions) or where they ran.
fn describe_failures(target: &PlanTarget, bad: &[&TaskRecord]) -> String {
    let parts: Vec<String> = bad
        .iter()
        .map(|t| {
            let who = t.node.clone().unwrap_or_else(|| t.queue.clone());
            let status = t.outcome.as_deref().unwrap_or("unknown");
            let code = t
                .exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default();
            let why = t
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!("{who}: {status}{code}{why}")
        })
        .collect();
    match target {
        PlanTarget::Session { .. } => {
            let missing: Vec<&str> = bad
                .iter()
                .filter(|t| t.outcome.as_deref() == Some("expired"))
                .filter_map(|t| t.node.as_deref())
                .collect();
            let mut s = format!("session members did not all succeed: {}", parts.join("; "));
            if !missing.is_empty() {
                s.push_str(&format!(" (missing: {})", missing.join(", ")));
            }
            s
        }
        _ => parts.join("; "),
    }
}

/// The queue of a task for `member` (sessions) under `target`.
fn queue_of(target: &PlanTarget, member: Option<&str>) -> String {
    match (target, member) {
        (PlanTarget::Node { node }, _) => node_queue(node),
        (PlanTarget::Pool { pool }, _) => pool_queue(pool),
        (PlanTarget::Session { .. }, Some(m)) => node_queue(m),
        (PlanTarget::Session { nodes, .. }, None) => node_queue(nodes.first().map_or("", |n| n)),
    }
}

/// `YYYY-MM-DDThh:mm:ss` (UTC), the form `--restore-from-date` takes.
fn user_date(t: UtcTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.as_offset_date_time()
        .format(&fmt)
        .unwrap_or_else(|_| t.to_string())
}

/// The members of the tasks of one attempt, in order (sessions: the nodes; else none).
fn members(target: &PlanTarget) -> Vec<Option<String>> {
    match target {
        PlanTarget::Session { nodes, .. } => nodes.iter().cloned().map(Some).collect(),
        _ => vec![None],
    }
}

/// Builds the next attempt of action `i`, records it (write-ahead), and leaves publishing to
/// [`wait_current`].
async fn start_attempt(ctx: &Ctx, doc: &mut RunDoc, i: usize) {
    let plan = &doc.plan;
    let action = &plan.actions[i];
    let rec = &doc.actions[i];
    let attempt = rec.attempts + 1;
    let now = freezer_fleet::clock::now();
    let not_before =
        (attempt > 1).then(|| crate::add(now, Duration::from_millis(action.retry_interval_ms)));
    let expires_at = crate::add(not_before.unwrap_or(now), plan.expires_after());
    let tag = if attempt == 1 {
        i.to_string()
    } else {
        format!("{i}.{attempt}")
    };
    let member_list = members(&plan.target);
    let envs: Vec<TaskEnvelope> = if attempt == 1 {
        member_list
            .iter()
            .map(|m| {
                let mut spec = action.spec.clone();
                let mut env_session = None;
                if let (
                    PlanTarget::Session {
                        nodes,
                        hold_off_seconds,
                        policy,
                    },
                    Some(_),
                ) = (&plan.target, m)
                {
                    if let TaskSpec::Restore(r) = &mut spec {
                        if r.restore_from_date.is_none() {
                            r.restore_from_date = Some(user_date(doc.fire_time));
                        }
                    }
                    env_session = Some(Session {
                        id: doc.run_id.clone(),
                        tag: tag.clone(),
                        members: nodes.clone(),
                        hold_off_seconds: *hold_off_seconds,
                        policy: *policy,
                    });
                }
                let mut env =
                    TaskEnvelope::new(crate::new_task_id(), &doc.job_id, &doc.run_id, spec);
                env.session = env_session;
                env.expires_at = Some(expires_at);
                env
            })
            .collect()
    } else {
        rec.current
            .iter()
            .map(|prev| {
                let mut env = prev.retry(crate::new_task_id());
                env.not_before = not_before;
                env.expires_at = Some(expires_at);
                if let Some(s) = &mut env.session {
                    s.tag = tag.clone();
                }
                env
            })
            .collect()
    };
    let target = plan.target.clone();
    let rec = &mut doc.actions[i];
    rec.attempts = attempt;
    rec.state = ActionState::Running;
    for (env, m) in envs.iter().zip(member_list.iter()) {
        rec.tasks.push(TaskRecord {
            task_id: env.task_id.to_string(),
            attempt,
            queue: queue_of(&target, m.as_deref()),
            node: m.clone(),
            outcome: None,
            exit_code: None,
            reason: None,
        });
    }
    rec.current = envs;
    save(ctx, doc).await;
}

/// Publishes the current attempt's tasks that the workers do not know yet (all of them when
/// `fresh`), waits for every one, and records the outcomes.
async fn wait_current(ctx: &Ctx, doc: &mut RunDoc, i: usize, fresh: bool) {
    let rec = &doc.actions[i];
    let open: Vec<(TaskEnvelope, String)> = rec
        .current
        .iter()
        .filter_map(|env| {
            let t = rec
                .tasks
                .iter()
                .find(|t| t.task_id == env.task_id.as_str())?;
            t.outcome.is_none().then(|| (env.clone(), t.queue.clone()))
        })
        .collect();
    if open.is_empty() {
        return;
    }
    let mut waits = Vec::new();
    for (env, queue) in open {
        let mut events = ctx.bus.subscribe();
        let mut redis = ctx.redis.clone();
        let published = if let Err(e) = env.validate() {
            // The worker would reject it: say why here, publish nothing, do not retry.
            Err(("rejected", format!("not published: {e}")))
        } else if fresh || unknown_to_workers(&mut redis, &ctx.keys, &env).await {
            publish(ctx, &mut redis, &queue, &env)
                .await
                .map_err(|e| ("failed", e.report()))
        } else {
            Ok(())
        };
        waits.push(async move {
            let outcome = match published {
                Err((status, reason)) => Outcome {
                    status: status.into(),
                    node: None,
                    exit_code: 1,
                    reason: Some(reason),
                    event: None,
                },
                Ok(()) => {
                    let w = wait::Watch {
                        redis: &mut redis,
                        keys: &ctx.keys,
                        events: &mut events,
                        margin: ctx.expiry_margin,
                        poll: ctx.poll,
                    };
                    wait::outcome(w, &env, |_| {}).await
                }
            };
            (env.task_id.to_string(), outcome)
        });
    }
    let outcomes = futures_util::future::join_all(waits).await;
    let rec = &mut doc.actions[i];
    for (id, o) in outcomes {
        if let Some(t) = rec.tasks.iter_mut().find(|t| t.task_id == id) {
            if t.node.is_none() || !matches!(doc.plan.target, PlanTarget::Session { .. }) {
                t.node = o.node.clone().or(t.node.take());
            }
            t.outcome = Some(o.status.clone());
            t.exit_code = Some(o.exit_code);
            t.reason = o.reason.clone();
        }
    }
    save(ctx, doc).await;
}

/// Whether no worker has claimed `task` yet (no record, or still `queued`): a resumed run
/// publishes it again (same id, so it still runs at most once).
async fn unknown_to_workers(
    redis: &mut ConnectionManager,
    keys: &Keys,
    task: &TaskEnvelope,
) -> bool {
    let state: redis::RedisResult<Option<String>> = redis::cmd("HGET")
        .arg(keys.task(task.task_id.as_str()))
        .arg("state")
        .query_async(redis)
        .await;
    match state {
        Ok(s) => s
            .as_deref()
            .and_then(TaskState::from_stored)
            .is_none_or(|s| s == TaskState::Queued),
        Err(_) => true,
    }
}

async fn publish(
    ctx: &Ctx,
    redis: &mut ConnectionManager,
    queue: &str,
    task: &TaskEnvelope,
) -> Result<()> {
    ctx.bus
        .publish_task(redis, &ctx.keys, queue, task, ctx.publish_give_up)
        .await?;
    ctx.metrics.published(task.kind());
    tracing::info!(task_id = %task.task_id, queue, attempt = task.attempt, "task published");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_dates_are_in_the_cli_form() {
        let t = UtcTime::parse("2026-11-25T13:04:05.123Z").unwrap();
        assert_eq!(user_date(t), "2026-11-25T13:04:05");
    }
}
