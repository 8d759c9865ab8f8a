//! A test's working area: temporary directories removed even when a test left read-only
//! directories behind, and the [`Fixture`] (source tree, container, passphrase, backup name) with
//! the worker commands run against it.

use crate::{compare_trees, run, run_ok, Out};
use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The hostname every test passes explicitly with `--hostname`.
pub const HOST: &str = "test-host";
/// The passphrase written by [`pass_file`].
pub const PASSPHRASE: &str = "e2e correct horse battery staple";
/// The codecs of `--compression`.
pub const CODECS: [&str; 5] = ["zstd", "gzip", "bzip2", "xz", "none"];

/// Writes a passphrase file (`PASSPHRASE` and a newline) in `dir` and returns its path.
pub fn pass_file(dir: &Path) -> PathBuf {
    let p = dir.join("passphrase");
    fs::write(&p, format!("{PASSPHRASE}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A temporary directory removed on drop, even when the test left read-only directories in it.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    /// A fresh directory `freezer-e2e-*` in the system's temporary directory.
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("freezer-e2e-")
            .tempdir()
            .expect("tempdir");
        TestDir { dir: Some(dir) }
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            make_writable(dir.path());
            let _ = fs::remove_dir_all(dir.path());
        }
    }
}

/// Gives the owner rwx on every directory below `root` so that it can be removed.
pub fn make_writable(root: &Path) {
    let Ok(md) = fs::symlink_metadata(root) else {
        return;
    };
    if md.is_dir() {
        let _ = fs::set_permissions(
            root,
            fs::Permissions::from_mode((md.mode() & 0o7777) | 0o700),
        );
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// A test's working area: `src/` (the tree to back up), `container/`, a passphrase file, and a
/// backup name. Everything is removed on drop.
pub struct Fixture {
    /// The working area; everything below goes with it.
    pub tmp: TestDir,
    /// The tree to back up (`<tmp>/src`, created empty).
    pub src: PathBuf,
    /// The local container (`<tmp>/container`, created empty).
    pub container: PathBuf,
    /// The passphrase file (see [`pass_file`]).
    pub pass: PathBuf,
    /// The backup name the commands pass with `--backup-name`.
    pub name: String,
    /// The arguments naming where backups go, when not `--container <container>`: tests of
    /// other storages set them (e.g. `--config F --storage NAME`).
    pub location: Option<Vec<OsString>>,
}

impl Fixture {
    /// A fresh working area for backups named `name`.
    pub fn new(name: &str) -> Fixture {
        let tmp = TestDir::new();
        let src = tmp.path().join("src");
        let container = tmp.path().join("container");
        fs::create_dir(&src).unwrap();
        fs::create_dir(&container).unwrap();
        let pass = pass_file(tmp.path());
        Fixture {
            tmp,
            src,
            location: None,
            container,
            pass,
            name: name.to_string(),
        }
    }

    /// The working area's directory.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A fresh (not yet existing) path in the fixture, e.g. a restore target.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `--encrypt-pass-file <pass>`.
    pub fn enc(&self) -> Vec<OsString> {
        vec!["--encrypt-pass-file".into(), self.pass.clone().into()]
    }

    /// Arguments of `backup --json` of `path` into this fixture's container and name.
    pub fn backup_args<S: AsRef<OsStr>>(&self, path: &Path, extra: &[S]) -> Vec<OsString> {
        let mut a = self.cmd_args("backup", extra);
        a.splice(1..1, ["--path-to-backup".into(), path.into()]);
        a
    }

    /// Backs up `src` with `extra` arguments; returns the run whatever its exit code.
    pub fn try_backup<S: AsRef<OsStr>>(&self, extra: &[S]) -> Out {
        run(self.backup_args(&self.src, extra))
    }

    /// Backs up `src`, asserts exit 0 and returns the `--json` summary.
    #[track_caller]
    pub fn backup<S: AsRef<OsStr>>(&self, extra: &[S]) -> Value {
        let out = self.try_backup(extra);
        out.assert_code(0);
        let v = out.json();
        assert!(
            v["backup_id"].is_string(),
            "backup --json has no backup_id:\n{out}"
        );
        v
    }

    /// Arguments of `restore` into `target`.
    pub fn restore_args<S: AsRef<OsStr>>(&self, target: &Path, extra: &[S]) -> Vec<OsString> {
        let mut a = self.named_args("restore");
        a.extend(["--restore-abs-path".into(), target.into()]);
        a.extend(extra.iter().map(|s| s.as_ref().to_os_string()));
        a
    }

    /// Restores into `target` with `extra` arguments; returns the run whatever its exit code.
    pub fn try_restore<S: AsRef<OsStr>>(&self, target: &Path, extra: &[S]) -> Out {
        run(self.restore_args(target, extra))
    }

    /// Restores into `target`, asserting exit 0.
    #[track_caller]
    pub fn restore<S: AsRef<OsStr>>(&self, target: &Path, extra: &[S]) -> Out {
        let out = self.try_restore(target, extra);
        out.assert_code(0);
        out
    }

    /// `list --json` of this fixture's backup name, sorted by backup id.
    #[track_caller]
    pub fn list(&self) -> Vec<Value> {
        let out = run_ok(self.cmd_args::<&str>("list", &[]));
        let v = out.json();
        let mut items = v
            .as_array()
            .unwrap_or_else(|| panic!("list --json is not an array:\n{out}"))
            .clone();
        items.sort_by(|a, b| a["backup_id"].as_str().cmp(&b["backup_id"].as_str()));
        items
    }
}

impl Fixture {
    /// Arguments of `<cmd> <location> --backup-name N --hostname H --json` followed by `extra`,
    /// for the commands that take a backup name.
    pub fn cmd_args<S: AsRef<OsStr>>(&self, cmd: &str, extra: &[S]) -> Vec<OsString> {
        let mut a = self.named_args(cmd);
        a.push("--json".into());
        a.extend(extra.iter().map(|s| s.as_ref().to_os_string()));
        a
    }

    /// `<cmd> <location> --backup-name N --hostname H`.
    fn named_args(&self, cmd: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![cmd.into()];
        match &self.location {
            Some(l) => a.extend(l.iter().cloned()),
            None => a.extend(["--container".into(), self.container.clone().into()]),
        }
        a.extend([
            "--backup-name".into(),
            self.name.clone().into(),
            "--hostname".into(),
            HOST.into(),
        ]);
        a
    }

    /// `prune --json` of this fixture's name with `extra` (the policy); whatever its exit code.
    pub fn prune<S: AsRef<OsStr>>(&self, extra: &[S]) -> Out {
        run(self.cmd_args("prune", extra))
    }

    /// `verify --json` of this fixture's name with `extra`; whatever its exit code.
    pub fn verify<S: AsRef<OsStr>>(&self, extra: &[S]) -> Out {
        run(self.cmd_args("verify", extra))
    }

    /// `info --json` of this fixture's name with `extra`; whatever its exit code.
    pub fn info<S: AsRef<OsStr>>(&self, extra: &[S]) -> Out {
        run(self.cmd_args("info", extra))
    }

    /// The ids `list --json` shows for this fixture's name, oldest first.
    #[track_caller]
    pub fn listed_ids(&self) -> Vec<String> {
        self.list()
            .iter()
            .map(|b| b["backup_id"].as_str().expect("backup_id").to_string())
            .collect()
    }
}

/// The `backup_id`s of `backup --json` summaries, in their order.
pub fn backup_ids(summaries: &[Value]) -> Vec<String> {
    summaries
        .iter()
        .map(|s| s["backup_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for a backup (`child`, its stderr in `log`) that met a storage outage and checks the two
/// acceptable outcomes: it retried, then either completed (exactly one backup, which restores to
/// the source) or failed cleanly (exit 1, nothing visible). Never a panic or a hang.
pub fn assert_outage_ridden_out(fx: &Fixture, child: &mut std::process::Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the backup hung after the outage"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = fs::read_to_string(log).unwrap();
    assert!(
        stderr.contains("retry"),
        "the outage was met and retried:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    if status.success() {
        let list = fx.list();
        assert_eq!(list.len(), 1, "{list:#?}");
        let target = fx.path("restored-after-outage");
        fx.restore(&target, &[] as &[&str]);
        compare_trees(&fx.src, &target);
    } else {
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(fx.list().is_empty(), "a failed backup is not visible");
    }
}
