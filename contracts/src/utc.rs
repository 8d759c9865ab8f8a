//! Points in time on the wire: RFC 3339 in UTC, and the CLI's date options.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::error::ContractError;

/// Regular expression of the text [`UtcTime::parse`] accepts, for the JSON Schema (which also says
/// `format: date-time` for the calendar rules a pattern cannot express).
pub const UTC_TIME_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|\\+00:00)$";

/// A point in time as messages carry it: RFC 3339 text in UTC (`2026-11-25T13:00:00Z`).
///
/// UTC only, so that times compare as the dispatcher meant them whatever the workers' time zones,
/// and read the same in every log. A time with another offset is refused, not converted: it means
/// the writer does not follow the contract. Parsed when the message is read, so the worker never
/// meets an unparsable `expires_at` halfway through deciding whether to run a task. The crate never
/// reads the clock; callers pass "now" in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime(OffsetDateTime);

impl UtcTime {
    /// Parses RFC 3339 text whose offset is UTC (`Z` or `+00:00`); fractional seconds are kept.
    /// Only the usual spelling is accepted (a `T` between date and time, an uppercase `Z`), the one
    /// JSON Schema's `date-time` and every RFC 3339 reader understand.
    pub fn parse(s: &str) -> Result<UtcTime, String> {
        let t = OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .filter(|_| s.as_bytes().get(10) == Some(&b'T'))
            .ok_or_else(|| {
                format!("{s:?} is not an RFC 3339 time (expected e.g. 2026-11-25T13:00:00Z)")
            })?;
        if !(s.ends_with('Z') || s.ends_with("+00:00")) || t.offset() != UtcOffset::UTC {
            return Err(format!(
                "{s:?} is not in UTC (write it with a Z offset, e.g. 2026-11-25T13:00:00Z)"
            ));
        }
        Ok(UtcTime(t))
    }

    /// The time `unix_seconds` after the Unix epoch (years 0 to 9999, as RFC 3339 can write).
    pub fn from_unix_seconds(unix_seconds: i64) -> Result<UtcTime, String> {
        OffsetDateTime::from_unix_timestamp(unix_seconds)
            .map_err(|e| format!("{unix_seconds} s after the epoch is out of range ({e})"))
            .and_then(UtcTime::from_offset_date_time)
    }

    /// Converts from `time`'s type (any offset: the instant is kept, expressed in UTC), for callers
    /// that read the clock with `OffsetDateTime::now_utc()`. Refuses years RFC 3339 cannot write
    /// (before 0 or after 9999), so that every `UtcTime` can be serialized.
    pub fn from_offset_date_time(t: OffsetDateTime) -> Result<UtcTime, String> {
        let t = t.to_offset(UtcOffset::UTC);
        if (0..=9999).contains(&t.year()) {
            Ok(UtcTime(t))
        } else {
            Err(format!("year {} cannot be written in RFC 3339", t.year()))
        }
    }

    /// The instant as `time`'s type, for arithmetic and formatting.
    pub fn as_offset_date_time(self) -> OffsetDateTime {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded down), e.g. for Redis TTLs.
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// How long from `self` until `later`; zero if `later` is not after `self`.
    pub fn until(self, later: UtcTime) -> Duration {
        Duration::try_from(later.0 - self.0).unwrap_or(Duration::ZERO)
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatting a UTC time of the years 0..=9999 cannot fail, and no constructor builds another.
        let text = self.0.format(&Rfc3339).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl FromStr for UtcTime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UtcTime::parse(s)
    }
}

impl Serialize for UtcTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UtcTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(deserializer)?;
        UtcTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for UtcTime {
    fn schema_name() -> Cow<'static, str> {
        "UtcTime".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "RFC 3339 time in UTC (ending in Z or +00:00).",
            "type": "string",
            "format": "date-time",
            "pattern": UTC_TIME_PATTERN,
        })
    }
}

/// Checks a date option of the CLI (`restore_from_date`, `remove_from_date`) the way the worker will
/// read it: `YYYY-MM-DDThh:mm:ss` taken as UTC, optionally ending in `Z`, or RFC 3339 with an offset
/// (as OpenStack Freezer accepted). Kept as text in the spec so that a job file's value reaches the
/// worker exactly as written.
pub fn check_user_date(path: &str, value: &str) -> Result<(), ContractError> {
    let plain = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let trimmed = value.strip_suffix('Z').unwrap_or(value);
    if PrimitiveDateTime::parse(trimmed, plain).is_ok()
        || OffsetDateTime::parse(value, &Rfc3339).is_ok()
    {
        Ok(())
    } else {
        Err(ContractError::invalid(
            path,
            format!("{value:?} is not a date: expected YYYY-MM-DDThh:mm:ss (UTC), optionally ending in Z"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_round_trip_as_rfc3339() {
        for s in [
            "2026-11-25T13:00:00Z",
            "2026-11-25T13:00:00.5Z",
            "2026-11-25T13:00:00.123456789Z",
        ] {
            let t = UtcTime::parse(s).unwrap();
            assert_eq!(t.to_string(), s);
            let v = serde_json::to_value(t).unwrap();
            assert_eq!(serde_json::from_value::<UtcTime>(v).unwrap(), t);
        }
        let t = UtcTime::parse("2026-11-25T13:00:00+00:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-25T13:00:00Z");
        assert_eq!(t.unix_seconds(), 1_795_611_600);
        assert_eq!(UtcTime::from_unix_seconds(1_795_611_600).unwrap(), t);
        let shifted = t.as_offset_date_time().to_offset(time::macros::offset!(+2));
        assert_eq!(UtcTime::from_offset_date_time(shifted).unwrap(), t);
        assert!(
            UtcTime::from_unix_seconds(-62_167_219_201).is_err(),
            "year -1"
        );
        assert!(UtcTime::from_unix_seconds(i64::MAX).is_err());
    }

    #[test]
    fn non_utc_and_unparsable_times_are_refused() {
        for bad in [
            "2026-11-25T15:00:00+02:00",
            "2026-11-25 13:00:00Z",
            "2026-11-25t13:00:00z",
            "2026-11-25",
            "2026-13-25T13:00:00Z",
            "tomorrow",
        ] {
            assert!(UtcTime::parse(bad).is_err(), "{bad}");
            assert!(serde_json::from_value::<UtcTime>(serde_json::json!(bad)).is_err());
        }
    }

    #[test]
    fn until_is_zero_for_the_past() {
        let a = UtcTime::parse("2026-11-25T13:00:00Z").unwrap();
        let b = UtcTime::parse("2026-11-25T13:00:30Z").unwrap();
        assert_eq!(a.until(b), Duration::from_secs(30));
        assert_eq!(b.until(a), Duration::ZERO);
    }

    #[test]
    fn user_dates_follow_the_cli() {
        for good in [
            "2026-11-25T13:43:15",
            "2026-11-25T13:43:15Z",
            "2026-11-25T15:43:15+02:00",
        ] {
            check_user_date("restore_from_date", good).unwrap();
        }
        for bad in ["yesterday", "2026-11-25", "25/11/2026 13:43"] {
            let err = check_user_date("restore_from_date", bad).unwrap_err();
            assert_eq!(err.path(), Some("restore_from_date"));
        }
    }
}
