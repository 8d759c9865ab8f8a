//! The worker's configuration file (TOML; ARCHITECTURE.md §6): named storages, the settings of the
//! `s3` and `ssh` backends, transfer limits and retries, and named encryption keys.
//!
//! Precedence: the file, then `FREEZER_*`/AWS environment variables, then flags, each overriding
//! the one before. The file holds no secret itself: credentials and passphrases are named by
//! file path (`secret_access_key_file`, `pass_file`), so the file can be world-readable.
//!
//! ```toml
//! [storages.offsite]                  # --storage offsite
//! type = "s3"
//! container = "backups/freezer"       # bucket/prefix
//! endpoint = "http://127.0.0.1:3900"
//! region = "garage"
//! access_key_id = "GK..."
//! secret_access_key_file = "/etc/freezer/offsite.secret"
//!
//! [storages.vault]                    # --storage vault
//! type = "ssh"
//! container = "/srv/backups"
//! host = "vault.example.org"
//! user = "freezer"
//! key_file = "/etc/freezer/id_ed25519"
//! known_hosts = "/etc/freezer/known_hosts"
//!
//! [s3]                                # --storage s3 (with --container bucket/prefix)
//! endpoint = "http://127.0.0.1:3900"
//!
//! [transfer]
//! queue_size = 8                      # segments in flight (default 4 up, 16 down)
//! upload_limit = "10M"
//!
//! [keys.main]                         # tasks name keys; the worker reads the file
//! pass_file = "/etc/freezer/keys/main"
//!
//! [policy]                            # what tasks from the fleet may do (not the CLI)
//! backup_roots = ["/srv", "/etc"]     # a backup task reads only under these
//! restore_roots = ["/srv/restore"]    # a restore writes (a verify compares) only under these
//! hosts = ["web2"]                    # host names besides this worker's own; "*" for any
//! ```
//!
//! `[policy]` is checked by the resolver (`crate::resolve::policy`) for tasks only: without
//! `backup_roots` a backup task is refused, without `restore_roots` a restore task (and a verify
//! with `compare_to`) is refused, and a task acts only for this worker's own host name unless
//! `hosts` lists others. The command line is not restricted: whoever runs it already has the
//! node's root.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the configuration is read from when neither `--config` nor `FREEZER_CONFIG` names a
/// file (a missing default file is an empty configuration; a missing named file is an error).
pub const DEFAULT_PATH: &str = "/etc/freezer/worker.toml";

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Storages by name, for `--storage NAME[,NAME...]` and tasks.
    #[serde(default)]
    pub storages: BTreeMap<String, StorageEntry>,
    /// Settings of `--storage s3` (the environment overrides them).
    #[serde(default)]
    pub s3: S3Entry,
    /// Settings of `--storage ssh`.
    #[serde(default)]
    pub ssh: Option<SshEntry>,
    /// Parallelism, bandwidth limits and retries of storage transfers.
    #[serde(default)]
    pub transfer: TransferSection,
    /// Encryption keys by name (tasks carry names, never passphrases).
    #[serde(default)]
    pub keys: BTreeMap<String, KeyEntry>,
    /// Settings of the daemon (`freezer-worker run`); required by `run`, ignored by the
    /// standalone commands.
    #[serde(default)]
    pub daemon: Option<DaemonSection>,
    /// What tasks from the fleet may read, write and act for (the command line is not bound by
    /// it); the secure default refuses backup and restore tasks.
    #[serde(default)]
    pub policy: PolicySection,
}

/// The `[policy]` section: the limits a task from the broker is held to on this node, so that
/// whoever can publish a task does not own the node (see `crate::resolve::policy`). Empty lists
/// are the secure default: no backup or restore task runs, and tasks act for this worker's own
/// host name only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Absolute directories a backup task's `path_to_backup` must lie in (after `..` is refused
    /// and symlinks are resolved); `["/"]` allows any path and following symlinks.
    #[serde(default)]
    pub backup_roots: Vec<PathBuf>,
    /// Absolute directories a restore task's `restore_abs_path` and a verify task's
    /// `compare_to` must lie in.
    #[serde(default)]
    pub restore_roots: Vec<PathBuf>,
    /// Host names, besides this worker's own, that a task may name as `hostname` (to restore
    /// another node's backup here after a disaster); `"*"` allows every host, and is needed for
    /// a list or prune of every host.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// The `[daemon]` section: who this worker is in the fleet and how it reaches the broker, Redis
