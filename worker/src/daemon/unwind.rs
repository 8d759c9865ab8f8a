//! A panic inside a task becomes a failed task.
//!
//! Tokio catches a panic of a spawned task, so the daemon would go on, but the task would stay in
//! the running map: the keeper renewing its lease forever, no reaper taking it, no final event
//! for the dispatcher. So the handler runs each task under [`caught`], and a panic is reported as
//! a failed task ([`failed`]: class permanent, exit code 1, the panic message) through the normal
//! finish (its result recorded, its lease released); the slot it held is a permit dropped while
//! unwinding. What a task spawns beside it ends with it even when it unwinds: its progress
//! reporter and its lock renewer are [`AbortOnDrop`], and its writer locks are [`ReleaseOnDrop`].
//!
//! In debug builds, [`inject`] panics a task whose writer lock scope ends with the value of
//! `FREEZER_DEBUG_PANIC_SCOPE` while it holds its locks, so a test can prove all of this.

use super::lock::LockSet;
use freezer_contracts::{ErrorClass, EventStatus};
use futures::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use tokio::task::JoinHandle;

/// The environment variable of [`inject`] (debug builds only).
pub const PANIC_SCOPE_VAR: &str = "FREEZER_DEBUG_PANIC_SCOPE";

/// Runs `fut`; a panic inside it is returned as its message instead of unwinding further.
pub async fn caught<F: Future>(fut: F) -> Result<F::Output, String> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|payload| message(payload.as_ref()))
}

/// The message of a panic payload (`panic!` with a literal or with formatting).
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The final status of a task that panicked: permanent (running it again would panic again).
pub fn failed(message: &str) -> EventStatus {
    EventStatus::Failed {
        error_class: ErrorClass::Permanent,
        exit_code: crate::error::ErrorKind::Failure.exit_code(),
        reason: format!("the worker panicked running this task: {message}"),
    }
}

/// A spawned task that is aborted when this handle is dropped, unwinding included.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writer locks released when this guard is dropped without [`ReleaseOnDrop::release`] (a
/// task that unwound), by a task spawned for it.
pub struct ReleaseOnDrop(Option<LockSet>);

impl ReleaseOnDrop {
    /// Guards `locks`.
    pub fn new(locks: LockSet) -> ReleaseOnDrop {
        ReleaseOnDrop(Some(locks))
    }

    /// Releases the locks now.
    pub async fn release(mut self) {
        if let Some(locks) = self.0.take() {
            locks.release().await;
        }
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if let Some(locks) = self.0.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                drop(handle.spawn(async move { locks.release().await }));
            }
        }
    }
}

/// Debug builds: panics when a scope of `locks` ends with `FREEZER_DEBUG_PANIC_SCOPE`.
#[cfg(debug_assertions)]
pub fn inject(locks: &LockSet) {
    let Ok(suffix) = std::env::var(PANIC_SCOPE_VAR) else {
        return;
    };
    if !suffix.is_empty() && locks.held.iter().any(|l| l.scope.ends_with(&suffix)) {
        panic!("injected panic ({PANIC_SCOPE_VAR}={suffix}) while holding the writer locks");
    }
}

/// Release builds: no hook.
#[cfg(not(debug_assertions))]
pub fn inject(_locks: &LockSet) {}
