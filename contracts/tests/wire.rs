//! The wire contract as the dispatcher and the workers see it: tasks and events through their JSON
//! form, with the public API only.

mod common;

use std::time::Duration;

use common::*;
use freezer_contracts::*;
use serde_json::{json, Value};

/// Reads a JSON value as a task body.
fn read(v: &Value) -> Result<TaskEnvelope, ContractError> {
    TaskEnvelope::from_json(v.to_string().as_bytes())
}

/// Sets the field at a JSON pointer, creating it in its parent object if absent.
fn set(v: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent).unwrap()[key] = value;
}

fn field_error(v: &Value) -> (String, String) {
    match read(v).unwrap_err() {
        ContractError::Field { path, message } => (path, message),
        other => panic!("expected a field error, got {other:?}"),
    }
}

fn invalid_path(v: &Value) -> String {
    match read(v).unwrap_err() {
        ContractError::Invalid { path, .. } => path,
        other => panic!("expected a rule violation, got {other:?}"),
    }
}

#[test]
fn every_kind_round_trips_through_json() {
    let specs = every_spec();
    let kinds: Vec<_> = specs.iter().map(TaskSpec::kind).collect();
    assert_eq!(kinds, TaskKind::ALL, "one sample per kind");
    for spec in specs {
        let task = task(spec);
        task.validate().unwrap();
        let back = TaskEnvelope::from_json(&task.to_json()).unwrap();
        assert_eq!(back, task, "{}", task.kind());
        // Plain serde reads the same thing.
        let plain: TaskEnvelope = serde_json::from_slice(&task.to_json()).unwrap();
        assert_eq!(plain, task);
    }
}

#[test]
fn wire_shape_is_flat_and_readable() {
    let task = task(TaskSpec::Backup(backup_spec()));
    let text = String::from_utf8(task.to_json()).unwrap();
    assert!(
        text.starts_with(&format!(
            r#"{{"schema_version":1,"task_id":"{ID}","kind":"backup","spec":{{"path_to_backup":"/etc""#
        )),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["job_id"], "etc-daily");
    assert_eq!(v["attempt"], 1);
    assert_eq!(v["not_before"], "2026-11-25T13:00:00Z");
    assert_eq!(v["session"]["policy"], "proceed");
    // Sizes are written as on the command line.
    assert_eq!(v["spec"]["max_segment_size"], "4M");
    assert_eq!(v["spec"]["upload_limit"], "10M");
    assert_eq!(v["spec"]["compression"], "xz");
    assert_eq!(v["spec"]["dereference_symlink"], "soft");

    // Absent options are left out, not written as null or false.
    let bare = TaskEnvelope::new(
        id(ID),
        "j",
        "r",
        TaskSpec::List(ListSpec {
            backup_name: None,
            container: "c".into(),
            storage: vec!["local".into()],
            hostname: None,
        }),
    );
    assert_eq!(
        serde_json::to_value(&bare).unwrap(),
        json!({
            "schema_version": 1, "task_id": ID, "kind": "list",
            "spec": {"container": "c", "storage": ["local"]},
            "job_id": "j", "run_id": "r", "attempt": 1
        })
    );
    let noop = TaskEnvelope::new(id(ID), "bench", "r1", TaskSpec::Noop(NoopSpec::default()));
    assert_eq!(serde_json::to_value(&noop).unwrap()["spec"], json!({}));
}

#[test]
fn a_hand_written_task_reads_with_cli_spellings() {
    let body = json!({
        "schema_version": 1,
        "task_id": ID,
        "kind": "backup",
        "spec": {
            "path_to_backup": "/var/lib/pg",
            "backup_name": "pg",
            "container": "/srv/backups",
            "storage": ["local"],
            "max_segment_size": 8_388_608,
            "upload_limit": "512k",
            "no_incremental": true
        },
        "job_id": "pg-nightly",
        "run_id": "2026-11-25",
        "attempt": 2
    });
    let task = read(&body).unwrap();
    let TaskSpec::Backup(spec) = &task.spec else {
        panic!("{:?}", task.spec)
    };
    assert_eq!(spec.max_segment_size, Some(ByteSize(8 << 20)));
    assert_eq!(spec.upload_limit, Some(ByteSize(512 << 10)));
    assert!(spec.no_incremental);
    assert_eq!(spec.compression, None, "the worker's default applies");
    assert_eq!(task.kind(), TaskKind::Backup);
    assert_eq!(task.attempt, 2);
}

