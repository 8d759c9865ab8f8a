//! Bandwidth limits (`--upload-limit`, `--download-limit`): a [`RateLimiter`] shared by every
//! transfer of a task, and [`ThrottledStorage`], the decorator that paces a backend's transfers
//! through it.
//!
//! The limiter paces by "virtual finish time" (GCRA, a token bucket that may go into debt): each
//! transfer of `n` bytes pushes a shared virtual clock forward by `n / rate` and may start once
//! that clock is less than one burst ahead of real time. Every thread and every storage holding
//! the same `Arc<RateLimiter>` shares one budget, so the limit is on their sum.
//!
//! # Accuracy
//!
//! Bytes whose transfer *starts* within any window of length `W` never exceed
//! `rate × W + burst`, with `burst` = 1/10 s of budget (at least 64 KiB). Downloads are split
//! into ranged reads of one burst each, so they follow that bound closely. An upload is one
//! atomic object and cannot be split: it is paced as a whole and then runs at line speed, so the
//! bytes on the wire in a window can exceed the bound by `rate × D`, `D` the longest single
//! transfer's duration, which is at most one object's size when a transfer runs at least as
//! fast as the limit. With objects capped at [`max_object_for`] (¼ s of budget) the excess over
//! a 10-second window stays within 0.1 s + 0.25 s of budget, 3.5 %. Below 640 KiB/s the 64-KiB
//! minimum burst dominates and the relative bound is looser.

use super::{ObjectInfo, Storage};
use crate::error::{Error, Result};
use crate::CancellationToken;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Smallest pacing unit: a ranged read and the burst are never below this, so a low limit does
/// not turn a download into thousands of tiny requests.
pub const MIN_CHUNK: u64 = 64 << 10;

/// Time as the pacing and backoff logic sees it, so tests can run it on a manual clock instead
/// of real sleeps.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time elapsed since a fixed origin of this clock.
    fn now(&self) -> Duration;
    /// Waits `d`; fails with `ErrorKind::Interrupted` as soon as the run is cancelled, so a
    /// throttled or backing-off run stops promptly on SIGINT/SIGTERM or when its task is
    /// cancelled.
    fn sleep(&self, d: Duration) -> Result<()>;
}

/// The real clock: monotonic time, and sleeps cut short when the run's token is cancelled.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
    cancel: CancellationToken,
}

impl SystemClock {
    /// A clock whose origin is now and whose sleeps nothing cuts short.
    pub fn new() -> Self {
        Self::cancelled_by(CancellationToken::new())
    }

    /// A clock whose origin is now and whose sleeps end with `Interrupted` once `cancel` is
    /// cancelled (the run's token: the storage of one run paces and backs off on it).
    pub fn cancelled_by(cancel: CancellationToken) -> Self {
        SystemClock {
            origin: Instant::now(),
            cancel,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, d: Duration) -> Result<()> {
        // A poll that remains: this runs on a blocking engine thread, which has no runtime to
        // await the token on, so it sleeps in short slices and notices a cancel within 50 ms.
        const SLICE: Duration = Duration::from_millis(50);
        let end = Instant::now() + d;
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::interrupted());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(SLICE));
        }
    }
}

/// Parses a `--upload-limit`/`--download-limit` value in bytes per second: `10M`, `512K`, `1G`
/// or plain bytes, binary multiples as for sizes ([`freezer_contracts::ByteSize`]). Zero is
/// refused: "no limit" is the absence of the option.
pub fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    match freezer_contracts::ByteSize::parse(s)?.bytes() {
        0 => Err(format!(
            "invalid rate {:?}: must be above 0 bytes per second (omit the option for no limit)",
            s.trim()
        )),
        n => Ok(n),
    }
}

/// The largest object a writer should store under an upload limit of `limit` bytes per second
/// (¼ s of budget, at least 64 KiB): an object is sent as a whole, so its size bounds how far a
/// window can overshoot the limit (see the module documentation). The engine should cap its
/// segment size to this when an upload limit is set.
pub fn max_object_for(limit: u64) -> u64 {
    (limit / 4).max(MIN_CHUNK)
}

