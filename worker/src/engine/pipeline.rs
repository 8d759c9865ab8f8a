//! The backup pipeline: a producer fills raw chunks of the tar stream, a pool of threads compresses
//! them (one per core), and a writer seals them in order (encryption, tags) and stores them as
//! segments. Stages are joined by bounded channels, so memory stays at a few chunks.

use crate::codec::{ChunkCompressor, Codec};
use crate::crypto::{self, SegmentEncryptor};
use crate::error::{Error, Result};
use crate::manifest::Segment;
use crate::storage::Storage;
use crate::CancellationToken;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::sync::Mutex;

/// Error text used when a stage stops because another one failed first.
const STOPPED: &str = "pipeline stopped";

/// The producer's end of the pipeline: an `io::Write`-like buffer that ships full chunks.
pub struct ChunkSink {
    buf: Vec<u8>,
    chunk: usize,
    seq: u64,
    tx: Sender<(u64, Vec<u8>)>,
    pool: Receiver<Vec<u8>>,
    cancel: CancellationToken,
}

impl ChunkSink {
    fn take_buffer(&self) -> Vec<u8> {
        self.pool
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.chunk))
    }

    /// Whether the run was cancelled: the producer checks it per entry, the sink per chunk.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn ship(&mut self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::interrupted());
        }
        let next = self.take_buffer();
        let full = std::mem::replace(&mut self.buf, next);
        self.tx
            .send((self.seq, full))
            .map_err(|_| Error::failure(STOPPED))?;
        self.seq += 1;
        Ok(())
    }

    /// Appends bytes to the stream.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = (self.chunk - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == self.chunk {
                self.ship()?;
            }
        }
        Ok(())
    }

    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, mut n: usize) -> Result<()> {
        while n > 0 {
            let k = (self.chunk - self.buf.len()).min(n);
            self.buf.resize(self.buf.len() + k, 0);
            n -= k;
            if self.buf.len() == self.chunk {
                self.ship()?;
            }
        }
        Ok(())
    }

    /// Reads up to `n` bytes of `file` straight into the stream; returns how many it read
    /// (fewer at end of file) and the read error that stopped it early, if any.
    pub fn read_from(&mut self, file: &mut File, n: u64) -> Result<(u64, Option<std::io::Error>)> {
        let mut done = 0u64;
        while done < n {
            let start = self.buf.len();
            let want = ((self.chunk - start) as u64).min(n - done) as usize;
            self.buf.resize(start + want, 0);
            let got = loop {
                match file.read(&mut self.buf[start..]) {
                    Ok(g) => break g,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(start);
                        return Ok((done, Some(e)));
                    }
                }
            };
            self.buf.truncate(start + got);
            done += got as u64;
            if self.buf.len() == self.chunk {
                self.ship()?;
            }
            if got == 0 {
                break;
            }
        }
        Ok((done, None))
    }

    fn finish(mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.ship()?;
        }
        Ok(())
    }
}

/// Where sealed segments go.
pub struct SegmentWriter<'a> {
    /// The storage.
    pub storage: &'a dyn Storage,
    /// Key prefix of the backup directory (segments go to `<prefix>/data/NNNNNNNN`).
    pub prefix: String,
    /// Keys when the backup is encrypted (possibly still being derived).
    pub keys: Option<std::sync::Arc<crate::crypto::PendingKeys>>,
    /// Compute everything but store nothing.
    pub dry_run: bool,
    /// Segments uploaded at once (`--queue-size`): hides the latency of remote storages; memory
    /// grows by one segment per slot.
    pub queue_size: usize,
    /// Counts the bytes uploaded, for progress reports.
    pub counters: &'a crate::progress::Counters,
}

/// What the pipeline produced.
pub struct PipelineOutput<T> {
    /// The producer's own result.
    pub produced: T,
    /// The segments, in order.
    pub segments: Vec<Segment>,
}

fn record(slot: &Mutex<Option<Error>>, e: Error) {
    let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
    if s.is_none() {
        *s = Some(e);
    }
}

