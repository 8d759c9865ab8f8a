//! The rule every metric name follows, and a check of a registry against it.
//!
//! Every metric family is named `freezer_<subsystem>_<name>_<unit>[_total]`:
//!
//! - `<subsystem>` is one of [`SUBSYSTEMS`]: what the metric is about (`task`, `storage`, `lock`,
//!   `session`, `job`, `fleet`, `dispatcher`, `build`), not which binary exports it.
//! - `<name>` is one or more lowercase words joined with `_`.
//! - `<unit>` is a base unit, plural, last: `seconds` or `bytes`; it is left out for counts,
//!   ratios, states and info. Times are always seconds (timestamps too: `..._timestamp_seconds`),
//!   sizes always bytes, never milliseconds, kilobytes or percents.
//! - Counters end with `_total` (Prometheus adds it to the registered name; nothing else may end
//!   with it); info metrics end with `_info`.
//!
//! Examples: `freezer_task_duration_seconds` (histogram), `freezer_task_read_bytes_total`
//! (counter of bytes), `freezer_task_finished_total` (counter of tasks),
//! `freezer_fleet_workers_alive` (gauge, a count), `freezer_build_info`.
//!
//! [`check_registry`] lists the families of a registry that break the rule; each service has a
//! test that registers all of its families and asserts the list is empty.

use prometheus_client::registry::Registry;

/// The subsystems a metric name may start with (after `freezer_`).
pub const SUBSYSTEMS: [&str; 8] = [
    "task",
    "storage",
    "lock",
    "session",
    "job",
    "fleet",
    "dispatcher",
    "build",
];

/// Base units, in the plural, allowed as the last word of a name.
pub const UNITS: [&str; 2] = ["seconds", "bytes"];

/// Words that name a unit other than a base one: refused anywhere in a name.
const OTHER_UNITS: [&str; 16] = [
    "ms",
    "millis",
    "milliseconds",
    "microseconds",
    "nanoseconds",
    "second",
    "minutes",
    "hours",
    "days",
    "byte",
    "kb",
    "kib",
    "mb",
    "mib",
    "gb",
    "percent",
];

/// A metric family whose name breaks the naming rule, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The name as exposed (with `_total` for counters).
    pub name: String,
    /// Which part of the rule it breaks.
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.reason)
    }
}

/// Every family of `registry` (sub-registries included) whose name breaks the naming rule (see
/// the module doc); empty when all conform.
pub fn check_registry(registry: &Registry) -> Vec<Violation> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("encoding to a String does not fail");
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(name, kind)| check_name(name, kind).err())
        .collect()
}

/// Checks one family: `name` as in its `# TYPE` line (counters without `_total`), `kind` its
/// OpenMetrics type (`counter`, `gauge`, `histogram`, `info`, ...).
pub fn check_name(name: &str, kind: &str) -> Result<(), Violation> {
    let exposed = match kind {
        "counter" => format!("{name}_total"),
        "info" => format!("{name}_info"),
        _ => name.to_string(),
    };
    let fail = |reason: &str| Violation {
        name: exposed.clone(),
        reason: reason.to_string(),
    };
    let Some(rest) = name.strip_prefix("freezer_") else {
        return Err(fail("does not start with freezer_"));
    };
    if rest.split('_').any(|w| {
        w.is_empty()
            || !w
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }) {
        return Err(fail(
            "words must be lowercase letters and digits joined by one _",
        ));
    }
    let mut words: Vec<&str> = rest.split('_').collect();
    if !SUBSYSTEMS.contains(&words[0]) {
        return Err(fail(
            "the word after freezer_ is not a subsystem (see SUBSYSTEMS)",
        ));
    }
    if words.last() == Some(&"total") {
        return Err(fail(match kind {
            "counter" => "a counter is registered without _total (the exporter adds it)",
            _ => "only counters end with _total",
        }));
    }
    if kind == "info" && words.last() == Some(&"info") {
        return Err(fail(
            "an info metric is registered without _info (the exporter adds it)",
        ));
    }
    if kind != "info" && words.last() == Some(&"info") && kind != "gauge" {
        return Err(fail(
            "only info metrics (or info-style gauges) end with _info",
        ));
    }
    if let Some(w) = words.iter().find(|w| OTHER_UNITS.contains(w)) {
        return Err(fail(&format!(
            "{w} is not a base unit (use seconds or bytes)"
        )));
    }
    let unit_last = words.last().is_some_and(|w| UNITS.contains(w));
    if unit_last {
        words.pop();
    }
    if words.iter().any(|w| UNITS.contains(w)) {
        return Err(fail("the unit must be the last word (before _total)"));
    }
    if words.len() < 2 && kind != "info" {
        return Err(fail("no name after the subsystem"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;

    #[test]
    fn conforming_names_pass() {
        for (name, kind) in [
            ("freezer_task_duration_seconds", "histogram"),
            ("freezer_task_read_bytes", "counter"),
            ("freezer_task_finished", "counter"),
            ("freezer_fleet_workers_alive", "gauge"),
            ("freezer_job_last_success_timestamp_seconds", "gauge"),
            ("freezer_build_info", "gauge"),
            ("freezer_storage_requests", "counter"),
            ("freezer_dispatcher_leader", "gauge"),
        ] {
            assert_eq!(check_name(name, kind), Ok(()), "{name}");
        }
    }

    #[test]
    fn breaking_names_are_reported() {
        for (name, kind) in [
            ("freezer_tasks", "counter"),
            ("freezer_bytes_read", "counter"),
            ("freezer_workers_alive", "gauge"),
            ("freezer_task_bytes_read", "counter"),
            ("freezer_task_duration_ms", "histogram"),
            ("freezer_task_runs_total", "counter"),
            ("freezer_task_runs_total", "gauge"),
            ("freezer_task", "gauge"),
            ("freezer_Task_runs", "counter"),
            ("task_runs", "counter"),
            ("freezer_task__runs", "counter"),
        ] {
            assert!(check_name(name, kind).is_err(), "{name} ({kind}) passed");
        }
    }

    #[test]
    fn a_registry_is_checked_family_by_family() {
        let mut r = Registry::default();
        r.register("freezer_task_finished", "ok", Counter::<u64>::default());
        r.register("freezer_bytes_read", "bad", Counter::<u64>::default());
        r.register("freezer_workers_alive", "bad", Gauge::<i64>::default());
        r.register(
            "freezer_lock_wait_seconds",
            "ok",
            Histogram::new([1.0, 2.0]),
        );
        let names: Vec<String> = check_registry(&r).into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["freezer_bytes_read_total", "freezer_workers_alive"]);
    }
}
