//! Fleet benchmark (issue #5): N noop tasks through W workers on loopback, measuring tasks per
//! second and publish-to-start latency (p50, p99). Run through `bench/fleet.sh`.
//!
//! Two phases on the same fleet: a burst (every task published at once: throughput, and the
//! latency a backlog causes) and a paced run (tasks published at a fixed rate below capacity:
//! the fleet's own publish-to-start overhead). Latency is measured on this machine's clock from
//! just before publishing to the arrival of the task's `started` event.

use freezer_contracts::{EventStatus, TaskId};
use freezer_e2e::fleet::{self, Fleet, WorkerSpec};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn phase(fleet: &Fleet, name: &str, n: usize, rate: Option<f64>) {
    let q = fleet.pool_queue("bench");
    let tasks: Vec<_> = (0..n).map(|_| fleet::noop(0)).collect();
    let mut published: HashMap<TaskId, Instant> = HashMap::new();
    let start = Instant::now();
    match rate {
        Some(r) => {
            for (i, t) in tasks.iter().enumerate() {
                let due = start + Duration::from_secs_f64(i as f64 / r);
                tokio::time::sleep_until(due.into()).await;
                published.insert(t.task_id.clone(), Instant::now());
                fleet.publish(&q, t).await;
            }
        }
        None => {
            // As fast as the broker confirms: 100 publishes in flight at a time.
            for chunk in tasks.chunks(100) {
                let now = Instant::now();
                for t in chunk {
                    published.insert(t.task_id.clone(), now);
                }
                futures_util::future::join_all(chunk.iter().map(|t| fleet.publish(&q, t))).await;
            }
        }
    }
    let end = Instant::now() + Duration::from_secs(600);
    let mut started: HashMap<TaskId, Instant> = HashMap::new();
    let mut finished = 0;
    let mut seen = 0;
    while finished < n {
        assert!(
            Instant::now() < end,
            "{name}: only {finished}/{n} tasks finished"
        );
        let events = fleet.events_timed();
        for (at, e) in &events[seen..] {
            let Some(id) = &e.task_id else { continue };
            if !published.contains_key(id) {
                continue;
            }
            match e.status {
                EventStatus::Started => {
                    started.entry(id.clone()).or_insert(*at);
                }
                EventStatus::Succeeded { .. } => finished += 1,
                _ => panic!("{name}: unexpected event {e:?}"),
            }
        }
        seen = events.len();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let last = fleet
        .events_timed()
        .iter()
        .filter(|(_, e)| {
            e.task_id
                .as_ref()
                .is_some_and(|id| published.contains_key(id))
        })
        .map(|(at, _)| *at)
        .max()
        .unwrap_or(start);
    let elapsed = (last - start).as_secs_f64();
    let mut lat: Vec<f64> = started
        .iter()
        .map(|(id, t)| (*t - published[id]).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name}: {n} tasks in {elapsed:.2} s = {:.0} tasks/s; publish-to-start p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        n as f64 / elapsed,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env("BENCH_TASKS", 2000) as usize;
    let workers = env("BENCH_WORKERS", 4);
    let concurrency = env("BENCH_CONCURRENCY", 32) as usize;
    let rate = env("BENCH_PACED_RATE", 500) as f64;
    let fleet = Fleet::new().await;
    let procs: Vec<_> = (0..workers)
        .map(|i| {
            let mut spec = WorkerSpec::new(&format!("w{i}"), &["bench"]);
            spec.concurrency = concurrency;
            fleet.start(&spec)
        })
        .collect();
    println!("{workers} workers x {concurrency} slots, {n} noop tasks per phase");
    phase(&fleet, "warm-up", 100, None).await;
    phase(&fleet, "burst", n, None).await;
    phase(&fleet, &format!("paced {rate}/s"), n, Some(rate)).await;
    drop(procs);
    fleet.cleanup().await;
}