#[test]
fn unknown_envelope_and_session_fields_are_accepted() {
    let mut v = backup_task_json();
    v["priority"] = json!(7);
    v["trace"] = json!({"id": "abc"});
    v["session"]["quorum"] = json!(2);
    let task = read(&v).unwrap();
    assert_eq!(task, self::task(TaskSpec::Backup(backup_spec())));
}

#[test]
fn unknown_spec_fields_are_rejected_with_their_name() {
    let mut v = backup_task_json();
    v["spec"]["keep_fortnightly"] = json!(2);
    let (path, message) = field_error(&v);
    assert_eq!(path, "spec.keep_fortnightly");
    assert!(
        message.contains("unknown field `keep_fortnightly`"),
        "{message}"
    );
    // A secret smuggled in as an option is refused, not ignored.
    let mut v = backup_task_json();
    v["spec"]["encrypt_pass_file"] = json!("/root/pass");
    let err = read(&v).unwrap_err();
    assert!(err.to_string().contains("encrypt_pass_file"), "{err}");
}

#[test]
fn other_schema_versions_are_rejected_before_anything_else() {
    for (version, found) in [
        (json!(2), Some(2)),
        (json!(0), Some(0)),
        (json!("1"), None),
        (json!(null), None),
    ] {
        let mut v = backup_task_json();
        v["schema_version"] = version;
        assert_eq!(
            read(&v).unwrap_err(),
            ContractError::UnsupportedSchemaVersion { found }
        );
    }
    // A version-2 body of a different shape is still reported as a version problem.
    let err = read(&json!({"schema_version": 2, "task": {"id": "x"}})).unwrap_err();
    assert_eq!(
        err,
        ContractError::UnsupportedSchemaVersion { found: Some(2) }
    );
    assert_eq!(
        err.to_string(),
        "unsupported schema_version 2 (this build speaks 1)"
    );
    let err = read(&json!({"task_id": ID})).unwrap_err();
    assert!(err
        .to_string()
        .contains("missing or non-numeric schema_version"));

    let mut task = self::task(TaskSpec::Noop(NoopSpec::default()));
    task.schema_version = 2;
    assert!(matches!(
        task.validate(),
        Err(ContractError::UnsupportedSchemaVersion { found: Some(2) })
    ));
}

#[test]
fn bodies_that_are_not_json_objects_are_rejected() {
    for body in [
        &b"not json"[..],
        b"",
        b"{\"schema_version\": 1,",
        b"[1, 2]",
        b"42",
    ] {
        let err = TaskEnvelope::from_json(body).unwrap_err();
        assert!(matches!(err, ContractError::NotJson { .. }), "{err:?}");
        assert!(err.to_string().starts_with("not a JSON object"), "{err}");
    }
}

#[test]
fn missing_fields_are_named() {
    for field in ["task_id", "kind", "job_id", "run_id", "attempt", "spec"] {
        let mut v = backup_task_json();
        v.as_object_mut().unwrap().remove(field);
        let err = read(&v).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("missing field `{field}`")),
            "{field}: {err}"
        );
    }
    let mut v = backup_task_json();
    v["spec"].as_object_mut().unwrap().remove("backup_name");
    let (path, message) = field_error(&v);
    assert_eq!(path, "spec");
    assert!(message.contains("missing field `backup_name`"), "{message}");
}

