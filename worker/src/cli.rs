//! The standalone command line (`freezer-worker backup|restore|list`): option names follow
//! OpenStack Freezer's agent (DESIGN.md §6) so its users' scripts carry over.

use crate::codec::Codec;
use crate::config::WorkerConfig;
use crate::crypto;
use crate::engine::backup::{self, BackupOptions};
use crate::engine::restore::{self, RestoreOptions};
use crate::engine::walk::Dereference;
use crate::error::{Error, Result};
use crate::levels::LevelPolicy;
use crate::list;
use crate::progress::human_bytes;
use crate::storage::parse_rate;
use crate::timestamp::Timestamp;
use crate::CancellationToken;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `freezer-worker`: back up, restore and list backups.
#[derive(Debug, Parser)]
#[command(
    name = "freezer-worker",
    version,
    about = "Freezer backup worker (standalone commands)"
)]
pub struct Cli {
    /// Worker configuration file (named storages, S3/SSH settings, transfer limits, keys);
    /// default /etc/freezer/worker.toml when it exists.
    #[arg(long, global = true, env = "FREEZER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The standalone commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a directory or file.
    Backup(BackupArgs),
    /// Restore a backup into a directory.
    Restore(RestoreArgs),
    /// List the backups in a container.
    List(ListArgs),
    /// Show the details of backups (all of a name, or one by id).
    Info(InfoArgs),
    /// Delete backups a retention policy lets go, never breaking a chain; remove debris.
    Prune(PruneArgs),
    /// Check that stored backups are sound (and, with --read-data, restorable).
    Verify(VerifyArgs),
    /// Run the worker daemon: consume tasks from RabbitMQ (the `[daemon]` section of --config).
    Run,
}

/// `info` options.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Name of the backup.
    #[arg(long, short = 'N')]
    pub backup_name: String,
    #[command(flatten)]
    pub location: Location,
    /// Only this backup.
    #[arg(long)]
    pub backup_id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `prune` options.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this backup name (default: every name in the container).
    #[arg(long, short = 'N')]
    pub backup_name: Option<String>,
    #[command(flatten)]
    pub location: Location,
    /// Delete backups older than DAYS (fractions allowed), unless a kept backup needs them.
    #[arg(long, short = 'R', value_name = "DAYS")]
    pub remove_older_than: Option<f64>,
    /// Delete backups taken before DATE (YYYY-MM-DDThh:mm:ss, UTC), unless a kept backup needs them.
    #[arg(long, value_name = "DATE")]
    pub remove_from_date: Option<String>,
    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have backups.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// ... of each of the last N days.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// ... of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// ... of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// ... of each of the last N years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Leave debris of interrupted backups alone until it is this many hours old.
    #[arg(long, default_value_t = 1.0, value_name = "HOURS")]
    pub debris_grace_hours: f64,
    /// Print what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Name of the backup.
    #[arg(long, short = 'N')]
    pub backup_name: String,
    #[command(flatten)]
    pub location: Location,
    /// Verify the chain of the backup at or before DATE (default: every backup of the name).
    #[arg(long)]
    pub restore_from_date: Option<String>,
    /// Passphrase file: needed to check the tags of encrypted backups.
    #[arg(long, env = "FREEZER_ENCRYPT_PASS_FILE")]
    pub encrypt_pass_file: Option<PathBuf>,
    /// Read every segment: check its tag, decompress it, parse the archive against the index.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read this percentage of segments, chosen at random.
    #[arg(long, value_name = "PCT")]
    pub read_data_subset: Option<f64>,
    /// Compare the backup's state (newest, or at --restore-from-date) with this live tree.
    #[arg(long, value_name = "DIR")]
    pub compare_to: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options naming where the backups live, shared by the commands.
