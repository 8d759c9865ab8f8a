//! `publish` takes a task's values from its command line only: the `FREEZER_*` variables the
//! worker's CLI reads for the same options must not slip into a published task.

use std::process::Command;

/// Runs `freezer-dispatcher publish ARGS` with `env` set, against a broker and Redis that refuse
/// connections (the spec is checked before any connection is made).
fn publish(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let config = tempfile::NamedTempFile::new().expect("a configuration file");
    std::fs::write(config.path(), "[dispatcher]\n").expect("write the configuration");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_freezer-dispatcher"));
    for (k, _) in std::env::vars_os() {
        if k.as_encoded_bytes().starts_with(b"FREEZER_") {
            cmd.env_remove(k);
        }
    }
    cmd.args([
        "--config",
        config.path().to_str().expect("a UTF-8 temporary path"),
        "--redis-url",
        "redis://127.0.0.1:1/",
        "--amqp-url",
        "amqp://127.0.0.1:1/%2f",
        "publish",
    ])
    .args(args)
    .envs(env.iter().copied());
    let out = cmd.output().expect("run freezer-dispatcher");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_storage_is_not_taken_from_the_environment() {
    let (code, err) = publish(
        &[
            "restore",
            "--node",
            "a",
            "--backup-name",
            "x",
            "--restore-abs-path",
            "/r",
        ],
        &[("FREEZER_STORAGE", "envstore")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--storage"), "{err}");
}

#[test]
fn the_worker_environment_does_not_reach_the_spec() {
    // Every value is one the contracts refuse: had any reached the spec, publish would stop with
    // a usage error (exit 2) naming it, before connecting anywhere.
    let env = [
        ("FREEZER_CONTAINER", "../climbs"),
        ("FREEZER_STORAGE", "not a name"),
        ("FREEZER_HOSTNAME", "bad/host"),
        ("FREEZER_UPLOAD_LIMIT", "0"),
        ("FREEZER_DOWNLOAD_LIMIT", "0"),
        ("FREEZER_QUEUE_SIZE", "0"),
    ];
    let backup = [
        "backup",
        "--node",
        "a",
        "--path-to-backup",
        "/etc",
        "--backup-name",
        "etc",
        "--storage",
        "s",
    ];
    let restore = [
        "restore",
        "--node",
        "a",
        "--backup-name",
        "etc",
        "--restore-abs-path",
        "/r",
        "--storage",
        "s",
    ];
    for args in [&backup[..], &restore[..]] {
        let (code, err) = publish(args, &env);
        // The spec passed; what failed is the connection (exit 1).
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(!err.contains("--"), "{args:?}: {err}");
    }
    // The same values on the command line are refused, so the test above means something.
    let (code, err) = publish(&[&backup[..], &["--queue-size", "0"]].concat(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--queue-size"), "{err}");
}
