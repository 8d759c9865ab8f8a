//! SSH storage: the container is a directory on a remote host, reached over SFTP (GitHub issue #3).
//!
//! **Host keys.** The server's host key is checked against an OpenSSH `known_hosts` file (plain,
//! `[host]:port`, wildcard, negated and hashed `|1|...` entries, `@revoked` markers): an unknown
//! key and a changed key are both refused, with a message that says how to add the key or why a
//! changed key is dangerous. OpenStack Freezer accepted any key; this never does.
//!
//! **Connection.** [`SshStorage::new`] only reads the client key; the connection is made by the
//! first operation and then kept. One SSH connection carries one SFTP session on which every
//! caller's requests are pipelined (the engine calls from several threads at once): a large object
//! goes up or down in chunks of up to 255 KiB with [`PIPELINE_DEPTH`] requests in flight. When the
//! connection fails (sshd restarted, network reset, timeout) the operations on it fail at once
//! with a *transient* error and the connection is marked broken; the next operation connects
//! again (a connection already found dead before an operation is replaced without an error), so
//! a retry cures a server restart. Authentication and host-key failures, denied permissions and a
//! full remote disk are permanent.
//!
//! **Atomic writes.** An object is written to `<name>.tmp.<random>` in its final directory, closed,
//! then renamed over the final name with the `posix-rename@openssh.com` extension (an atomic
//! `rename(2)`, which replaces an existing object). A server without it gets the plain SFTP rename,
//! which refuses to replace: the old object is then removed first, which leaves a short window
//! without it. A failed write removes its temporary file when it still can; otherwise the `.tmp.`
//! file is debris that prune removes. [`Storage::sync`] fsyncs the named objects through
//! `fsync@openssh.com` (OpenSSH has it); SFTP cannot fsync a directory, so the renames are as
//! durable as the remote filesystem makes them.
//!
//! Like the S3 backend, [`SshStorage`] owns a small tokio runtime and blocks on it: it must not be
//! called from inside another tokio runtime's asynchronous context.

use super::{ObjectInfo, Storage};
use crate::error::{Error, ErrorKind, Result};
use crate::timestamp::Timestamp;
use futures::stream::{FuturesUnordered, StreamExt};
use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How many read or write requests of one object are in flight at once (each up to 255 KiB).
const PIPELINE_DEPTH: usize = 16;

/// The largest read or write request: OpenSSH's limit (256 KiB messages less 1 KiB), used when
/// the server announces at least that through `limits@openssh.com`.
const MAX_CHUNK: u64 = 255 * 1024;

/// The chunk size every SFTP server must accept, for servers that announce no limits.
const SAFE_CHUNK: u64 = 32 * 1024;

/// How long one SFTP request may go unanswered before the connection counts as broken. Long,
/// because an fsync of a large object on a slow disk is one request; a dead peer is noticed
/// sooner through SSH keepalives.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// SSH keepalives: one after this much silence from the server, and the connection is dropped
/// after [`KEEPALIVE_MAX`] unanswered ones.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;

/// At most this many SFTP handles open at once on one session. OpenSSH's handles are small
/// integers sent as 4 raw bytes, and russh-sftp keeps handles as UTF-8 strings: a handle number
/// of 128 or more would be mangled. Bounding the open handles keeps the numbers low.
const MAX_OPEN_HANDLES: usize = 64;

/// How many directories `list` and `tidy` read at once.
const DIR_CONCURRENCY: usize = 8;

/// Where and how to reach an SSH container. Built from the worker's configuration; holds the
/// paths of the secrets (the private key), never their contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    /// The remote host name or address, as it appears in `known_hosts`.
    pub host: String,
    /// The SSH port (22 by default on real hosts).
    pub port: u16,
    /// The remote user to log in as.
    pub user: String,
    /// The client's private key (OpenSSH, PEM or PKCS#8 format; ed25519, ECDSA or RSA), without a
    /// passphrase.
    pub key_file: PathBuf,
    /// The OpenSSH `known_hosts` file the server's host key must be listed in
    /// (`ssh-keyscan -p PORT HOST >> FILE` writes one, to be checked against the host's
    /// fingerprint).
    pub known_hosts: PathBuf,
    /// The container: a directory on the remote host, absolute or relative to the user's home.
    pub root: String,
    /// How long connecting (TCP, then the SSH handshake and login) may take before the attempt
    /// fails as transient.
    pub connect_timeout: Duration,
}