#[test]
fn wrong_types_are_reported_with_their_path() {
    let cases = [
        ("/spec/max_level", json!("six"), "spec.max_level"),
        ("/spec/storage", json!("s3-main"), "spec.storage"),
        (
            "/spec/max_segment_size",
            json!("2X"),
            "spec.max_segment_size",
        ),
        ("/spec/compression", json!("lz4"), "spec.compression"),
        ("/attempt", json!(-1), "attempt"),
        ("/session/members", json!(["web1", 2]), "session.members[1]"),
    ];
    for (pointer, value, expected) in cases {
        let mut v = backup_task_json();
        set(&mut v, pointer, value);
        let (path, message) = field_error(&v);
        assert_eq!(path, expected, "{message}");
    }
    let mut v = backup_task_json();
    v["spec"] = json!(["not", "an", "object"]);
    assert_eq!(field_error(&v).0, "spec");
}

#[test]
fn unknown_kinds_are_rejected() {
    let mut v = backup_task_json();
    v["kind"] = json!("defrag");
    let (path, message) = field_error(&v);
    assert_eq!(path, "kind");
    assert!(message.contains("unknown variant `defrag`"), "{message}");
    assert!(message.contains("noop"), "lists the known kinds: {message}");
}

#[test]
fn kind_and_spec_cannot_disagree() {
    // A backup spec sent as a restore is read as a restore spec, and refused.
    let mut v = backup_task_json();
    v["kind"] = json!("restore");
    let (path, message) = field_error(&v);
    assert!(path.starts_with("spec."), "{path}");
    assert!(message.contains("unknown field"), "{message}");
}

#[test]
fn bad_task_ids_are_rejected() {
    for bad in [
        "",
        "42",
        "01936A3E-7C1B-7000-8000-000000000001",
        "01936a3e-7c1b-4000-8000-000000000001",
        "not-a-uuid-at-all-not-a-uuid-at-all!",
    ] {
        let mut v = backup_task_json();
        v["task_id"] = json!(bad);
        let (path, message) = field_error(&v);
        assert_eq!(path, "task_id");
        assert!(message.contains("not a UUIDv7"), "{message}");
    }
}

#[test]
fn bad_dates_are_rejected() {
    for (field, bad) in [
        ("not_before", "2026-11-25T15:00:00+02:00"),
        ("not_before", "tomorrow"),
        ("expires_at", "2026-11-25 15:00:00"),
        ("expires_at", "2026-02-30T00:00:00Z"),
    ] {
        let mut v = backup_task_json();
        v[field] = json!(bad);
        let (path, message) = field_error(&v);
        assert_eq!(path, field, "{message}");
    }
    // A window that closes before it opens can never run.
    let mut v = backup_task_json();
    v["expires_at"] = json!("2026-11-25T12:00:00Z");
    assert_eq!(invalid_path(&v), "expires_at");
    // The CLI's date options are checked too.
    let mut v = backup_task_json();
    v["kind"] = json!("prune");
    v["spec"] = json!({"container": "c", "storage": ["s"], "remove_from_date": "last week"});
    assert_eq!(invalid_path(&v), "spec.remove_from_date");
}

#[test]
fn envelope_rules_are_checked() {
    let cases: [(&str, Value, &str); 7] = [
        ("/job_id", json!("etc daily"), "job_id"),
        ("/run_id", json!(""), "run_id"),
        ("/attempt", json!(0), "attempt"),
        ("/session/id", json!("a:b"), "session.id"),
        ("/session/members", json!([]), "session.members"),
        (
            "/session/members",
            json!(["web1", "web1"]),
            "session.members[1]",
        ),
        ("/session/tag", json!("x/y"), "session.tag"),
    ];
    for (pointer, value, expected) in cases {
        let mut v = backup_task_json();
        set(&mut v, pointer, value);
        assert_eq!(invalid_path(&v), expected, "{pointer}");
    }
}

