//! Shared helpers for Freezer's end-to-end tests.
//!
//! The tests drive the real `freezer-worker` binary. These helpers find and run it (with a timeout, so an
//! engine that hangs fails the test instead of the suite), build source trees with every kind of entry
//! the engine must handle, take snapshots of trees (type, content hash, mode, owner, mtime in ns, link
//! target, xattrs, hard-link grouping) and compare them, and read backups on disk exactly as
//! `worker/FORMAT.md` describes them.
//!
//! One module per job; everything is re-exported at the top so that a test only needs
//! `use freezer_e2e::*;`.

pub mod compare;
pub mod data;
pub mod dates;
pub mod fixture;
pub mod fleet;
pub mod layout;
pub mod privileged;
pub mod process;
pub mod prune;
pub mod services;
pub mod snapshot;
pub mod tree;

pub use compare::*;
pub use data::*;
pub use dates::*;
pub use fixture::*;
pub use layout::*;
pub use privileged::*;
pub use process::*;
pub use snapshot::*;
pub use tree::*;
