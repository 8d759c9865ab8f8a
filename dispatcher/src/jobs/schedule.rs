//! When a [`Schedule`] fires: the next fire time after an instant, and the run that is due now.
//!
//! Fire times are whole seconds (run ids are `<job>.<unix seconds>`, so two fire times of one job
//! never share a second). The rules, shared by every dispatcher so that they agree on which run is
//! due:
//!
//! - `cron`: the expression (five fields, or six with seconds first) is read in the schedule's
//!   IANA time zone by [`croner`], which follows the Open Cron Pattern Specification on daylight
//!   saving changes: a fixed time of day that does not exist (02:30 on the spring-forward day in
//!   Europe/Berlin) fires at the first instant after the gap (03:00); one that happens twice (the
//!   fall-back day) fires once, at the earlier instant; a pattern like "every minute" fires at every
//!   instant that exists.
//! - `every`: fire times are `anchor + k * interval` for whole `k >= 0`, the anchor being `start`
//!   or else the Unix epoch, so every dispatcher computes the same times whenever it started.
//! - `at`: once, at that instant.
//! - `start` and `end` bound the fire times (both inclusive).
//!
//! [`Schedule::due`] coalesces, like OpenStack Freezer's APScheduler with `coalesce=True`: of all
//! the fire times missed since `last_fired` (the dispatchers were down, or no one was leader), only
//! the latest runs, once, however late. A job that never fired (new, or its record lost) only runs
//! for a fire time that passed less than [`FIRST_RUN_GRACE`] ago, so adding a daily job at 10:00 does
//! not run it at once for the 02:30 that already passed; the grace exceeds a leader takeover, so a
//! failover just before a new job's first fire time does not lose it. A one-shot `at` that never
//! fired still runs when found up to [`MISFIRE_GRACE`] late (APScheduler's `misfire_grace_time`);
//! later it is skipped and [`Schedule::missed`] reports it.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use freezer_contracts::UtcTime;
use std::time::Duration;

use super::error::ScheduleError;
use super::model::{Schedule, When};

/// How late the first fire time of a job that never fired may be found and still run (see the
/// module doc).
pub const FIRST_RUN_GRACE: Duration = Duration::from_secs(60);

/// How late a one-shot `at` job that never fired may be found and still run.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(3600);

/// Longest forward walk when lining a backward cron search up with the forward one (only DST edge
/// cases take more than one step).
const MAX_FORWARD_STEPS: usize = 1000;

/// Parses a cron expression as job files write it: five fields (minute first, second 0) or six
/// (second first), with croner's extensions (`L`, `#`, `W`, names, `@daily`).
pub fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|reason| ScheduleError::Cron {
            expr: expr.to_string(),
            reason,
        })
}

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::Timezone(name.to_string()))
}

impl Schedule {
    /// The first fire time strictly after `t`, within `start`/`end`; `None` when there is none
    /// (an `at` in the past, past `end`, or a rule that no longer parses).
    pub fn next_after(&self, t: UtcTime) -> Option<UtcTime> {
        // Fire times are whole seconds: the first candidate is the second after t's.
        let mut lo = t.unix_seconds().checked_add(1)?;
        if let Some(start) = self.start_secs() {
            lo = lo.max(start);
        }
        let fire = match &self.when {
            When::Every(d) => {
                let p = i64::try_from(d.as_secs()).ok().filter(|p| *p > 0)?;
                let anchor = self.start_secs().unwrap_or(0);
                let k = (lo - anchor).max(0).checked_add(p - 1)? / p;
                anchor.checked_add(k.checked_mul(p)?)?
            }
            When::At(at) => Some(at.unix_seconds()).filter(|a| *a >= lo)?,
            When::Cron(expr) => self.cron_next(expr, lo - 1)?,
        };
        self.within_end(fire)
    }

    /// The run due at `now`: the latest fire time in `(last_fired, now]` within `start`/`end`, so
    /// that runs missed meanwhile coalesce into one. With no `last_fired`, only a fire time at most
    /// [`FIRST_RUN_GRACE`] old ([`MISFIRE_GRACE`] for `at`) counts. See the module doc.
    pub fn due(&self, last_fired: Option<UtcTime>, now: UtcTime) -> Option<UtcTime> {
        let now_s = now.unix_seconds();
        let latest = self.latest_at_or_before(now_s)?;
        match last_fired {
            Some(last) if latest <= last.unix_seconds() => return None,
            Some(_) => {}
            None if now_s - latest > self.grace_secs() => return None,
            None => {}
        }
        UtcTime::from_unix_seconds(latest).ok()
    }

