//! Retries of temporary storage failures (timeouts, reset connections, HTTP 5xx, S3 `SlowDown`)
//! with exponential backoff and jitter, as a decorator around a backend: [`RetryingStorage`].
//! Permanent failures (403, no such bucket, a full disk) and missing objects are returned at
//! once; the backends decide which is which through [`Error::status`].
//!
//! Every attempt is counted in `freezer_storage_requests_total` (see [`super::metrics`]).

use super::metrics::{self, Operation, Status};
use super::throttle::{Clock, SystemClock};
use super::{NameLock, ObjectInfo, Storage};
use crate::error::{Error, ErrorKind, Result};
use std::sync::Arc;
use std::time::Duration;

/// How often and how patiently [`RetryingStorage`] retries a temporary failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 is taken as 1: no retry).
    pub max_attempts: u32,
    /// Ceiling of the pause after the first failure; it doubles after each further one.
    pub initial_delay: Duration,
    /// The pause's ceiling never grows beyond this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, pauses of 0.2, 0.4, 0.8, 1.6, 3.2, 6.4 and 10 s at most (22.6 s in all, at
    /// least half of it with the jitter): with the failing attempts' own time (a timeout takes
    /// seconds), an outage of about 25 s is ridden out, while a permanent outage fails the task
    /// in well under a minute so the fleet can re-queue it.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The longest pause after failed attempt `attempt` (1-based): `initial_delay` doubled
    /// `attempt - 1` times, capped at `max_delay`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// The pause after failed attempt `attempt`, given a random draw `unit` in `[0, 1)`:
    /// "equal jitter", uniformly between half the ceiling and the ceiling. The jitter spreads a
    /// fleet's retries so they do not hammer a recovering server in step; keeping the lower
    /// half fixed (rather than "full jitter" from zero) guarantees the retries really span the
    /// outage the policy is sized for.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let c = self.ceiling(attempt);
        c / 2 + (c / 2).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// A uniform draw in `[0, 1)` from the OS (retries are rare; no generator state to share).
fn random_unit() -> f64 {
    getrandom::u64().map_or(0.5, |x| (x >> 11) as f64 / (1u64 << 53) as f64)
}

/// A storage that retries its backend's temporary failures with exponential backoff and
/// jitter, logs each retry, and counts each attempt by backend, operation and outcome.
///
/// Every operation is safe to repeat: puts are atomic and overwrite, deletes of missing objects
/// succeed, reads and lists have no effect. A failure that outlasts the policy is returned with
/// "(gave up after N attempts over T s)" added and stays transient, so a fleet can re-queue the
/// task. The backoff pause ends early when the process is interrupted.
pub struct RetryingStorage {
    inner: Arc<dyn Storage>,
    policy: RetryPolicy,
    backend: &'static str,
    clock: Arc<dyn Clock>,
}

impl RetryingStorage {
    /// Retries `inner`'s temporary failures under `policy`; `backend` (`local`, `s3`, `ssh`)
    /// labels its metrics and log lines.
    pub fn new(inner: Arc<dyn Storage>, policy: RetryPolicy, backend: &'static str) -> Self {
        RetryingStorage {
            inner,
            policy,
            backend,
            clock: Arc::new(SystemClock::new()),
        }
    }

    /// The same, pausing on `clock` (tests use a manual clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs `f` until it succeeds, fails for good or the attempts run out. `op` names the
    /// operation in logs; `metric` is its counter, if it has one.
    fn retry<T>(
        &self,
        op: &'static str,
        metric: Option<Operation>,
        object: &str,
        mut f: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let record = |status| {
            if let Some(m) = metric {
                metrics::record(self.backend, m, status);
            }
        };
        let max = self.policy.max_attempts.max(1);
        let started = self.clock.now();
        let mut attempt = 1;
        loop {
            let err = match f() {
                Ok(v) => {
                    record(Status::Ok);
                    return Ok(v);
                }
                Err(e) => e,
            };
            match err.kind {
                ErrorKind::NotFound => {
                    record(Status::NotFound);
                    return Err(err);
                }
                // The data came back but failed its check: the request itself succeeded, and
                // fetching the same bytes again would not help.
                ErrorKind::Integrity => {
                    record(Status::Ok);
                    return Err(err);
                }
                // Only a transient failure of the request is the storage layer's to repeat; an
                // interrupted run or a held lock is its caller's to decide.
                ErrorKind::Failure if err.is_transient() => {}
                _ => {
                    record(Status::Error);
                    return Err(err);
                }
            }
            if attempt >= max {
                record(Status::Error);
                let spent = self.clock.now().saturating_sub(started);
                return Err(Error {
                    message: format!(
                        "{} (gave up after {attempt} attempts over {:.1} s)",
                        err.message,
                        spent.as_secs_f64()
                    ),
                    ..err
                });
            }
            record(Status::Retry);
            let delay = self.policy.delay(attempt, random_unit());
            tracing::warn!(
                backend = self.backend,
                operation = op,
                object = %self.inner.describe(object),
                attempt,
                max_attempts = max,
                delay_ms = delay.as_millis() as u64,
                error = %err,
                "temporary storage failure; retrying"
            );
            if let Err(e) = self.clock.sleep(delay) {
                return Err(Error {
                    message: format!(
                        "{} while waiting to retry {op} of {}: {}",
                        e.message,
                        self.inner.describe(object),
                        err.message
                    ),
                    ..e
                });
            }
            attempt += 1;
        }
    }
}

