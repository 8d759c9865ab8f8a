//! What each kind of task asks for: one spec per `freezer-worker` subcommand, and the very types that
//! subcommand parses its options into (with the `clap` feature), so that a task is a command line
//! sent over the wire and adding an option is one field, one doc comment and one default.
//!
//! Field names are the long option names in snake_case (`--path-to-backup` is `path_to_backup`).
//! Three differences are deliberate, because **tasks carry no secrets** (ARCHITECTURE.md §4):
//!
//! - `storage` in a task is a list of storage *names* from the worker's configuration, which holds
//!   the endpoints and credentials (on the command line it may also be a backend kind).
//! - `encrypt_key` is the *name* of a key in the worker's configuration; the command line also has
//!   `--encrypt-pass-file` (a path on one machine, whose content is the secret), which no spec has.
//! - `hooks` are names of hooks in the worker's configuration, never commands (not a CLI option).
//!
//! Options whose default should apply are optional here and left out when absent, so the defaults
//! stay defined in one place (the worker's resolver). `--json` has no field: a task always reports
//! JSON.
//!
//! A few rules depend on who wrote the spec ([`Author`]): a task has no working directory, so its
//! paths must be absolute, and it names configured storages only; a command line may give relative
//! paths, a backend kind, or no storage (local). Every other rule is the same both ways.
//!
//! Specs refuse unknown fields, unlike the envelope: a spec field is an instruction, and a worker
//! that silently ignored one it does not know (a `keep_weekly`, an `exclude`) would delete or store
//! something other than what was asked. The task is rejected with the unknown field named instead.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ContractError;
use crate::id::{check_ident, check_storage_key_part, IDENT_PATTERN};
use crate::kind::TaskKind;
use crate::limits::{check_positive_size, check_queue_size, check_segment_size, MAX_QUEUE_SIZE};
use crate::size::ByteSize;
use crate::utc::check_user_date;

/// Regular expression of an absolute path, for the JSON Schema (see `check_abs_path`).
const ABS_PATH_PATTERN: &str = "^/";

/// Longest a noop task may sleep (one day): beyond that a test is waiting for nothing.
pub const MAX_NOOP_SLEEP_MS: u64 = 86_400_000;

/// Who wrote a spec, for the few rules that differ between a task and the worker's own command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// A task: paths must be absolute (a task has no working directory), the container cannot climb
    /// out with `..`, and at least one storage is named.
    Task,
    /// `freezer-worker` run by hand: paths may be relative to the working directory, the container
    /// is any path, and no storage means `local`.
    CommandLine,
}

/// Compression codecs of `--compression`; every segment of a backup is compressed with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd: the default, fast at every level.
    #[default]
    Zstd,
    /// gzip, as OpenStack Freezer's default.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz (LZMA2).
    Xz,
    /// No compression.
    None,
}

impl Compression {
    /// The name on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::None => "none",
        }
    }

    /// The levels the codec accepts (`--compression-level`), checked when a spec is validated, so a
    /// job file with an impossible level is refused when it is published rather than when it runs.
    pub fn level_range(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Compression::Zstd => 1..=22,
            Compression::Gzip | Compression::Bzip2 => 1..=9,
            Compression::Xz => 0..=9,
            Compression::None => 0..=0,
        }
    }

    /// The level used when the request gives none.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Zstd => 3,
            Compression::Gzip => 6,
            Compression::Bzip2 => 9,
            Compression::Xz => 6,
            Compression::None => 0,
        }
    }
}

/// What `--dereference-symlink` follows while walking the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Dereference {
    /// Store symlinks as symlinks and hard links as links (the default).
    #[default]
    None,
    /// Follow symlinks: store what they point to.
    Soft,
    /// Store every hard-linked name as a separate file.
    Hard,
    /// Both.
    All,
}

/// Highest `max_level` or `always_level` of a backup: a chain of a thousand incrementals is
/// already far past what a restore should have to read.
pub const MAX_LEVEL: u32 = 1_000;

