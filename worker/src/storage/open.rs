//! Turns what a user or a task names (`--storage local|s3|ssh|NAME[,NAME...]`, `--container`,
//! the worker configuration, the environment) into one [`Storage`]: each backend wrapped in
//! retries, all of them behind one bandwidth limit, several at once behind a multi-storage.

use super::{
    Clock, LocalStorage, MultiStorage, RateLimiter, RetryPolicy, RetryingStorage, S3Config,
    S3Credentials, S3Storage, SshConfig, SshStorage, Storage, SystemClock, ThrottledStorage,
};
use crate::config::{S3Entry, StorageEntry, TransferSection, WorkerConfig};
use crate::error::{Error, Result};
use crate::CancellationToken;
use std::sync::Arc;
use std::time::Duration;

/// The segments uploading at once when neither the flag nor the configuration says: enough to
/// keep an object store busy while the compressors fill the next ones, one segment of memory
/// each.
pub const DEFAULT_QUEUE_SIZE: usize = 4;

/// The segments downloading at once when neither the flag nor the configuration says. A GET's
/// round trip, not bandwidth, bounds a restore from an object store (measured against garage on
/// loopback, 1 GiB in 2 MiB segments: 4 in flight 9.7 s, 8 5.4 s, 16 3.6 s, 32 3.5 s), so reads
/// keep more in flight than writes; each holds one segment and its decompressed copy.
pub const DEFAULT_DOWNLOAD_QUEUE_SIZE: usize = 16;

/// Transfer settings of one run, after the configuration and the flags are merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transfer {
    /// How temporary failures are retried.
    pub retry: RetryPolicy,
    /// Segments in flight at once.
    pub queue_size: usize,
    /// Upload limit in bytes per second.
    pub upload_limit: Option<u64>,
    /// Download limit in bytes per second.
    pub download_limit: Option<u64>,
}

impl Transfer {
    /// The settings of one run: the given values (flags, or a task's spec) over the
    /// configuration's `[transfer]` section over the defaults. `queue_size` falls back to
    /// [`DEFAULT_QUEUE_SIZE`]; a caller that downloads applies its own default first.
    pub fn merge(
        t: &TransferSection,
        queue_size: Option<usize>,
        upload_limit: Option<u64>,
        download_limit: Option<u64>,
    ) -> Result<Transfer> {
        let from_config = |v: &Option<String>, what: &str| -> Result<Option<u64>> {
            v.as_deref()
                .map(|s| {
                    super::parse_rate(s)
                        .map_err(|e| Error::usage(format!("configuration [transfer] {what}: {e}")))
                })
                .transpose()
        };
        let defaults = RetryPolicy::default();
        Ok(Transfer {
            retry: RetryPolicy {
                max_attempts: t.retry_attempts.unwrap_or(defaults.max_attempts).max(1),
                initial_delay: t
                    .retry_initial_delay_ms
                    .map_or(defaults.initial_delay, Duration::from_millis),
                max_delay: t
                    .retry_max_delay_ms
                    .map_or(defaults.max_delay, Duration::from_millis),
            },
            queue_size: queue_size
                .or(t.queue_size)
                .unwrap_or(DEFAULT_QUEUE_SIZE)
                .max(1),
            upload_limit: match upload_limit {
                Some(l) => Some(l),
                None => from_config(&t.upload_limit, "upload_limit")?,
            },
            download_limit: match download_limit {
                Some(l) => Some(l),
                None => from_config(&t.download_limit, "download_limit")?,
            },
        })
    }
}

/// What `--storage` and `--container` say.
#[derive(Debug, Clone, Default)]
pub struct StorageRequest {
    /// Backend kinds (`local`, `s3`, `ssh`) or names of configured storages; empty means
    /// `local`.
    pub names: Vec<String>,
    /// `--container`: required for the kinds, overrides a named storage's own container.
    pub container: Option<String>,
}

/// Opens the storage (or storages) `request` names for one run: its bandwidth pacing and retry
/// backoff stop waiting once `cancel` (the run's token) is cancelled.
pub fn open(
    config: &WorkerConfig,
    request: &StorageRequest,
    transfer: &Transfer,
    env: &dyn Fn(&str) -> Option<String>,
    cancel: &CancellationToken,
) -> Result<Arc<dyn Storage>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::cancelled_by(cancel.clone()));
    let names: Vec<&str> = if request.names.is_empty() {
        vec!["local"]
    } else {
        request.names.iter().map(String::as_str).collect()
    };
    let limiter = |l| Arc::new(RateLimiter::with_clock(l, clock.clone()));
    let limits = Limits {
        upload: transfer.upload_limit.map(limiter),
        download: transfer.download_limit.map(limiter),
    };
    let mut members: Vec<(String, Arc<dyn Storage>)> = Vec::with_capacity(names.len());
    for name in &names {
        if members.iter().any(|(n, _)| n == name) {
            return Err(Error::usage(format!("--storage names {name:?} twice")));
        }
        let (backend, kind) = open_one(config, name, request, env)?;
        members.push((
            name.to_string(),
            wrap(backend, kind, transfer, &limits, &clock),
        ));
    }
    if members.len() == 1 {
        return Ok(members.remove(0).1);
    }
    Ok(Arc::new(MultiStorage::new(members)))
}

/// The two bandwidth limiters of a run, shared by every storage it writes to or reads from.
struct Limits {
    upload: Option<Arc<RateLimiter>>,
    download: Option<Arc<RateLimiter>>,
}

