//! Sample messages shared by the test binaries: one task of every kind, one event of every status.

#![allow(dead_code)] // each test binary uses its own part

use freezer_contracts::*;
use serde_json::{json, Value};

pub const ID: &str = "01936a3e-7c1b-7000-8000-000000000001";
pub const ID2: &str = "01936a3e-7c1b-7000-8000-000000000002";

pub fn t(s: &str) -> UtcTime {
    UtcTime::parse(s).unwrap()
}

pub fn id(s: &str) -> TaskId {
    TaskId::parse(s).unwrap()
}

pub fn backup_spec() -> BackupSpec {
    BackupSpec {
        path_to_backup: "/etc".into(),
        backup_name: "etc".into(),
        container: "backups/prod".into(),
        storage: vec!["s3-main".into(), "nfs-2".into()],
        hostname: Some("web1".into()),
        compression: Some(Compression::Xz),
        compression_level: Some(9),
        encrypt_key: Some("prod-key".into()),
        max_level: Some(6),
        always_level: None,
        restart_always_level: Some(7.5),
        no_incremental: false,
        max_segment_size: Some(ByteSize(4 << 20)),
        exclude: vec!["*.tmp".into(), "cache".into()],
        dereference_symlink: Some(Dereference::Soft),
        dry_run: true,
        upload_limit: Some(ByteSize(10 << 20)),
        queue_size: Some(8),
        hooks: vec!["pg-dump".into()],
    }
}

/// One spec of every kind, each with most of its options set.
pub fn every_spec() -> Vec<TaskSpec> {
    vec![
        TaskSpec::Backup(backup_spec()),
        TaskSpec::Restore(RestoreSpec {
            backup_name: "etc".into(),
            container: "backups/prod".into(),
            storage: vec!["s3-main".into()],
            hostname: Some("web1".into()),
            restore_abs_path: "/srv/restore".into(),
            restore_from_date: Some("2026-11-25T13:43:15".into()),
            overwrite: true,
            encrypt_key: Some("prod-key".into()),
            dry_run: false,
            download_limit: Some(ByteSize(1 << 30)),
            queue_size: Some(4),
            hooks: vec!["stop-app".into(), "start-app".into()],
        }),
        TaskSpec::Prune(PruneSpec {
            backup_name: Some("etc".into()),
            container: "backups/prod".into(),
            storage: vec!["s3-main".into()],
            hostname: Some("web1".into()),
            remove_older_than: Some(30.0),
            remove_from_date: Some("2026-01-01T00:00:00Z".into()),
            keep_last: Some(3),
            keep_hourly: Some(24),
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            keep_yearly: Some(5),
            debris_grace_hours: Some(2.0),
            dry_run: true,
        }),
        TaskSpec::Verify(VerifySpec {
            backup_name: "etc".into(),
            container: "backups/prod".into(),
            storage: vec!["s3-main".into()],
            hostname: None,
            restore_from_date: None,
            encrypt_key: Some("prod-key".into()),
            read_data: false,
            read_data_subset: Some(10.0),
            compare_to: Some("/etc".into()),
            download_limit: Some(ByteSize(512 << 10)),
        }),
        TaskSpec::List(ListSpec {
            backup_name: None,
            container: "backups/prod".into(),
            storage: vec!["local".into()],
            hostname: Some("web1".into()),
        }),
        TaskSpec::Noop(NoopSpec { sleep_ms: 250 }),
    ]
}

pub fn task(spec: TaskSpec) -> TaskEnvelope {
    let mut task = TaskEnvelope::new(id(ID), "etc-daily", "run-42", spec);
    task.session = Some(Session {
        id: "sess-1".into(),
        tag: "backup".into(),
        members: vec!["web1".into(), "web2".into()],
        hold_off_seconds: 300,
        policy: SessionPolicy::Proceed,
    });
    task.not_before = Some(t("2026-11-25T13:00:00Z"));
    task.expires_at = Some(t("2026-11-25T15:00:00Z"));
    task
}

pub fn backup_task_json() -> Value {
    serde_json::to_value(task(TaskSpec::Backup(backup_spec()))).unwrap()
}

/// One status of every kind, with realistic details.
pub fn statuses() -> Vec<EventStatus> {
    vec![
        EventStatus::Started,
        EventStatus::Progress {
            entries: 10,
            files: 8,
            bytes_read: 4096,
            bytes_written: 1024,
        },
        EventStatus::Succeeded {
            exit_code: 0,
            result: json!({"backup_id": "20261125T135256.123456Z", "level": 1}),
        },
        EventStatus::Failed {
            error_class: ErrorClass::Locked,
            exit_code: 11,
            reason: "web1_etc is being backed up by another worker".into(),
        },
        EventStatus::Expired {
            expires_at: t("2026-11-25T15:00:00Z"),
        },
        EventStatus::Rejected {
            reason: "spec.max_level: invalid type".into(),
            message_id: Some(ID.into()),
        },
    ]
}
