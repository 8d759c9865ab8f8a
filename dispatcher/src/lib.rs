//! The dispatcher as a library: `freezer-dispatcher` (src/main.rs) is its command line, and the
//! end-to-end tests drive the same modules in-process.
//!
//! It shares the worker's RabbitMQ topology and confirming publisher
//! (`freezer_worker::daemon::amqp`), so both sides declare the same queues with the same
//! arguments.
//!
//! Scheduling, as `serve` wires it:
//!
//! - [`jobs::dir::watch_dir`] keeps the job files of `jobs_dir` ([`jobs::file`]) as a
//!   `watch::Receiver<Arc<JobSet>>`;
//! - [`leader::spawn`] holds (or waits for) the leader lease: a `watch::Receiver<bool>`;
//! - [`scheduler::run`], while leader, sends each due run ([`jobs::DueRun`], fire times from
//!   [`jobs::schedule`]) once across all dispatchers on an `mpsc` channel to the run engine;
//! - [`jobs_cmd::jobs_command`] is the `jobs` subcommand.

pub mod config;
pub mod jobs;
pub mod jobs_cmd;
pub mod leader;
pub mod scheduler;