/// Most days a spec may name (`restart_always_level`, `remove_older_than`; `debris_grace_hours`
/// at most as many days in hours): a hundred years, beyond any retention and far from the
/// worker's time arithmetic overflowing.
pub const MAX_DAYS: f64 = 36_525.0;

/// Largest `keep_*` count of a prune.
pub const MAX_KEEP: u32 = 100_000;

/// Highest `upload_limit` or `download_limit`, bytes per second (1 TiB/s): any faster is no limit.
pub const MAX_TRANSFER_RATE: u64 = 1 << 40;

/// `freezer-worker backup`: write a new backup of a directory or file of the worker's machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// Directory or file to back up (absolute in a task: a task has no working directory).
    #[schemars(regex(pattern = ABS_PATH_PATTERN))]
    #[cfg_attr(feature = "clap", arg(long, short = 'F'))]
    pub path_to_backup: PathBuf,
    /// Name of the backup; with the host name, the storage key `<host>_<name>`.
    #[cfg_attr(feature = "clap", arg(long, short = 'N'))]
    pub backup_name: String,
    /// Container: a directory (local, ssh) or `bucket/prefix` (s3) within each storage; empty or
    /// absent: each configured storage's own `container`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            short = 'C',
            env = "FREEZER_CONTAINER",
            default_value = "",
            hide_default_value = true
        )
    )]
    pub container: String,
    /// Storages: names from the worker's configuration (a task names nothing else); on the command
    /// line also `local` (the default), `s3` or `ssh`. The backup is written to each.
    #[schemars(length(min = 1), inner(regex(pattern = IDENT_PATTERN)))]
    #[cfg_attr(
        feature = "clap",
        arg(long, value_delimiter = ',', env = "FREEZER_STORAGE")
    )]
    pub storage: Vec<String>,
    /// Host part of the storage key (default: the worker's `[daemon] hostname`, else the machine's
    /// host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_HOSTNAME"))]
    pub hostname: Option<String>,
    /// Compression codec (default zstd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub compression: Option<Compression>,
    /// Compression level (zstd 1-22, gzip/bzip2 1-9, xz 0-9; default: the codec's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub compression_level: Option<i32>,
    /// Name of the encryption key in the worker's configuration (a task's replacement for
    /// `--encrypt-pass-file`); absent: the backup is not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IDENT_PATTERN))]
    #[cfg_attr(feature = "clap", arg(long))]
    pub encrypt_key: Option<String>,
    /// Incremental levels 0..N, then a new chain (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, conflicts_with_all = ["always_level", "no_incremental"]))]
    pub max_level: Option<u32>,
    /// After reaching level N, every backup is level N against level N-1 (1 = differential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, conflicts_with = "no_incremental"))]
    pub always_level: Option<u32>,
    /// Start a new chain once the chain's level 0 is older than this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DAYS"))]
    pub restart_always_level: Option<f64>,
    /// Every backup is a full backup.
    #[serde(default, skip_serializing_if = "is_false")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_incremental: bool,
    /// Largest stored segment, 64K to 64M (suffixes K, M, G; default 2M).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, short = 'M'))]
    pub max_segment_size: Option<ByteSize>,
    /// Leave out entries matching this glob (a name, or a path relative to `path_to_backup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub exclude: Vec<String>,
    /// Follow symlinks (soft), split hard links (hard), or both (all); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub dereference_symlink: Option<Dereference>,
    /// Do everything but store nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub dry_run: bool,
    /// Upload limit in bytes per second over all transfers (suffixes K, M, G; default: the
    /// configuration's, else unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_UPLOAD_LIMIT"))]
    pub upload_limit: Option<ByteSize>,
    /// Segments transferred at once, 1 to 256 (default: the configuration's, else 4); bounds memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_QUEUE_SIZE))]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_QUEUE_SIZE"))]
    pub queue_size: Option<u32>,
    /// Names of hooks in the worker's configuration to run around the backup (e.g. a database dump
    /// or a snapshot), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = IDENT_PATTERN)))]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub hooks: Vec<String>,
}

