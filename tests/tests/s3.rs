//! The worker against a real S3 server (garage on loopback, one per test): the same round trips and
//! incrementals as on local storage, with encryption; configuration by a named storage and by the
//! environment; multipart segments; permanent errors that fail at once; a killed backup that leaves
//! nothing visible; an S3 outage in the middle of a backup.

use freezer_e2e::services::{Garage, BUCKET};
use freezer_e2e::*;
use freezer_worker::storage::{S3Config, S3Credentials, S3Storage, Storage};
use std::ffi::OsString;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A fixture whose backups go to `freezer-test/<test>` on its own garage, through a named storage
/// `garage` of a worker configuration file.
fn s3_fixture(test: &str) -> Option<(Garage, Fixture)> {
    let garage = Garage::start(test)?;
    let mut fx = Fixture::new(test);
    let config = fx.path("worker.toml");
    fs::write(
        &config,
        garage.storage_entry("garage", &format!("{BUCKET}/{test}"), fx.root()),
    )
    .unwrap();
    fx.location = Some(vec![
        "--config".into(),
        config.into(),
        "--storage".into(),
        "garage".into(),
    ]);
    Some((garage, fx))
}

/// Direct access to the bucket, to look at and damage objects behind the worker's back.
fn bucket(garage: &Garage, prefix: &str) -> S3Storage {
    let mut c = S3Config::new(&format!("{BUCKET}/{prefix}")).unwrap();
    c.endpoint = Some(garage.endpoint().to_string());
    c.region = Some(garage.env["AWS_REGION"].clone());
    c.force_path_style = true;
    c.checksums_when_required = true;
    c.credentials = Some(S3Credentials {
        access_key_id: garage.env["AWS_ACCESS_KEY_ID"].clone(),
        secret_access_key: garage.env["AWS_SECRET_ACCESS_KEY"].clone(),
    });
    S3Storage::new(c).unwrap()
}

fn initial_tree(fx: &Fixture) {
    make_tree(
        &fx.src,
        &TreeOpts {
            sparse: false,
            special: false,
            xattrs: true,
            owners: true,
        },
    );
    fs::create_dir_all(fx.src.join("data")).unwrap();
    write_random_file(&fx.src.join("data/big.bin"), 7, 5 << 20);
    set_tree_times(&fx.src);
}

#[test]
fn s3_round_trip_incrementals_and_restore_at_every_point_encrypted() {
    let Some((garage, fx)) = s3_fixture("s3-roundtrip") else {
        return;
    };
    initial_tree(&fx);
    let args: Vec<OsString> = [fx.enc(), vec!["--max-segment-size".into(), "256K".into()]].concat();
    let snap0 = snapshot(&fx.src);
    let s0 = fx.backup(&args);
    assert_eq!(s0["level"], 0);
    let segments = bucket(&garage, "s3-roundtrip")
        .list("")
        .unwrap()
        .iter()
        .filter(|o| o.key.contains("/data/"))
        .count();
    assert!(segments > 10, "{segments} segments: {s0}");

    wait_for_next_backup(s0["backup_id"].as_str().unwrap());
    write_random_file(&fx.src.join("data/new.bin"), 8, 300_000);
    fs::remove_file(fx.src.join("one.txt")).unwrap();
    fs::write(fx.src.join("data/changed.txt"), b"changed\n").unwrap();
    let snap1 = snapshot(&fx.src);
    let s1 = fx.backup(&args);
    assert_eq!(s1["level"], 1);
    assert!(
        s1["bytes_stored"].as_u64().unwrap() < 1 << 20,
        "the incremental stores only the changes: {s1}"
    );

    let list = fx.list();
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(list.iter().all(|b| b["restorable"] == true), "{list:#?}");
    assert!(
        list[0]["path"]
            .as_str()
            .unwrap()
            .starts_with("s3://freezer-test/s3-roundtrip/"),
        "{list:#?}"
    );

    let latest = fx.path("latest");
    fx.restore(&latest, &fx.enc());
    assert_tree(&snap1, &latest, Compare::full());
    let first = fx.path("first");
    let date = restore_date_for(s0["backup_id"].as_str().unwrap());
    let mut at_first = fx.enc();
    at_first.extend(["--restore-from-date".into(), date.into()]);
    fx.restore(&first, &at_first);
    assert_tree(&snap0, &first, Compare::full());

    let mut read_all = fx.enc();
    read_all.push("--read-data".into());
    let v = fx.verify(&read_all);
    v.assert_code(0);
    assert_eq!(v.json()["sound"], true, "{v}");

    // A wrong passphrase is refused before anything is written.
    let wrong = fx.path("wrong.pass");
    fs::write(&wrong, "not it\n").unwrap();
    let target = fx.path("wrong");
    let out = fx.try_restore(&target, &["--encrypt-pass-file", wrong.to_str().unwrap()]);
    out.assert_code(12).assert_no_panic();
    assert!(absent_or_empty(&target));
}

