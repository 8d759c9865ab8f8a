//! Events: what workers report about tasks on `freezer.events`, and what the dispatcher records and
//! acts on (history, retries, sessions).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ContractError;
use crate::id::{check_ident, TaskId, IDENT_PATTERN};
use crate::kind::TaskKind;
use crate::task::TaskEnvelope;
use crate::topology::{event_routing_key, UNKNOWN_KIND};
use crate::utc::UtcTime;
use crate::{check_version, check_version_first, parse_object, SCHEMA_VERSION};

/// Longest `message_id` copied into a rejection: the id of a malformed message is untrusted input.
const MAX_ECHOED_ID: usize = 200;

/// Why a task failed, in the classes the dispatcher acts on differently: retry later, or stop and
/// tell someone. Mirrors the exit codes of ARCHITECTURE.md §6 where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Retrying the same task cannot help (bad options for this worker, an unknown storage or key
    /// name, a missing source): fail the run.
    Permanent,
    /// May succeed later (storage unreachable, a timeout, the worker shutting down): retry with a
    /// delay.
    Transient,
    /// Another writer holds the backup name (exit code 11): retry later.
    Locked,
    /// The backup, backup name, storage or container does not exist (exit code 10): fail.
    NotFound,
    /// Wrong key, or an object failed its integrity check (exit code 12): fail and alert, since
    /// stored data may be damaged.
    Integrity,
    /// The run was interrupted (exit code 130; the worker was stopped): retry, for a pool task
    /// possibly on another worker.
    Interrupted,
}

impl ErrorClass {
    /// Whether the dispatcher should publish another attempt (until the job's retry limit).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Transient | ErrorClass::Locked | ErrorClass::Interrupted
        )
    }

    /// The wire name, for metric labels (a bounded set, as ARCHITECTURE.md §6 wants).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
            ErrorClass::Locked => "locked",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Integrity => "integrity",
            ErrorClass::Interrupted => "interrupted",
        }
    }
}

/// What happened to a task, with the details that belong to that outcome. Serialized flat into the
/// [`Event`] as `"status": "<name>"` plus the variant's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum EventStatus {
    /// The worker began running the task (after any session barrier).
    Started,
    /// Periodic progress of a running task, for status queries and dashboards. Counters are totals
    /// since the task started, so a lost progress event loses nothing.
    Progress {
        /// Entries (files, directories, links) processed so far.
        entries: u64,
        /// Files whose content was stored (backup) or written (restore) so far.
        files: u64,
        /// Bytes read from the source (backup) or the storage (restore, verify) so far.
        bytes_read: u64,
        /// Bytes written to the storage (backup) or the target (restore) so far.
        bytes_written: u64,
    },
    /// The task finished successfully.
    Succeeded {
        /// 0, or 3 when a backup was written but some files could not be read (ARCHITECTURE.md §6).
        exit_code: i32,
        /// What the CLI prints with `--json` for this kind (`{}` for noop), recorded as the
        /// task's result.
        result: Value,
    },
    /// The task ran and failed.
    Failed {
        /// What kind of failure, which decides whether the dispatcher retries.
        error_class: ErrorClass,
        /// The CLI exit code the same failure would have given (ARCHITECTURE.md §6), e.g. 11 for locked.
        exit_code: i32,
        /// Human-readable reason, naming the object concerned; never contains secrets.
        reason: String,
    },
    /// The task's `expires_at` passed before it started, so it was not run.
    Expired {
        /// The deadline that passed.
        expires_at: UtcTime,
    },
    /// The message was malformed or unknown to this worker; it went to the `freezer.dead` exchange
    /// without running.
    Rejected {
        /// Why: the field concerned and what is wrong with it (the text of a `ContractError`).
        reason: String,
        /// The AMQP message id as received, which may not be a valid task id (the event's
        /// `task_id` is set only when one could be read); lets the message be found in the
        /// dead-letter queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
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
            EventStatus::Expired { .. } => "expired",
            EventStatus::Rejected { .. } => "rejected",
        }
    }

    /// Whether this is the task's last event (its outcome), after which it has a final state.
    pub fn is_final(&self) -> bool {
        !matches!(self, EventStatus::Started | EventStatus::Progress { .. })
    }
}

