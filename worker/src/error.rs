//! The one error type of the engine: what failed, on which object, and which exit code it maps to.

use std::fmt;

/// Why an operation failed, in the classes that callers act on differently (exit code, retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Anything else: I/O on the source or target, bad state.
    Failure,
    /// Bad input from the user that clap could not catch (an unparsable date, an empty pass file).
    Usage,
    /// No backup, backup name or container matches.
    NotFound,
    /// Another writer holds the backup name.
    Locked,
    /// Wrong passphrase, or an object failed its integrity check.
    Integrity,
    /// The user interrupted the run (SIGINT/SIGTERM).
    Interrupted,
}

impl ErrorKind {
    /// The process exit code of DESIGN.md §6 for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Failure => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 10,
            ErrorKind::Locked => 11,
            ErrorKind::Integrity => 12,
            ErrorKind::Interrupted => 130,
        }
    }
}

/// An engine error: a kind plus a message that names the object and says what to do next.
#[derive(Debug)]
pub struct Error {
    /// The class of failure.
    pub kind: ErrorKind,
    /// Human-readable message, already naming the path or object concerned.
    pub message: String,
    /// The failure may go away by itself (a timeout, a reset connection, an HTTP 5xx, S3
    /// `SlowDown`): a retry can help. Permanent failures (403, no such bucket, a full disk) are
    /// not transient and fail at once.
    pub transient: bool,
}

impl Error {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            transient: false,
        }
    }
    /// A temporary failure that a retry may cure (network, server overload); exit code 1 when
    /// the retries run out.
    pub fn transient(message: impl Into<String>) -> Self {
        Error {
            transient: true,
            ..Self::failure(message)
        }
    }
    /// A generic failure.
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failure, message)
    }
    /// An integrity failure (exit 12).
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }
    /// A not-found failure (exit 10).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// A usage failure (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    /// An I/O failure on `what` (a path or object name), with a hint for a full disk.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let hint = if err.raw_os_error() == Some(libc_enospc()) {
            " (the device is full: free space or choose another container)"
        } else {
            ""
        };
        Self::failure(format!("{what}: {err}{hint}"))
    }
    /// The run was interrupted by a signal.
    pub fn interrupted() -> Self {
        Self::new(ErrorKind::Interrupted, "interrupted")
    }
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
