//! `SshStorage` against a real OpenSSH server on loopback. Each test starts its own sshd through
//! `scripts/services/sshd.sh start <tmpdir> <port>` on a free port (so the tests run in parallel)
//! and stops it with a drop guard. The server runs as the current user on this machine, so the
//! remote container is a local directory the tests can also inspect directly.
//!
//! When `/usr/sbin/sshd` is missing the tests skip with a message (`scripts/services/sshd.sh
//! install` installs it), unless `FREEZER_REQUIRE_SERVICES=1`, which makes them fail instead.

use freezer_worker::error::{Error, ErrorKind};
use freezer_worker::storage::{SshConfig, SshStorage, Storage};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/sshd.sh")
}

/// Ports handed out in this process, so two tests never try the same one.
static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port nothing listens on right now (bound and released), not given to another test.
fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let mut ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if ports.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// A running sshd; stops it (and removes its directory) when dropped.
struct Sshd {
    dir: PathBuf,
    port: u16,
    env: HashMap<String, String>,
}

impl Sshd {
    /// Starts an sshd, or returns `None` (after saying why) when OpenSSH's server is missing and
    /// `FREEZER_REQUIRE_SERVICES=1` is not set.
    fn start(test: &str) -> Option<Sshd> {
        if !Path::new("/usr/sbin/sshd").exists() {
            let message =
                format!("{test}: /usr/sbin/sshd is missing (run scripts/services/sshd.sh install)");
            if std::env::var("FREEZER_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("FREEZER_REQUIRE_SERVICES=1 but {message}");
            }
            eprintln!("SKIPPED {message}");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("freezer-sshd-{}-{test}", std::process::id()));
        let mut last_error = String::new();
        // A port freed by the probe can be taken by someone else before sshd binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            let out = Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(&dir)
                .arg(port.to_string())
                .output()
                .expect("run sshd.sh");
            let mut sshd = Sshd {
                dir: dir.clone(),
                port,
                env: HashMap::new(),
            };
            if !out.status.success() {
                last_error = String::from_utf8_lossy(&out.stderr).into_owned();
                drop(sshd);
                continue;
            }
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((k, v)) = line.split_once('=') {
                    sshd.env.insert(k.to_string(), v.to_string());
                }
            }
            for k in [
                "FREEZER_TEST_SSH_HOST",
                "FREEZER_TEST_SSH_PORT",
                "FREEZER_TEST_SSH_USER",
                "FREEZER_TEST_SSH_KEY",
                "FREEZER_TEST_SSH_KNOWN_HOSTS",
            ] {
                assert!(sshd.env.contains_key(k), "sshd.sh start printed no {k}");
            }
            assert_eq!(sshd.env["FREEZER_TEST_SSH_PORT"], port.to_string());
            return Some(sshd);
        }
        panic!("sshd.sh start failed 5 times; last: {last_error}");
    }

    fn user(&self) -> &str {
        &self.env["FREEZER_TEST_SSH_USER"]
    }

    fn known_hosts(&self) -> PathBuf {
        PathBuf::from(&self.env["FREEZER_TEST_SSH_KNOWN_HOSTS"])
    }

    /// The configuration for the container `DIR/<container>` (absolute: the server is local).
    fn config(&self, container: &str) -> SshConfig {
        SshConfig::new(
            self.env["FREEZER_TEST_SSH_HOST"].clone(),
            self.port,
            self.user(),
            &self.env["FREEZER_TEST_SSH_KEY"],
            self.known_hosts(),
            self.local(container).to_str().unwrap(),
        )
    }

    fn storage(&self, container: &str) -> SshStorage {
        SshStorage::new(self.config(container)).unwrap()
    }

    /// The local path of `rel` under the server's directory (where the containers live).
    fn local(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn script(&self, command: &str) {
        let out = Command::new("bash")
            .arg(script())
            .arg(command)
            .arg(&self.dir)
            .output()
            .expect("run sshd.sh");
        assert!(
            out.status.success(),
            "sshd.sh {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server and drops its connections, as a crash would.
    fn kill(&self) {
        self.script("kill");
    }

    /// Starts the same server again (same port, same keys).
    fn restart(&self) {
        self.script("start");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Deterministic bytes that differ between objects (so a mixed-up chunk or range shows).
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

/// Every file under `dir` whose name contains `.tmp.` (debris of writes).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for ent in rd.flatten() {
        let path = ent.path();
        if path.is_dir() {
            out.extend(temp_files(&path));
        } else if ent.file_name().to_string_lossy().contains(".tmp.") {
            out.push(path);
        }
    }
    out
}

fn assert_permanent(err: &Error, needle: &str) {
    assert_eq!(err.kind, ErrorKind::Failure, "{err}");
    assert!(!err.is_transient(), "must not be retried: {err}");
    assert!(
        err.message.contains(needle),
        "expected {needle:?} in: {err}"
    );
}

#[test]
fn put_get_range_list_delete() {
    let Some(sshd) = Sshd::start("basic") else {
        return;
    };
    let s = sshd.storage("store");
    let root = sshd.local("store");
    s.prepare().unwrap();
    assert_eq!(
        s.describe("a/b"),
        format!(
            "ssh://{}@127.0.0.1:{}{}/a/b",
            sshd.user(),
            sshd.port,
            root.display()
        )
    );

    s.put("host_name/c/0_x/data/00000000", b"hello world")
        .unwrap();
    s.put("host_name/c/0_x/data/00000001", &pattern(1_000_000, 1))
        .unwrap();
    s.put("host_name/c/0_x/manifest.json", b"{}").unwrap();
    s.put("other/empty", b"").unwrap();
    s.sync(&[
        "host_name/c/0_x/data/00000001".to_string(),
        "other/empty".to_string(),
    ])
    .unwrap();
    // The objects are plain files in the container directory.
    assert_eq!(
        std::fs::read(root.join("host_name/c/0_x/data/00000000")).unwrap(),
        b"hello world"
    );

    assert_eq!(
        s.get("host_name/c/0_x/data/00000000").unwrap(),
        b"hello world"
    );
    assert_eq!(
        s.get("host_name/c/0_x/data/00000001").unwrap(),
        pattern(1_000_000, 1)
    );
    assert_eq!(s.get("other/empty").unwrap(), b"");
    // Replacing an object.
    s.put("host_name/c/0_x/manifest.json", b"{\"v\":2}")
        .unwrap();
    assert_eq!(
        s.get("host_name/c/0_x/manifest.json").unwrap(),
        b"{\"v\":2}"
    );

    // Ranges: inside, clipped at the end, past the end, empty, across read chunks.
    let key = "host_name/c/0_x/data/00000000";
    assert_eq!(s.get_range(key, 1, 3).unwrap(), b"ell");
    assert_eq!(s.get_range(key, 6, 100).unwrap(), b"world");
    assert_eq!(s.get_range(key, 11, 5).unwrap(), b"");
    assert_eq!(s.get_range(key, 500, 5).unwrap(), b"");
    assert_eq!(s.get_range(key, 0, 0).unwrap(), b"");
    let big = "host_name/c/0_x/data/00000001";
    assert_eq!(
        s.get_range(big, 200_000, 600_000).unwrap(),
        pattern(1_000_000, 1)[200_000..800_000]
    );
    assert_eq!(
        s.get_range(big, 999_990, 100).unwrap(),
        pattern(1_000_000, 1)[999_990..]
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
    assert_eq!(all[1].size, 1_000_000);
    assert_eq!(all[3].size, 0);
    let now = freezer_worker::timestamp::Timestamp::now().micros;
    for o in &all {
        let m = o.modified.expect("SFTP reports mtime").micros;
        assert!((now - m).abs() < 600_000_000, "{o:?} modified far from now");
    }
    assert_eq!(s.list("host_name/c/0_x/data/").unwrap().len(), 2);
    assert_eq!(s.list("host_name/c/0_x/manifest").unwrap().len(), 1);
    assert_eq!(s.list("host_name/c/0_x/data/0000000").unwrap().len(), 2);
    assert_eq!(s.list("host_name/c/0").unwrap().len(), 3);
    assert!(s.list("nothing/").unwrap().is_empty());
    assert_eq!(s.list("host_name/c/0_x/dat").unwrap().len(), 2);
    assert!(temp_files(&root).is_empty(), "{:?}", temp_files(&root));

    // Missing objects are NotFound and named.
    let err = s.get("host_name/c/0_x/index").unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(
        err.message.contains(&s.describe("host_name/c/0_x/index")),
        "{err}"
    );
    assert!(err.message.contains("is missing"), "{err}");
    let err = s.get_range("missing", 0, 10).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    let err = s.get("no/such/dir/object").unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    let err = s.sync(&["missing".to_string()]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    // Delete, idempotently; empty directories go with the last object, up to the container.
    s.delete("other/empty").unwrap();
    s.delete("other/empty").unwrap();
    s.delete("never/existed").unwrap();
    assert_eq!(s.get("other/empty").unwrap_err().kind, ErrorKind::NotFound);
    assert!(!root.join("other").exists());
    s.delete("host_name/c/0_x/data/00000000").unwrap();
    assert!(
        root.join("host_name/c/0_x/data").is_dir(),
        "still holds 00000001"
    );
    s.delete("host_name/c/0_x/data/00000001").unwrap();
    assert!(!root.join("host_name/c/0_x/data").exists());
    assert!(root.join("host_name/c/0_x/manifest.json").is_file());
    s.delete("host_name/c/0_x/manifest.json").unwrap();
    assert!(!root.join("host_name").exists());
    assert!(root.is_dir(), "the container itself stays");
    assert!(s.list("").unwrap().is_empty());
}

#[test]
fn many_keys_from_parallel_threads() {
    let Some(sshd) = Sshd::start("many") else {
        return;
    };
    let s = sshd.storage("store");
    const N: usize = 2345;
    let keys: Vec<String> = (0..N).map(|i| format!("dir/{:08}", i)).collect();
    // Parallel puts through the one storage: the engine shares it between threads too.
    let started = Instant::now();
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
    eprintln!("{N} puts from 8 threads: {:?}", started.elapsed());
    s.put("elsewhere", b"x").unwrap();
    s.put("dir2/sub/deeper/x", b"y").unwrap();

    let started = Instant::now();
    let listed = s.list("dir/").unwrap();
    let took = started.elapsed();
    eprintln!("listing {N} keys: {took:?}");
    assert!(took < Duration::from_secs(10), "listing took {took:?}");
    assert_eq!(listed.len(), N, "every key");
    let got: Vec<_> = listed.iter().map(|o| o.key.clone()).collect();
    assert_eq!(got, keys, "in key order, relative to the container");
    assert_eq!(listed[1234].size, "object 1234".len() as u64);
    assert_eq!(s.list("").unwrap().len(), N + 2);
    assert_eq!(s.list("dir/0000001").unwrap().len(), 10);
    assert_eq!(s.list("dir2/").unwrap().len(), 1);
    assert_eq!(s.get("dir/00002000").unwrap(), b"object 2000");
    assert!(temp_files(&sshd.local("store")).is_empty());

    // Parallel reads of different objects return each its own content.
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (s, keys) = (&s, &keys);
            scope.spawn(move || {
                for (i, key) in keys.iter().enumerate().skip(t).step_by(97) {
                    assert_eq!(s.get(key).unwrap(), format!("object {i}").as_bytes());
                }
            });
        }
    });
}

#[test]
fn large_objects_stream_in_chunks() {
    let Some(sshd) = Sshd::start("large") else {
        return;
    };
    let s = sshd.storage("store");
    const MIB: usize = 1 << 20;
    let data = pattern(64 * MIB, 5);
    // Warm up the connection so the timing is of the transfer only.
    s.put("warm", b"x").unwrap();

    let started = Instant::now();
    s.put("big", &data).unwrap();
    let put = started.elapsed();
    let started = Instant::now();
    let back = s.get("big").unwrap();
    let get = started.elapsed();
    eprintln!(
        "64 MiB object: put {:.0} MiB/s, get {:.0} MiB/s",
        64.0 / put.as_secs_f64(),
        64.0 / get.as_secs_f64()
    );
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the object read back differs");
    let started = Instant::now();
    s.sync(&["big".to_string()]).unwrap();
    eprintln!("fsync of 64 MiB: {:?}", started.elapsed());
    let listed = s.list("big").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
    let at = 3 * 255 * 1024 - 100;
    assert_eq!(
        s.get_range("big", at as u64, 3 * MIB as u64).unwrap(),
        data[at..at + 3 * MIB]
    );

    // Segments of 2-16 MiB from several threads at once.
    let segments: Vec<Vec<u8>> = (0..8)
        .map(|i| pattern((2 + 2 * i) * MIB, 10 + i as u64))
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (i, seg) in segments.iter().enumerate() {
            let s = &s;
            scope.spawn(move || s.put(&format!("data/{i:08}"), seg).unwrap());
        }
    });
    let total: usize = segments.iter().map(Vec::len).sum();
    eprintln!(
        "{} MiB in 8 parallel puts: {:.0} MiB/s",
        total / MIB,
        (total / MIB) as f64 / started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (i, seg) in segments.iter().enumerate() {
            let s = &s;
            scope.spawn(move || assert!(s.get(&format!("data/{i:08}")).unwrap() == *seg));
        }
    });
    eprintln!(
        "{} MiB in 8 parallel gets: {:.0} MiB/s",
        total / MIB,
        (total / MIB) as f64 / started.elapsed().as_secs_f64()
    );
    assert!(temp_files(&sshd.local("store")).is_empty());
}

