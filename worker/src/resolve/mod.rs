//! The one place a request becomes the engine's options. A request is a contracts spec, parsed from
//! `freezer-worker`'s command line or read from a task, plus where it came from ([`Origin`]); with
//! the worker's configuration it resolves to a plan (derive `Debug`, `PartialEq`) that holds every
//! default applied, every limit checked and every name looked up, and whose `open` does the I/O
//! (reads the passphrase, opens the storages) and returns the engine's options. The command line
//! and the daemon call only this module, so the same request does the same thing both ways
//! (`worker/tests/resolve.rs` runs each kind both ways and compares the plans).
//!
//! Checks come from the contracts ([`freezer_contracts::BackupSpec::validate_as`] and
//! [`freezer_contracts::limits`]), which the dispatcher also runs when it publishes a task, so a
//! task that breaks a limit is refused at publish time, not on a worker. The only rules that differ
//! by origin are the contracts' [`Author`] rules (a task's paths are absolute, its container does
//! not climb out with `..`, it names at least one storage) and one here: a task names configured
//! storages only, never a backend kind (which would let it reach any directory or bucket).
//! A task is then held to the worker's `[policy]` ([`policy`]: the paths it may read and write,
//! the containers and host names it may use); the command line is not, since whoever runs it
//! already has the node's root.
//!
//! # Choices where the command line and the daemon used to differ
//!
//! - **Download queue depth** (restore, verify): `queue_size` of the request, else
//!   `[transfer] queue_size`, else 16 ([`DEFAULT_DOWNLOAD_QUEUE_SIZE`]), both ways (tasks used 4).
//!   Uploads keep 4 ([`crate::storage::DEFAULT_QUEUE_SIZE`]).
//! - **Control characters** in backup and host names: refused both ways (the CLI accepted them).
//! - **`queue_size`**: 1..=256 both ways ([`freezer_contracts::MAX_QUEUE_SIZE`]; tasks only refused
//!   0), and `[transfer] queue_size` in the configuration is held to the same bounds.
//! - **Segment size**: 64K..=64M ([`freezer_contracts::MIN_SEGMENT_SIZE`],
//!   [`freezer_contracts::MAX_SEGMENT_SIZE`]) checked when the spec is validated, so the dispatcher
//!   refuses a task with a smaller one instead of the engine failing it on a worker. Under an upload
//!   limit it is then capped so the limit holds ([`crate::storage::max_object_for`]).
//! - **Host default**: the request's `hostname`, else the configuration's `[daemon] hostname`, else
//!   the machine's host name, both ways (the CLI skipped the configuration).
//! - **Codec level**: the request's, else the codec's default
//!   ([`freezer_contracts::Compression::default_level`]), range-checked by the contracts.
//! - **Level policy** and **retention policy**: built from the spec in [`backup`] and [`prune`]
//!   only; their rules (conflicting level options, non-negative days) are the contracts'.
//!
//! Errors name what the user wrote: `--queue-size` on the command line, `spec.queue_size` in a task.

pub mod backup;
pub mod list;
pub mod policy;
pub mod prune;
pub mod restore;
pub mod verify;

use crate::config::WorkerConfig;
use crate::error::{Error, Result};
use crate::storage::{Storage, StorageRequest, Transfer, DEFAULT_DOWNLOAD_QUEUE_SIZE};
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use freezer_contracts::limits::{check_positive_size, check_queue_size};
use freezer_contracts::{check_storage_key_part, Author, ByteSize, ContractError};
use std::path::PathBuf;
use std::sync::Arc;

pub use backup::BackupPlan;
pub use list::ListPlan;
pub use prune::PrunePlan;
pub use restore::RestorePlan;
pub use verify::VerifyPlan;

/// Where a request came from: the few things only a command line has travel with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Origin {
    /// `freezer-worker <command>` run by hand.
    Cli {
        /// `--encrypt-pass-file`: the passphrase on this file's first line (a task names a
        /// configured key instead).
        pass_file: Option<PathBuf>,
        /// Transfer flags the command takes that its spec has no field for.
        transfer: TransferFlags,
    },
    /// A task from the fleet.
    #[default]
    Task,
}