/// `freezer-worker restore`: bring a backup back into a directory of the worker's machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    /// Name of the backup to restore.
    #[cfg_attr(feature = "clap", arg(long, short = 'N'))]
    pub backup_name: String,
    /// Container: a directory (local, ssh) or `bucket/prefix` (s3) within each storage; empty or
    /// absent: each configured storage's own `container`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            short = 'C',
            env = "FREEZER_CONTAINER",
            default_value = "",
            hide_default_value = true
        )
    )]
    pub container: String,
    /// Storages: names from the worker's configuration (a task names nothing else); on the command
    /// line also `local` (the default), `s3` or `ssh`. Tried in order: the first that holds a
    /// restorable backup is used.
    #[schemars(length(min = 1), inner(regex(pattern = IDENT_PATTERN)))]
    #[cfg_attr(
        feature = "clap",
        arg(long, value_delimiter = ',', env = "FREEZER_STORAGE")
    )]
    pub storage: Vec<String>,
    /// Host part of the storage key (default: the worker's `[daemon] hostname`, else the machine's
    /// host name); another host's name restores that host's backup here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_HOSTNAME"))]
    pub hostname: Option<String>,
    /// Directory to restore into, created if missing (absolute in a task).
    #[schemars(regex(pattern = ABS_PATH_PATTERN))]
    #[cfg_attr(feature = "clap", arg(long))]
    pub restore_abs_path: PathBuf,
    /// Restore the newest backup at or before this time (`YYYY-MM-DDThh:mm:ss`, UTC, optionally
    /// ending in `Z`; default now). A restore session gives every member the same date, so they
    /// come back to one point in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub restore_from_date: Option<String>,
    /// Allow restoring into a non-empty directory.
    #[serde(default, skip_serializing_if = "is_false")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub overwrite: bool,
    /// Name of the encryption key in the worker's configuration (a task's replacement for
    /// `--encrypt-pass-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IDENT_PATTERN))]
    #[cfg_attr(feature = "clap", arg(long))]
    pub encrypt_key: Option<String>,
    /// Check keys and index and report what would be restored; write nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub dry_run: bool,
    /// Download limit in bytes per second over all transfers (suffixes K, M, G; default: the
    /// configuration's, else unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_DOWNLOAD_LIMIT"))]
    pub download_limit: Option<ByteSize>,
    /// Segments transferred at once, 1 to 256 (default: the configuration's, else 16); bounds
    /// memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_QUEUE_SIZE))]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_QUEUE_SIZE"))]
    pub queue_size: Option<u32>,
    /// Names of hooks in the worker's configuration to run around the restore (e.g. stop and
    /// start a service), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = IDENT_PATTERN)))]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub hooks: Vec<String>,
}

/// `freezer-worker prune`: apply retention to the backups of a name (or of a whole container) and
/// remove the debris of interrupted runs, never breaking a chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct PruneSpec {
    /// Only this backup name (default: every name in the container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, short = 'N'))]
    pub backup_name: Option<String>,
    /// Container: a directory (local, ssh) or `bucket/prefix` (s3) within each storage; empty or
    /// absent: each configured storage's own `container`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            short = 'C',
            env = "FREEZER_CONTAINER",
            default_value = "",
            hide_default_value = true
        )
    )]
    pub container: String,
    /// Storages: names from the worker's configuration (a task names nothing else); on the command
    /// line also `local` (the default), `s3` or `ssh`. Each is pruned.
    #[schemars(length(min = 1), inner(regex(pattern = IDENT_PATTERN)))]
    #[cfg_attr(
        feature = "clap",
        arg(long, value_delimiter = ',', env = "FREEZER_STORAGE")
    )]
    pub storage: Vec<String>,
    /// Host part of the storage key. With a backup name and no host, the worker's own host name
    /// (as for backup): a prune sent to a pool should name the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_HOSTNAME"))]
    pub hostname: Option<String>,
    /// Delete backups older than DAYS (fractions allowed), unless a kept backup needs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, short = 'R', value_name = "DAYS"))]
    pub remove_older_than: Option<f64>,
    /// Delete backups taken before DATE (`YYYY-MM-DDThh:mm:ss`, UTC), unless a kept backup needs
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DATE"))]
    pub remove_from_date: Option<String>,
    /// Keep the N newest backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_hourly: Option<u32>,
    /// ... of each of the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_daily: Option<u32>,
    /// ... of each of the last N ISO weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_weekly: Option<u32>,
    /// ... of each of the last N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_monthly: Option<u32>,
    /// ... of each of the last N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub keep_yearly: Option<u32>,
    /// Leave debris of interrupted backups alone until it is this many hours old (default 1), so a
    /// backup still running elsewhere is not mistaken for debris.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "HOURS"))]
    pub debris_grace_hours: Option<f64>,
    /// Report what would be deleted; delete nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub dry_run: bool,
}

