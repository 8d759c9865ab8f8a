//! Real servers the storage tests talk to, each test starting its own on free loopback ports (so
//! tests run in parallel and a test may stop its server in the middle of a run): garage (S3),
//! through `scripts/services/garage.sh`, and sshd, through `scripts/services/sshd.sh`.
//!
//! A server that is not installed makes its tests SKIP with a message, unless
//! `FREEZER_REQUIRE_SERVICES=1` (set by `scripts/test.sh`, which installs them), where it fails.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Whether a missing server fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("FREEZER_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (returns false after saying why) or fails when a server is missing.
pub fn available(what: &str, installed: bool, how: &str) -> bool {
    if installed {
        return true;
    }
    assert!(
        !services_required(),
        "{what} is not installed and FREEZER_REQUIRE_SERVICES=1: {how}"
    );
    eprintln!("SKIPPED: {what} is not installed ({how})");
    false
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services")
}

/// Ports handed out in this process, so two tests never pick the same base.
static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A base port `p` such that `p..p+span` are free now and not handed out before.
pub fn free_port_block(span: u16) -> u16 {
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    let seed = (std::process::id() as u16).wrapping_mul(97);
    for i in 0..2000u16 {
        let base = 20_000 + (seed.wrapping_add(i.wrapping_mul(span + 1)) % 30_000);
        let ports: Vec<u16> = (base..base + span).collect();
        if ports.iter().any(|p| taken.contains(p)) {
            continue;
        }
        if ports
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            taken.extend(ports);
            return base;
        }
    }
    panic!("no free block of {span} loopback ports");
}

fn garage_installed() -> bool {
    let on_path = Command::new("garage")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    on_path
        || std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".cargo/bin/garage"))
            .is_some_and(|p| p.is_file())
}

/// A garage S3 server of this test; stopped and removed on drop.
pub struct Garage {
    dir: PathBuf,
    base: u16,
    /// The environment that reaches it (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `FREEZER_S3_ENDPOINT`, `AWS_REGION`).
    pub env: HashMap<String, String>,
}

/// The bucket garage.sh creates.
pub const BUCKET: &str = "freezer-test";

impl Garage {
    /// Starts a garage for `test`, or `None` when it is not installed (and not required).
    pub fn start(test: &str) -> Option<Garage> {
        if !available(
            "garage",
            garage_installed(),
            "run scripts/services/garage.sh install",
        ) {
            return None;
        }
        let base = free_port_block(4);
        let dir = std::env::temp_dir().join(format!(
            "freezer-e2e-garage-{}-{test}-{base}",
            std::process::id()
        ));
        let mut g = Garage {
            dir,
            base,
            env: HashMap::new(),
        };
        let out = g.script("start");
        for line in out.lines() {
            if let Some((k, v)) = line.split_once('=') {
                g.env.insert(k.to_string(), v.to_string());
            }
        }
        assert!(
            g.env.contains_key("FREEZER_S3_ENDPOINT"),
            "garage.sh printed {out}"
        );
        Some(g)
    }

    fn script(&self, cmd: &str) -> String {
        let out = Command::new("bash")
            .arg(scripts_dir().join("garage.sh"))
            .arg(cmd)
            .arg(&self.dir)
            .env("GARAGE_PORT_BASE", self.base.to_string())
            .output()
            .expect("run garage.sh");
        assert!(
            out.status.success(),
            "garage.sh {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server, keeping its data (the S3 endpoint goes away).
    pub fn halt(&self) {
        self.script("halt");
    }

    /// Starts the halted server again with the same data.
    pub fn resume(&self) {
        self.script("start");
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.env["FREEZER_S3_ENDPOINT"]
    }

    /// A worker configuration entry `[storages.<name>]` for `bucket/prefix` on this server, with
    /// the secret in a file under `dir`.
    pub fn storage_entry(&self, name: &str, container: &str, dir: &Path) -> String {
        let secret = dir.join(format!("{name}.secret"));
        fs::write(&secret, format!("{}\n", self.env["AWS_SECRET_ACCESS_KEY"])).unwrap();
        format!(
            "[storages.{name}]\ntype = \"s3\"\ncontainer = \"{container}\"\nendpoint = \"{}\"\n\
             region = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n",
            self.endpoint(),
            self.env["AWS_REGION"],
            self.env["AWS_ACCESS_KEY_ID"],
            secret.display()
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(scripts_dir().join("garage.sh"))
            .arg("stop")
            .arg(&self.dir)
            .env("GARAGE_PORT_BASE", self.base.to_string())
            .output();
    }
}

/// An OpenSSH server of this test (`scripts/services/sshd.sh`) with its own host key, client
/// key and known_hosts; stopped and removed on drop.
pub struct Sshd {
    dir: PathBuf,
    port: u16,
    /// What `sshd.sh start` printed (`FREEZER_TEST_SSH_HOST`, `_PORT`, `_USER`, `_KEY`,
    /// `_KNOWN_HOSTS`, `_DIR`).
    pub env: HashMap<String, String>,
}

impl Sshd {
    /// Starts an sshd for `test`, or `None` when it is not installed (and not required).
    pub fn start(test: &str) -> Option<Sshd> {
        if !available(
            "sshd",
            Path::new("/usr/sbin/sshd").is_file(),
            "run scripts/services/sshd.sh install (apt-get install openssh-server)",
        ) {
            return None;
        }
        let port = free_port_block(1);
        let dir = std::env::temp_dir().join(format!(
            "freezer-e2e-sshd-{}-{test}-{port}",
            std::process::id()
        ));
        let mut s = Sshd {
            dir,
            port,
            env: HashMap::new(),
        };
        let out = s.script("start");
        for line in out.lines() {
            if let Some((k, v)) = line.split_once('=') {
                s.env.insert(k.to_string(), v.to_string());
            }
        }
        assert!(
            s.env.contains_key("FREEZER_TEST_SSH_KEY"),
            "sshd.sh printed {out}"
        );
        Some(s)
    }

    fn script(&self, cmd: &str) -> String {
        let mut c = Command::new("bash");
        c.arg(scripts_dir().join("sshd.sh")).arg(cmd).arg(&self.dir);
        if cmd == "start" {
            c.arg(self.port.to_string());
        }
        let out = c.output().expect("run sshd.sh");
        assert!(
            out.status.success(),
            "sshd.sh {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server and its connections, keeping its keys and port.
    pub fn kill(&self) {
        self.script("kill");
    }

    /// Starts the killed server again.
    pub fn resume(&self) {
        self.script("start");
    }

    /// A worker configuration entry `[storages.<name>]` for the remote directory `container`,
    /// checking host keys against `known_hosts` (default: the server's own).
    pub fn storage_entry(
        &self,
        name: &str,
        container: &Path,
        known_hosts: Option<&Path>,
    ) -> String {
        let known = known_hosts
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(&self.env["FREEZER_TEST_SSH_KNOWN_HOSTS"]));
        format!(
            "[storages.{name}]\ntype = \"ssh\"\ncontainer = \"{}\"\nhost = \"{}\"\nport = {}\n\
             user = \"{}\"\nkey_file = \"{}\"\nknown_hosts = \"{}\"\n",
            container.display(),
            self.env["FREEZER_TEST_SSH_HOST"],
            self.env["FREEZER_TEST_SSH_PORT"],
            self.env["FREEZER_TEST_SSH_USER"],
            self.env["FREEZER_TEST_SSH_KEY"],
            known.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(scripts_dir().join("sshd.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}
