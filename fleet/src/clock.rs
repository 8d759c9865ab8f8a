//! The wall clock both sides stamp events, records and metrics with, as a wire timestamp.

use freezer_contracts::UtcTime;

/// The current time as a wire timestamp ([`UtcTime`]), from the system clock.
pub fn now() -> UtcTime {
    UtcTime::from_offset_date_time(time::OffsetDateTime::now_utc())
        .expect("the clock is within RFC 3339 years")
}

/// The current time in Unix milliseconds (heartbeat scores and bodies), 0 before 1970.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
