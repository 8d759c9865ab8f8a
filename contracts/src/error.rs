//! Why a message was refused, precisely enough to be the `reason` of a rejection.

use std::fmt;

use crate::SCHEMA_VERSION;

/// Why a message (task or event) was refused.
///
/// Its `Display` text is meant to be the `reason` of a `rejected` event and of a dead-lettered task,
/// so it names the field concerned (`spec.max_level: ...`) and what is wrong with it; a person reading
/// the dead-letter queue should not need the source to know what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractError {
    /// The body is not a JSON object at all (truncated, another format, a JSON array...).
    NotJson {
        /// The parser's message, with the line and column where it gave up.
        message: String,
    },
    /// The message was written under another schema version than [`SCHEMA_VERSION`], or carries none.
    /// Checked before anything else, so a message of another version is reported as such even when
    /// the rest of its shape no longer matches this build.
    UnsupportedSchemaVersion {
        /// The version found in the message (`None` if absent or not an unsigned integer).
        found: Option<u64>,
    },
    /// A field is missing, has the wrong type, or holds a value this build does not know (an unknown
    /// task kind, an unknown option in a spec, a task id that is not a UUIDv7...).
    Field {
        /// Where in the message: `kind`, `spec.max_level`, `session.members[2]`; empty when the problem
        /// is the message as a whole (e.g. a field missing at the top level).
        path: String,
        /// What is wrong, as serde reports it (`missing field \`job_id\``, `invalid type: ...`).
        message: String,
    },
    /// Every field parsed, but the message breaks a rule that types cannot express (conflicting
    /// options, an expiry before the start, a relative path, an empty list of storages).
    Invalid {
        /// Where in the message, as for [`ContractError::Field`].
        path: String,
        /// Which rule is broken.
        message: String,
    },
}

impl ContractError {
    /// A rule violation at `path`; the constructor the `validate` methods use.
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ContractError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Converts a serde error that knows its path (from `serde_path_to_error`), prefixing the path of
    /// the part of the message it was parsed from (`spec` when a spec was parsed on its own).
    pub(crate) fn from_path_error(
        prefix: &str,
        err: serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let inner = err.path().to_string();
        // serde_path_to_error writes "." for the root.
        let inner = if inner == "." { String::new() } else { inner };
        let path = match (prefix.is_empty(), inner.is_empty()) {
            (true, _) => inner,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{inner}"),
        };
        ContractError::Field {
            path,
            message: err.into_inner().to_string(),
        }
    }

    /// The field the error is about (`spec.max_level`), when it is about one; lets a caller (the
    /// dispatcher checking a job file, say) point at the offending option.
    pub fn path(&self) -> Option<&str> {
        match self {
            ContractError::Field { path, .. } | ContractError::Invalid { path, .. }
                if !path.is_empty() =>
            {
                Some(path)
            }
            ContractError::UnsupportedSchemaVersion { .. } => Some("schema_version"),
            _ => None,
        }
    }
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContractError::NotJson { message } => write!(f, "not a JSON object: {message}"),
            ContractError::UnsupportedSchemaVersion { found: Some(v) } => write!(
                f,
                "unsupported schema_version {v} (this build speaks {SCHEMA_VERSION})"
            ),
            ContractError::UnsupportedSchemaVersion { found: None } => write!(
                f,
                "missing or non-numeric schema_version (this build speaks {SCHEMA_VERSION})"
            ),
            ContractError::Field { path, message } | ContractError::Invalid { path, message }
                if path.is_empty() =>
            {
                f.write_str(message)
            }
            ContractError::Field { path, message } | ContractError::Invalid { path, message } => {
                write!(f, "{path}: {message}")
            }
        }
    }
}

impl std::error::Error for ContractError {}
