//! Storage request counters (ARCHITECTURE.md §6: "storage requests by backend, operation and status"),
//! kept in a process-wide family that the daemon registers once and exports to Prometheus.
//!
//! [`RetryingStorage`](super::RetryingStorage) records every attempt it makes, so the counts are
//! requests sent to a backend, not logical operations: a `get` that succeeded on its third try
//! counts two `retry` and one `ok`. A download whose data then fails its integrity check counts
//! as `ok`: the request succeeded, the copy is what is wrong (a multi-storage read logs it).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::LazyLock;

/// Metric name as registered; the exporter appends `_total` to counters, so Prometheus sees
/// `freezer_storage_requests_total`.
pub const STORAGE_REQUESTS: &str = "freezer_storage_requests";

/// The backends whose counters exist at 0 from start-up (the values of the `backend` label).
pub const BACKENDS: [&str; 3] = ["local", "s3", "ssh"];

/// A storage operation, the `operation` label: a closed set so the label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Storage::put`](super::Storage::put).
    Put,
    /// [`Storage::get`](super::Storage::get) and [`Storage::get_checked`](super::Storage::get_checked).
    Get,
    /// [`Storage::get_range`](super::Storage::get_range).
    GetRange,
    /// [`Storage::list`](super::Storage::list).
    List,
    /// [`Storage::delete`](super::Storage::delete).
    Delete,
    /// [`Storage::sync`](super::Storage::sync).
    Sync,
}

impl Operation {
    /// Every operation, for pre-creating counters.
    pub const ALL: [Operation; 6] = [
        Operation::Put,
        Operation::Get,
        Operation::GetRange,
        Operation::List,
        Operation::Delete,
        Operation::Sync,
    ];

    /// The label value (also used in log fields).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Put => "put",
            Operation::Get => "get",
            Operation::GetRange => "get_range",
            Operation::List => "list",
            Operation::Delete => "delete",
            Operation::Sync => "sync",
        }
    }
}

/// How one request ended, the `status` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// It succeeded.
    Ok,
    /// It failed temporarily and will be tried again.
    Retry,
    /// It failed for good: a permanent failure, or the last attempt of a temporary one.
    Error,
    /// The object or container does not exist (an answer, not a failure of the storage).
    NotFound,
}

impl Status {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Retry => "retry",
            Status::Error => "error",
            Status::NotFound => "not_found",
        }
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The label set of `freezer_storage_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StorageRequestLabels {
    /// `local`, `s3` or `ssh` (see [`BACKENDS`]).
    pub backend: &'static str,
    /// Which storage operation.
    pub operation: Operation,
    /// How the request ended.
    pub status: Status,
}

/// The process-wide counters; [`record`] adds to them, [`register`] exports them.
pub static REQUESTS: LazyLock<Family<StorageRequestLabels, Counter>> =
    LazyLock::new(Family::default);

/// Registers the storage request counters in the daemon's registry, with `ok` and `error` of
/// every known backend and operation already present at 0 (ARCHITECTURE.md §6: counters exist at 0
/// from start-up, so a rate() over them works before the first failure). Call it once per
/// registry.
pub fn register(registry: &mut Registry) {
    for backend in BACKENDS {
        for operation in Operation::ALL {
            for status in [Status::Ok, Status::Error] {
                // Creating the series is the point; the returned guard is released at once.
                let _ = REQUESTS.get_or_create(&StorageRequestLabels {
                    backend,
                    operation,
                    status,
                });
            }
        }
    }
    registry.register(
        STORAGE_REQUESTS,
        "Storage requests by backend, operation and outcome",
        REQUESTS.clone(),
    );
}

/// Counts one request of `operation` on `backend` that ended with `status`.
pub fn record(backend: &'static str, operation: Operation, status: Status) {
    REQUESTS
        .get_or_create(&StorageRequestLabels {
            backend,
            operation,
            status,
        })
        .inc();
}

/// The current count of one label combination (tests and diagnostics).
pub fn count(backend: &'static str, operation: Operation, status: Status) -> u64 {
    REQUESTS
        .get(&StorageRequestLabels {
            backend,
            operation,
            status,
        })
        .map_or(0, |c| c.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_counts_by_backend_operation_and_status() {
        // A backend label no other test uses: the family is process-wide.
        let b = "test-metrics-record";
        assert_eq!(count(b, Operation::GetRange, Status::Retry), 0);
        record(b, Operation::GetRange, Status::Retry);
        record(b, Operation::GetRange, Status::Retry);
        record(b, Operation::GetRange, Status::Ok);
        assert_eq!(count(b, Operation::GetRange, Status::Retry), 2);
        assert_eq!(count(b, Operation::GetRange, Status::Ok), 1);
        assert_eq!(count(b, Operation::Get, Status::Ok), 0);
    }

    #[test]
    fn register_exports_counters_at_zero_with_prometheus_names() {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("# TYPE freezer_storage_requests counter"),
            "{text}"
        );
        for line in [
            r#"freezer_storage_requests_total{backend="s3",operation="put",status="error"}"#,
            r#"freezer_storage_requests_total{backend="local",operation="get_range",status="ok"}"#,
            r#"freezer_storage_requests_total{backend="ssh",operation="sync",status="ok"}"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
