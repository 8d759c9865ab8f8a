//! The leader lease and the scheduler against the real Redis of the machine: failover, no run sent
//! twice, job files edited or broken while running, missed runs coalescing.
//!
//! Each test uses its own key prefix (`test-<random>:`) and deletes its keys at the end.

use freezer_contracts::UtcTime;
use freezer_dispatcher::config::DispatcherSection;
use freezer_dispatcher::jobs::dir::watch_dir;
use freezer_dispatcher::jobs::{DueRun, JobSet};
use freezer_dispatcher::leader;
use freezer_dispatcher::scheduler::{self, SchedulerStats};
use freezer_fleet::Keys;
use redis::aio::ConnectionManager;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

const REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// One test's Redis prefix, connection and jobs directory.
struct Env {
    prefix: String,
    redis: ConnectionManager,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let mut b = [0u8; 5];
        getrandom::fill(&mut b).unwrap();
        let prefix = format!("test-{}:", hex::encode(b));
        let redis = redis::Client::open(REDIS_URL)
            .unwrap()
            .get_connection_manager()
            .await
            .expect("Redis at 127.0.0.1:6379");
        Env {
            prefix,
            redis,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cfg(&self) -> Arc<DispatcherSection> {
        Arc::new(DispatcherSection {
            key_prefix: self.prefix.clone(),
            ..Default::default()
        })
    }

    fn write(&self, name: &str, text: &str) {
        write_atomically(&self.dir.path().join(name), text);
    }

    /// Deletes every key of the test.
    async fn cleanup(mut self) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut self.redis)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut self.redis)
                .await
                .unwrap();
        }
    }
}

/// Writes a file the way editors and configuration tools do (a rename), so the watcher never
/// reads half of it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn every_job(id: &str, every: &str) -> String {
    format!(
        "[[job]]\nid = \"{id}\"\nnode = \"n1\"\nschedule = {{ every = \"{every}\" }}\n\
         [[job.action]]\nkind = \"noop\"\n"
    )
}