/// `freezer-worker verify`: check that stored backups are sound, and optionally that they restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// Name of the backup to verify.
    #[cfg_attr(feature = "clap", arg(long, short = 'N'))]
    pub backup_name: String,
    /// Container: a directory (local, ssh) or `bucket/prefix` (s3) within each storage; empty or
    /// absent: each configured storage's own `container`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            short = 'C',
            env = "FREEZER_CONTAINER",
            default_value = "",
            hide_default_value = true
        )
    )]
    pub container: String,
    /// Storages: names from the worker's configuration (a task names nothing else); on the command
    /// line also `local` (the default), `s3` or `ssh`. Each is verified.
    #[schemars(length(min = 1), inner(regex(pattern = IDENT_PATTERN)))]
    #[cfg_attr(
        feature = "clap",
        arg(long, value_delimiter = ',', env = "FREEZER_STORAGE")
    )]
    pub storage: Vec<String>,
    /// Host part of the storage key (default: the worker's `[daemon] hostname`, else the machine's
    /// host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_HOSTNAME"))]
    pub hostname: Option<String>,
    /// Verify the chain of the backup at or before this time (default: every backup of the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long))]
    pub restore_from_date: Option<String>,
    /// Name of the encryption key in the worker's configuration (a task's replacement for
    /// `--encrypt-pass-file`); without a key, encrypted backups are checked for structure only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IDENT_PATTERN))]
    #[cfg_attr(feature = "clap", arg(long))]
    pub encrypt_key: Option<String>,
    /// Read every segment: check its tag, decompress it, parse the archive against the index.
    #[serde(default, skip_serializing_if = "is_false")]
    #[cfg_attr(feature = "clap", arg(long, conflicts_with = "read_data_subset"))]
    pub read_data: bool,
    /// Read this percentage of segments (more than 0, at most 100), chosen at random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "PCT"))]
    pub read_data_subset: Option<f64>,
    /// Compare the backup's state (newest, or at `restore_from_date`) with this live tree
    /// (absolute in a task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ABS_PATH_PATTERN))]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR"))]
    pub compare_to: Option<PathBuf>,
    /// Download limit in bytes per second over all transfers (suffixes K, M, G; default: the
    /// configuration's, else unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_DOWNLOAD_LIMIT"))]
    pub download_limit: Option<ByteSize>,
}

/// `freezer-worker list`: list the backups in a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// Only this backup name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, short = 'N'))]
    pub backup_name: Option<String>,
    /// Container: a directory (local, ssh) or `bucket/prefix` (s3) within each storage; empty or
    /// absent: each configured storage's own `container`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            short = 'C',
            env = "FREEZER_CONTAINER",
            default_value = "",
            hide_default_value = true
        )
    )]
    pub container: String,
    /// Storages: names from the worker's configuration (a task names nothing else); on the command
    /// line also `local` (the default), `s3` or `ssh`. Each is listed.
    #[schemars(length(min = 1), inner(regex(pattern = IDENT_PATTERN)))]
    #[cfg_attr(
        feature = "clap",
        arg(long, value_delimiter = ',', env = "FREEZER_STORAGE")
    )]
    pub storage: Vec<String>,
    /// Only this host's backups (default: every host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, env = "FREEZER_HOSTNAME"))]
    pub hostname: Option<String>,
}