#[test]
fn spec_rules_follow_the_cli() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/spec/path_to_backup", json!("etc"), "spec.path_to_backup"),
        ("/spec/backup_name", json!("a/b"), "spec.backup_name"),
        ("/spec/hostname", json!(".."), "spec.hostname"),
        ("/spec/container", json!("../other"), "spec.container"),
        ("/spec/storage", json!([]), "spec.storage"),
        ("/spec/storage", json!(["a", "a"]), "spec.storage[1]"),
        ("/spec/storage", json!(["https://s3"]), "spec.storage[0]"),
        (
            "/spec/compression_level",
            json!(10),
            "spec.compression_level",
        ),
        ("/spec/always_level", json!(1), "spec.max_level"),
        (
            "/spec/restart_always_level",
            json!(0),
            "spec.restart_always_level",
        ),
        ("/spec/max_segment_size", json!(0), "spec.max_segment_size"),
        ("/spec/exclude", json!([""]), "spec.exclude[0]"),
        ("/spec/queue_size", json!(0), "spec.queue_size"),
        ("/spec/queue_size", json!(257), "spec.queue_size"),
        (
            "/spec/max_segment_size",
            json!("32K"),
            "spec.max_segment_size",
        ),
        (
            "/spec/max_segment_size",
            json!("65M"),
            "spec.max_segment_size",
        ),
        ("/spec/backup_name", json!("a\u{7}b"), "spec.backup_name"),
        ("/spec/encrypt_key", json!("/etc/key"), "spec.encrypt_key"),
        ("/spec/hooks", json!(["rm -rf /"]), "spec.hooks[0]"),
    ];
    for (pointer, value, expected) in cases {
        let mut v = backup_task_json();
        set(&mut v, pointer, value);
        assert_eq!(invalid_path(&v), expected, "{pointer}");
    }

    let mut spec = backup_spec();
    spec.max_level = None;
    spec.always_level = Some(1);
    spec.no_incremental = true;
    let err = TaskSpec::Backup(spec).validate().unwrap_err();
    assert_eq!(err.path(), Some("spec.always_level"));

    let TaskSpec::Verify(mut verify) = every_spec().remove(3) else {
        unreachable!()
    };
    verify.read_data = true;
    assert!(TaskSpec::Verify(verify.clone()).validate().is_err());
    verify.read_data = false;
    verify.read_data_subset = Some(0.0);
    assert!(TaskSpec::Verify(verify.clone()).validate().is_err());
    verify.read_data_subset = Some(100.0);
    verify.compare_to = Some("relative".into());
    let err = TaskSpec::Verify(verify).validate().unwrap_err();
    assert_eq!(err.path(), Some("spec.compare_to"));

    let TaskSpec::Restore(mut restore) = every_spec().remove(1) else {
        unreachable!()
    };
    restore.restore_abs_path = "restore/here".into();
    assert!(TaskSpec::Restore(restore).validate().is_err());

    let TaskSpec::Prune(mut prune) = every_spec().remove(2) else {
        unreachable!()
    };
    prune.remove_older_than = Some(-1.0);
    assert!(TaskSpec::Prune(prune.clone()).validate().is_err());
    prune.remove_older_than = None;
    prune.debris_grace_hours = Some(-0.5);
    assert!(TaskSpec::Prune(prune).validate().is_err());

    assert!(TaskSpec::Noop(NoopSpec {
        sleep_ms: 86_400_001
    })
    .validate()
    .is_err());
}

#[test]
fn errors_read_as_rejection_reasons() {
    let mut v = backup_task_json();
    v["spec"]["compression_level"] = json!(30);
    assert_eq!(
        read(&v).unwrap_err().to_string(),
        "spec.compression_level: 30 is out of range 0..=9 for xz"
    );
    let mut v = backup_task_json();
    v["kind"] = json!("defrag");
    let reason = read(&v).unwrap_err().to_string();
    assert!(
        reason.starts_with("kind: unknown variant `defrag`"),
        "{reason}"
    );
}

#[test]
fn readiness_follows_the_window() {
    let task = task(TaskSpec::Noop(NoopSpec::default()));
    assert_eq!(
        task.readiness(t("2026-11-25T12:59:30Z")),
        Readiness::NotYet(Duration::from_secs(30))
    );
    assert_eq!(task.readiness(t("2026-11-25T13:00:00Z")), Readiness::Ready);
    assert_eq!(task.readiness(t("2026-11-25T14:59:59Z")), Readiness::Ready);
    assert_eq!(
        task.readiness(t("2026-11-25T15:00:00Z")),
        Readiness::Expired
    );
    let open = TaskEnvelope::new(id(ID), "j", "r", TaskSpec::Noop(NoopSpec::default()));
    assert_eq!(open.readiness(t("1970-01-01T00:00:00Z")), Readiness::Ready);
}

