//! The SFTP operations of the SSH backend: atomic writes through a temporary file and a rename,
//! pipelined reads, directory listing and creation, deletes that tidy empty directories, fsync.
//! Each runs on a live [`Conn`]; the [`Storage`](super::Storage) impl calls them.

use super::session::Conn;
use super::{BoxFuture, ObjectInfo, SshStorage};
use crate::error::{Error, ErrorKind, Result};
use crate::timestamp::Timestamp;
use futures::stream::{FuturesUnordered, StreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use std::sync::atomic::Ordering;

/// How many read or write requests of one object are in flight at once (each up to 255 KiB).
pub(super) const PIPELINE_DEPTH: usize = 16;

/// How many directories `list` and `tidy` read at once.
const DIR_CONCURRENCY: usize = 8;

/// An open SFTP handle with its slot of [`MAX_OPEN_HANDLES`](super::session::MAX_OPEN_HANDLES).
struct OpenHandle<'a> {
    handle: String,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl SshStorage {
    async fn open<'c>(
        &self,
        conn: &'c Conn,
        path: &str,
        flags: OpenFlags,
    ) -> std::result::Result<OpenHandle<'c>, SftpError> {
        let permit = conn
            .handles
            .acquire()
            .await
            .map_err(|_| SftpError::UnexpectedBehavior("session closed".into()))?;
        let handle = conn
            .call(conn.sftp.open(path, flags, FileAttributes::empty()))
            .await?
            .handle;
        Ok(OpenHandle {
            handle,
            _permit: permit,
        })
    }

    async fn opendir<'c>(
        &self,
        conn: &'c Conn,
        path: &str,
    ) -> std::result::Result<OpenHandle<'c>, SftpError> {
        let permit = conn
            .handles
            .acquire()
            .await
            .map_err(|_| SftpError::UnexpectedBehavior("session closed".into()))?;
        let handle = conn.call(conn.sftp.opendir(path)).await?.handle;
        Ok(OpenHandle {
            handle,
            _permit: permit,
        })
    }

    /// Creates `dir` and its missing parents; an existing directory is fine.
    pub(super) fn mkdir_p<'a>(
        &'a self,
        conn: &'a Conn,
        dir: &'a str,
    ) -> BoxFuture<'a, std::result::Result<(), SftpError>> {
        Box::pin(async move {
            match conn
                .call(conn.sftp.mkdir(dir, FileAttributes::empty()))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if status_of(&e) == Some(StatusCode::NoSuchFile) => {
                    match parent(dir) {
                        Some(p) => self.mkdir_p(conn, p).await?,
                        None => return Err(e),
                    }
                    match conn
                        .call(conn.sftp.mkdir(dir, FileAttributes::empty()))
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) => self.exists_as_dir(conn, dir, e).await,
                    }
                }
                Err(e) => self.exists_as_dir(conn, dir, e).await,
            }
        })
    }

    /// After a failed mkdir: fine when `dir` exists as a directory (OpenSSH reports EEXIST as a
    /// generic failure), else the mkdir's error.
    async fn exists_as_dir(
        &self,
        conn: &Conn,
        dir: &str,
        err: SftpError,
    ) -> std::result::Result<(), SftpError> {
        if status_of(&err).is_none() {
            return Err(err);
        }
        match conn.call(conn.sftp.stat(dir)).await {
            Ok(a) if is_dir(&a.attrs) => Ok(()),
            _ => Err(err),
        }
    }

    pub(super) async fn put_async(&self, conn: &Conn, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key);
        let dir = parent(&path).unwrap_or(".");
        let tmp = format!("{path}.tmp.{}", random_suffix());
        let Err(e) = self.write_and_rename(conn, dir, &tmp, &path, data).await else {
            return Ok(());
        };
        let what = self.url_of(&path);
        let failure = status_of(&e) == Some(StatusCode::Failure);
        let mut err = self.sftp_error(&format!("writing {what}"), e, true);
        if err.kind == ErrorKind::NotFound {
            // A directory vanished under us: not "this object is missing".
            err = Error::failure(err.message);
        }
        if conn.alive() {
            let _ = conn.call(conn.sftp.remove(tmp.as_str())).await;
            if failure {
                if let Some(why) = self.why_write_failed(conn, dir, data.len() as u64).await {
                    err = Error::failure(format!("writing {what} failed on the server: {why}"));
                }
            }
        }
        Err(err)
    }

    /// Writes `data` to the new file `tmp` (creating `dir` when missing), closes it and renames
    /// it over `path`.
    async fn write_and_rename(
        &self,
        conn: &Conn,
        dir: &str,
        tmp: &str,
        path: &str,
        data: &[u8],
    ) -> std::result::Result<(), SftpError> {
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
        let file = match self.open(conn, tmp, flags).await {
            Err(e) if status_of(&e) == Some(StatusCode::NoSuchFile) => {
                self.mkdir_p(conn, dir).await?;
                self.open(conn, tmp, flags).await?
            }
            other => other?,
        };
        let written = async {
            let mut inflight = FuturesUnordered::new();
            for (i, chunk) in data.chunks(conn.write_chunk as usize).enumerate() {
                if inflight.len() >= PIPELINE_DEPTH {
                    if let Some(r) = inflight.next().await {
                        r?;
                    }
                }
                let offset = i as u64 * conn.write_chunk;
                inflight.push(
                    conn.call(
                        conn.sftp
                            .write(file.handle.as_str(), offset, chunk.to_vec()),
                    ),
                );
            }
            while let Some(r) = inflight.next().await {
                r?;
            }
            Ok(())
        }
        .await;
        // Close even after a failed write; the close can report a failed write too (NFS).
        let closed = conn
            .call(conn.sftp.close(file.handle.as_str()))
            .await
            .map(drop);
        drop(file);
        written.and(closed)?;
        self.rename_over(conn, tmp, path).await
    }

    /// After a write failed with SFTP's generic failure status (which is what OpenSSH reports
    /// for ENOSPC, EDQUOT and EROFS alike): says whether the remote filesystem is full or
    /// read-only, when the server can tell (`statvfs@openssh.com`).
    async fn why_write_failed(&self, conn: &Conn, dir: &str, needed: u64) -> Option<String> {
        const ST_RDONLY: u64 = 1;
        let st = conn.call(conn.sftp.statvfs(dir)).await.ok()?;
        let place = self.url_of(dir);
        if st.flags & ST_RDONLY != 0 {
            return Some(format!(
                "the remote filesystem of {place} is read-only; choose another container"
            ));
        }
        let free = st.blocks_avail.saturating_mul(st.fragment_size.max(1));
        if free < needed.saturating_add(st.block_size) {
            return Some(format!(
                "the remote disk is full ({} free on the filesystem of {place}, the object needs \
                 {}): free space there or choose another container",
                human_bytes(free),
                human_bytes(needed)
            ));
        }
        None
    }

    /// Renames `from` over `to`, replacing it: atomically with `posix-rename@openssh.com`, else
    /// with a plain rename after removing `to`.
    async fn rename_over(
        &self,
        conn: &Conn,
        from: &str,
        to: &str,
    ) -> std::result::Result<(), SftpError> {
        if conn.posix_rename {
            let mut data = Vec::with_capacity(8 + from.len() + to.len());
            for s in [from, to] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            return match conn
                .call(conn.sftp.extended("posix-rename@openssh.com", data))
                .await?
            {
                Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
                Packet::Status(s) => Err(SftpError::Status(s)),
                _ => Err(SftpError::UnexpectedPacket),
            };
        }
        match conn.call(conn.sftp.rename(from, to)).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e).is_some() && conn.call(conn.sftp.stat(to)).await.is_ok() => {
                conn.call(conn.sftp.remove(to)).await?;
                conn.call(conn.sftp.rename(from, to)).await.map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads `[offset, offset + len)` of `key` (the whole object for `None`), clipped to its end.
    pub(super) async fn read_async(
        &self,
        conn: &Conn,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        let path = self.path(key);
        let what = self.url_of(&path);
        let reading = |e| self.sftp_error(&format!("reading {what}"), e, false);
        let file = match self.open(conn, &path, OpenFlags::READ).await {
            Err(e) if status_of(&e) == Some(StatusCode::NoSuchFile) => {
                return Err(Error::not_found(format!("{what} is missing")))
            }
            other => other.map_err(reading)?,
        };
        let result = async {
            let size = conn
                .call(conn.sftp.fstat(file.handle.as_str()))
                .await?
                .attrs
                .size;
            let (start, want) = range.unwrap_or((0, u64::MAX));
            let end = start.saturating_add(want);
            match size {
                Some(size) => {
                    self.read_span(conn, &file.handle, start.min(size), end.min(size))
                        .await
                }
                // No size (not OpenSSH): read on until the end of the file.
                None => self.read_span(conn, &file.handle, start, end).await,
            }
        }
        .await;
        let closed = conn.call(conn.sftp.close(file.handle.as_str())).await;
        let data = result.map_err(reading)?;
        closed.map_err(reading)?;
        Ok(data)
    }

    /// Reads `[start, end)` of an open file with pipelined requests; stops early at the end of
    /// the file. Short replies are completed with further requests.
    async fn read_span(
        &self,
        conn: &Conn,
        handle: &str,
        start: u64,
        end: u64,
    ) -> std::result::Result<Vec<u8>, SftpError> {
        let chunk = conn.read_chunk;
        let mut buf = Vec::new();
        if end > start && end - start < (1 << 40) {
            buf = vec![0u8; (end - start) as usize];
        }
        let mut eof = end;
        let mut next = start;
        let mut inflight = FuturesUnordered::new();
        let request = |offset: u64, len: u64| async move {
            let reply = conn.call(conn.sftp.read(handle, offset, len as u32)).await;
            (offset, len, reply)
        };
        loop {
            while inflight.len() < PIPELINE_DEPTH && next < eof {
                let len = chunk.min(eof - next);
                inflight.push(request(next, len));
                next += len;
            }
            let Some((offset, len, reply)) = inflight.next().await else {
                break;
            };
            match reply {
                Ok(d) if !d.data.is_empty() => {
                    let got = (d.data.len() as u64).min(len);
                    let at = (offset - start) as usize;
                    if buf.len() < at + got as usize {
                        buf.resize(at + got as usize, 0);
                    }
                    buf[at..at + got as usize].copy_from_slice(&d.data[..got as usize]);
                    if got < len && offset + got < eof {
                        inflight.push(request(offset + got, len - got));
                    }
                }
                Ok(_) => eof = eof.min(offset),
                Err(e) if status_of(&e) == Some(StatusCode::Eof) => eof = eof.min(offset),
                Err(e) => return Err(e),
            }
        }
        buf.truncate(eof.saturating_sub(start).min(buf.len() as u64) as usize);
        Ok(buf)
    }

    /// The entries of a remote directory, without `.` and `..`; `None` when it does not exist.
    async fn read_dir(
        &self,
        conn: &Conn,
        path: &str,
    ) -> std::result::Result<Option<Vec<(String, FileAttributes)>>, SftpError> {
        let dir = match self.opendir(conn, path).await {
            Ok(d) => d,
            Err(e) if status_of(&e) == Some(StatusCode::NoSuchFile) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        let listed = loop {
            match conn.call(conn.sftp.readdir(dir.handle.as_str())).await {
                Ok(name) => entries.extend(
                    name.files
                        .into_iter()
                        .filter(|f| f.filename != "." && f.filename != "..")
                        .map(|f| (f.filename, f.attrs)),
                ),
                Err(e) if status_of(&e) == Some(StatusCode::Eof) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let closed = conn.call(conn.sftp.close(dir.handle.as_str())).await;
        listed?;
        closed?;
        Ok(Some(entries))
    }

    pub(super) async fn list_async(&self, conn: &Conn, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // Walk only the deepest directory the prefix names, and below it only directories that
        // can hold matching keys.
        let (dir_rel, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut out = Vec::new();
        let mut pending = vec![dir_rel.to_string()];
        let mut inflight = FuturesUnordered::new();
        loop {
            while inflight.len() < DIR_CONCURRENCY {
                let Some(rel) = pending.pop() else { break };
                let path = self.path(&rel);
                inflight.push(async move {
                    let entries = self.read_dir(conn, &path).await;
                    (rel, path, entries)
                });
            }
            let Some((rel, path, entries)) = inflight.next().await else {
                break;
            };
            let entries = entries.map_err(|e| {
                self.sftp_error(&format!("listing {}", self.url_of(&path)), e, false)
            })?;
            for (name, attrs) in entries.unwrap_or_default() {
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if is_dir(&attrs) {
                    let as_dir = format!("{key}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        pending.push(key);
                    }
                } else if is_file(&attrs) && key.starts_with(prefix) {
                    out.push(ObjectInfo {
                        key,
                        size: attrs.size.unwrap_or(0),
                        modified: attrs.mtime.map(|s| Timestamp {
                            micros: i64::from(s) * 1_000_000,
                        }),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub(super) async fn delete_async(&self, conn: &Conn, key: &str) -> Result<()> {
        let path = self.path(key);
        match conn.call(conn.sftp.remove(path.as_str())).await {
            Ok(_) => {}
            Err(e) if status_of(&e) == Some(StatusCode::NoSuchFile) => {}
            Err(e) => {
                return Err(self.sftp_error(&format!("deleting {}", self.url_of(&path)), e, false))
            }
        }
        // Remove directories left empty, up to the container (a non-empty one stops it).
        let mut rel = key.trim_matches('/');
        while let Some((up, _)) = rel.rsplit_once('/') {
            if up.is_empty() || conn.call(conn.sftp.rmdir(self.path(up))).await.is_err() {
                break;
            }
            rel = up;
        }
        Ok(())
    }

    /// Removes the empty directories below `path`; true when `path` itself ends up empty.
    pub(super) fn prune_empty<'a>(
        &'a self,
        conn: &'a Conn,
        path: String,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let entries = match self.read_dir(conn, &path).await {
                Ok(Some(entries)) => entries,
                Ok(None) => return Ok(false),
                Err(e) => {
                    return Err(self.sftp_error(
                        &format!("listing {}", self.url_of(&path)),
                        e,
                        false,
                    ))
                }
            };
            let mut empty = true;
            let mut subdirs = Vec::new();
            for (name, attrs) in entries {
                if is_dir(&attrs) {
                    subdirs.push(format!("{path}/{name}"));
                } else {
                    empty = false;
                }
            }
            let results: Vec<_> = futures::stream::iter(subdirs)
                .map(|sub| async move {
                    let now_empty = self.prune_empty(conn, sub.clone()).await?;
                    Ok::<_, Error>(
                        now_empty && conn.call(conn.sftp.rmdir(sub.as_str())).await.is_ok(),
                    )
                })
                .buffer_unordered(DIR_CONCURRENCY)
                .collect()
                .await;
            for removed in results {
                if !removed? {
                    empty = false;
                }
            }
            Ok(empty)
        })
    }

    pub(super) async fn sync_async(&self, conn: &Conn, keys: &[String]) -> Result<()> {
        let results: Vec<Result<()>> = futures::stream::iter(keys)
            .map(|key| async move {
                let path = self.path(key);
                let what = self.url_of(&path);
                let syncing = |e| self.sftp_error(&format!("syncing {what}"), e, true);
                if !conn.fsync {
                    // Nothing to sync with; at least check that the object is there.
                    return match conn.call(conn.sftp.stat(path.as_str())).await {
                        Ok(_) => Ok(()),
                        Err(e) if status_of(&e) == Some(StatusCode::NoSuchFile) => {
                            Err(Error::not_found(format!("{what} is missing")))
                        }
                        Err(e) => Err(syncing(e)),
                    };
                }
                let file = match self.open(conn, &path, OpenFlags::READ).await {
                    Err(e) if status_of(&e) == Some(StatusCode::NoSuchFile) => {
                        return Err(Error::not_found(format!("{what} is missing")))
                    }
                    other => other.map_err(syncing)?,
                };
                let synced = conn.call(conn.sftp.fsync(file.handle.as_str())).await;
                let closed = conn.call(conn.sftp.close(file.handle.as_str())).await;
                synced.map_err(syncing)?;
                closed.map_err(syncing)?;
                Ok(())
            })
            .buffer_unordered(PIPELINE_DEPTH)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

fn status_of(e: &SftpError) -> Option<StatusCode> {
    match e {
        SftpError::Status(s) => Some(s.status_code),
        _ => None,
    }
}

const S_IFMT: u32 = 0o170000;

pub(super) fn is_dir(attrs: &FileAttributes) -> bool {
    attrs.permissions.is_some_and(|p| p & S_IFMT == 0o040000)
}

fn is_file(attrs: &FileAttributes) -> bool {
    attrs.permissions.is_some_and(|p| p & S_IFMT == 0o100000)
}

/// The parent of a remote path (`None` at the top: `/`, `.` or a single relative name).
pub(super) fn parent(path: &str) -> Option<&str> {
    match path.rsplit_once('/') {
        Some(("", _)) if path != "/" => Some("/"),
        Some((up, _)) if !up.is_empty() => Some(up),
        _ => None,
    }
}

/// `1.5 MiB`-style sizes for messages.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// 16 hex digits for temporary names.
fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the time and a counter are unique enough within this process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) ^ Timestamp::now().micros as u64;
        bytes = n.to_le_bytes();
    }
    hex::encode(bytes)
}