/// Runs `produce` against a sink and stores what it writes as compressed, sealed segments.
/// Every key written is recorded in `written` as it is written, so the caller can delete them if
/// the backup fails (here or later); on failure the first real error is returned. Once `cancel`
/// is cancelled the sink refuses the next chunk, which stops every stage.
#[allow(clippy::too_many_arguments)]
pub fn run<T: Send>(
    codec: Codec,
    level: i32,
    chunk: usize,
    writer: SegmentWriter<'_>,
    written: &Mutex<Vec<String>>,
    cancel: &CancellationToken,
    produce: impl FnOnce(&mut ChunkSink) -> Result<T> + Send,
) -> Result<PipelineOutput<T>> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    let (job_tx, job_rx) = bounded::<(u64, Vec<u8>)>(1);
    let (res_tx, res_rx) = bounded::<(u64, u64, Vec<u8>)>(1);
    let (pool_tx, pool_rx) = bounded::<Vec<u8>>(1);
    let first_error = Mutex::new(None);

    let out = std::thread::scope(|s| {
        for _ in 0..workers {
            let job_rx = job_rx.clone();
            let res_tx = res_tx.clone();
            let pool_tx = pool_tx.clone();
            let first_error = &first_error;
            s.spawn(move || {
                let mut compressor = match ChunkCompressor::new(codec, level) {
                    Ok(c) => c,
                    Err(e) => return record(first_error, e),
                };
                for (seq, mut raw) in job_rx {
                    match compressor.compress(&raw) {
                        Ok(c) => {
                            if res_tx.send((seq, raw.len() as u64, c)).is_err() {
                                return;
                            }
                            raw.clear();
                            let _ = pool_tx.try_send(raw);
                        }
                        Err(e) => return record(first_error, e),
                    }
                }
            });
        }
        drop((job_rx, res_tx, pool_tx));

        let writer_handle = {
            let first_error = &first_error;
            s.spawn(move || -> Option<Vec<Segment>> {
                match write_segments(writer, res_rx, written) {
                    Ok(segs) => Some(segs),
                    Err(e) => {
                        record(first_error, e);
                        None
                    }
                }
            })
        };

        let mut sink = ChunkSink {
            buf: Vec::with_capacity(chunk),
            chunk,
            seq: 0,
            tx: job_tx,
            pool: pool_rx,
            cancel: cancel.clone(),
        };
        let produced = match produce(&mut sink).and_then(|p| sink.finish().map(|_| p)) {
            // The real error goes first (with its status and guidance), the stage sees "stopped".
            Err(e) if e.message != STOPPED => {
                record(&first_error, e);
                Err(Error::failure(STOPPED))
            }
            r => r,
        };
        let segments = writer_handle.join().unwrap_or(None);
        (produced, segments)
    });

    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let (produced, segments) = out;
    let produced = produced?;
    let segments = segments.ok_or_else(|| Error::failure("segment writer failed"))?;
    Ok(PipelineOutput { produced, segments })
}

fn write_segments(
    w: SegmentWriter<'_>,
    results: Receiver<(u64, u64, Vec<u8>)>,
    written: &Mutex<Vec<String>>,
) -> Result<Vec<Segment>> {
    let upload_failed = Mutex::new(None);
    // A rendezvous channel: a sealed segment waits until an uploader takes it, so at most
    // `queue_size` segments are held for upload.
    let (upload_tx, upload_rx) = bounded::<(String, Vec<u8>)>(0);
    let sealed = std::thread::scope(|s| {
        for _ in 0..w.queue_size.max(1) {
            let upload_rx = upload_rx.clone();
            let (storage, upload_failed) = (w.storage, &upload_failed);
            let stored = &w.counters.bytes_stored;
            s.spawn(move || {
                for (key, data) in upload_rx {
                    if let Err(e) = storage.put(&key, &data) {
                        return record(upload_failed, e);
                    }
                    stored.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        drop(upload_rx);
        let sealed = seal_segments(&w, results, written, &upload_tx, &upload_failed);
        drop(upload_tx);
        sealed
    });
    if let Some(e) = upload_failed
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        return Err(e);
    }
    sealed
}

/// Encrypts and tags segments in order and hands them to the uploaders.
fn seal_segments(
    w: &SegmentWriter<'_>,
    results: Receiver<(u64, u64, Vec<u8>)>,
    written: &Mutex<Vec<String>>,
    uploads: &Sender<(String, Vec<u8>)>,
    upload_failed: &Mutex<Option<Error>>,
) -> Result<Vec<Segment>> {
    let mut enc = w
        .keys
        .as_ref()
        .map(|k| SegmentEncryptor::new(k.get().clone()));
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut segments = Vec::new();
    for (seq, raw_size, data) in results {
        pending.insert(seq, (raw_size, data));
        while let Some((raw_size, data)) = pending.remove(&next) {
            let (stored, tag) = match enc.as_mut() {
                Some(enc) => enc.seal(next, data),
                None => {
                    let tag = crypto::segment_tag(None, next, &[], &data);
                    (data, tag)
                }
            };
            segments.push(Segment {
                size: stored.len() as u64,
                raw_size,
                tag,
            });
            if !w.dry_run {
                let key = format!("{}/data/{next:08}", w.prefix);
                written
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(key.clone());
                let failed = upload_failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some();
                if failed || uploads.send((key, stored)).is_err() {
                    return Err(Error::failure(STOPPED));
                }
            }
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err(Error::failure(STOPPED));
    }
    Ok(segments)
}