/// and Prometheus (see `crate::daemon`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Node name: the worker consumes `freezer.node.<node>` and heartbeats under it.
    pub node: String,
    /// Pools whose queues `freezer.pool.<pool>` the worker also consumes.
    #[serde(default)]
    pub pools: Vec<String>,
    /// RabbitMQ URL.
    #[serde(default = "default_amqp_url")]
    pub amqp_url: String,
    /// Redis URL.
    #[serde(default = "default_redis_url")]
    pub redis_url: String,
    /// Tasks run at once (execution slots).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `host:port` of the `/metrics` endpoint; none when unset.
    pub metrics_addr: Option<String>,
    /// On SIGTERM, how long running tasks may go on before they are abandoned (and re-queued).
    #[serde(default = "default_grace")]
    pub grace_period_seconds: u64,
    /// How often the worker renews task leases and locks, writes its heartbeat and looks for
    /// tasks of dead workers.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_interval_ms: u64,
    /// How long a task lease (and a writer lock) lives without renewal: a killed worker's tasks
    /// are re-queued about this long after it died.
    #[serde(default = "default_lease_ms")]
    pub lease_ttl_ms: u64,
    /// Prefix of every Redis key (default `freezer:`), so tests and several fleets can share a
    /// Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// `x-delivery-limit` of the task queues: a message delivered this often is dead-lettered.
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// How long finished task records are kept (exactly-once window), in seconds.
    #[serde(default = "default_record_ttl")]
    pub record_ttl_seconds: u64,
    /// How often a running task publishes a `progress` event (entries, files, bytes), in
    /// milliseconds; 0 turns progress events off.
    #[serde(default = "default_progress_ms")]
    pub progress_interval_ms: u64,
    /// The host part of storage keys (`<hostname>_<backup_name>`) for tasks and commands that do
    /// not name one; default: the machine's host name (set it where that is not stable, e.g. in
    /// containers).
    #[serde(default)]
    pub hostname: Option<String>,
}

/// Most execution slots a worker may have: each slot may run an engine with its own threads and
/// transfer queue, so more than this on one node is a typo, not a plan.
pub const MAX_CONCURRENCY: usize = 256;

/// Shortest heartbeat interval, in milliseconds: renewals more frequent than this only load Redis.
pub const MIN_HEARTBEAT_MS: u64 = 100;

impl DaemonSection {
    /// Refuses timings and sizes that would break the daemon's guarantees: a lease must outlive
    /// at least one missed renewal (`lease_ttl_ms >= 2 * heartbeat_interval_ms`), or a worker
    /// that is merely slow to renew loses every lease and its tasks run twice elsewhere.
    /// Also checks the names it carries (node, pools, host), which become queue and key names.
    pub fn check(&self) -> Result<(), String> {
        freezer_contracts::check_ident("daemon.node", &self.node).map_err(|e| e.to_string())?;
        for p in &self.pools {
            freezer_contracts::check_ident("daemon.pools", p).map_err(|e| e.to_string())?;
        }
        if let Some(h) = &self.hostname {
            freezer_contracts::check_storage_key_part("daemon.hostname", h)
                .map_err(|e| e.to_string())?;
        }
        if self.heartbeat_interval_ms < MIN_HEARTBEAT_MS {
            return Err(format!(
                "daemon.heartbeat_interval_ms {} is below the minimum {MIN_HEARTBEAT_MS}",
                self.heartbeat_interval_ms
            ));
        }
        if self.lease_ttl_ms < self.heartbeat_interval_ms.saturating_mul(2) {
            return Err(format!(
                "daemon.lease_ttl_ms {} must be at least twice daemon.heartbeat_interval_ms {} \
                 (a lease must outlive one missed renewal)",
                self.lease_ttl_ms, self.heartbeat_interval_ms
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!(
                "daemon.concurrency {} must be between 1 and {MAX_CONCURRENCY}",
                self.concurrency
            ));
        }
        Ok(())
    }
}

fn default_amqp_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".into()
}
fn default_redis_url() -> String {
    "redis://127.0.0.1:6379/".into()
}
fn default_concurrency() -> usize {
    4
}
fn default_grace() -> u64 {
    30
}
fn default_heartbeat_ms() -> u64 {
    5_000
}
fn default_lease_ms() -> u64 {
    15_000
}
fn default_key_prefix() -> String {
    freezer_contracts::KEY_PREFIX.into()
}
fn default_delivery_limit() -> u32 {
    5
}
fn default_progress_ms() -> u64 {
    10_000
}
fn default_record_ttl() -> u64 {
    7 * 24 * 3600
}

/// One named storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StorageEntry {
    /// A local directory or a mounted NFS/GlusterFS filesystem.
    Local(LocalEntry),
    /// An S3 bucket (AWS or an S3-compatible server).
    S3(S3Entry),
    /// A directory on a remote host, over SFTP.
    Ssh(SshEntry),
}

impl StorageEntry {
    /// The container configured for this storage, if any: where a request that names none
    /// writes (used for the writer-lock scope).
    pub fn container(&self) -> Option<&str> {
        match self {
            StorageEntry::Local(e) => e.container.as_deref(),
            StorageEntry::S3(e) => e.container.as_deref(),
            StorageEntry::Ssh(e) => e.container.as_deref(),
        }
    }
}