#[test]
fn tidy_removes_empty_directories() {
    let Some(sshd) = Sshd::start("tidy") else {
        return;
    };
    let s = sshd.storage("store");
    let root = sshd.local("store");
    // A killed backup leaves empty directories; a live one has objects.
    std::fs::create_dir_all(root.join("h_n/1/0_a/data")).unwrap();
    std::fs::create_dir_all(root.join("h_n/1/1_b")).unwrap();
    std::fs::create_dir_all(root.join("h_n/2/0_c/data")).unwrap();
    std::fs::write(root.join("h_n/2/0_c/data/00000000"), b"x").unwrap();
    std::fs::create_dir_all(root.join("other/empty")).unwrap();

    s.tidy("h_n/").unwrap();
    assert!(!root.join("h_n/1").exists(), "empty tree removed");
    assert!(root.join("h_n/2/0_c/data/00000000").is_file());
    assert!(
        root.join("h_n").is_dir(),
        "the prefix directory itself stays"
    );
    assert!(root.join("other/empty").is_dir(), "outside the prefix");
    s.tidy("missing/").unwrap();
    s.tidy("").unwrap();
    assert!(
        root.join("other/empty").is_dir(),
        "tidy of the container root does nothing"
    );
}

#[test]
fn container_check_and_prepare() {
    let Some(sshd) = Sshd::start("container") else {
        return;
    };
    let s = sshd.storage("missing/deeper");
    let err = s.check_container().unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(
        err.message,
        format!(
            "container ssh://{}@127.0.0.1:{}{} does not exist",
            sshd.user(),
            sshd.port,
            sshd.local("missing/deeper").display()
        )
    );
    assert!(s.list("").unwrap().is_empty());
    s.prepare().unwrap();
    assert!(sshd.local("missing/deeper").is_dir());
    s.check_container().unwrap();
    s.prepare().unwrap();

    std::fs::write(sshd.local("a-file"), b"").unwrap();
    let err = sshd.storage("a-file").check_container().unwrap_err();
    assert_permanent(&err, "is not a directory");
}

