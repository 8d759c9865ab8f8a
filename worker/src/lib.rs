//! Freezer's worker: the backup engine (`engine`), its storage format (`manifest`, `index`,
//! `crypto`, `codec`), storage backends (`storage`), the one resolver of requests into engine
//! options (`resolve`), the standalone CLI's commands (`cli`) and the daemon (`daemon`).

pub mod catalog;
pub mod cli;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod index;
pub mod levels;
pub mod list;
pub mod lock;
pub mod manifest;
pub mod progress;
pub mod resolve;
pub mod retention;
pub mod storage;
pub mod timestamp;

/// What stops a run: the CLI's SIGINT/SIGTERM handler cancels its root token; the daemon gives
/// every task a child of its own. Engine runs take one as a parameter and return
/// [`error::ErrorKind::Interrupted`] once it is cancelled.
pub use tokio_util::sync::CancellationToken;
