//! An in-memory [`Storage`] and a manual clock, for testing the storage decorators (retries,
//! throttling, several storages at once) and other pure logic without a disk or a network.
//!
//! The fake can be told to fail an operation a number of times, temporarily (like a timeout),
//! permanently (like a 403) or with "not found", and to damage a stored object, which is how the
//! decorators' failure paths are exercised. It is public so integration tests can use it too.

use super::{Clock, ObjectInfo, Storage};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A [`Storage`] operation, naming where [`MemoryStorage::fail`] injects a fault and what
/// [`MemoryStorage::calls`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `put`.
    Put,
    /// `sync`.
    Sync,
    /// `get` and `get_checked`.
    Get,
    /// `get_range`.
    GetRange,
    /// `list`.
    List,
    /// `delete`.
    Delete,
    /// `tidy`.
    Tidy,
    /// `prepare`.
    Prepare,
    /// `check_container`.
    CheckContainer,
}

/// What an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A temporary failure (`Error::transient`), like a timeout or an HTTP 503.
    Transient,
    /// A permanent failure, like an HTTP 403.
    Permanent,
    /// `ErrorKind::NotFound`, as if the object were missing.
    NotFound,
}

#[derive(Debug)]
struct Rule {
    op: Op,
    key_contains: String,
    fault: Fault,
    remaining: usize,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, Vec<u8>>,
    synced: Vec<String>,
    rules: Vec<Rule>,
    calls: Vec<(Op, String)>,
}

/// Objects in a map, behind a mutex; a test double for any backend.
#[derive(Debug)]
pub struct MemoryStorage {
    name: String,
    container: AtomicBool,
    state: Mutex<State>,
}

impl MemoryStorage {
    /// An empty storage whose container exists; `name` appears in its messages.
    pub fn new(name: &str) -> Self {
        MemoryStorage {
            name: name.to_string(),
            container: AtomicBool::new(true),
            state: Mutex::new(State::default()),
        }
    }

    /// A storage whose container does not exist yet (until [`Storage::prepare`]).
    pub fn without_container(name: &str) -> Self {
        let s = Self::new(name);
        s.container.store(false, Ordering::SeqCst);
        s
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next `times` calls of `op` on a key containing `key_contains` fail with
    /// `fault` (`usize::MAX`: always). Rules are consulted in the order they were added.
    pub fn fail(&self, op: Op, key_contains: &str, fault: Fault, times: usize) {
        self.state().rules.push(Rule {
            op,
            key_contains: key_contains.to_string(),
            fault,
            remaining: times,
        });
    }

    /// Flips the last byte of the stored object `key` (a damaged copy). Panics when absent.
    pub fn damage(&self, key: &str) {
        let mut st = self.state();
        let data = st.objects.get_mut(key).expect("damage: no such object");
        if let Some(b) = data.last_mut() {
            *b ^= 0xff;
        }
    }

    /// Stores an object directly, bypassing faults and counters (test setup).
    pub fn insert(&self, key: &str, data: &[u8]) {
        self.state().objects.insert(key.to_string(), data.to_vec());
    }

    /// The stored object `key`, bypassing faults and counters.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.state().objects.get(key).cloned()
    }

    /// Every stored key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.state().objects.keys().cloned().collect()
    }

    /// Keys named by `sync` calls so far, in call order.
    pub fn synced(&self) -> Vec<String> {
        self.state().synced.clone()
    }

    /// How many times `op` was called (including calls that failed by an injected fault).
    pub fn calls(&self, op: Op) -> usize {
        self.state().calls.iter().filter(|(o, _)| *o == op).count()
    }

    /// Records the call and returns the injected fault, if one applies.
    fn enter(&self, op: Op, key: &str) -> Result<()> {
        let mut st = self.state();
        st.calls.push((op, key.to_string()));
        let rule = st
            .rules
            .iter_mut()
            .find(|r| r.op == op && r.remaining > 0 && key.contains(&r.key_contains));
        let Some(rule) = rule else { return Ok(()) };
        rule.remaining = rule.remaining.saturating_sub(1);
        let what = format!("{:?} {}", op, self.describe(key));
        Err(match rule.fault {
            Fault::Transient => Error::transient(format!("{what}: simulated timeout")),
            Fault::Permanent => Error::failure(format!("{what}: access denied (simulated 403)")),
            Fault::NotFound => Error::not_found(format!("{what} is missing (simulated)")),
        })
    }

    fn missing(&self, key: &str) -> Error {
        Error::not_found(format!("{} is missing", self.describe(key)))
    }
}

