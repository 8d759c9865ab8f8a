//! Dates and backup ids: parsing and formatting `YYYYMMDDTHHMMSS.ffffffZ` ids and the dates the
//! CLI takes, and waiting for the clock so that consecutive backups land in seconds of their own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Parses a backup id `YYYYMMDDTHHMMSS.ffffffZ` into (seconds since the epoch, microseconds).
pub fn parse_backup_id(id: &str) -> (i64, u32) {
    let b = id.as_bytes();
    assert!(
        b.len() == 23 && b[8] == b'T' && b[15] == b'.' && b[22] == b'Z',
        "backup id {id:?} is not YYYYMMDDTHHMMSS.ffffffZ"
    );
    let n = |r: std::ops::Range<usize>| -> i64 {
        id[r]
            .parse()
            .unwrap_or_else(|_| panic!("bad backup id {id:?}"))
    };
    let days = days_from_civil(n(0..4), n(4..6) as u32, n(6..8) as u32);
    let secs = days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    (secs, n(16..22) as u32)
}

/// `YYYY-MM-DDThh:mm:ss` (UTC) of `secs` since the epoch.
pub fn format_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A `--restore-from-date` that selects the backup `id`: the first whole second after it. Together
/// with [`wait_for_next_backup`] it is correct whether the engine reads the date as an instant or as
/// a whole second.
pub fn restore_date_for(id: &str) -> String {
    format_date(parse_backup_id(id).0 + 1)
}

/// Sleeps until the next backup's id will be at least two whole seconds after `id`'s second, so that
/// [`restore_date_for`] separates them.
pub fn wait_for_next_backup(id: &str) {
    sleep_until(
        Duration::from_secs((parse_backup_id(id).0 + 2) as u64) + Duration::from_millis(50),
    );
}

/// Sleeps until the wall clock is at least `seconds` whole seconds after the second backup `id` falls
/// in (plus a small margin): with `seconds = 1` the next backup lands in a second of its own, so that
/// [`date_of_backup`] selects it; with 2 or more, the seconds in between hold no backup.
pub fn wait_for_second_after(id: &str, seconds: u64) {
    sleep_until(
        Duration::from_secs(parse_backup_id(id).0 as u64 + seconds) + Duration::from_millis(20),
    );
}

/// Sleeps until the wall clock reads at least `target` since the epoch.
fn sleep_until(target: Duration) {
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now >= target {
            return;
        }
        std::thread::sleep(target - now);
    }
}

/// `YYYY-MM-DDThh:mm:ss` of the second backup `id` was taken in: as `--restore-from-date` (inclusive of
/// its whole second) it selects `id` when no later backup shares that second.
pub fn date_of_backup(id: &str) -> String {
    format_date(parse_backup_id(id).0)
}

/// The backup id (`YYYYMMDDTHHMMSS.ffffffZ`) of `secs` since the epoch and `micros`.
pub fn format_backup_id(secs: i64, micros: u32) -> String {
    let d = format_date(secs).replace(['-', ':'], "");
    format!("{d}.{micros:06}Z")
}

/// The manifest time form (`YYYY-MM-DDThh:mm:ss.ffffffZ`) of `secs` and `micros`.
pub fn format_rfc3339_micros(secs: i64, micros: u32) -> String {
    format!("{}.{micros:06}Z", format_date(secs))
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let (s, us) = parse_backup_id("20261125T135256.123456Z");
        assert_eq!(us, 123_456);
        assert_eq!(format_backup_id(s, us), "20261125T135256.123456Z");
        assert_eq!(format_rfc3339_micros(s, 7), "2026-11-25T13:52:56.000007Z");
        assert_eq!(
            date_of_backup("20261125T135256.123456Z"),
            "2026-11-25T13:52:56"
        );
        assert_eq!(format_date(s), "2026-11-25T13:52:56");
        assert_eq!(
            restore_date_for("20261231T235959.999999Z"),
            "2027-01-01T00:00:00"
        );
        assert_eq!(format_date(0), "1970-01-01T00:00:00");
        assert_eq!(parse_backup_id("20000229T000000.000000Z").0, 951_782_400);
    }
}
