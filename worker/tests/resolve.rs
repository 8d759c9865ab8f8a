//! The same request resolves to the same plan whether it comes as `freezer-worker` arguments or as
//! a task's spec, and the same bad request is refused both ways with the same reason.

use clap::Parser;
use freezer_contracts::{TaskKind, TaskSpec};
use freezer_worker::cli::{Cli, Command};
use freezer_worker::config::WorkerConfig;
use freezer_worker::error::{Error, ErrorKind};
use freezer_worker::resolve::{self, Origin};
use serde_json::{json, Value};

/// A configuration with one named storage, one key and a daemon host name, so every default the
/// resolver applies comes from somewhere a test can see; its `[policy]` allows what the command
/// line may do (the old behaviour), so tasks and commands resolve alike.
fn config() -> WorkerConfig {
    WorkerConfig::parse(
        r#"
        [storages.main]
        type = "local"
        container = "/srv/backups"

        [storages.copy]
        type = "local"
        container = "/srv/copy"

        [keys.k]
        pass_file = "/etc/freezer/k.pass"

        [transfer]
        upload_limit = "8M"

        [daemon]
        node = "n1"
        hostname = "daemon-host"

        [policy]
        backup_roots = ["/"]
        restore_roots = ["/"]
        hosts = ["*"]
        "#,
        "test",
    )
    .unwrap()
}

