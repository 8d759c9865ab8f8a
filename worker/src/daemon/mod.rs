//! The worker daemon, `freezer-worker run --config worker.toml` (ARCHITECTURE.md §4-§6): consumes its
//! node queue and pool queues, runs each task through the engine exactly as the CLI does, and
//! reports events.
//!
//! Shape (after mini-redis): [`run`] takes the configuration and a shutdown token, so a test or
//! `main` decides when it stops. One supervisor loop keeps a RabbitMQ connection (reconnecting
//! with backoff: 0.2 s doubling to 10 s), declares the topology ([`freezer_fleet::amqp`]) and runs the intake
//! ([`intake`]); every delivery is handled in its own task ([`handler`]); a semaphore of
//! `concurrency` permits bounds the tasks that execute; the keeper loop ([`heartbeat`]) renews
//! leases, writes the heartbeat and re-queues tasks of dead workers.
//!
//! Exactly once per task id: claims in Redis ([`state`]), acknowledged after the claim; see
//! [`handler`] for the reasoning and [`heartbeat`] for the re-run bound (lease TTL + one
//! interval: 20 s with the defaults). Writer locks with fencing: [`lock`].
//!
//! Storages are opened, used and dropped on the blocking pool ([`offload`]): the S3 and SSH
//! clients block on runtimes of their own. A panic inside a task fails the task (class
//! permanent, with the panic message) and releases what it held ([`unwind`]).
//!
//! Sessions ([`session`]): a task that carries a session (id, tag, members, hold-off, policy) is
//! a member of a group of nodes acting together. Once it holds an execution slot it joins the
//! session's barrier in Redis and waits, its lease renewed like a running task's, until every
//! member has joined; then all members start at one shared instant (within milliseconds of each
//! other). If the hold-off (from the first join) passes with members missing, policy `abort`
//! fails every member's task (transient, nothing run) and `proceed` runs the members present while
//! a late one fails. A task whose node is not a member fails at once. Each member's result is
//! recorded in the session's hash; the session succeeds only if every member did. A worker
//! stopping while a task waits at the barrier leaves the barrier and gives the task back to its
//! queue.
//!
//! Shutdown (SIGTERM or SIGINT cancel the token given to [`run`]): the intake cancels its
//! consumers; tasks still waiting for a slot are given back to their queue at once; running tasks
//! get `grace_period_seconds` to finish, then are cancelled, their locks released and the tasks
//! given back to their queue (another worker runs them; a node task waits for its node). Then the
//! heartbeat is removed and the process exits 0.
//!
//! Cancellation is two tokens: [`Shared::stopping`] (the shutdown token: take nothing new) and
//! [`Shared::runs`], cancelled when the grace period is over, whose child tokens are the tasks'
//! own (a task's token is also cancelled alone when its lock or lease is lost). Every delivery is
//! handled in a task of [`Shared::tasks`]; shutdown waits for that tracker to empty, not on a
//! counter.
//!
//! Configuration (`[daemon]` in the worker's TOML file, next to the named storages and keys):
//!
//! ```toml
//! [daemon]
//! node = "web1"
//! pools = ["prune", "verify"]
//! amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! redis_url = "redis://127.0.0.1:6379/"
//! concurrency = 4
//! metrics_addr = "127.0.0.1:9464"
//! grace_period_seconds = 30
//! heartbeat_interval_ms = 5000
//! lease_ttl_ms = 15000
//! key_prefix = "freezer:"
//! delivery_limit = 5
//! progress_interval_ms = 10000
//! hostname = "web1"             # host part of storage keys (default: the machine's)
//! ```

pub mod executor;
pub mod handler;
pub mod heartbeat;
pub mod intake;
pub mod lock;
pub mod metrics;
pub mod offload;
pub mod session;
pub mod state;
pub mod unwind;

use crate::config::{DaemonSection, WorkerConfig};
use crate::error::{Error, Result};
use freezer_contracts::{node_queue, pool_queue};
use freezer_fleet::amqp;
use lapin::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// State shared by the supervisor, the intake, the handlers and the keeper.
pub struct Shared {
    /// The whole worker configuration (storages, keys, transfer).
    pub config: WorkerConfig,
    /// Its `[daemon]` section.
    pub daemon: DaemonSection,
    /// Task state in Redis.
    pub store: state::TaskStore,
    /// Publishes events and re-queued tasks through reconnects.
    pub publisher: amqp::Publisher,
    /// Metric handles.
    pub metrics: metrics::Metrics,
    /// Execution slots.
    pub slots: Arc<Semaphore>,
    /// Deliveries taken and not finished (running or waiting for a slot): what the intake
    /// counts against the concurrency.
    pub reserved: AtomicUsize,
    /// Claimed tasks waiting for their `not_before`: held (and given back at shutdown) but not
    /// counted against the concurrency, so a task scheduled for later does not block intake.
    pub deferred: AtomicUsize,
    /// Signalled whenever a delivery is finished (the intake waits on it for a free slot).
    pub slot_freed: Notify,
    /// Claimed tasks of this worker, by task id.
    pub running: Mutex<HashMap<String, Running>>,
    /// The shutdown token given to [`run`]: once cancelled, nothing new is taken and waiting
    /// tasks are given back.
    pub stopping: CancellationToken,
    /// Parent of every task's token: cancelled when the shutdown's grace period is over.
    pub runs: CancellationToken,
    /// The handlers of deliveries: shutdown waits for it to empty.
    pub tasks: TaskTracker,
}

impl Shared {
    /// Sleeps `d`; true when the worker started stopping meanwhile (the handlers' deferral wait
    /// and the session barrier's poll both stop early on shutdown).
    pub(super) async fn sleep_or_stop(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.stopping.cancelled() => true,
        }
    }
}