#[derive(Debug, Args)]
pub struct Location {
    /// Container: a directory (local, ssh) or bucket/prefix (s3); overrides a configured
    /// storage's own container.
    #[arg(long, short = 'C', env = "FREEZER_CONTAINER")]
    pub container: Option<String>,
    /// Storage: local (default), s3, ssh, or the name of a storage in the configuration;
    /// several, comma-separated, write to all of them and read from the first that has a backup.
    #[arg(long, value_delimiter = ',', env = "FREEZER_STORAGE")]
    pub storage: Vec<String>,
    /// Host part of the storage key (default: this machine's host name).
    #[arg(long, env = "FREEZER_HOSTNAME")]
    pub hostname: Option<String>,
    /// Segments transferred at once (default, or the configuration's: 4 up, 16 down).
    #[arg(long, env = "FREEZER_QUEUE_SIZE", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub queue_size: Option<u32>,
    /// Upload bandwidth limit in bytes per second over all transfers (suffixes K, M, G).
    #[arg(long, env = "FREEZER_UPLOAD_LIMIT", value_parser = parse_rate)]
    pub upload_limit: Option<u64>,
    /// Download bandwidth limit in bytes per second over all transfers (suffixes K, M, G).
    #[arg(long, env = "FREEZER_DOWNLOAD_LIMIT", value_parser = parse_rate)]
    pub download_limit: Option<u64>,
}

/// A storage opened from a [`Location`], with the transfer settings it was opened with.
struct Opened {
    storage: std::sync::Arc<dyn crate::storage::Storage>,
    /// Segments uploading at once.
    queue_size: usize,
    /// Segments downloading at once.
    download_queue_size: usize,
    upload_limit: Option<u64>,
}

impl Location {
    /// Opens the storage for a run that `cancel` stops: flags over the environment over the
    /// configuration.
    fn open(&self, config: &WorkerConfig, cancel: &CancellationToken) -> Result<Opened> {
        use crate::storage::{StorageRequest, Transfer, DEFAULT_DOWNLOAD_QUEUE_SIZE};
        let t = &config.transfer;
        let queue = self.queue_size.map(|q| q as usize).or(t.queue_size);
        let transfer = Transfer::merge(t, queue, self.upload_limit, self.download_limit)?;
        let request = StorageRequest {
            names: self.storage.clone(),
            container: self.container.clone(),
        };
        let env = |v: &str| std::env::var(v).ok();
        let storage = crate::storage::open(config, &request, &transfer, &env, cancel)?;
        Ok(Opened {
            storage,
            queue_size: transfer.queue_size,
            download_queue_size: queue.unwrap_or(DEFAULT_DOWNLOAD_QUEUE_SIZE).max(1),
            upload_limit: transfer.upload_limit,
        })
    }
}

/// `backup` options.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory or file to back up.
    #[arg(long, short = 'F')]
    pub path_to_backup: PathBuf,
    /// Name of the backup (with the host name, the storage key).
    #[arg(long, short = 'N')]
    pub backup_name: String,
    #[command(flatten)]
    pub location: Location,
    /// Compression codec.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: Codec,
    /// Compression level (zstd 1-22, gzip/bzip2 1-9, xz 0-9).
    #[arg(long)]
    pub compression_level: Option<i32>,
    /// Encrypt with the passphrase on this file's first line.
    #[arg(long, env = "FREEZER_ENCRYPT_PASS_FILE")]
    pub encrypt_pass_file: Option<PathBuf>,
    /// Incremental levels 0..N, then a new chain (default 6).
    #[arg(long, conflicts_with_all = ["always_level", "no_incremental"])]
    pub max_level: Option<u32>,
    /// After reaching level N, every backup is level N against level N-1 (1 = differential).
    #[arg(long, conflicts_with = "no_incremental")]
    pub always_level: Option<u32>,
    /// Start a new chain when the chain's level 0 is older than DAYS.
    #[arg(long, value_name = "DAYS")]
    pub restart_always_level: Option<f64>,
    /// Every backup is a full backup.
    #[arg(long)]
    pub no_incremental: bool,
    /// Largest stored segment, in bytes (suffixes K, M, G).
    #[arg(long, short = 'M', default_value = "2M", value_parser = parse_size)]
    pub max_segment_size: u64,
    /// Exclude entries matching this glob (a name, or a path relative to --path-to-backup).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Follow symlinks (soft), split hard links (hard), or both (all).
    #[arg(long, value_enum, default_value = "none")]
    pub dereference_symlink: Dereference,
    /// Do everything but store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `restore` options.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Name of the backup.
    #[arg(long, short = 'N')]
    pub backup_name: String,
    #[command(flatten)]
    pub location: Location,
    /// Directory to restore into (created if missing).
    #[arg(long)]
    pub restore_abs_path: PathBuf,
    /// Restore the newest backup at or before this UTC time (YYYY-MM-DDThh:mm:ss[Z]).
    #[arg(long)]
    pub restore_from_date: Option<String>,
    /// Allow restoring into a non-empty directory.
    #[arg(long)]
    pub overwrite: bool,
    /// Passphrase file for encrypted backups.
    #[arg(long, env = "FREEZER_ENCRYPT_PASS_FILE")]
    pub encrypt_pass_file: Option<PathBuf>,
    /// Check keys and index and report what would be restored; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `list` options.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this backup name.
    #[arg(long, short = 'N')]
    pub backup_name: Option<String>,
    #[command(flatten)]
    pub location: Location,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `4M`, `512K`, `1G` or plain bytes: the one spelling of sizes, shared with tasks and job
