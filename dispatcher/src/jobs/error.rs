//! Why a job file, or the jobs directory, could not be loaded: typed, so the loader keeps the
//! structure (which job, which field) while the text stays the one `freezer-dispatcher jobs`
//! prints (`job "web1-home": action[1].keep_daily: ...`).

use freezer_contracts::ContractError;
use std::fmt;
use std::path::PathBuf;

/// What is wrong at one place of a job: a field, by its path from the job (`action[1].keep_daily`,
/// `schedule.cron`), or a table as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A field is missing, unknown, or holds a value that cannot be used.
    #[error("{path}: {reason}")]
    Field {
        /// Where, from the job (`session.nodes[1]`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The table as a whole is wrong (no target, two schedules, not a table); under a parent
    /// field it reads as that field's error.
    #[error("{0}")]
    Table(String),
}

impl FieldError {
    /// The field at `path` is wrong for `reason`.
    pub fn field(path: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError::Field {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The table as a whole is wrong for `reason`.
    pub fn table(reason: impl Into<String>) -> FieldError {
        FieldError::Table(reason.into())
    }

    /// This error of a nested table, under the parent's field: `field` becomes `parent.field`, the
    /// table itself becomes `parent`.
    pub fn under(self, parent: &str) -> FieldError {
        match self {
            FieldError::Field { path, reason } => FieldError::Field {
                path: format!("{parent}.{path}"),
                reason,
            },
            FieldError::Table(reason) => FieldError::Field {
                path: parent.to_string(),
                reason,
            },
        }
    }

    /// A contracts error about an action's spec, its path made relative to the action
    /// (`spec.max_level` is the action's `max_level`, `spec` the action itself).
    pub fn from_spec(e: ContractError) -> FieldError {
        match &e {
            ContractError::Field { path, message } | ContractError::Invalid { path, message } => {
                match path.strip_prefix("spec.") {
                    Some(field) => FieldError::field(field, message.clone()),
                    None if path == "spec" => FieldError::table(message.clone()),
                    None => FieldError::table(e.to_string()),
                }
            }
            _ => FieldError::table(e.to_string()),
        }
    }
}

/// A name the contracts refuse (`check_ident("node", ...)`): the field it names.
impl From<ContractError> for FieldError {
    fn from(e: ContractError) -> FieldError {
        match e {
            ContractError::Field { path, message } | ContractError::Invalid { path, message }
                if !path.is_empty() =>
            {
                FieldError::Field {
                    path,
                    reason: message,
                }
            }
            other => FieldError::table(other.to_string()),
        }
    }
}

/// Which `[[job]]` of a file: its id when it has one, else its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRef {
    /// `job "web1-home"`.
    Id(String),
    /// `job[2]`, for an entry without an id.
    Index(usize),
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobRef::Id(id) => write!(f, "job {id:?}"),
            JobRef::Index(i) => write!(f, "job[{i}]"),
        }
    }
}

/// One problem that keeps a job file (or the jobs directory) from loading.
#[derive(Debug, thiserror::Error)]
pub enum JobFileError {
    /// The file is not TOML.
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    /// The top-level `job` key holds something other than `[[job]]` tables.
    #[error("job: expected [[job]] tables, found {found}")]
    NotJobTables {
        /// The TOML type found.
        found: &'static str,
    },
    /// A top-level key other than `job`.
    #[error("unknown top-level key {0:?} (a job file holds [[job]] tables)")]
    UnknownTopLevelKey(String),
    /// A job is wrong.
    #[error("{job}: {error}")]
    Job {
        /// Which job.
        job: JobRef,
        /// What is wrong with it.
        error: FieldError,
    },
    /// A job id an earlier file already defines.
    #[error("job {id:?}: already defined in {}", other.display())]
    AlreadyDefined {
        /// The job id.
        id: String,
        /// The file that defines it first.
        other: PathBuf,
    },
    /// The file cannot be read.
    #[error(transparent)]
    ReadFile(ReadError),
    /// The jobs directory cannot be listed.
    #[error("cannot read the jobs directory: {0}")]
    ReadDir(ReadError),
}

/// An I/O error kept as its kind and text, so that what one read of the jobs directory found can
/// be compared with the last read (the watcher re-parses only on a change) and cloned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    /// The I/O error's kind.
    pub kind: std::io::ErrorKind,
    /// Its text (`No such file or directory (os error 2)`).
    pub message: String,
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> ReadError {
        ReadError {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// A schedule rule that cannot be read (`cron`, `timezone`).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Not a cron expression croner reads (the text includes croner's reason).
    #[error("{expr:?} is not a cron expression: {reason}")]
    Cron {
        /// The expression as written.
        expr: String,
        /// Why croner refused it.
        reason: croner::errors::CronError,
    },
    /// Not an IANA time zone name.
    #[error("{0:?} is not an IANA time zone name (e.g. UTC, Europe/Berlin)")]
    Timezone(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_and_contract_errors_keep_the_text() {
        let e = FieldError::field("cron", "bad").under("schedule");
        assert_eq!(e.to_string(), "schedule.cron: bad");
        let e = FieldError::table("give one").under("schedule");
        assert_eq!(e.to_string(), "schedule: give one");
        let c = ContractError::Invalid {
            path: "spec.max_level".into(),
            message: "conflicts".into(),
        };
        assert_eq!(
            FieldError::from_spec(c).under("action[1]").to_string(),
            "action[1].max_level: conflicts"
        );
        let c = ContractError::Field {
            path: "spec".into(),
            message: "unknown field".into(),
        };
        assert_eq!(
            FieldError::from_spec(c).under("action[0]").to_string(),
            "action[0]: unknown field"
        );
        let e = JobFileError::Job {
            job: JobRef::Index(2),
            error: FieldError::table("expected a table"),
        };
        assert_eq!(e.to_string(), "job[2]: expected a table");
    }
}
