//! The kind of a task, apart from its spec and its envelope: routing keys, metric labels and events
//! name a kind without carrying a spec, and both the spec and the envelope refer to it.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a task asks a worker to do: one variant per engine operation, the same as the subcommands of
/// `freezer-worker`, plus `noop`; used wherever the kind matters without its spec (routing keys,
/// metric labels, events).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Write a new backup (`freezer-worker backup`).
    Backup,
    /// Restore a backup into a directory (`freezer-worker restore`).
    Restore,
    /// Apply retention to a backup name (`freezer-worker prune`).
    Prune,
    /// Check the integrity of stored backups (`freezer-worker verify`).
    Verify,
    /// List backups (`freezer-worker list`).
    List,
    /// Do nothing and report success: measures the fleet's own overhead (see `NoopSpec`).
    Noop,
}

impl TaskKind {
    /// Every kind, for code that must cover them all (metrics created at 0, exhaustive tests).
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Backup,
        TaskKind::Restore,
        TaskKind::Prune,
        TaskKind::Verify,
        TaskKind::List,
        TaskKind::Noop,
    ];

    /// The wire name (as serialized), for routing keys and metric labels without going through serde.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Backup => "backup",
            TaskKind::Restore => "restore",
            TaskKind::Prune => "prune",
            TaskKind::Verify => "verify",
            TaskKind::List => "list",
            TaskKind::Noop => "noop",
        }
    }

    /// The kind named `s` on the wire, if this build knows it.
    pub fn from_wire(s: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