/// Settings of a local storage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEntry {
    /// The container directory.
    pub container: Option<String>,
}

/// Settings of an S3 storage. Credentials not given here come from the standard AWS chain
/// (environment, profile, instance role).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Entry {
    /// `bucket/prefix`.
    pub container: Option<String>,
    /// Endpoint URL of an S3-compatible server; unset for AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Path-style addressing (default: on when an endpoint is set).
    pub force_path_style: Option<bool>,
    /// `when_required` or `when_supported` (default: `when_required` with an endpoint).
    pub checksums: Option<String>,
    /// Access key id; needs `secret_access_key_file`.
    pub access_key_id: Option<String>,
    /// File whose first line is the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
}

/// Settings of an SSH storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshEntry {
    /// The directory on the remote host.
    pub container: Option<String>,
    /// Remote host name or address.
    pub host: String,
    /// Remote port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Remote user (default: the local user).
    pub user: Option<String>,
    /// Private key file.
    pub key_file: PathBuf,
    /// known_hosts file the host key is checked against (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
}

fn default_ssh_port() -> u16 {
    22
}

/// Transfer settings shared by every storage of a run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSection {
    /// Segments in flight at once, up or down.
    pub queue_size: Option<usize>,
    /// Upload bandwidth limit (`10M`, `512K`, bytes per second).
    pub upload_limit: Option<String>,
    /// Download bandwidth limit.
    pub download_limit: Option<String>,
    /// Attempts per request before a temporary failure is final.
    pub retry_attempts: Option<u32>,
    /// First retry delay, in milliseconds (doubles, with jitter).
    pub retry_initial_delay_ms: Option<u64>,
    /// Longest retry delay, in milliseconds.
    pub retry_max_delay_ms: Option<u64>,
}

/// A named encryption key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// File whose first line is the passphrase.
    pub pass_file: PathBuf,
}

