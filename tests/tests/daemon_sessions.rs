//! Multi-node sessions (ARCHITECTURE.md §5) through real worker processes, RabbitMQ and Redis: the
//! members start together, all or nothing (policy abort), best effort (policy proceed), a task
//! sent to a node outside its session, and a worker stopping while it waits at the barrier.
//!
//! The tests run one at a time (they start up to five workers each, and the first one measures
//! the start spread, which the others' load would blur).

use freezer_contracts::{
    BackupSpec, ErrorClass, Event, EventStatus, Session, SessionPolicy, TaskEnvelope, TaskSpec,
};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

const NODES: [&str; 5] = ["a", "b", "c", "d", "e"];

fn source_tree(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    fs::write(src.join("sub/b.bin"), freezer_e2e::random_bytes(3, 50_000)).unwrap();
    src
}

fn session(fleet: &Fleet, members: &[&str], hold_off: u64, policy: SessionPolicy) -> Session {
    Session {
        id: "nightly".into(),
        tag: "backup".into(),
        members: members.iter().map(|m| fleet.name(m)).collect(),
        hold_off_seconds: hold_off,
        policy,
    }
}

/// A small backup of `src` named after `node`, member of `session`.
fn member_task(fleet: &Fleet, src: &Path, node: &str, session: &Session) -> TaskEnvelope {
    let spec: BackupSpec = serde_json::from_value(json!({
        "path_to_backup": src,
        "backup_name": format!("data-{node}"),
        "container": fleet.store(),
        "storage": ["local1"],
        "hostname": "test-host",
    }))
    .unwrap();
    let mut t = fleet::task(TaskSpec::Backup(spec));
    t.session = Some(session.clone());
    t
}

async fn session_hash(fleet: &Fleet, s: &Session) -> HashMap<String, String> {
    let mut c = fleet.redis().await;
    redis::cmd("HGETALL")
        .arg(fleet.keys().session(&s.id, &s.tag))
        .query_async(&mut c)
        .await
        .unwrap()
}

fn start_workers(fleet: &Fleet, nodes: &[&str]) -> Vec<fleet::WorkerProc> {
    nodes
        .iter()
        .map(|n| fleet.start(&WorkerSpec::new(n, &[])))
        .collect()
}

/// The members' names as the hash lists them (sorted, joined with `,`).
fn csv(fleet: &Fleet, nodes: &[&str]) -> String {
    let mut v: Vec<String> = nodes.iter().map(|n| fleet.name(n)).collect();
    v.sort();
    v.join(",")
}

