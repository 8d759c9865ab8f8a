//! `verify`: a [`VerifySpec`] resolved into a [`VerifyPlan`], then into [`VerifyOptions`].

use super::policy::{self, Roots};
use super::{date, pass_file, read_pass, Direction, Origin, Target, TransferFlags};
use crate::config::WorkerConfig;
use crate::engine::verify::{ReadData, VerifyOptions};
use crate::error::Result;
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use freezer_contracts::VerifySpec;
use std::path::PathBuf;

/// A verify with every default applied and every check passed.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyPlan {
    /// Where the backups are read from.
    pub target: Target,
    /// Backup name.
    pub backup_name: String,
    /// Host part of the storage key.
    pub hostname: String,
    /// Verify the chain at or before this time (every backup when `None`).
    pub date: Option<Timestamp>,
    /// Passphrase file, to check the tags of encrypted backups.
    pub pass_file: Option<PathBuf>,
    /// How much stored data to read.
    pub read: ReadData,
    /// Live tree to compare with.
    pub compare_to: Option<PathBuf>,
}

/// Resolves a verify request.
pub fn resolve(spec: &VerifySpec, config: &WorkerConfig, origin: &Origin) -> Result<VerifyPlan> {
    spec.validate_as(origin.author())
        .map_err(|e| origin.refusal(e))?;
    let given = TransferFlags {
        queue_size: None,
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
    let read = match (spec.read_data, spec.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) => ReadData::Subset(p),
        (false, None) => ReadData::None,
    };
    let hostname = super::host(config, spec.hostname.as_deref())?;
    if origin.bound_by_policy() {
        policy::check_host(config, Some(&hostname))?;
        if let Some(c) = &spec.compare_to {
            policy::check_path(config, Roots::Restore, "compare_to", c)?;
        }
    }
    Ok(VerifyPlan {
        target,
        backup_name: spec.backup_name.clone(),
        hostname,
        date: date(spec.restore_from_date.as_deref())?,
        pass_file: pass_file(config, origin, spec.encrypt_key.as_deref())?,
        read,
        compare_to: spec.compare_to.clone(),
    })
}

impl VerifyPlan {
    /// Reads the passphrase and opens the storages.
    pub fn open(self, config: &WorkerConfig, cancel: &CancellationToken) -> Result<VerifyOptions> {
        let pass = read_pass(self.pass_file.as_ref())?;
        Ok(VerifyOptions {
            storage: self.target.open(config, cancel)?,
            queue_size: self.target.transfer.queue_size,
            hostname: self.hostname,
            backup_name: self.backup_name,
            date: self.date,
            pass,
            read: self.read,
            compare_to: self.compare_to,
        })
    }
}
