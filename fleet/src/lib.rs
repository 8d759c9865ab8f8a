//! What Freezer's worker daemon (`freezer-worker run`) and dispatcher (`freezer-dispatcher`) share
//! at run time, so that the dispatcher depends on this crate and the contracts only, not on the
//! worker and its backup engine:
//!
//! - [`amqp`]: connecting to RabbitMQ, declaring the topology the same way on both sides, and a
//!   confirming publisher that waits through broker restarts;
//! - [`keys`]: every Redis key name, under a configurable prefix, with a table of types, TTLs and
//!   writers; [`scripts`]: the Lua scripts more than one side runs; [`redis_conn`]: the Redis
//!   connection both sides open;
//! - [`clock`]: the wall clock as a wire timestamp;
//! - [`metrics`]: the `/metrics` endpoint; [`naming`]: the rule every metric name follows
//!   (`freezer_<subsystem>_<name>_<unit>[_total]`) and a check of a registry against it.

pub mod amqp;
pub mod clock;
pub mod keys;
pub mod metrics;
pub mod naming;
pub mod redis_conn;
pub mod scripts;

pub use keys::Keys;

/// `e`'s message followed by its immediate cause's, as `message: cause` (the form of both
/// services' messages). One level only: the causes of third-party errors (Redis, AMQP, I/O)
/// already include theirs in their own message.
pub fn with_cause(e: &(dyn std::error::Error + 'static)) -> String {
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