/// A report from a worker about one task, published to the `freezer.events` exchange with the
/// routing key `task.<kind>.<status>`. Every event names its task, job, run and attempt, so the
/// dispatcher can act on it without a lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Version of the message schema (`SCHEMA_VERSION`); the dispatcher refuses other versions.
    #[schemars(extend("const" = SCHEMA_VERSION))]
    pub schema_version: u32,
    /// The task this event is about; absent only for a rejected message whose id could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// The task's kind; absent only for a rejected message whose kind could not be read (its
    /// routing key then says `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TaskKind>,
    /// The task's job id; absent only for a rejected message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The task's run id; absent only for a rejected message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The task's attempt; absent only for a rejected message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Node name of the worker that reports.
    #[schemars(regex(pattern = IDENT_PATTERN))]
    pub node: String,
    /// When the event was produced.
    pub at: UtcTime,
    /// What happened.
    #[serde(flatten)]
    pub status: EventStatus,
}

impl Event {
    /// An event about a task that was read successfully, copying its identifying fields.
    pub fn for_task(task: &TaskEnvelope, node: &str, at: UtcTime, status: EventStatus) -> Event {
        Event {
            schema_version: SCHEMA_VERSION,
            task_id: Some(task.task_id.clone()),
            kind: Some(task.kind()),
            job_id: Some(task.job_id.clone()),
            run_id: Some(task.run_id.clone()),
            attempt: Some(task.attempt),
            node: node.to_string(),
            at,
            status,
        }
    }

    /// The `rejected` event for a message that [`TaskEnvelope::from_json`] refused with `error`.
    ///
    /// Buildable whatever the body is: the identifying fields are salvaged one by one from the body
    /// where they are readable and valid (so the dispatcher can still mark the task failed), and
    /// left out otherwise; the task id falls back to the AMQP `message_id` when that is a valid one.
    pub fn rejected(
        body: &[u8],
        message_id: Option<&str>,
        node: &str,
        at: UtcTime,
        error: &ContractError,
    ) -> Event {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |field: &str| value.get(field).and_then(Value::as_str);
        let ident = |field: &str| {
            text(field)
                .filter(|s| check_ident(field, s).is_ok())
                .map(str::to_string)
        };
        let task_id = text("task_id")
            .and_then(|s| TaskId::parse(s).ok())
            .or_else(|| message_id.and_then(|s| TaskId::parse(s).ok()));
        Event {
            schema_version: SCHEMA_VERSION,
            task_id,
            kind: text("kind").and_then(TaskKind::from_wire),
            job_id: ident("job_id"),
            run_id: ident("run_id"),
            attempt: value
                .get("attempt")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            node: node.to_string(),
            at,
            status: EventStatus::Rejected {
                reason: error.to_string(),
                message_id: message_id.map(|s| s.chars().take(MAX_ECHOED_ID).collect()),
            },
        }
    }

    /// Routing key on [`crate::EVENTS_EXCHANGE`]: `task.<kind>.<status>` (e.g.
    /// `task.backup.succeeded`), so consumers can bind to `task.*.failed` or `task.restore.#`. A
    /// rejected message of unreadable kind uses `unknown` as its kind.
    pub fn routing_key(&self) -> String {
        event_routing_key(
            self.kind.map_or(UNKNOWN_KIND, TaskKind::as_str),
            self.status.as_str(),
        )
    }

    /// Parses and validates an event body, with the same error precision as
    /// [`TaskEnvelope::from_json`]; unknown fields are ignored, an unknown status or error class is
    /// an error.
    pub fn from_json(bytes: &[u8]) -> Result<Event, ContractError> {
        let value = parse_object(bytes)?;
        check_version_first(&value)?;
        let event: Event = serde_path_to_error::deserialize(value)
            .map_err(|e| ContractError::from_path_error("", e))?;
        event.validate()?;
        Ok(event)
    }

    /// The message body to publish.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serializes")
    }

    /// Checks the schema version, the node name, and that only a rejection lacks the task's
    /// identity.
    pub fn validate(&self) -> Result<(), ContractError> {
        check_version(self.schema_version)?;
        check_ident("node", &self.node)?;
        if !matches!(self.status, EventStatus::Rejected { .. }) {
            let missing = [
                ("task_id", self.task_id.is_none()),
                ("kind", self.kind.is_none()),
                ("job_id", self.job_id.is_none()),
                ("run_id", self.run_id.is_none()),
                ("attempt", self.attempt.is_none()),
            ];
            if let Some((field, _)) = missing.iter().find(|(_, m)| *m) {
                return Err(ContractError::invalid(
                    *field,
                    format!("required in a {} event", self.status.as_str()),
                ));
            }
        }
        Ok(())
    }
}