impl Origin {
    /// Whether the worker's `[policy]` applies: to tasks, not to the command line.
    fn bound_by_policy(&self) -> bool {
        *self == Origin::Task
    }

    /// The contracts' author of a request from here.
    fn author(&self) -> Author {
        match self {
            Origin::Cli { .. } => Author::CommandLine,
            Origin::Task => Author::Task,
        }
    }

    /// The command line's extra transfer flags (none for a task).
    fn transfer_flags(&self) -> TransferFlags {
        match self {
            Origin::Cli { transfer, .. } => *transfer,
            Origin::Task => TransferFlags::default(),
        }
    }

    /// The command line's `--encrypt-pass-file`.
    fn pass_file(&self) -> Option<&PathBuf> {
        match self {
            Origin::Cli { pass_file, .. } => pass_file.as_ref(),
            Origin::Task => None,
        }
    }

    /// A contracts refusal as the user should read it: the flag on a command line
    /// (`--queue-size: ...`), the spec field in a task (`spec.queue_size: ...`).
    pub fn refusal(&self, e: ContractError) -> Error {
        match (self, &e) {
            (
                Origin::Cli { .. },
                ContractError::Invalid { path, message } | ContractError::Field { path, message },
            ) if path.starts_with("spec.") => {
                let flag = path["spec.".len()..].replace('_', "-");
                Error::usage(format!("--{flag}: {message}"))
            }
            _ => Error::usage(e.to_string()),
        }
    }
}

/// `--queue-size`, `--upload-limit` and `--download-limit` as a command line gives them, for the
/// commands whose spec lacks some of them (the CLI has all three on every command).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TransferFlags {
    /// `--queue-size`.
    pub queue_size: Option<u32>,
    /// `--upload-limit`.
    pub upload_limit: Option<ByteSize>,
    /// `--download-limit`.
    pub download_limit: Option<ByteSize>,
}

impl TransferFlags {
    /// These flags where `spec` (the fields a spec has) gives none.
    fn under(self, spec: TransferFlags) -> TransferFlags {
        TransferFlags {
            queue_size: spec.queue_size.or(self.queue_size),
            upload_limit: spec.upload_limit.or(self.upload_limit),
            download_limit: spec.download_limit.or(self.download_limit),
        }
    }

    /// The contracts' bounds, for the flags no spec validation saw.
    fn check(&self, origin: &Origin) -> Result<()> {
        check_queue_size("spec.queue_size", self.queue_size)
            .and_then(|()| check_positive_size("spec.upload_limit", self.upload_limit))
            .and_then(|()| check_positive_size("spec.download_limit", self.download_limit))
            .map_err(|e| origin.refusal(e))
    }
}

/// Which way a run moves segments, for the queue's default depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Writes segments (backup): [`crate::storage::DEFAULT_QUEUE_SIZE`].
    Up,
    /// Reads segments (restore, verify, and the listings): [`DEFAULT_DOWNLOAD_QUEUE_SIZE`].
    Down,
}

/// Where a run reads or writes, and how fast: the storages, the container and the transfer
/// settings, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Storage names or (command line only) backend kinds; empty means `local`.
    pub storage: Vec<String>,
    /// The container, or `None` for each configured storage's own.
    pub container: Option<String>,
    /// Retries, queue depth and bandwidth limits, the request's over `[transfer]` over the
    /// defaults.
    pub transfer: Transfer,
    /// The container each storage is really written to (the request's, else the storage's
    /// configured one), for the writer-lock scopes: a task that omits the container and one that
    /// writes the configured container out must take the same lock.
    pub scope_containers: Vec<String>,
}

