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

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Marks the run as interrupted (SIGINT/SIGTERM); long loops check [`interrupted`] and stop.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether the run was interrupted.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
