//! Wire types shared by `freezer-dispatcher` and `freezer-worker` (DESIGN.md §4).
//!
//! Both binaries depend on this crate and it depends on no I/O crate, so the two sides of RabbitMQ
//! cannot disagree about names or message shapes. This is a first skeleton: task envelopes, events and
//! topology names. Job definitions and the per-kind specs come with the dispatcher.
//!
//! # Compatibility rules
//!
//! - Every message carries [`SCHEMA_VERSION`]. A reader rejects a message whose version differs from
//!   its own ([`TaskEnvelope::validate`], [`Event::validate`]): a version bump means the meaning of
//!   existing fields changed, and guessing is worse than refusing.
//! - Within one schema version, a writer may add fields. Readers ignore fields they do not know (no
//!   `deny_unknown_fields`), so a newer dispatcher can talk to an older worker of the same version.
//! - Unknown enum values (a task kind or event status this build does not know) fail to parse: the task
//!   is malformed for this worker and is rejected to [`DEAD_LETTER_EXCHANGE`] with the reason.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the message schema in this crate; carried by every message so that a reader can refuse
/// messages written under different rules instead of misreading them.
pub const SCHEMA_VERSION: u32 = 1;

/// Direct exchange the dispatcher publishes tasks to; routing keys are queue names
/// ([`node_queue`], [`pool_queue`]), so one exchange serves both targeted and pooled work.
pub const TASKS_EXCHANGE: &str = "freezer.tasks";

/// Topic exchange for results and progress, routed by [`Event::routing_key`], so that the dispatcher,
/// dashboards and ops tooling can each bind to just the events they care about.
pub const EVENTS_EXCHANGE: &str = "freezer.events";

/// Exchange that task queues dead-letter to (delivery limit reached, or a task rejected as malformed),
/// so that no task silently disappears.
pub const DEAD_LETTER_EXCHANGE: &str = "freezer.dead";

/// Name of the queue holding tasks for one node (`freezer.node.<node>`), for work that must run on a
/// particular machine, such as backing up its own files.
pub fn node_queue(node: &str) -> String {
    format!("freezer.node.{node}")
}

/// Name of the queue shared by the workers of a pool (`freezer.pool.<pool>`), for work any of them can
/// do, such as pruning or verifying a shared storage.
pub fn pool_queue(pool: &str) -> String {
    format!("freezer.pool.{pool}")
}

/// What a task asks a worker to do: one variant per engine operation, the same as the subcommands of
/// `freezer-worker`, so that a task is exactly a CLI invocation sent over the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl TaskKind {
    /// Every kind, for code that must cover them all (metrics created at 0, exhaustive tests).
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Backup,
        TaskKind::Restore,
        TaskKind::Prune,
        TaskKind::Verify,
        TaskKind::List,
    ];

    /// The wire name (as serialized), for routing keys and metric labels without going through serde.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Backup => "backup",
            TaskKind::Restore => "restore",
            TaskKind::Prune => "prune",
            TaskKind::Verify => "verify",
            TaskKind::List => "list",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Membership of a task in a session: several nodes that must act together (e.g. restore a cluster to
/// one point in time). Members meet at a barrier keyed by `id` and `tag` before starting (DESIGN.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Session id, shared by all members' tasks of one session run.
    pub id: String,
    /// Which step of the session this is (a session can meet more than once, e.g. backup then verify).
    pub tag: String,
    /// Node names expected at the barrier; the session succeeds only if every member succeeds.
    pub members: Vec<String>,
    /// How long a member waits at the barrier for the others before the session policy applies.
    pub hold_off_seconds: u64,
}

/// One task as published to [`TASKS_EXCHANGE`]: everything a worker needs to run it, and nothing secret
/// (storages, keys and hooks are referred to by name in `spec` and resolved from the worker's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEnvelope {
    /// Must equal [`SCHEMA_VERSION`]; checked by [`TaskEnvelope::validate`].
    pub schema_version: u32,
    /// UUIDv7, also the AMQP message id and the idempotency key: a task id runs at most once.
    pub task_id: String,
    /// The operation to run; decides how `spec` is read.
    pub kind: TaskKind,
    /// The job definition this task comes from, for history and metrics.
    pub job_id: String,
    /// One scheduled or manual run of the job; a session's tasks share it.
    pub run_id: String,
    /// Which attempt this is (retries by the dispatcher publish a new attempt with the same run).
    pub attempt: u32,
    /// Present when the task is part of a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// RFC 3339 UTC time before which the task must not start. Kept as text here (this crate has no
    /// time library); the consumer parses it and treats an unparsable value as a malformed task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// RFC 3339 UTC time after which the task is reported as expired instead of run. Text, as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The kind's options, named as the CLI options of DESIGN.md §6 (e.g. `{"backup_name": "etc"}`).
    /// Opaque here until the per-kind specs are defined.
    pub spec: Value,
}