impl SshConfig {
    /// A configuration for the container `root` on `user@host:port`, logging in with `key_file`
    /// and checking the host key against `known_hosts`, with a 10 s connect timeout.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        key_file: impl Into<PathBuf>,
        known_hosts: impl Into<PathBuf>,
        root: impl Into<String>,
    ) -> Self {
        SshConfig {
            host: host.into(),
            port,
            user: user.into(),
            key_file: key_file.into(),
            known_hosts: known_hosts.into(),
            root: root.into(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A container that is a directory on a remote host, reached over SSH/SFTP. See the module
/// documentation for the connection, host-key and atomicity rules.
pub struct SshStorage {
    config: SshConfig,
    runtime: tokio::runtime::Runtime,
    key: Arc<PrivateKey>,
    /// The remote container directory, without a trailing `/` (`/` itself stays `/`; an empty
    /// root is `.`, the user's home).
    root: String,
    /// `ssh://user@host:port`, for messages.
    url: String,
    /// The current connection; `None` before the first operation. Replaced when it broke.
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl fmt::Debug for SshStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshStorage")
            .field("url", &self.url)
            .field("root", &self.root)
            .field("known_hosts", &self.config.known_hosts)
            .finish_non_exhaustive()
    }
}

/// One live SSH connection with its SFTP session and what the server supports.
struct Conn {
    /// Keeps the SSH session alive; tells whether it still is.
    handle: client::Handle<HostKeyCheck>,
    sftp: RawSftpSession,
    posix_rename: bool,
    fsync: bool,
    read_chunk: u64,
    write_chunk: u64,
    handles: tokio::sync::Semaphore,
    /// Set (to `true`) when a request failed in a way that means the connection is gone or hung;
    /// requests still waiting on this connection then fail at once instead of waiting for their
    /// timeout (once the connection dies, russh-sftp may leave them unanswered).
    broken: tokio::sync::watch::Sender<bool>,
}

impl Conn {
    fn alive(&self) -> bool {
        !*self.broken.borrow() && !self.handle.is_closed()
    }

    fn mark_broken(&self) {
        self.broken.send_replace(true);
    }

    /// Runs one SFTP request, unless the connection is already known to be gone; fails it as
    /// soon as the connection breaks; marks the connection broken when the request's own error
    /// says it is.
    async fn call<T>(
        &self,
        request: impl Future<Output = std::result::Result<T, SftpError>>,
    ) -> std::result::Result<T, SftpError> {
        let lost = || SftpError::IO("connection lost".into());
        if !self.alive() {
            self.mark_broken();
            return Err(lost());
        }
        let mut broken = self.broken.subscribe();
        let result = tokio::select! {
            r = request => r,
            _ = broken.wait_for(|b| *b) => Err(lost()),
        };
        if let Err(e) = &result {
            if connection_level(e) {
                self.mark_broken();
            }
        }
        result
    }
}

/// Whether an SFTP error means the connection is gone or unusable (rather than a refusal of
/// the one request).
fn connection_level(e: &SftpError) -> bool {
    match e {
        SftpError::Status(s) => matches!(
            s.status_code,
            StatusCode::NoConnection | StatusCode::ConnectionLost
        ),
        SftpError::Limited(_) => false,
        SftpError::Timeout
        | SftpError::IO(_)
        | SftpError::UnexpectedBehavior(_)
        | SftpError::UnexpectedPacket => true,
    }
}

/// A started SFTP session and what its server supports.
struct SftpStart {
    session: RawSftpSession,
    posix_rename: bool,
    fsync: bool,
    read_chunk: u64,
    write_chunk: u64,
}

/// An open SFTP handle with its slot of [`MAX_OPEN_HANDLES`].
struct OpenHandle<'a> {
    handle: String,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl SshStorage {
    /// Prepares a client for `config`: reads the private key (a missing, unreadable or
    /// passphrase-protected key fails here) and starts the client's runtime. It does not connect:
    /// the first operation does, so a host that is down shows up as a transient error of that
    /// operation, which a retry can cure.
    pub fn new(config: SshConfig) -> Result<Self> {
        if config.host.is_empty() {
            return Err(Error::usage("SSH storage: no host configured"));
        }
        if config.user.is_empty() {
            return Err(Error::usage("SSH storage: no user configured"));
        }
        let key = russh::keys::load_secret_key(&config.key_file, None).map_err(|e| {
            let path = config.key_file.display();
            match e {
                russh::keys::Error::KeyIsEncrypted => Error::failure(format!(
                    "SSH key file {path} is protected by a passphrase, which Freezer cannot \
                     prompt for: use a key without one (and restrict it on the server, e.g. to \
                     the sftp subsystem)"
                )),
                russh::keys::Error::IO(io) => Error::failure(format!(
                    "cannot read SSH key file {path}: {io} (check key_file in the storage \
                     configuration)"
                )),
                other => Error::failure(format!(
                    "SSH key file {path} is not a usable private key: {other}"
                )),
            }
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("freezer-ssh")
            .enable_all()
            .build()
            .map_err(|e| Error::failure(format!("cannot start the SSH client's runtime: {e}")))?;
        let root = match config.root.trim_end_matches('/') {
            "" if config.root.starts_with('/') => "/".to_string(),
            "" => ".".to_string(),
            r => r.to_string(),
        };
        let host = if config.host.contains(':') {
            format!("[{}]", config.host)
        } else {
            config.host.clone()
        };
        let url = format!("ssh://{}@{host}:{}", config.user, config.port);
        Ok(SshStorage {
            config,
            runtime,
            key: Arc::new(key),
            root,
            url,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The remote container directory.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The remote path of `key` (`""`: the container itself).
    fn path(&self, key: &str) -> String {
        let key = key.trim_matches('/');
        match (self.root.as_str(), key) {
            (root, "") => root.to_string(),
            ("/", key) => format!("/{key}"),
            (root, key) => format!("{root}/{key}"),
        }
    }

    /// `ssh://user@host:port/path` for a remote path; a path relative to the home directory is
    /// written `/~/path`, as in SFTP URIs.
    fn url_of(&self, path: &str) -> String {
        match path.strip_prefix('/') {
            Some(abs) => format!("{}/{abs}", self.url),
            None => {
                let rel = path.strip_prefix("./").unwrap_or(path);
                if rel == "." {
                    format!("{}/~", self.url)
                } else {
                    format!("{}/~/{rel}", self.url)
                }
            }
        }
    }

    fn host_port(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    /// Runs `op` on the current connection (connecting first when there is none or it broke).
    fn run<'a, T>(
        &'a self,
        op: impl FnOnce(Arc<Conn>) -> BoxFuture<'a, Result<T>> + 'a,
    ) -> Result<T> {
        self.runtime.block_on(async move {
            let conn = self.connection().await?;
            op(conn).await
        })
    }

    /// The live connection, made now when there is none or the last one broke. Callers wait
    /// while one of them connects.
    async fn connection(&self) -> Result<Arc<Conn>> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            if conn.alive() {
                return Ok(conn.clone());
            }
            tracing::info!(storage = %self.url, "SSH connection lost; reconnecting");
        }
        *slot = None;
        let conn = Arc::new(self.connect().await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Connects, checks the host key, logs in and starts the SFTP subsystem. Each of the two
    /// phases (TCP connect; SSH handshake, login and SFTP start) gets `connect_timeout`.
    async fn connect(&self) -> Result<Conn> {
        let c = &self.config;
        // Read on every connection, so an edited known_hosts file counts without a restart.
        let known = KnownHosts::load(&c.known_hosts, &c.host, c.port)?;
        let timeout = c.connect_timeout;
        let too_slow = |what: &str| {
            Error::transient(format!(
                "connecting to {}: {what} took longer than {} s",
                self.url,
                timeout.as_secs_f64()
            ))
        };
        let tcp = tokio::net::TcpStream::connect((c.host.as_str(), c.port));
        let tcp = match tokio::time::timeout(timeout, tcp).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(Error::transient(format!(
                    "cannot connect to {}: {e} (is sshd running and reachable there?)",
                    self.url
                )))
            }
            Err(_) => return Err(too_slow("the TCP connection")),
        };
        let _ = tcp.set_nodelay(true);
        let setup = async {
            let mut handle = self.handshake(tcp, known).await?;
            self.authenticate(&mut handle).await?;
            let sftp = self.start_sftp(&handle).await?;
            Ok::<_, Error>(Conn {
                handle,
                sftp: sftp.session,
                posix_rename: sftp.posix_rename,
                fsync: sftp.fsync,
                read_chunk: sftp.read_chunk,
                write_chunk: sftp.write_chunk,
                handles: tokio::sync::Semaphore::new(MAX_OPEN_HANDLES),
                broken: tokio::sync::watch::channel(false).0,
            })
        };
        let conn = match tokio::time::timeout(timeout, setup).await {
            Ok(conn) => conn?,
            Err(_) => return Err(too_slow("the SSH handshake and login")),
        };
        tracing::debug!(
            storage = %self.url,
            posix_rename = conn.posix_rename,
            fsync = conn.fsync,
            read_chunk = conn.read_chunk,
            write_chunk = conn.write_chunk,
            "SSH connection ready"
        );
        Ok(conn)
    }

    /// The SSH handshake on `tcp`, accepting only a host key that `known` lists.
    async fn handshake(
        &self,
        tcp: tokio::net::TcpStream,
        known: KnownHosts,
    ) -> Result<client::Handle<HostKeyCheck>> {
        let mut preferred = russh::Preferred::default();
        preferred.key = known.preferred_algorithms(&preferred.key).into();
        preferred.cipher = PREFERRED_CIPHERS.into();
        let config = Arc::new(client::Config {
            preferred,
            // Large windows keep the pipe full on a fast link; chunked writes keep memory bounded.
            window_size: 16 << 20,
            maximum_packet_size: 65535,
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            ..Default::default()
        });
        let refusal = Arc::new(std::sync::Mutex::new(None));
        let checker = HostKeyCheck {
            known,
            refusal: refusal.clone(),
        };
        client::connect_stream(config, tcp, checker)
            .await
            .map_err(|e| {
                // russh only says "unknown key"; the checker kept the real reason.
                match refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    Some(message) => Error::failure(message),
                    None => self.ssh_error("SSH handshake with", e),
                }
            })
    }

    async fn authenticate(&self, handle: &mut client::Handle<HostKeyCheck>) -> Result<()> {
        let c = &self.config;
        let hash = if self.key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| self.ssh_error("logging in to", e))?
                .flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(self.key.clone(), hash);
        let result = handle
            .authenticate_publickey(c.user.clone(), key)
            .await
            .map_err(|e| self.ssh_error("logging in to", e))?;
        if result.success() {
            return Ok(());
        }
        Err(Error::failure(format!(
            "authentication as {} on {} with key {} failed: the server does not accept this key \
             (add {}.pub to the authorized_keys of {} on {}, or fix user and key_file in the \
             storage configuration)",
            c.user,
            self.host_port(),
            c.key_file.display(),
            c.key_file.display(),
            c.user,
            c.host
        )))
    }

    /// Opens the sftp subsystem on a session channel and learns what the server supports.
    async fn start_sftp(&self, handle: &client::Handle<HostKeyCheck>) -> Result<SftpStart> {
        let mut channel = handle
            .channel_open_session()
            .await
            .map_err(|e| self.ssh_error("opening a session on", e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| self.ssh_error("starting SFTP on", e))?;
        loop {
            match channel.wait().await {
                Some(russh::ChannelMsg::Success) => break,
                Some(russh::ChannelMsg::Failure) => {
                    return Err(Error::failure(format!(
                        "{} refused the sftp subsystem: enable it in the server's sshd_config \
                         (`Subsystem sftp internal-sftp`)",
                        self.url
                    )))
                }
                Some(_) => continue,
                None => {
                    return Err(Error::transient(format!(
                        "starting SFTP on {}: the server closed the session",
                        self.url
                    )))
                }
            }
        }
        let mut session = RawSftpSession::new_with_config(
            channel.into_stream(),
            russh_sftp::client::Config {
                // Incoming packets: a read reply of MAX_CHUNK bytes plus headers, or a directory
                // listing, with room to spare.
                max_packet_len: 512 * 1024,
                request_timeout_secs: REQUEST_TIMEOUT.as_secs(),
                ..Default::default()
            },
        );
        let failed = |e: SftpError| Error::transient(format!("starting SFTP on {}: {e}", self.url));
        let version = session.init().await.map_err(failed)?;
        let has = |name: &str| version.extensions.get(name).is_some_and(|v| v == "1");
        let mut limits = Limits::default();
        if has("limits@openssh.com") {
            limits = session.limits().await.map_err(failed)?.into();
            session.set_limits(limits);
        }
        // Request sizes: the server's read/write limits, else what fits its packet limit, else
        // the 32 KiB every server accepts; never more than MAX_CHUNK.
        let chunk = |limit: Option<u64>| {
            let from_packet = limits.packet_len.map(|p| p.saturating_sub(1024));
            limit
                .or(from_packet)
                .unwrap_or(SAFE_CHUNK)
                .clamp(1, MAX_CHUNK)
        };
        Ok(SftpStart {
            posix_rename: has("posix-rename@openssh.com"),
            fsync: has("fsync@openssh.com"),
            read_chunk: chunk(limits.read_len),
            write_chunk: chunk(limits.write_len),
            session,
        })
    }

    /// An SSH-level error while connecting: connection trouble is transient, protocol
    /// disagreements are not.
    fn ssh_error(&self, doing: &str, e: russh::Error) -> Error {
        use russh::Error as E;
        match e {
            E::IO(_)
            | E::HUP
            | E::Disconnect
            | E::ConnectionTimeout
            | E::KeepaliveTimeout
            | E::InactivityTimeout
            | E::Elapsed(_)
            | E::SendError
            | E::Join(_)
            | E::Pending => {
                Error::transient(format!("{doing} {}: the connection failed: {e}", self.url))
            }
            E::UnknownKey => Error::failure(format!(
                "{doing} {}: the server's host key was refused",
                self.url
            )),
            other => Error::failure(format!("{doing} {} failed: {other}", self.url)),
        }
    }

    /// Turns an SFTP error of `doing` (`"reading ssh://..."`) into an engine error: connection
    /// trouble is transient ([`Conn::call`] has marked the connection broken already), refusals
    /// are permanent. `writing`: a generic failure status may be a full disk.
    fn sftp_error(&self, doing: &str, e: SftpError, writing: bool) -> Error {
        match e {
            SftpError::Status(status) => {
                let detail = if status.error_message.is_empty() {
                    status.status_code.to_string()
                } else {
                    status.error_message.clone()
                };
                match status.status_code {
                    StatusCode::NoSuchFile => {
                        Error::not_found(format!("{doing}: no such file or directory"))
                    }
                    StatusCode::PermissionDenied => Error::failure(format!(
                        "{doing}: permission denied ({detail}): check that {} may read and write \
                         {} on {}",
                        self.config.user, self.root, self.config.host
                    )),
                    StatusCode::Failure if writing => Error::failure(format!(
                        "{doing} failed on the server ({detail}): the remote disk may be full \
                         (check free space and quotas on {})",
                        self.config.host
                    )),
                    StatusCode::NoConnection | StatusCode::ConnectionLost => {
                        Error::transient(format!(
                            "{doing}: the SFTP connection was lost ({detail}); the next attempt \
                             connects again"
                        ))
                    }
                    _ => Error::failure(format!("{doing} failed: {detail}")),
                }
            }
            SftpError::Timeout => Error::transient(format!(
                "{doing}: no answer from {} within {} s; the next attempt connects again",
                self.host_port(),
                REQUEST_TIMEOUT.as_secs()
            )),
            SftpError::Limited(m) => Error::failure(format!("{doing}: {m}")),
            SftpError::IO(m) | SftpError::UnexpectedBehavior(m) => Error::transient(format!(
                "{doing}: the SSH connection to {} was lost ({m}); the next attempt connects \
                     again",
                self.host_port()
            )),
            SftpError::UnexpectedPacket => Error::transient(format!(
                "{doing}: the SFTP server sent an unexpected reply; the next attempt connects again"
            )),
        }
    }

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
    fn mkdir_p<'a>(
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

    async fn put_async(&self, conn: &Conn, key: &str, data: &[u8]) -> Result<()> {
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
    async fn read_async(
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

    async fn list_async(&self, conn: &Conn, prefix: &str) -> Result<Vec<ObjectInfo>> {
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

    async fn delete_async(&self, conn: &Conn, key: &str) -> Result<()> {
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
    fn prune_empty<'a>(&'a self, conn: &'a Conn, path: String) -> BoxFuture<'a, Result<bool>> {
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

    async fn sync_async(&self, conn: &Conn, keys: &[String]) -> Result<()> {
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

    fn container_error(&self, e: SftpError) -> Error {
        let err = self.sftp_error(
            &format!("checking container {}", self.url_of(&self.root)),
            e,
            false,
        );
        if err.kind == ErrorKind::NotFound {
            return self.container_missing();
        }
        err
    }

    fn container_missing(&self) -> Error {
        Error::not_found(format!(
            "container {} does not exist",
            self.url_of(&self.root)
        ))
    }
}

impl Drop for SshStorage {
    fn drop(&mut self) {
        // Say goodbye to the server when we can block here (not inside another runtime).
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        let conn = self.conn.get_mut().take();
        if let Some(conn) = conn {
            if conn.alive() {
                self.runtime.block_on(async {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        conn.handle
                            .disconnect(russh::Disconnect::ByApplication, "", "en"),
                    )
                    .await;
                });
            }
        }
    }
}

impl Storage for SshStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.run(move |c| Box::pin(async move { self.put_async(&c, key, data).await }))
    }

    fn sync(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        self.run(move |c| Box::pin(async move { self.sync_async(&c, keys).await }))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.run(move |c| Box::pin(async move { self.read_async(&c, key, None).await }))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.run(move |c| {
            Box::pin(async move { self.read_async(&c, key, Some((offset, len))).await })
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.run(move |c| Box::pin(async move { self.list_async(&c, prefix).await }))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.run(move |c| Box::pin(async move { self.delete_async(&c, key).await }))
    }

    fn tidy(&self, prefix: &str) -> Result<()> {
        let dir = prefix.trim_matches('/');
        if dir.is_empty() {
            return Ok(());
        }
        let path = self.path(dir);
        self.run(move |c| Box::pin(async move { self.prune_empty(&c, path).await.map(drop) }))
    }

    fn describe(&self, key: &str) -> String {
        self.url_of(&self.path(key))
    }

    fn prepare(&self) -> Result<()> {
        self.run(move |c| {
            Box::pin(async move {
                self.mkdir_p(&c, &self.root).await.map_err(|e| {
                    self.sftp_error(
                        &format!("creating container {}", self.url_of(&self.root)),
                        e,
                        true,
                    )
                })
            })
        })
    }

    fn check_container(&self) -> Result<()> {
        self.run(move |c| {
            Box::pin(async move {
                let attrs = match c.call(c.sftp.stat(self.root.as_str())).await {
                    Ok(a) => a.attrs,
                    Err(e) => return Err(self.container_error(e)),
                };
                if is_dir(&attrs) {
                    Ok(())
                } else {
                    Err(Error::failure(format!(
                        "container {} is not a directory",
                        self.url_of(&self.root)
                    )))
                }
            })
        })
    }
}

/// Ciphers in our order of preference: AES-GCM first (hardware AES through aws-lc-rs is the
/// fastest on servers), then ChaCha20-Poly1305 and the CTR modes.
const PREFERRED_CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

fn status_of(e: &SftpError) -> Option<StatusCode> {
    match e {
        SftpError::Status(s) => Some(s.status_code),
        _ => None,
    }
}

const S_IFMT: u32 = 0o170000;

fn is_dir(attrs: &FileAttributes) -> bool {
    attrs.permissions.is_some_and(|p| p & S_IFMT == 0o040000)
}

fn is_file(attrs: &FileAttributes) -> bool {
    attrs.permissions.is_some_and(|p| p & S_IFMT == 0o100000)
}

/// The parent of a remote path (`None` at the top: `/`, `.` or a single relative name).
fn parent(path: &str) -> Option<&str> {
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

/// The russh handler: decides on the server's host key from the `known_hosts` entries, and
/// keeps the reason of a refusal for the error message (russh itself only says "unknown key").
struct HostKeyCheck {
    known: KnownHosts,
    refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let verdict = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.known.check(key),
            russh::keys::PublicKeyOrCertificate::Certificate(_) => Err(format!(
                "{} presented a host certificate, which is not supported: list its host key in {}",
                self.known.host_port,
                self.known.path.display()
            )),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(message) => {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
                Ok(false)
            }
        }
    }
}

/// The entries of an OpenSSH `known_hosts` file that apply to one host and port.
#[derive(Debug)]
struct KnownHosts {
    path: PathBuf,
    host: String,
    port: u16,
    /// `host:port`, for messages.
    host_port: String,
    /// Whether the file exists at all.
    exists: bool,
    /// `(line number, key)` of the plain entries for this host.
    keys: Vec<(usize, PublicKey)>,
    /// `(line number, key)` of the `@revoked` entries for this host.
    revoked: Vec<(usize, PublicKey)>,
}

impl KnownHosts {
    /// Reads the entries for `host:port` from `path`. A missing file has no entries; an
    /// unreadable one is an error.
    fn load(path: &std::path::Path, host: &str, port: u16) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::failure(format!(
                    "cannot read the known_hosts file {}: {e}",
                    path.display()
                )))
            }
        };
        Ok(Self::parse(path, host, port, text.as_deref()))
    }

    fn parse(path: &std::path::Path, host: &str, port: u16, text: Option<&str>) -> Self {
        let mut known = KnownHosts {
            path: path.to_path_buf(),
            host: host.to_string(),
            port,
            host_port: format!("{host}:{port}"),
            exists: text.is_some(),
            keys: Vec::new(),
            revoked: Vec::new(),
        };
        // OpenSSH looks up `host` on port 22 and `[host]:port` on any other.
        let name = if port == 22 {
            host.to_ascii_lowercase()
        } else {
            format!("[{}]:{port}", host.to_ascii_lowercase())
        };
        for (i, line) in text.unwrap_or_default().lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let Some(first) = fields.next() else { continue };
            let (marker, hosts) = if first.starts_with('@') {
                match fields.next() {
                    Some(h) => (Some(first), h),
                    None => continue,
                }
            } else {
                (None, first)
            };
            let (Some(_key_type), Some(base64)) = (fields.next(), fields.next()) else {
                continue;
            };
            if !host_matches(hosts, &name) {
                continue;
            }
            let Ok(key) = russh::keys::parse_public_key_base64(base64) else {
                tracing::debug!(file = %path.display(), line = i + 1, "unparsable known_hosts key");
                continue;
            };
            match marker {
                None => known.keys.push((i + 1, key)),
                Some("@revoked") => known.revoked.push((i + 1, key)),
                // `@cert-authority`: host certificates are not used; other markers are unknown.
                Some(_) => {}
            }
        }
        known
    }

    /// Host key algorithms to offer, those with a known key for this host first (so a server
    /// with several host keys presents one we can check), then the rest of `defaults`.
    fn preferred_algorithms(
        &self,
        defaults: &[russh::keys::Algorithm],
    ) -> Vec<russh::keys::Algorithm> {
        use russh::keys::Algorithm;
        let mut out: Vec<Algorithm> = Vec::new();
        for (_, key) in &self.keys {
            let algs = match key.algorithm() {
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                ],
                other => vec![other],
            };
            for a in algs {
                if defaults.contains(&a) && !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        for a in defaults {
            if !out.contains(a) {
                out.push(a.clone());
            }
        }
        out
    }

    /// Accepts `key` when a plain entry for this host lists it and no `@revoked` entry does;
    /// otherwise says why not and what to do.
    fn check(&self, key: &PublicKey) -> std::result::Result<(), String> {
        let path = self.path.display();
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let alg = key.algorithm();
        let alg = alg.as_str();
        if let Some((line, _)) = self
            .revoked
            .iter()
            .find(|(_, k)| k.key_data() == key.key_data())
        {
            return Err(format!(
                "host key of {} ({alg} {fingerprint}) is marked @revoked in {path} line {line}: \
                 refusing to connect",
                self.host_port
            ));
        }
        if self
            .keys
            .iter()
            .any(|(_, k)| k.key_data() == key.key_data())
        {
            return Ok(());
        }
        let lookup = if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        };
        if let Some((line, old)) = self
            .keys
            .iter()
            .find(|(_, k)| k.algorithm() == key.algorithm())
        {
            return Err(format!(
                "host key CHANGED for {}: the server presents {alg} {fingerprint}, but {path} \
                 line {line} records {}; refusing to connect. Someone may be intercepting the \
                 connection; if the host was reinstalled or its key replaced on purpose, remove \
                 the old entry with `ssh-keygen -R '{lookup}' -f {path}` and add the new key",
                self.host_port,
                old.fingerprint(HashAlg::Sha256)
            ));
        }
        let scan = if self.port == 22 {
            format!("ssh-keyscan {}", self.host)
        } else {
            format!("ssh-keyscan -p {} {}", self.port, self.host)
        };
        let note = if !self.exists {
            " (the file does not exist)".to_string()
        } else if let Some((line, other)) = self.keys.first() {
            format!(
                " (line {line} has a {} key for it, but the server offers {alg})",
                other.algorithm().as_str()
            )
        } else {
            String::new()
        };
        Err(format!(
            "host key of {} ({alg} {fingerprint}) is not in {path}{note}: add it with \
             `{scan} >> {path}` after checking the fingerprint with the host's administrator; \
             refusing to connect",
            self.host_port
        ))
    }
}

/// Whether the comma-separated `patterns` of a known_hosts line match `name` (already
/// lowercased; `[host]:port` for ports other than 22): hashed `|1|salt|hash` entries, `*` and `?`
/// wildcards, and `!` negations, which win over any positive match.
fn host_matches(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard_match(negated, name) => return false,
            Some(_) => {}
            None => matched |= wildcard_match(&pattern, name),
        }
    }
    matched
}

/// `salt|hash` (base64) of a hashed entry: the hash is HMAC-SHA1 of the name keyed with the salt.
fn hashed_matches(salt_hash: &str, name: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let Some((salt, hash)) = salt_hash.split_once('|') else {
        return false;
    };
    let b64 = data_encoding::BASE64;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt.as_bytes()), b64.decode(hash.as_bytes())) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Glob matching with `*` (any run) and `?` (any one character), as OpenSSH's `match_pattern`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    #[test]
    fn wildcards_and_negation() {
        assert!(wildcard_match("*.example.com", "a.example.com"));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(wildcard_match("10.0.0.?", "10.0.0.7"));
        assert!(wildcard_match("[127.0.0.1]:*", "[127.0.0.1]:2222"));
        assert!(host_matches("a,b,[c]:2222", "[c]:2222"));
        assert!(!host_matches("a,b,c", "[c]:2222"));
        assert!(!host_matches(
            "*.example.com,!bad.example.com",
            "bad.example.com"
        ));
        assert!(host_matches(
            "*.example.com,!bad.example.com",
            "ok.example.com"
        ));
        assert!(host_matches("Host.Example.COM", "host.example.com"));
    }

    #[test]
    fn hashed_entries_match() {
        // From russh's tests: `example.com` hashed by `ssh-keygen -H`.
        assert!(host_matches(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak=",
            "example.com"
        ));
        assert!(!host_matches(
            "|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak=",
            "example.org"
        ));
    }

    #[test]
    fn known_hosts_decisions() {
        let text = format!(
            "# comment\n\
             \n\
             other.host ssh-ed25519 {ED_B}\n\
             [127.0.0.1]:2222\tssh-ed25519   {ED_A} comment here\n\
             @cert-authority * ssh-ed25519 {ED_B}\n\
             garbage line\n\
             127.0.0.1 ssh-ed25519 {ED_B}\n"
        );
        let path = Path::new("/k/known_hosts");
        let k = KnownHosts::parse(path, "127.0.0.1", 2222, Some(&text));
        assert_eq!(k.keys.len(), 1, "{k:?}");
        assert!(k.check(&key(ED_A)).is_ok());
        let changed = k.check(&key(ED_B)).unwrap_err();
        assert!(
            changed.contains("host key CHANGED for 127.0.0.1:2222"),
            "{changed}"
        );
        assert!(changed.contains("line 4"), "{changed}");
        assert!(
            changed.contains("ssh-keygen -R '[127.0.0.1]:2222'"),
            "{changed}"
        );

        // Port 22 looks up the bare name, which has the other key.
        let k22 = KnownHosts::parse(path, "127.0.0.1", 22, Some(&text));
        assert!(k22.check(&key(ED_B)).is_ok());

        let unknown = KnownHosts::parse(path, "10.1.1.1", 2222, Some(&text))
            .check(&key(ED_A))
            .unwrap_err();
        assert!(
            unknown.contains("host key of 10.1.1.1:2222 (ssh-ed25519 SHA256:")
                && unknown.contains("is not in /k/known_hosts: add it with `ssh-keyscan -p 2222 10.1.1.1 >> /k/known_hosts`"),
            "{unknown}"
        );
        let missing = KnownHosts::parse(path, "h", 22, None)
            .check(&key(ED_A))
            .unwrap_err();
        assert!(missing.contains("(the file does not exist)"), "{missing}");
        assert!(
            missing.contains("`ssh-keyscan h >> /k/known_hosts`"),
            "{missing}"
        );

        let revoked = format!("h ssh-ed25519 {ED_A}\n@revoked h ssh-ed25519 {ED_A}\n");
        let err = KnownHosts::parse(path, "h", 22, Some(&revoked))
            .check(&key(ED_A))
            .unwrap_err();
        assert!(err.contains("@revoked"), "{err}");
    }

    #[test]
    fn known_algorithms_come_first() {
        use russh::keys::Algorithm;
        let rsa_line = "h ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCk9Sb/K5SVwhMDDjHt8U/ejHm8WZamyENIOK7O5np03LBTrkS/eCKrB2aWFg1xEc3WOizj7U4qPrW+m3cxrLlyBfM0ZvGTy1JCWjU/k3UvB9UBkvSzgU5DB4AbneG+bZjIbN49zzJruWP/Agb5AatYkrfpD+SpuHGO+D7Yuc+q7w==";
        let k = KnownHosts::parse(Path::new("/k"), "h", 22, Some(rsa_line));
        assert_eq!(k.keys.len(), 1);
        let algs = k.preferred_algorithms(&russh::Preferred::default().key);
        assert_eq!(
            algs[0],
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            }
        );
        assert!(algs.contains(&Algorithm::Ed25519));
    }

    #[test]
    fn remote_paths_and_urls() {
        fn storage(root: &str) -> SshStorage {
            let dir = std::env::temp_dir().join(format!(
                "freezer-ssh-unit-{}-{}",
                std::process::id(),
                root.replace('/', "_")
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let key = dir.join("id");
            std::fs::write(
                &key,
                "-----BEGIN OPENSSH PRIVATE KEY-----\n\
                 b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
                 QyNTUxOQAAACBkQnPxghEe+9ZCP8GdqQ5STNhxHTTWjNGMN8j8Tn4anQAAAIj6kYvU+pGL\n\
                 1AAAAAtzc2gtZWQyNTUxOQAAACBkQnPxghEe+9ZCP8GdqQ5STNhxHTTWjNGMN8j8Tn4anQ\n\
                 AAAECn5qR67XccyXiCYx8ATky9Od7YKAtQHkHrRfhxeFxpJmRCc/GCER771kI/wZ2pDlJM\n\
                 2HEdNNaM0Yw3yPxOfhqdAAAABHRlc3QB\n\
                 -----END OPENSSH PRIVATE KEY-----\n",
            )
            .unwrap();
            let s = SshStorage::new(SshConfig::new("h", 2222, "u", &key, "/k", root)).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            s
        }
        let abs = storage("/srv/backups/");
        assert_eq!(abs.root(), "/srv/backups");
        assert_eq!(abs.path("a/b"), "/srv/backups/a/b");
        assert_eq!(abs.describe("a/b"), "ssh://u@h:2222/srv/backups/a/b");
        let rel = storage("backups");
        assert_eq!(rel.path("a"), "backups/a");
        assert_eq!(rel.describe("a"), "ssh://u@h:2222/~/backups/a");
        let top = storage("/");
        assert_eq!(top.path("a"), "/a");
        assert_eq!(top.describe("a"), "ssh://u@h:2222/a");
        let home = storage("");
        assert_eq!(home.path("a"), "./a");
        assert_eq!(home.describe("a"), "ssh://u@h:2222/~/a");

        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(parent("a/b"), Some("a"));
        assert_eq!(parent("a"), None);
    }
}