impl Target {
    /// Resolves the location part of a request; `given` holds the transfer fields of the spec.
    fn resolve(
        config: &WorkerConfig,
        origin: &Origin,
        storage: &[String],
        container: &str,
        given: TransferFlags,
        direction: Direction,
    ) -> Result<Target> {
        if *origin == Origin::Task {
            for n in storage {
                if !config.storages.contains_key(n) {
                    return Err(Error::usage(format!(
                        "unknown storage {n:?}: not in this worker's configuration"
                    )));
                }
            }
            let container = (!container.is_empty()).then_some(container);
            policy::check_container(config, storage, container)?;
        }
        let flags = origin.transfer_flags();
        flags.check(origin)?;
        let given = flags.under(given);
        let queue = given
            .queue_size
            .map(|q| q as usize)
            .or(config.transfer.queue_size);
        let queue = match direction {
            Direction::Up => queue,
            Direction::Down => Some(queue.unwrap_or(DEFAULT_DOWNLOAD_QUEUE_SIZE)),
        };
        let transfer = Transfer::merge(
            &config.transfer,
            queue,
            given.upload_limit.map(ByteSize::bytes),
            given.download_limit.map(ByteSize::bytes),
        )?;
        let scope_containers = storage
            .iter()
            .map(|name| match (container, config.storages.get(name)) {
                ("", Some(entry)) => entry.container().unwrap_or_default().to_string(),
                (given, _) => given.to_string(),
            })
            .collect();
        Ok(Target {
            storage: storage.to_vec(),
            container: (!container.is_empty()).then(|| container.to_string()),
            transfer,
            scope_containers,
        })
    }

    /// Opens the storage (or storages) with the resolved transfer settings, for a run that
    /// `cancel` stops (it also ends throttling and retry waits).
    pub fn open(
        &self,
        config: &WorkerConfig,
        cancel: &CancellationToken,
    ) -> Result<Arc<dyn Storage>> {
        let request = StorageRequest {
            names: self.storage.clone(),
            container: self.container.clone(),
        };
        let env = |v: &str| std::env::var(v).ok();
        crate::storage::open(config, &request, &self.transfer, &env, cancel)
    }

    /// The writer-lock scopes of `<host>_<name>` in each storage (see
    /// [`freezer_contracts::lock_scope`]).
    pub fn lock_scopes(&self, host: &str, name: &str) -> Vec<String> {
        self.storage
            .iter()
            .zip(&self.scope_containers)
            .map(|(s, container)| freezer_contracts::lock_scope(s, container, host, name))
            .collect()
    }
}

/// The host part of storage keys: `given`, else the configuration's `[daemon] hostname`, else this
/// machine's host name; refused if it cannot be one path component.
pub fn host(config: &WorkerConfig, given: Option<&str>) -> Result<String> {
    let host = given
        .map(str::to_string)
        .or_else(|| config.daemon.as_ref().and_then(|d| d.hostname.clone()))
        .unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        });
    check_storage_key_part("hostname", &host).map_err(|e| Error::usage(e.to_string()))?;
    Ok(host)
}

/// The passphrase file of a request: a task's (or the command line's) `encrypt_key` names a
/// configured key; the command line may give `--encrypt-pass-file` instead, not both.
fn pass_file(config: &WorkerConfig, origin: &Origin, key: Option<&str>) -> Result<Option<PathBuf>> {
    match (key, origin.pass_file()) {
        (Some(_), Some(_)) => Err(Error::usage(
            "give --encrypt-key or --encrypt-pass-file, not both",
        )),
        (Some(name), None) => Ok(Some(config.key_file(name)?.to_path_buf())),
        (None, file) => Ok(file.cloned()),
    }
}

/// Hooks are part of the task format, not of this build: a task naming one is refused rather than
/// run without it.
fn refuse_hooks(hooks: &[String]) -> Result<()> {
    if hooks.is_empty() {
        Ok(())
    } else {
        Err(Error::usage("hooks are not available in this build"))
    }
}

/// Reads the passphrase a plan names (at `open`, so that resolving reads no file).
fn read_pass(file: Option<&PathBuf>) -> Result<Option<Vec<u8>>> {
    file.map(|p| crate::crypto::read_pass_file(p)).transpose()
}

/// A `--restore-from-date` style date: the end of the given second.
fn date(s: Option<&str>) -> Result<Option<Timestamp>> {
    s.map(Timestamp::parse_user_date).transpose()
}