/// A task that does nothing but report success.
///
/// It goes through everything a real task does (publish, queue, consume, task state, events) and
/// touches no storage, so timing noop tasks measures the fleet's own overhead (the benchmark of
/// issue #5), and it lets tests exercise the fleet without backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct NoopSpec {
    /// Milliseconds to wait before succeeding (default 0; at most a day).
    ///
    /// For tests of a long task: heartbeats, consumer timeouts, a worker killed mid-task. An option
    /// of `freezer-dispatcher publish noop`; the worker's CLI has no noop command.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(max = MAX_NOOP_SLEEP_MS))]
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value_t = 0, hide_default_value = true)
    )]
    pub sleep_ms: u64,
}

/// A task's kind and spec together, so that they cannot disagree: on the wire
/// `"kind": "backup", "spec": {...}`, and the spec is read with the type of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "spec", rename_all = "lowercase")]
pub enum TaskSpec {
    /// Write a new backup.
    Backup(BackupSpec),
    /// Restore a backup into a directory.
    Restore(RestoreSpec),
    /// Apply retention and remove debris.
    Prune(PruneSpec),
    /// Check stored backups.
    Verify(VerifySpec),
    /// List backups.
    List(ListSpec),
    /// Do nothing and succeed.
    Noop(NoopSpec),
}

impl TaskSpec {
    /// The kind of this spec (for routing keys, metrics and events).
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskSpec::Backup(_) => TaskKind::Backup,
            TaskSpec::Restore(_) => TaskKind::Restore,
            TaskSpec::Prune(_) => TaskKind::Prune,
            TaskSpec::Verify(_) => TaskKind::Verify,
            TaskSpec::List(_) => TaskKind::List,
            TaskSpec::Noop(_) => TaskKind::Noop,
        }
    }

    /// Reads `spec` as the spec type of `kind`; errors name the field as `spec.<field>`. This is how
    /// a task envelope is read: kind first, then the spec it selects.
    pub fn from_parts(kind: TaskKind, spec: Value) -> Result<TaskSpec, ContractError> {
        fn parse<T: DeserializeOwned>(v: Value) -> Result<T, ContractError> {
            serde_path_to_error::deserialize(v)
                .map_err(|e| ContractError::from_path_error("spec", e))
        }
        if !spec.is_object() {
            return Err(ContractError::Field {
                path: "spec".into(),
                message: format!("expected a JSON object, found {}", json_type(&spec)),
            });
        }
        Ok(match kind {
            TaskKind::Backup => TaskSpec::Backup(parse(spec)?),
            TaskKind::Restore => TaskSpec::Restore(parse(spec)?),
            TaskKind::Prune => TaskSpec::Prune(parse(spec)?),
            TaskKind::Verify => TaskSpec::Verify(parse(spec)?),
            TaskKind::List => TaskSpec::List(parse(spec)?),
            TaskKind::Noop => TaskSpec::Noop(parse(spec)?),
        })
    }

    /// Checks the rules the types cannot express (conflicting options, ranges, absolute paths,
    /// names); the same checks the CLI makes, so a bad job is refused when published, not hours
    /// later on a worker.
    pub fn validate(&self) -> Result<(), ContractError> {
        match self {
            TaskSpec::Backup(s) => s.validate(),
            TaskSpec::Restore(s) => s.validate(),
            TaskSpec::Prune(s) => s.validate(),
            TaskSpec::Verify(s) => s.validate(),
            TaskSpec::List(s) => s.validate(),
            TaskSpec::Noop(s) => s.validate(),
        }
    }
}

impl BackupSpec {
    /// Checks the rules of `freezer-worker backup` for a task; see [`TaskSpec::validate`].
    pub fn validate(&self) -> Result<(), ContractError> {
        self.validate_as(Author::Task)
    }

