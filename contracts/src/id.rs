//! Identifiers and names that travel in messages and end up in queue names and Redis keys, with the
//! one place that decides which characters they may hold.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ContractError;

/// Regular expression of a canonical UUIDv7 (lowercase, hyphenated, version 7, RFC 4122 variant);
/// the JSON Schema's pattern for task ids, kept equal to what [`TaskId::parse`] accepts.
pub const TASK_ID_PATTERN: &str =
    "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$";

/// A task id: a UUIDv7 in canonical text form (`01936a3e-7c1b-7000-8000-000000000001`).
///
/// It is also the AMQP message id and the idempotency key (a task id runs at most once), and it is
/// part of Redis keys; a type of its own means an id is checked once, when a message is read, and
/// can be trusted everywhere after. Version 7 ids start with their creation time in milliseconds, so
/// they sort by age as text. The crate generates none itself (it does no I/O and reads no clock or
/// random source): the dispatcher builds one with [`TaskId::from_parts`] or parses one made by a
/// UUID library.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(String);

impl TaskId {
    /// Accepts exactly the canonical form: 36 characters, lowercase hex, hyphens at 8-4-4-4-12,
    /// version nibble `7`, variant nibble `8`-`b`. Other spellings of the same UUID (uppercase,
    /// braces, no hyphens) are refused rather than normalised, so that one task has one key.
    pub fn parse(s: &str) -> Result<TaskId, ContractError> {
        let bad = |why: &str| {
            ContractError::invalid(
                "task_id",
                format!(
                    "{s:?} is not a UUIDv7 in canonical form ({why}; expected e.g. \
                     01936a3e-7c1b-7000-8000-000000000001)"
                ),
            )
        };
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(bad("wrong length"));
        }
        for (i, &c) in b.iter().enumerate() {
            let ok = match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
            };
            if !ok {
                return Err(bad("only lowercase hex digits and hyphens at 8-4-4-4-12"));
            }
        }
        if b[14] != b'7' {
            return Err(bad("version is not 7"));
        }
        if !matches!(b[19], b'8' | b'9' | b'a' | b'b') {
            return Err(bad("variant is not RFC 4122"));
        }
        Ok(TaskId(s.to_string()))
    }

    /// Builds a UUIDv7 from its creation time (Unix milliseconds, 48 bits kept) and 10 random bytes
    /// the caller supplies (74 bits are used); the caller owns the clock and the random source.
    pub fn from_parts(unix_ms: u64, random: [u8; 10]) -> TaskId {
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
        b[6..].copy_from_slice(&random);
        b[6] = 0x70 | (b[6] & 0x0f);
        b[8] = 0x80 | (b[8] & 0x3f);
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        TaskId(format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        ))
    }

    /// The creation time embedded in the id (Unix milliseconds): how old a task is without a lookup.
    pub fn unix_ms(&self) -> u64 {
        let hex: String = self.0[..13].chars().filter(|&c| c != '-').collect();
        u64::from_str_radix(&hex, 16).expect("checked when the id was built")
    }

    /// The id as text, for AMQP message ids, Redis keys and logs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TaskId {
    type Err = ContractError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskId::parse(s)
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(deserializer)?;
        TaskId::parse(&s).map_err(|e| match e {
            ContractError::Invalid { message, .. } => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })
    }
}

impl JsonSchema for TaskId {
    fn schema_name() -> Cow<'static, str> {
        "TaskId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "UUIDv7 in canonical lowercase form; also the AMQP message id and the \
                            idempotency key.",
            "type": "string",
            "pattern": TASK_ID_PATTERN,
        })
    }
}

/// Longest identifier accepted by [`check_ident`]: long enough for any sane name, short enough that
/// keys and queue names stay readable.
pub const MAX_IDENT_LEN: usize = 128;

/// Regular expression of an identifier (see [`check_ident`]), for the JSON Schema.
pub const IDENT_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$";