/// files through [`freezer_contracts::ByteSize`].
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    freezer_contracts::ByteSize::parse(s).map(|b| b.bytes())
}

/// The host part of storage keys: the given one, else this machine's host name.
pub(crate) fn hostname(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    })
}

/// Refuses a host or backup name that cannot be one path component.
pub(crate) fn check_name(what: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.contains('/') || v.contains('\0') || v == "." || v == ".." {
        return Err(Error::usage(format!(
            "{what} {v:?} must be non-empty and contain no '/'"
        )));
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("report serializes")
    );
}

/// Runs a parsed command until it ends or `cancel` (the CLI's root token, which its SIGINT
/// handler cancels) stops it; returns the process exit code.
pub fn run(cli: Cli, cancel: &CancellationToken) -> Result<i32> {
    let config = WorkerConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Backup(a) => run_backup(a, &config, cancel),
        Command::Restore(a) => run_restore(a, &config, cancel),
        Command::List(a) => run_list(a, &config, cancel),
        Command::Info(a) => run_info(a, &config, cancel),
        Command::Prune(a) => run_prune(a, &config, cancel),
        Command::Verify(a) => run_verify(a, &config, cancel),
        Command::Run => Ok(crate::daemon::main(config)),
    }
}

fn run_info(a: InfoArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let host = hostname(a.location.hostname.clone());
    let storage = a.location.open(config, cancel)?.storage;
    let (rows, damaged) = list::list(&*storage, Some(&a.backup_name), Some(&host))?;
    for d in &damaged {
        eprintln!("warning: {d}");
    }
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| a.backup_id.as_ref().is_none_or(|id| &r.backup_id == id))
        .collect();
    if rows.is_empty() {
        return Err(Error::not_found(format!(
            "no backup {}of {host}_{} in {}",
            a.backup_id
                .as_deref()
                .map(|i| format!("{i} "))
                .unwrap_or_default(),
            a.backup_name,
            storage.describe("")
        )));
    }
    if a.json {
        print_json(&rows);
    } else {
        for r in &rows {
            println!("backup {} ({}_{})", r.backup_id, r.hostname, r.backup_name);
            println!(
                "  level {} {:?}, parent {}, chain {}",
                r.level,
                r.kind,
                r.parent_id.as_deref().unwrap_or("-"),
                r.chain_id
            );
            println!("  started {}, finished {}", r.started_at, r.finished_at);
            println!(
                "  {} files, {} entries, read {}, stored {} in {} segments, {}{}",
                r.files,
                r.entries,
                human_bytes(r.bytes_read),
                human_bytes(r.bytes_stored),
                r.segments,
                r.compression,
                if r.encrypted { ", encrypted" } else { "" }
            );
            println!(
                "  restorable: {}",
                if r.restorable {
                    "yes"
                } else {
                    "NO (an object or an ancestor is missing)"
                }
            );
        }
    }
    Ok(0)
}