/// Wraps one backend in retries (innermost: each attempt is paced and counted) and the run's
/// bandwidth limits.
fn wrap(
    backend: Arc<dyn Storage>,
    kind: &'static str,
    transfer: &Transfer,
    limits: &Limits,
    clock: &Arc<dyn Clock>,
) -> Arc<dyn Storage> {
    let retrying: Arc<dyn Storage> = Arc::new(
        RetryingStorage::new(backend, transfer.retry.clone(), kind).with_clock(clock.clone()),
    );
    if limits.upload.is_none() && limits.download.is_none() {
        return retrying;
    }
    Arc::new(ThrottledStorage::new(
        retrying,
        limits.upload.clone(),
        limits.download.clone(),
    ))
}

/// Opens one backend, unwrapped; returns it with its kind (`local`, `s3`, `ssh`) for metrics.
fn open_one(
    config: &WorkerConfig,
    name: &str,
    request: &StorageRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Arc<dyn Storage>, &'static str)> {
    let container = |own: &Option<String>| -> Result<String> {
        request
            .container
            .clone()
            .or_else(|| own.clone())
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                Error::usage(format!(
                    "storage {name:?} needs a container: give --container, or `container` in its \
                     configuration entry"
                ))
            })
    };
    let entry = match name {
        "local" => StorageEntry::Local(Default::default()),
        "s3" => {
            // The unnamed S3 storage takes the environment over the file (ARCHITECTURE.md §6).
            let s3 = &config.s3;
            let c = container(&s3.container)?;
            let mut built = S3Config::from_lookup(&c, |var| {
                env(var).or_else(|| s3_setting(s3, var))
            })?;
            built.credentials = s3_credentials(s3, name)?;
            return Ok((Arc::new(S3Storage::new(built)?), "s3"));
        }
        "ssh" => StorageEntry::Ssh(config.ssh.clone().ok_or_else(|| {
            Error::usage("--storage ssh needs an [ssh] section (host, user, key_file) in the configuration")
        })?),
        other => config.storages.get(other).cloned().ok_or_else(|| {
            let known: Vec<&str> = config.storages.keys().map(String::as_str).collect();
            Error::usage(format!(
                "unknown storage {other:?}: use local, s3, ssh or a storage of the configuration ({})",
                if known.is_empty() {
                    "none configured".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?,
    };
    match entry {
        StorageEntry::Local(e) => Ok((
            Arc::new(LocalStorage::new(container(&e.container)?)),
            "local",
        )),
        StorageEntry::S3(e) => {
            // A named S3 storage is described by its entry alone: two named storages may live on
            // two different servers, so no environment variable applies to both.
            let c = container(&e.container)?;
            let mut built = S3Config::from_lookup(&c, |var| s3_setting(&e, var))?;
            built.credentials = s3_credentials(&e, name)?;
            Ok((Arc::new(S3Storage::new(built)?), "s3"))
        }
        StorageEntry::Ssh(e) => {
            let user = match e.user.clone() {
                Some(u) => u,
                None => users::get_current_username()
                    .and_then(|u| u.into_string().ok())
                    .ok_or_else(|| {
                        Error::usage(format!(
                            "storage {name:?}: give `user` in its configuration"
                        ))
                    })?,
            };
            let known_hosts = match e.known_hosts.clone() {
                Some(k) => k,
                None => std::path::PathBuf::from(env("HOME").ok_or_else(|| {
                    Error::usage(format!(
                        "storage {name:?}: give `known_hosts` in its configuration (no HOME)"
                    ))
                })?)
                .join(".ssh/known_hosts"),
            };
            let config = SshConfig::new(
                e.host.clone(),
                e.port,
                user,
                e.key_file.clone(),
                known_hosts,
                container(&e.container)?,
            );
            Ok((Arc::new(SshStorage::new(config)?), "ssh"))
        }
    }
}

/// The configuration entry's value for one of the variables [`S3Config::from_lookup`] reads.
fn s3_setting(e: &S3Entry, var: &str) -> Option<String> {
    match var {
        "FREEZER_S3_ENDPOINT" => e.endpoint.clone(),
        "AWS_REGION" => e.region.clone(),
        "FREEZER_S3_FORCE_PATH_STYLE" => e.force_path_style.map(|b| b.to_string()),
        "FREEZER_S3_CHECKSUMS" => e.checksums.clone(),
        _ => None,
    }
}

/// Static credentials from the entry, when it names them.
fn s3_credentials(e: &S3Entry, name: &str) -> Result<Option<S3Credentials>> {
    match (&e.access_key_id, &e.secret_access_key_file) {
        (None, None) => Ok(None),
        (Some(id), Some(file)) => {
            let secret = std::fs::read_to_string(file).map_err(|err| {
                Error::usage(format!(
                    "storage {name:?}: cannot read secret_access_key_file {}: {err}",
                    file.display()
                ))
            })?;
            let secret = secret.lines().next().unwrap_or_default().trim().to_string();
            if secret.is_empty() {
                return Err(Error::usage(format!(
                    "storage {name:?}: secret_access_key_file {} is empty",
                    file.display()
                )));
            }
            Ok(Some(S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret,
            }))
        }
        _ => Err(Error::usage(format!(
            "storage {name:?}: access_key_id and secret_access_key_file go together"
        ))),
    }
}