impl TaskEnvelope {
    /// Parses and validates a task message body in one step, so that a consumer gets one clear error
    /// (the reason reported when the task is rejected) for every way a message can be unusable.
    ///
    /// The schema version is read first, so a message of another version is reported as such even when
    /// the rest of its shape no longer matches this crate.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ContractError> {
        check_version_first(bytes)?;
        let task: TaskEnvelope =
            serde_json::from_slice(bytes).map_err(|e| ContractError::Malformed(e.to_string()))?;
        task.validate()?;
        Ok(task)
    }

    /// Checks what serde cannot: the schema version matches this build, the task id is set, and the
    /// spec is a JSON object. Unknown extra fields were already ignored by deserialization on purpose.
    pub fn validate(&self) -> Result<(), ContractError> {
        check_version(self.schema_version)?;
        if self.task_id.trim().is_empty() {
            return Err(ContractError::Invalid("task_id is empty".into()));
        }
        if !self.spec.is_object() {
            return Err(ContractError::Invalid("spec is not a JSON object".into()));
        }
        Ok(())
    }
}

/// What happened to a task, with the details that belong to that outcome. Serialized flat into the
/// [`Event`] as `"status": "<name>"` plus the variant's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum EventStatus {
    /// The worker began running the task (after any session barrier).
    Started,
    /// Periodic progress of a running task, for status queries and dashboards.
    Progress {
        /// Entries (files, directories, links) processed so far.
        entries: u64,
        /// Bytes read from the source (backup) or the storage (restore) so far.
        bytes_read: u64,
        /// Bytes written to the storage (backup) or the target (restore) so far.
        bytes_written: u64,
    },
    /// The task finished successfully; `result` is what the CLI prints with `--json` for this kind.
    Succeeded {
        /// Kind-specific result document.
        result: Value,
    },
    /// The task ran and failed.
    Failed {
        /// The CLI exit code the same failure would have given (DESIGN.md §6), e.g. 11 for locked.
        exit_code: i32,
        /// Human-readable reason; never contains secrets.
        error: String,
    },
    /// The task's `expires_at` passed before it started, so it was not run.
    Expired,
    /// The task was malformed or unknown and went to [`DEAD_LETTER_EXCHANGE`] without running.
    Rejected {
        /// Why it was rejected (e.g. the [`ContractError`] text).
        reason: String,
    },
}

impl EventStatus {
    /// The status name as it appears on the wire and in routing keys.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventStatus::Started => "started",
            EventStatus::Progress { .. } => "progress",
            EventStatus::Succeeded { .. } => "succeeded",
            EventStatus::Failed { .. } => "failed",
            EventStatus::Expired => "expired",
            EventStatus::Rejected { .. } => "rejected",
        }
    }
}

/// A report from a worker about one task, published to [`EVENTS_EXCHANGE`]; the dispatcher records
/// results and drives retries and sessions from these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Must equal [`SCHEMA_VERSION`]; checked by [`Event::validate`].
    pub schema_version: u32,
    /// The task this event is about (for a rejected message: its message id, or empty if it had none).
    pub task_id: String,
    /// The task's kind; `None` only for a rejected message whose kind could not be read.
    pub kind: Option<TaskKind>,
    /// The task's job id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The task's run id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The task's attempt number (0 when unknown).
    #[serde(default)]
    pub attempt: u32,
    /// Node name of the worker that reports.
    pub node: String,
    /// RFC 3339 UTC time the event was produced (text, as for [`TaskEnvelope::not_before`]).
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub status: EventStatus,
}

impl Event {
    /// Builds an event about a task that was parsed successfully, copying its identifying fields so
    /// that every event can be matched to its task, job and run without a lookup.
    pub fn for_task(task: &TaskEnvelope, node: &str, at: &str, status: EventStatus) -> Self {
        Event {
            schema_version: SCHEMA_VERSION,
            task_id: task.task_id.clone(),
            kind: Some(task.kind),
            job_id: Some(task.job_id.clone()),
            run_id: Some(task.run_id.clone()),
            attempt: task.attempt,
            node: node.to_string(),
            at: at.to_string(),
            status,
        }
    }

