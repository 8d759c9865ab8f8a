//! The dispatcher's Prometheus metrics (ARCHITECTURE.md §6), served on `/metrics` by
//! [`freezer_fleet::metrics::serve`].
//!
//! Families, every bounded label value created at 0 at start-up (job labels when the job is first
//! seen, see [`Metrics::job`]):
//! - `freezer_dispatcher_tasks_published_total{kind}`: tasks published with a broker confirm.
//! - `freezer_dispatcher_schedule_lag_seconds`: how late a run started after its fire time (the
//!   scheduler observes it).
//! - `freezer_job_last_success_timestamp_seconds{job_id}` and `freezer_job_runs_total{job_id,
//!   result}` (`succeeded`, `failed`). The label is `job_id`, as on the workers' metric of the
//!   same name, not `job`: Prometheus reserves `job` for the scrape job and would rename it.
//! - `freezer_fleet_workers_alive`, `freezer_dispatcher_leader` (0/1), `freezer_build_info{version}`.
//!
//! Names follow [`freezer_fleet::naming`]; a test checks every family.

use freezer_contracts::TaskKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Run results counted in `freezer_job_runs_total`.
pub const RUN_RESULTS: [&str; 2] = ["succeeded", "failed"];

/// Schedule lag buckets, seconds: from "on time" to an hour late.
const LAG_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// Label set of one task kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Task kind.
    pub kind: String,
}

/// Label set of one job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    /// Job id (bounded by the job files).
    pub job_id: String,
}

/// Label set of one job and run result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobResult {
    /// Job id.
    pub job_id: String,
    /// One of [`RUN_RESULTS`].
    pub result: String,
}

/// Label set of the build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// `freezer-dispatcher` version.
    pub version: String,
}

/// The metric handles the dispatcher updates; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// `freezer_dispatcher_tasks_published_total{kind}`.
    pub published: Family<KindLabel, Counter>,
    /// `freezer_dispatcher_schedule_lag_seconds`.
    pub schedule_lag: Histogram,
    /// `freezer_job_last_success_timestamp_seconds{job_id}`.
    pub last_success: Family<JobLabel, Gauge<f64, AtomicU64>>,
    /// `freezer_job_runs_total{job_id,result}`.
    pub runs: Family<JobResult, Counter>,
    /// `freezer_fleet_workers_alive`.
    pub workers_alive: Gauge,
    /// `freezer_dispatcher_leader`.
    pub leader: Gauge,
}

impl Metrics {
    /// Registers every family in `registry` with its bounded labels at 0.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            published: Family::default(),
            schedule_lag: Histogram::new(LAG_BUCKETS),
            last_success: Family::default(),
            runs: Family::default(),
            workers_alive: Gauge::default(),
            leader: Gauge::default(),
        };
        for kind in TaskKind::ALL {
            let _ = m.published.get_or_create(&KindLabel {
                kind: kind.as_str().into(),
            });
        }
        registry.register(
            "freezer_dispatcher_tasks_published",
            "Tasks published and confirmed by the broker, by kind",
            m.published.clone(),
        );
        registry.register(
            "freezer_dispatcher_schedule_lag_seconds",
            "Delay between a run's fire time and its start",
            m.schedule_lag.clone(),
        );
        registry.register(
            "freezer_job_last_success_timestamp_seconds",
            "Unix time of the end of the last successful run of a job",
            m.last_success.clone(),
        );
        registry.register(
            "freezer_job_runs",
            "Finished job runs, by job and result",
            m.runs.clone(),
        );
        registry.register(
            "freezer_fleet_workers_alive",
            "Workers with a fresh heartbeat",
            m.workers_alive.clone(),
        );
        registry.register(
            "freezer_dispatcher_leader",
            "1 while this dispatcher holds the leader lease",
            m.leader.clone(),
        );
        let build: Family<BuildLabel, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("freezer_build_info", "Build of this dispatcher", build);
        m
    }

    /// Creates the series of `job_id` at 0 (call when a job is loaded; runs call it too).
    pub fn job(&self, job_id: &str) {
        for result in RUN_RESULTS {
            let _ = self.runs.get_or_create(&JobResult {
                job_id: job_id.into(),
                result: result.into(),
            });
        }
    }

    /// Counts a finished run.
    pub fn run_done(&self, job_id: &str, succeeded: bool, at_unix: f64) {
        self.job(job_id);
        let result = if succeeded { "succeeded" } else { "failed" };
        self.runs
            .get_or_create(&JobResult {
                job_id: job_id.into(),
                result: result.into(),
            })
            .inc();
        if succeeded {
            self.last_success
                .get_or_create(&JobLabel {
                    job_id: job_id.into(),
                })
                .set(at_unix);
        }
    }

    /// Observes how late a run became due: now minus its fire time (for the scheduler).
    pub fn schedule_lag(&self, fire_time: freezer_contracts::UtcTime) {
        let lag = fire_time.until(freezer_fleet::clock::now());
        self.schedule_lag.observe(lag.as_secs_f64());
    }

    /// Counts a confirmed publish.
    pub fn published(&self, kind: TaskKind) {
        self.published
            .get_or_create(&KindLabel {
                kind: kind.as_str().into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_follows_the_naming_rule() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.job("nightly");
        let broken = freezer_fleet::naming::check_registry(&registry);
        assert!(broken.is_empty(), "{broken:#?}");
    }

    #[test]
    fn families_exist_at_zero() {
        let mut r = Registry::default();
        let m = Metrics::register(&mut r);
        m.job("nightly");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for needle in [
            "freezer_dispatcher_tasks_published_total{kind=\"backup\"} 0",
            "freezer_dispatcher_schedule_lag_seconds_count 0",
            "freezer_job_runs_total{job_id=\"nightly\",result=\"failed\"} 0",
            "freezer_fleet_workers_alive 0",
            "freezer_dispatcher_leader 0",
            "freezer_build_info{version=",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
