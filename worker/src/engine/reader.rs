//! Reading a stored backup back: its keys (the passphrase check), its index, and its archive as a
//! `Read` stream assembled from segments that are fetched, verified, decrypted and decompressed in
//! parallel. No byte leaves here before its segment passed its tag check.

use crate::catalog::Record;
use crate::crypto::{self, Keys};
use crate::error::{Error, ErrorKind, Result, DAMAGED_GUIDANCE};
use crate::index::{self, Entry};
use crate::manifest::Manifest;
use crate::storage::Storage;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// Derives a backup's keys from `pass` and checks its manifest tag; `None` when unencrypted.
pub fn open_keys(storage: &dyn Storage, rec: &Record, pass: Option<&[u8]>) -> Result<Option<Keys>> {
    let what = storage.describe(&format!("{}/manifest.json", rec.dir));
    let keys = match (&rec.manifest.encryption, pass) {
        (None, _) => None,
        (Some(enc), Some(pass)) => Some(enc.keys(pass)?),
        (Some(_), None) => {
            return Err(Error::usage(format!(
                "backup {} is encrypted: give --encrypt-pass-file",
                rec.manifest.backup_id
            )))
        }
    };
    Manifest::verify(&rec.raw, &rec.manifest, keys.as_ref(), &what)?;
    Ok(keys)
}

/// Derives and checks the keys of several backups at once (one KDF run per backup, in parallel);
/// one outcome per backup, in order.
pub fn open_each_keys(
    storage: &dyn Storage,
    recs: &[&Record],
    pass: Option<&[u8]>,
) -> Vec<Result<Option<Keys>>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = recs
            .iter()
            .map(|r| s.spawn(move || open_keys(storage, r, pass)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::failure("key derivation panicked")))
            })
            .collect()
    })
}

/// Like [`open_each_keys`], failing on the first backup whose keys or manifest do not check out.
pub fn open_all_keys(
    storage: &dyn Storage,
    recs: &[&Record],
    pass: Option<&[u8]>,
) -> Result<Vec<Option<Keys>>> {
    open_each_keys(storage, recs, pass).into_iter().collect()
}

/// Reads, verifies, decrypts and parses a backup's index.
pub fn read_index(storage: &dyn Storage, rec: &Record, keys: Option<&Keys>) -> Result<Vec<Entry>> {
    let key = format!("{}/index", rec.dir);
    let what = storage.describe(&key);
    let want = &rec.manifest.index;
    let check = |data: &[u8]| {
        if data.len() as u64 != want.size
            || !crypto::tags_equal(&crypto::index_tag(keys, data), &want.tag)
        {
            return Err(
                Error::integrity(format!("{what} failed its integrity check"))
                    .with_guidance(DAMAGED_GUIDANCE),
            );
        }
        Ok(())
    };
    let mut data = storage
        .get_checked(&key, &check)
        .map_err(|e| match e.kind {
            ErrorKind::NotFound => {
                Error::integrity(format!("{what} is missing")).with_guidance(DAMAGED_GUIDANCE)
            }
            _ => e,
        })?;
    if let Some(k) = keys {
        k.decrypt_index(&mut data);
    }
    index::decode(&data, &what)
}

type Piece = Result<Vec<u8>>;