/// Parses a command line (after `freezer-worker`).
fn cli(args: &[&str]) -> Command {
    let mut argv = vec!["freezer-worker"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap().command
}

/// Reads a task spec as a worker does.
fn task(kind: TaskKind, spec: Value) -> TaskSpec {
    TaskSpec::from_parts(kind, spec).unwrap()
}

/// The reason of a refusal without the field it names (`--queue-size` / `spec.queue_size`).
fn reason(e: &Error) -> &str {
    assert_eq!(e.kind, ErrorKind::Usage, "{e}");
    e.message.split_once(": ").map_or(&*e.message, |(_, r)| r)
}

#[test]
fn backup_resolves_the_same_both_ways() {
    let c = config();
    let Command::Backup(a) = cli(&[
        "backup",
        "--path-to-backup",
        "/data",
        "--backup-name",
        "db",
        "--storage",
        "main,copy",
        "--compression",
        "xz",
        "--encrypt-key",
        "k",
        "--max-level",
        "3",
        "--max-segment-size",
        "4M",
        "--exclude",
        "*.tmp",
        "--dereference-symlink",
        "soft",
        "--queue-size",
        "8",
    ]) else {
        unreachable!()
    };
    let from_cli = a.plan(&c).unwrap();
    let TaskSpec::Backup(s) = task(
        TaskKind::Backup,
        json!({
            "path_to_backup": "/data", "backup_name": "db", "storage": ["main", "copy"],
            "compression": "xz", "encrypt_key": "k", "max_level": 3, "max_segment_size": "4M",
            "exclude": ["*.tmp"], "dereference_symlink": "soft", "queue_size": 8,
        }),
    ) else {
        unreachable!()
    };
    let from_task = resolve::backup::resolve(&s, &c, &Origin::Task).unwrap();
    assert_eq!(from_cli, from_task);
    // The defaults, written once: the daemon's host name, the codec's level, the configuration's
    // upload limit capping the segment size (8M/4 = 2M < 4M).
    assert_eq!(from_task.hostname, "daemon-host");
    assert_eq!(from_task.level, 6);
    assert_eq!(from_task.max_segment_size, 2 << 20);
    assert_eq!(from_task.target.transfer.queue_size, 8);
    assert_eq!(
        from_task.pass_file.as_deref(),
        Some(std::path::Path::new("/etc/freezer/k.pass"))
    );
}

#[test]
fn a_pass_file_and_the_key_naming_it_resolve_the_same() {
    let c = config();
    let Command::Backup(a) = cli(&[
        "backup",
        "-F",
        "/data",
        "-N",
        "db",
        "--storage",
        "main",
        "--encrypt-pass-file",
        "/etc/freezer/k.pass",
    ]) else {
        unreachable!()
    };
    let TaskSpec::Backup(s) = task(
        TaskKind::Backup,
        json!({"path_to_backup": "/data", "backup_name": "db", "storage": ["main"], "encrypt_key": "k"}),
    ) else {
        unreachable!()
    };
    assert_eq!(
        a.plan(&c).unwrap(),
        resolve::backup::resolve(&s, &c, &Origin::Task).unwrap()
    );
}

#[test]
fn restore_resolves_the_same_both_ways() {
    let c = config();
    let Command::Restore(a) = cli(&[
        "restore",
        "-N",
        "db",
        "--storage",
        "main",
        "--hostname",
        "web1",
        "--restore-abs-path",
        "/restore",
        "--restore-from-date",
        "2026-01-02T03:04:05",
        "--overwrite",
        "--download-limit",
        "1M",
    ]) else {
        unreachable!()
    };
    let from_cli = a.plan(&c).unwrap();
    let TaskSpec::Restore(s) = task(
        TaskKind::Restore,
        json!({
            "backup_name": "db", "storage": ["main"], "hostname": "web1",
            "restore_abs_path": "/restore", "restore_from_date": "2026-01-02T03:04:05",
            "overwrite": true, "download_limit": "1M",
        }),
    ) else {
        unreachable!()
    };
    let from_task = resolve::restore::resolve(&s, &c, &Origin::Task).unwrap();
    assert_eq!(from_cli, from_task);
    // Downloads keep 16 segments in flight both ways when nothing says otherwise.
    assert_eq!(from_task.target.transfer.queue_size, 16);
    assert_eq!(from_task.target.transfer.download_limit, Some(1 << 20));
}

#[test]
fn prune_resolves_the_same_both_ways() {
    let c = config();
    let Command::Prune(a) = cli(&[
        "prune",
        "-N",
        "db",
        "--storage",
        "main",
        "--keep-daily",
        "7",
        "--remove-older-than",
        "30",
        "--dry-run",
    ]) else {
        unreachable!()
    };
    let from_cli = a.plan(&c).unwrap();
    let TaskSpec::Prune(s) = task(
        TaskKind::Prune,
        json!({
            "backup_name": "db", "storage": ["main"], "keep_daily": 7,
            "remove_older_than": 30.0, "dry_run": true,
        }),
    ) else {
        unreachable!()
    };
    let from_task = resolve::prune::resolve(&s, &c, &Origin::Task).unwrap();
    assert_eq!(from_cli, from_task);
    assert_eq!(from_task.hostname.as_deref(), Some("daemon-host"));
    assert_eq!(from_task.debris_grace_hours, 1.0);
}

#[test]
fn verify_resolves_the_same_both_ways() {
    let c = config();
    let Command::Verify(a) = cli(&[
        "verify",
        "-N",
        "db",
        "--storage",
        "main",
        "--read-data-subset",
        "10",
        "--compare-to",
        "/data",
        "--encrypt-key",
        "k",
    ]) else {
        unreachable!()
    };
    let from_cli = a.plan(&c).unwrap();
    let TaskSpec::Verify(s) = task(
        TaskKind::Verify,
        json!({
            "backup_name": "db", "storage": ["main"], "read_data_subset": 10.0,
            "compare_to": "/data", "encrypt_key": "k",
        }),
    ) else {
        unreachable!()
    };
    let from_task = resolve::verify::resolve(&s, &c, &Origin::Task).unwrap();
    assert_eq!(from_cli, from_task);
    assert_eq!(from_task.target.transfer.queue_size, 16);
}

#[test]
fn list_resolves_the_same_both_ways() {
    let c = config();
    let Command::List(a) = cli(&["list", "--storage", "main", "-C", "/srv/backups/elsewhere"])
    else {
        unreachable!()
    };
    let from_cli = a.plan(&c).unwrap();
    let TaskSpec::List(s) = task(
        TaskKind::List,
        json!({"storage": ["main"], "container": "/srv/backups/elsewhere"}),
    ) else {
        unreachable!()
    };
    let from_task = resolve::list::resolve(&s, &c, &Origin::Task).unwrap();
    assert_eq!(from_cli, from_task);
    // A listing has no default host: every host's backups.
    assert_eq!(from_task.hostname, None);
    assert_eq!(
        from_task.target.container.as_deref(),
        Some("/srv/backups/elsewhere")
    );
}

/// Resolves a backup given as arguments and as the same spec; both must be refused.
fn refused_both_ways(args: &[&str], spec: Value) -> (Error, Error) {
    let c = config();
    let mut argv = vec!["backup", "-F", "/data", "-N"];
    argv.extend_from_slice(args);
    let Command::Backup(a) = cli(&argv) else {
        unreachable!()
    };
    let from_cli = a.plan(&c).unwrap_err();
    let mut v = json!({"path_to_backup": "/data", "storage": ["main"]});
    v.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    let s: freezer_contracts::BackupSpec = serde_json::from_value(v).unwrap();
    let from_task = resolve::backup::resolve(&s, &c, &Origin::Task).unwrap_err();
    assert_eq!(reason(&from_cli), reason(&from_task));
    (from_cli, from_task)
}

#[test]
fn a_segment_size_below_64k_is_refused_both_ways() {
    let (cli, task) = refused_both_ways(
        &["db", "--storage", "main", "--max-segment-size", "32K"],
        json!({"backup_name": "db", "max_segment_size": "32K"}),
    );
    assert!(cli.message.starts_with("--max-segment-size: "), "{cli}");
    assert!(
        task.message.starts_with("spec.max_segment_size: "),
        "{task}"
    );
    refused_both_ways(
        &["db", "--storage", "main", "-M", "65M"],
        json!({"backup_name": "db", "max_segment_size": "65M"}),
    );
}

#[test]
fn a_control_character_in_a_name_is_refused_both_ways() {
    let (cli, _) = refused_both_ways(
        &["db\u{7}", "--storage", "main"],
        json!({"backup_name": "db\u{7}"}),
    );
    assert!(cli.message.starts_with("--backup-name: "), "{cli}");
    refused_both_ways(
        &["db", "--storage", "main", "--hostname", "a\nb"],
        json!({"backup_name": "db", "hostname": "a\nb"}),
    );
}

#[test]
fn a_queue_size_outside_1_to_256_is_refused_both_ways() {
    for q in ["0", "257"] {
        let (cli, _) = refused_both_ways(
            &["db", "--storage", "main", "--queue-size", q],
            json!({"backup_name": "db", "queue_size": q.parse::<u32>().unwrap()}),
        );
        assert!(cli.message.starts_with("--queue-size: "), "{cli}");
    }
    let Command::Backup(a) = cli(&[
        "backup",
        "-F",
        "/d",
        "-N",
        "db",
        "--storage",
        "main",
        "--queue-size",
        "256",
    ]) else {
        unreachable!()
    };
    assert_eq!(a.plan(&config()).unwrap().target.transfer.queue_size, 256);
}

#[test]
fn the_command_line_only_flags_are_held_to_the_same_limits() {
    let Command::Verify(a) = cli(&[
        "verify",
        "-N",
        "db",
        "--storage",
        "main",
        "--queue-size",
        "0",
    ]) else {
        unreachable!()
    };
    let e = a.plan(&config()).unwrap_err();
    assert!(
        e.message.starts_with("--queue-size: must be at least 1"),
        "{e}"
    );
}

#[test]
fn a_task_names_configured_storages_only() {
    let c = config();
    let TaskSpec::List(s) = task(
        TaskKind::List,
        json!({"storage": ["s3"], "container": "b/p"}),
    ) else {
        unreachable!()
    };
    let e = resolve::list::resolve(&s, &c, &Origin::Task).unwrap_err();
    assert!(e.message.contains("unknown storage \"s3\""), "{e}");
    // The command line may name a backend kind, or nothing (local).
    let Command::List(a) = cli(&["list", "--storage", "s3", "-C", "b/p"]) else {
        unreachable!()
    };
    assert_eq!(a.plan(&c).unwrap().target.storage, ["s3"]);
    let Command::List(a) = cli(&["list", "-C", "../relative"]) else {
        unreachable!()
    };
    assert!(a.plan(&c).unwrap().target.storage.is_empty());
}

/// A worker with a narrow `[policy]`: backups of /srv/data, restores into /srv/restore, its own
/// host name and `web2`.
fn strict_config() -> WorkerConfig {
    WorkerConfig::parse(
        r#"
        [storages.main]
        type = "local"
        container = "/srv/backups"

        [storages.offsite]
        type = "s3"
        container = "bucket/fleet"

        [daemon]
        node = "n1"
        hostname = "me"

        [policy]
        backup_roots = ["/srv/data"]
        restore_roots = ["/srv/restore"]
        hosts = ["web2"]
        "#,
        "test",
    )
    .unwrap()
}

/// The policy refusal of a task, checked to be a permanent usage error naming the rule.
fn refused(kind: TaskKind, spec: Value, c: &WorkerConfig) -> String {
    let e = match task(kind, spec) {
        TaskSpec::Backup(s) => resolve::backup::resolve(&s, c, &Origin::Task).map(drop),
        TaskSpec::Restore(s) => resolve::restore::resolve(&s, c, &Origin::Task).map(drop),
        TaskSpec::Verify(s) => resolve::verify::resolve(&s, c, &Origin::Task).map(drop),
        TaskSpec::Prune(s) => resolve::prune::resolve(&s, c, &Origin::Task).map(drop),
        TaskSpec::List(s) => resolve::list::resolve(&s, c, &Origin::Task).map(drop),
        TaskSpec::Noop(_) => unreachable!(),
    }
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Usage, "{e}");
    assert_eq!(e.class(), freezer_contracts::ErrorClass::Permanent, "{e}");
    assert!(e.message.starts_with("policy: "), "{e}");
    e.message
}