#[test]
fn unknown_host_key_is_refused() {
    let Some(sshd) = Sshd::start("unknownkey") else {
        return;
    };
    let empty = sshd.local("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let missing = sshd.local("no_known_hosts");
    for (known_hosts, note) in [(&empty, ""), (&missing, "(the file does not exist)")] {
        let mut config = sshd.config("store");
        config.known_hosts = known_hosts.clone();
        let s = SshStorage::new(config).unwrap();
        for err in [s.put("k", b"v").unwrap_err(), s.list("").unwrap_err()] {
            eprintln!("unknown host key: {err}");
            assert_permanent(
                &err,
                &format!("host key of 127.0.0.1:{} (ssh-ed25519 SHA256:", sshd.port),
            );
            assert!(
                err.message.contains(&format!(
                    "is not in {}{}{note}: add it with `ssh-keyscan -p {} 127.0.0.1 >> {}`",
                    known_hosts.display(),
                    if note.is_empty() { "" } else { " " },
                    sshd.port,
                    known_hosts.display()
                )),
                "{err}"
            );
        }
    }
    assert!(!sshd.local("store").exists(), "nothing was written");
}

#[test]
fn changed_host_key_is_refused() {
    let Some(sshd) = Sshd::start("changedkey") else {
        return;
    };
    // Another server's key recorded for this host and port.
    let other = sshd.local("other_host_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let fields: Vec<_> = pubkey.split_whitespace().take(2).collect();
    let known_hosts = sshd.local("changed_known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "# other hosts\nexample.org {}\n[127.0.0.1]:{} {}\n",
            fields.join(" "),
            sshd.port,
            fields.join(" ")
        ),
    )
    .unwrap();
    let mut config = sshd.config("store");
    config.known_hosts = known_hosts.clone();
    let s = SshStorage::new(config).unwrap();
    let err = s.get("k").unwrap_err();
    eprintln!("changed host key: {err}");
    assert_permanent(
        &err,
        &format!("host key CHANGED for 127.0.0.1:{}", sshd.port),
    );
    assert!(err.message.contains("refusing"), "{err}");
    assert!(
        err.message
            .contains(&format!("{} line 3", known_hosts.display())),
        "{err}"
    );
}

#[test]
fn keyscan_and_hashed_known_hosts_are_accepted() {
    let Some(sshd) = Sshd::start("keyscan") else {
        return;
    };
    // What a user would do: ssh-keyscan into a known_hosts file, optionally hashed.
    let scanned = sshd.local("scanned_known_hosts");
    let out = Command::new("ssh-keyscan")
        .args(["-p", &sshd.port.to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "ssh-keyscan failed"
    );
    std::fs::write(&scanned, &out.stdout).unwrap();
    let mut config = sshd.config("store");
    config.known_hosts = scanned.clone();
    let s = SshStorage::new(config.clone()).unwrap();
    s.put("k", b"scanned").unwrap();

    let status = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&scanned)
        .output()
        .unwrap();
    assert!(status.status.success());
    let hashed = std::fs::read_to_string(&scanned).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let s = SshStorage::new(config).unwrap();
    assert_eq!(s.get("k").unwrap(), b"scanned");
}

#[test]
fn wrong_client_key_is_refused() {
    let Some(sshd) = Sshd::start("wrongkey") else {
        return;
    };
    let other = sshd.local("not_authorized");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let mut config = sshd.config("store");
    config.key_file = other.clone();
    let s = SshStorage::new(config).unwrap();
    let err = s.put("k", b"v").unwrap_err();
    eprintln!("wrong key: {err}");
    assert_permanent(
        &err,
        &format!(
            "authentication as {} on 127.0.0.1:{} with key {} failed",
            sshd.user(),
            sshd.port,
            other.display()
        ),
    );
    assert!(
        err.guidance
            .as_deref()
            .is_some_and(|g| g.contains("authorized_keys")),
        "says how to fix it: {err:?}"
    );

    // A key file that is missing or protected by a passphrase fails at once, clearly.
    let mut config = sshd.config("store");
    config.key_file = sshd.local("no_such_key");
    let err = SshStorage::new(config).unwrap_err();
    assert_permanent(&err, "cannot read SSH key file");
    let locked = sshd.local("locked_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret passphrase", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(status.success());
    let mut config = sshd.config("store");
    config.key_file = locked;
    let err = SshStorage::new(config).unwrap_err();
    assert_permanent(&err, "protected by a passphrase");
}

#[test]
fn unreachable_port_is_transient() {
    let Some(sshd) = Sshd::start("unreachable") else {
        return;
    };
    let mut config = sshd.config("store");
    config.port = free_port();
    let s = SshStorage::new(config.clone()).unwrap();
    let started = Instant::now();
    let err = s.get("k").unwrap_err();
    eprintln!("unreachable: {err}");
    assert_eq!(err.kind, ErrorKind::Failure, "{err}");
    assert!(
        err.is_transient(),
        "a server that is down may come back: {err}"
    );
    assert!(
        err.message.contains(&format!(
            "cannot connect to ssh://{}@127.0.0.1:{}",
            sshd.user(),
            config.port
        )),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn reconnects_after_the_server_restarts() {
    let Some(sshd) = Sshd::start("restart") else {
        return;
    };
    let s = sshd.storage("store");
    s.put("a", b"before").unwrap();

    // Server gone (with its connections): the next call fails, as a retry-able error.
    sshd.kill();
    let err = s.get("a").unwrap_err();
    eprintln!("while down: {err}");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.kind, ErrorKind::Failure, "{err}");
    let err = s.put("b", b"x").unwrap_err();
    assert!(err.is_transient(), "{err}");

    // Back: the next call connects again.
    sshd.restart();
    assert_eq!(s.get("a").unwrap(), b"before");
    s.put("b", b"after").unwrap();

    // Killed and restarted between two calls, with no call in between: no error at all.
    sshd.kill();
    sshd.restart();
    assert_eq!(s.get("b").unwrap(), b"after");
    assert_eq!(s.list("").unwrap().len(), 2);
}

#[test]
fn interrupted_put_leaves_no_object() {
    let Some(sshd) = Sshd::start("interrupted") else {
        return;
    };
    let s = sshd.storage("store");
    let root = sshd.local("store");
    s.put("seg", b"old").unwrap();
    let data = pattern(256 << 20, 3);
    let err = std::thread::scope(|scope| {
        let writer = scope.spawn(|| s.put("seg", &data));
        // Kill the server while the temporary file is growing.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let growing = temp_files(&root)
                .iter()
                .any(|p| p.metadata().is_ok_and(|m| m.len() > (1 << 20)));
            if growing {
                break;
            }
            assert!(Instant::now() < deadline, "the put never started writing");
            std::thread::sleep(Duration::from_millis(5));
        }
        let killed = Instant::now();
        sshd.kill();
        let result = writer.join().unwrap();
        // Promptly: not after a request timeout.
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "{:?}",
            killed.elapsed()
        );
        result
    });
    let err = err.expect_err("the put was interrupted mid-way");
    eprintln!("interrupted put: {err}");
    assert!(err.is_transient(), "{err}");
    sshd.restart();
    // The old object is intact; the interrupted write is only a `.tmp.` file, which list shows
    // (prune removes such debris).
    assert_eq!(s.get("seg").unwrap(), b"old");
    let listed: Vec<_> = s.list("").unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0], "seg");
    assert!(listed[1].starts_with("seg.tmp."), "{listed:?}");
}

/// A full remote disk: a 1 MiB tmpfs as the container. Needs root (mount); skipped otherwise.
#[test]
fn full_disk_is_a_permanent_error() {
    let Some(sshd) = Sshd::start("diskfull") else {
        return;
    };
    let mount_point = sshd.local("small");
    std::fs::create_dir_all(&mount_point).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount_point)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("SKIPPED full_disk_is_a_permanent_error: cannot mount a tmpfs (not root?)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount_point.clone());
    let s = sshd.storage("small");
    s.put("fits", &pattern(100_000, 1)).unwrap();
    let err = s.put("too-big", &pattern(4 << 20, 2)).unwrap_err();
    eprintln!("disk full: {err}");
    assert_permanent(&err, "the remote disk is full");
    assert!(err.message.contains(&s.describe("too-big")), "{err}");
    assert!(
        temp_files(&mount_point).is_empty(),
        "the temporary file was removed"
    );
    assert_eq!(s.get("fits").unwrap(), pattern(100_000, 1));
}
