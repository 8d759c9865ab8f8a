//! The task envelope: one message on `freezer.tasks`, everything a worker needs to run one task.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::ContractError;
use crate::id::{check_ident, TaskId, IDENT_PATTERN};
use crate::kind::TaskKind;
use crate::spec::TaskSpec;
use crate::utc::UtcTime;
use crate::{check_version, check_version_first, parse_object, SCHEMA_VERSION};

/// Longest a session member waits at the barrier for the others (`hold_off_seconds`): one day.
/// A session exists to start its members together; a member held longer is holding an execution
/// slot for nothing, and an unbounded value overflows the worker's deadline arithmetic.
pub const MAX_HOLD_OFF_SECONDS: u64 = 86_400;

/// Highest attempt number of a task: far above any retry limit a job can set (the dispatcher
/// allows 100 retries), so only a forged or corrupted message reaches it.
pub const MAX_ATTEMPT: u32 = 1_000;

/// Longest window between a task's `not_before` and its `expires_at`, in seconds (366 days): a
/// task that may wait longer in a queue is not scheduled, it is lost.
pub const MAX_WINDOW_SECONDS: i64 = 366 * 86_400;

/// What the members of a session do when the hold-off passes before all of them have joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionPolicy {
    /// Every member gives up (fails its task as transient): all or nothing. The default, since a
    /// session exists because its members belong together.
    #[default]
    Abort,
    /// The members present go ahead; the missing ones fail. The session still succeeds only if every
    /// member succeeds.
    Proceed,
}

/// Membership of a task in a session: several nodes that act together (e.g. back up a database
/// cluster at once, or restore it to one point in time). The members meet at a barrier keyed by `id`
/// and `tag` before starting (ARCHITECTURE.md §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Session {
    /// Session id, shared by all members' tasks of one session run.
    #[schemars(regex(pattern = IDENT_PATTERN))]
    pub id: String,
    /// Which step of the session this is (a session can meet more than once, e.g. backup then verify).
    #[schemars(regex(pattern = IDENT_PATTERN))]
    pub tag: String,
    /// Node names expected at the barrier; the session succeeds only if every member succeeds.
    #[schemars(length(min = 1), inner(regex(pattern = IDENT_PATTERN)))]
    pub members: Vec<String>,
    /// How long a member waits at the barrier for the others before `policy` applies (at most a
    /// day: `MAX_HOLD_OFF_SECONDS`).
    #[schemars(range(max = MAX_HOLD_OFF_SECONDS))]
    pub hold_off_seconds: u64,
    /// What to do when the hold-off passes with members missing (default: abort).
    #[serde(default)]
    pub policy: SessionPolicy,
}

/// One task as published to the `freezer.tasks` exchange: everything a worker needs to run it, and
/// nothing secret (storages, keys and hooks are names in the spec, resolved from the worker's
/// configuration). `kind` selects the type of `spec`.
///
/// In Rust the kind and its spec are one [`TaskSpec`], so they cannot disagree. Read messages with
/// [`TaskEnvelope::from_json`], which checks everything and says precisely what is wrong; plain
/// `serde` deserialization checks the shape but not the rules of [`TaskEnvelope::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(
    description = "One task as published to the `freezer.tasks` exchange: everything a \
    worker needs to run it, and nothing secret (storages, keys and hooks are names in the spec, \
    resolved from the worker's configuration). `kind` selects the type of `spec`. Unknown fields \
    are ignored, except in `spec`, where they are refused."
)]
pub struct TaskEnvelope {
    /// Version of the message schema (`SCHEMA_VERSION`); a worker refuses other versions.
    #[schemars(extend("const" = SCHEMA_VERSION))]
    pub schema_version: u32,
    /// UUIDv7, also the AMQP message id and the idempotency key: a task id runs at most once. A retry
    /// is a new task (new id, next attempt).
    pub task_id: TaskId,
    /// The kind (`kind` on the wire) and its options (`spec` on the wire).
    #[serde(flatten)]
    pub spec: TaskSpec,
    /// The job definition this task comes from, for history and metrics.
    #[schemars(regex(pattern = IDENT_PATTERN))]
    pub job_id: String,
    /// One scheduled or manual run of the job; a session's tasks and a task's retries share it.
    #[schemars(regex(pattern = IDENT_PATTERN))]
    pub run_id: String,
    /// Which attempt of the run this is, from 1 (at most 1000: `MAX_ATTEMPT`).
    #[schemars(range(min = 1, max = MAX_ATTEMPT))]
    pub attempt: u32,
    /// Present when the task is part of a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// The task must not start before this time (it waits, or goes back to the queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<UtcTime>,
    /// A task not started by this time is reported as expired instead of run (a backup that could
    /// not run within its window should not run at a random later hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UtcTime>,
}

