//! `S3Storage` against a real garage server on loopback, started by each test through
//! `scripts/services/garage.sh start <tmpdir>` and stopped by a drop guard. The tests skip (with a
//! message) when `garage` is not installed: `scripts/services/garage.sh install` installs it.
//!
//! garage listens on fixed ports, so the tests run one at a time (a process-wide lock). They run
//! with the CA-bundle variables set (`AWS_CA_BUNDLE` and friends, as on the project's machines), to
//! show that the client still talks plain http to a local endpoint with them.

use freezer_worker::error::ErrorKind;
use freezer_worker::storage::{S3Config, S3Credentials, S3Storage, Storage, MULTIPART_PART_SIZE};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

const BUCKET: &str = "freezer-test";

static SERIAL: Mutex<()> = Mutex::new(());

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/garage.sh")
}

fn garage_installed() -> bool {
    let on_path = Command::new("garage")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let in_cargo_bin = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cargo/bin/garage"))
        .is_some_and(|p| p.is_file());
    on_path || in_cargo_bin
}

/// A running garage; stops it (and removes its directory) when dropped.
struct Garage {
    dir: PathBuf,
    env: HashMap<String, String>,
    _serial: MutexGuard<'static, ()>,
}

impl Garage {
    /// Starts garage, or returns `None` (after saying why) when it is not installed.
    fn start(test: &str) -> Option<Garage> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        if !garage_installed() {
            eprintln!(
                "SKIPPED {test}: garage is not installed (run scripts/services/garage.sh install)"
            );
            return None;
        }
        // Like the project's machines: CA-bundle variables set, endpoint plain http. Set while
        // holding SERIAL, before any client exists, so no other test thread reads the environment.
        if std::env::var_os("AWS_CA_BUNDLE").is_none() {
            std::env::set_var("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt");
        }
        let dir =
            std::env::temp_dir().join(format!("freezer-garage-{}-{test}", std::process::id()));
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run garage.sh");
        let mut garage = Garage {
            dir,
            env: HashMap::new(),
            _serial: serial,
        };
        assert!(
            out.status.success(),
            "garage.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                garage.env.insert(k.to_string(), v.to_string());
            }
        }
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "FREEZER_S3_ENDPOINT",
            "AWS_REGION",
        ] {
            assert!(garage.env.contains_key(k), "garage.sh start printed no {k}");
        }
        Some(garage)
    }

    fn credentials(&self) -> S3Credentials {
        S3Credentials {
            access_key_id: self.env["AWS_ACCESS_KEY_ID"].clone(),
            secret_access_key: self.env["AWS_SECRET_ACCESS_KEY"].clone(),
        }
    }

    /// The configuration `from_lookup` builds from the script's variables, with the test key.
    fn config(&self, container: &str) -> S3Config {
        let mut config = S3Config::from_lookup(container, |k| self.env.get(k).cloned()).unwrap();
        config.credentials = Some(self.credentials());
        config
    }

    fn storage(&self, container: &str) -> S3Storage {
        S3Storage::new(self.config(container)).unwrap()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Deterministic bytes that differ between objects (so a mixed-up part or range shows).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn put_get_range_list_delete() {
    let Some(garage) = Garage::start("basic") else {
        return;
    };
    let s = garage.storage(&format!("{BUCKET}/some/prefix"));
    assert_eq!(
        s.describe("a/b"),
        "s3://freezer-test/some/prefix/a/b",
        "describe names bucket, prefix and key"
    );

    s.put("host_name/c/0_x/data/00000000", b"hello world")
        .unwrap();
    s.put("host_name/c/0_x/data/00000001", &pattern(100_000, 1))
        .unwrap();
    s.put("host_name/c/0_x/manifest.json", b"{}").unwrap();
    s.put("other/empty", b"").unwrap();
    s.sync(&["other/empty".to_string()]).unwrap();

    assert_eq!(
        s.get("host_name/c/0_x/data/00000000").unwrap(),
        b"hello world"
    );
    assert_eq!(
        s.get("host_name/c/0_x/data/00000001").unwrap(),
        pattern(100_000, 1)
    );
    assert_eq!(s.get("other/empty").unwrap(), b"");
    // Overwrite replaces.
    s.put("host_name/c/0_x/manifest.json", b"{\"v\":2}")
        .unwrap();
    assert_eq!(
        s.get("host_name/c/0_x/manifest.json").unwrap(),
        b"{\"v\":2}"
    );

    // Ranges: inside, clipped at the end, past the end, empty.
    let key = "host_name/c/0_x/data/00000000";
    assert_eq!(s.get_range(key, 1, 3).unwrap(), b"ell");
    assert_eq!(s.get_range(key, 6, 100).unwrap(), b"world");
    assert_eq!(s.get_range(key, 11, 5).unwrap(), b"");
    assert_eq!(s.get_range(key, 500, 5).unwrap(), b"");
    assert_eq!(s.get_range(key, 0, 0).unwrap(), b"");
    let big = "host_name/c/0_x/data/00000001";
    assert_eq!(
        s.get_range(big, 65_000, 20_000).unwrap(),
        pattern(100_000, 1)[65_000..85_000]
    );

    // Keys relative to the container, in order, with sizes and times.
    let all = s.list("").unwrap();
    let keys: Vec<_> = all.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "host_name/c/0_x/data/00000000",
            "host_name/c/0_x/data/00000001",
            "host_name/c/0_x/manifest.json",
            "other/empty"
        ]
    );
    assert_eq!(all[1].size, 100_000);
    assert_eq!(all[3].size, 0);
    let now = freezer_worker::timestamp::Timestamp::now().micros;
    for o in &all {
        let m = o.modified.expect("S3 reports last-modified").micros;
        assert!((now - m).abs() < 600_000_000, "{o:?} modified far from now");
    }
    let data: Vec<_> = s
        .list("host_name/c/0_x/data/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(data.len(), 2);
    assert_eq!(s.list("host_name/c/0_x/manifest").unwrap().len(), 1);
    assert!(s.list("nothing/").unwrap().is_empty());

    // Another prefix of the same bucket sees none of it; the bucket root sees it under the prefix.
    let sibling = garage.storage(&format!("{BUCKET}/some/prefix2"));
    assert!(sibling.list("").unwrap().is_empty());
    let root = garage.storage(BUCKET);
    assert!(root
        .list("")
        .unwrap()
        .iter()
        .any(|o| o.key == "some/prefix/other/empty"));

    // Missing objects are NotFound and named.
    let err = s.get("host_name/c/0_x/index").unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(
        err.message
            .contains("s3://freezer-test/some/prefix/host_name/c/0_x/index"),
        "{err}"
    );
    let err = s.get_range("missing", 0, 10).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    // Delete, idempotently.
    s.delete("other/empty").unwrap();
    s.delete("other/empty").unwrap();
    s.delete("never/existed").unwrap();
    assert_eq!(s.get("other/empty").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(s.list("").unwrap().len(), 3);
}

#[test]
fn multipart_upload_round_trips() {
    let Some(garage) = Garage::start("multipart") else {
        return;
    };
    let s = garage.storage(&format!("{BUCKET}/mp"));
    // Two whole parts and a partial one; and one byte over a single part.
    let len = 2 * MULTIPART_PART_SIZE + 3 * 1024 * 1024 + 17;
    let data = pattern(len, 7);
    s.put("big", &data).unwrap();
    let back = s.get("big").unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "multipart object differs");
    // A range across the first part boundary.
    let at = MULTIPART_PART_SIZE as u64 - 100;
    assert_eq!(
        s.get_range("big", at, 200).unwrap(),
        data[at as usize..at as usize + 200]
    );
    let listed = s.list("big").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, len as u64);

    let just_over = pattern(MULTIPART_PART_SIZE + 1, 8);
    s.put("just-over", &just_over).unwrap();
    assert!(s.get("just-over").unwrap() == just_over);
    let exactly = pattern(MULTIPART_PART_SIZE, 9);
    s.put("exactly", &exactly).unwrap();
    assert!(s.get("exactly").unwrap() == exactly);
}

