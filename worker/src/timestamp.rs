//! Backup timestamps: UTC, microsecond resolution, sortable as text (`20261125T135256.123456Z`).

use crate::error::{Error, Result};
use std::fmt;
use time::{macros::format_description, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A backup's identity in time; also its `backup_id` and, for a level 0, its `chain_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Microseconds since the Unix epoch, UTC.
    pub micros: i64,
}

const ID_FORMAT: &[time::format_description::FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:6]Z");

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Timestamp {
            micros: (now.unix_timestamp_nanos() / 1000) as i64,
        }
    }

    /// The current time, but strictly after `previous` so ids stay unique and ordered.
    pub fn now_after(previous: Option<Timestamp>) -> Self {
        let now = Self::now();
        match previous {
            Some(p) if p.micros >= now.micros => Timestamp {
                micros: p.micros + 1,
            },
            _ => now,
        }
    }

    fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.micros as i128 * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Parses the id form written by [`fmt::Display`].
    pub fn parse_id(s: &str) -> Option<Self> {
        let dt = PrimitiveDateTime::parse(s, ID_FORMAT).ok()?;
        Some(Timestamp {
            micros: (dt.assume_utc().unix_timestamp_nanos() / 1000) as i64,
        })
    }

    /// Parses a user's `--restore-from-date` as an inclusive bound: the whole named second counts
    /// ("at or before 12:00:00" includes a backup at 12:00:00.7).
    pub fn parse_user_date(s: &str) -> Result<Self> {
        Self::parse_user_date_start(s).map(|t| Timestamp {
            micros: t.micros + 999_999,
        })
    }

    /// Parses a user's date as the start of its second (`--remove-from-date`: "taken before"):
    /// `YYYY-MM-DDThh:mm:ss` with an optional `Z` (both taken as UTC, as OpenStack Freezer 19
    /// does), or RFC 3339 with an offset.
    pub fn parse_user_date_start(s: &str) -> Result<Self> {
        let bad = || {
            Error::usage(format!(
                "invalid date {s:?}: expected YYYY-MM-DDThh:mm:ss (UTC), optionally ending in Z"
            ))
        };
        let trimmed = s.strip_suffix('Z').unwrap_or(s);
        let plain = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
        let dt = match PrimitiveDateTime::parse(trimmed, plain) {
            Ok(dt) => dt.assume_offset(UtcOffset::UTC),
            Err(_) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad())?,
        };
        Ok(Timestamp {
            micros: (dt.unix_timestamp_nanos() / 1000) as i64,
        })
    }

    /// RFC 3339 form for manifests and JSON output.
    pub fn rfc3339(self) -> String {
        let f = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        self.datetime().format(f).unwrap_or_default()
    }

    /// Age in days relative to `now`.
    pub fn age_days(self, now: Timestamp) -> f64 {
        (now.micros - self.micros) as f64 / 86_400_000_000.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.datetime().format(ID_FORMAT).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_and_sorts_as_text() {
        let a = Timestamp {
            micros: 1_795_614_152_000_001,
        };
        let b = Timestamp {
            micros: a.micros + 1,
        };
        assert_eq!(Timestamp::parse_id(&a.to_string()), Some(a));
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().len(), 23);
    }

    #[test]
    fn user_date_is_utc_and_inclusive_of_its_second() {
        let t = Timestamp::parse_user_date("2026-11-25T13:43:15").unwrap();
        let z = Timestamp::parse_user_date("2026-11-25T13:43:15Z").unwrap();
        assert_eq!(t, z);
        assert_eq!(t.micros, 1_795_614_195_000_000 + 999_999);
        assert!(Timestamp::parse_user_date("yesterday").is_err());
    }

    #[test]
    fn now_after_is_strictly_increasing() {
        let future = Timestamp {
            micros: Timestamp::now().micros + 10_000_000,
        };
        assert_eq!(Timestamp::now_after(Some(future)).micros, future.micros + 1);
    }
}