/// How `sync` names its objects in logs: the first and a count.
fn keys_summary(keys: &[String]) -> String {
    match keys {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (+{} more)", rest.len()),
    }
}

impl Storage for RetryingStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.retry("put", Some(Operation::Put), key, || {
            self.inner.put(key, data)
        })
    }

    fn sync(&self, keys: &[String]) -> Result<()> {
        self.retry("sync", Some(Operation::Sync), &keys_summary(keys), || {
            self.inner.sync(keys)
        })
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.retry("get", Some(Operation::Get), key, || self.inner.get(key))
    }

    /// Retries temporary fetch failures only: an integrity failure from `check` is returned at
    /// once (the same bytes would come back), to a caller that may have another copy.
    fn get_checked(&self, key: &str, check: &dyn Fn(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
        self.retry("get", Some(Operation::Get), key, || {
            self.inner.get_checked(key, check)
        })
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.retry("get_range", Some(Operation::GetRange), key, || {
            self.inner.get_range(key, offset, len)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.retry("list", Some(Operation::List), prefix, || {
            self.inner.list(prefix)
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.retry("delete", Some(Operation::Delete), key, || {
            self.inner.delete(key)
        })
    }

    fn tidy(&self, prefix: &str) -> Result<()> {
        self.retry("tidy", None, prefix, || self.inner.tidy(prefix))
    }

    fn describe(&self, key: &str) -> String {
        self.inner.describe(key)
    }

    fn prepare(&self) -> Result<()> {
        self.retry("prepare", None, "", || self.inner.prepare())
    }

    fn check_container(&self) -> Result<()> {
        self.retry("check_container", None, "", || self.inner.check_container())
    }

    fn lock_name(&self, name_prefix: &str) -> Result<NameLock> {
        self.inner.lock_name(name_prefix)
    }

    fn local_dirs(&self) -> Vec<std::path::PathBuf> {
        self.inner.local_dirs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::{Fault, ManualClock, MemoryStorage, Op};

    fn retrying(backend: &'static str) -> (Arc<MemoryStorage>, Arc<ManualClock>, RetryingStorage) {
        let m = Arc::new(MemoryStorage::new("m"));
        let clock = Arc::new(ManualClock::new());
        let s = RetryingStorage::new(m.clone(), RetryPolicy::default(), backend)
            .with_clock(clock.clone());
        (m, clock, s)
    }

    /// Each pause lies between half its ceiling and its ceiling.
    fn assert_backoff(clock: &ManualClock) {
        let p = RetryPolicy::default();
        for (i, d) in clock.sleeps().iter().enumerate() {
            let c = p.ceiling(i as u32 + 1);
            assert!(
                *d >= c / 2 && *d <= c,
                "pause {i}: {d:?} against ceiling {c:?}"
            );
        }
    }

    #[test]
    fn default_policy_spans_a_quarter_minute_outage() {
        let p = RetryPolicy::default();
        let ceilings: Vec<_> = (1..p.max_attempts).map(|a| p.ceiling(a)).collect();
        assert_eq!(ceilings[0], Duration::from_millis(200));
        assert_eq!(ceilings[5], Duration::from_millis(6400));
        assert_eq!(ceilings[6], Duration::from_secs(10));
        let most: Duration = ceilings.iter().sum();
        assert_eq!(most, Duration::from_millis(22_600));
        let least: Duration = (1..p.max_attempts).map(|a| p.delay(a, 0.0)).sum();
        assert_eq!(least, Duration::from_millis(11_300));
        assert_eq!(p.ceiling(40), Duration::from_secs(10));
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let b = "test-retry-transient";
        let (m, clock, s) = retrying(b);
        m.fail(Op::Put, "seg", Fault::Transient, 3);
        s.put("seg", b"data").unwrap();
        assert_eq!(m.object("seg").unwrap(), b"data");
        assert_eq!(m.calls(Op::Put), 4);
        assert_eq!(clock.sleeps().len(), 3);
        assert_backoff(&clock);
        assert_eq!(metrics::count(b, Operation::Put, Status::Retry), 3);
        assert_eq!(metrics::count(b, Operation::Put, Status::Ok), 1);
        assert_eq!(metrics::count(b, Operation::Put, Status::Error), 0);
    }

    #[test]
    fn permanent_failure_fails_at_once() {
        let b = "test-retry-permanent";
        let (m, clock, s) = retrying(b);
        m.fail(Op::List, "", Fault::Permanent, 1);
        let e = s.list("x/").unwrap_err();
        assert!(!e.is_transient());
        assert!(e.message.contains("access denied"), "{}", e.message);
        assert_eq!(m.calls(Op::List), 1);
        assert!(clock.sleeps().is_empty());
        assert_eq!(metrics::count(b, Operation::List, Status::Error), 1);
    }

    #[test]
    fn missing_object_is_not_retried() {
        let b = "test-retry-missing";
        let (m, clock, s) = retrying(b);
        assert_eq!(s.get("nope").unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(m.calls(Op::Get), 1);
        assert!(clock.sleeps().is_empty());
        assert_eq!(metrics::count(b, Operation::Get, Status::NotFound), 1);
    }

    #[test]
    fn lasting_outage_gives_up_with_the_count_and_stays_transient() {
        let b = "test-retry-outage";
        let (m, clock, s) = retrying(b);
        m.insert("k", b"v");
        m.fail(Op::GetRange, "k", Fault::Transient, usize::MAX);
        let e = s.get_range("k", 0, 1).unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.kind, ErrorKind::Failure);
        assert!(e.message.contains("simulated timeout"), "{}", e.message);
        let spent: Duration = clock.sleeps().iter().sum();
        let tail = format!(
            "(gave up after 8 attempts over {:.1} s)",
            spent.as_secs_f64()
        );
        assert!(e.message.ends_with(&tail), "{}", e.message);
        assert_eq!(m.calls(Op::GetRange), 8);
        assert_eq!(clock.sleeps().len(), 7);
        assert_backoff(&clock);
        assert_eq!(metrics::count(b, Operation::GetRange, Status::Retry), 7);
        assert_eq!(metrics::count(b, Operation::GetRange, Status::Error), 1);
    }

    #[test]
    fn checked_get_retries_fetch_failures_but_not_damage() {
        let b = "test-retry-checked";
        let (m, _, s) = retrying(b);
        m.insert("seg", b"good");
        let check = |d: &[u8]| {
            if d == b"good" {
                Ok(())
            } else {
                Err(Error::integrity("seg failed its integrity check"))
            }
        };
        m.fail(Op::Get, "seg", Fault::Transient, 2);
        assert_eq!(s.get_checked("seg", &check).unwrap(), b"good");
        assert_eq!(m.calls(Op::Get), 3);
        m.damage("seg");
        let e = s.get_checked("seg", &check).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Integrity);
        assert_eq!(m.calls(Op::Get), 4);
        assert_eq!(metrics::count(b, Operation::Get, Status::Retry), 2);
    }

    #[test]
    fn interrupt_during_backoff_stops_retrying() {
        let (m, clock, s) = retrying("test-retry-interrupt");
        clock.interrupt_after(1);
        m.fail(Op::Delete, "k", Fault::Transient, usize::MAX);
        let e = s.delete("k").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Interrupted);
        assert!(
            e.message.contains("waiting to retry delete"),
            "{}",
            e.message
        );
        assert_eq!(m.calls(Op::Delete), 2);
    }

    #[test]
    fn prepare_and_sync_are_retried_too() {
        let (m, _, s) = retrying("test-retry-prepare");
        m.fail(Op::Prepare, "", Fault::Transient, 1);
        s.prepare().unwrap();
        assert_eq!(m.calls(Op::Prepare), 2);
        m.insert("a", b"1");
        m.insert("b", b"2");
        m.fail(Op::Sync, "", Fault::Transient, 1);
        s.sync(&["a".into(), "b".into()]).unwrap();
        assert_eq!(m.synced(), vec!["a", "b"]);
    }
}
