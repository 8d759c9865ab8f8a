//! Every numeric field of a task is bounded: a value past its bound is refused when the message
//! is read, with the field and the bound named, and the bound itself is accepted.

mod common;

use common::*;
use freezer_contracts::spec::{MAX_DAYS, MAX_KEEP, MAX_LEVEL, MAX_TRANSFER_RATE};
use freezer_contracts::task::{MAX_ATTEMPT, MAX_HOLD_OFF_SECONDS, MAX_WINDOW_SECONDS};
use freezer_contracts::*;
use serde_json::{json, Value};

fn read(v: &Value) -> Result<TaskEnvelope, ContractError> {
    TaskEnvelope::from_json(v.to_string().as_bytes())
}

/// The task of `kind`'s sample with the JSON pointer `pointer` set to `value`.
fn with(kind: TaskKind, pointer: &str, value: Value) -> Value {
    let spec = every_spec().into_iter().find(|s| s.kind() == kind).unwrap();
    let mut v = serde_json::to_value(task(spec)).unwrap();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent).unwrap()[key] = value;
    v
}

/// The path and message of the rule `v` breaks.
fn refused(v: &Value) -> (String, String) {
    match read(v) {
        Err(ContractError::Invalid { path, message }) => (path, message),
        other => panic!("expected a rule violation, got {other:?}"),
    }
}

#[test]
fn a_hold_off_that_would_overflow_the_workers_deadline_is_refused() {
    // u64::MAX seconds: `Duration::from_secs(h) + ...` in the worker overflowed and panicked.
    let v = with(
        TaskKind::Backup,
        "/session/hold_off_seconds",
        json!(u64::MAX),
    );
    let (path, message) = refused(&v);
    assert_eq!(path, "session.hold_off_seconds");
    assert_eq!(
        message,
        format!("{} is more than a day (86400 s)", u64::MAX),
        "{message}"
    );
    let v = with(
        TaskKind::Backup,
        "/session/hold_off_seconds",
        json!(MAX_HOLD_OFF_SECONDS + 1),
    );
    assert_eq!(refused(&v).0, "session.hold_off_seconds");
    let v = with(
        TaskKind::Backup,
        "/session/hold_off_seconds",
        json!(MAX_HOLD_OFF_SECONDS),
    );
    read(&v).expect("a hold-off of a day is allowed");
}

#[test]
fn attempts_and_windows_are_bounded() {
    let v = with(TaskKind::Noop, "/attempt", json!(MAX_ATTEMPT + 1));
    let (path, message) = refused(&v);
    assert_eq!(path, "attempt");
    assert!(message.contains("more than 1000 attempts"), "{message}");
    read(&with(TaskKind::Noop, "/attempt", json!(MAX_ATTEMPT))).unwrap();

    let start = t("2026-11-25T13:00:00Z");
    let v = with(
        TaskKind::Noop,
        "/expires_at",
        json!(UtcTime::from_unix_seconds(start.unix_seconds() + MAX_WINDOW_SECONDS + 1).unwrap()),
    );
    let (path, message) = refused(&v);
    assert_eq!(path, "expires_at");
    assert!(message.contains("at most 31622400 s"), "{message}");
    let v = with(
        TaskKind::Noop,
        "/expires_at",
        json!(UtcTime::from_unix_seconds(start.unix_seconds() + MAX_WINDOW_SECONDS).unwrap()),
    );
    read(&v).unwrap();
}

#[test]
fn every_numeric_spec_field_past_its_bound_is_refused_by_name() {
    let level = json!(MAX_LEVEL + 1);
    let days = json!(MAX_DAYS * 2.0);
    let keep = json!(MAX_KEEP + 1);
    let rate = json!(MAX_TRANSFER_RATE + 1);
    let cases = [
        (TaskKind::Backup, "max_level", level.clone()),
        (TaskKind::Backup, "restart_always_level", days.clone()),
        (TaskKind::Backup, "upload_limit", rate.clone()),
        (TaskKind::Restore, "download_limit", rate.clone()),
        (TaskKind::Verify, "download_limit", rate.clone()),
        (TaskKind::Prune, "remove_older_than", days.clone()),
        (
            TaskKind::Prune,
            "debris_grace_hours",
            json!(MAX_DAYS * 24.0 + 1.0),
        ),
        (TaskKind::Prune, "keep_last", keep.clone()),
        (TaskKind::Prune, "keep_hourly", keep.clone()),
        (TaskKind::Prune, "keep_daily", keep.clone()),
        (TaskKind::Prune, "keep_weekly", keep.clone()),
        (TaskKind::Prune, "keep_monthly", keep.clone()),
        (TaskKind::Prune, "keep_yearly", keep.clone()),
        (TaskKind::Noop, "sleep_ms", json!(u64::MAX)),
    ];
    for (kind, field, value) in cases {
        let v = with(kind, &format!("/spec/{field}"), value.clone());
        let (path, message) = refused(&v);
        assert_eq!(path, format!("spec.{field}"), "{kind} {field}: {message}");
        assert!(message.contains("more than"), "{kind} {field}: {message}");
    }
    // always_level conflicts with the sample's max_level: bound it alone.
    let mut v = with(TaskKind::Backup, "/spec/always_level", level);
    v["spec"].as_object_mut().unwrap().remove("max_level");
    assert_eq!(refused(&v).0, "spec.always_level");

    // The bounds themselves are allowed.
    let ok = [
        (TaskKind::Backup, "max_level", json!(MAX_LEVEL)),
        (TaskKind::Backup, "restart_always_level", json!(MAX_DAYS)),
        (TaskKind::Backup, "upload_limit", json!(MAX_TRANSFER_RATE)),
        (TaskKind::Prune, "remove_older_than", json!(MAX_DAYS)),
        (TaskKind::Prune, "keep_yearly", json!(MAX_KEEP)),
    ];
    for (kind, field, value) in ok {
        read(&with(kind, &format!("/spec/{field}"), value))
            .unwrap_or_else(|e| panic!("{kind} {field}: {e}"));
    }
}