    /// Checks the rules of `freezer-worker backup` for `author` (see [`Author`]).
    pub fn validate_as(&self, author: Author) -> Result<(), ContractError> {
        check_path(author, "spec.path_to_backup", &self.path_to_backup)?;
        check_storage_key_part("spec.backup_name", &self.backup_name)?;
        check_location(
            author,
            &self.container,
            &self.storage,
            self.hostname.as_deref(),
        )?;
        let codec = self.compression.unwrap_or_default();
        if let Some(level) = self.compression_level {
            let range = codec.level_range();
            if !range.contains(&level) {
                return Err(ContractError::invalid(
                    "spec.compression_level",
                    format!(
                        "{level} is out of range {}..={} for {}",
                        range.start(),
                        range.end(),
                        codec.as_str()
                    ),
                ));
            }
        }
        check_optional_ident("spec.encrypt_key", self.encrypt_key.as_deref())?;
        if self.max_level.is_some() && (self.always_level.is_some() || self.no_incremental) {
            return Err(ContractError::invalid(
                "spec.max_level",
                "conflicts with always_level and no_incremental: give one level option",
            ));
        }
        if self.always_level.is_some() && self.no_incremental {
            return Err(ContractError::invalid(
                "spec.always_level",
                "conflicts with no_incremental: give one level option",
            ));
        }
        if let Some(days) = self.restart_always_level {
            if !(days.is_finite() && days > 0.0) {
                return Err(ContractError::invalid(
                    "spec.restart_always_level",
                    "must be a positive number of days",
                ));
            }
        }
        check_positive_size("spec.max_segment_size", self.max_segment_size)?;
        check_segment_size("spec.max_segment_size", self.max_segment_size)?;
        for (i, glob) in self.exclude.iter().enumerate() {
            if glob.is_empty() || glob.contains('\0') {
                return Err(ContractError::invalid(
                    format!("spec.exclude[{i}]"),
                    "must be a non-empty glob",
                ));
            }
        }
        check_positive_size("spec.upload_limit", self.upload_limit)?;
        check_queue_size("spec.queue_size", self.queue_size)?;
        self.check_bounds()?;
        check_idents("spec.hooks", &self.hooks)
    }
}

impl RestoreSpec {
    /// Checks the rules of `freezer-worker restore` for a task; see [`TaskSpec::validate`].
    pub fn validate(&self) -> Result<(), ContractError> {
        self.validate_as(Author::Task)
    }

    /// Checks the rules of `freezer-worker restore` for `author` (see [`Author`]).
    pub fn validate_as(&self, author: Author) -> Result<(), ContractError> {
        check_storage_key_part("spec.backup_name", &self.backup_name)?;
        check_location(
            author,
            &self.container,
            &self.storage,
            self.hostname.as_deref(),
        )?;
        check_path(author, "spec.restore_abs_path", &self.restore_abs_path)?;
        if let Some(date) = &self.restore_from_date {
            check_user_date("spec.restore_from_date", date)?;
        }
        check_optional_ident("spec.encrypt_key", self.encrypt_key.as_deref())?;
        check_positive_size("spec.download_limit", self.download_limit)?;
        check_queue_size("spec.queue_size", self.queue_size)?;
        check_rate("spec.download_limit", self.download_limit)?;
        check_idents("spec.hooks", &self.hooks)
    }
}

impl PruneSpec {
    /// Checks the rules of `freezer-worker prune` for a task; see [`TaskSpec::validate`].
    pub fn validate(&self) -> Result<(), ContractError> {
        self.validate_as(Author::Task)
    }

    /// Checks the rules of `freezer-worker prune` for `author` (see [`Author`]).
    pub fn validate_as(&self, author: Author) -> Result<(), ContractError> {
        if let Some(name) = &self.backup_name {
            check_storage_key_part("spec.backup_name", name)?;
        }
        check_location(
            author,
            &self.container,
            &self.storage,
            self.hostname.as_deref(),
        )?;
        check_non_negative("spec.remove_older_than", self.remove_older_than, "days")?;
        if let Some(date) = &self.remove_from_date {
            check_user_date("spec.remove_from_date", date)?;
        }
        check_non_negative("spec.debris_grace_hours", self.debris_grace_hours, "hours")?;
        self.check_bounds()
    }
}

