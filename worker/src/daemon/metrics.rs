//! The daemon's Prometheus metrics (ARCHITECTURE.md §6), served by [`freezer_fleet::metrics::serve`].
//!
//! Every family is created with all of its bounded label values at start-up, so a counter exists
//! at 0 before the first task and `rate()`/`increase()` see its first move. Labels are kinds,
//! results and job ids (a bounded set: the job files), never task ids or paths.

use freezer_contracts::TaskKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Outcomes a task is counted under in `freezer_task_finished_total`.
pub const RESULTS: [&str; 4] = ["succeeded", "failed", "expired", "rejected"];

/// Task duration buckets, seconds: from a noop's milliseconds up to 4 hours.
const DURATION_BUCKETS: [f64; 15] = [
    0.005, 0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0,
    14400.0, 21600.0,
];

/// Lock and session wait buckets, seconds.
const WAIT_BUCKETS: [f64; 10] = [0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0];

/// Label set of one task kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// Task kind.
    pub kind: String,
}

/// Label set of one kind and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResult {
    /// Task kind (`unknown` for a rejected message whose kind could not be read).
    pub kind: String,
    /// One of [`RESULTS`].
    pub result: String,
}

/// Label set of one job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    /// Job id (the job files bound this set).
    pub job_id: String,
}

/// Label set of the build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// `freezer-worker` version.
    pub version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The metric handles the daemon updates; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// `freezer_task_finished_total{kind,result}`.
    pub tasks: Family<KindResult, Counter>,
    /// `freezer_task_duration_seconds{kind}`.
    pub duration: HistogramFamily<KindLabel>,
    /// `freezer_task_read_bytes_total{kind}`: source bytes (backup) or storage bytes read.
    pub bytes_read: Family<KindLabel, Counter>,
    /// `freezer_task_stored_bytes_total{kind}`: bytes written to storage.
    pub bytes_stored: Family<KindLabel, Counter>,
    /// `freezer_lock_wait_seconds`: time to get (or be refused) a writer lock.
    pub lock_wait: Histogram,
    /// `freezer_lock_lost_total`: locks lost while a task ran (the task was aborted).
    pub locks_lost: Counter,
    /// `freezer_session_wait_seconds`: time at a session barrier.
    pub session_wait: Histogram,
    /// `freezer_task_in_flight`: tasks claimed by this worker and not finished.
    pub in_flight: Gauge,
    /// `freezer_job_last_success_timestamp_seconds{job_id}`.
    pub last_success: Family<JobLabel, Gauge<f64, AtomicU64>>,
    /// `freezer_fleet_workers_alive`: workers whose heartbeat is fresh, as this worker sees them.
    pub workers_alive: Gauge,
}

impl Metrics {
    /// Registers every family in `registry`, with all bounded label values at 0.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            tasks: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            bytes_read: Family::default(),
            bytes_stored: Family::default(),
            lock_wait: Histogram::new(WAIT_BUCKETS),
            locks_lost: Counter::default(),
            session_wait: Histogram::new(WAIT_BUCKETS),
            in_flight: Gauge::default(),
            last_success: Family::default(),
            workers_alive: Gauge::default(),
        };
        let kinds = TaskKind::ALL
            .iter()
            .map(|k| k.as_str())
            .chain([freezer_contracts::UNKNOWN_KIND]);
        for kind in kinds {
            for result in RESULTS {
                let _ = m.tasks.get_or_create(&KindResult {
                    kind: kind.into(),
                    result: result.into(),
                });
            }
        }
        for kind in TaskKind::ALL {
            let l = KindLabel {
                kind: kind.as_str().into(),
            };
            let _ = m.duration.get_or_create(&l);
            let _ = m.bytes_read.get_or_create(&l);
            let _ = m.bytes_stored.get_or_create(&l);
        }
        registry.register(
            "freezer_task_finished",
            "Tasks finished, by kind and result",
            m.tasks.clone(),
        );
        registry.register(
            "freezer_task_duration_seconds",
            "Task run time, by kind",
            m.duration.clone(),
        );
        registry.register(
            "freezer_task_read_bytes",
            "Bytes read by tasks (source for backup, storage otherwise)",
            m.bytes_read.clone(),
        );
        registry.register(
            "freezer_task_stored_bytes",
            "Bytes written to storage by tasks",
            m.bytes_stored.clone(),
        );
        registry.register(
            "freezer_lock_wait_seconds",
            "Time to acquire (or be refused) a writer lock",
            m.lock_wait.clone(),
        );
        registry.register(
            "freezer_lock_lost",
            "Writer locks lost while a task ran",
            m.locks_lost.clone(),
        );
        registry.register(
            "freezer_session_wait_seconds",
            "Time spent at session barriers",
            m.session_wait.clone(),
        );
        registry.register(
            "freezer_task_in_flight",
            "Tasks claimed by this worker and not finished",
            m.in_flight.clone(),
        );
        registry.register(
            "freezer_job_last_success_timestamp_seconds",
            "Unix time of the last successful task of a job",
            m.last_success.clone(),
        );
        registry.register(
            "freezer_fleet_workers_alive",
            "Workers with a fresh heartbeat, as seen by this worker",
            m.workers_alive.clone(),
        );
        let build: Family<BuildLabel, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register("freezer_build_info", "Build of this worker", build);
        crate::storage::metrics::register(registry);
        m
    }

    /// Counts one finished task.
    pub fn task_done(&self, kind: &str, result: &str) {
        self.tasks
            .get_or_create(&KindResult {
                kind: kind.into(),
                result: result.into(),
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
        let _ = Metrics::register(&mut registry);
        let broken = freezer_fleet::naming::check_registry(&registry);
        assert!(broken.is_empty(), "{broken:#?}");
    }
}