#[test]
fn a_retry_is_a_new_task_of_the_same_run() {
    let first = task(TaskSpec::Backup(backup_spec()));
    let second = first.retry(id(ID2));
    assert_eq!(second.task_id.as_str(), ID2);
    assert_eq!(second.attempt, 2);
    assert_eq!(
        (
            &second.run_id,
            &second.job_id,
            &second.spec,
            &second.session
        ),
        (&first.run_id, &first.job_id, &first.spec, &first.session)
    );
}

#[test]
fn routing_keys_are_task_kind_status() {
    let at = t("2026-11-25T13:52:56Z");
    for kind_spec in every_spec() {
        let task = task(kind_spec);
        for status in statuses() {
            let name = status.as_str();
            let event = Event::for_task(&task, "web1", at, status);
            assert_eq!(event.routing_key(), format!("task.{}.{name}", task.kind()),);
        }
    }
    let event = Event::for_task(
        &task(TaskSpec::Noop(NoopSpec::default())),
        "w",
        at,
        EventStatus::Started,
    );
    assert_eq!(event.routing_key(), "task.noop.started");
}

#[test]
fn events_round_trip_with_a_flat_status() {
    let task = task(TaskSpec::Backup(backup_spec()));
    for status in statuses() {
        let event = Event::for_task(&task, "web1", t("2026-11-25T13:52:58.25Z"), status);
        event.validate().unwrap();
        let back = Event::from_json(&event.to_json()).unwrap();
        assert_eq!(back, event);
    }
    let event = Event::for_task(
        &task,
        "web1",
        t("2026-11-25T13:52:58Z"),
        statuses().remove(3),
    );
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({
            "schema_version": 1, "task_id": ID, "kind": "backup", "job_id": "etc-daily",
            "run_id": "run-42", "attempt": 1, "node": "web1", "at": "2026-11-25T13:52:58Z",
            "status": "failed", "error_class": "locked", "exit_code": 11,
            "reason": "web1_etc is being backed up by another worker"
        })
    );
}

#[test]
fn events_accept_unknown_fields_and_refuse_unknown_values() {
    let task = task(TaskSpec::Noop(NoopSpec::default()));
    let event = Event::for_task(
        &task,
        "web1",
        t("2026-11-25T13:00:00Z"),
        EventStatus::Started,
    );
    let mut v = serde_json::to_value(&event).unwrap();
    v["duration_seconds"] = json!(1.5);
    assert_eq!(Event::from_json(v.to_string().as_bytes()).unwrap(), event);

    v["status"] = json!("paused");
    let err = Event::from_json(v.to_string().as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `paused`"),
        "{err}"
    );

    let failed = Event::for_task(
        &task,
        "web1",
        t("2026-11-25T13:00:00Z"),
        statuses().remove(3),
    );
    let mut v = serde_json::to_value(&failed).unwrap();
    v["error_class"] = json!("cosmic_ray");
    assert!(Event::from_json(v.to_string().as_bytes()).is_err());

    v["error_class"] = json!("locked");
    v["schema_version"] = json!(2);
    assert_eq!(
        Event::from_json(v.to_string().as_bytes()).unwrap_err(),
        ContractError::UnsupportedSchemaVersion { found: Some(2) }
    );
}

#[test]
fn only_a_rejection_may_lack_the_task_identity() {
    let task = task(TaskSpec::Noop(NoopSpec::default()));
    let mut event = Event::for_task(
        &task,
        "web1",
        t("2026-11-25T13:00:00Z"),
        EventStatus::Started,
    );
    event.task_id = None;
    assert_eq!(event.validate().unwrap_err().path(), Some("task_id"));
    event.task_id = Some(id(ID));
    event.node = "web 1".into();
    assert_eq!(event.validate().unwrap_err().path(), Some("node"));
}