    /// Routing key on [`EVENTS_EXCHANGE`]: `task.<kind>.<status>` (e.g. `task.backup.succeeded`), so
    /// consumers can bind to `task.*.failed` or `task.restore.#`. A rejected message of unreadable kind
    /// uses `unknown` as its kind.
    pub fn routing_key(&self) -> String {
        let kind = self.kind.map_or("unknown", TaskKind::as_str);
        format!("task.{kind}.{}", self.status.as_str())
    }

    /// Checks the schema version, as [`TaskEnvelope::validate`] does for tasks.
    pub fn validate(&self) -> Result<(), ContractError> {
        check_version(self.schema_version)
    }
}

/// Why a message was refused. Its `Display` text is meant to be the `reason` of a rejection, so it
/// names the problem without echoing message contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractError {
    /// The message was written under another schema version than [`SCHEMA_VERSION`].
    UnsupportedSchemaVersion {
        /// The version found in the message (`None` if absent or not a number).
        found: Option<u64>,
    },
    /// The message is not valid JSON or does not have the expected shape.
    Malformed(String),
    /// The message parsed but breaks a rule serde cannot express.
    Invalid(String),
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContractError::UnsupportedSchemaVersion { found: Some(v) } => write!(
                f,
                "unsupported schema_version {v} (this build speaks {SCHEMA_VERSION})"
            ),
            ContractError::UnsupportedSchemaVersion { found: None } => {
                write!(f, "missing or non-numeric schema_version")
            }
            ContractError::Malformed(msg) => write!(f, "malformed message: {msg}"),
            ContractError::Invalid(msg) => write!(f, "invalid message: {msg}"),
        }
    }
}

impl std::error::Error for ContractError {}

fn check_version(found: u32) -> Result<(), ContractError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(ContractError::UnsupportedSchemaVersion {
            found: Some(found.into()),
        })
    }
}

