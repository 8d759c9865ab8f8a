//! `freezer-dispatcher serve` and `freezer-dispatcher jobs`: the service, wired from the library.
//!
//! `serve` = the jobs directory watcher ([`jobs::dir::watch_dir`]) + the leader election
//! ([`leader::spawn`]) + the scheduler ([`scheduler::run`], which sends each due run once across
//! all dispatchers) + the requests of `publish --job` ([`super::job_run::take_requests`]) + the
//! run engine ([`runs::drive`]) + `/metrics`. It runs until SIGTERM or
//! SIGINT; then the leader lease is released so a standby takes over at once, and the runs in
//! progress stay in Redis for the next leader to resume.

use freezer_dispatcher::config::DispatcherSection;
use freezer_dispatcher::jobs::{self, DueRun, JobSet};
use freezer_dispatcher::metrics::Metrics;
use freezer_dispatcher::{jobs_cmd, leader, runs, scheduler, Error};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Runs the dispatcher service until SIGTERM or SIGINT; 0 after a clean stop.
pub async fn serve(settings: DispatcherSection) -> Result<i32, Error> {
    freezer_contracts::check_ident("dispatcher.id", &settings.id)?;
    if !settings.jobs_dir.is_dir() {
        return Err(Error::setting(format!(
            "jobs_dir {}: not a directory",
            settings.jobs_dir.display()
        )));
    }
    let redis = runs::redis(&settings.redis_url)?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let metrics_server = match &settings.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| Error::setting_from(format!("metrics_addr {addr}"), e))?;
            Some(tokio::spawn(freezer_fleet::metrics::serve(
                listener,
                Arc::new(registry),
            )))
        }
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let (job_sets, watcher) =
        jobs::dir::watch_dir(settings.jobs_dir.clone(), jobs::dir::WATCH_INTERVAL);
    let (is_leader, elector) = leader::spawn(
        redis.clone(),
        &settings.key_prefix,
        &settings.id,
        Duration::from_millis(settings.leader_lease_ms),
        stopped(),
    );
    let (due_tx, due_rx) = mpsc::channel::<DueRun>(64);
    let (engine_tx, engine_rx) = mpsc::channel::<DueRun>(64);
    let settings = Arc::new(settings);
    let stats = Arc::new(scheduler::SchedulerStats::default());
    let scheduler = tokio::spawn(scheduler::run(
        settings.clone(),
        redis.clone(),
        job_sets.clone(),
        is_leader.clone(),
        due_tx,
        stats,
        stopped(),
    ));
    // Runs asked for by `publish --job`, taken while leading.
    let requests = tokio::spawn(super::job_run::take_requests(
        settings.clone(),
        redis.clone(),
        job_sets.clone(),
        is_leader.clone(),
        engine_tx.clone(),
    ));
    // Between the scheduler and the engine: the schedule lag of each run.
    let lag = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut due_rx = due_rx;
            while let Some(due) = due_rx.recv().await {
                metrics.schedule_lag(due.fire_time);
                if engine_tx.send(due).await.is_err() {
                    return;
                }
            }
        })
    };
    let gauges = tokio::spawn(keep_job_series(metrics.clone(), job_sets));
    let ctx = Arc::new(runs::Ctx::new((*settings).clone(), redis, metrics));
    tracing::info!(id = %settings.id, jobs_dir = %settings.jobs_dir.display(), "dispatcher started");
    let engine = tokio::spawn(runs::drive(ctx, engine_rx, is_leader, stopped()));

    shutdown_signal().await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), engine).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), scheduler).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
    for task in [requests, lag, gauges, watcher] {
        task.abort();
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("dispatcher stopped");
    Ok(0)
}

/// `freezer-dispatcher jobs [--json]`: 1 when a job file is broken (listed), else 0.
pub async fn jobs(settings: &DispatcherSection, json: bool) -> Result<i32, Error> {
    let (text, broken) = jobs_cmd::jobs_command(settings, json).await;
    print!("{text}");
    Ok(i32::from(broken))
}

/// Keeps a series at 0 for every loaded job (`freezer_job_runs_total`, ...), so a job that has
/// not run yet is visible to alerts (the engine counts the live workers itself).
async fn keep_job_series(metrics: Metrics, mut job_sets: watch::Receiver<Arc<JobSet>>) {
    loop {
        let set = job_sets.borrow_and_update().clone();
        for id in set.jobs.keys() {
            metrics.job(id);
        }
        if job_sets.changed().await.is_err() {
            return;
        }
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the service cannot stop cleanly; it still serves.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