#[test]
fn rejections_are_buildable_from_any_body() {
    let at = t("2026-11-25T13:00:00Z");
    let err = TaskEnvelope::from_json(b"\x00garbage").unwrap_err();
    let event = Event::rejected(b"\x00garbage", None, "web1", at, &err);
    assert_eq!(event.routing_key(), "task.unknown.rejected");
    assert_eq!(event.task_id, None);
    assert_eq!(event.kind, None);
    event.validate().unwrap();
    assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
    let EventStatus::Rejected { reason, message_id } = &event.status else {
        panic!()
    };
    assert!(reason.starts_with("not a JSON object"), "{reason}");
    assert_eq!(message_id, &None);

    // The AMQP message id stands in for an unreadable task id, when it is a valid one.
    let event = Event::rejected(b"[]", Some(ID), "web1", at, &err);
    assert_eq!(event.task_id, Some(id(ID)));
    let event = Event::rejected(b"[]", Some("junk"), "web1", at, &err);
    assert_eq!(event.task_id, None);
    assert!(matches!(
        &event.status,
        EventStatus::Rejected { message_id: Some(m), .. } if m == "junk"
    ));

    // What is readable in a malformed task is kept, so the dispatcher can close the task.
    let mut v = backup_task_json();
    v["spec"]["max_level"] = json!("six");
    v["run_id"] = json!("bad run id");
    let body = v.to_string();
    let err = TaskEnvelope::from_json(body.as_bytes()).unwrap_err();
    let event = Event::rejected(body.as_bytes(), Some(ID2), "web1", at, &err);
    assert_eq!(event.task_id, Some(id(ID)), "the body's id wins");
    assert_eq!(event.kind, Some(TaskKind::Backup));
    assert_eq!(event.job_id.as_deref(), Some("etc-daily"));
    assert_eq!(event.run_id, None, "invalid names are not echoed");
    assert_eq!(event.attempt, Some(1));
    assert_eq!(event.routing_key(), "task.backup.rejected");
    assert_eq!(TaskState::after(&event.status), TaskState::Failed);
}

#[test]
fn error_classes_decide_retries() {
    let retryable: Vec<_> = [
        ErrorClass::Permanent,
        ErrorClass::Transient,
        ErrorClass::Locked,
        ErrorClass::NotFound,
        ErrorClass::Integrity,
        ErrorClass::Interrupted,
    ]
    .into_iter()
    .filter(|c| c.retryable())
    .map(ErrorClass::as_str)
    .collect();
    assert_eq!(retryable, ["transient", "locked", "interrupted"]);
    assert_eq!(
        serde_json::to_value(ErrorClass::NotFound).unwrap(),
        json!("not_found")
    );
}

#[test]
fn readme_examples_are_valid_messages() {
    let readme = include_str!("../README.md");
    let blocks: Vec<&str> = readme
        .split("```json\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 3, "one task and two events");
    for block in blocks {
        let v: Value = serde_json::from_str(block).unwrap();
        if v.get("status").is_some() {
            Event::from_json(block.as_bytes()).unwrap();
        } else {
            TaskEnvelope::from_json(block.as_bytes()).unwrap();
        }
    }
}

#[test]
fn a_command_line_may_give_relative_paths_a_climbing_container_and_no_storage() {
    let mut spec = backup_spec();
    spec.path_to_backup = "data".into();
    spec.container = "../backups".into();
    spec.storage.clear();
    assert!(spec.validate_as(Author::CommandLine).is_ok());
    let err = spec.validate().unwrap_err();
    assert_eq!(err.path(), Some("spec.path_to_backup"));
    spec.path_to_backup = "/data".into();
    assert_eq!(spec.validate().unwrap_err().path(), Some("spec.container"));
    spec.container.clear();
    assert_eq!(spec.validate().unwrap_err().path(), Some("spec.storage"));
    // Every other rule holds both ways.
    spec.queue_size = Some(0);
    let err = spec.validate_as(Author::CommandLine).unwrap_err();
    assert_eq!(err.path(), Some("spec.queue_size"));
}
