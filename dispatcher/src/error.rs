//! The dispatcher's error: what failed (its kind, which decides the exit code), the message the
//! command prints, and the underlying error when there is one.
//!
//! Each variant's message is its own layer only (`redis`, `cannot declare the topology`); the
//! underlying error is its [`std::error::Error::source`]. [`Error::report`] writes both as
//! `message: cause`, the line `freezer-dispatcher` prints (`freezer-dispatcher: redis: connection
//! refused`).
//!
//! Exit codes: 2 for what the user must fix (the command line, a setting, a job file, a task the
//! contracts refuse), 130 for an interrupted wait, 1 for everything else.

use freezer_contracts::ContractError;
use freezer_fleet::amqp::ConnectError;

/// An underlying error of any type.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of the dispatcher's fallible functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a dispatcher operation or command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command line the dispatcher cannot act on (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A setting that cannot be used: the configuration file, a URL, a listen address, the jobs
    /// directory (exit 2).
    #[error("{context}")]
    Setting {
        /// Which setting, and what is wrong with it.
        context: String,
        /// The underlying error (an I/O, TOML or URL error), if any.
        #[source]
        source: Option<Cause>,
    },
    /// A job file that cannot be loaded: its syntax, a job, a field (exit 2).
    #[error(transparent)]
    JobFile(#[from] crate::jobs::JobFileError),
    /// A task or a name the contracts refuse (exit 2).
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// No record under the id asked for (exit 1).
    #[error("{0}")]
    NotFound(String),
    /// Redis failed (exit 1).
    #[error("{context}")]
    Redis {
        /// What was being done.
        context: String,
        /// What Redis said.
        #[source]
        source: redis::RedisError,
    },
    /// The broker could not be reached, failed or refused (exit 1).
    #[error("{context}")]
    Broker {
        /// What was being done.
        context: String,
        /// The underlying AMQP error, if any.
        #[source]
        source: Option<Cause>,
    },
    /// The broker could not be reached (exit 1).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The AMQP channel or connection failed (exit 1).
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// A wait gave up before its outcome was known (exit 1); the message says what still runs.
    #[error("{0}")]
    Timeout(String),
    /// A wait was interrupted (Ctrl-C; exit 130); the message says what still runs.
    #[error("{0}")]
    Interrupted(String),
    /// Anything else that stops the command (exit 1).
    #[error("{context}")]
    Internal {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Cause,
    },
}

impl Error {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    /// A setting error without an underlying error.
    pub fn setting(context: impl Into<String>) -> Error {
        Error::Setting {
            context: context.into(),
            source: None,
        }
    }

    /// A setting error caused by `source`.
    pub fn setting_from(context: impl Into<String>, source: impl Into<Cause>) -> Error {
        Error::Setting {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A Redis error while doing `context`.
    pub fn redis(context: impl Into<String>) -> impl FnOnce(redis::RedisError) -> Error {
        let context = context.into();
        move |source| Error::Redis { context, source }
    }

    /// A broker error without an underlying error.
    pub fn broker(context: impl Into<String>) -> Error {
        Error::Broker {
            context: context.into(),
            source: None,
        }
    }

    /// A broker error caused by `source` while doing `context`.
    pub fn broker_from(context: impl Into<String>, source: impl Into<Cause>) -> Error {
        Error::Broker {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// The exit code of a command that failed with this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Setting { .. } | Error::JobFile(_) | Error::Contract(_) => 2,
            Error::Interrupted(_) => 130,
            Error::NotFound(_)
            | Error::Redis { .. }
            | Error::Broker { .. }
            | Error::Connect(_)
            | Error::Amqp(_)
            | Error::Timeout(_)
            | Error::Internal { .. } => 1,
        }
    }

    /// The message followed by its cause's (`redis: connection refused`): what the command
    /// prints.
    pub fn report(&self) -> String {
        freezer_fleet::with_cause(self)
    }
}