/// A task this worker holds.
#[derive(Clone)]
pub struct Running {
    /// Its lease.
    pub lease: state::Lease,
    /// Stops its engine run: a child of [`Shared::runs`], cancelled alone when the task's lock
    /// or lease is lost.
    pub cancel: CancellationToken,
    /// The engine run's live counters (read for progress events).
    pub counters: Arc<crate::progress::Counters>,
    /// Set when its lease turned out to be someone else's.
    pub lease_lost: Arc<AtomicBool>,
    /// It ran before on a worker that died (whose writer lock may outlive it for a while).
    pub rerun: bool,
}

/// A random hex token (lock and lease values).
pub fn random_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

/// Runs the daemon until `shutdown` is cancelled; returns after a clean stop.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<()> {
    let daemon = config.daemon.clone().ok_or_else(|| {
        Error::usage("freezer-worker run needs a [daemon] section (node, pools, amqp_url, ...) in the configuration")
    })?;
    daemon.check().map_err(Error::usage)?;
    let mut queues = vec![node_queue(&daemon.node)];
    queues.extend(daemon.pools.iter().map(|p| pool_queue(p)));

    let conn = freezer_fleet::redis_conn::connect(&daemon.redis_url)
        .map_err(|e| Error::usage(format!("daemon.redis_url: {e}")))?;
    let store = state::TaskStore::new(
        conn,
        &daemon.key_prefix,
        &daemon.node,
        daemon.lease_ttl_ms,
        daemon.record_ttl_seconds,
    );
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let metrics_server = match &daemon.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| Error::usage(format!("daemon.metrics_addr {addr}: {e}")))?;
            tracing::info!(addr = %addr, "serving /metrics");
            Some(tokio::spawn(freezer_fleet::metrics::serve(
                listener,
                Arc::new(registry),
            )))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(daemon.concurrency)),
        config,
        daemon,
        store,
        publisher: amqp::Publisher::default(),
        metrics,
        reserved: AtomicUsize::new(0),
        deferred: AtomicUsize::new(0),
        slot_freed: Notify::new(),
        running: Mutex::new(HashMap::new()),
        stopping: shutdown.clone(),
        runs: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    let keeper = tokio::spawn(heartbeat::keep(shared.clone()));
    let supervisor = tokio::spawn(supervise(shared.clone(), queues));
    tracing::info!(node = %shared.daemon.node, pools = ?shared.daemon.pools, concurrency = shared.daemon.concurrency, "worker started");

    shutdown.cancelled().await;
    tracing::info!("stopping: no new tasks; waiting for running ones");
    // Closed, the tracker's wait ends once its last handler does (handlers spawned meanwhile,
    // for deliveries that arrived before the consumers were cancelled, count too).
    shared.tasks.close();
    let grace = Duration::from_secs(shared.daemon.grace_period_seconds);
    let drained = tokio::time::timeout(grace, shared.tasks.wait())
        .await
        .is_ok();
    if !drained {
        tracing::warn!("grace period over: abandoning the tasks still running");
        shared.runs.cancel();
        // Cancelled runs stop at their next check; abandoning re-queues them.
        let _ = tokio::time::timeout(Duration::from_secs(30), shared.tasks.wait()).await;
    }
    keeper.abort();
    heartbeat::clear(&shared).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), supervisor).await;
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Resolves once `conn` is no longer connected.
///
/// A poll that remains: lapin reports a closed connection through a status flag or an error
/// callback, not a future, so this checks the flag every 100 ms.
async fn disconnected(conn: &Connection) {
    while conn.status().connected() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keeps a broker connection and the intake running until shutdown; publishing goes on through
/// reconnects until the handlers are done.
async fn supervise(shared: Arc<Shared>, queues: Vec<String>) {
    let mut delay = Duration::from_millis(200);
    loop {
        match connect(&shared, &queues).await {
            Ok(conn) => {
                delay = Duration::from_millis(200);
                tracing::info!("connected to the broker");
                let r = intake::consume(&shared, &conn, &queues).await;
                match r {
                    Ok(()) => {
                        // Stopping: keep the connection for the events of finishing tasks.
                        tokio::select! {
                            _ = shared.tasks.wait() => {}
                            _ = disconnected(&conn) => {}
                        }
                        if conn.status().connected() {
                            shared.publisher.detach().await;
                            let _ = conn.close(200, "worker stopping".into()).await;
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the broker connection; reconnecting")
                    }
                }
                shared.publisher.detach().await;
                let _ = conn.close(320, "reconnecting".into()).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot connect to the broker")
            }
        }
        if shared.stopping.is_cancelled() && shared.tasks.is_empty() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn connect(shared: &Shared, queues: &[String]) -> std::result::Result<Connection, String> {
    let conn = amqp::connect(&shared.daemon.amqp_url)
        .await
        .map_err(|e| freezer_fleet::with_cause(&e))?;
    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
    amqp::declare(&ch, queues, shared.daemon.delivery_limit)
        .await
        .map_err(|e| e.to_string())?;
    let _ = ch.close(200, "declared".into()).await;
    shared
        .publisher
        .attach(&conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// `freezer-worker run`: JSON logs, a tokio runtime, SIGTERM/SIGINT as the shutdown; returns the
/// exit code.
pub fn main(config: WorkerConfig) -> i32 {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FREEZER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("freezer-worker: cannot start the runtime: {e}");
            return 1;
        }
    };
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    let signals = async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        on_signal.cancel();
    };
    match rt.block_on(async {
        tokio::spawn(signals);
        run(config, shutdown).await
    }) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e.report(), "worker failed");
            eprintln!("freezer-worker: {}", e.report());
            e.kind.exit_code()
        }
    }
}
