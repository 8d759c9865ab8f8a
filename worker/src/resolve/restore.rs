//! `restore`: a [`RestoreSpec`] resolved into a [`RestorePlan`], then into [`RestoreOptions`].

use super::policy::{self, Roots};
use super::{date, pass_file, read_pass, Direction, Origin, Target, TransferFlags};
use crate::config::WorkerConfig;
use crate::engine::restore::RestoreOptions;
use crate::error::{Error, Result};
use crate::progress::Counters;
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use freezer_contracts::RestoreSpec;
use std::path::PathBuf;
use std::sync::Arc;

/// A restore with every default applied and every check passed.
#[derive(Debug, Clone, PartialEq)]
pub struct RestorePlan {
    /// Where the backup is read from.
    pub target: Target,
    /// Backup name.
    pub backup_name: String,
    /// Host part of the storage key.
    pub hostname: String,
    /// Absolute directory to restore into.
    pub restore_abs_path: PathBuf,
    /// Restore the newest backup at or before this time (now when `None`).
    pub date: Option<Timestamp>,
    /// Allow a non-empty target.
    pub overwrite: bool,
    /// Passphrase file of an encrypted backup.
    pub pass_file: Option<PathBuf>,
    /// Write nothing.
    pub dry_run: bool,
}

/// Resolves a restore request.
pub fn resolve(spec: &RestoreSpec, config: &WorkerConfig, origin: &Origin) -> Result<RestorePlan> {
    spec.validate_as(origin.author())
        .map_err(|e| origin.refusal(e))?;
    super::refuse_hooks(&spec.hooks)?;
    let given = TransferFlags {
        queue_size: spec.queue_size,
        upload_limit: None,
        download_limit: spec.download_limit,
    };
    let target = Target::resolve(
        config,
        origin,
        &spec.storage,
        &spec.container,
        given,
        Direction::Down,
    )?;
    let restore_abs_path = std::path::absolute(&spec.restore_abs_path)
        .map_err(|e| Error::io(spec.restore_abs_path.display(), e))?;
    let hostname = super::host(config, spec.hostname.as_deref())?;
    if origin.bound_by_policy() {
        policy::check_host(config, Some(&hostname))?;
        policy::check_path(
            config,
            Roots::Restore,
            "restore_abs_path",
            &restore_abs_path,
        )?;
    }
    Ok(RestorePlan {
        target,
        backup_name: spec.backup_name.clone(),
        hostname,
        restore_abs_path,
        date: date(spec.restore_from_date.as_deref())?,
        overwrite: spec.overwrite,
        pass_file: pass_file(config, origin, spec.encrypt_key.as_deref())?,
        dry_run: spec.dry_run,
    })
}

impl RestorePlan {
    /// Reads the passphrase and opens the storages.
    pub fn open(
        self,
        config: &WorkerConfig,
        progress: bool,
        counters: Arc<Counters>,
        cancel: &CancellationToken,
    ) -> Result<RestoreOptions> {
        let pass = read_pass(self.pass_file.as_ref())?;
        Ok(RestoreOptions {
            storage: self.target.open(config, cancel)?,
            queue_size: self.target.transfer.queue_size,
            backup_name: self.backup_name,
            hostname: self.hostname,
            target: self.restore_abs_path,
            date: self.date,
            overwrite: self.overwrite,
            pass,
            dry_run: self.dry_run,
            progress,
            counters,
        })
    }
}
