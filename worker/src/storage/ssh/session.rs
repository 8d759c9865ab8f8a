//! The SSH connection of the SSH backend: connecting with a timeout, the handshake with host-key
//! checking, public-key login, starting the SFTP subsystem and learning what the server supports,
//! and one live connection shared by every caller, replaced when it breaks.

use super::known_hosts::{HostKeyCheck, KnownHosts};
use super::{BoxFuture, SshStorage, REQUEST_TIMEOUT};
use crate::error::{Error, Result};
use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::StatusCode;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The largest read or write request: OpenSSH's limit (256 KiB messages less 1 KiB), used when
/// the server announces at least that through `limits@openssh.com`.
const MAX_CHUNK: u64 = 255 * 1024;

/// The chunk size every SFTP server must accept, for servers that announce no limits.
const SAFE_CHUNK: u64 = 32 * 1024;

/// SSH keepalives: one after this much silence from the server, and the connection is dropped
/// after [`KEEPALIVE_MAX`] unanswered ones.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// See [`KEEPALIVE_INTERVAL`].
const KEEPALIVE_MAX: usize = 3;

/// At most this many SFTP handles open at once on one session. OpenSSH's handles are small
/// integers sent as 4 raw bytes, and russh-sftp keeps handles as UTF-8 strings: a handle number
/// of 128 or more would be mangled. Bounding the open handles keeps the numbers low.
pub(super) const MAX_OPEN_HANDLES: usize = 64;

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

/// One live SSH connection with its SFTP session and what the server supports.
pub(super) struct Conn {
    /// Keeps the SSH session alive; tells whether it still is.
    pub(super) handle: client::Handle<HostKeyCheck>,
    pub(super) sftp: RawSftpSession,
    pub(super) posix_rename: bool,
    pub(super) fsync: bool,
    pub(super) read_chunk: u64,
    pub(super) write_chunk: u64,
    pub(super) handles: tokio::sync::Semaphore,
    /// Set (to `true`) when a request failed in a way that means the connection is gone or hung;
    /// requests still waiting on this connection then fail at once instead of waiting for their
    /// timeout (once the connection dies, russh-sftp may leave them unanswered).
    broken: tokio::sync::watch::Sender<bool>,
}

impl Conn {
    /// Whether the connection can still carry requests: not marked broken, SSH session open.
    pub(super) fn alive(&self) -> bool {
        !*self.broken.borrow() && !self.handle.is_closed()
    }

    /// Records that the connection is gone; waiting requests fail at once.
    fn mark_broken(&self) {
        self.broken.send_replace(true);
    }

    /// Runs one SFTP request, unless the connection is already known to be gone; fails it as
    /// soon as the connection breaks; marks the connection broken when the request's own error
    /// says it is.
    pub(super) async fn call<T>(
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

impl SshStorage {
    /// Runs `op` on the current connection (connecting first when there is none or it broke).
    pub(super) fn run<'a, T>(
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
            "authentication as {} on {} with key {} failed: the server does not accept this key",
            c.user,
            self.host_port(),
            c.key_file.display(),
        ))
        .with_guidance(format!(
            "add {}.pub to the authorized_keys of {} on {}, or fix user and key_file in the \
             storage configuration",
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
                Some(russh::ChannelMsg::Failure) => return Err(Error::failure(format!(
                    "{} refused the sftp subsystem",
                    self.url
                ))
                .with_guidance(
                    "enable it in the server's sshd_config (`Subsystem sftp internal-sftp`)",
                )),
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
}
