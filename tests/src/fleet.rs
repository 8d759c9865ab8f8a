//! Helpers for the worker daemon's tests (`tests/daemon*.rs`): start `freezer-worker run`
//! processes with their own configuration, publish tasks by hand as the dispatcher would, watch
//! the events they publish and the state they keep in Redis.
//!
//! Every [`Fleet`] uses its own names (nodes, pools, Redis key prefix) with a random suffix, so
//! tests run in parallel against the one RabbitMQ and Redis of the machine without seeing each
//! other's tasks; its queues are deleted when it is dropped.

use freezer_contracts::{Event, EventStatus, TaskEnvelope, TaskId, TaskSpec, EVENTS_EXCHANGE};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The broker every test uses.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The shared Redis.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// How long a test waits for something that should happen within seconds (generous: the machine
/// is shared and slow under load; tests assert behaviour, not speed).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A random lowercase hex suffix.
pub fn suffix() -> String {
    let mut b = [0u8; 5];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh UUIDv7 task id.
pub fn task_id() -> TaskId {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut r = [0u8; 10];
    getrandom::fill(&mut r).expect("random");
    TaskId::from_parts(ms, r)
}

/// A task of `spec` with a new id.
pub fn task(spec: TaskSpec) -> TaskEnvelope {
    TaskEnvelope::new(task_id(), "job-test", "run-1", spec)
}

/// A noop task sleeping `ms`.
pub fn noop(ms: u64) -> TaskEnvelope {
    task(TaskSpec::Noop(freezer_contracts::NoopSpec { sleep_ms: ms }))
}

/// One test's names, broker connection, event log and workers.
pub struct Fleet {
    /// Random suffix of every name.
    pub id: String,
    /// Redis key prefix of this fleet's workers.
    pub prefix: String,
    /// Scratch directory (configs, logs, storages).
    pub dir: PathBuf,
    /// Publisher channel (confirms on).
    pub ch: Channel,
    conn: Connection,
    events: Arc<Mutex<Vec<(Instant, Event)>>>,
    queues: Mutex<Vec<String>>,
    /// Redis URL the workers use (a test may give its own server).
    pub redis_url: String,
}

/// Settings of one worker process.
#[derive(Clone)]
pub struct WorkerSpec {
    /// Node name (suffixed by the fleet).
    pub node: String,
    /// Pools (suffixed by the fleet).
    pub pools: Vec<String>,
    /// Execution slots.
    pub concurrency: usize,
    /// `/metrics` address.
    pub metrics_addr: Option<String>,
    /// Shutdown grace period.
    pub grace_seconds: u64,
    /// Extra TOML appended to the `[daemon]` section (a `[table]` header may follow).
    pub extra: String,
    /// The body of the worker's `[policy]` section; `None`: the fleet's directory for backups
    /// and restores, and any host name (what the fleet tests do).
    pub policy: Option<String>,
    /// Extra environment of the process (debug hooks).
    pub env: Vec<(String, String)>,
}

impl WorkerSpec {
    /// A worker of node `node` in `pools`, 4 slots.
    pub fn new(node: &str, pools: &[&str]) -> Self {
        WorkerSpec {
            node: node.into(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
            concurrency: 4,
            metrics_addr: None,
            grace_seconds: 30,
            extra: String::new(),
            policy: None,
            env: Vec::new(),
        }
    }
}

/// A running `freezer-worker run`; killed (SIGKILL) when dropped.
pub struct WorkerProc {
    /// The process.
    pub child: Child,
    /// Its node name (with the fleet's suffix).
    pub node: String,
    /// Its log (JSON lines on stderr).
    pub log: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
}

impl WorkerProc {
    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for the process to exit; its exit code (None: killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s.code();
            }
            assert!(Instant::now() < end, "worker {} did not exit", self.node);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fleet {
    /// Connects, declares nothing yet (workers declare the topology), and starts recording the
    /// events of this fleet's nodes.
    pub async fn new() -> Fleet {
        Self::with_redis(REDIS_URL).await
    }

    /// Same, with the workers using another Redis.
    pub async fn with_redis(redis_url: &str) -> Fleet {
        let id = suffix();
        let dir = std::env::temp_dir().join(format!("freezer-fleet-{id}"));
        fs::create_dir_all(&dir).unwrap();
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ on 127.0.0.1:5672");
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        // The workers declare them too (same arguments); the test's queues must be bound before
        // the workers publish.
        for (name, kind) in [
            (EVENTS_EXCHANGE, ExchangeKind::Topic),
            (
                freezer_contracts::DEAD_LETTER_EXCHANGE,
                ExchangeKind::Fanout,
            ),
            (freezer_contracts::TASKS_EXCHANGE, ExchangeKind::Direct),
        ] {
            ch.exchange_declare(
                name.into(),
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let evq = format!("test.events.{id}");
        let ech = exclusive_queue(&conn, &evq, EVENTS_EXCHANGE, "task.#").await;
        let mut consumer = ech
            .basic_consume(
                evq.as_str().into(),
                "events".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let sink = events.clone();
        let tag = id.clone();
        tokio::spawn(async move {
            let _ech = ech;
            while let Some(Ok(d)) = consumer.next().await {
                if let Ok(e) = Event::from_json(&d.data) {
                    if e.node.ends_with(&tag) {
                        sink.lock().unwrap().push((Instant::now(), e));
                    }
                }
            }
        });
        Fleet {
            prefix: format!("freezer-test-{id}:"),
            id,
            dir,
            ch,
            conn,
            events,
            queues: Mutex::new(Vec::new()),
            redis_url: redis_url.to_string(),
        }
    }

    /// `name` with this fleet's suffix (node and pool names).
    pub fn name(&self, name: &str) -> String {
        format!("{name}-{}", self.id)
    }

    /// The node queue of `node` (unsuffixed name).
    pub fn node_queue(&self, node: &str) -> String {
        freezer_contracts::node_queue(&self.name(node))
    }

    /// The pool queue of `pool` (unsuffixed name).
    pub fn pool_queue(&self, pool: &str) -> String {
        freezer_contracts::pool_queue(&self.name(pool))
    }

    /// Writes the configuration of `spec` (plus a local storage `local1` at `<dir>/store`) and
    /// starts the worker; waits until its queues exist.
    pub fn start(&self, spec: &WorkerSpec) -> WorkerProc {
        let node = self.name(&spec.node);
        let pools: Vec<String> = spec.pools.iter().map(|p| self.name(p)).collect();
        let config = self.dir.join(format!("{node}.toml"));
        let log = self.dir.join(format!("{node}.log"));
        let pools_toml = pools
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let metrics = spec
            .metrics_addr
            .as_ref()
            .map(|a| format!("metrics_addr = {a:?}\n"))
            .unwrap_or_default();
        let dir = self.dir.display().to_string();
        let policy = spec.policy.clone().unwrap_or_else(|| {
            format!("backup_roots = [{dir:?}]\nrestore_roots = [{dir:?}]\nhosts = [\"*\"]\n")
        });
        let text = format!(
            "[storages.local1]\ntype = \"local\"\ncontainer = {store:?}\n\n\
             [keys.main]\npass_file = {pass:?}\n\n[policy]\n{policy}\n\
             [daemon]\nnode = {node:?}\npools = [{pools_toml}]\namqp_url = {AMQP_URL:?}\n\
             redis_url = {redis:?}\nconcurrency = {c}\n{metrics}grace_period_seconds = {g}\n\
             heartbeat_interval_ms = 500\nlease_ttl_ms = 3000\nkey_prefix = {prefix:?}\n{extra}\n",
            store = self.store().display().to_string(),
            pass = crate::pass_file(&self.dir).display().to_string(),
            redis = self.redis_url,
            c = spec.concurrency,
            g = spec.grace_seconds,
            prefix = self.prefix,
            extra = spec.extra,
        );
        fs::write(&config, text).unwrap();
        {
            let mut q = self.queues.lock().unwrap();
            q.push(freezer_contracts::node_queue(&node));
            q.extend(pools.iter().map(|p| freezer_contracts::pool_queue(p)));
        }
        let mut cmd = crate::worker();
        cmd.arg("run").arg("--config").arg(&config);
        cmd.env("FREEZER_LOG", "info,lapin=warn");
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(Stdio::null());
        cmd.stderr(fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("spawn freezer-worker run");
        let proc = WorkerProc {
            child,
            node: node.clone(),
            log,
            config,
        };
        wait_until("the worker to start", Duration::from_secs(60), || {
            proc.log_text().contains("connected to the broker")
        });
        proc
    }

    /// The local storage's container directory.
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Publishes `task` to `queue` (persistent, task id as message id), waiting for the confirm.
    pub async fn publish(&self, queue: &str, task: &TaskEnvelope) {
        self.publish_raw(queue, &task.to_json(), Some(task.task_id.as_str()))
            .await;
    }

    /// Publishes `tasks` to `queue` on a new connection (after a broker restart killed the
    /// fleet's own).
    pub async fn publish_fresh(&self, queue: &str, tasks: &[TaskEnvelope]) {
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("RabbitMQ");
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for t in tasks {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(ShortString::from(t.task_id.as_str()));
            let c = ch
                .basic_publish(
                    freezer_contracts::TASKS_EXCHANGE.into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &t.to_json(),
                    props,
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
            assert!(c.is_ack());
        }
        let _ = conn.close(200, "done".into()).await;
    }

    /// Waits until every task in `tasks` has the Redis state `succeeded`; panics on another
    /// final state.
    pub async fn wait_all_succeeded(&self, tasks: &[TaskEnvelope]) {
        let end = Instant::now() + PATIENCE * 2;
        for t in tasks {
            loop {
                match self.task_field(&t.task_id, "state").await.as_deref() {
                    Some("succeeded") => break,
                    Some("failed") | Some("expired") => {
                        panic!("task {} did not succeed", t.task_id)
                    }
                    _ => {}
                }
                assert!(Instant::now() < end, "task {} never finished", t.task_id);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Publishes any body to `queue`.
    pub async fn publish_raw(&self, queue: &str, body: &[u8], message_id: Option<&str>) {
        let mut props = BasicProperties::default().with_delivery_mode(2);
        if let Some(id) = message_id {
            props = props.with_message_id(ShortString::from(id));
        }
        let confirm = self
            .ch
            .basic_publish(
                freezer_contracts::TASKS_EXCHANGE.into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "the broker refused a task");
    }

    /// Every event of this fleet so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Every event of this fleet so far, with the moment it arrived here (for the benchmark).
    pub fn events_timed(&self) -> Vec<(Instant, Event)> {
        self.events.lock().unwrap().clone()
    }

    /// Events about `id`.
    pub fn events_of(&self, id: &TaskId) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.task_id.as_ref() == Some(id))
            .collect()
    }

    /// Waits for the first event matching `pred`.
    pub async fn wait_event(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let end = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.events().into_iter().find(&pred) {
                return e;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the final event of task `id`.
    pub async fn wait_final(&self, id: &TaskId) -> Event {
        self.wait_event(&format!("the final event of {id}"), |e| {
            e.task_id.as_ref() == Some(id) && e.status.is_final()
        })
        .await
    }

    /// Waits for the `started` event of task `id`.
    pub async fn wait_started(&self, id: &TaskId) -> Event {
        self.wait_event(&format!("{id} to start"), |e| {
            e.task_id.as_ref() == Some(id) && matches!(e.status, EventStatus::Started)
        })
        .await
    }

    /// A Redis connection (to the fleet's Redis).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("Redis")
    }

    /// The Redis key names under this fleet's prefix.
    pub fn keys(&self) -> freezer_fleet::Keys {
        freezer_fleet::Keys::new(self.prefix.as_str())
    }

    /// `HGET <prefix>task:<id> field`.
    pub async fn task_field(&self, id: &TaskId, field: &str) -> Option<String> {
        let mut c = self.redis().await;
        redis::cmd("HGET")
            .arg(self.keys().task(id.as_str()))
            .arg(field)
            .query_async(&mut c)
            .await
            .unwrap()
    }

    /// Binds a new exclusive queue to `freezer.dead` and returns a receiver of what arrives there
    /// (body, message id, reason header).
    pub async fn watch_dead(&self) -> Arc<Mutex<Vec<(Vec<u8>, Option<String>, Option<String>)>>> {
        let q = format!("test.dead.{}", self.id);
        let ch = exclusive_queue(&self.conn, &q, freezer_contracts::DEAD_LETTER_EXCHANGE, "").await;
        let mut consumer = ch
            .basic_consume(
                q.as_str().into(),
                "dead".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        tokio::spawn(async move {
            let _ch = ch;
            while let Some(Ok(d)) = consumer.next().await {
                let id = d.properties.message_id().as_ref().map(|m| m.to_string());
                let reason = d.properties.headers().as_ref().and_then(|h| {
                    h.inner()
                        .get(freezer_contracts::REASON_HEADER)
                        .and_then(|v| match v {
                            AMQPValue::LongString(s) => Some(s.to_string()),
                            _ => None,
                        })
                });
                let _ = d.acker.ack(BasicAckOptions::default()).await;
                sink.lock().unwrap().push((d.data, id, reason));
            }
        });
        got
    }

    /// Deletes this fleet's queues and Redis keys (call at the end of a test). Uses a new
    /// connection, since a test may have restarted the broker.
    pub async fn cleanup(&self) {
        if let Ok(conn) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await {
            if let Ok(ch) = conn.create_channel().await {
                let queues = self.queues.lock().unwrap().clone();
                for q in queues {
                    let _ = ch
                        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
            }
            let _ = conn.close(200, "done".into()).await;
        }
        if let Ok(client) = redis::Client::open(self.redis_url.as_str()) {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}*", self.prefix))
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> =
                        redis::cmd("DEL").arg(keys).query_async(&mut c).await;
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A new channel with an exclusive, auto-deleted queue `name` bound to `exchange` with `key`
/// (a test's private view of the events or dead letters).
async fn exclusive_queue(conn: &Connection, name: &str, exchange: &str, key: &str) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        name.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch
}

/// Polls `cond` every 50 ms until it holds, failing the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Backups (manifests) under a container directory.
pub fn manifests(container: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![container.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "manifest.json") {
                out.push(p);
            }
        }
    }
    out
}
