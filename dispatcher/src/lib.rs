//! The dispatcher as a library: `freezer-dispatcher` (src/main.rs) is its command line, and the
//! end-to-end tests drive the same modules in-process.
//!
//! It shares the worker's RabbitMQ topology and confirming publisher
//! (`freezer_worker::daemon::amqp`), so both sides declare the same queues with the same
//! arguments.

pub mod config;
pub mod jobs;
pub mod jobs_cmd;
pub mod leader;
pub mod scheduler;
