//! The standalone writer lock: one backup at a time per `<host>_<name>` in a container, through an
//! advisory `flock` on `<container>/<host>_<name>.lock` (the fleet uses Redis locks instead).

use crate::error::{Error, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::{File, OpenOptions};
use std::path::Path;

/// Held while a backup writes; released when dropped. Holds one `flock` per local storage (none
/// for storages without one).
#[must_use = "the lock is released when dropped"]
pub struct NameLock {
    _files: Vec<File>,
}

impl NameLock {
    /// A lock that holds nothing (storages that cannot lock, dry runs).
    pub fn none() -> NameLock {
        NameLock { _files: Vec::new() }
    }

    /// One lock holding all of `locks` (several storages at once).
    pub fn merge(locks: Vec<NameLock>) -> NameLock {
        NameLock {
            _files: locks.into_iter().flat_map(|l| l._files).collect(),
        }
    }

    /// Takes the lock without waiting; exit code 11 when another writer holds it.
    pub fn acquire(container: &Path, name_prefix: &str) -> Result<NameLock> {
        let path = container.join(format!("{name_prefix}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(NameLock { _files: vec![file] }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::locked(format!(
                "{name_prefix} is being backed up by another process (lock {})",
                path.display()
            ))
            .with_guidance("run again once the other backup or prune of this name has ended")),
            Err(e) => Err(Error::io(path.display(), e.into())),
        }
    }
}
