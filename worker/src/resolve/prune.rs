//! `prune`: a [`PruneSpec`] resolved into a [`PrunePlan`], then into [`PruneOptions`].

use super::{Direction, Origin, Target, TransferFlags};
use crate::config::WorkerConfig;
use crate::engine::prune::PruneOptions;
use crate::error::Result;
use crate::retention::KeepPolicy;
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use freezer_contracts::PruneSpec;

/// Hours an interrupted backup's debris is left alone when the request does not say: long enough
/// that a backup still running elsewhere is not mistaken for debris.
pub const DEFAULT_DEBRIS_GRACE_HOURS: f64 = 1.0;

/// A prune with every default applied and every check passed.
#[derive(Debug, Clone, PartialEq)]
pub struct PrunePlan {
    /// Where the backups live.
    pub target: Target,
    /// Only this backup name (every name when `None`).
    pub backup_name: Option<String>,
    /// Only this host's backups: the request's, or the default host when a name is given.
    pub hostname: Option<String>,
    /// What to keep.
    pub policy: KeepPolicy,
    /// Age in hours before debris is removed.
    pub debris_grace_hours: f64,
    /// Delete nothing.
    pub dry_run: bool,
}

/// Resolves a prune request.
pub fn resolve(spec: &PruneSpec, config: &WorkerConfig, origin: &Origin) -> Result<PrunePlan> {
    spec.validate_as(origin.author())
        .map_err(|e| origin.refusal(e))?;
    let target = Target::resolve(
        config,
        origin,
        &spec.storage,
        &spec.container,
        TransferFlags::default(),
        Direction::Up,
    )?;
    // With a backup name and no host, the name is this worker's, as for backup and restore.
    let hostname = match &spec.backup_name {
        Some(_) => Some(super::host(config, spec.hostname.as_deref())?),
        None => spec.hostname.clone(),
    };
    if origin.bound_by_policy() {
        super::policy::check_host(config, hostname.as_deref())?;
    }
    Ok(PrunePlan {
        target,
        backup_name: spec.backup_name.clone(),
        hostname,
        policy: KeepPolicy {
            older_than_days: spec.remove_older_than,
            before: spec
                .remove_from_date
                .as_deref()
                .map(Timestamp::parse_user_date_start)
                .transpose()?,
            last: spec.keep_last,
            hourly: spec.keep_hourly,
            daily: spec.keep_daily,
            weekly: spec.keep_weekly,
            monthly: spec.keep_monthly,
            yearly: spec.keep_yearly,
        },
        debris_grace_hours: spec
            .debris_grace_hours
            .unwrap_or(DEFAULT_DEBRIS_GRACE_HOURS),
        dry_run: spec.dry_run,
    })
}

impl PrunePlan {
    /// The writer-lock scopes of a prune of one name on one host (`None` for a whole container,
    /// which takes no lock: it deletes only what retention lets go and debris older than the grace
    /// period, never a running backup's fresh segments).
    pub fn lock_scopes(&self) -> Option<Vec<String>> {
        match (&self.backup_name, &self.hostname) {
            (Some(name), Some(host)) => Some(self.target.lock_scopes(host, name)),
            _ => None,
        }
    }

    /// Opens the storages.
    pub fn open(self, config: &WorkerConfig, cancel: &CancellationToken) -> Result<PruneOptions> {
        Ok(PruneOptions {
            storage: self.target.open(config, cancel)?,
            backup_name: self.backup_name,
            hostname: self.hostname,
            policy: self.policy,
            debris_grace_hours: self.debris_grace_hours,
            dry_run: self.dry_run,
        })
    }
}