fn run_prune(a: PruneArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    use crate::engine::prune::{self, PruneOptions};
    use crate::retention::KeepPolicy;
    if a.remove_older_than.is_some_and(|d| d.is_nan() || d < 0.0) {
        return Err(Error::usage(
            "--remove-older-than must be a number of days, 0 or more",
        ));
    }
    if a.debris_grace_hours.is_nan() || a.debris_grace_hours < 0.0 {
        return Err(Error::usage("--debris-grace-hours must be 0 or more"));
    }
    // With a backup name and no host, the name is this machine's, as for backup and restore.
    let host = match (&a.backup_name, a.location.hostname.clone()) {
        (Some(_), h) => Some(hostname(h)),
        (None, h) => h,
    };
    let opts = PruneOptions {
        storage: a.location.open(config, cancel)?.storage,
        backup_name: a.backup_name,
        hostname: host,
        policy: KeepPolicy {
            older_than_days: a.remove_older_than,
            before: a
                .remove_from_date
                .as_deref()
                .map(Timestamp::parse_user_date_start)
                .transpose()?,
            last: a.keep_last,
            hourly: a.keep_hourly,
            daily: a.keep_daily,
            weekly: a.keep_weekly,
            monthly: a.keep_monthly,
            yearly: a.keep_yearly,
        },
        debris_grace_hours: a.debris_grace_hours,
        dry_run: a.dry_run,
    };
    let r = prune::prune(&opts, cancel)?;
    if a.json {
        print_json(&r);
        return Ok(0);
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    for n in &r.names {
        for d in &n.damaged {
            eprintln!("warning: {d}");
        }
        for d in &n.deleted {
            println!(
                "{verb} {} backup {} level {} ({})",
                n.name,
                d.backup_id,
                d.level,
                human_bytes(d.bytes)
            );
        }
        for d in &n.debris {
            println!(
                "{verb} debris {} ({} objects, {})",
                d.path,
                d.objects,
                human_bytes(d.bytes)
            );
        }
        let bytes: u64 = n.deleted.iter().map(|d| d.bytes).sum::<u64>()
            + n.debris.iter().map(|d| d.bytes).sum::<u64>();
        println!(
            "{}: kept {}, {verb} {} backup(s) and {} debris dir(s), {}",
            n.name,
            n.kept.len(),
            n.deleted.len(),
            n.debris.len(),
            human_bytes(bytes)
        );
    }
    Ok(0)
}

fn run_verify(a: VerifyArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    use crate::engine::verify::{self, ReadData, VerifyOptions};
    let read = match (a.read_data, a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(p)) if p > 0.0 && p <= 100.0 => ReadData::Subset(p),
        (false, Some(p)) => {
            return Err(Error::usage(format!(
                "--read-data-subset {p} must be in (0, 100]"
            )))
        }
        (false, None) => ReadData::None,
    };
    let opened = a.location.open(config, cancel)?;
    let opts = VerifyOptions {
        storage: opened.storage,
        queue_size: opened.download_queue_size,
        hostname: hostname(a.location.hostname.clone()),
        backup_name: a.backup_name,
        date: a
            .restore_from_date
            .as_deref()
            .map(Timestamp::parse_user_date)
            .transpose()?,
        pass: a
            .encrypt_pass_file
            .as_deref()
            .map(crypto::read_pass_file)
            .transpose()?,
        read,
        compare_to: a.compare_to,
    };
    let r = verify::verify(&opts, cancel)?;
    if a.json {
        print_json(&r);
    } else {
        for d in &r.damaged {
            println!("DAMAGED: {d}");
        }
        for d in &r.differences {
            println!("DIFFERS: {d}");
        }
        if !r.unkeyed.is_empty() {
            eprintln!(
                "warning: {} encrypted backup(s) were checked for structure only: give --encrypt-pass-file to check their tags",
                r.unkeyed.len()
            );
        }
        println!(
            "verify: {} backup(s), {} segment(s) read: {}{}",
            r.checked.len(),
            r.segments_read,
            if r.sound { "sound" } else { "DAMAGED" },
            if r.differences.is_empty() {
                ""
            } else {
                ", differs from the live tree"
            }
        );
    }
    Ok(if !r.sound {
        crate::error::ErrorKind::Integrity.exit_code()
    } else if !r.differences.is_empty() {
        1
    } else {
        0
    })
}