/// A leader elector and a scheduler, as one dispatcher runs them.
struct Instance {
    leader: watch::Receiver<bool>,
    elector: JoinHandle<()>,
    scheduler: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl Instance {
    fn start(
        env: &Env,
        id: &str,
        lease: Duration,
        jobs: watch::Receiver<Arc<JobSet>>,
        tx: mpsc::Sender<DueRun>,
    ) -> Instance {
        let (stop, stopped) = oneshot::channel::<()>();
        let (leader, elector) = leader::spawn(env.redis.clone(), &env.prefix, id, lease, async {
            let _ = stopped.await;
        });
        let scheduler = tokio::spawn(scheduler::run(
            env.cfg(),
            env.redis.clone(),
            jobs,
            leader.clone(),
            tx,
            Arc::new(SchedulerStats::default()),
            std::future::pending(),
        ));
        Instance {
            leader,
            elector,
            scheduler,
            stop: Some(stop),
        }
    }

    /// A crash: both tasks vanish, the lease stays in Redis until it expires.
    fn kill(&self) {
        self.scheduler.abort();
        self.elector.abort();
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}

/// Collects every DueRun sent on the channel.
fn collect(mut rx: mpsc::Receiver<DueRun>) -> Arc<Mutex<Vec<(Instant, DueRun)>>> {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let r = runs.clone();
    tokio::spawn(async move {
        while let Some(run) = rx.recv().await {
            r.lock().unwrap().push((Instant::now(), run));
        }
    });
    runs
}

fn fire_seconds(runs: &[(Instant, DueRun)], job: &str) -> Vec<i64> {
    runs.iter()
        .filter(|(_, r)| r.job.id == job)
        .map(|(_, r)| r.fire_time.unix_seconds())
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_within_the_lease_and_two_leaders_never_coexist() {
    let env = Env::new().await;
    let lease = Duration::from_millis(1500);
    let (jobs, _watcher) = watch_dir(env.dir.path().to_path_buf(), Duration::from_secs(1));
    let (tx, _rx) = mpsc::channel(16);
    let a = Instance::start(&env, "disp-a", lease, jobs.clone(), tx.clone());
    let b = Instance::start(&env, "disp-b", lease, jobs.clone(), tx.clone());
    let (la, lb) = (a.leader.clone(), b.leader.clone());
    let both = Arc::new(Mutex::new(0u32));
    let sampler = {
        let both = both.clone();
        tokio::spawn(async move {
            loop {
                if *la.borrow() && *lb.borrow() {
                    *both.lock().unwrap() += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    wait_for("a leader", Duration::from_secs(10), || {
        a.is_leader() || b.is_leader()
    })
    .await;
    let (leader, standby) = if a.is_leader() { (&a, &b) } else { (&b, &a) };
    let mut value: String = redis::cmd("GET")
        .arg(Keys::new(env.prefix.as_str()).leader())
        .query_async(&mut env.redis.clone())
        .await
        .unwrap();
    assert_eq!(value, if a.is_leader() { "disp-a" } else { "disp-b" });
    // The leader keeps its lease well past the TTL (renewals work).
    tokio::time::sleep(lease * 2).await;
    assert!(leader.is_leader() && !standby.is_leader());

    // Crash the leader: its flag drops at once; the standby takes over within the lease.
    leader.kill();
    let killed = Instant::now();
    // Aborting is asynchronous; once the task is gone, its flag is down.
    wait_for(
        "the dead elector's flag to drop",
        Duration::from_secs(1),
        || !leader.is_leader(),
    )
    .await;
    wait_for("the takeover", lease * 3, || standby.is_leader()).await;
    let takeover = killed.elapsed();
    println!("takeover after a crash: {takeover:?} (lease {lease:?})");
    assert!(takeover <= lease + leader::retry_interval(lease) + Duration::from_millis(500));

    // A clean shutdown releases the lease: a third instance takes over at its next try.
    let c = Instance::start(&env, "disp-c", lease, jobs.clone(), tx.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.is_leader());
    let mut standby = if std::ptr::eq(standby, &a) { a } else { b };
    standby.stop.take().unwrap().send(()).unwrap();
    let stopped = Instant::now();
    (&mut standby.elector).await.unwrap();
    assert!(!standby.is_leader());
    wait_for("the takeover after a release", lease * 3, || c.is_leader()).await;
    let after_release = stopped.elapsed();
    println!("takeover after a release: {after_release:?}");
    assert!(after_release < lease, "released, not expired");
    value = redis::cmd("GET")
        .arg(Keys::new(env.prefix.as_str()).leader())
        .query_async(&mut env.redis.clone())
        .await
        .unwrap();
    assert_eq!(value, "disp-c");

    sampler.abort();
    assert_eq!(*both.lock().unwrap(), 0, "two leaders were seen at once");
    c.kill();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_mid_schedule_neither_repeats_nor_loses_more_than_the_takeover() {
    let env = Env::new().await;
    env.write("tick.toml", &every_job("tick", "1s"));
    let lease = Duration::from_millis(1500);
    let (jobs, _watcher) = watch_dir(env.dir.path().to_path_buf(), Duration::from_secs(1));
    let (tx, rx) = mpsc::channel(64);
    let runs = collect(rx);
    let a = Instance::start(&env, "disp-a", lease, jobs.clone(), tx.clone());
    let b = Instance::start(&env, "disp-b", lease, jobs.clone(), tx.clone());
    wait_for("a leader", Duration::from_secs(10), || {
        a.is_leader() || b.is_leader()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (leader, standby) = if a.is_leader() { (&a, &b) } else { (&b, &a) };
    leader.kill();
    let killed = Instant::now();
    wait_for("the takeover", lease * 3, || standby.is_leader()).await;
    let takeover = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(takeover)).await;

    let runs = runs.lock().unwrap().clone();
    let fires = fire_seconds(&runs, "tick");
    let unique: HashSet<_> = fires.iter().collect();
    assert_eq!(
        unique.len(),
        fires.len(),
        "a fire time was sent twice: {fires:?}"
    );
    let mut sorted = fires.clone();
    sorted.sort();
    assert_eq!(sorted, fires, "fire times in order");
    let max_gap = sorted.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    println!("fire times {fires:?}, largest gap {max_gap} s, takeover {takeover:?}");
    // The new leader fires the latest second as soon as it takes over (coalescing); the old one
    // fired the second before it died, or the one before that if it died just as a second began.
    assert!(
        max_gap as f64 <= takeover.as_secs_f64() + 2.0,
        "gap {max_gap} s for a takeover of {takeover:?}"
    );
    assert!(takeover <= lease + leader::retry_interval(lease) + Duration::from_millis(500));
    assert!(fires.len() >= 4, "{fires:?}");
    for (_, run) in &runs {
        assert_eq!(run.run_id, format!("tick.{}", run.fire_time.unix_seconds()));
    }
    // Lag: each run is sent soon after its fire time (sleeps end at the fire time).
    a.kill();
    b.kill();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_alone_keeps_two_acting_schedulers_from_sending_a_run_twice() {
    let env = Env::new().await;
    env.write("tick.toml", &every_job("tick", "1s"));
    let (jobs, _watcher) = watch_dir(env.dir.path().to_path_buf(), Duration::from_secs(1));
    let (tx, rx) = mpsc::channel(64);
    let runs = collect(rx);
    // Both believe they lead (what the lease prevents): the compare-and-set still decides.
    let (_l, leader) = watch::channel(true);
    let stats: Vec<Arc<SchedulerStats>> = (0..2).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = stats
        .iter()
        .map(|s| {
            tokio::spawn(scheduler::run(
                env.cfg(),
                env.redis.clone(),
                jobs.clone(),
                leader.clone(),
                tx.clone(),
                s.clone(),
                std::future::pending(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let fires = fire_seconds(&runs.lock().unwrap(), "tick");
    let unique: HashSet<_> = fires.iter().collect();
    assert_eq!(unique.len(), fires.len(), "{fires:?}");
    assert!(fires.len() >= 3, "{fires:?}");
    let sent: u64 = stats.iter().map(|s| s.runs_total()).sum();
    assert_eq!(sent as usize, fires.len());
    println!(
        "runs {}, lost claims {}, last lag {} s",
        sent,
        stats.iter().map(|s| s.lost_claims_total()).sum::<u64>(),
        stats[0].last_lag_seconds().max(stats[1].last_lag_seconds())
    );
    assert!(stats.iter().all(|s| s.last_lag_seconds() < 1.0));
    tasks.iter().for_each(JoinHandle::abort);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_job_file_changes_what_fires_without_a_restart() {
    let env = Env::new().await;
    env.write("tick.toml", &every_job("tick", "1s"));
    let (jobs, _watcher) = watch_dir(env.dir.path().to_path_buf(), Duration::from_millis(100));
    let (tx, rx) = mpsc::channel(64);
    let runs = collect(rx);
    let a = Instance::start(
        &env,
        "disp-a",
        Duration::from_millis(1500),
        jobs.clone(),
        tx,
    );
    wait_for("two runs a second apart", Duration::from_secs(10), || {
        fire_seconds(&runs.lock().unwrap(), "tick").len() >= 2
    })
    .await;
    env.write("tick.toml", &every_job("tick", "3s"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    runs.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let fires = fire_seconds(&runs.lock().unwrap(), "tick");
    println!("after the edit: {fires:?}");
    assert!((2..=3).contains(&fires.len()), "{fires:?}");
    assert!(
        fires.iter().all(|f| f % 3 == 0),
        "aligned on 3 s: {fires:?}"
    );
    a.kill();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_reported_while_other_jobs_keep_firing() {
    let env = Env::new().await;
    env.write("good.toml", &every_job("good", "1s"));
    env.write("edited.toml", &every_job("edited", "1s"));
    env.write("broken.toml", "[[job]]\nid = \"broken\"\nnode = \n");
    let (jobs, _watcher) = watch_dir(env.dir.path().to_path_buf(), Duration::from_millis(100));
    {
        let set = jobs.borrow();
        assert_eq!(set.jobs.keys().collect::<Vec<_>>(), ["edited", "good"]);
        assert_eq!(set.errors.len(), 1);
        assert!(set.errors[0].file.ends_with("broken.toml"));
    }
    let (tx, rx) = mpsc::channel(64);
    let runs = collect(rx);
    let a = Instance::start(
        &env,
        "disp-a",
        Duration::from_millis(1500),
        jobs.clone(),
        tx,
    );
    // Break a file that was good: it is reported, and its job goes on with the last good definition.
    env.write("edited.toml", &every_job("edited", "one second"));
    let mut jobs2 = jobs.clone();
    wait_for("the edit to be seen", Duration::from_secs(10), || {
        jobs2.borrow_and_update().errors.len() == 2
    })
    .await;
    let errors: Vec<String> = jobs.borrow().errors.iter().map(|e| e.to_string()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("edited.toml: job \"edited\": schedule.every")),
        "{errors:?}"
    );
    let seen = Instant::now();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let runs = runs.lock().unwrap().clone();
    for job in ["good", "edited"] {
        let after: Vec<_> = runs
            .iter()
            .filter(|(t, r)| *t > seen && r.job.id == job)
            .collect();
        assert!(after.len() >= 2, "{job} kept firing: {}", after.len());
    }
    assert!(runs.iter().all(|(_, r)| r.job.id != "broken"));
    a.kill();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_missed_while_down_coalesce_into_one() {
    let env = Env::new().await;
    env.write("hourly.toml", &every_job("hourly", "1h"));
    // Last fired three days ago: 72 runs were missed.
    let now = freezer_fleet::clock::now().unix_seconds();
    let _: () = redis::cmd("SET")
        .arg(Keys::new(env.prefix.as_str()).last_fired("hourly"))
        .arg(now - 3 * 86_400)
        .query_async(&mut env.redis.clone())
        .await
        .unwrap();
    let (jobs, _watcher) = watch_dir(env.dir.path().to_path_buf(), Duration::from_secs(1));
    let (tx, rx) = mpsc::channel(64);
    let runs = collect(rx);
    let a = Instance::start(
        &env,
        "disp-a",
        Duration::from_millis(1500),
        jobs.clone(),
        tx,
    );
    wait_for("the coalesced run", Duration::from_secs(10), || {
        !runs.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fires = fire_seconds(&runs.lock().unwrap(), "hourly");
    let now = freezer_fleet::clock::now().unix_seconds();
    assert_eq!(
        fires,
        [now - now % 3600],
        "exactly one run, the latest missed"
    );
    let stored: i64 = redis::cmd("GET")
        .arg(Keys::new(env.prefix.as_str()).last_fired("hourly"))
        .query_async(&mut env.redis.clone())
        .await
        .unwrap();
    assert_eq!(stored, fires[0]);
    let first = UtcTime::from_unix_seconds(fires[0]).unwrap();
    assert_eq!(
        runs.lock().unwrap()[0].1.run_id,
        format!("hourly.{}", first.unix_seconds())
    );
    a.kill();
    env.cleanup().await;
}

/// A private `redis-server` on a free loopback port, killed when dropped.
struct PrivateRedis {
    child: std::process::Child,
    url: String,
}

impl PrivateRedis {
    /// `None` (the test skips) when `redis-server` is not installed.
    async fn start() -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED: cannot start redis-server ({e})");
                return None;
            }
        };
        let url = format!("redis://127.0.0.1:{port}/");
        let server = PrivateRedis { child, url };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(server)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_steps_down_before_its_lease_could_expire() {
    let Some(server) = PrivateRedis::start().await else {
        return;
    };
    let redis = redis::Client::open(server.url.as_str())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let lease = Duration::from_millis(1500);
    let (flag, _elector) = leader::spawn(redis, "t:", "solo", lease, std::future::pending());
    wait_for("the lease", Duration::from_secs(10), || *flag.borrow()).await;
    tokio::time::sleep(lease).await;
    assert!(*flag.borrow(), "renewals keep the lease");
    // A hung server answers nothing: the leader cannot know whether its lease still runs.
    server.signal("STOP");
    let hung = Instant::now();
    wait_for("the step down", lease * 2, || !*flag.borrow()).await;
    let after = hung.elapsed();
    println!("stepped down {after:?} after Redis hung (lease {lease:?})");
    assert!(after < lease, "stepped down before the lease could expire");
    server.signal("CONT");
    // Once Redis answers again, the lease (expired meanwhile or not) is taken back.
    wait_for("the lease again", lease * 4, || *flag.borrow()).await;
}
