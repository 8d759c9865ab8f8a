//! The daemon's `/metrics` endpoint: every family of ARCHITECTURE.md §6 exists at 0 from start-up, and a
//! real Prometheus (the Debian package) scraping a worker sees a backup's counters move.

use freezer_contracts::{BackupSpec, EventStatus, TaskSpec};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use freezer_e2e::services;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `GET path` on `addr`; the body.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_a_backup_move_the_counters() {
    let installed = Command::new("prometheus").arg("--version").output().is_ok();
    if !services::available("prometheus", installed, "apt-get install -y prometheus") {
        return;
    }
    let base = services::free_port_block(2);
    let metrics = format!("127.0.0.1:{base}");
    let prom = format!("127.0.0.1:{}", base + 1);
    let fleet = Fleet::new().await;
    let mut spec = WorkerSpec::new("a", &[]);
    spec.metrics_addr = Some(metrics.clone());
    let _w = fleet.start(&spec);

    // Registered at 0 before any task.
    let text = http_get(&metrics, "/metrics").expect("/metrics answers");
    for line in [
        "freezer_task_finished_total{kind=\"backup\",result=\"succeeded\"} 0",
        "freezer_task_finished_total{kind=\"unknown\",result=\"rejected\"} 0",
        "freezer_task_read_bytes_total{kind=\"backup\"} 0",
        "freezer_task_stored_bytes_total{kind=\"backup\"} 0",
        "freezer_task_duration_seconds_count{kind=\"restore\"} 0",
        "freezer_task_in_flight 0",
        "freezer_lock_lost_total 0",
        "freezer_lock_wait_seconds_count 0",
        "freezer_session_wait_seconds_count 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("freezer_build_info{version="), "{text}");
    assert!(text.contains("freezer_fleet_workers_alive"), "{text}");
    assert!(text.contains("freezer_storage_requests_total{"), "{text}");
    assert!(http_get(&metrics, "/other").is_none());

    let data = fleet.dir.join("prom");
    std::fs::create_dir_all(&data).unwrap();
    let config = fleet.dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: freezer\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(fleet.dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus"),
    );
    let query = |q: &str| -> Option<f64> {
        let body = http_get(&prom, &format!("/api/v1/query?query={}", encode(q)))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let wait_for = |q: &str, ok: &dyn Fn(f64) -> bool| {
        let end = Instant::now() + fleet::PATIENCE;
        loop {
            if query(q).is_some_and(ok) {
                return;
            }
            assert!(Instant::now() < end, "Prometheus never saw {q}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    // Scraped at 0 first, so the move is an increase Prometheus can see.
    wait_for(
        "freezer_task_finished_total{kind=\"backup\",result=\"succeeded\"}",
        &|v| v == 0.0,
    );

    let src = fleet.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), freezer_e2e::random_bytes(3, 200_000)).unwrap();
    let spec: BackupSpec = serde_json::from_value(json!({
        "path_to_backup": src, "backup_name": "m", "container": fleet.store(),
        "storage": ["local1"], "hostname": "test-host",
    }))
    .unwrap();
    let t = fleet::task(TaskSpec::Backup(spec));
    fleet.publish(&fleet.node_queue("a"), &t).await;
    let e = fleet.wait_final(&t.task_id).await;
    assert!(matches!(e.status, EventStatus::Succeeded { .. }), "{e:?}");

    wait_for(
        "freezer_task_finished_total{kind=\"backup\",result=\"succeeded\"}",
        &|v| v == 1.0,
    );
    wait_for("freezer_task_read_bytes_total{kind=\"backup\"}", &|v| {
        v >= 200_000.0
    });
    wait_for("freezer_task_stored_bytes_total{kind=\"backup\"}", &|v| {
        v > 0.0
    });
    wait_for(
        "freezer_task_duration_seconds_count{kind=\"backup\"}",
        &|v| v == 1.0,
    );
    // The storage's own request counters (storage::metrics) move too.
    wait_for("sum(freezer_storage_requests_total{status=\"ok\"})", &|v| {
        v > 0.0
    });
    wait_for(
        "freezer_job_last_success_timestamp_seconds{job_id=\"job-test\"}",
        &|v| v > 1.7e9,
    );
    wait_for(
        "increase(freezer_task_finished_total{kind=\"backup\",result=\"succeeded\"}[1m])",
        &|v| v > 0.0,
    );
    fleet.cleanup().await;
}
