//! Names and values the workers and the dispatcher share in Redis (ARCHITECTURE.md §5): key names under
//! the `freezer:` prefix and the task states. Pure string functions, no Redis client: both binaries
//! build the same key from the same parts, and ops can find a key by reading this page.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::EventStatus;
use crate::id::TaskId;

/// Prefix of every Freezer key, so Freezer can share a Redis with other software and its keys can be
/// listed (`SCAN MATCH freezer:*`) or dropped together.
pub const KEY_PREFIX: &str = "freezer:";

/// Where a task is in its life, as recorded under [`task_key`]. A redelivered task is looked up
/// here first: a finished one reports its recorded result, a running one is not started twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Published, not yet started by any worker.
    Queued,
    /// A worker runs it (the record names the node and carries its heartbeat).
    Running,
    /// Finished successfully (final).
    Succeeded,
    /// Failed or was rejected (final).
    Failed,
    /// Its `expires_at` passed before it started (final).
    Expired,
}

impl TaskState {
    /// Every state, for metrics created at 0 and exhaustive tests.
    pub const ALL: [TaskState; 5] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Expired,
    ];

    /// The value stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Expired => "expired",
        }
    }

    /// The state named `s` in Redis, if it is one.
    pub fn from_stored(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the task is over: nothing will run it again under this id.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Expired
        )
    }

    /// The state an event moves its task to: started and progress mean running; a rejection
    /// counts as failed (the task will never run under its id).
    pub fn after(status: &EventStatus) -> TaskState {
        match status {
            EventStatus::Started | EventStatus::Progress { .. } => TaskState::Running,
            EventStatus::Succeeded { .. } => TaskState::Succeeded,
            EventStatus::Failed { .. } | EventStatus::Rejected { .. } => TaskState::Failed,
            EventStatus::Expired { .. } => TaskState::Expired,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `freezer:task:<task id>`: the task's state, node, heartbeat and result.
pub fn task_key(task_id: &TaskId) -> String {
    format!("{KEY_PREFIX}task:{task_id}")
}

/// What one writer lock protects: one backup name on one storage, `<storage>/<container>/<host>_<name>`
/// (ARCHITECTURE.md §5's `<storage>/<host>_<name>`, where the storage's place includes the container, as
/// the storage layout of ARCHITECTURE.md §2 does). `storage` is the storage's name in the workers'
/// configuration, which must designate the same place on every worker.
///
/// The container is written canonically ([`canonical_container`]), so `a/b`, `a/b/`, `a//b` and
/// `a/./b`, which name the same objects, take the same lock.
pub fn lock_scope(storage: &str, container: &str, hostname: &str, backup_name: &str) -> String {
    let container = canonical_container(container);
    format!("{storage}/{container}/{hostname}_{backup_name}")
}

/// `container` with empty and `.` path segments dropped, keeping a leading `/` (an absolute
/// directory stays absolute): the one spelling of a place that several spellings name.
pub fn canonical_container(container: &str) -> String {
    let segments: Vec<&str> = container
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let root = if container.starts_with('/') { "/" } else { "" };
    format!("{root}{}", segments.join("/"))
}

/// `freezer:lock:<scope>`: the writer lock of a backup name (see [`lock_scope`]), held by backup
/// and prune with a random token (`SET NX PX`, renewed while running, compare-and-delete). A task
/// writing to several storages takes one lock per storage, in sorted order so two tasks cannot
/// deadlock.
pub fn lock_key(scope: &str) -> String {
    format!("{KEY_PREFIX}lock:{scope}")
}

/// `freezer:fence:<scope>`: the counter (`INCR`) that hands out a fencing token with each
/// acquisition of [`lock_key`]; the manifest records the token and a commit older than the newest
/// token seen is refused.
pub fn fence_key(scope: &str) -> String {
    format!("{KEY_PREFIX}fence:{scope}")
}

/// `freezer:worker:<node>`: a worker's heartbeat (node, pools, version, capacity, running tasks),
/// with a TTL, so that a worker that died drops out of `freezer-dispatcher workers` by itself.
pub fn worker_key(node: &str) -> String {
    format!("{KEY_PREFIX}worker:{node}")
}

/// `freezer:session:<session id>:<tag>`: the barrier the members of one session step join before
/// starting together. Ids and tags hold no `:` (see [`crate::check_ident`]), so the key is
/// unambiguous.
pub fn session_key(session_id: &str, tag: &str) -> String {
    format!("{KEY_PREFIX}session:{session_id}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_live_under_the_freezer_prefix() {
        let id = TaskId::parse("01936a3e-7c1b-7000-8000-000000000001").unwrap();
        assert_eq!(
            task_key(&id),
            "freezer:task:01936a3e-7c1b-7000-8000-000000000001"
        );
        for spelling in [
            "backups/prod",
            "backups/prod/",
            "backups//prod",
            "backups/./prod",
        ] {
            assert_eq!(
                lock_scope("s3-main", spelling, "web1", "etc"),
                "s3-main/backups/prod/web1_etc",
                "{spelling}"
            );
        }
        assert_eq!(
            lock_scope("nfs", "/srv//backups/", "web1", "etc"),
            "nfs//srv/backups/web1_etc"
        );
        let scope = lock_scope("s3-main", "backups/prod", "web1", "etc");
        assert_eq!(scope, "s3-main/backups/prod/web1_etc");
        assert_eq!(
            lock_key(&scope),
            "freezer:lock:s3-main/backups/prod/web1_etc"
        );
        assert_eq!(
            fence_key(&scope),
            "freezer:fence:s3-main/backups/prod/web1_etc"
        );
        assert_eq!(worker_key("web1"), "freezer:worker:web1");
        assert_eq!(
            session_key("db-nightly", "backup"),
            "freezer:session:db-nightly:backup"
        );
    }

    #[test]
    fn task_states_are_stored_by_name() {
        for state in TaskState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), json!(state.as_str()));
            assert_eq!(TaskState::from_stored(state.as_str()), Some(state));
        }
        assert_eq!(TaskState::from_stored("rejected"), None);
        let finals: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [TaskState::Succeeded, TaskState::Failed, TaskState::Expired]
        );
    }

    #[test]
    fn events_move_tasks_to_the_matching_state() {
        let at = crate::UtcTime::parse("2026-11-25T13:00:00Z").unwrap();
        let cases = [
            (EventStatus::Started, TaskState::Running),
            (
                EventStatus::Succeeded {
                    exit_code: 0,
                    result: json!({}),
                },
                TaskState::Succeeded,
            ),
            (EventStatus::Expired { expires_at: at }, TaskState::Expired),
            (
                EventStatus::Rejected {
                    reason: "bad".into(),
                    message_id: None,
                },
                TaskState::Failed,
            ),
        ];
        for (status, state) in cases {
            assert_eq!(TaskState::after(&status), state);
            assert_eq!(status.is_final(), state.is_final());
        }
    }
}