impl VerifySpec {
    /// Checks the rules of `freezer-worker verify` for a task; see [`TaskSpec::validate`].
    pub fn validate(&self) -> Result<(), ContractError> {
        self.validate_as(Author::Task)
    }

    /// Checks the rules of `freezer-worker verify` for `author` (see [`Author`]).
    pub fn validate_as(&self, author: Author) -> Result<(), ContractError> {
        check_storage_key_part("spec.backup_name", &self.backup_name)?;
        check_location(
            author,
            &self.container,
            &self.storage,
            self.hostname.as_deref(),
        )?;
        if let Some(date) = &self.restore_from_date {
            check_user_date("spec.restore_from_date", date)?;
        }
        check_optional_ident("spec.encrypt_key", self.encrypt_key.as_deref())?;
        if let Some(pct) = self.read_data_subset {
            if self.read_data {
                return Err(ContractError::invalid(
                    "spec.read_data_subset",
                    "conflicts with read_data: give one",
                ));
            }
            if !(pct > 0.0 && pct <= 100.0) {
                return Err(ContractError::invalid(
                    "spec.read_data_subset",
                    format!("{pct} must be more than 0 and at most 100 (percent)"),
                ));
            }
        }
        if let Some(dir) = &self.compare_to {
            check_path(author, "spec.compare_to", dir)?;
        }
        check_positive_size("spec.download_limit", self.download_limit)?;
        check_rate("spec.download_limit", self.download_limit)
    }
}

impl ListSpec {
    /// Checks the rules of `freezer-worker list` for a task; see [`TaskSpec::validate`].
    pub fn validate(&self) -> Result<(), ContractError> {
        self.validate_as(Author::Task)
    }

    /// Checks the rules of `freezer-worker list` for `author` (see [`Author`]).
    pub fn validate_as(&self, author: Author) -> Result<(), ContractError> {
        if let Some(name) = &self.backup_name {
            check_storage_key_part("spec.backup_name", name)?;
        }
        check_location(
            author,
            &self.container,
            &self.storage,
            self.hostname.as_deref(),
        )
    }
}