/// The envelope as read from the wire, kind and spec still apart: lets [`TaskEnvelope::from_json`]
/// read the kind first and then the spec with the type the kind selects, naming `spec.<field>` in
/// errors. Field order is the order serde reports missing fields in.
#[derive(Deserialize)]
struct WireEnvelope {
    schema_version: u32,
    task_id: TaskId,
    kind: TaskKind,
    job_id: String,
    run_id: String,
    attempt: u32,
    #[serde(default)]
    session: Option<Session>,
    #[serde(default)]
    not_before: Option<UtcTime>,
    #[serde(default)]
    expires_at: Option<UtcTime>,
    spec: Value,
}

impl WireEnvelope {
    fn into_envelope(self) -> Result<TaskEnvelope, ContractError> {
        Ok(TaskEnvelope {
            schema_version: self.schema_version,
            task_id: self.task_id,
            spec: TaskSpec::from_parts(self.kind, self.spec)?,
            job_id: self.job_id,
            run_id: self.run_id,
            attempt: self.attempt,
            session: self.session,
            not_before: self.not_before,
            expires_at: self.expires_at,
        })
    }
}

impl<'de> Deserialize<'de> for TaskEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        WireEnvelope::deserialize(deserializer)?
            .into_envelope()
            .map_err(serde::de::Error::custom)
    }
}

/// Whether a task may start now, from its `not_before` and `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Within its window: run it.
    Ready,
    /// Too early: wait this long (or requeue it with this delay).
    NotYet(Duration),
    /// `expires_at` has passed: report it as expired and do not run it.
    Expired,
}

impl TaskEnvelope {
    /// A task of this schema version, first attempt, no session and no time window. The id is
    /// passed in: this crate reads no clock and no random source.
    pub fn new(
        task_id: TaskId,
        job_id: impl Into<String>,
        run_id: impl Into<String>,
        spec: TaskSpec,
    ) -> TaskEnvelope {
        TaskEnvelope {
            schema_version: SCHEMA_VERSION,
            task_id,
            spec,
            job_id: job_id.into(),
            run_id: run_id.into(),
            attempt: 1,
            session: None,
            not_before: None,
            expires_at: None,
        }
    }

    /// The task to publish when this one failed and the dispatcher retries: same run, job, spec,
    /// session and window, next attempt, and a new id (the id is the idempotency key, so a retry
    /// under the old id would be answered with the recorded failure).
    pub fn retry(&self, new_id: TaskId) -> TaskEnvelope {
        TaskEnvelope {
            task_id: new_id,
            attempt: self.attempt.saturating_add(1),
            ..self.clone()
        }
    }

    /// The task's kind.
    pub fn kind(&self) -> TaskKind {
        self.spec.kind()
    }

