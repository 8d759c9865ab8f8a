//! `freezer-dispatcher serve` as operators run it (issue #6): job files in a watched directory,
//! schedules firing on time, edits and broken files picked up without a restart, and two
//! dispatchers where only the leader schedules and the other takes over when it dies, without a
//! run published twice. Real RabbitMQ, Redis and `freezer-worker run` processes.

use freezer_contracts::{Event, EventStatus};
use freezer_e2e::fleet::{wait_until, Fleet, WorkerSpec, AMQP_URL};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `freezer-dispatcher serve`; killed when dropped.
struct Dispatcher {
    child: Child,
    id: String,
    log: PathBuf,
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dispatcher {
    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Writes the configuration of dispatcher `id` (jobs in `jobs`, lease 2 s) and starts it.
fn start_dispatcher(fleet: &Fleet, id: &str, jobs: &Path) -> Dispatcher {
    start_dispatcher_with(fleet, id, jobs, "")
}

/// Same, with `extra` lines in its `[dispatcher]` section.
fn start_dispatcher_with(fleet: &Fleet, id: &str, jobs: &Path, extra: &str) -> Dispatcher {
    let config = fleet.dir.join(format!("{id}.toml"));
    let log = fleet.dir.join(format!("{id}.log"));
    fs::write(
        &config,
        format!(
            "[dispatcher]\nid = {id:?}\namqp_url = {AMQP_URL:?}\nredis_url = {redis:?}\n\
             key_prefix = {prefix:?}\njobs_dir = {jobs:?}\nleader_lease_ms = 2000\n\
             events_queue = {queue:?}\n{extra}",
            redis = fleet.redis_url,
            prefix = fleet.prefix,
            jobs = jobs.display().to_string(),
            queue = format!("test.dispatcher.{}", fleet.id),
        ),
    )
    .unwrap();
    let mut cmd = freezer_e2e::dispatcher();
    cmd.arg("--config").arg(&config).arg("serve");
    cmd.env("FREEZER_LOG", "info,lapin=warn");
    cmd.stdout(Stdio::null());
    cmd.stderr(fs::File::create(&log).unwrap());
    Dispatcher {
        child: cmd.spawn().expect("spawn freezer-dispatcher serve"),
        id: id.into(),
        log,
    }
}

/// A job file with one job `id` on pool `pool` firing every `every` with a noop action.
fn tick_job(id: &str, pool: &str, every: &str, sleep_ms: u64) -> String {
    format!(
        "[[job]]\nid = {id:?}\npool = {pool:?}\nschedule = {{ every = {every:?} }}\n\n\
         [[job.action]]\nkind = \"noop\"\nsleep_ms = {sleep_ms}\n"
    )
}

/// Started events of job `job`, by run id (fire time in unix seconds) -> how many tasks started.
fn runs_of(events: &[Event], job: &str) -> BTreeMap<i64, usize> {
    let mut runs = BTreeMap::new();
    for e in events {
        if e.job_id.as_deref() != Some(job) || !matches!(e.status, EventStatus::Started) {
            continue;
        }
        let run = e.run_id.as_deref().unwrap_or_default();
        let fire: i64 = run
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .expect("run id <job>.<unix>");
        *runs.entry(fire).or_default() += 1;
    }
    runs
}

/// `GET /metrics` of a dispatcher.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_on_time_and_follow_edits_of_the_job_files() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("w", &["p"]));
    let jobs = fleet.dir.join("jobs.d");
    fs::create_dir_all(&jobs).unwrap();
    let job = format!("tick-{}", fleet.id);
    fs::write(
        jobs.join("tick.toml"),
        tick_job(&job, &fleet.name("p"), "2s", 0),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = start_dispatcher_with(
        &fleet,
        "d1",
        &jobs,
        &format!("metrics_addr = \"127.0.0.1:{port}\"\n"),
    );

    // Every 2 s, aligned on the epoch: consecutive fire times 2 s apart, each run once.
    wait_until("three runs", Duration::from_secs(30), || {
        runs_of(&fleet.events(), &job).len() >= 3
    });
    let runs = runs_of(&fleet.events(), &job);
    assert!(
        runs.values().all(|&n| n == 1),
        "a run started twice: {runs:?}"
    );
    let fires: Vec<i64> = runs.keys().copied().collect();
    assert!(fires.iter().all(|f| f % 2 == 0), "{fires:?}");

    // Its metrics: leading, noop tasks published, the job's runs and last success, lag.
    let metrics = scrape(port);
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} in:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("freezer_dispatcher_leader "), 1.0);
    assert!(value("freezer_dispatcher_tasks_published_total{kind=\"noop\"}") >= 2.0);
    assert!(
        value(&format!(
            "freezer_job_runs_total{{job_id=\"{job}\",result=\"succeeded\"}}"
        )) >= 1.0
    );
    assert!(
        value(&format!(
            "freezer_job_last_success_timestamp_seconds{{job_id=\"{job}\"}}"
        )) > 1.7e9
    );
    assert!(value("freezer_dispatcher_schedule_lag_seconds_count") >= 2.0);
    assert!(metrics.contains("freezer_fleet_workers_alive"), "{metrics}");
    assert!(fires.windows(2).all(|w| w[1] - w[0] == 2), "{fires:?}");

