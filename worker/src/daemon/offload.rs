//! Storages in the daemon, kept off its asynchronous runtime.
//!
//! The S3 and SSH clients each own a small tokio runtime and block on it, which tokio forbids on
//! an asynchronous thread: creating one there (`S3Storage::new` loads the SDK's configuration
//! with `block_on`), calling one, or dropping one (which drops its runtime) panics. The daemon
//! therefore opens storages on the blocking pool ([`open`]), the executor runs the engine there,
//! and the storage it holds is an [`OffRuntime`], which hands its backend to the blocking pool
//! when it is dropped on an asynchronous thread: whichever path lets go of it (a task refused as
//! `locked` after its storage was opened, an option that does not resolve, a cancelled run),
//! the backend's runtime is shut down where blocking is allowed.

use super::Shared;
use crate::config::WorkerConfig;
use crate::error::{Error, Result};
use crate::storage::{NameLock, ObjectInfo, Storage};
use std::path::PathBuf;
use std::sync::Arc;

/// Runs `open` (which opens storages: a plan of [`crate::resolve`]) on the blocking pool with
/// the worker's configuration, and replaces the storage that `storage` points at in its result
/// with an [`OffRuntime`] before the result reaches the runtime.
pub async fn open<T: Send + 'static>(
    shared: &Arc<Shared>,
    open: impl FnOnce(&WorkerConfig) -> Result<T> + Send + 'static,
    storage: impl FnOnce(&mut T) -> &mut Arc<dyn Storage> + Send + 'static,
) -> Result<T> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let mut opened = open(&shared.config)?;
        let s = storage(&mut opened);
        *s = Arc::new(OffRuntime::new(s.clone()));
        Ok(opened)
    })
    .await
    .map_err(|e| Error::failure(format!("opening the storage panicked: {e}")))?
}

/// A storage that is never dropped on an asynchronous thread: see the module documentation.
pub struct OffRuntime {
    inner: Option<Arc<dyn Storage>>,
}

impl OffRuntime {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> OffRuntime {
        OffRuntime { inner: Some(inner) }
    }

    fn backend(&self) -> &dyn Storage {
        self.inner
            .as_deref()
            .expect("the storage is only taken when dropped")
    }
}

impl Drop for OffRuntime {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        // On a tokio thread (asynchronous or blocking pool alike), the blocking pool drops it;
        // elsewhere here.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                drop(handle.spawn_blocking(move || drop(inner)));
            }
            Err(_) => drop(inner),
        }
    }
}

impl Storage for OffRuntime {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.backend().put(key, data)
    }
    fn sync(&self, keys: &[String]) -> Result<()> {
        self.backend().sync(keys)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.backend().get(key)
    }
    fn get_checked(&self, key: &str, check: &dyn Fn(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
        self.backend().get_checked(key, check)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.backend().get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.backend().list(prefix)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.backend().delete(key)
    }
    fn tidy(&self, prefix: &str) -> Result<()> {
        self.backend().tidy(prefix)
    }
    fn describe(&self, key: &str) -> String {
        self.backend().describe(key)
    }
    fn prepare(&self) -> Result<()> {
        self.backend().prepare()
    }
    fn check_container(&self) -> Result<()> {
        self.backend().check_container()
    }
    fn lock_name(&self, name_prefix: &str) -> Result<NameLock> {
        self.backend().lock_name(name_prefix)
    }
    fn local_dirs(&self) -> Vec<PathBuf> {
        self.backend().local_dirs()
    }
}