/// A bytes-per-second budget shared by all transfers holding it (`Arc`), across threads and
/// storages.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    burst: u64,
    clock: Arc<dyn Clock>,
    /// Virtual finish time of everything reserved so far, in nanoseconds of `clock`.
    tat: Mutex<u128>,
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec` (0 is taken as 1) on the real clock.
    pub fn new(bytes_per_sec: u64) -> Self {
        Self::with_clock(bytes_per_sec, Arc::new(SystemClock::new()))
    }

    /// A limiter of `bytes_per_sec` (0 is taken as 1) on `clock` (tests use a manual clock).
    pub fn with_clock(bytes_per_sec: u64, clock: Arc<dyn Clock>) -> Self {
        let rate = bytes_per_sec.max(1);
        RateLimiter {
            rate,
            burst: (rate / 10).max(MIN_CHUNK),
            clock,
            tat: Mutex::new(0),
        }
    }

    /// The limit, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bytes that may go at once after an idle period (1/10 s of budget, at least 64 KiB); also
    /// the size of the ranged reads a throttled download is split into.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    fn cost_nanos(&self, bytes: u64) -> u128 {
        bytes as u128 * 1_000_000_000 / self.rate as u128
    }

    /// Reserves `bytes` of budget and returns how long the caller must wait before sending
    /// them. Callers that do not sleep themselves use [`RateLimiter::acquire`].
    pub fn reserve(&self, bytes: u64) -> Duration {
        let now = self.clock.now().as_nanos();
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let finish = (*tat).max(now) + self.cost_nanos(bytes);
        *tat = finish;
        let start = finish.saturating_sub(self.cost_nanos(self.burst)).max(now);
        Duration::from_nanos((start - now).min(u64::MAX as u128) as u64)
    }

    /// Reserves `bytes` and sleeps until they may be sent; fails only when the process is
    /// interrupted during the wait.
    pub fn acquire(&self, bytes: u64) -> Result<()> {
        let wait = self.reserve(bytes);
        if wait.is_zero() {
            Ok(())
        } else {
            self.clock.sleep(wait)
        }
    }

    /// Gives back `bytes` reserved but not sent (a ranged read that hit the object's end).
    pub fn refund(&self, bytes: u64) {
        if bytes > 0 {
            let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
            *tat = tat.saturating_sub(self.cost_nanos(bytes));
        }
    }
}

/// A storage whose uploads and downloads are paced by shared [`RateLimiter`]s.
///
/// Uploads are paced per object (an object is atomic). Downloads are split into ranged reads of
/// one burst each so the pace is smooth. Listing, deleting and syncing are not limited.
///
/// The intended stack is `MultiStorage[ThrottledStorage(RetryingStorage(backend)), ...]`, every
/// member sharing the same two limiters: each ranged read is then retried on its own and
/// counted as one request, and every copy sent to every storage counts against the limit (it
/// is all bandwidth). A retried put re-sends its object without being paced again; that only
/// happens after failures.
pub struct ThrottledStorage {
    inner: Arc<dyn Storage>,
    upload: Option<Arc<RateLimiter>>,
    download: Option<Arc<RateLimiter>>,
}

impl ThrottledStorage {
    /// Paces `inner`'s puts through `upload` and its reads through `download` (`None`: not
    /// limited in that direction).
    pub fn new(
        inner: Arc<dyn Storage>,
        upload: Option<Arc<RateLimiter>>,
        download: Option<Arc<RateLimiter>>,
    ) -> Self {
        ThrottledStorage {
            inner,
            upload,
            download,
        }
    }

    /// Reads up to `len` bytes at `offset` as a series of paced ranged reads; stops at the
    /// object's end.
    fn read_paced(
        &self,
        limiter: &RateLimiter,
        key: &str,
        mut offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        let chunk = limiter.burst();
        let mut out = Vec::new();
        let mut remaining = len;
        while remaining > 0 {
            let want = chunk.min(remaining);
            limiter.acquire(want)?;
            let piece = match self.inner.get_range(key, offset, want) {
                Ok(p) => p,
                Err(e) => {
                    limiter.refund(want);
                    return Err(e);
                }
            };
            let got = (piece.len() as u64).min(want);
            limiter.refund(want - got);
            out.extend_from_slice(&piece[..got as usize]);
            offset += got;
            remaining -= got;
            if got < want {
                break;
            }
        }
        Ok(out)
    }
}

impl Storage for ThrottledStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        if let Some(l) = &self.upload {
            l.acquire(data.len() as u64)?;
        }
        self.inner.put(key, data)
    }

    fn sync(&self, keys: &[String]) -> Result<()> {
        self.inner.sync(keys)
    }

    /// A whole object as paced ranged reads. The pieces are separate requests: an object
    /// replaced while being read could come back mixed. Freezer never replaces an object a
    /// reader may be reading (every backup writes under its own directory), and everything
    /// that matters is read through [`Storage::get_checked`], which checks the whole.
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        match &self.download {
            None => self.inner.get(key),
            Some(l) => self.read_paced(l, key, 0, u64::MAX),
        }
    }

    /// Assembles the object from paced ranged reads and checks the whole. When the assembled
    /// copy fails `check`, falls back to `inner.get_checked`: below this layer there may be
    /// several storages (`ThrottledStorage(MultiStorage)`), and only their own `get_checked`
    /// looks for a good copy on the next one; over a single backend it is one more whole fetch,
    /// which also cures damage done in transit. The fallback's bytes are charged to the limiter
    /// after the fact (this thread waits them off before returning), so the long-run rate holds.
    /// Read errors are returned as they are: below, retries and other storages were already
    /// tried for each range.
    fn get_checked(&self, key: &str, check: &dyn Fn(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
        let Some(l) = &self.download else {
            return self.inner.get_checked(key, check);
        };
        let data = self.read_paced(l, key, 0, u64::MAX)?;
        match check(&data) {
            Ok(()) => Ok(data),
            Err(e) => {
                tracing::debug!(
                    object = %self.inner.describe(key),
                    error = %e,
                    "paced read failed its check; fetching the object whole"
                );
                let data = self.inner.get_checked(key, check)?;
                l.acquire(data.len() as u64)?;
                Ok(data)
            }
        }
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        match &self.download {
            None => self.inner.get_range(key, offset, len),
            Some(l) => self.read_paced(l, key, offset, len),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }

    fn tidy(&self, prefix: &str) -> Result<()> {
        self.inner.tidy(prefix)
    }

    fn describe(&self, key: &str) -> String {
        self.inner.describe(key)
    }

    fn prepare(&self) -> Result<()> {
        self.inner.prepare()
    }

    fn check_container(&self) -> Result<()> {
        self.inner.check_container()
    }

    fn lock_name(&self, name_prefix: &str) -> Result<super::NameLock> {
        self.inner.lock_name(name_prefix)
    }

    fn local_dirs(&self) -> Vec<std::path::PathBuf> {
        self.inner.local_dirs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::storage::memory::{ManualClock, MemoryStorage, Op};
    use crate::storage::MultiStorage;

    const MB: u64 = 1_000_000;

    fn limiter(rate: u64) -> (Arc<ManualClock>, Arc<RateLimiter>) {
        let clock = Arc::new(ManualClock::new());
        let l = Arc::new(RateLimiter::with_clock(rate, clock.clone()));
        (clock, l)
    }

    fn total_sleep(c: &ManualClock) -> Duration {
        c.sleeps().iter().sum()
    }

    #[test]
    fn parse_rate_takes_size_suffixes_and_refuses_zero() {
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("512K"), Ok(512 << 10));
        assert_eq!(parse_rate("1g"), Ok(1 << 30));
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("10X").is_err());
        assert!(parse_rate("").is_err());
    }

    #[test]
    fn max_object_is_a_quarter_second_of_budget() {
        assert_eq!(max_object_for(40 * MB), 10 * MB);
        assert_eq!(max_object_for(1000), MIN_CHUNK);
    }

    /// Four parallel workers on a manual clock, transfers of random-ish sizes at 4× the limit:
    /// every 10-second window stays within 5 % of the limit, counted by when bytes are on the
    /// wire (each transfer spread evenly over its duration).
    #[test]
    fn limiter_holds_the_rate_over_every_ten_second_window() {
        let rate = 10 * MB;
        let (clock, l) = limiter(rate);
        let line = 4.0 * rate as f64; // bytes/s one stream can reach
        let sizes = [
            64_000u64, 2_500_000, 700_000, 1_000_000, 10_000, 2_000_000, 333_333,
        ];
        let mut t = [0.0f64; 4]; // each worker's next free time, seconds
        let mut n = [0usize; 4];
        let mut transfers = Vec::new(); // (start, end, bytes)
        loop {
            let w = (0..4).min_by(|&a, &b| t[a].total_cmp(&t[b])).unwrap();
            if t[w] > 60.0 {
                break;
            }
            let now = Duration::from_secs_f64(t[w]);
            clock.advance(now.saturating_sub(clock.now()));
            let size = sizes[(n[w] * 3 + w) % sizes.len()];
            n[w] += 1;
            let start = t[w] + l.reserve(size).as_secs_f64();
            let end = start + size as f64 / line;
            transfers.push((start, end, size));
            t[w] = end;
        }
        let on_wire = |a: f64, b: f64| -> f64 {
            transfers
                .iter()
                .map(|&(s, e, n)| {
                    let overlap = (e.min(b) - s.max(a)).max(0.0);
                    n as f64 * overlap / (e - s)
                })
                .sum()
        };
        let budget = rate as f64 * 10.0;
        let mut a = 0.0;
        while a + 10.0 <= 55.0 {
            let got = on_wire(a, a + 10.0);
            assert!(got <= budget * 1.05, "window at {a}s: {got} bytes");
            assert!(got >= budget * 0.95, "window at {a}s: {got} bytes");
            a += 0.25;
        }
    }

    #[test]
    fn limiter_lets_a_burst_go_at_once_then_paces() {
        let (_, l) = limiter(10 * MB);
        assert_eq!(l.burst(), MB);
        assert_eq!(l.reserve(MB), Duration::ZERO);
        // The next megabyte is due 0.1 s later.
        assert_eq!(l.reserve(MB), Duration::from_millis(100));
        assert_eq!(l.reserve(5 * MB), Duration::from_millis(600));
        l.refund(5 * MB);
        assert_eq!(l.reserve(MB), Duration::from_millis(200));
    }

    #[test]
    fn throttled_download_is_split_into_paced_ranges() {
        let (clock, l) = limiter(MB);
        let m = Arc::new(MemoryStorage::new("m"));
        let data: Vec<u8> = (0..1_050_000u32).map(|i| i as u8).collect();
        m.insert("obj", &data);
        let s = ThrottledStorage::new(m.clone(), None, Some(l));
        assert_eq!(s.get("obj").unwrap(), data);
        // 100 kB pieces (1/10 s of budget): ten full and one short.
        assert_eq!(m.calls(Op::GetRange), 11);
        assert_eq!(m.calls(Op::Get), 0);
        // The first piece is free (the burst); each later one waits its 0.1 s, the short last
        // one too since its size is known only once read (its unused part is refunded).
        let slept = total_sleep(&clock).as_secs_f64();
        assert!((slept - 1.0).abs() < 1e-6, "{slept}");
        assert_eq!(
            s.get_range("obj", 1000, 250_000).unwrap(),
            &data[1000..251_000]
        );
        assert_eq!(s.get("missing").unwrap_err().kind, ErrorKind::NotFound);
    }

    #[test]
    fn throttled_upload_paces_whole_objects() {
        let (clock, l) = limiter(MB);
        let m = Arc::new(MemoryStorage::new("m"));
        let s = ThrottledStorage::new(m.clone(), Some(l), None);
        for i in 0..3 {
            s.put(&format!("seg{i}"), &vec![7u8; 500_000]).unwrap();
        }
        assert_eq!(m.keys().len(), 3);
        // 1.5 MB at 1 MB/s with a 100 kB burst.
        let slept = total_sleep(&clock).as_secs_f64();
        assert!((slept - 1.4).abs() < 1e-6, "{slept}");
        // Downloads are not limited here.
        assert_eq!(s.get("seg0").unwrap().len(), 500_000);
        assert_eq!(m.calls(Op::Get), 1);
    }

    #[test]
    fn checked_download_falls_back_to_another_storage_when_the_pieces_fail_the_check() {
        let (_, l) = limiter(MB);
        let good: Vec<u8> = vec![1; 300_000];
        let a = Arc::new(MemoryStorage::new("a"));
        let b = Arc::new(MemoryStorage::new("b"));
        a.insert("seg", &good);
        a.damage("seg");
        b.insert("seg", &good);
        let multi = Arc::new(MultiStorage::new(vec![
            ("a".into(), a.clone() as Arc<dyn Storage>),
            ("b".into(), b.clone() as Arc<dyn Storage>),
        ]));
        let s = ThrottledStorage::new(multi, None, Some(l));
        let check = |d: &[u8]| {
            if d.iter().all(|&x| x == 1) {
                Ok(())
            } else {
                Err(Error::integrity("bad tag"))
            }
        };
        assert_eq!(s.get_checked("seg", &check).unwrap(), good);
        // Over a single damaged copy the check failure is reported.
        let (_, l) = limiter(MB);
        let single = ThrottledStorage::new(a, None, Some(l));
        assert_eq!(
            single.get_checked("seg", &check).unwrap_err().kind,
            ErrorKind::Integrity
        );
    }

    #[test]
    fn system_clock_sleep_ends_when_its_token_is_cancelled() {
        let cancel = CancellationToken::new();
        let clock = SystemClock::cancelled_by(cancel.clone());
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                cancel.cancel();
            })
        };
        let started = Instant::now();
        let e = clock.sleep(Duration::from_secs(30)).unwrap_err();
        canceller.join().unwrap();
        assert_eq!(e.kind, ErrorKind::Interrupted);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(SystemClock::new().sleep(Duration::from_millis(1)).is_ok());
    }

    #[test]
    fn interrupted_wait_fails_the_transfer() {
        let (clock, l) = limiter(MB);
        clock.interrupt_after(0);
        let m = Arc::new(MemoryStorage::new("m"));
        let s = ThrottledStorage::new(m.clone(), Some(l), None);
        s.put("small", &[0; 10]).unwrap(); // within the burst: no wait
        let e = s.put("big", &vec![0; 2_000_000]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Interrupted);
        assert_eq!(m.keys(), vec!["small"]);
    }
}
