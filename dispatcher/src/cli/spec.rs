//! The task options of `publish`, with the worker CLI's names (`--path-to-backup`, ...), turned
//! into a [`TaskSpec`] through the contracts' own reader: an option that the kind does not take is
//! refused with its name, exactly as a worker would refuse the task.

use clap::{Args, ValueEnum};
use freezer_contracts::{TaskKind, TaskSpec};
use freezer_dispatcher::Error;
use serde_json::{Map, Value};

/// The kinds `publish` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Write a backup.
    Backup,
    /// Restore a backup.
    Restore,
    /// Apply retention.
    Prune,
    /// Check stored backups.
    Verify,
    /// List backups.
    List,
    /// Do nothing (fleet overhead, tests).
    Noop,
}

impl Kind {
    /// The contracts' kind.
    pub fn task_kind(self) -> TaskKind {
        match self {
            Kind::Backup => TaskKind::Backup,
            Kind::Restore => TaskKind::Restore,
            Kind::Prune => TaskKind::Prune,
            Kind::Verify => TaskKind::Verify,
            Kind::List => TaskKind::List,
            Kind::Noop => TaskKind::Noop,
        }
    }
}

/// Every spec option; each kind takes its own subset (see `freezer-worker <kind> --help`).
#[derive(Debug, Clone, Default, Args)]
pub struct SpecArgs {
    /// Directory or file to back up (absolute, on the worker's machine).
    #[arg(long, help_heading = "Task options")]
    pub path_to_backup: Option<String>,
    /// Backup name.
    #[arg(long, help_heading = "Task options")]
    pub backup_name: Option<String>,
    /// Container within each storage.
    #[arg(long, help_heading = "Task options")]
    pub container: Option<String>,
    /// Storage name from the worker's configuration (repeatable).
    #[arg(long, help_heading = "Task options")]
    pub storage: Vec<String>,
    /// Host part of the storage key.
    #[arg(long, help_heading = "Task options")]
    pub hostname: Option<String>,
    /// zstd, gzip, bzip2, xz or none.
    #[arg(long, help_heading = "Task options")]
    pub compression: Option<String>,
    /// Codec level.
    #[arg(long, help_heading = "Task options")]
    pub compression_level: Option<i32>,
    /// Name of an encryption key in the worker's configuration (never the key itself).
    #[arg(long, help_heading = "Task options")]
    pub encrypt_key: Option<String>,
    /// Incremental levels 0..N, then a new chain.
    #[arg(long, help_heading = "Task options")]
    pub max_level: Option<u32>,
    /// After level N, every backup is level N.
    #[arg(long, help_heading = "Task options")]
    pub always_level: Option<u32>,
    /// New chain once level 0 is older than DAYS.
    #[arg(long, help_heading = "Task options")]
    pub restart_always_level: Option<f64>,
    /// Always a full backup.
    #[arg(long, help_heading = "Task options")]
    pub no_incremental: bool,
    /// Largest stored segment (e.g. 2M).
    #[arg(long, help_heading = "Task options")]
    pub max_segment_size: Option<String>,
    /// Glob of entries to leave out (repeatable).
    #[arg(long, help_heading = "Task options")]
    pub exclude: Vec<String>,
    /// none, soft, hard or all.
    #[arg(long, help_heading = "Task options")]
    pub dereference_symlink: Option<String>,
    /// Do everything but write or delete.
    #[arg(long, help_heading = "Task options")]
    pub dry_run: bool,
    /// Bytes per second written to storage (e.g. 10M).
    #[arg(long, help_heading = "Task options")]
    pub upload_limit: Option<String>,
    /// Bytes per second read from storage.
    #[arg(long, help_heading = "Task options")]
    pub download_limit: Option<String>,
    /// Segments in flight between the engine's stages.
    #[arg(long, help_heading = "Task options")]
    pub queue_size: Option<u32>,
    /// Hook name from the worker's configuration (repeatable).
    #[arg(long = "hook", help_heading = "Task options")]
    pub hooks: Vec<String>,
    /// Directory to restore into (absolute).
    #[arg(long, help_heading = "Task options")]
    pub restore_abs_path: Option<String>,
    /// Newest backup at or before this time (YYYY-MM-DDThh:mm:ss, UTC).
    #[arg(long, help_heading = "Task options")]
    pub restore_from_date: Option<String>,
    /// Restore into a non-empty directory.
    #[arg(long, help_heading = "Task options")]
    pub overwrite: bool,
    /// Delete backups older than DAYS.
    #[arg(long, help_heading = "Task options")]
    pub remove_older_than: Option<f64>,
    /// Delete backups taken before this time.
    #[arg(long, help_heading = "Task options")]
    pub remove_from_date: Option<String>,
    /// Keep the N newest backups.
    #[arg(long, help_heading = "Task options")]
    pub keep_last: Option<u32>,
    /// Keep one backup for each of the last N hours.
    #[arg(long, help_heading = "Task options")]
    pub keep_hourly: Option<u32>,
    /// ... days.
    #[arg(long, help_heading = "Task options")]
    pub keep_daily: Option<u32>,
    /// ... weeks.
    #[arg(long, help_heading = "Task options")]
    pub keep_weekly: Option<u32>,
    /// ... months.
    #[arg(long, help_heading = "Task options")]
    pub keep_monthly: Option<u32>,
    /// ... years.
    #[arg(long, help_heading = "Task options")]
    pub keep_yearly: Option<u32>,
    /// Leave debris of interrupted backups alone until it is this old.
    #[arg(long, help_heading = "Task options")]
    pub debris_grace_hours: Option<f64>,
    /// Read every segment.
    #[arg(long, help_heading = "Task options")]
    pub read_data: bool,
    /// Read this percentage of segments.
    #[arg(long, help_heading = "Task options")]
    pub read_data_subset: Option<f64>,
    /// Compare the backup with this live tree.
    #[arg(long, help_heading = "Task options")]
    pub compare_to: Option<String>,
    /// noop: milliseconds to sleep before succeeding.
    #[arg(long, help_heading = "Task options")]
    pub sleep_ms: Option<u64>,
}

