//! The one error type of the engine: what failed, on which object, whether a retry can help,
//! what the user can do about it, and the exit code and contracts' error class it maps to.
//!
//! An error is classified where it is made (the storage backend knows a 503 from a 403, the
//! reader knows a wrong passphrase from a damaged segment), not by the caller: the retry layer,
//! the daemon and the CLI read [`Error::status`], [`Error::class`] and [`Error::guidance`].

use freezer_contracts::ErrorClass;
use std::borrow::Cow;
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
    /// The user interrupted the run (SIGINT/SIGTERM), or the daemon cancelled it.
    Interrupted,
}

impl ErrorKind {
    /// The process exit code of ARCHITECTURE.md §6 for this kind.
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

    /// The status an error of this kind has unless its maker says otherwise: a lock held by
    /// another writer and an interrupted run may go away; the rest does not by itself.
    pub fn default_status(self) -> Status {
        match self {
            ErrorKind::Locked | ErrorKind::Interrupted => Status::Transient,
            ErrorKind::Failure | ErrorKind::Usage | ErrorKind::NotFound | ErrorKind::Integrity => {
                Status::Permanent
            }
        }
    }
}

/// Whether repeating the same operation can help: what the storage retry layer and the
/// dispatcher (through [`Error::class`]) decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Repeating cannot help until someone changes something: bad input, refused credentials,
    /// a missing object, damaged data, a full disk.
    Permanent,
    /// The failure may go away by itself: a timeout, a reset connection, an HTTP 5xx, S3
    /// `SlowDown`, a lock another writer holds, a run stopped by a shutdown.
    Transient,
}

/// Guidance for stored data that failed its check (a damaged segment, index or manifest):
/// retrying reads the same bytes, so the way out is another copy.
pub const DAMAGED_GUIDANCE: &str =
    "stored data is damaged or was changed: `freezer-worker verify` \
     shows which backups are affected; restore from an earlier backup or from another storage";

/// The underlying cause an error was made from (an `io::Error`, an SDK error...).
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An engine error: a kind and a message that names the object, whether a retry can help,
/// optional guidance for the user and the underlying cause.
///
/// `Display` is the message alone (what events carry as their `reason` and tests match on);
/// [`Error::report`] adds the causes and the guidance for a person.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The class of failure (exit code).
    pub kind: ErrorKind,
    /// Human-readable message, already naming the path or object concerned.
    pub message: String,
    /// Whether a retry can help.
    pub status: Status,
    /// What the user can do about it (`give the right --encrypt-pass-file`), printed by the CLI
    /// as a `hint:` line; `None` when the message says it all.
    pub guidance: Option<Cow<'static, str>>,
    /// The error this one was made from, when there is one worth keeping.
    #[source]
    pub source: Option<Source>,
}

impl Error {
    /// Builds an error of `kind` with `message`, with the kind's default status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            status: kind.default_status(),
            guidance: None,
            source: None,
        }
    }
    /// A temporary failure that a retry may cure (network, server overload); exit code 1 when
    /// the retries run out.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::failure(message).with_status(Status::Transient)
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
    /// Another writer holds what this run would write (exit 11; a retry later may succeed).
    pub fn locked(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Locked, message)
    }
    /// An I/O failure on `what` (a path or object name), with guidance for a full disk or a
    /// refused permission, and the `io::Error` kept as the source.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let guidance = if err.raw_os_error() == Some(libc_enospc()) {
            Some("the device is full: free space or choose another container")
        } else if err.kind() == std::io::ErrorKind::PermissionDenied {
            Some("check that the user running freezer-worker may read and write there")
        } else {
            None
        };
        let e = Self::failure(format!("{what}: {err}")).with_source(err);
        match guidance {
            Some(g) => e.with_guidance(g),
            None => e,
        }
    }
    /// The run was interrupted by a signal or cancelled.
    pub fn interrupted() -> Self {
        Self::new(ErrorKind::Interrupted, "interrupted")
    }

    /// The same error with `status`.
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }
    /// The same error with `guidance` for the user.
    pub fn with_guidance(mut self, guidance: impl Into<Cow<'static, str>>) -> Self {
        self.guidance = Some(guidance.into());
        self
    }
    /// The same error with `source` as its cause.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether a retry can help.
    pub fn is_transient(&self) -> bool {
        self.status == Status::Transient
    }

    /// The contracts' error class of this error: what the dispatcher does with the failed task
    /// (retry later, fail, alert).
    pub fn class(&self) -> ErrorClass {
        match (self.kind, self.status) {
            (ErrorKind::Failure | ErrorKind::Usage, Status::Transient) => ErrorClass::Transient,
            (ErrorKind::Failure | ErrorKind::Usage, Status::Permanent) => ErrorClass::Permanent,
            (ErrorKind::NotFound, _) => ErrorClass::NotFound,
            (ErrorKind::Locked, _) => ErrorClass::Locked,
            (ErrorKind::Integrity, _) => ErrorClass::Integrity,
            (ErrorKind::Interrupted, _) => ErrorClass::Interrupted,
        }
    }

    /// The error for a person: the message, each cause the message does not already quote (one
    /// `caused by:` line each), then the guidance as a `hint:` line.
    pub fn report(&self) -> Report<'_> {
        Report(self)
    }
}

/// [`Error::report`]'s text.
pub struct Report<'a>(&'a Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        f.write_str(&e.message)?;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source.as_deref().map(|s| {
            let s: &(dyn std::error::Error + 'static) = s;
            s
        });
        while let Some(c) = cause {
            let text = c.to_string();
            if !e.message.contains(&text) {
                write!(f, "\n  caused by: {text}")?;
            }
            cause = c.source();
        }
        if let Some(g) = &e.guidance {
            write!(f, "\nhint: {g}")?;
        }
        Ok(())
    }
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_follows_kind_and_status() {
        assert_eq!(Error::failure("x").class(), ErrorClass::Permanent);
        assert_eq!(Error::transient("x").class(), ErrorClass::Transient);
        assert_eq!(Error::usage("x").class(), ErrorClass::Permanent);
        assert_eq!(Error::not_found("x").class(), ErrorClass::NotFound);
        assert_eq!(Error::locked("x").class(), ErrorClass::Locked);
        assert_eq!(Error::integrity("x").class(), ErrorClass::Integrity);
        assert_eq!(Error::interrupted().class(), ErrorClass::Interrupted);
        assert!(Error::locked("x").is_transient());
        assert!(!Error::integrity("x").is_transient());
    }

    #[test]
    fn report_shows_unquoted_causes_and_the_hint() {
        let io = std::io::Error::from_raw_os_error(libc_enospc());
        let e = Error::io("/srv/b/seg", io);
        let r = e.report().to_string();
        assert!(r.starts_with("/srv/b/seg: "), "{r}");
        // The io::Error is quoted in the message already: no `caused by` line repeats it.
        assert!(!r.contains("caused by"), "{r}");
        assert!(
            r.ends_with("\nhint: the device is full: free space or choose another container"),
            "{r}"
        );
        let e = Error::failure("reading x").with_source(std::io::Error::other("reset by peer"));
        assert_eq!(
            e.report().to_string(),
            "reading x\n  caused by: reset by peer"
        );
        assert_eq!(e.to_string(), "reading x");
    }
}
