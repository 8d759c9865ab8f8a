//! The worker daemon through broker and Redis restarts: it reconnects with backoff and goes on;
//! no task is lost and none runs twice.
//!
//! The broker test stops the machine's shared RabbitMQ (`rabbitmqctl stop_app`/`start_app`) for a
//! few seconds; the Redis test restarts a redis-server of its own on its own port.

use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use freezer_e2e::services;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The broker restart breaks every connection of this process, so the tests here take turns.
static RESTARTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_task_and_runs_none_twice() {
    let _turn = RESTARTS.lock().await;
    let fleet = Fleet::new().await;
    let _a = fleet.start(&WorkerSpec::new("a", &["p"]));
    let _b = fleet.start(&WorkerSpec::new("b", &["p"]));
    let q = fleet.pool_queue("p");
    let first: Vec<_> = (0..30).map(|_| fleet::noop(300)).collect();
    for t in &first {
        fleet.publish(&q, t).await;
    }
    fleet.wait_started(&first[0].task_id).await;
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    let second: Vec<_> = (0..10).map(|_| fleet::noop(0)).collect();
    fleet.publish_fresh(&q, &second).await;
    fleet.wait_all_succeeded(&first).await;
    fleet.wait_all_succeeded(&second).await;
    for t in first.iter().chain(&second) {
        assert_eq!(
            fleet.task_field(&t.task_id, "runs").await.as_deref(),
            Some("1"),
            "task {} ran twice",
            t.task_id
        );
    }
    fleet.cleanup().await;
}

/// A redis-server of this test on its own port; killed on drop.
struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        fleet::wait_until("redis-server", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        OwnRedis { child }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_task_and_runs_none_twice() {
    let _turn = RESTARTS.lock().await;
    let installed = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !services::available("redis-server", installed, "apt-get install -y redis-server") {
        return;
    }
    let port = services::free_port_block(1);
    let redis = OwnRedis::start(port);
    let fleet = Fleet::with_redis(&format!("redis://127.0.0.1:{port}/")).await;
    let _a = fleet.start(&WorkerSpec::new("a", &["p"]));
    let _b = fleet.start(&WorkerSpec::new("b", &["p"]));
    let q = fleet.pool_queue("p");
    let first: Vec<_> = (0..20).map(|_| fleet::noop(500)).collect();
    for t in &first {
        fleet.publish(&q, t).await;
    }
    fleet.wait_started(&first[0].task_id).await;
    drop(redis);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second: Vec<_> = (0..10).map(|_| fleet::noop(0)).collect();
    for t in &second {
        fleet.publish(&q, t).await;
    }
    let _redis = OwnRedis::start(port);
    // Redis lost everything (no persistence): assert on the events, which the workers publish
    // after recording each result.
    for t in first.iter().chain(&second) {
        let e = fleet.wait_final(&t.task_id).await;
        assert!(
            matches!(e.status, freezer_contracts::EventStatus::Succeeded { .. }),
            "{e:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in first.iter().chain(&second) {
        let events = fleet.events_of(&t.task_id);
        let started = events
            .iter()
            .filter(|e| matches!(e.status, freezer_contracts::EventStatus::Started))
            .count();
        assert_eq!(
            started, 1,
            "task {} started {started} times: {events:?}",
            t.task_id
        );
        assert!(events
            .iter()
            .filter(|e| e.status.is_final())
            .all(|e| matches!(e.status, freezer_contracts::EventStatus::Succeeded { .. })));
    }
    fleet.cleanup().await;
}
