//! The worker against a real sshd on loopback (one per test, SFTP): the same round trips and
//! incrementals as on local storage, with encryption; host keys that are unknown are refused; an
//! sshd that goes away in the middle of a backup.

use freezer_e2e::services::Sshd;
use freezer_e2e::*;
use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A fixture whose backups go over SFTP to `<tmp>/remote` through a named storage `vault`;
/// returns the remote directory too (the server is this machine, so the test can look at it).
fn ssh_fixture(test: &str) -> Option<(Sshd, Fixture, PathBuf)> {
    let sshd = Sshd::start(test)?;
    let mut fx = Fixture::new(test);
    let remote = fx.path("remote");
    let config = fx.path("worker.toml");
    fs::write(&config, sshd.storage_entry("vault", &remote, None)).unwrap();
    fx.location = Some(vec![
        "--config".into(),
        config.into(),
        "--storage".into(),
        "vault".into(),
    ]);
    Some((sshd, fx, remote))
}

#[test]
fn ssh_round_trip_incrementals_and_restore_at_every_point_encrypted() {
    let Some((_sshd, fx, remote)) = ssh_fixture("ssh-roundtrip") else {
        return;
    };
    make_tree(
        &fx.src,
        &TreeOpts {
            sparse: false,
            special: false,
            xattrs: true,
            owners: true,
        },
    );
    write_random_file(&fx.src.join("big.bin"), 9, 3 << 20);
    set_tree_times(&fx.src);
    let args: Vec<OsString> = [fx.enc(), vec!["--max-segment-size".into(), "256K".into()]].concat();
    let snap0 = snapshot(&fx.src);
    let s0 = fx.backup(&args);
    assert!(s0["path"].as_str().unwrap().starts_with("ssh://"), "{s0}");
    assert_eq!(
        find_manifests(&remote).len(),
        1,
        "the manifest is on the remote side"
    );

    wait_for_next_backup(s0["backup_id"].as_str().unwrap());
    fs::write(fx.src.join("added.txt"), b"new\n").unwrap();
    fs::remove_file(fx.src.join("one.txt")).unwrap();
    let snap1 = snapshot(&fx.src);
    let s1 = fx.backup(&args);
    assert_eq!(s1["level"], 1);

    let list = fx.list();
    assert_eq!(list.len(), 2, "{list:#?}");
    let latest = fx.path("latest");
    fx.restore(&latest, &fx.enc());
    assert_tree(&snap1, &latest, Compare::full());
    let first = fx.path("first");
    let mut at_first = fx.enc();
    at_first.extend([
        "--restore-from-date".into(),
        restore_date_for(s0["backup_id"].as_str().unwrap()).into(),
    ]);
    fx.restore(&first, &at_first);
    assert_tree(&snap0, &first, Compare::full());

    let mut read_all = fx.enc();
    read_all.push("--read-data".into());
    fx.verify(&read_all).assert_code(0);

    // No temporary objects are left behind by successful writes.
    let out = std::process::Command::new("find")
        .arg(&remote)
        .arg("-name")
        .arg("*.tmp.*")
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn ssh_unknown_host_key_is_refused() {
    let Some((sshd, fx, remote)) = ssh_fixture("ssh-hostkey") else {
        return;
    };
    fs::write(fx.src.join("a.txt"), b"a\n").unwrap();
    let empty = fx.path("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let config = fx.path("untrusting.toml");
    fs::write(&config, sshd.storage_entry("vault", &remote, Some(&empty))).unwrap();
    let mut untrusting = Fixture::new("ssh-hostkey");
    untrusting.location = Some(vec![
        "--config".into(),
        config.into(),
        "--storage".into(),
        "vault".into(),
    ]);
    let started = Instant::now();
    let out = untrusting.try_backup(&[] as &[&str]);
    out.assert_code(1).assert_no_panic();
    assert!(out.stderr.contains("is not in"), "{out}");
    assert!(out.stderr.contains("refusing"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a refused host key is permanent, not retried: {out}"
    );
    assert!(!remote.exists(), "nothing was written");
}

#[test]
fn an_sshd_restart_in_the_middle_of_a_backup_is_ridden_out_by_retries() {
    let Some((sshd, fx, remote)) = ssh_fixture("ssh-outage") else {
        return;
    };
    write_random_file(&fx.src.join("big.bin"), 31, 32 << 20);
    let log = fx.path("outage.err");
    let mut cmd = worker();
    cmd.args(fx.backup_args(&fx.src, &["--compression", "none", "--upload-limit", "6M"]))
        .stdout(Stdio::null())
        .stderr(Stdio::from(fs::File::create(&log).unwrap()));
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let uploaded = || {
        let out = std::process::Command::new("du")
            .args(["-sb"])
            .arg(&remote)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    while uploaded() < 4 << 20 && start.elapsed() < Duration::from_secs(60) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before the outage (test inconclusive)"
    );
    sshd.kill();
    std::thread::sleep(Duration::from_secs(2));
    sshd.resume();
    assert_outage_ridden_out(&fx, &mut child, &log);
}
