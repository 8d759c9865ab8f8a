//! Which dispatcher schedules: a leader lease in Redis (ARCHITECTURE.md §5).
//!
//! Every dispatcher runs [`spawn`]; at most one of them holds the lease
//! `<prefix>dispatcher:leader` (value: its id) and reports `true` on its channel. The others
//! (standbys) try to take the lease every [`retry_interval`] and take over within the lease TTL
//! (`leader_lease_ms`) of the leader's death.
//!
//! - Taking: `SET key id NX PX lease`.
//! - Keeping: every third of the lease, a Lua compare-and-`PEXPIRE` (only while the value is still
//!   our id). Finding another value (or none) means the lease was lost: step down at once.
//! - Never two leaders: the lease is counted from *before* each successful request was sent, and
//!   the leader steps down on its own a tenth of the lease before that count runs out if it could
//!   not renew (Redis unreachable, slow, partitioned), without waiting for Redis to say so. Redis
//!   cannot give the key to anyone else before then.
//! - Clean shutdown: step down, then compare-and-delete the key, so a standby takes over at its
//!   next try instead of after the TTL.
//!
//! Dispatcher ids must be unique: two instances with the same id would each take the other's lease
//! for their own. A restarted dispatcher whose lease is still in Redis (it crashed) waits for it to
//! expire like any standby.
//!
//! The scheduler is not the only guard: each run is claimed with a compare-and-set in Redis
//! ([`crate::scheduler`]), so even a leader acting on a stale flag cannot publish a run twice.

use freezer_fleet::scripts::compare_and_delete;
use freezer_fleet::Keys;
use redis::aio::ConnectionManager;
use redis::Script;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// How often a standby tries to take the lease: a quarter of it, at most 1 s.
pub fn retry_interval(lease: Duration) -> Duration {
    (lease / 4).min(Duration::from_secs(1))
}

/// Sends `false` when dropped, so that the flag goes down when the election task ends in any way
/// (returned, panicked, aborted): a dead elector is never taken for a leader.
struct StepDownOnDrop(watch::Sender<bool>);

impl Drop for StepDownOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// Starts the election for dispatcher `id` with a lease of `lease` on `<prefix>dispatcher:leader`.
/// The channel says whether this dispatcher is the leader now; it turns `false` when the lease is
/// lost, when `shutdown` completes (the lease is then released) or when the task ends otherwise.
/// Call it inside a Tokio runtime.
pub fn spawn(
    redis: ConnectionManager,
    prefix: &str,
    id: &str,
    lease: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (watch::Receiver<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let elector = Elector {
        redis,
        key: Keys::new(prefix).leader(),
        id: id.to_string(),
        lease: lease.max(Duration::from_millis(30)),
        flag: StepDownOnDrop(tx),
    };
    (rx, tokio::spawn(elector.run(shutdown)))
}

struct Elector {
    redis: ConnectionManager,
    key: String,
    id: String,
    lease: Duration,
    flag: StepDownOnDrop,
}

impl Elector {
    async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let retry = retry_interval(self.lease);
        let renew_every = self.lease / 3;
        let margin = self.lease / 10;
        // While leader: the instant our lease surely still runs until, minus the margin.
        let mut leader_until: Option<Instant> = None;
        let mut next_try = Instant::now();
        loop {
            let wake = match leader_until {
                Some(until) => next_try.min(until),
                None => next_try,
            };
            tokio::select! {
                _ = &mut shutdown => {
                    if leader_until.is_some() {
                        self.step_down("shutting down");
                        self.release().await;
                    }
                    return;
                }
                _ = sleep_until(wake) => {}
            }
            let sent = Instant::now();
            match leader_until {
                Some(until) if sent >= until => {
                    self.step_down("could not renew the lease in time");
                    leader_until = None;
                    next_try = sent + retry;
                }
                Some(until) => match timeout(until - sent, self.renew()).await {
                    Ok(Ok(true)) => {
                        leader_until = Some(sent + self.lease - margin);
                        next_try = sent + renew_every;
                    }
                    Ok(Ok(false)) => {
                        self.step_down("the lease was taken or expired");
                        leader_until = None;
                        next_try = sent + retry;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(message = "cannot renew the leader lease", error = %e);
                        next_try = Instant::now() + retry.min(renew_every);
                    }
                    Err(_) => next_try = Instant::now(),
                },
                None => {
                    match timeout(retry.max(margin), self.acquire()).await {
                        Ok(Ok(true)) => {
                            leader_until = Some(sent + self.lease - margin);
                            next_try = sent + renew_every;
                            tracing::info!(message = "leader now", id = %self.id, key = %self.key);
                            self.flag.0.send_replace(true);
                            continue;
                        }
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(message = "cannot try the leader lease", error = %e)
                        }
                        Err(_) => {}
                    }
                    next_try = sent + retry;
                }
            }
        }
    }

    fn step_down(&self, why: &str) {
        if self.flag.0.send_replace(false) {
            tracing::warn!(message = "no longer leader", id = %self.id, reason = why);
        }
    }

    async fn acquire(&self) -> redis::RedisResult<bool> {
        let got: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.id)
            .arg("NX")
            .arg("PX")
            .arg(self.lease.as_millis() as u64)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(got.is_some())
    }

    async fn renew(&self) -> redis::RedisResult<bool> {
        let n: i64 = Script::new(RENEW)
            .key(&self.key)
            .arg(&self.id)
            .arg(self.lease.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(n == 1)
    }

    async fn release(&self) {
        let r = timeout(
            self.lease,
            compare_and_delete(&mut self.redis.clone(), &self.key, &self.id),
        )
        .await;
        if !matches!(r, Ok(Ok(_))) {
            tracing::warn!(message = "cannot release the leader lease; it expires on its own");
        }
    }
}