/// A backup's archive as a byte stream.
pub struct ArchiveStream {
    results: Receiver<(u64, Piece)>,
    credits: Sender<()>,
    pending: BTreeMap<u64, Piece>,
    next: u64,
    total: u64,
    cur: Vec<u8>,
    pos: usize,
    /// The first error met, kept so callers can report it with its kind.
    pub error: Arc<Mutex<Option<Error>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// A backup's segments, each loadable on its own: fetched, checked against its tag, decrypted and
/// decompressed.
pub struct SegmentSource {
    storage: Arc<dyn Storage>,
    dir: String,
    manifest: Manifest,
    keys: Option<Keys>,
    /// Stored-stream offset of each segment's first byte.
    starts: Vec<u64>,
}

impl SegmentSource {
    /// The segments of `rec`, under `keys` when it is encrypted.
    pub fn new(storage: Arc<dyn Storage>, rec: &Record, keys: Option<Keys>) -> Self {
        let mut starts = Vec::with_capacity(rec.manifest.segments.len());
        let mut off = 0;
        for s in &rec.manifest.segments {
            starts.push(off);
            off += s.size;
        }
        SegmentSource {
            storage,
            dir: rec.dir.clone(),
            manifest: rec.manifest.clone(),
            keys,
            starts,
        }
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the backup has no segment (never true for a backup this tool wrote).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The storage key of segment `k`.
    pub fn key(&self, k: usize) -> String {
        format!("{}/data/{k:08}", self.dir)
    }

    /// Stored bytes `[from, to)` of the concatenated segments (reads the segments' tails).
    fn stream_range(&self, from: u64, to: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((to - from) as usize);
        for (k, seg) in self.manifest.segments.iter().enumerate() {
            let (s, e) = (self.starts[k], self.starts[k] + seg.size);
            let (a, b) = (from.max(s), to.min(e));
            if a < b {
                out.extend(self.storage.get_range(&self.key(k), a - s, b - a)?);
            }
        }
        Ok(out)
    }

    /// Checks segment `k`'s stored bytes (size and tag, with `chain` the ciphertext bytes its CFB
    /// stream continues from).
    fn check(&self, k: usize, chain: &[u8], data: &[u8]) -> Result<()> {
        let what = self.storage.describe(&self.key(k));
        let seg = &self.manifest.segments[k];
        if data.len() as u64 != seg.size {
            return Err(Error::integrity(format!(
                "segment {what} has {} bytes, the manifest says {} (truncated or replaced)",
                data.len(),
                seg.size
            ))
            .with_guidance(DAMAGED_GUIDANCE));
        }
        let tag = crypto::segment_tag(self.keys.as_ref(), k as u64, chain, data);
        if !crypto::tags_equal(&tag, &seg.tag) {
            return Err(
                Error::integrity(format!("segment {what} failed its integrity check"))
                    .with_guidance(DAMAGED_GUIDANCE),
            );
        }
        Ok(())
    }

    /// Fetches segment `k` and checks it; returns its stored bytes, its chain bytes and its
    /// ciphertext offset. The chain bytes are read from the previous segment's tail as stored;
    /// with `trusted_chain` they come from checked copies of the previous segments instead (a
    /// storage with several copies may hold a damaged tail that only the whole segment's check
    /// reveals).
    fn fetch(&self, k: usize, trusted_chain: bool) -> Result<(Vec<u8>, Vec<u8>, u64)> {
        let key = self.key(k);
        let (chain, o) = match &self.keys {
            Some(_) if k > 0 => {
                let o = self.starts[k] - crypto::HEADER_LEN as u64;
                let r = crypto::chain_range(o);
                let h = crypto::HEADER_LEN as u64;
                let (from, to) = (r.start + h, r.end + h);
                let chain = if trusted_chain {
                    self.checked_range(from, to)?
                } else {
                    self.stream_range(from, to)?
                };
                (chain, o)
            }
            _ => (Vec::new(), 0),
        };
        let data = self
            .storage
            .get_checked(&key, &|data| self.check(k, &chain, data))
            .map_err(|e| match e.kind {
                ErrorKind::NotFound => Error::integrity(format!(
                    "segment {} is missing",
                    self.storage.describe(&key)
                ))
                .with_guidance(DAMAGED_GUIDANCE),
                _ => e,
            })?;
        Ok((data, chain, o))
    }

    /// Stored bytes `[from, to)` of the concatenated segments, each taken from a checked copy.
    fn checked_range(&self, from: u64, to: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((to - from) as usize);
        for (k, seg) in self.manifest.segments.iter().enumerate() {
            let (s, e) = (self.starts[k], self.starts[k] + seg.size);
            let (a, b) = (from.max(s), to.min(e));
            if a < b {
                let (data, _, _) = self.fetch(k, false)?;
                out.extend_from_slice(&data[(a - s) as usize..(b - s) as usize]);
            }
        }
        Ok(out)
    }

    /// Segment `k` as tar bytes, after its tag check.
    pub fn load(&self, k: usize) -> Result<Vec<u8>> {
        let (data, chain, o) = match self.fetch(k, false) {
            Err(e) if e.kind == ErrorKind::Integrity && k > 0 && self.keys.is_some() => {
                self.fetch(k, true)?
            }
            r => r?,
        };
        let plain = match &self.keys {
            Some(keys) => crypto::open_segment(keys, k as u64, o, &chain, data)?,
            None => data,
        };
        let raw_size = self.manifest.segments[k].raw_size as usize;
        self.manifest
            .compression
            .codec
            .decompress(&plain, raw_size)
            .map_err(|e| {
                let what = self.storage.describe(&self.key(k));
                Error::integrity(format!("segment {what}: {e}")).with_guidance(DAMAGED_GUIDANCE)
            })
    }
}

impl ArchiveStream {
    /// Starts fetching `rec`'s segments with one worker per core, or `queue_size` workers when
    /// that is more (a remote storage's latency is hidden by more requests in flight).
    pub fn open(
        storage: Arc<dyn Storage>,
        rec: &Record,
        keys: Option<Keys>,
        queue_size: usize,
    ) -> Self {
        let workers_n = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(queue_size)
            .max(1);
        let source = Arc::new(SegmentSource::new(storage, rec, keys));
        let total = rec.manifest.segments.len() as u64;
        // Credits bound how far fetching runs ahead of the consumer.
        // At most `window` segments are fetched ahead of the one being consumed.
        let window = workers_n;
        let (credit_tx, credit_rx) = bounded::<()>(window + 1);
        for _ in 0..window {
            let _ = credit_tx.send(());
        }
        let (job_tx, job_rx) = bounded::<u64>(0);
        let (res_tx, res_rx) = bounded::<(u64, Piece)>(1);
        let mut workers = Vec::new();
        workers.push(std::thread::spawn(move || {
            for k in 0..total {
                if credit_rx.recv().is_err() || job_tx.send(k).is_err() {
                    return;
                }
            }
        }));
        for _ in 0..workers_n {
            let job_rx = job_rx.clone();
            let res_tx = res_tx.clone();
            let source = source.clone();
            workers.push(std::thread::spawn(move || {
                for k in job_rx {
                    let piece = source.load(k as usize);
                    let failed = piece.is_err();
                    if res_tx.send((k, piece)).is_err() || failed {
                        return;
                    }
                }
            }));
        }
        ArchiveStream {
            results: res_rx,
            credits: credit_tx,
            pending: BTreeMap::new(),
            next: 0,
            total,
            cur: Vec::new(),
            pos: 0,
            error: Arc::new(Mutex::new(None)),
            workers,
        }
    }

    fn fail(&self, e: Error) -> std::io::Error {
        let msg = e.message.clone();
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        std::io::Error::other(msg)
    }

    fn next_piece(&mut self) -> std::io::Result<bool> {
        if self.next >= self.total {
            return Ok(false);
        }
        loop {
            if let Some(piece) = self.pending.remove(&self.next) {
                self.next += 1;
                let _ = self.credits.try_send(());
                return match piece {
                    Ok(data) => {
                        self.cur = data;
                        self.pos = 0;
                        Ok(true)
                    }
                    Err(e) => Err(self.fail(e)),
                };
            }
            match self.results.recv() {
                Ok((k, piece)) => {
                    self.pending.insert(k, piece);
                }
                Err(_) => return Err(self.fail(Error::failure("segment readers stopped"))),
            }
        }
    }

    /// Takes the first error recorded while streaming, if any.
    pub fn take_error(&self) -> Option<Error> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Read for ArchiveStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            if !self.next_piece()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ArchiveStream {
    fn drop(&mut self) {
        // Unblock the feeder and workers, then wait for them.
        let (dead_tx, dead_rx) = bounded(0);
        self.results = dead_rx;
        drop(dead_tx);
        let (ctx, _) = bounded(1);
        self.credits = ctx;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