/// Checks an identifier: a node, pool, storage, key, hook, job, run, session or tag name.
///
/// These become parts of AMQP queue names (`freezer.node.<node>`) and Redis keys
/// (`freezer:session:<id>:<tag>`), so they are limited to ASCII letters, digits, `.`, `_` and `-`
/// (no `:` or `/` that would make a key ambiguous, no spaces), 1 to [`MAX_IDENT_LEN`] characters, not
/// starting with `.` or `-`.
pub fn check_ident(path: &str, value: &str) -> Result<(), ContractError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && value.len() <= MAX_IDENT_LEN && value.chars().all(ok_char) {
        Ok(())
    } else {
        Err(ContractError::invalid(
            path,
            format!(
                "{value:?} is not a valid name (1 to {MAX_IDENT_LEN} of A-Z a-z 0-9 . _ -, \
                 starting with a letter, digit or _)"
            ),
        ))
    }
}

/// Checks a backup name or host name, the two parts of the storage key `<host>_<name>`: the CLI's
/// rule (non-empty, no `/`, not `.` or `..`) plus no control characters, so that a task cannot name
/// a backup the CLI could not.
pub fn check_storage_key_part(path: &str, value: &str) -> Result<(), ContractError> {
    if value.is_empty()
        || value == "."
        || value == ".."
        || value.contains('/')
        || value.chars().any(char::is_control)
    {
        return Err(ContractError::invalid(
            path,
            format!("{value:?} must be non-empty, contain no '/' or control character, and not be . or .."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_accepts_only_canonical_uuid_v7() {
        let good = "01936a3e-7c1b-7000-8000-000000000001";
        assert_eq!(TaskId::parse(good).unwrap().as_str(), good);
        for bad in [
            "",
            "x",
            "01936A3E-7C1B-7000-8000-000000000001", // uppercase
            "01936a3e7c1b70008000000000000001",     // no hyphens
            "{01936a3e-7c1b-7000-8000-000000000001}",
            "01936a3e-7c1b-4000-8000-000000000001", // version 4
            "01936a3e-7c1b-7000-c000-000000000001", // variant
            "01936a3e-7c1b-7000-8000-00000000000g",
            "01936a3e_7c1b-7000-8000-000000000001",
        ] {
            let err = TaskId::parse(bad).unwrap_err();
            assert_eq!(err.path(), Some("task_id"), "{bad}");
        }
    }

    #[test]
    fn task_id_from_parts_is_valid_and_keeps_its_time() {
        let ms = 1_795_614_195_123;
        let id = TaskId::from_parts(ms, [0xff; 10]);
        assert_eq!(TaskId::parse(id.as_str()).unwrap(), id);
        assert_eq!(id.unix_ms(), ms);
        let older = TaskId::from_parts(ms - 1, [0xff; 10]);
        assert!(older < id, "ids sort by creation time");
        let zero = TaskId::from_parts(0, [0; 10]);
        assert_eq!(zero.as_str(), "00000000-0000-7000-8000-000000000000");
    }

    #[test]
    fn task_id_serializes_as_plain_string() {
        let id = TaskId::parse("01936a3e-7c1b-7000-8000-000000000001").unwrap();
        let v = serde_json::to_value(&id).unwrap();
        assert_eq!(v, serde_json::json!("01936a3e-7c1b-7000-8000-000000000001"));
        assert_eq!(serde_json::from_value::<TaskId>(v).unwrap(), id);
        let err = serde_json::from_value::<TaskId>(serde_json::json!("nope")).unwrap_err();
        assert!(err.to_string().contains("not a UUIDv7"), "{err}");
    }

    #[test]
    fn identifiers_are_safe_in_queue_names_and_keys() {
        for good in ["web1", "etc-daily", "pool_a", "node.example.org", "7", "_x"] {
            check_ident("node", good).unwrap();
        }
        let long = "a".repeat(MAX_IDENT_LEN + 1);
        for bad in ["", "a:b", "a/b", "a b", ".hidden", "-x", "é", long.as_str()] {
            assert!(check_ident("node", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn storage_key_parts_follow_the_cli_rule() {
        check_storage_key_part("backup_name", "etc files").unwrap();
        for bad in ["", ".", "..", "a/b", "a\nb"] {
            assert!(
                check_storage_key_part("backup_name", bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