fn failure(e: &Event) -> (ErrorClass, String) {
    match &e.status {
        EventStatus::Failed {
            error_class,
            reason,
            ..
        } => (*error_class, reason.clone()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The `/metrics` text of the worker at `addr`.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample `name` (no labels) in a `/metrics` text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn unix_ms(e: &Event) -> i128 {
    e.at.as_offset_date_time().unix_timestamp_nanos() / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_start_together_and_the_session_succeeds() {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::new().await;
    let metrics = format!("127.0.0.1:{}", freezer_e2e::services::free_port_block(1));
    let mut first = WorkerSpec::new("a", &[]);
    first.metrics_addr = Some(metrics.clone());
    let mut workers = vec![fleet.start(&first)];
    workers.extend(start_workers(&fleet, &NODES[1..]));
    let text = scrape(&metrics);
    assert_eq!(
        sample(&text, "freezer_session_wait_seconds_count"),
        Some(0.0),
        "{text}"
    );
    let src = source_tree(&fleet.dir);
    let s = session(&fleet, &NODES, 20, SessionPolicy::Abort);
    let tasks: Vec<_> = NODES
        .iter()
        .map(|n| member_task(&fleet, &src, n, &s))
        .collect();
    for (node, t) in NODES.iter().zip(&tasks) {
        fleet.publish(&fleet.node_queue(node), t).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in &tasks {
        let e = fleet.wait_final(&t.task_id).await;
        assert!(
            matches!(e.status, EventStatus::Succeeded { exit_code: 0, .. }),
            "{e:?}"
        );
    }
    assert_eq!(fleet::manifests(&fleet.store()).len(), 5);

    let h = session_hash(&fleet, &s).await;
    assert_eq!(h["state"], "started", "{h:?}");
    assert_eq!(h["present"], csv(&fleet, &NODES));
    assert_eq!(h["missing"], "");
    assert_eq!(h["result"], "succeeded", "{h:?}");
    let ms = |f: String| -> i64 { h[&f].parse().unwrap() };
    let started_at = ms("started_at".into());
    let mut begun = Vec::new();
    for (node, t) in NODES.iter().zip(&tasks) {
        let n = fleet.name(node);
        assert_eq!(h[&format!("result:{n}")], "succeeded:0");
        assert_eq!(h[&format!("task:{n}")], t.task_id.to_string());
        // Nobody started before the last member joined.
        assert!(ms(format!("joined:{n}")) < started_at, "{h:?}");
        begun.push(ms(format!("begun:{n}")));
    }
    // The first member waited for the last (4 publishes 200 ms apart).
    let first_join = ms(format!("joined:{}", fleet.name("a")));
    assert!(started_at - first_join >= 600, "{h:?}");
    let spread = begun.iter().max().unwrap() - begun.iter().min().unwrap();
    let started: Vec<i128> = tasks
        .iter()
        .map(|t| {
            fleet
                .events_of(&t.task_id)
                .iter()
                .find(|e| matches!(e.status, EventStatus::Started))
                .map(unix_ms)
                .expect("a started event")
        })
        .collect();
    let event_spread = started.iter().max().unwrap() - started.iter().min().unwrap();
    eprintln!(
        "session start spread: {spread} ms between the members' starts (begun:<node>), \
         {event_spread} ms between their started events' `at`; start instant {} ms after the \
         first join",
        started_at - first_join
    );
    assert!(spread < 100, "members started {spread} ms apart: {h:?}");
    assert!(event_spread < 100, "started events {event_spread} ms apart");

    // a waited about 800 ms for the others: one observation of freezer_session_wait_seconds.
    let text = scrape(&metrics);
    assert_eq!(
        sample(&text, "freezer_session_wait_seconds_count"),
        Some(1.0)
    );
    let waited = sample(&text, "freezer_session_wait_seconds_sum").unwrap();
    assert!(waited >= 0.6, "a waited {waited} s at the barrier");

    let mut c = fleet.redis().await;
    let listed: Vec<String> = redis::cmd("ZRANGE")
        .arg(fleet.keys().sessions())
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(listed, ["nightly/backup"]);
    let ttl: i64 = redis::cmd("TTL")
        .arg(fleet.keys().session("nightly", "backup"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0, "the session hash has no TTL");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_member_aborts_the_whole_session_and_nothing_is_written() {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::new().await;
    let _workers = start_workers(&fleet, &NODES);
    let src = source_tree(&fleet.dir);
    let s = session(&fleet, &NODES, 2, SessionPolicy::Abort);
    let missing = fleet.name("e");
    let tasks: Vec<_> = NODES[..4]
        .iter()
        .map(|n| (n, member_task(&fleet, &src, n, &s)))
        .collect();
    let clock = Instant::now();
    for (node, t) in &tasks {
        fleet.publish(&fleet.node_queue(node), t).await;
    }
    for (_, t) in &tasks {
        let e = fleet.wait_final(&t.task_id).await;
        let (class, reason) = failure(&e);
        assert_eq!(class, ErrorClass::Transient, "{reason}");
        let expected = format!(
            "session nightly tag backup aborted: node(s) {missing} did not join within 2 s"
        );
        assert_eq!(reason, expected);
        assert!(
            !fleet
                .events_of(&t.task_id)
                .iter()
                .any(|e| matches!(e.status, EventStatus::Started)),
            "an aborted member reported a start"
        );
    }
    eprintln!(
        "abort: 4 members failed {:?} after the first publish",
        clock.elapsed()
    );
    assert!(
        fleet::manifests(&fleet.store()).is_empty(),
        "an aborted session wrote a backup"
    );
    let h = session_hash(&fleet, &s).await;
    assert_eq!(h["state"], "aborted", "{h:?}");
    assert_eq!(h["missing"], missing);
    assert_eq!(h["present"], csv(&fleet, &NODES[..4]));
    assert_eq!(h["result"], "failed");
    assert!(h.contains_key("aborted_at") && !h.contains_key("started_at"));
    for (node, _) in &tasks {
        assert_eq!(h[&format!("result:{}", fleet.name(node))], "failed:1");
    }

    // The late member fails too, naming the abort.
    let late = member_task(&fleet, &src, "e", &s);
    fleet.publish(&fleet.node_queue("e"), &late).await;
    let (class, reason) = failure(&fleet.wait_final(&late.task_id).await);
    assert_eq!(class, ErrorClass::Transient);
    assert!(
        reason.starts_with("session nightly tag backup aborted:") && reason.contains(&missing),
        "{reason}"
    );
    assert!(fleet::manifests(&fleet.store()).is_empty());
    let h = session_hash(&fleet, &s).await;
    assert_eq!(h[&format!("result:{missing}")], "failed:1");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_policy_proceed_the_present_members_run_and_the_session_fails() {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::new().await;
    let _workers = start_workers(&fleet, &NODES[..4]);
    let src = source_tree(&fleet.dir);
    let s = session(&fleet, &NODES, 2, SessionPolicy::Proceed);
    let tasks: Vec<_> = NODES[..4]
        .iter()
        .map(|n| (n, member_task(&fleet, &src, n, &s)))
        .collect();
    for (node, t) in &tasks {
        fleet.publish(&fleet.node_queue(node), t).await;
    }
    for (_, t) in &tasks {
        let e = fleet.wait_final(&t.task_id).await;
        assert!(
            matches!(e.status, EventStatus::Succeeded { exit_code: 0, .. }),
            "{e:?}"
        );
    }
    assert_eq!(fleet::manifests(&fleet.store()).len(), 4);
    let h = session_hash(&fleet, &s).await;
    assert_eq!(h["state"], "started", "{h:?}");
    assert_eq!(h["present"], csv(&fleet, &NODES[..4]));
    assert_eq!(h["missing"], fleet.name("e"));
    // Every member that ran succeeded, but one never came: the session did not succeed.
    assert_eq!(h["result"], "failed", "{h:?}");
    let started_at: i64 = h["started_at"].parse().unwrap();
    let deadline: i64 = h["deadline"].parse().unwrap();
    assert!(started_at >= deadline, "{h:?}");

    // A member arriving after the start fails, saying the session started without it.
    let _e = fleet.start(&WorkerSpec::new("e", &[]));
    let late = member_task(&fleet, &src, "e", &s);
    fleet.publish(&fleet.node_queue("e"), &late).await;
    let (class, reason) = failure(&fleet.wait_final(&late.task_id).await);
    assert_eq!(class, ErrorClass::Transient);
    assert!(
        reason.starts_with(&format!(
            "session nightly tag backup started without node {}",
            fleet.name("e")
        )),
        "{reason}"
    );
    assert_eq!(fleet::manifests(&fleet.store()).len(), 4);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_for_a_node_outside_its_session_fails_at_once() {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::new().await;
    let _a = fleet.start(&WorkerSpec::new("a", &[]));
    let src = source_tree(&fleet.dir);
    let s = session(&fleet, &["b", "c"], 30, SessionPolicy::Abort);
    let t = member_task(&fleet, &src, "a", &s);
    let clock = Instant::now();
    fleet.publish(&fleet.node_queue("a"), &t).await;
    let (class, reason) = failure(&fleet.wait_final(&t.task_id).await);
    assert!(
        clock.elapsed() < Duration::from_secs(10),
        "waited for a session it is not part of"
    );
    assert_eq!(class, ErrorClass::Permanent);
    assert!(
        reason.contains(&format!(
            "node {} is not a member of session nightly tag backup",
            fleet.name("a")
        )),
        "{reason}"
    );
    assert!(session_hash(&fleet, &s).await.is_empty());
    assert!(fleet::manifests(&fleet.store()).is_empty());
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stopping_at_the_barrier_leaves_it_and_gives_its_task_back() {
    let _serial = SERIAL.lock().await;
    let fleet = Fleet::new().await;
    let mut a = fleet.start(&WorkerSpec::new("a", &[]));
    let src = source_tree(&fleet.dir);
    let s = session(&fleet, &["a", "b"], 60, SessionPolicy::Abort);
    let ta = member_task(&fleet, &src, "a", &s);
    let joined = format!("joined:{}", fleet.name("a"));
    fleet.publish(&fleet.node_queue("a"), &ta).await;
    let end = Instant::now() + fleet::PATIENCE;
    while !session_hash(&fleet, &s).await.contains_key(&joined) {
        assert!(Instant::now() < end, "a never joined the barrier");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Waiting at the barrier, its lease is renewed like any running task's.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        fleet.task_field(&ta.task_id, "state").await.as_deref(),
        Some("running")
    );
    let mut c = fleet.redis().await;
    let lease: Option<String> = redis::cmd("GET")
        .arg(fleet.keys().task_lease(ta.task_id.as_str()))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        lease.is_some(),
        "the lease of a task at the barrier expired (lease TTL 3 s)"
    );

    let clock = Instant::now();
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(Duration::from_secs(20)), Some(0));
    eprintln!("stopped at the barrier in {:?}", clock.elapsed());
    let h = session_hash(&fleet, &s).await;
    assert_eq!(h["state"], "waiting", "{h:?}");
    assert!(
        !h.contains_key(&joined),
        "the join outlived the worker: {h:?}"
    );
    assert_eq!(h["present"], "");
    assert!(a.log_text().contains("left the session barrier"));
    assert!(a.log_text().contains("abandoning the task"));

    // The task went back to a's queue: when a returns and b joins, both run.
    let _a = fleet.start(&WorkerSpec::new("a", &[]));
    let _b = fleet.start(&WorkerSpec::new("b", &[]));
    let tb = member_task(&fleet, &src, "b", &s);
    fleet.publish(&fleet.node_queue("b"), &tb).await;
    for t in [&ta, &tb] {
        let e = fleet.wait_final(&t.task_id).await;
        assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");
    }
    let h = session_hash(&fleet, &s).await;
    assert_eq!(h["state"], "started");
    assert_eq!(h["result"], "succeeded");
    assert_eq!(fleet::manifests(&fleet.store()).len(), 2);
    fleet.cleanup().await;
}