    /// A one-shot `at` that never fired and was found too late to run (more than
    /// [`MISFIRE_GRACE`] after its time): it will never run, and is reported instead.
    pub fn missed(&self, last_fired: Option<UtcTime>, now: UtcTime) -> Option<UtcTime> {
        let When::At(at) = &self.when else {
            return None;
        };
        let late = at.unix_seconds() <= now.unix_seconds()
            && self.due(last_fired, now).is_none()
            && last_fired.is_none_or(|l| l < *at);
        late.then_some(*at)
    }

    /// Human-readable rule, for `jobs` and logs (`cron "0 30 2 * * *" Europe/Berlin`).
    pub fn describe(&self) -> String {
        let mut s = match &self.when {
            When::Cron(expr) => format!("cron {expr:?} {}", self.timezone),
            When::Every(d) => format!("every {}", humantime::format_duration(*d)),
            When::At(at) => format!("at {at}"),
        };
        if let Some(start) = self.start {
            s.push_str(&format!(" from {start}"));
        }
        if let Some(end) = self.end {
            s.push_str(&format!(" until {end}"));
        }
        s
    }

    fn grace_secs(&self) -> i64 {
        let grace = match self.when {
            When::At(_) => MISFIRE_GRACE,
            _ => FIRST_RUN_GRACE,
        };
        grace.as_secs() as i64
    }

    /// `start` rounded up to a whole second (no fire time before it).
    fn start_secs(&self) -> Option<i64> {
        self.start.map(|s| {
            let o = s.as_offset_date_time();
            o.unix_timestamp() + i64::from(o.nanosecond() > 0)
        })
    }

    fn within_end(&self, fire: i64) -> Option<UtcTime> {
        if self.end.is_some_and(|end| fire > end.unix_seconds()) {
            return None;
        }
        UtcTime::from_unix_seconds(fire).ok()
    }

    /// The latest fire time at or before `hi` (whole seconds), within `start`/`end`.
    fn latest_at_or_before(&self, hi: i64) -> Option<i64> {
        let hi = match self.end {
            Some(end) => hi.min(end.unix_seconds()),
            None => hi,
        };
        let start = self.start_secs();
        let fire = match &self.when {
            When::Every(d) => {
                let p = i64::try_from(d.as_secs()).ok().filter(|p| *p > 0)?;
                let anchor = start.unwrap_or(0);
                if hi < anchor {
                    return None;
                }
                anchor + (hi - anchor) / p * p
            }
            When::At(at) => Some(at.unix_seconds()).filter(|a| *a <= hi)?,
            When::Cron(expr) => self.cron_latest(expr, hi)?,
        };
        Some(fire).filter(|f| start.is_none_or(|s| *f >= s))
    }

    /// The first cron fire time strictly after `after` (unix seconds).
    fn cron_next(&self, expr: &str, after: i64) -> Option<i64> {
        let (cron, tz) = self.cron_and_zone(expr)?;
        let from = tz.from_utc_datetime(&DateTime::<Utc>::from_timestamp(after, 0)?.naive_utc());
        let next = cron.find_next_occurrence(&from, false).ok()?;
        Some(next.timestamp())
    }

    /// The latest cron fire time at or before `hi`. The backward search gives a candidate; walking
    /// forward from it keeps the answer one the forward rule ([`Self::next_after`]) also yields.
    fn cron_latest(&self, expr: &str, hi: i64) -> Option<i64> {
        let (cron, tz) = self.cron_and_zone(expr)?;
        let at = tz.from_utc_datetime(&DateTime::<Utc>::from_timestamp(hi, 0)?.naive_utc());
        let mut best = cron.find_previous_occurrence(&at, true).ok()?.timestamp();
        for _ in 0..MAX_FORWARD_STEPS {
            match self.cron_next(expr, best) {
                Some(n) if n <= hi => best = n,
                _ => break,
            }
        }
        Some(best)
    }