#[test]
fn list_pages_through_more_than_1000_keys() {
    let Some(garage) = Garage::start("paging") else {
        return;
    };
    let s = garage.storage(&format!("{BUCKET}/paging"));
    const N: usize = 2345;
    let keys: Vec<String> = (0..N).map(|i| format!("dir/{:08}", i)).collect();
    // Parallel puts through the one client: the storage is shared by the engine's threads too.
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (s, keys) = (&s, &keys);
            scope.spawn(move || {
                for (i, key) in keys.iter().enumerate().skip(t).step_by(8) {
                    s.put(key, format!("object {i}").as_bytes()).unwrap();
                }
            });
        }
    });
    s.put("elsewhere", b"x").unwrap();

    let listed = s.list("dir/").unwrap();
    assert_eq!(listed.len(), N, "every key, over several pages");
    let got: Vec<_> = listed.iter().map(|o| o.key.clone()).collect();
    assert_eq!(got, keys, "in key order, relative to the container");
    assert_eq!(listed[1234].size, "object 1234".len() as u64);
    assert_eq!(s.list("").unwrap().len(), N + 1);
    assert_eq!(s.list("dir/0000001").unwrap().len(), 10);
    assert_eq!(s.get("dir/00002000").unwrap(), b"object 2000");
}

#[test]
fn wrong_credentials_fail_clearly() {
    let Some(garage) = Garage::start("credentials") else {
        return;
    };
    let mut wrong_secret = garage.config(&format!("{BUCKET}/x"));
    wrong_secret.credentials = Some(S3Credentials {
        access_key_id: garage.credentials().access_key_id,
        secret_access_key: "0".repeat(64),
    });
    let mut unknown_key = garage.config(&format!("{BUCKET}/x"));
    unknown_key.credentials = Some(S3Credentials {
        access_key_id: "GKffffffffffffffffffffffff".into(),
        secret_access_key: "1".repeat(64),
    });
    for config in [wrong_secret, unknown_key] {
        let s = S3Storage::new(config).unwrap();
        let errors = [
            s.put("k", b"v").unwrap_err(),
            s.get("k").unwrap_err(),
            s.list("").unwrap_err(),
            s.delete("k").unwrap_err(),
        ];
        for err in errors {
            eprintln!("wrong credentials: {err}");
            assert_eq!(err.kind, ErrorKind::Failure, "{err}");
            assert!(!err.is_transient(), "denied access is permanent: {err}");
            assert!(err.message.contains("access denied"), "{err}");
            assert!(
                err.guidance
                    .as_deref()
                    .is_some_and(|g| g.contains("credentials")),
                "says what to check: {err:?}"
            );
            assert!(
                err.message.contains("freezer-test"),
                "names the bucket: {err}"
            );
            assert!(!err.message.contains(&"0".repeat(64)), "no secret: {err}");
        }
    }
    // The right key still works, and nothing was written by the refused put.
    let s = garage.storage(&format!("{BUCKET}/x"));
    assert_eq!(s.get("k").unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn missing_bucket_fails_clearly() {
    let Some(garage) = Garage::start("nobucket") else {
        return;
    };
    let s = garage.storage("no-such-bucket/p");
    let errors = [
        s.put("k", b"v").unwrap_err(),
        s.put("big", &pattern(MULTIPART_PART_SIZE + 10, 3))
            .unwrap_err(),
        s.get("k").unwrap_err(),
        s.get_range("k", 0, 1).unwrap_err(),
        s.list("").unwrap_err(),
    ];
    for err in errors {
        eprintln!("missing bucket: {err}");
        // Not NotFound: the engine reads that as "this object is missing".
        assert_eq!(err.kind, ErrorKind::Failure, "{err}");
        assert!(
            err.message.contains("\"no-such-bucket\" does not exist"),
            "{err}"
        );
        assert!(!err.is_transient(), "a missing bucket is permanent: {err}");
    }
    let err = s.check_container().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.message.contains("does not exist"), "{err}");
}

#[test]
fn unreachable_endpoint_fails_clearly() {
    let Some(garage) = Garage::start("unreachable") else {
        return;
    };
    let mut config = garage.config(&format!("{BUCKET}/x"));
    // Nothing listens on port 1.
    config.endpoint = Some("http://127.0.0.1:1".into());
    let s = S3Storage::new(config).unwrap();
    let err = s.get("k").unwrap_err();
    eprintln!("unreachable: {err}");
    assert_eq!(err.kind, ErrorKind::Failure, "{err}");
    assert!(
        err.is_transient(),
        "an unreachable endpoint may come back: {err}"
    );
    assert!(
        err.message
            .contains("cannot reach S3 endpoint http://127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn configuration_from_the_environment() {
    let Some(garage) = Garage::start("environment") else {
        return;
    };
    // The standard AWS variables and FREEZER_S3_ENDPOINT, as a user would set them (SERIAL is
    // held, so no other test reads the environment meanwhile).
    for (k, v) in &garage.env {
        std::env::set_var(k, v);
    }
    let config = S3Config::from_env(&format!("s3://{BUCKET}/env/")).unwrap();
    for k in garage.env.keys() {
        std::env::remove_var(k);
    }
    assert!(
        config.credentials.is_none(),
        "credentials come from the AWS chain"
    );
    assert!(config.force_path_style && config.checksums_when_required);
    assert_eq!(config.prefix, "env");
    for (k, v) in &garage.env {
        std::env::set_var(k, v);
    }
    let s = S3Storage::new(config);
    let result = s.and_then(|s| {
        s.put("a", b"from the environment")?;
        s.get("a")
    });
    for k in garage.env.keys() {
        std::env::remove_var(k);
    }
    assert_eq!(result.unwrap(), b"from the environment");
}
