//! The dispatcher as a library: `freezer-dispatcher` (src/main.rs) is its command line, and the
//! end-to-end tests drive the same modules in-process.
//!
//! It shares with the workers, through the `freezer_fleet` crate, the RabbitMQ topology and
//! confirming publisher (so both sides declare the same queues with the same arguments), the Redis
//! key names and scripts, the clock and the `/metrics` endpoint; it does not depend on the worker.
//!
//! Scheduling, as `serve` wires it:
//!
//! - [`jobs::dir::watch_dir`] keeps the job files of `jobs_dir` ([`jobs::file`]) as a
//!   `watch::Receiver<Arc<JobSet>>`;
//! - [`leader::spawn`] holds (or waits for) the leader lease: a `watch::Receiver<bool>`;
//! - [`scheduler::run`], while leader, sends each due run ([`jobs::DueRun`], fire times from
//!   [`jobs::schedule`]) once across all dispatchers on an `mpsc` channel to the run engine;
//! - [`jobs_cmd::jobs_command`] is the `jobs` subcommand.
//!
//! Running:
//!
//! - [`runs`]: the run engine ([`runs::drive`]): due runs in, tasks out, results into history.
//! - [`error`]: the dispatcher's [`Error`], whose kind gives the exit code.
//! - [`bus`]: publishing tasks and following events; [`status`]: what
//!   `status`, `workers` and `sessions` read; [`metrics`]: `/metrics`.

pub mod bus;
pub mod config;
pub mod error;
pub mod jobs;
pub mod jobs_cmd;
pub mod leader;
pub mod metrics;
pub mod runs;
pub mod scheduler;
pub mod status;

pub use error::{Error, Result};

use freezer_contracts::{TaskId, UtcTime};

/// A fresh UUIDv7 task id (time-ordered, random tail).
pub fn new_task_id() -> TaskId {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut r = [0u8; 10];
    getrandom::fill(&mut r).expect("the OS random source works");
    TaskId::from_parts(ms, r)
}

/// `t` plus `d` (saturating at the largest time RFC 3339 can write).
pub fn add(t: UtcTime, d: std::time::Duration) -> UtcTime {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    t.as_offset_date_time()
        .checked_add(time::Duration::new(secs, d.subsec_nanos() as i32))
        .and_then(|odt| UtcTime::from_offset_date_time(odt).ok())
        .unwrap_or(t)
}