    fn cron_and_zone(&self, expr: &str) -> Option<(Cron, Tz)> {
        Some((parse_cron(expr).ok()?, parse_timezone(&self.timezone).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> UtcTime {
        UtcTime::parse(s).unwrap()
    }

    fn sched(when: When) -> Schedule {
        Schedule {
            when,
            start: None,
            end: None,
            timezone: "UTC".into(),
        }
    }

    fn cron(expr: &str, tz: &str) -> Schedule {
        Schedule {
            timezone: tz.into(),
            ..sched(When::Cron(expr.into()))
        }
    }

    fn every(secs: u64) -> Schedule {
        sched(When::Every(Duration::from_secs(secs)))
    }

    #[test]
    fn six_field_cron_has_seconds_and_five_fields_mean_second_zero() {
        let s = cron("0 30 2 * * *", "UTC");
        assert_eq!(
            s.next_after(t("2026-11-25T10:00:00Z")),
            Some(t("2026-11-26T02:30:00Z"))
        );
        let s = cron("30 2 * * *", "UTC");
        assert_eq!(
            s.next_after(t("2026-11-25T10:00:00Z")),
            Some(t("2026-11-26T02:30:00Z"))
        );
        let s = cron("*/10 * * * * *", "UTC");
        assert_eq!(
            s.next_after(t("2026-11-25T10:00:00.5Z")),
            Some(t("2026-11-25T10:00:10Z"))
        );
        assert_eq!(
            s.due(Some(t("2026-11-25T10:00:00Z")), t("2026-11-25T10:00:25.9Z")),
            Some(t("2026-11-25T10:00:20Z"))
        );
    }

    #[test]
    fn cron_is_read_in_its_time_zone() {
        // 02:30 in Berlin is 01:30 UTC in winter, 00:30 UTC in summer.
        let s = cron("0 30 2 * * *", "Europe/Berlin");
        assert_eq!(
            s.next_after(t("2026-11-25T10:00:00Z")),
            Some(t("2026-11-26T01:30:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-07-01T10:00:00Z")),
            Some(t("2026-07-02T00:30:00Z"))
        );
    }

    #[test]
    fn berlin_spring_forward_runs_the_missing_time_once_after_the_gap() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 does not exist.
        let s = cron("0 30 2 * * *", "Europe/Berlin");
        let fire = s.next_after(t("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(
            fire,
            t("2026-03-29T01:00:00Z"),
            "03:00 CEST, right after the gap"
        );
        assert_eq!(
            s.next_after(fire),
            Some(t("2026-03-30T00:30:00Z")),
            "then 02:30 CEST the next day"
        );
        // due agrees with next_after around the gap.
        assert_eq!(
            s.due(Some(t("2026-03-28T01:30:00Z")), t("2026-03-29T01:00:05Z")),
            Some(fire)
        );
        assert_eq!(s.due(Some(fire), t("2026-03-29T12:00:00Z")), None);
    }

    #[test]
    fn berlin_fall_back_runs_a_repeated_time_once() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens twice, at 00:30 UTC
        // and 01:30 UTC. It fires at the first only.
        let s = cron("0 30 2 * * *", "Europe/Berlin");
        let first = s.next_after(t("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, t("2026-10-25T00:30:00Z"));
        assert_eq!(s.next_after(first), Some(t("2026-10-26T01:30:00Z")));
        assert_eq!(
            s.due(Some(first), t("2026-10-25T01:30:30Z")),
            None,
            "the second 02:30 is not a new run"
        );
        // An hourly pattern fires at every real hour, 25 of them that day.
        let hourly = cron("0 0 * * * *", "Europe/Berlin");
        let mut n = 0;
        let mut at = t("2026-10-24T21:59:59Z"); // 23:59:59 CEST
        while let Some(next) = hourly.next_after(at) {
            if next >= t("2026-10-25T23:00:00Z") {
                break;
            }
            n += 1;
            at = next;
        }
        assert_eq!(n, 25);
    }

    #[test]
    fn every_is_aligned_on_the_epoch_or_on_start() {
        let s = every(6 * 3600);
        assert_eq!(
            s.next_after(t("2026-11-25T10:00:00Z")),
            Some(t("2026-11-25T12:00:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-11-25T12:00:00Z")),
            Some(t("2026-11-25T18:00:00Z"))
        );
        let s = Schedule {
            start: Some(t("2026-11-25T10:17:00Z")),
            ..every(3600)
        };
        assert_eq!(
            s.next_after(t("2026-11-01T00:00:00Z")),
            Some(t("2026-11-25T10:17:00Z")),
            "nothing before start"
        );
        assert_eq!(
            s.next_after(t("2026-11-25T12:00:00Z")),
            Some(t("2026-11-25T12:17:00Z"))
        );
        assert_eq!(
            s.due(None, t("2026-11-25T12:17:30Z")),
            Some(t("2026-11-25T12:17:00Z"))
        );
        assert_eq!(s.due(None, t("2026-11-25T10:16:59Z")), None);
    }

    #[test]
    fn start_and_end_bound_every_rule() {
        let s = Schedule {
            start: Some(t("2026-11-25T10:00:00Z")),
            end: Some(t("2026-11-25T11:00:00Z")),
            ..cron("0 */15 * * * *", "UTC")
        };
        assert_eq!(
            s.next_after(t("2026-11-25T09:00:00Z")),
            Some(t("2026-11-25T10:00:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-11-25T10:50:00Z")),
            Some(t("2026-11-25T11:00:00Z")),
            "end is inclusive"
        );
        assert_eq!(s.next_after(t("2026-11-25T11:00:00Z")), None);
        assert_eq!(
            s.due(Some(t("2026-11-25T10:45:00Z")), t("2026-11-26T00:00:00Z")),
            Some(t("2026-11-25T11:00:00Z")),
            "the last run before end, even if found late"
        );
        assert_eq!(s.due(None, t("2026-11-25T09:59:59Z")), None);
        assert_eq!(
            s.due(Some(t("2026-11-20T00:00:00Z")), t("2026-11-25T09:59:59Z")),
            None,
            "nothing before start"
        );
    }

    #[test]
    fn missed_runs_coalesce_into_the_latest() {
        let s = every(60);
        let last = t("2026-11-20T00:00:00Z");
        let now = t("2026-11-25T10:00:30Z");
        assert_eq!(s.due(Some(last), now), Some(t("2026-11-25T10:00:00Z")));
        // Once that one fired, nothing more is due until the next fire time.
        let fired = t("2026-11-25T10:00:00Z");
        assert_eq!(s.due(Some(fired), now), None);
        assert_eq!(
            s.due(Some(fired), t("2026-11-25T10:01:00Z")),
            Some(t("2026-11-25T10:01:00Z"))
        );
        let daily = cron("0 30 2 * * *", "Europe/Berlin");
        assert_eq!(
            daily.due(Some(t("2026-11-01T01:30:00Z")), t("2026-11-25T10:00:00Z")),
            Some(t("2026-11-25T01:30:00Z"))
        );
    }

    #[test]
    fn a_job_that_never_fired_runs_only_a_fire_time_just_passed() {
        let daily = cron("0 30 2 * * *", "UTC");
        assert_eq!(daily.due(None, t("2026-11-25T10:00:00Z")), None);
        assert_eq!(
            daily.due(None, t("2026-11-25T02:30:59Z")),
            Some(t("2026-11-25T02:30:00Z"))
        );
        assert_eq!(daily.due(None, t("2026-11-25T02:31:01Z")), None);
    }

    #[test]
    fn at_runs_once_within_the_misfire_grace_and_is_reported_missed_after() {
        let s = sched(When::At(t("2026-12-01T03:00:00Z")));
        assert_eq!(
            s.next_after(t("2026-11-25T00:00:00Z")),
            Some(t("2026-12-01T03:00:00Z"))
        );
        assert_eq!(s.next_after(t("2026-12-01T03:00:00Z")), None);
        assert_eq!(s.due(None, t("2026-12-01T02:59:59Z")), None);
        assert_eq!(
            s.due(None, t("2026-12-01T03:59:00Z")),
            Some(t("2026-12-01T03:00:00Z")),
            "late, within the grace"
        );
        assert_eq!(s.missed(None, t("2026-12-01T03:59:00Z")), None);
        assert_eq!(s.due(None, t("2026-12-01T04:00:01Z")), None);
        assert_eq!(
            s.missed(None, t("2026-12-01T04:00:01Z")),
            Some(t("2026-12-01T03:00:00Z"))
        );
        let fired = Some(t("2026-12-01T03:00:00Z"));
        assert_eq!(s.due(fired, t("2026-12-01T03:00:10Z")), None);
        assert_eq!(s.missed(fired, t("2026-12-02T00:00:00Z")), None);
    }

    #[test]
    fn unparsable_rules_never_fire() {
        let s = cron("not cron", "UTC");
        assert_eq!(s.next_after(t("2026-11-25T00:00:00Z")), None);
        assert_eq!(s.due(None, t("2026-11-25T00:00:00Z")), None);
        let s = cron("* * * * *", "Mars/Olympus");
        assert_eq!(s.next_after(t("2026-11-25T00:00:00Z")), None);
        assert_eq!(every(0).next_after(t("2026-11-25T00:00:00Z")), None);
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_timezone("Europe/Berlin").is_ok());
    }

    #[test]
    fn describe_names_the_rule() {
        assert_eq!(
            cron("0 30 2 * * *", "Europe/Berlin").describe(),
            "cron \"0 30 2 * * *\" Europe/Berlin"
        );
        assert_eq!(every(6 * 3600).describe(), "every 6h");
    }
}
