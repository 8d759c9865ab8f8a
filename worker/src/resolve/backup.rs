//! `backup`: a [`BackupSpec`] resolved into a [`BackupPlan`], then into [`BackupOptions`].

use super::policy::{self, Roots};
use super::{pass_file, read_pass, Direction, Origin, Target, TransferFlags};
use crate::codec::Codec;
use crate::config::WorkerConfig;
use crate::engine::backup::BackupOptions;
use crate::engine::walk::Dereference;
use crate::error::Result;
use crate::levels::LevelPolicy;
use crate::progress::Counters;
use crate::CancellationToken;
use freezer_contracts::{BackupSpec, ByteSize, Compression, DEFAULT_SEGMENT_SIZE};
use std::path::PathBuf;
use std::sync::Arc;

/// A backup with every default applied and every check passed.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupPlan {
    /// Where the backup is written.
    pub target: Target,
    /// Directory or file to back up.
    pub path_to_backup: PathBuf,
    /// Backup name.
    pub backup_name: String,
    /// Host part of the storage key.
    pub hostname: String,
    /// Compression codec.
    pub codec: Codec,
    /// Compression level.
    pub level: i32,
    /// Passphrase file, when encrypting.
    pub pass_file: Option<PathBuf>,
    /// Level options.
    pub policy: LevelPolicy,
    /// Largest stored segment, capped under an upload limit.
    pub max_segment_size: usize,
    /// Exclude globs.
    pub excludes: Vec<String>,
    /// What the walk follows.
    pub dereference: Dereference,
    /// Store nothing.
    pub dry_run: bool,
}

/// Resolves a backup request.
pub fn resolve(spec: &BackupSpec, config: &WorkerConfig, origin: &Origin) -> Result<BackupPlan> {
    spec.validate_as(origin.author())
        .map_err(|e| origin.refusal(e))?;
    super::refuse_hooks(&spec.hooks)?;
    let given = TransferFlags {
        queue_size: spec.queue_size,
        upload_limit: spec.upload_limit,
        download_limit: None,
    };
    let target = Target::resolve(
        config,
        origin,
        &spec.storage,
        &spec.container,
        given,
        Direction::Up,
    )?;
    let compression = spec.compression.unwrap_or_default();
    let max_segment = spec
        .max_segment_size
        .map_or(DEFAULT_SEGMENT_SIZE, ByteSize::bytes);
    // Under an upload limit an object is paced whole, so objects are kept small enough for the
    // limit to hold within a few percent over any 10-second window.
    let max_segment = match target.transfer.upload_limit {
        Some(limit) => max_segment.min(crate::storage::max_object_for(limit)),
        None => max_segment,
    };
    let hostname = super::host(config, spec.hostname.as_deref())?;
    let dereference = dereference(spec.dereference_symlink.unwrap_or_default());
    if origin.bound_by_policy() {
        policy::check_host(config, Some(&hostname))?;
        policy::check_path(
            config,
            Roots::Backup,
            "path_to_backup",
            &spec.path_to_backup,
        )?;
        policy::check_follows_links(
            config,
            dereference != Dereference::None && dereference != Dereference::Hard,
        )?;
    }
    Ok(BackupPlan {
        path_to_backup: spec.path_to_backup.clone(),
        backup_name: spec.backup_name.clone(),
        hostname,
        codec: codec(compression),
        level: spec
            .compression_level
            .unwrap_or(compression.default_level()),
        pass_file: pass_file(config, origin, spec.encrypt_key.as_deref())?,
        policy: LevelPolicy {
            no_incremental: spec.no_incremental,
            max_level: spec.max_level,
            always_level: spec.always_level,
            restart_days: spec.restart_always_level,
        },
        max_segment_size: usize::try_from(max_segment).unwrap_or(usize::MAX),
        excludes: spec.exclude.clone(),
        dereference,
        dry_run: spec.dry_run,
        target,
    })
}

impl BackupPlan {
    /// The writer-lock scopes of this backup, one per storage.
    pub fn lock_scopes(&self) -> Vec<String> {
        self.target.lock_scopes(&self.hostname, &self.backup_name)
    }

    /// Reads the passphrase and opens the storages: the engine's options, without a fencing token
    /// or commit guard (the daemon adds those once it holds the writer locks).
    pub fn open(
        self,
        config: &WorkerConfig,
        progress: bool,
        counters: Arc<Counters>,
        cancel: &CancellationToken,
    ) -> Result<BackupOptions> {
        let pass = read_pass(self.pass_file.as_ref())?;
        Ok(BackupOptions {
            storage: self.target.open(config, cancel)?,
            queue_size: self.target.transfer.queue_size,
            path_to_backup: self.path_to_backup,
            backup_name: self.backup_name,
            hostname: self.hostname,
            codec: self.codec,
            level: self.level,
            pass,
            policy: self.policy,
            max_segment_size: self.max_segment_size,
            excludes: self.excludes,
            dereference: self.dereference,
            dry_run: self.dry_run,
            progress,
            fencing_token: None,
            commit_guard: None,
            counters,
        })
    }
}

/// The engine's codec of a spec's compression.
fn codec(c: Compression) -> Codec {
    match c {
        Compression::Zstd => Codec::Zstd,
        Compression::Gzip => Codec::Gzip,
        Compression::Bzip2 => Codec::Bzip2,
        Compression::Xz => Codec::Xz,
        Compression::None => Codec::None,
    }
}

/// The walk's dereference mode of a spec's.
fn dereference(d: freezer_contracts::Dereference) -> Dereference {
    use freezer_contracts::Dereference as D;
    match d {
        D::None => Dereference::None,
        D::Soft => Dereference::Soft,
        D::Hard => Dereference::Hard,
        D::All => Dereference::All,
    }
}
