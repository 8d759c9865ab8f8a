//! Where backups live. The engine sees storage only through [`Storage`], a handful of blocking
//! object operations on `/`-separated keys relative to the container; backends implement it.

mod local;
pub mod memory;
pub mod metrics;
mod multi;
mod open;
mod retry;
mod s3;
mod ssh;
mod throttle;

pub use local::LocalStorage;
pub use multi::MultiStorage;
pub use open::{open, StorageRequest, Transfer, DEFAULT_QUEUE_SIZE};
pub use retry::{RetryPolicy, RetryingStorage};
pub use s3::{S3Config, S3Credentials, S3Storage, DEFAULT_REGION, MULTIPART_PART_SIZE};
pub use ssh::{SshConfig, SshStorage};
pub use throttle::{
    max_object_for, parse_rate, Clock, RateLimiter, SystemClock, ThrottledStorage, MIN_CHUNK,
};

use crate::error::Result;
pub use crate::lock::NameLock;

/// One stored object as returned by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the container, `/`-separated.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, when the backend reports it (debris age for prune).
    pub modified: Option<crate::timestamp::Timestamp>,
}

/// A container of objects. Writes are atomic: a reader sees a whole object or none.
pub trait Storage: Send + Sync {
    /// Stores `data` under `key`, replacing any previous object, atomically. The object may
    /// still sit in a write cache until [`Storage::sync`] names it.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;
    /// Makes the named objects durable (a backup syncs its segments before its manifest).
    fn sync(&self, keys: &[String]) -> Result<()>;
    /// Reads a whole object; a missing object is `ErrorKind::NotFound`.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Reads a whole object and accepts it only when `check` does (a segment's tag, a
    /// manifest's parse). A backend holding several copies (several storages at once) overrides
    /// this to fall back to the next copy when one is missing or fails `check`.
    fn get_checked(&self, key: &str, check: &dyn Fn(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
        let data = self.get(key)?;
        check(&data)?;
        Ok(data)
    }
    /// Reads `len` bytes at `offset` of an object (fewer only at the object's end).
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Lists every object whose key starts with `prefix`, in key order, including the temporary
    /// objects of interrupted writes (prune removes them).
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Removes empty directories left under `prefix` (a backup killed right after creating its
    /// directory leaves one). Object stores have no directories: the default does nothing.
    fn tidy(&self, _prefix: &str) -> Result<()> {
        Ok(())
    }
    /// A human-readable location of `key`, for messages.
    fn describe(&self, key: &str) -> String;
    /// Makes the container ready for writing (creates a local or remote directory; checks that
    /// a bucket exists). A missing bucket is `ErrorKind::NotFound`, never created silently.
    fn prepare(&self) -> Result<()>;
    /// Fails with `ErrorKind::NotFound` and a message naming the container when it does not
    /// exist, so readers (restore, list, prune, verify) say so instead of finding no backup.
    fn check_container(&self) -> Result<()>;
    /// Takes the standalone writer lock of `<host>_<name>` where the backend can hold one (a
    /// `flock` on local storage); backends without one return an empty lock (the fleet's Redis
    /// lock covers them).
    fn lock_name(&self, _name_prefix: &str) -> Result<NameLock> {
        Ok(NameLock::none())
    }
    /// Local directories this storage writes into, which a backup must never archive into
    /// itself.
    fn local_dirs(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }
}