#[test]
fn s3_from_the_environment_with_ca_bundle_variables_set() {
    let Some(garage) = Garage::start("s3-env") else {
        return;
    };
    let fx = Fixture::new("s3-env");
    fs::write(fx.src.join("a.txt"), b"hello from the environment\n").unwrap();
    let with_env = |args: Vec<OsString>| {
        let mut cmd = worker();
        cmd.args(args);
        for (k, v) in &garage.env {
            cmd.env(k, v);
        }
        // As on the project's machines: CA-bundle variables set, endpoint plain http.
        cmd.env("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt");
        cmd.env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt");
        run_command(&mut cmd, DEFAULT_TIMEOUT)
    };
    let location: Vec<OsString> = vec![
        "--storage".into(),
        "s3".into(),
        "--container".into(),
        format!("{BUCKET}/from-env").into(),
    ];
    let mut fx = fx;
    fx.location = Some(location);
    with_env(fx.backup_args(&fx.src, &[] as &[&str])).assert_code(0);
    let target = fx.path("restored");
    with_env(fx.restore_args(&target, &[] as &[&str])).assert_code(0);
    compare_trees(&fx.src, &target);

    // Without the endpoint the client would go to AWS: it must not silently succeed here.
    let mut cmd = worker();
    cmd.args(fx.cmd_args::<&str>("list", &[]));
    cmd.env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y");
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    let out = run_command(&mut cmd, Duration::from_secs(300));
    assert_ne!(out.code(), 0, "{out}");
    out.assert_no_panic();
}

#[test]
fn s3_segments_above_the_part_size_go_up_as_multipart_uploads() {
    let Some((garage, fx)) = s3_fixture("s3-multipart") else {
        return;
    };
    write_random_file(&fx.src.join("big.bin"), 3, 40 << 20);
    let s = fx.backup(&[
        "--compression",
        "none",
        "--max-segment-size",
        "24M",
        "--encrypt-pass-file",
        fx.pass.to_str().unwrap(),
    ]);
    let b = bucket(&garage, "s3-multipart");
    let sizes: Vec<u64> = b
        .list("")
        .unwrap()
        .into_iter()
        .filter(|o| o.key.contains("/data/"))
        .map(|o| o.size)
        .collect();
    assert!(
        sizes.iter().any(|s| *s > 16 << 20),
        "a segment above 16 MiB (multipart): {sizes:?} ({s})"
    );
    let target = fx.path("restored");
    fx.restore(&target, &fx.enc());
    compare_trees(&fx.src, &target);
}