impl WorkerConfig {
    /// Reads the configuration: `path` (from `--config` or `FREEZER_CONFIG`) must exist; without
    /// one, [`DEFAULT_PATH`] is read when it exists, else the configuration is empty.
    pub fn load(path: Option<&Path>) -> Result<WorkerConfig> {
        let (path, required) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(WorkerConfig::default())
            }
            Err(e) => {
                return Err(Error::usage(format!(
                    "cannot read the configuration {}: {e}",
                    path.display()
                )))
            }
        };
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses configuration text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<WorkerConfig> {
        let config: WorkerConfig = toml::from_str(text)
            .map_err(|e| Error::usage(format!("configuration {origin}: {e}")))?;
        for name in config.storages.keys() {
            if matches!(name.as_str(), "local" | "s3" | "ssh") || name.contains(',') {
                return Err(Error::usage(format!(
                    "configuration {origin}: storage name {name:?} is reserved or contains ','; \
                     choose another name"
                )));
            }
        }
        if let Some(q) = config.transfer.queue_size {
            let max = freezer_contracts::MAX_QUEUE_SIZE as usize;
            if !(1..=max).contains(&q) {
                return Err(Error::usage(format!(
                    "configuration {origin}: [transfer] queue_size {q} must be 1 to {max}"
                )));
            }
        }
        for root in config
            .policy
            .backup_roots
            .iter()
            .chain(&config.policy.restore_roots)
        {
            if !root.is_absolute() {
                return Err(Error::usage(format!(
                    "configuration {origin}: [policy] root {} must be an absolute path",
                    root.display()
                )));
            }
        }
        for host in &config.policy.hosts {
            if host != "*" {
                freezer_contracts::check_storage_key_part("[policy] hosts", host)
                    .map_err(|e| Error::usage(format!("configuration {origin}: {e}")))?;
            }
        }
        Ok(config)
    }

    /// The passphrase file of the key named `name`.
    pub fn key_file(&self, name: &str) -> Result<&Path> {
        self.keys
            .get(name)
            .map(|k| k.pass_file.as_path())
            .ok_or_else(|| Error::usage(format!("no key named {name:?} in the configuration")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_section() {
        let c = WorkerConfig::parse(
            r#"
            [storages.offsite]
            type = "s3"
            container = "b/p"
            endpoint = "http://127.0.0.1:3900"
            access_key_id = "GK1"
            secret_access_key_file = "/s"
            [storages.vault]
            type = "ssh"
            container = "/srv"
            host = "h"
            key_file = "/k"
            [storages.nfs]
            type = "local"
            container = "/mnt/b"
            [s3]
            region = "garage"
            [transfer]
            queue_size = 8
            upload_limit = "10M"
            [keys.main]
            pass_file = "/p"
            [policy]
            backup_roots = ["/srv"]
            restore_roots = ["/srv/restore"]
            hosts = ["web2", "*"]
            "#,
            "test",
        )
        .unwrap();
        assert!(
            matches!(&c.storages["offsite"], StorageEntry::S3(e) if e.container.as_deref() == Some("b/p"))
        );
        assert!(
            matches!(&c.storages["vault"], StorageEntry::Ssh(e) if e.port == 22 && e.host == "h")
        );
        assert!(matches!(&c.storages["nfs"], StorageEntry::Local(_)));
        assert_eq!(c.s3.region.as_deref(), Some("garage"));
        assert_eq!(c.transfer.queue_size, Some(8));
        assert_eq!(c.key_file("main").unwrap(), Path::new("/p"));
        assert!(c.key_file("other").is_err());
        assert_eq!(c.policy.backup_roots, [PathBuf::from("/srv")]);
        assert_eq!(c.policy.restore_roots, [PathBuf::from("/srv/restore")]);
        assert_eq!(c.policy.hosts, ["web2", "*"]);
    }

    #[test]
    fn policy_defaults_to_nothing_and_refuses_relative_roots_and_bad_hosts() {
        assert_eq!(
            WorkerConfig::parse("", "t").unwrap().policy,
            PolicySection::default()
        );
        for bad in [
            "[policy]\nbackup_roots = [\"data\"]\n",
            "[policy]\nrestore_roots = [\"./r\"]\n",
            "[policy]\nhosts = [\"a/b\"]\n",
            "[policy]\nroots = [\"/\"]\n",
        ] {
            let e = WorkerConfig::parse(bad, "f.toml").unwrap_err();
            assert!(e.message.contains("f.toml"), "{e}");
        }
    }

    #[test]
    fn daemon_section_has_defaults_and_refuses_typos() {
        let c = WorkerConfig::parse("[daemon]\nnode = \"web1\"\npools = [\"p\"]\n", "t").unwrap();
        let d = c.daemon.unwrap();
        assert_eq!((d.node.as_str(), d.pools.len()), ("web1", 1));
        assert_eq!(d.concurrency, 4);
        assert_eq!(d.key_prefix, "freezer:");
        assert_eq!((d.heartbeat_interval_ms, d.lease_ttl_ms), (5_000, 15_000));
        assert!(d.amqp_url.starts_with("amqp://") && d.redis_url.starts_with("redis://"));
        assert!(WorkerConfig::parse("[daemon]\nnode = \"a\"\nconcurency = 3\n", "t").is_err());
        assert_eq!(d.check(), Ok(()));
        assert!(WorkerConfig::parse("[daemon]\npools = []\n", "t").is_err());
    }

    #[test]
    fn refuses_typos_and_reserved_names() {
        for bad in [
            "[storages.x]\ntype = \"s3\"\nendpiont = \"x\"\n",
            "[storages.x]\ntype = \"ftp\"\n",
            "[storages.s3]\ntype = \"local\"\n",
            "[transfer]\nqueue = 3\n",
            "[tranfser]\n",
        ] {
            let e = WorkerConfig::parse(bad, "f.toml").unwrap_err();
            assert!(e.message.contains("f.toml"), "{e}");
        }
    }

    #[test]
    fn a_missing_default_file_is_empty_but_a_named_one_is_an_error() {
        let c = WorkerConfig::load(None);
        assert!(c.is_ok() || Path::new(DEFAULT_PATH).exists());
        let e = WorkerConfig::load(Some(Path::new("/nonexistent/w.toml"))).unwrap_err();
        assert!(e.message.contains("/nonexistent/w.toml"), "{e}");
    }

    #[test]
    fn daemon_timings_that_break_the_lease_are_refused() {
        let daemon = |extra: &str| {
            WorkerConfig::parse(&format!("[daemon]\nnode = \"a\"\n{extra}"), "t")
                .unwrap()
                .daemon
                .unwrap()
        };
        let e = daemon("heartbeat_interval_ms = 5000\nlease_ttl_ms = 5000\n").check();
        assert!(e.unwrap_err().contains("at least twice"));
        assert!(daemon("heartbeat_interval_ms = 50\n").check().is_err());
        assert!(daemon("concurrency = 0\n").check().is_err());
        assert!(daemon("concurrency = 257\n").check().is_err());
        let e = daemon("pools = [\"no spaces\"]\n").check().unwrap_err();
        assert!(e.contains("daemon.pools"), "{e}");
        let e = daemon("hostname = \"a/b\"\n").check().unwrap_err();
        assert!(e.contains("daemon.hostname"), "{e}");
        assert_eq!(
            daemon("heartbeat_interval_ms = 500\nlease_ttl_ms = 3000\n").check(),
            Ok(())
        );
    }
}