    // Edit: every 3 s. New runs follow the new rule without a restart.
    fs::write(
        jobs.join("tick.toml"),
        tick_job(&job, &fleet.name("p"), "3s", 0),
    )
    .unwrap();
    let edited = Instant::now();
    // A broken file next to it is reported and does not stop the good one.
    fs::write(
        jobs.join("broken.toml"),
        "[[job]]\nid = \"x\"\nschedule = { every = 5 }\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let runs = runs_of(&fleet.events(), &job);
    let later: Vec<i64> = runs
        .keys()
        .copied()
        .filter(|f| *f > fires.last().unwrap() + 3)
        .collect();
    assert!(
        later.len() >= 2,
        "no runs after the edit: {runs:?} (edited {edited:?})"
    );
    assert!(later.iter().all(|f| f % 3 == 0), "{later:?}");
    assert!(
        runs.values().all(|&n| n == 1),
        "a run started twice: {runs:?}"
    );
    assert!(
        d.log_text().contains("broken.toml"),
        "the broken file is not reported: {}",
        d.log_text()
    );
    let out = freezer_e2e::dispatcher()
        .arg("--config")
        .arg(fleet.dir.join("d1.toml"))
        .args(["jobs", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&job) && text.contains("broken.toml"),
        "{text}"
    );
    drop(d);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_dispatcher_takes_over_and_no_run_is_published_twice() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("w", &["p"]));
    let jobs = fleet.dir.join("jobs.d");
    fs::create_dir_all(&jobs).unwrap();
    let job = format!("tick-{}", fleet.id);
    fs::write(
        jobs.join("tick.toml"),
        tick_job(&job, &fleet.name("p"), "1s", 0),
    )
    .unwrap();
    let mut ds: HashMap<String, Dispatcher> = ["d1", "d2"]
        .iter()
        .map(|id| (id.to_string(), start_dispatcher(&fleet, id, &jobs)))
        .collect();
    wait_until("runs", Duration::from_secs(30), || {
        runs_of(&fleet.events(), &job).len() >= 3
    });
    let mut c = fleet.redis().await;
    let leader: String = redis::cmd("GET")
        .arg(fleet.keys().leader())
        .query_async(&mut c)
        .await
        .unwrap();
    let mut dead = ds.remove(&leader).expect("the leader is one of ours");
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let killed_at = time::OffsetDateTime::now_utc().unix_timestamp();
    drop(dead);
    // The standby takes over within the lease (2 s) and goes on; let it run a while.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let runs = runs_of(&fleet.events(), &job);
    assert!(
        runs.values().all(|&n| n == 1),
        "a run started twice: {runs:?}"
    );
    let after: Vec<i64> = runs.keys().copied().filter(|f| *f > killed_at).collect();
    assert!(after.len() >= 3, "the standby did not take over: {runs:?}");
    let fires: Vec<i64> = runs.keys().copied().collect();
    let gap = fires.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    eprintln!("failover: largest gap between runs {gap} s (lease 2 s)");
    assert!(gap <= 5, "runs stopped for {gap} s: {fires:?}");
    let standby = ds.values().next().unwrap();
    let now_leader: String = redis::cmd("GET")
        .arg(fleet.keys().leader())
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(now_leader, standby.id);
    drop(ds);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_job_runs_with_retries_skips_and_mandatory_actions() {
    let fleet = Fleet::new().await;
    let _w = fleet.start(&WorkerSpec::new("w", &[]));
    let jobs = fleet.dir.join("jobs.d");
    fs::create_dir_all(&jobs).unwrap();
    let job = format!("ondemand-{}", fleet.id);
    let missing = fleet.dir.join("no-such-dir");
    fs::write(
        jobs.join("ondemand.toml"),
        format!(
            "[[job]]\nid = {job:?}\nnode = {node:?}\n\n\
             [[job.action]]\nkind = \"backup\"\npath_to_backup = {missing:?}\nbackup_name = \"m\"\n\
             storage = [\"local1\"]\nmax_retries = 1\nretry_interval = \"1s\"\n\n\
             [[job.action]]\nkind = \"noop\"\n\n\
             [[job.action]]\nkind = \"noop\"\nmandatory = true\n",
            node = fleet.name("w"),
            missing = missing.display().to_string(),
        ),
    )
    .unwrap();
    let _d = start_dispatcher(&fleet, "d1", &jobs);
    let config = fleet.dir.join("d1.toml");
    let cli = |args: &[&str]| {
        let out = freezer_e2e::dispatcher()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // An unknown job is a usage error.
    let (code, _, err) = cli(&["publish", "--job", "nope"]);
    assert_eq!(code, Some(2), "{err}");
    // The run: the backup fails twice (one retry), the plain noop is skipped, the mandatory one
    // runs; the run fails.
    let (code, out, err) = cli(&["publish", "--job", &job, "--wait", "--timeout", "90s"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let run_id = out.lines().next().unwrap().trim().to_string();
    assert!(run_id.starts_with(&format!("{job}.manual.")), "{out}");
    let (code, out, err) = cli(&["status", &run_id, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "failed", "{v}");
    let actions = v["run"]["actions"].as_array().unwrap();
    let states: Vec<&str> = actions
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["failed", "skipped", "succeeded"], "{v}");
    assert_eq!(actions[0]["attempts"], 2, "{v}");
    // The same from the events: two backup attempts, one noop.
    let events = fleet.events();
    let of_run: Vec<&Event> = events
        .iter()
        .filter(|e| e.run_id.as_deref() == Some(run_id.as_str()))
        .collect();
    let failed_backups = of_run
        .iter()
        .filter(|e| matches!(e.status, EventStatus::Failed { exit_code: 10, .. }))
        .count();
    let noops = of_run
        .iter()
        .filter(|e| matches!(e.status, EventStatus::Succeeded { .. }))
        .count();
    assert_eq!((failed_backups, noops), (2, 1), "{of_run:?}");
    // The job's history has the run.
    let (_, out, _) = cli(&["status", &job, "--json"]);
    assert!(out.contains(&run_id), "{out}");
    // `jobs` lists it on demand, with its last result.
    let (code, out, err) = cli(&["jobs", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &v["jobs"][0];
    assert_eq!(row["id"], job.as_str(), "{v}");
    assert!(
        row["last_result"].as_str().unwrap().starts_with("failed"),
        "{v}"
    );
    let (_, out, _) = cli(&["jobs"]);
    assert!(out.contains("RESULT") && out.contains("on demand"), "{out}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_job_starts_its_five_members_together() {
    let fleet = Fleet::new().await;
    let names = ["s1", "s2", "s3", "s4", "s5"];
    let _workers: Vec<_> = names
        .iter()
        .map(|n| {
            let mut spec = WorkerSpec::new(n, &[]);
            spec.concurrency = 1;
            fleet.start(&spec)
        })
        .collect();
    let jobs = fleet.dir.join("jobs.d");
    fs::create_dir_all(&jobs).unwrap();
    let job = format!("together-{}", fleet.id);
    let nodes: Vec<String> = names
        .iter()
        .map(|n| format!("{:?}", fleet.name(n)))
        .collect();
    fs::write(
        jobs.join("session.toml"),
        format!(
            "[[job]]\nid = {job:?}\n\n[job.session]\nnodes = [{}]\nhold_off = \"30s\"\n\
             policy = \"all-or-nothing\"\n\n[[job.action]]\nkind = \"noop\"\nsleep_ms = 200\n",
            nodes.join(", ")
        ),
    )
    .unwrap();
    let _d = start_dispatcher(&fleet, "d1", &jobs);
    let out = freezer_e2e::dispatcher()
        .arg("--config")
        .arg(fleet.dir.join("d1.toml"))
        .args(["publish", "--job", &job, "--wait", "--timeout", "90s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_id = text.lines().next().unwrap().trim().to_string();
    let starts: Vec<i128> = fleet
        .events()
        .iter()
        .filter(|e| e.run_id.as_deref() == Some(run_id.as_str()))
        .filter(|e| matches!(e.status, EventStatus::Started))
        .map(|e| e.at.as_offset_date_time().unix_timestamp_nanos())
        .collect();
    assert_eq!(starts.len(), 5, "{starts:?}");
    let spread_ms = (starts.iter().max().unwrap() - starts.iter().min().unwrap()) as f64 / 1e6;
    eprintln!("session of 5 members through the dispatcher: start spread {spread_ms:.1} ms");
    assert!(spread_ms < 100.0, "members started {spread_ms} ms apart");
    fleet.cleanup().await;
}