fn run_backup(a: BackupArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let host = hostname(a.location.hostname.clone());
    check_name("--hostname", &host)?;
    check_name("--backup-name", &a.backup_name)?;
    let level = a.compression_level.unwrap_or(a.compression.default_level());
    a.compression.validate_level(level)?;
    let pass = a
        .encrypt_pass_file
        .as_deref()
        .map(crypto::read_pass_file)
        .transpose()?;
    if a.restart_always_level
        .is_some_and(|d| d.is_nan() || d <= 0.0)
    {
        return Err(Error::usage(
            "--restart-always-level must be a positive number of days",
        ));
    }
    let opened = a.location.open(config, cancel)?;
    // Under an upload limit an object is paced whole, so objects are kept small enough for the
    // limit to hold within a few percent over any 10-second window.
    let max_segment_size = match opened.upload_limit {
        Some(limit) => a
            .max_segment_size
            .min(crate::storage::max_object_for(limit)),
        None => a.max_segment_size,
    };
    let opts = BackupOptions {
        path_to_backup: a.path_to_backup,
        storage: opened.storage,
        queue_size: opened.queue_size,
        backup_name: a.backup_name,
        hostname: host,
        codec: a.compression,
        level,
        pass,
        policy: LevelPolicy {
            no_incremental: a.no_incremental,
            max_level: a.max_level,
            always_level: a.always_level,
            restart_days: a.restart_always_level,
        },
        max_segment_size: usize::try_from(max_segment_size).unwrap_or(usize::MAX),
        excludes: a.exclude,
        dereference: a.dereference_symlink,
        dry_run: a.dry_run,
        progress: !a.json,
        fencing_token: None,
        commit_guard: None,
        counters: Default::default(),
    };
    let r = backup::backup(&opts, cancel)?;
    if a.json {
        print_json(&r);
    } else {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        let ratio = if r.bytes_stored > 0 {
            r.bytes_read as f64 / r.bytes_stored as f64
        } else {
            0.0
        };
        let speed = r.bytes_read as f64 / r.duration_seconds.max(1e-6);
        println!(
            "{}backup {} level {} ({:?}): {} files, {} stored now; read {}, stored {}, ratio {ratio:.2}, {}/s, {:.2} s",
            if r.dry_run { "dry run: " } else { "" },
            r.backup_id,
            r.level,
            r.kind,
            r.files,
            r.files_stored,
            human_bytes(r.bytes_read),
            human_bytes(r.bytes_stored),
            human_bytes(speed as u64),
            r.duration_seconds
        );
    }
    if r.unreadable > 0 {
        eprintln!(
            "freezer-worker: {} file(s) could not be read completely; the backup was written without them",
            r.unreadable
        );
        return Ok(3);
    }
    Ok(0)
}

fn run_restore(a: RestoreArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let host = hostname(a.location.hostname.clone());
    let date = a
        .restore_from_date
        .as_deref()
        .map(Timestamp::parse_user_date)
        .transpose()?;
    let pass = a
        .encrypt_pass_file
        .as_deref()
        .map(crypto::read_pass_file)
        .transpose()?;
    let target = std::path::absolute(&a.restore_abs_path)
        .map_err(|e| Error::io(a.restore_abs_path.display(), e))?;
    let opened = a.location.open(config, cancel)?;
    let opts = RestoreOptions {
        storage: opened.storage,
        queue_size: opened.download_queue_size,
        backup_name: a.backup_name,
        hostname: host,
        target,
        date,
        overwrite: a.overwrite,
        pass,
        dry_run: a.dry_run,
        progress: !a.json,
        counters: Default::default(),
    };
    let r = restore::restore(&opts, cancel)?;
    if a.json {
        print_json(&r);
    } else {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        let speed = r.bytes_written as f64 / r.duration_seconds.max(1e-6);
        println!(
            "{}restore of {} (level {}, {} backup(s) read): {} entries, {} files, {}, {}/s, {:.2} s",
            if r.dry_run { "dry run: " } else { "" },
            r.backup_id,
            r.level,
            r.chain.len(),
            r.entries,
            r.files,
            human_bytes(r.bytes_written),
            human_bytes(speed as u64),
            r.duration_seconds
        );
    }
    Ok(0)
}

fn run_list(a: ListArgs, config: &WorkerConfig, cancel: &CancellationToken) -> Result<i32> {
    let (rows, damaged) = list::list(
        &*a.location.open(config, cancel)?.storage,
        a.backup_name.as_deref(),
        a.location.hostname.as_deref(),
    )?;
    for d in &damaged {
        eprintln!("warning: {d}");
    }
    if a.json {
        print_json(&rows);
    } else {
        print!("{}", list::table(&rows));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("3X").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn level_options_conflict() {
        let r = Cli::try_parse_from([
            "freezer-worker",
            "backup",
            "-F",
            "/x",
            "-N",
            "n",
            "-C",
            "/c",
            "--max-level",
            "2",
            "--always-level",
            "1",
        ]);
        assert!(r.is_err());
    }
}