impl Storage for MemoryStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.enter(Op::Put, key)?;
        self.state().objects.insert(key.to_string(), data.to_vec());
        Ok(())
    }

    fn sync(&self, keys: &[String]) -> Result<()> {
        self.enter(Op::Sync, &keys.join(","))?;
        let mut st = self.state();
        for k in keys {
            if !st.objects.contains_key(k) {
                return Err(Error::failure(format!(
                    "{}: cannot sync a missing object",
                    self.describe(k)
                )));
            }
        }
        st.synced.extend(keys.iter().cloned());
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.enter(Op::Get, key)?;
        self.object(key).ok_or_else(|| self.missing(key))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.enter(Op::GetRange, key)?;
        let data = self.object(key).ok_or_else(|| self.missing(key))?;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.enter(Op::List, prefix)?;
        Ok(self
            .state()
            .objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
                modified: None,
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.enter(Op::Delete, key)?;
        self.state().objects.remove(key);
        Ok(())
    }

    fn tidy(&self, prefix: &str) -> Result<()> {
        self.enter(Op::Tidy, prefix)
    }

    fn describe(&self, key: &str) -> String {
        format!("mem://{}/{key}", self.name)
    }

    fn prepare(&self) -> Result<()> {
        self.enter(Op::Prepare, "")?;
        self.container.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn check_container(&self) -> Result<()> {
        self.enter(Op::CheckContainer, "")?;
        if self.container.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "container {} does not exist",
                self.describe("")
            )))
        }
    }
}

/// A [`Clock`] that only moves when told to or when slept on: sleeping advances it instantly and
/// is recorded, so time-dependent logic (backoff, rate limiting) is tested without real waits.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
    slept: Mutex<Vec<Duration>>,
    interrupt_after_sleeps: Mutex<Option<usize>>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }

    /// Every sleep asked of this clock, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes sleeps after the first `n` fail as if the process had been interrupted.
    pub fn interrupt_after(&self, n: usize) {
        *self
            .interrupt_after_sleeps
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(n);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn sleep(&self, d: Duration) -> Result<()> {
        let mut slept = self.slept.lock().unwrap_or_else(|p| p.into_inner());
        let limit = *self
            .interrupt_after_sleeps
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if limit.is_some_and(|n| slept.len() >= n) {
            return Err(Error::interrupted());
        }
        slept.push(d);
        self.advance(d);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_the_given_number_of_times() {
        let m = MemoryStorage::new("m");
        m.put("a/x", b"hello").unwrap();
        m.fail(Op::Get, "a/", Fault::Transient, 2);
        assert!(m.get("a/x").unwrap_err().is_transient());
        assert!(m.get("a/x").unwrap_err().is_transient());
        assert_eq!(m.get("a/x").unwrap(), b"hello");
        assert_eq!(m.calls(Op::Get), 3);
        assert_eq!(m.get_range("a/x", 1, 3).unwrap(), b"ell");
        assert_eq!(m.get_range("a/x", 4, 10).unwrap(), b"o");
        assert_eq!(m.get_range("a/x", 9, 10).unwrap(), b"");
        m.damage("a/x");
        assert_ne!(m.get("a/x").unwrap(), b"hello");
        assert_eq!(
            m.get("missing").unwrap_err().kind,
            crate::error::ErrorKind::NotFound
        );
    }

    #[test]
    fn manual_clock_advances_on_sleep() {
        let c = ManualClock::new();
        c.sleep(Duration::from_millis(5)).unwrap();
        c.advance(Duration::from_millis(1));
        assert_eq!(c.now(), Duration::from_millis(6));
        c.interrupt_after(1);
        assert_eq!(
            c.sleep(Duration::from_secs(1)).unwrap_err().kind,
            crate::error::ErrorKind::Interrupted
        );
    }
}
