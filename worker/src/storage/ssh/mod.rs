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
//! goes up or down in chunks of up to 255 KiB with [`PIPELINE_DEPTH`](sftp::PIPELINE_DEPTH)
//! requests in flight. When the connection fails (sshd restarted, network reset, timeout) the
//! operations on it fail at once with a *transient* error and the connection is marked broken;
//! the next operation connects again (a connection already found dead before an operation is
//! replaced without an error), so a retry cures a server restart. Authentication and host-key
//! failures, denied permissions and a full remote disk are permanent.
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

mod errors;
mod known_hosts;
mod session;
mod sftp;

use super::{ObjectInfo, Storage};
use crate::error::{Error, Result};
use russh::keys::PrivateKey;
use session::Conn;
use sftp::is_dir;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long one SFTP request may go unanswered before the connection counts as broken. Long,
/// because an fsync of a large object on a slow disk is one request; a dead peer is noticed
/// sooner through SSH keepalives.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

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

/// A boxed future borrowing the storage: what [`SshStorage::run`] takes, and what the recursive
/// directory walks return.
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
        let key = russh::keys::load_secret_key(&config.key_file, None)
            .map_err(|e| errors::key_error(&config.key_file, e))?;
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

    /// `host:port`, for messages.
    fn host_port(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
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

#[cfg(test)]
mod tests {
    use super::sftp::parent;
    use super::*;

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
