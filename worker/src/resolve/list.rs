//! `list` (and the CLI's `info`): a [`ListSpec`] resolved into a [`ListPlan`].

use super::{Direction, Origin, Target, TransferFlags};
use crate::config::WorkerConfig;
use crate::error::Result;
use crate::storage::Storage;
use crate::CancellationToken;
use freezer_contracts::ListSpec;
use std::sync::Arc;

/// A listing with every check passed.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPlan {
    /// Where the backups live.
    pub target: Target,
    /// Only this backup name.
    pub backup_name: Option<String>,
    /// Only this host's backups (every host's when `None`: a listing has no default host).
    pub hostname: Option<String>,
}

/// Resolves a list request.
pub fn resolve(spec: &ListSpec, config: &WorkerConfig, origin: &Origin) -> Result<ListPlan> {
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
    if origin.bound_by_policy() {
        super::policy::check_host(config, spec.hostname.as_deref())?;
    }
    Ok(ListPlan {
        target,
        backup_name: spec.backup_name.clone(),
        hostname: spec.hostname.clone(),
    })
}

impl ListPlan {
    /// Opens the storages.
    pub fn open(
        &self,
        config: &WorkerConfig,
        cancel: &CancellationToken,
    ) -> Result<Arc<dyn Storage>> {
        self.target.open(config, cancel)
    }
}
