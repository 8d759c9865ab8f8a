//! The wire contract of the Freezer fleet (ARCHITECTURE.md §4, §5): what `freezer-dispatcher` and
//! `freezer-worker` send each other through RabbitMQ and Redis.
//!
//! Both binaries depend on this crate and it depends on no I/O crate (it reads no clock, no random
//! source, no file), so the two sides cannot disagree about names or message shapes, and everything
//! here is testable as plain functions.
//!
//! - [`TaskEnvelope`] (with [`TaskSpec`]: one spec per kind, with the CLI's option names) is a task
//!   on [`TASKS_EXCHANGE`]; [`Event`] is a report on [`EVENTS_EXCHANGE`].
//! - [`limits`] holds the bounds a request can break (segment size, queue size), checked when a
//!   spec is validated.
//! - With the `clap` feature, the spec types derive `clap::Args`: `freezer-worker`'s subcommands
//!   parse straight into them.
//! - [`topology`] names the exchanges and queues; [`coordination`] names the Redis keys and the task
//!   states stored there.
//! - The JSON Schema of both messages is generated from these types and committed in
//!   `contracts/schema/` ([`schema`]); a test fails when it is stale, and
//!   `cargo run -p freezer-contracts --example gen-schema` rewrites it.
//!
//! # Compatibility rules
//!
//! - Every message carries [`SCHEMA_VERSION`]. A reader rejects a message whose version differs from
//!   its own, and says so before anything else: a version bump means the meaning of existing fields
//!   changed, and guessing is worse than refusing. Bump it for any change an older reader would
//!   misread: a field renamed, removed, retyped or made required, or a meaning changed.
//! - Within one version, a writer may add **optional envelope, session and event fields**. Readers
//!   ignore fields they do not know, so a newer dispatcher can talk to an older worker.
//! - **Spec fields are the exception: unknown spec fields are rejected.** A spec field is an
//!   instruction; a worker that ignored one it does not know (a `keep_weekly`, an `exclude`) would
//!   delete or store something other than what was asked. A new spec option therefore needs no
//!   version bump, but tasks that use it are refused (with the field named) by workers too old to
//!   know it. This also catches typos in job files.
//! - Unknown enum values (a task kind, an event status, an error class, a codec) fail to parse: a
//!   task is then rejected with the reason; an event is refused by the dispatcher. Adding such a
//!   value is allowed within a version, so **upgrade the dispatcher before the workers** when a
//!   release adds one.
//! - A malformed or unknown task is rejected to [`DEAD_LETTER_EXCHANGE`] with the reason (the
//!   [`ContractError`] text, which names the field) and reported as a `rejected` event built with
//!   [`Event::rejected`], whatever the body was.
//! - Tasks carry no secrets: storages, encryption keys and hooks are names resolved in the worker's
//!   configuration (see [`spec`]). A test checks that no schema property is named like a secret.
//! - Times are RFC 3339 text in UTC ([`UtcTime`]); task ids are canonical UUIDv7 ([`TaskId`]); both
//!   are checked when a message is read.

pub mod coordination;
pub mod error;
pub mod event;
pub mod id;
pub mod kind;
pub mod limits;
pub mod schema;
pub mod size;
pub mod spec;
pub mod task;
pub mod topology;
pub mod utc;

pub use coordination::{
    canonical_container, fence_key, lock_key, lock_scope, session_key, task_key, worker_key,
    TaskState, KEY_PREFIX,
};
pub use error::ContractError;
pub use event::{ErrorClass, Event, EventStatus};
pub use id::{check_ident, check_storage_key_part, TaskId};
pub use kind::TaskKind;
pub use limits::{DEFAULT_SEGMENT_SIZE, MAX_QUEUE_SIZE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE};
pub use size::ByteSize;
pub use spec::{
    Author, BackupSpec, Compression, Dereference, ListSpec, NoopSpec, PruneSpec, RestoreSpec,
    TaskSpec, VerifySpec,
};
pub use task::{Readiness, Session, SessionPolicy, TaskEnvelope};
pub use topology::{
    event_routing_key, node_queue, pool_queue, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE,
    EVENTS_EXCHANGE, REASON_HEADER, TASKS_EXCHANGE, UNKNOWN_KIND,
};
pub use utc::UtcTime;

use serde_json::Value;

/// Version of the message schema in this crate; carried by every message so that a reader can refuse
/// messages written under different rules instead of misreading them.
pub const SCHEMA_VERSION: u32 = 1;

/// Checks a version already parsed into a message.
fn check_version(found: u32) -> Result<(), ContractError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(ContractError::UnsupportedSchemaVersion {
            found: Some(found.into()),
        })
    }
}

/// Reads a body as a JSON object, the first step of reading any message.
fn parse_object(bytes: &[u8]) -> Result<Value, ContractError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ContractError::NotJson {
        message: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(ContractError::NotJson {
            message: "the body is valid JSON but not an object".into(),
        });
    }
    Ok(value)
}

/// Checks `schema_version` before the rest of the message, so a message of another version is
/// reported as such rather than as whatever shape mismatch its new fields cause.
fn check_version_first(message: &Value) -> Result<(), ContractError> {
    match message.get("schema_version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => Ok(()),
        found => Err(ContractError::UnsupportedSchemaVersion { found }),
    }
}