#[test]
fn tasks_out_of_policy_are_refused_naming_the_rule() {
    let c = strict_config();
    let backup = |extra: Value| {
        let mut v =
            json!({"path_to_backup": "/srv/data/db", "backup_name": "db", "storage": ["main"]});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let m = refused(
        TaskKind::Backup,
        backup(json!({"path_to_backup": "/root/.ssh"})),
        &c,
    );
    assert!(
        m.contains("path_to_backup /root/.ssh is outside [policy] backup_roots"),
        "{m}"
    );
    let m = refused(
        TaskKind::Backup,
        backup(json!({"path_to_backup": "/srv/data2"})),
        &c,
    );
    assert!(m.contains("outside [policy] backup_roots"), "{m}");
    let m = refused(TaskKind::Backup, backup(json!({"hostname": "web3"})), &c);
    assert!(m.contains("hostname \"web3\""), "{m}");
    let m = refused(TaskKind::Backup, backup(json!({"container": "/"})), &c);
    assert!(m.contains("outside storage \"main\""), "{m}");
    let m = refused(
        TaskKind::Backup,
        backup(json!({"dereference_symlink": "soft"})),
        &c,
    );
    assert!(m.contains("dereference_symlink"), "{m}");
    let m = refused(
        TaskKind::Backup,
        backup(json!({"storage": ["offsite"], "container": "other-bucket/fleet"})),
        &c,
    );
    assert!(m.contains("outside storage \"offsite\""), "{m}");
    let restore = json!({"backup_name": "db", "storage": ["main"], "restore_abs_path": "/root/.ssh", "overwrite": true});
    let m = refused(TaskKind::Restore, restore, &c);
    assert!(
        m.contains("restore_abs_path /root/.ssh is outside [policy] restore_roots"),
        "{m}"
    );
    let verify = json!({"backup_name": "db", "storage": ["main"], "compare_to": "/etc"});
    let m = refused(TaskKind::Verify, verify, &c);
    assert!(
        m.contains("compare_to /etc is outside [policy] restore_roots"),
        "{m}"
    );
    let m = refused(
        TaskKind::Prune,
        json!({"storage": ["main"], "keep_last": 1}),
        &c,
    );
    assert!(m.contains("every host"), "{m}");
    let m = refused(
        TaskKind::List,
        json!({"storage": ["main"], "hostname": "web3"}),
        &c,
    );
    assert!(m.contains("not in [policy] hosts"), "{m}");
    let m = refused(
        TaskKind::List,
        json!({"storage": ["main"], "container": "/srv/backups2"}),
        &c,
    );
    assert!(m.contains("container"), "{m}");
}

#[test]
fn without_roots_backup_and_restore_tasks_are_refused_but_the_command_line_is_not() {
    let c = WorkerConfig::parse(
        "[storages.main]\ntype = \"local\"\ncontainer = \"/srv/backups\"\n",
        "t",
    )
    .unwrap();
    let m = refused(
        TaskKind::Backup,
        json!({"path_to_backup": "/srv/data", "backup_name": "db", "storage": ["main"]}),
        &c,
    );
    assert!(m.contains("no [policy] backup_roots"), "{m}");
    let m = refused(
        TaskKind::Restore,
        json!({"backup_name": "db", "storage": ["main"], "restore_abs_path": "/srv/r"}),
        &c,
    );
    assert!(m.contains("no [policy] restore_roots"), "{m}");
    // The node's root at the command line is not bound by the policy.
    let Command::Backup(a) = cli(&[
        "backup",
        "-F",
        "/root/.ssh",
        "-N",
        "db",
        "--storage",
        "main",
        "-C",
        "/",
        "--hostname",
        "web3",
    ]) else {
        unreachable!()
    };
    a.plan(&c).unwrap();
    let Command::Restore(a) = cli(&[
        "restore",
        "-N",
        "db",
        "--storage",
        "main",
        "--restore-abs-path",
        "/root/.ssh",
    ]) else {
        unreachable!()
    };
    a.plan(&c).unwrap();
}

#[test]
fn tasks_in_policy_resolve() {
    let c = strict_config();
    let TaskSpec::Backup(s) = task(
        TaskKind::Backup,
        json!({"path_to_backup": "/srv/data/db", "backup_name": "db", "storage": ["main"],
               "container": "/srv/backups/db"}),
    ) else {
        unreachable!()
    };
    let plan = resolve::backup::resolve(&s, &c, &Origin::Task).unwrap();
    assert_eq!(plan.hostname, "me");
    // Another node's backup restored here after a disaster: its host is listed.
    let TaskSpec::Restore(s) = task(
        TaskKind::Restore,
        json!({"backup_name": "db", "storage": ["offsite"], "container": "bucket/fleet/web2",
               "hostname": "web2", "restore_abs_path": "/srv/restore/web2"}),
    ) else {
        unreachable!()
    };
    resolve::restore::resolve(&s, &c, &Origin::Task).unwrap();
    let TaskSpec::Verify(s) = task(
        TaskKind::Verify,
        json!({"backup_name": "db", "storage": ["main"], "compare_to": "/srv/restore/web2"}),
    ) else {
        unreachable!()
    };
    resolve::verify::resolve(&s, &c, &Origin::Task).unwrap();
    let TaskSpec::Prune(s) = task(
        TaskKind::Prune,
        json!({"backup_name": "db", "storage": ["main"], "keep_last": 1}),
    ) else {
        unreachable!()
    };
    assert_eq!(
        resolve::prune::resolve(&s, &c, &Origin::Task)
            .unwrap()
            .hostname
            .as_deref(),
        Some("me")
    );
    let TaskSpec::List(s) = task(
        TaskKind::List,
        json!({"storage": ["main"], "hostname": "me"}),
    ) else {
        unreachable!()
    };
    resolve::list::resolve(&s, &c, &Origin::Task).unwrap();
}

/// The writer lock of a backup name is one lock whatever spelling of its place a task uses: an
/// omitted container (the storage's own), that container written out, or written with a trailing
/// or doubled slash (issue 12: these used to take different locks on the same objects).
#[test]
fn every_spelling_of_a_place_takes_the_same_writer_lock() {
    let c = config();
    let backup_scopes = |container: &str| {
        let TaskSpec::Backup(s) = task(
            TaskKind::Backup,
            json!({
                "path_to_backup": "/data", "backup_name": "db", "storage": ["main"],
                "container": container,
            }),
        ) else {
            unreachable!()
        };
        resolve::backup::resolve(&s, &c, &Origin::Task)
            .unwrap()
            .lock_scopes()
    };
    let expected = vec!["main//srv/backups/daemon-host_db".to_string()];
    for spelling in [
        "",
        "/srv/backups",
        "/srv/backups/",
        "/srv//backups",
        "/srv/./backups",
    ] {
        assert_eq!(backup_scopes(spelling), expected, "container {spelling:?}");
    }
    // A prune of the same name takes the same lock as the backup.
    let TaskSpec::Prune(s) = task(
        TaskKind::Prune,
        json!({ "backup_name": "db", "storage": ["main"], "keep_last": 1 }),
    ) else {
        unreachable!()
    };
    let prune = resolve::prune::resolve(&s, &c, &Origin::Task).unwrap();
    assert_eq!(prune.lock_scopes(), Some(expected));
    // Another place is another lock.
    assert_ne!(backup_scopes("/srv/backups/other"), backup_scopes(""));
}
