//! The scheduler loop: while this dispatcher is the leader, turns due fire times into [`DueRun`]s
//! for the run engine.
//!
//! Each pass (every [`TICK`] at most, sooner when a fire time comes first) reads every scheduled
//! job's `<prefix>job:<id>:last_fired` (unix seconds of its latest fired run) with one `MGET`,
//! asks [`Schedule::due`] whether a run is due, and claims it with a Lua compare-and-set that
//! advances `last_fired` only if the stored value is still older than the fire time. Only the
//! claim that wins sends the run; so a fire time is sent at most once across all dispatchers, two
//! leaders at once (which the lease prevents anyway), restarts and failovers. Runs missed while no
//! one was leader coalesce into one (see [`crate::jobs::schedule`]).
//!
//! The claim comes before the send: a dispatcher that dies between the two loses that run (at
//! most once), rather than running a backup twice. `last_fired` keys live [`LAST_FIRED_TTL`] after
//! their last run, so the keys of deleted jobs go away.
//!
//! [`SchedulerStats`] records the schedule lag (publish time minus fire time) for the metric
//! `freezer_dispatcher_schedule_lag_seconds`.

use freezer_contracts::UtcTime;
use redis::aio::ConnectionManager;
use redis::Script;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

use crate::config::DispatcherSection;
use crate::jobs::{DueRun, Job, JobSet, Schedule};
use freezer_fleet::clock::now;
use freezer_fleet::keys::LAST_FIRED_TTL;
use freezer_fleet::Keys;

/// Longest the loop sleeps between passes.
pub const TICK: Duration = Duration::from_millis(250);

/// Sets `last_fired` to ARGV[1] only if the stored value is older (or missing): the claim of one
/// fire time, won by one dispatcher only.
const CLAIM: &str = r#"
local v = tonumber(redis.call('GET', KEYS[1]) or '')
if v == nil or v < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"#;

/// The run id of a scheduled run: `<job id>.<fire time as unix seconds>`.
pub fn run_id(job_id: &str, fire_time: UtcTime) -> String {
    format!("{job_id}.{}", fire_time.unix_seconds())
}

/// What the scheduler did, for metrics (read with the accessors; all start at zero).
#[derive(Debug, Default)]
pub struct SchedulerStats {
    last_lag_ms: AtomicU64,
    lag_sum_ms: AtomicU64,
    runs: AtomicU64,
    lost_claims: AtomicU64,
    missed: AtomicU64,
}