#[test]
fn s3_permanent_errors_fail_at_once_with_a_clear_message() {
    let Some((garage, fx)) = s3_fixture("s3-errors") else {
        return;
    };
    fs::write(fx.src.join("a.txt"), b"a\n").unwrap();
    let dir = fx.root();

    // Wrong secret: access denied, no retries (well under the ~25 s the retries would take).
    let bad_secret = dir.join("bad.secret");
    fs::write(&bad_secret, "0".repeat(64)).unwrap();
    let config = dir.join("bad.toml");
    fs::write(
        &config,
        garage
            .storage_entry("garage", &format!("{BUCKET}/x"), dir)
            .replace(
                &dir.join("garage.secret").display().to_string(),
                &bad_secret.display().to_string(),
            ),
    )
    .unwrap();
    let mut bad = Fixture::new("s3-errors");
    bad.location = Some(vec![
        "--config".into(),
        config.into(),
        "--storage".into(),
        "garage".into(),
    ]);
    let started = Instant::now();
    let out = bad.try_backup(&[] as &[&str]);
    out.assert_code(1).assert_no_panic();
    assert!(out.stderr.contains("access denied"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(15), "{out}");

    // A bucket that does not exist: exit 10, named.
    let config = dir.join("nobucket.toml");
    fs::write(
        &config,
        garage.storage_entry("garage", "no-such-bucket/x", dir),
    )
    .unwrap();
    bad.location.as_mut().unwrap()[1] = config.into();
    let out = bad.try_backup(&[] as &[&str]);
    out.assert_code(10).assert_no_panic();
    assert!(
        out.stderr.contains("\"no-such-bucket\" does not exist"),
        "{out}"
    );
    let out = run(bad.restore_args(&fx.path("t"), &[] as &[&str]));
    out.assert_code(10).assert_no_panic();

    // An unknown storage name and a container-less kind are usage errors.
    let mut unknown = fx.cmd_args::<&str>("list", &[]);
    let i = unknown.iter().position(|a| a == "garage").unwrap();
    unknown[i] = "nowhere".into();
    let out = run(unknown);
    out.assert_code(2).assert_no_panic();
    assert!(out.stderr.contains("unknown storage \"nowhere\""), "{out}");
    let out = run(["list", "--storage", "s3"]);
    out.assert_code(2).assert_no_panic();
    assert!(out.stderr.contains("needs a container"), "{out}");
}

/// Waits until `bucket` holds at least `bytes` under `prefix`, or the child exits.
fn wait_for_upload(b: &S3Storage, bytes: u64, child: &mut std::process::Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        let stored: u64 = b
            .list("")
            .map(|l| l.iter().map(|o| o.size).sum())
            .unwrap_or(0);
        if stored >= bytes {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn s3_killed_backup_leaves_no_visible_backup_and_prune_removes_its_debris() {
    let Some((garage, fx)) = s3_fixture("s3-killed") else {
        return;
    };
    write_random_file(&fx.src.join("big.bin"), 11, 64 << 20);
    let mut cmd = worker();
    cmd.args(fx.backup_args(&fx.src, &["--compression", "none", "--upload-limit", "8M"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let b = bucket(&garage, "s3-killed");
    wait_for_upload(&b, 4 << 20, &mut child);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before it could be killed (test inconclusive)"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(b.list("").unwrap().iter().any(|o| o.key.contains("/data/")));
    assert!(fx.list().is_empty(), "a killed backup is not listed");
    let out = fx.try_restore(&fx.path("t"), &[] as &[&str]);
    out.assert_code(10).assert_no_panic();

    let out = fx.prune(&["--keep-last", "1", "--debris-grace-hours", "0"]);
    out.assert_code(0);
    let debris = &out.json()["names"][0]["debris"];
    assert_eq!(debris.as_array().map(Vec::len), Some(1), "{out}");
    let left = b.list("").unwrap();
    assert!(left.is_empty(), "prune removed every object: {left:?}");

    // And the next backup works.
    fs::write(fx.src.join("big.bin"), b"small\n").unwrap();
    fx.backup(&[] as &[&str]);
    let target = fx.path("restored");
    fx.restore(&target, &[] as &[&str]);
    compare_trees(&fx.src, &target);
}

/// A fixture with two storages in its configuration: `disk` (its local container) and `garage`
/// (`freezer-test/<test>` on its own garage), used as `--storage disk,garage`.
fn multi_fixture(test: &str) -> Option<(Garage, Fixture, std::path::PathBuf)> {
    let garage = Garage::start(test)?;
    let mut fx = Fixture::new(test);
    let config = fx.path("worker.toml");
    fs::write(
        &config,
        format!(
            "[storages.disk]\ntype = \"local\"\ncontainer = \"{}\"\n\n{}",
            fx.container.display(),
            garage.storage_entry("garage", &format!("{BUCKET}/{test}"), fx.root())
        ),
    )
    .unwrap();
    fx.location = Some(vec![
        "--config".into(),
        config.clone().into(),
        "--storage".into(),
        "disk,garage".into(),
    ]);
    Some((garage, fx, config))
}

/// `fx`'s arguments for `cmd` with `--storage` replaced by `storage`.
fn with_storage(fx: &Fixture, args: Vec<OsString>, storage: &str) -> Vec<OsString> {
    let mut args = args;
    let i = args.iter().position(|a| a == "--storage").unwrap();
    args[i + 1] = storage.into();
    let _ = fx;
    args
}

#[test]
fn several_storages_get_every_backup_and_restore_falls_back_past_damage() {
    let Some((garage, fx, _)) = multi_fixture("multi-fallback") else {
        return;
    };
    initial_tree(&fx);
    let mut args = fx.enc();
    args.extend(["--max-segment-size".into(), "256K".into()]);
    fx.backup(&args);
    // Both storages hold the whole backup.
    for storage in ["disk", "garage"] {
        let out = run_ok(with_storage(&fx, fx.cmd_args::<&str>("list", &[]), storage));
        let rows = out.json();
        assert_eq!(rows.as_array().unwrap().len(), 1, "{storage}: {out}");
        assert_eq!(rows[0]["restorable"], true, "{storage}: {out}");
    }
    let on_s3 = bucket(&garage, "multi-fallback").list("").unwrap();
    assert!(on_s3.iter().any(|o| o.key.ends_with("manifest.json")));

    // Damage the first storage: a flipped byte in segment 0, the tail of segment 1 (the bytes
    // segment 2's CFB stream continues from) and a missing segment 3.
    let manifests = find_manifests(&fx.container);
    let dir = manifests[0].parent().unwrap();
    let segs = segment_paths(dir);
    assert!(segs.len() > 4, "{segs:?}");
    flip_byte(&segs[0], 100);
    let tail = fs::metadata(&segs[1]).unwrap().len() - 3;
    flip_byte(&segs[1], tail);
    fs::remove_file(&segs[3]).unwrap();

    let only_disk = fx.path("only-disk");
    let out = run(with_storage(
        &fx,
        fx.restore_args(&only_disk, &fx.enc()),
        "disk",
    ));
    out.assert_code(12).assert_no_panic();

    let target = fx.path("restored");
    let out = fx.restore(&target, &fx.enc());
    compare_trees(&fx.src, &target);
    assert!(
        out.stderr.contains("disk"),
        "the damaged copy is reported: {out}"
    );

    // verify through both storages finds a sound copy of everything.
    let mut read_all = fx.enc();
    read_all.push("--read-data".into());
    let v = fx.verify(&read_all);
    v.assert_code(0);
}

#[test]
fn a_failing_storage_fails_the_backup_and_no_storage_shows_it() {
    let Some((garage, fx, config)) = multi_fixture("multi-failing") else {
        return;
    };
    fs::write(fx.src.join("a.txt"), b"first\n").unwrap();
    fx.backup(&[] as &[&str]);

    // The garage member loses its credentials: every upload to it is refused.
    let bad_secret = fx.path("bad.secret");
    fs::write(&bad_secret, "0".repeat(64)).unwrap();
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace(
            &fx.root().join("garage.secret").display().to_string(),
            &bad_secret.display().to_string(),
        ),
    )
    .unwrap();
    fs::write(fx.src.join("b.txt"), b"second\n").unwrap();
    let out = fx.try_backup(&[] as &[&str]);
    out.assert_code(1).assert_no_panic();
    assert!(
        out.stderr.contains("storage 'garage'"),
        "names the storage: {out}"
    );
    drop(garage);

    // The local member shows only the first backup, and holds nothing of the failed one.
    let out = run_ok(with_storage(&fx, fx.cmd_args::<&str>("list", &[]), "disk"));
    assert_eq!(out.json().as_array().unwrap().len(), 1, "{out}");
    assert_eq!(find_manifests(&fx.container).len(), 1);
}

#[test]
fn an_s3_outage_in_the_middle_of_a_backup_is_ridden_out_by_retries() {
    let Some((garage, fx)) = s3_fixture("s3-outage") else {
        return;
    };
    write_random_file(&fx.src.join("big.bin"), 21, 48 << 20);
    let log = fx.path("outage.err");
    let mut cmd = worker();
    cmd.args(fx.backup_args(&fx.src, &["--compression", "none", "--upload-limit", "8M"]))
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(&log).unwrap()));
    let mut child = cmd.spawn().unwrap();
    let b = bucket(&garage, "s3-outage");
    wait_for_upload(&b, 4 << 20, &mut child);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before the outage (test inconclusive)"
    );
    garage.halt();
    std::thread::sleep(Duration::from_secs(3));
    garage.resume();
    assert_outage_ridden_out(&fx, &mut child, &log);
}

#[test]
fn bandwidth_limits_slow_transfers_down_to_the_limit() {
    // Lower bounds only: a loaded machine makes a run slower, never faster.
    let fx = Fixture::new("limits");
    write_random_file(&fx.src.join("r.bin"), 5, 4 << 20);
    let started = Instant::now();
    fx.backup(&["--compression", "none", "--upload-limit", "1M"]);
    let up = started.elapsed();
    assert!(
        up >= Duration::from_millis(3500),
        "4 MiB at 1 MiB/s took {up:?}"
    );
    let target = fx.path("restored");
    let started = Instant::now();
    fx.restore(&target, &["--download-limit", "2M"]);
    let down = started.elapsed();
    assert!(
        down >= Duration::from_millis(1700),
        "4 MiB at 2 MiB/s took {down:?}"
    );
    compare_trees(&fx.src, &target);
}