impl NoopSpec {
    /// Checks that the sleep is at most [`MAX_NOOP_SLEEP_MS`].
    pub fn validate(&self) -> Result<(), ContractError> {
        if self.sleep_ms > MAX_NOOP_SLEEP_MS {
            return Err(ContractError::invalid(
                "spec.sleep_ms",
                format!("{} is more than a day ({MAX_NOOP_SLEEP_MS})", self.sleep_ms),
            ));
        }
        Ok(())
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The options every kind shares: the container, the storages and the host.
fn check_location(
    author: Author,
    container: &str,
    storage: &[String],
    hostname: Option<&str>,
) -> Result<(), ContractError> {
    let climbs = || {
        Path::new(container)
            .components()
            .any(|c| c == Component::ParentDir)
    };
    if container.chars().any(char::is_control) || (author == Author::Task && climbs()) {
        return Err(ContractError::invalid(
            "spec.container",
            format!("{container:?} must be without control characters or '..'"),
        ));
    }
    if storage.is_empty() && author == Author::Task {
        return Err(ContractError::invalid(
            "spec.storage",
            "names no storage: give at least one storage name from the worker's configuration",
        ));
    }
    check_idents("spec.storage", storage)?;
    if let Some(host) = hostname {
        check_storage_key_part("spec.hostname", host)?;
    }
    Ok(())
}

/// A list of names, each an identifier, none twice (a storage named twice would be written twice).
fn check_idents(path: &str, names: &[String]) -> Result<(), ContractError> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        check_ident(&format!("{path}[{i}]"), name)?;
        if !seen.insert(name) {
            return Err(ContractError::invalid(
                format!("{path}[{i}]"),
                format!("{name:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn check_optional_ident(path: &str, name: Option<&str>) -> Result<(), ContractError> {
    name.map_or(Ok(()), |n| check_ident(path, n))
}

/// Paths on the worker's machine: absolute in a task (a task has no working directory), any path
/// without a NUL byte on a command line.
fn check_path(author: Author, path: &str, p: &Path) -> Result<(), ContractError> {
    if p.as_os_str().as_encoded_bytes().contains(&0) || p.as_os_str().is_empty() {
        return Err(ContractError::invalid(
            path,
            format!("{} must be a path", p.display()),
        ));
    }
    if author == Author::Task && !p.is_absolute() {
        return Err(ContractError::invalid(
            path,
            format!(
                "{} must be an absolute path (a task has no working directory)",
                p.display()
            ),
        ));
    }
    Ok(())
}

fn check_non_negative(path: &str, v: Option<f64>, unit: &str) -> Result<(), ContractError> {
    match v {
        Some(x) if !(x.is_finite() && x >= 0.0) => Err(ContractError::invalid(
            path,
            format!("{x} must be a number of {unit}, 0 or more"),
        )),
        _ => Ok(()),
    }
}

// Bounds of the numeric fields: every number a task carries is bounded, so no message can make
// the worker's arithmetic overflow or hold a slot for ever.

impl BackupSpec {
    /// Levels at most [`MAX_LEVEL`], days at most [`MAX_DAYS`], the upload rate at most
    /// [`MAX_TRANSFER_RATE`].
    fn check_bounds(&self) -> Result<(), ContractError> {
        for (path, level) in [
            ("spec.max_level", self.max_level),
            ("spec.always_level", self.always_level),
        ] {
            if let Some(n) = level.filter(|n| *n > MAX_LEVEL) {
                return Err(ContractError::invalid(
                    path,
                    format!("{n} is more than {MAX_LEVEL} levels"),
                ));
            }
        }
        check_at_most(
            "spec.restart_always_level",
            self.restart_always_level,
            MAX_DAYS,
            "days",
        )?;
        check_rate("spec.upload_limit", self.upload_limit)
    }
}

impl PruneSpec {
    /// Days at most [`MAX_DAYS`] (the grace in hours as many days), counts at most [`MAX_KEEP`].
    fn check_bounds(&self) -> Result<(), ContractError> {
        check_at_most(
            "spec.remove_older_than",
            self.remove_older_than,
            MAX_DAYS,
            "days",
        )?;
        check_at_most(
            "spec.debris_grace_hours",
            self.debris_grace_hours,
            MAX_DAYS * 24.0,
            "hours",
        )?;
        for (path, n) in [
            ("spec.keep_last", self.keep_last),
            ("spec.keep_hourly", self.keep_hourly),
            ("spec.keep_daily", self.keep_daily),
            ("spec.keep_weekly", self.keep_weekly),
            ("spec.keep_monthly", self.keep_monthly),
            ("spec.keep_yearly", self.keep_yearly),
        ] {
            if let Some(n) = n.filter(|n| *n > MAX_KEEP) {
                return Err(ContractError::invalid(
                    path,
                    format!("{n} is more than {MAX_KEEP}"),
                ));
            }
        }
        Ok(())
    }
}

/// A number of `unit` at most `max` (its sign and finiteness are checked apart).
fn check_at_most(path: &str, v: Option<f64>, max: f64, unit: &str) -> Result<(), ContractError> {
    match v {
        Some(x) if x > max => Err(ContractError::invalid(
            path,
            format!("{x} is more than {max} {unit}"),
        )),
        _ => Ok(()),
    }
}

/// A transfer rate at most [`MAX_TRANSFER_RATE`] bytes per second.
fn check_rate(path: &str, rate: Option<ByteSize>) -> Result<(), ContractError> {
    match rate {
        Some(ByteSize(r)) if r > MAX_TRANSFER_RATE => Err(ContractError::invalid(
            path,
            format!(
                "{r} bytes per second is more than {MAX_TRANSFER_RATE} (1 TiB/s): leave it out \
                 for no limit"
            ),
        )),
        _ => Ok(()),
    }
}