    /// Parses and validates a task message body in one step, so that a consumer gets one clear error
    /// (the reason reported when the task is rejected) for every way a message can be unusable.
    ///
    /// In order: the body must be a JSON object; its `schema_version` must be [`SCHEMA_VERSION`]
    /// (checked first, so a message of another version is reported as such); every field must have
    /// its type, the kind must be known, and the spec must be that kind's, with no unknown option;
    /// then the rules of [`TaskEnvelope::validate`]. Unknown fields of the envelope and of the
    /// session are ignored (forward-compatible additions). Expiry is not checked here: it needs the
    /// clock, and an expired task is reported as expired, not rejected (see [`Self::readiness`]).
    pub fn from_json(bytes: &[u8]) -> Result<TaskEnvelope, ContractError> {
        let value = parse_object(bytes)?;
        check_version_first(&value)?;
        let wire: WireEnvelope = serde_path_to_error::deserialize(value)
            .map_err(|e| ContractError::from_path_error("", e))?;
        let task = wire.into_envelope()?;
        task.validate()?;
        Ok(task)
    }

    /// The message body to publish; validate first (or build the task from validated parts).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a task envelope always serializes")
    }

    /// Checks what the types cannot: the schema version, the names (job, run, session, members),
    /// the attempt number, a time window that can be met, and the spec's own rules.
    pub fn validate(&self) -> Result<(), ContractError> {
        check_version(self.schema_version)?;
        check_ident("job_id", &self.job_id)?;
        check_ident("run_id", &self.run_id)?;
        if self.attempt == 0 {
            return Err(ContractError::invalid("attempt", "attempts count from 1"));
        }
        if let Some(session) = &self.session {
            session.validate()?;
        }
        if let (Some(start), Some(end)) = (self.not_before, self.expires_at) {
            if end <= start {
                return Err(ContractError::invalid(
                    "expires_at",
                    format!("{end} is not after not_before {start}: the task could never run"),
                ));
            }
        }
        self.check_bounds()?;
        self.spec.validate()
    }

    /// The numeric fields of the envelope within their bounds ([`MAX_ATTEMPT`],
    /// [`MAX_WINDOW_SECONDS`]; the session's hold-off in [`Session::validate`]).
    fn check_bounds(&self) -> Result<(), ContractError> {
        if self.attempt > MAX_ATTEMPT {
            return Err(ContractError::invalid(
                "attempt",
                format!("{} is more than {MAX_ATTEMPT} attempts", self.attempt),
            ));
        }
        if let (Some(start), Some(end)) = (self.not_before, self.expires_at) {
            let window = end.unix_seconds().saturating_sub(start.unix_seconds());
            if window > MAX_WINDOW_SECONDS {
                return Err(ContractError::invalid(
                    "expires_at",
                    format!(
                        "{end} is {window} s after not_before {start}: a task's window is at \
                         most {MAX_WINDOW_SECONDS} s (366 days)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether the task may start at `now`. Expiry wins over waiting, so a task whose window has
    /// passed is never started late.
    pub fn readiness(&self, now: UtcTime) -> Readiness {
        if self.expires_at.is_some_and(|end| now >= end) {
            return Readiness::Expired;
        }
        match self.not_before {
            Some(start) if now < start => Readiness::NotYet(now.until(start)),
            _ => Readiness::Ready,
        }
    }
}

impl Session {
    /// Checks the session's names (they form the barrier's Redis key), that it has members, each
    /// named once, and that its hold-off is at most [`MAX_HOLD_OFF_SECONDS`].
    pub fn validate(&self) -> Result<(), ContractError> {
        check_ident("session.id", &self.id)?;
        check_ident("session.tag", &self.tag)?;
        if self.members.is_empty() {
            return Err(ContractError::invalid(
                "session.members",
                "a session needs at least one member",
            ));
        }
        for (i, member) in self.members.iter().enumerate() {
            let path = format!("session.members[{i}]");
            check_ident(&path, member)?;
            if self.members[..i].contains(member) {
                return Err(ContractError::invalid(
                    path,
                    format!("{member:?} is listed twice"),
                ));
            }
        }
        if self.hold_off_seconds > MAX_HOLD_OFF_SECONDS {
            return Err(ContractError::invalid(
                "session.hold_off_seconds",
                format!(
                    "{} is more than a day ({MAX_HOLD_OFF_SECONDS} s)",
                    self.hold_off_seconds
                ),
            ));
        }
        Ok(())
    }
}
