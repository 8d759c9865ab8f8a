//! The dispatcher's run engine against real workers, RabbitMQ and Redis: actions in order,
//! retries, skipped and mandatory actions, one publication per run id, sessions, a dead member,
//! takeover by a new engine; and the `publish --wait` / `workers` commands.

use freezer_contracts::{
    BackupSpec, EventStatus, NoopSpec, RestoreSpec, SessionPolicy, TaskEnvelope, TaskSpec,
};
use freezer_dispatcher::config::DispatcherSection;
use freezer_dispatcher::jobs::{Action, DueRun, Job, SessionDef, Target};
use freezer_dispatcher::metrics::Metrics;
use freezer_dispatcher::runs::{self, Ctx};
use freezer_e2e::fleet::{Fleet, WorkerSpec, AMQP_URL, PATIENCE, REDIS_URL};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// An engine driven in-process; stopped (like a dispatcher that dies) by [`Engine::stop`].
struct Engine {
    due: mpsc::Sender<DueRun>,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
    leader: watch::Sender<bool>,
}

impl Engine {
    fn start(fleet: &Fleet) -> Engine {
        Engine::start_as(fleet, true)
    }

    /// An engine that starts as leader or not.
    fn start_as(fleet: &Fleet, leading: bool) -> Engine {
        let cfg = DispatcherSection {
            key_prefix: fleet.prefix.clone(),
            events_queue: events_queue(fleet),
            amqp_url: AMQP_URL.into(),
            redis_url: REDIS_URL.into(),
            history_len: 10,
            ..Default::default()
        };
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let mut ctx = Ctx::new(cfg, runs::redis(REDIS_URL).unwrap(), metrics);
        ctx.expiry_margin = Duration::from_secs(4);
        ctx.poll = Duration::from_millis(300);
        let (due, rx) = mpsc::channel(16);
        let (leader, lrx) = watch::channel(leading);
        let (stop, stop_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(runs::drive(Arc::new(ctx), rx, lrx, async {
            let _ = stop_rx.await;
        }));
        Engine {
            due,
            stop,
            handle,
            leader,
        }
    }

    fn set_leader(&self, leading: bool) {
        self.leader.send_replace(leading);
    }

    async fn send(&self, d: DueRun) {
        self.due.send(d).await.unwrap();
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the engine stops")
            .unwrap();
    }
}

/// `freezer-dispatcher` talking to the test's broker and Redis under the fleet's key prefix.
fn dispatcher_for(prefix: &str) -> std::process::Command {
    let mut cmd = freezer_e2e::dispatcher();
    cmd.args([
        "--redis-url",
        REDIS_URL,
        "--amqp-url",
        AMQP_URL,
        "--key-prefix",
        prefix,
    ]);
    cmd
}

fn events_queue(fleet: &Fleet) -> String {
    format!("test.dispatcher.{}", fleet.id)
}

async fn cleanup(fleet: &Fleet, extra_queues: &[String]) {
    for q in extra_queues.iter().cloned().chain([events_queue(fleet)]) {
        let _ = fleet
            .ch
            .queue_delete(q.as_str().into(), Default::default())
            .await;
    }
    fleet.cleanup().await;
}

fn job(id: &str, target: Target, actions: Vec<Action>, expires_after: Duration) -> Arc<Job> {
    Arc::new(Job {
        id: id.into(),
        file: PathBuf::from("test.toml"),
        target,
        actions,
        schedule: None,
        expires_after,
    })
}

fn action(spec: TaskSpec, mandatory: bool, max_retries: u32) -> Action {
    Action {
        spec,
        mandatory,
        max_retries,
        retry_interval: Duration::from_secs(1),
    }
}

fn noop(ms: u64) -> TaskSpec {
    TaskSpec::Noop(NoopSpec { sleep_ms: ms })
}

/// A backup of a path that does not exist: fails at once on any worker.
fn failing_backup(fleet: &Fleet) -> TaskSpec {
    let spec: BackupSpec = serde_json::from_value(json!({
        "path_to_backup": fleet.dir.join("no-such-dir"),
        "backup_name": "missing",
        "container": fleet.store(),
        "storage": ["local1"],
        "hostname": "test-host",
    }))
    .unwrap();
    TaskSpec::Backup(spec)
}

fn due(job: &Arc<Job>, run_id: &str) -> DueRun {
    DueRun {
        job: job.clone(),
        fire_time: freezer_fleet::clock::now(),
        run_id: run_id.into(),
    }
}

/// The job's history, newest first.
async fn history(fleet: &Fleet, job_id: &str) -> Vec<Value> {
    let mut c = fleet.redis().await;
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg(fleet.keys().history(job_id))
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    items
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect()
}

/// Waits until the job has `n` finished runs; returns the newest.
async fn wait_runs(fleet: &Fleet, job_id: &str, n: usize) -> Value {
    let end = Instant::now() + PATIENCE * 2;
    loop {
        let h = history(fleet, job_id).await;
        if h.len() >= n {
            return h[0].clone();
        }
        assert!(
            Instant::now() < end,
            "job {job_id} never finished {n} run(s)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The in-progress record of a run.
async fn run_doc(fleet: &Fleet, run_id: &str) -> Option<Value> {
    let mut c = fleet.redis().await;
    let doc: Option<String> = redis::cmd("HGET")
        .arg(fleet.keys().run(run_id))
        .arg("doc")
        .query_async(&mut c)
        .await
        .unwrap();
    doc.map(|d| serde_json::from_str(&d).unwrap())
}

fn started_of_run(fleet: &Fleet, run_id: &str) -> Vec<freezer_contracts::Event> {
    fleet
        .events()
        .into_iter()
        .filter(|e| e.run_id.as_deref() == Some(run_id) && matches!(e.status, EventStatus::Started))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_run_in_order_with_retries_then_skip_or_mandatory() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("a", &[]));
    let engine = Engine::start(&fleet);
    let j = job(
        "nightly",
        Target::Node(fleet.name("a")),
        vec![
            action(noop(0), false, 0),
            action(failing_backup(&fleet), false, 2),
            action(noop(0), false, 0),
            action(noop(0), true, 0),
        ],
        Duration::from_secs(60),
    );
    let run_id = format!("nightly.{}", fleet.id);
    engine.send(due(&j, &run_id)).await;
    let run = wait_runs(&fleet, "nightly", 1).await;
    eprintln!("{}", serde_json::to_string_pretty(&run).unwrap());
    assert_eq!(run["result"], "failed");
    let a = run["actions"].as_array().unwrap();
    assert_eq!(a[0]["state"], "succeeded");
    assert_eq!(a[0]["attempts"], 1);
    // The failing action: 1 + max_retries tries, each a new task with the next attempt.
    assert_eq!(a[1]["state"], "failed");
    assert_eq!(a[1]["attempts"], 3);
    let tasks = a[1]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    let attempts: Vec<u64> = tasks
        .iter()
        .map(|t| t["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let mut ids: Vec<&str> = tasks
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each retry is a new task");
    assert!(tasks
        .iter()
        .all(|t| t["outcome"] == "failed" && t["exit_code"] != 0));
    assert!(a[1]["reason"].as_str().unwrap().contains(&fleet.name("a")));
    // Not mandatory after a failure: skipped, nothing published. Mandatory: runs.
    assert_eq!(a[2]["state"], "skipped");
    assert_eq!(a[2]["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(a[3]["state"], "succeeded");

    // Order, and the retry interval between tries, as the workers saw them.
    let started = started_of_run(&fleet, &run_id);
    let order: Vec<(String, u32)> = started
        .iter()
        .map(|e| (e.kind.unwrap().to_string(), e.attempt.unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("noop".to_string(), 1),
            ("backup".into(), 1),
            ("backup".into(), 2),
            ("backup".into(), 3),
            ("noop".into(), 1)
        ]
    );
    let gap = started[1].at.until(started[2].at);
    assert!(gap >= Duration::from_millis(900), "retry after {gap:?}");
    eprintln!("retry started {gap:?} after the previous try started (retry_interval 1 s)");

    // `status RUN_ID` and `status JOB_ID` read the same records.
    let out = cli(&fleet, &["status", &run_id]);
    out.assert_code(0);
    eprintln!("{}", out.stdout);
    assert!(
        out.stdout.contains("skipped") && out.stdout.contains("failed"),
        "{out}"
    );
    let out = cli(&fleet, &["status", "nightly", "--json"]);
    out.assert_code(0);
    let v = out.json();
    assert_eq!(v["type"], "job");
    assert_eq!(v["runs"][0]["run_id"], run_id.as_str());
    engine.stop().await;
    cleanup(&fleet, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_id_seen_before_is_not_published_again() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("a", &[]));
    let engine = Engine::start(&fleet);
    let j = job(
        "twice",
        Target::Node(fleet.name("a")),
        vec![action(noop(500), false, 0)],
        Duration::from_secs(60),
    );
    let run_id = format!("twice.{}", fleet.id);
    engine.send(due(&j, &run_id)).await;
    engine.send(due(&j, &run_id)).await;
    let run = wait_runs(&fleet, "twice", 1).await;
    assert_eq!(run["result"], "succeeded");
    // Once more after it finished, and once from a second engine (another dispatcher).
    engine.send(due(&j, &run_id)).await;
    let other = Engine::start(&fleet);
    other.send(due(&j, &run_id)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(history(&fleet, "twice").await.len(), 1);
    assert_eq!(started_of_run(&fleet, &run_id).len(), 1);
    other.stop().await;
    engine.stop().await;
    cleanup(&fleet, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_runs_one_task_per_member_and_fails_when_one_is_missing() {
    let fleet = Fleet::new().await;
    let _w: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| fleet.start(&WorkerSpec::new(n, &[])))
        .collect();
    let engine = Engine::start(&fleet);
    let members: Vec<String> = ["a", "b", "c"].iter().map(|n| fleet.name(n)).collect();
    let session = |nodes: Vec<String>| {
        Target::Session(SessionDef {
            nodes,
            hold_off: Duration::from_secs(30),
            policy: SessionPolicy::Abort,
        })
    };

    // All three members succeed: one task per member, on its node, with the session field.
    let j = job(
        "sess",
        session(members.clone()),
        vec![action(noop(1500), false, 0)],
        Duration::from_secs(60),
    );
    let run_id = format!("sess.{}", fleet.id);
    engine.send(due(&j, &run_id)).await;
    let current = wait_current(&fleet, &run_id).await;
    assert_eq!(current.len(), 3);
    for t in &current {
        let s = t.session.as_ref().expect("a session field");
        assert_eq!(s.id, run_id);
        assert_eq!(s.tag, "0");
        assert_eq!(s.members, members);
        assert_eq!(s.policy, SessionPolicy::Abort);
    }
    let run = wait_runs(&fleet, "sess", 1).await;
    assert_eq!(run["result"], "succeeded", "{run}");
    let tasks = run["actions"][0]["tasks"].as_array().unwrap().clone();
    let nodes: Vec<&str> = tasks.iter().map(|t| t["node"].as_str().unwrap()).collect();
    assert_eq!(
        nodes,
        members.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for m in &members {
        let ran_on: Vec<_> = started_of_run(&fleet, &run_id)
            .into_iter()
            .filter(|e| &e.node == m)
            .collect();
        assert_eq!(ran_on.len(), 1, "member {m}");
    }

    // A member without a worker: its task never starts, expires, and the session fails naming
    // it. A restore without a date gets the run's fire time, the same on every member.
    let dead = fleet.name("d");
    let mut with_dead = members[..2].to_vec();
    with_dead.push(dead.clone());
    let restore: RestoreSpec = serde_json::from_value(json!({
        "backup_name": "nothing", "container": fleet.store(), "storage": ["local1"],
        "hostname": "test-host", "restore_abs_path": fleet.dir.join("restored"),
    }))
    .unwrap();
    let j = job(
        "sess2",
        session(with_dead.clone()),
        vec![action(TaskSpec::Restore(restore), false, 0)],
        Duration::from_secs(3),
    );
    let run_id = format!("sess2.{}", fleet.id);
    let d = due(&j, &run_id);
    let pinned = {
        let t = d.fire_time.as_offset_date_time();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let started = Instant::now();
    engine.send(d).await;
    let current = wait_current(&fleet, &run_id).await;
    for t in &current {
        let TaskSpec::Restore(r) = &t.spec else {
            panic!("a restore")
        };
        assert_eq!(r.restore_from_date.as_deref(), Some(pinned.as_str()));
    }
    let run = wait_runs(&fleet, "sess2", 1).await;
    eprintln!("{}", serde_json::to_string_pretty(&run).unwrap());
    eprintln!("a dead member ended the run after {:?}", started.elapsed());
    assert_eq!(run["result"], "failed");
    let reason = run["actions"][0]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("missing: {dead}")), "{reason}");
    assert!(
        reason.contains(&members[0]) && reason.contains(&members[1]),
        "{reason}"
    );
    engine.stop().await;
    cleanup(&fleet, &[freezer_contracts::node_queue(&dead)]).await;
}

/// Waits until the run's current action has tasks in flight; returns them.
async fn wait_current(fleet: &Fleet, run_id: &str) -> Vec<TaskEnvelope> {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Some(doc) = run_doc(fleet, run_id).await {
            if let Some(c) = doc["actions"][0]["current"].as_array() {
                if !c.is_empty() {
                    return c
                        .iter()
                        .map(|t| serde_json::from_value(t.clone()).unwrap())
                        .collect();
                }
            }
        }
        assert!(Instant::now() < end, "run {run_id} never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_engine_takes_over_a_run_in_progress_and_completes_it_once() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("a", &[]));
    let first = Engine::start(&fleet);
    let j = job(
        "takeover",
        Target::Node(fleet.name("a")),
        vec![action(noop(4000), false, 0), action(noop(0), false, 0)],
        Duration::from_secs(60),
    );
    let run_id = format!("takeover.{}", fleet.id);
    first.send(due(&j, &run_id)).await;
    fleet
        .wait_event("the first task to start", |e| {
            e.run_id.as_deref() == Some(run_id.as_str()) && matches!(e.status, EventStatus::Started)
        })
        .await;
    first.stop().await;
    // The task finishes while no engine listens; a new one resumes the run from Redis.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(history(&fleet, "takeover").await.is_empty());
    let second = Engine::start(&fleet);
    let run = wait_runs(&fleet, "takeover", 1).await;
    assert_eq!(run["result"], "succeeded", "{run}");
    let a = run["actions"].as_array().unwrap();
    assert_eq!(a[0]["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(a[1]["state"], "succeeded");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(history(&fleet, "takeover").await.len(), 1);
    assert_eq!(
        started_of_run(&fleet, &run_id).len(),
        2,
        "each task ran once"
    );
    let mut c = fleet.redis().await;
    let active: Vec<String> = redis::cmd("SMEMBERS")
        .arg(fleet.keys().active_runs())
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(active.is_empty());
    second.stop().await;
    cleanup(&fleet, &[]).await;
}

fn cli(fleet: &Fleet, args: &[&str]) -> freezer_e2e::Out {
    let mut cmd = dispatcher_for(&fleet.prefix);
    cmd.args(args);
    freezer_e2e::run_command(&mut cmd, Duration::from_secs(180))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_wait_exits_with_the_task_exit_code_and_workers_lists_the_fleet() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("a", &["p"]));
    let node = fleet.name("a");

    let waited = Instant::now();
    let out = tokio::task::spawn_blocking({
        let (prefix, node) = (fleet.prefix.clone(), node.clone());
        move || {
            let mut cmd = dispatcher_for(&prefix);
            cmd.args([
                "publish",
                "noop",
                "--node",
                &node,
                "--sleep-ms",
                "300",
                "--wait",
            ]);
            freezer_e2e::run_command(&mut cmd, Duration::from_secs(180))
        }
    })
    .await
    .unwrap();
    out.assert_code(0);
    eprintln!(
        "publish --wait of a 300 ms noop took {:?}",
        waited.elapsed()
    );
    let id = freezer_contracts::TaskId::parse(out.stdout.trim()).expect("the task id on stdout");
    assert!(out.stderr.contains("started on"), "{out}");
    let e = fleet.wait_final(&id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }));

    let store = fleet.store().display().to_string();
    let missing = fleet.dir.join("no-such-dir").display().to_string();
    let pool = fleet.name("p");
    let out = tokio::task::spawn_blocking({
        let (prefix, pool) = (fleet.prefix.clone(), pool.clone());
        move || {
            let mut cmd = dispatcher_for(&prefix);
            cmd.args([
                "publish",
                "backup",
                "--pool",
                &pool,
                "--path-to-backup",
                &missing,
                "--backup-name",
                "x",
                "--container",
                &store,
                "--storage",
                "local1",
                "--hostname",
                "test-host",
                "--wait",
                "--json",
            ]);
            freezer_e2e::run_command(&mut cmd, Duration::from_secs(180))
        }
    })
    .await
    .unwrap();
    let v = out.json();
    let id = freezer_contracts::TaskId::parse(v["task_id"].as_str().unwrap()).unwrap();
    let e = fleet.wait_final(&id).await;
    let EventStatus::Failed { exit_code, .. } = e.status else {
        panic!("{e:?}")
    };
    assert_ne!(exit_code, 0);
    out.assert_code(exit_code);
    assert_eq!(v["status"], "failed");

    // Ctrl-C while waiting: exit 130, the task goes on.
    let err_log = fleet.dir.join("wait.stderr");
    let mut cmd = dispatcher_for(&fleet.prefix);
    cmd.args([
        "publish",
        "noop",
        "--node",
        &node,
        "--sleep-ms",
        "3000",
        "--wait",
    ]);
    cmd.stdout(std::process::Stdio::null());
    cmd.stderr(std::fs::File::create(&err_log).unwrap());
    let mut child = cmd.spawn().unwrap();
    freezer_e2e::fleet::wait_until("publish --wait to wait", Duration::from_secs(60), || {
        std::fs::read_to_string(&err_log).is_ok_and(|t| t.contains("started on"))
    });
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap();
    assert_eq!(code, Some(130));

    // An option the kind does not take is a usage error.
    let out = cli(
        &fleet,
        &["publish", "noop", "--node", &node, "--keep-last", "2"],
    );
    out.assert_code(2);
    assert!(out.stderr.contains("keep"), "{out}");

    let out = cli(&fleet, &["workers", "--json"]);
    out.assert_code(0);
    let v = out.json();
    let w = v
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["node"] == node.as_str())
        .expect("the worker is listed");
    assert_eq!(w["live"], true);
    assert_eq!(w["pools"], json!([pool]));
    assert!(w["version"].is_string() && w["capacity"] == 4);

    let out = cli(&fleet, &["status", id.as_str(), "--json"]);
    out.assert_code(0);
    assert_eq!(out.json()["fields"]["state"], "failed");
    let out = cli(&fleet, &["sessions"]);
    out.assert_code(0);
    cleanup(&fleet, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_acts_only_while_leading() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("a", &[]));
    let engine = Engine::start_as(&fleet, false);
    let j = job(
        "lead",
        Target::Node(fleet.name("a")),
        vec![action(noop(3000), false, 0)],
        Duration::from_secs(60),
    );
    // Not leading: a due run is not started (the leader's scheduler fires it).
    let r1 = format!("lead.1.{}", fleet.id);
    engine.send(due(&j, &r1)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(run_doc(&fleet, &r1).await.is_none());
    assert!(started_of_run(&fleet, &r1).is_empty());

    // Leading: it runs; losing the lead mid-run leaves it unfinished; leading again resumes it.
    engine.set_leader(true);
    let r2 = format!("lead.2.{}", fleet.id);
    engine.send(due(&j, &r2)).await;
    fleet
        .wait_event("the task to start", |e| {
            e.run_id.as_deref() == Some(r2.as_str()) && matches!(e.status, EventStatus::Started)
        })
        .await;
    engine.set_leader(false);
    let started = started_of_run(&fleet, &r2);
    let id = started[0].task_id.clone().unwrap();
    fleet.wait_final(&id).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(history(&fleet, "lead").await.is_empty());
    engine.set_leader(true);
    let run = wait_runs(&fleet, "lead", 1).await;
    assert_eq!(run["run_id"], r2.as_str());
    assert_eq!(run["result"], "succeeded");
    assert_eq!(started_of_run(&fleet, &r2).len(), 1);
    engine.stop().await;
    cleanup(&fleet, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_the_workers_would_reject_is_neither_published_nor_retried() {
    let fleet = Fleet::new().await;
    let engine = Engine::start(&fleet);
    let node = fleet.name("a");
    let j = job(
        "bad",
        Target::Session(SessionDef {
            nodes: vec![node.clone(), node.clone()],
            hold_off: Duration::from_secs(5),
            policy: SessionPolicy::Proceed,
        }),
        vec![action(noop(0), false, 3)],
        Duration::from_secs(60),
    );
    engine.send(due(&j, &format!("bad.{}", fleet.id))).await;
    let run = wait_runs(&fleet, "bad", 1).await;
    assert_eq!(run["result"], "failed");
    let a = &run["actions"][0];
    assert_eq!(a["attempts"], 1, "{run}");
    let reason = a["reason"].as_str().unwrap();
    assert!(reason.contains("not published"), "{reason}");
    assert!(a["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["outcome"] == "rejected"));
    engine.stop().await;
    cleanup(&fleet, &[]).await;
}

/// Writes `round` into `src` and backs it up on nodes r1 and r2 (each its own series: their
/// hostnames differ); the backup id of each, by node.
async fn member_backups(
    fleet: &Fleet,
    src: &std::path::Path,
    round: &str,
) -> std::collections::HashMap<String, String> {
    std::fs::write(src.join("data"), round).unwrap();
    let mut ids = std::collections::HashMap::new();
    for n in ["r1", "r2"] {
        let spec: BackupSpec = serde_json::from_value(json!({
            "path_to_backup": src, "backup_name": "db",
            "container": fleet.store(), "storage": ["local1"],
        }))
        .unwrap();
        let t = freezer_e2e::fleet::task(TaskSpec::Backup(spec));
        fleet.publish(&fleet.node_queue(n), &t).await;
        let e = fleet.wait_final(&t.task_id).await;
        let EventStatus::Succeeded { result, .. } = &e.status else {
            panic!("backup failed: {e:?}");
        };
        ids.insert(
            e.node.clone(),
            result["backup_id"].as_str().unwrap().to_string(),
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_session_brings_every_member_back_to_the_same_point() {
    let fleet = Fleet::new().await;
    let nodes: Vec<String> = ["r1", "r2"].iter().map(|n| fleet.name(n)).collect();
    let _workers: Vec<_> = ["r1", "r2"]
        .iter()
        .map(|n| {
            let mut spec = WorkerSpec::new(n, &[]);
            spec.extra = format!("hostname = {:?}\n", fleet.name(n));
            fleet.start(&spec)
        })
        .collect();
    let src = fleet.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Each member backs up twice; the session runs at a fire time between the two.
    let first = member_backups(&fleet, &src, "one").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let between = freezer_fleet::clock::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = member_backups(&fleet, &src, "two").await;
    assert_ne!(first, second);

    let engine = Engine::start(&fleet);
    let restore: RestoreSpec = serde_json::from_value(json!({
        "backup_name": "db", "container": fleet.store(), "storage": ["local1"],
        "restore_abs_path": fleet.dir.join("restored"), "dry_run": true,
    }))
    .unwrap();
    let j = job(
        "restore",
        Target::Session(SessionDef {
            nodes: nodes.clone(),
            hold_off: Duration::from_secs(20),
            policy: SessionPolicy::Abort,
        }),
        vec![action(TaskSpec::Restore(restore), false, 0)],
        Duration::from_secs(60),
    );
    let run_id = format!("restore.{}", fleet.id);
    engine
        .send(DueRun {
            job: j,
            fire_time: between,
            run_id: run_id.clone(),
        })
        .await;
    let run = wait_runs(&fleet, "restore", 1).await;
    assert_eq!(run["result"], "succeeded", "{run}");
    // Without a restore_from_date, every member went back to the run's fire time: its first
    // backup, although a newer one exists.
    let restored: Vec<(String, String)> = fleet
        .events()
        .into_iter()
        .filter(|e| e.run_id.as_deref() == Some(run_id.as_str()))
        .filter_map(|e| match &e.status {
            EventStatus::Succeeded { result, .. } => Some((
                e.node.clone(),
                result["backup_id"].as_str().unwrap_or_default().to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(restored.len(), 2, "{restored:?}");
    for (node, id) in &restored {
        assert_eq!(
            Some(id),
            first.get(node),
            "{node} restored {id}: {first:?} {second:?}"
        );
    }
    engine.stop().await;
    cleanup(&fleet, &[]).await;
}