/// Reads only `schema_version` from a message, so a message of another version is reported as such
/// rather than as whatever shape mismatch its new fields cause.
fn check_version_first(bytes: &[u8]) -> Result<(), ContractError> {
    #[derive(Deserialize)]
    struct Probe {
        schema_version: Option<Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| ContractError::Malformed(e.to_string()))?;
    match probe.schema_version.as_ref().and_then(Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => Ok(()),
        found => Err(ContractError::UnsupportedSchemaVersion { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_task() -> TaskEnvelope {
        TaskEnvelope {
            schema_version: SCHEMA_VERSION,
            task_id: "01936a3e-7c1b-7000-8000-000000000001".into(),
            kind: TaskKind::Backup,
            job_id: "etc-daily".into(),
            run_id: "run-42".into(),
            attempt: 1,
            session: Some(Session {
                id: "sess-1".into(),
                tag: "backup".into(),
                members: vec!["web1".into(), "web2".into()],
                hold_off_seconds: 300,
            }),
            not_before: Some("2026-11-25T13:00:00Z".into()),
            expires_at: Some("2026-11-25T15:00:00Z".into()),
            spec: json!({"backup_name": "etc", "path_to_backup": "/etc", "max_level": 6}),
        }
    }

    #[test]
    fn task_round_trips_through_json() {
        let task = sample_task();
        let text = serde_json::to_string(&task).unwrap();
        let back = TaskEnvelope::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, task);
    }

    #[test]
    fn task_wire_shape_uses_lowercase_kind_and_omits_absent_options() {
        let mut task = sample_task();
        task.session = None;
        task.not_before = None;
        task.expires_at = None;
        let v = serde_json::to_value(&task).unwrap();
        assert_eq!(v["kind"], "backup");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert!(v.get("session").is_none());
        assert!(v.get("not_before").is_none());
        assert!(v.get("expires_at").is_none());
    }

    #[test]
    fn every_kind_serializes_as_its_wire_name() {
        for kind in TaskKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
            let back: TaskKind = serde_json::from_value(json!(kind.as_str())).unwrap();
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let mut v = serde_json::to_value(sample_task()).unwrap();
        v["priority"] = json!(7);
        v["session"]["policy"] = json!("abort");
        let task = TaskEnvelope::from_json(v.to_string().as_bytes()).unwrap();
        assert_eq!(task, sample_task());
    }

    #[test]
    fn other_schema_version_is_rejected() {
        let mut task = sample_task();
        task.schema_version = SCHEMA_VERSION + 1;
        let err = task.validate().unwrap_err();
        assert_eq!(
            err,
            ContractError::UnsupportedSchemaVersion {
                found: Some(u64::from(SCHEMA_VERSION + 1))
            }
        );
        // Reported as a version problem even when the new version's shape differs.
        let body = json!({"schema_version": 2, "task": {"id": "x"}}).to_string();
        let err = TaskEnvelope::from_json(body.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            ContractError::UnsupportedSchemaVersion { found: Some(2) }
        );
        assert!(err.to_string().contains("schema_version 2"));
        let err = TaskEnvelope::from_json(br#"{"task_id": "x"}"#).unwrap_err();
        assert_eq!(err, ContractError::UnsupportedSchemaVersion { found: None });
    }

    #[test]
    fn malformed_and_invalid_tasks_are_rejected() {
        let err = TaskEnvelope::from_json(b"not json").unwrap_err();
        assert!(matches!(err, ContractError::Malformed(_)));

        let mut v = serde_json::to_value(sample_task()).unwrap();
        v["kind"] = json!("defrag");
        let err = TaskEnvelope::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, ContractError::Malformed(_)), "{err}");

        let mut task = sample_task();
        task.task_id = " ".into();
        assert!(matches!(task.validate(), Err(ContractError::Invalid(_))));

        let mut task = sample_task();
        task.spec = json!(["not", "an", "object"]);
        assert!(matches!(task.validate(), Err(ContractError::Invalid(_))));
    }

    #[test]
    fn routing_key_is_task_kind_status() {
        let task = sample_task();
        let cases = [
            (EventStatus::Started, "task.backup.started"),
            (
                EventStatus::Progress {
                    entries: 1,
                    bytes_read: 2,
                    bytes_written: 3,
                },
                "task.backup.progress",
            ),
            (
                EventStatus::Succeeded { result: json!({}) },
                "task.backup.succeeded",
            ),
            (
                EventStatus::Failed {
                    exit_code: 11,
                    error: "locked".into(),
                },
                "task.backup.failed",
            ),
            (EventStatus::Expired, "task.backup.expired"),
            (
                EventStatus::Rejected {
                    reason: "bad".into(),
                },
                "task.backup.rejected",
            ),
        ];
        for (status, key) in cases {
            let event = Event::for_task(&task, "web1", "2026-11-25T13:52:56Z", status);
            assert_eq!(event.routing_key(), key);
        }

        let mut event = Event::for_task(&task, "web1", "t", EventStatus::Expired);
        event.kind = Some(TaskKind::Restore);
        assert_eq!(event.routing_key(), "task.restore.expired");
        event.kind = None;
        event.status = EventStatus::Rejected {
            reason: "unreadable".into(),
        };
        assert_eq!(event.routing_key(), "task.unknown.rejected");
    }

    #[test]
    fn event_round_trips_with_flat_status() {
        let task = sample_task();
        let event = Event::for_task(
            &task,
            "web1",
            "2026-11-25T13:52:58Z",
            EventStatus::Failed {
                exit_code: 12,
                error: "wrong key or failed integrity check".into(),
            },
        );
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["exit_code"], 12);
        assert_eq!(v["kind"], "backup");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, event);
        back.validate().unwrap();

        for status in [EventStatus::Started, EventStatus::Expired] {
            let event = Event::for_task(&task, "web1", "t", status);
            let mut v = serde_json::to_value(&event).unwrap();
            v["future_field"] = json!({"x": 1});
            let back: Event = serde_json::from_value(v).unwrap();
            assert_eq!(back, event);
        }

        let mut event = event;
        event.schema_version = 0;
        assert!(event.validate().is_err());
    }

    #[test]
    fn queue_names_follow_the_topology() {
        assert_eq!(node_queue("web1"), "freezer.node.web1");
        assert_eq!(pool_queue("prune"), "freezer.pool.prune");
        assert_eq!(TASKS_EXCHANGE, "freezer.tasks");
        assert_eq!(EVENTS_EXCHANGE, "freezer.events");
        assert_eq!(DEAD_LETTER_EXCHANGE, "freezer.dead");
    }
}