impl SpecArgs {
    /// The spec of `kind` from the options given; the error names the offending field.
    pub fn to_spec(&self, kind: Kind) -> Result<TaskSpec, Error> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        let s = |v: &Option<String>| v.clone().map(Value::from);
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| Value::from(v.clone()));
        let flag = |b: bool| b.then_some(Value::Bool(true));
        put("path_to_backup", s(&self.path_to_backup));
        put("backup_name", s(&self.backup_name));
        put("container", s(&self.container));
        put("storage", list(&self.storage));
        put("hostname", s(&self.hostname));
        put("compression", s(&self.compression));
        put("compression_level", self.compression_level.map(Value::from));
        put("encrypt_key", s(&self.encrypt_key));
        put("max_level", self.max_level.map(Value::from));
        put("always_level", self.always_level.map(Value::from));
        put(
            "restart_always_level",
            self.restart_always_level.map(Value::from),
        );
        put("no_incremental", flag(self.no_incremental));
        put("max_segment_size", s(&self.max_segment_size));
        put("exclude", list(&self.exclude));
        put("dereference_symlink", s(&self.dereference_symlink));
        put("dry_run", flag(self.dry_run));
        put("upload_limit", s(&self.upload_limit));
        put("download_limit", s(&self.download_limit));
        put("queue_size", self.queue_size.map(Value::from));
        put("hooks", list(&self.hooks));
        put("restore_abs_path", s(&self.restore_abs_path));
        put("restore_from_date", s(&self.restore_from_date));
        put("overwrite", flag(self.overwrite));
        put("remove_older_than", self.remove_older_than.map(Value::from));
        put("remove_from_date", s(&self.remove_from_date));
        put("keep_last", self.keep_last.map(Value::from));
        put("keep_hourly", self.keep_hourly.map(Value::from));
        put("keep_daily", self.keep_daily.map(Value::from));
        put("keep_weekly", self.keep_weekly.map(Value::from));
        put("keep_monthly", self.keep_monthly.map(Value::from));
        put("keep_yearly", self.keep_yearly.map(Value::from));
        put(
            "debris_grace_hours",
            self.debris_grace_hours.map(Value::from),
        );
        put("read_data", flag(self.read_data));
        put("read_data_subset", self.read_data_subset.map(Value::from));
        put("compare_to", s(&self.compare_to));
        put("sleep_ms", self.sleep_ms.map(Value::from));
        let usage =
            |e: freezer_contracts::ContractError| Error::usage(option_names(&e.to_string()));
        let spec = TaskSpec::from_parts(kind.task_kind(), Value::Object(m)).map_err(usage)?;
        spec.validate().map_err(usage)?;
        Ok(spec)
    }
}

/// Rewrites `spec.path_to_backup`-style field paths in a contracts error as `--path-to-backup`.
fn option_names(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find("spec.") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 5..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push_str("--");
        out.push_str(&tail[..end].replace('_', "-"));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_read_with_the_contracts_rules() {
        let a = SpecArgs {
            path_to_backup: Some("/etc".into()),
            backup_name: Some("etc".into()),
            container: Some("c".into()),
            storage: vec!["s3".into()],
            ..Default::default()
        };
        assert_eq!(a.to_spec(Kind::Backup).unwrap().kind(), TaskKind::Backup);
        let e = a.to_spec(Kind::Noop).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = SpecArgs::default()
            .to_spec(Kind::Backup)
            .unwrap_err()
            .to_string();
        assert!(e.contains("path_to_backup"), "{e}");
        assert_eq!(option_names("spec.keep_last: bad"), "--keep-last: bad");
    }
}