impl SchedulerStats {
    /// Seconds between the fire time and the send of the latest run
    /// (`freezer_dispatcher_schedule_lag_seconds`).
    pub fn last_lag_seconds(&self) -> f64 {
        self.last_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Sum of the lags of all runs sent, in seconds (with [`Self::runs_total`], a summary).
    pub fn lag_seconds_sum(&self) -> f64 {
        self.lag_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Runs sent by this dispatcher.
    pub fn runs_total(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Due runs another dispatcher had already claimed.
    pub fn lost_claims_total(&self) -> u64 {
        self.lost_claims.load(Ordering::Relaxed)
    }

    /// One-shot `at` runs found too late to run (reported once each).
    pub fn missed_total(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    fn record_run(&self, lag: Duration) {
        let ms = lag.as_millis() as u64;
        self.last_lag_ms.store(ms, Ordering::Relaxed);
        self.lag_sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.runs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads the `last_fired` of `ids` (absent for jobs that never fired), e.g. for `jobs`.
pub async fn read_last_fired(
    redis: &mut impl redis::aio::ConnectionLike,
    keys: &Keys,
    ids: &[&str],
) -> redis::RedisResult<HashMap<String, UtcTime>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let names: Vec<String> = ids.iter().map(|id| keys.last_fired(id)).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&names).query_async(redis).await?;
    Ok(ids
        .iter()
        .zip(values)
        .filter_map(|(id, v)| {
            let t = UtcTime::from_unix_seconds(v?.parse().ok()?).ok()?;
            Some((id.to_string(), t))
        })
        .collect())
}

/// Runs the scheduler until `shutdown` completes, `tx`'s receiver is dropped or the leader flag's
/// sender is gone. Sends due runs on `tx` only while `leader` says `true`; `jobs` is the current
/// job set (from [`crate::jobs::dir::watch_dir`]). Only `cfg.key_prefix` is used.
pub async fn run(
    cfg: Arc<DispatcherSection>,
    redis: ConnectionManager,
    mut jobs: watch::Receiver<Arc<JobSet>>,
    mut leader: watch::Receiver<bool>,
    tx: mpsc::Sender<DueRun>,
    stats: Arc<SchedulerStats>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut pass = Pass {
        keys: cfg.keys(),
        redis,
        tx,
        stats,
        reported_missed: HashSet::new(),
    };
    let mut jobs_open = true;
    loop {
        if !*leader.borrow_and_update() {
            tokio::select! {
                _ = &mut shutdown => return,
                r = leader.changed() => if r.is_err() { return },
            }
            continue;
        }
        let set = jobs.borrow_and_update().clone();
        let wait = match pass.run(&set, &leader).await {
            Ok(Some(next)) => now().until(next).min(TICK),
            Ok(None) => TICK,
            Err(PassError::Closed) => return,
            Err(PassError::Redis(e)) => {
                tracing::warn!(message = "scheduler pass failed", error = %e);
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
            r = leader.changed() => if r.is_err() { return },
            r = jobs.changed(), if jobs_open => jobs_open = r.is_ok(),
        }
    }
}

enum PassError {
    Closed,
    Redis(redis::RedisError),
}

impl From<redis::RedisError> for PassError {
    fn from(e: redis::RedisError) -> Self {
        PassError::Redis(e)
    }
}

/// One scheduler's state between passes.
struct Pass {
    keys: Keys,
    redis: ConnectionManager,
    tx: mpsc::Sender<DueRun>,
    stats: Arc<SchedulerStats>,
    /// `(job id, at)` of missed one-shot runs already reported.
    reported_missed: HashSet<(String, i64)>,
}

impl Pass {
    /// Sends the due runs of `set`; returns the earliest next fire time.
    async fn run(
        &mut self,
        set: &JobSet,
        leader: &watch::Receiver<bool>,
    ) -> Result<Option<UtcTime>, PassError> {
        let jobs: Vec<(&Arc<Job>, &Schedule)> = set
            .scheduled()
            .filter_map(|j| Some((j, j.schedule.as_ref()?)))
            .collect();
        let ids: Vec<&str> = jobs.iter().map(|(j, _)| j.id.as_str()).collect();
        let last = read_last_fired(&mut self.redis, &self.keys, &ids).await?;
        let now = now();
        let mut next: Option<UtcTime> = None;
        for (job, schedule) in jobs {
            let last_fired = last.get(&job.id).copied();
            if let Some(fire) = schedule.due(last_fired, now) {
                if !*leader.borrow() {
                    return Ok(None);
                }
                self.claim_and_send(job, fire).await?;
            } else if let Some(at) = schedule.missed(last_fired, now) {
                if self
                    .reported_missed
                    .insert((job.id.clone(), at.unix_seconds()))
                {
                    self.stats.missed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        message = "one-shot run found too late, skipped",
                        job_id = %job.id,
                        at = %at
                    );
                }
            }
            if let Some(n) = schedule.next_after(now) {
                next = Some(next.map_or(n, |m| m.min(n)));
            }
        }
        Ok(next)
    }

    async fn claim_and_send(&mut self, job: &Arc<Job>, fire: UtcTime) -> Result<(), PassError> {
        let won: i64 = Script::new(CLAIM)
            .key(self.keys.last_fired(&job.id))
            .arg(fire.unix_seconds())
            .arg(LAST_FIRED_TTL.as_secs())
            .invoke_async(&mut self.redis)
            .await?;
        if won != 1 {
            self.stats.lost_claims.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let run = DueRun {
            job: job.clone(),
            fire_time: fire,
            run_id: run_id(&job.id, fire),
        };
        let lag = fire.until(now());
        tracing::info!(
            message = "run due",
            job_id = %job.id,
            run_id = %run.run_id,
            lag_seconds = lag.as_secs_f64()
        );
        self.tx.send(run).await.map_err(|_| PassError::Closed)?;
        self.stats.record_run(lag);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids() {
        let t = UtcTime::parse("2026-11-25T13:00:00Z").unwrap();
        assert_eq!(run_id("web1-home", t), "web1-home.1795611600");
    }

    #[test]
    fn stats_start_at_zero_and_record_lag() {
        let s = SchedulerStats::default();
        assert_eq!((s.runs_total(), s.last_lag_seconds()), (0, 0.0));
        s.record_run(Duration::from_millis(1500));
        s.record_run(Duration::from_millis(500));
        assert_eq!(s.runs_total(), 2);
        assert_eq!(s.last_lag_seconds(), 0.5);
        assert_eq!(s.lag_seconds_sum(), 2.0);
    }
}
