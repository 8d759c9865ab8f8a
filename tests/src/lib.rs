//! Shared helpers for Freezer's end-to-end tests.
//!
//! The tests drive the real `freezer-worker` binary. These helpers find and run it (with a timeout, so an
//! engine that hangs fails the test instead of the suite), build source trees with every kind of entry
//! the engine must handle, take snapshots of trees (type, content hash, mode, owner, mtime in ns, link
//! target, xattrs, hard-link grouping) and compare them, and read backups on disk exactly as
//! `worker/FORMAT.md` describes them.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod fleet;
pub mod services;

/// The hostname every test passes explicitly with `--hostname`.
pub const HOST: &str = "test-host";
/// The passphrase written by [`pass_file`].
pub const PASSPHRASE: &str = "e2e correct horse battery staple";
/// How long one run of the worker may take before the test fails as hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// KDF iterations the tests ask for (`FREEZER_KDF_ITERATIONS`), for speed.
pub const TEST_KDF_ITERATIONS: u32 = 1000;
/// The codecs of `--compression`.
pub const CODECS: [&str; 5] = ["zstd", "gzip", "bzip2", "xz", "none"];

// ---------------------------------------------------------------------------------------------------
// Running the worker
// ---------------------------------------------------------------------------------------------------

/// Path of the `freezer-worker` binary: `$FREEZER_WORKER_BIN`, else `<target>/debug/freezer-worker`
/// next to the `deps/` directory holding the running test binary.
pub fn worker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FREEZER_WORKER_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "FREEZER_WORKER_BIN={} does not exist",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent directory");
    let mut tried = Vec::new();
    for dir in [deps.parent(), Some(deps)].into_iter().flatten() {
        let candidate = dir.join("freezer-worker");
        if candidate.is_file() {
            return candidate;
        }
        tried.push(candidate);
    }
    panic!(
        "freezer-worker binary not found (looked at {tried:?}): run `cargo build --workspace --bins` first"
    );
}

/// Path of the `freezer-dispatcher` binary: `$FREEZER_DISPATCHER_BIN`, else
/// `<target>/debug/freezer-dispatcher` next to the `deps/` directory holding the test binary.
pub fn dispatcher_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FREEZER_DISPATCHER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent directory");
    for dir in [deps.parent(), Some(deps)].into_iter().flatten() {
        let candidate = dir.join("freezer-dispatcher");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("freezer-dispatcher binary not found: run `cargo build --workspace --bins` first");
}

/// A `Command` for the dispatcher with no inherited `FREEZER_*` settings and stdin closed.
pub fn dispatcher() -> Command {
    let mut cmd = Command::new(dispatcher_bin());
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"FREEZER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd.stdin(Stdio::null());
    cmd
}

/// A `Command` for the worker with a clean, deterministic environment: no inherited `FREEZER_*`
/// settings, fast key derivation, no colours, stdin closed.
pub fn worker() -> Command {
    let mut cmd = Command::new(worker_bin());
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"FREEZER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("FREEZER_KDF_ITERATIONS", TEST_KDF_ITERATIONS.to_string());
    cmd.env("NO_COLOR", "1");
    cmd.env("RUST_BACKTRACE", "1");
    cmd.stdin(Stdio::null());
    cmd
}

/// Whether the tests run as root (owners can be set and are compared then).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// What a finished process did.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmd: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Exit code, or -1 when killed by a signal.
    pub fn code(&self) -> i32 {
        self.code.unwrap_or(-1)
    }

    /// Stdout parsed as one JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{self}"))
    }

    /// Panics (showing the whole run) unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "expected exit code {code}:\n{self}");
        self
    }

    /// Panics unless the process ended normally (exit code, not a signal) and did not panic.
    #[track_caller]
    pub fn assert_no_panic(&self) -> &Self {
        assert!(
            self.code.is_some(),
            "killed by signal {:?}:\n{self}",
            self.signal
        );
        assert_ne!(self.code(), 101, "the worker panicked:\n{self}");
        assert!(
            !self.stderr.contains("panicked at"),
            "the worker panicked:\n{self}"
        );
        self
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.cmd)?;
        writeln!(f, "exit code: {:?} signal: {:?}", self.code, self.signal)?;
        writeln!(f, "--- stdout ---\n{}", truncate(&self.stdout, 6000))?;
        write!(f, "--- stderr ---\n{}", truncate(&self.stderr, 6000))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... ({} bytes more)", &s[..end], s.len() - end)
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
            s.push_str(&format!("{a:?}"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` to completion, collecting its output; kills it and panics after `timeout`.
pub fn run_command(cmd: &mut Command, timeout: Duration) -> Out {
    let desc = describe(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{desc}`: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
            panic!("`{desc}` did not finish within {timeout:?} (killed); stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    Out {
        cmd: desc,
        code: status.code(),
        signal: status.signal(),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// Runs the worker with `args`.
pub fn run<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_command(worker().args(args), DEFAULT_TIMEOUT)
}

/// Runs the worker with `args` and panics (with its output) unless it exits 0.
#[track_caller]
pub fn run_ok<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run(args);
    out.assert_code(0);
    out
}

/// Writes a passphrase file (`PASSPHRASE` and a newline) in `dir` and returns its path.
pub fn pass_file(dir: &Path) -> PathBuf {
    let p = dir.join("passphrase");
    fs::write(&p, format!("{PASSPHRASE}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------------
// Temporary directories and fixtures
// ---------------------------------------------------------------------------------------------------

/// A temporary directory removed on drop, even when the test left read-only directories in it.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("freezer-e2e-")
            .tempdir()
            .expect("tempdir");
        TestDir { dir: Some(dir) }
    }

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
    pub tmp: TestDir,
    pub src: PathBuf,
    pub container: PathBuf,
    pub pass: PathBuf,
    pub name: String,
    /// The arguments naming where backups go, when not `--container <container>`: tests of
    /// other storages set them (e.g. `--config F --storage NAME`).
    pub location: Option<Vec<OsString>>,
}

impl Fixture {
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

// ---------------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), incompressible enough for the tests.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_random(seed, &mut out);
    out
}

fn fill_random(seed: u64, buf: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Writes `len` pseudo-random bytes to `path`, streaming.
pub fn write_random_file(path: &Path, seed: u64, len: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut n = 0u64;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        fill_random(
            seed.wrapping_add(n.wrapping_mul(0x1000_0001)),
            &mut buf[..k],
        );
        f.write_all(&buf[..k]).unwrap();
        left -= k as u64;
        n += 1;
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// Flips all bits of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0xff;
    f.write_all_at(&b, offset).unwrap();
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

pub fn mkfifo(p: &Path, mode: u32) {
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mkfifo(cstr(p).as_ptr(), mode as libc::mode_t) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn mknod_char(p: &Path, mode: u32, major: u32, minor: u32) {
    let dev = libc::makedev(major, minor);
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mknod(cstr(p).as_ptr(), libc::S_IFCHR | mode as libc::mode_t, dev) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// Sets mtime (and atime) of `p` without following symlinks.
pub fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(p, t, t)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

/// Joins a relative path given as bytes (possibly not UTF-8).
pub fn join_bytes(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

/// Name with a non-UTF-8 byte sequence.
pub const NON_UTF8_NAME: &[u8] = b"bad-\xff\xfe-name.bin";

/// A tree description for [`make_tree`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeOpts {
    /// A 3 GiB sparse file with a few data blocks.
    pub sparse: bool,
    /// A fifo, and (as root) a character device.
    pub special: bool,
    /// `user.*` xattrs (skipped when the filesystem refuses them).
    pub xattrs: bool,
    /// Foreign owners, including ids >= 2^21 (only as root).
    pub owners: bool,
}

impl TreeOpts {
    /// Everything but the sparse file.
    pub fn full() -> TreeOpts {
        TreeOpts {
            sparse: false,
            special: true,
            xattrs: true,
            owners: true,
        }
    }
}

/// What [`make_tree`] managed to create.
#[derive(Clone, Debug, Default)]
pub struct TreeInfo {
    pub xattrs: bool,
    pub owners: bool,
    pub devices: bool,
}

/// The size of the sparse file of [`TreeOpts::sparse`].
pub const SPARSE_SIZE: u64 = 3 << 30;

/// Builds a tree exercising what a backup must preserve: empty and small files, odd names (spaces,
/// newline, non-UTF-8, long component, a path over 300 bytes), empty directories, relative, absolute,
/// dangling and long symlinks, hard-link groups, special modes (0600, 0755, 0444, setuid, setgid and
/// sticky directories, a read-only directory with content), nanosecond mtimes on every entry, and
/// optionally xattrs, foreign owners, a fifo and a device, and a sparse 3 GiB file.
pub fn make_tree(root: &Path, opts: &TreeOpts) -> TreeInfo {
    let mut info = TreeInfo::default();
    fs::create_dir_all(root).unwrap();
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
    };

    // Files of various sizes around tar's 512-byte blocks.
    w("empty.txt", b"");
    w("one.txt", b"x");
    w("f511.bin", &random_bytes(511, 511));
    w("f512.bin", &random_bytes(512, 512));
    w("f513.bin", &random_bytes(513, 513));
    w("f10k.bin", &random_bytes(10_000, 10_000));
    w("f1m.bin", &random_bytes(1 << 20, 1 << 20));
    w("text.txt", "the quick brown fox\n".repeat(500).as_bytes());
    w("sub/file.txt", b"content of sub/file.txt\n");
    w("sub/inner/deeper.txt", b"deeper\n");

    // Odd names.
    w("with space.txt", b"spaces\n");
    w("new\nline.txt", b"newline in name\n");
    w("h\u{e9}llo w\u{f6}rld \u{2603}.txt", b"utf-8 name\n");
    w(" leading-space", b"leading space\n");
    fs::write(join_bytes(root, NON_UTF8_NAME), b"non-utf-8 name\n").unwrap();
    let long_name = format!("{}.txt", "L".repeat(200));
    w(&long_name, b"long name component\n");
    let mut deep = String::from("deep");
    while deep.len() < 300 {
        deep.push_str(&format!("/{}", "d".repeat(48)));
    }
    w(
        &format!("{deep}/file-at-the-bottom.txt"),
        b"a path over 300 bytes\n",
    );

    // Empty directories.
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("nested-empty/inner-empty")).unwrap();

    // Symlinks.
    let sl = |target: &str, rel: &str| std::os::unix::fs::symlink(target, root.join(rel)).unwrap();
    sl("sub/file.txt", "rel-link");
    sl("/etc/hostname", "abs-link");
    sl("does/not/exist", "dangling-link");
    sl("sub", "dir-link");
    sl("../one.txt", "sub/up-link");
    let long_target = format!("{}/target", "t".repeat(150));
    sl(&long_target, "long-target-link");
    sl("with space.txt", "link to spaced name");

    // Hard links: a group of three across directories and a pair.
    w("hl-a.txt", b"hard linked content, three names\n");
    fs::hard_link(root.join("hl-a.txt"), root.join("sub/hl-b.txt")).unwrap();
    fs::hard_link(root.join("hl-a.txt"), root.join("hl-c.txt")).unwrap();
    w("pair-1.bin", &random_bytes(77, 70_000));
    fs::hard_link(root.join("pair-1.bin"), root.join("sub/inner/pair-2.bin")).unwrap();

    // Modes.
    w("secret.txt", b"private\n");
    w("script.sh", b"#!/bin/sh\necho hi\n");
    w("readonly.txt", b"read only\n");
    w("suid.bin", b"setuid bit\n");
    fs::create_dir_all(root.join("setgid-dir")).unwrap();
    w("setgid-dir/in-setgid.txt", b"inside setgid dir\n");
    fs::create_dir_all(root.join("sticky-dir")).unwrap();
    w("ro-dir/inside-ro.txt", b"inside a read-only dir\n");
    fs::create_dir_all(root.join("ro-dir/ro-subdir")).unwrap();

    // Special files.
    if opts.special {
        mkfifo(&root.join("fifo"), 0o640);
        if is_root() {
            mknod_char(&root.join("chardev"), 0o600, 1, 3);
            info.devices = true;
        }
    }

    // Owners (root only); before chmod, because chown clears setuid.
    if opts.owners && is_root() {
        w("owned.txt", b"owned by someone else\n");
        std::os::unix::fs::chown(root.join("owned.txt"), Some(1234), Some(5678)).unwrap();
        w("big-ids.txt", b"ids over 2^21\n");
        std::os::unix::fs::chown(root.join("big-ids.txt"), Some(3_000_000), Some(3_000_001))
            .unwrap();
        fs::create_dir_all(root.join("owned-dir")).unwrap();
        std::os::unix::fs::chown(root.join("owned-dir"), Some(1234), Some(1234)).unwrap();
        std::os::unix::fs::lchown(root.join("rel-link"), Some(4321), Some(8765)).unwrap();
        info.owners = true;
    }

    // xattrs.
    if opts.xattrs {
        let set = |rel: &str, name: &str, value: &[u8]| xattr::set(root.join(rel), name, value);
        match set("one.txt", "user.comment", b"hello xattr") {
            Ok(()) => {
                set("f10k.bin", "user.binary", &[0, 1, 2, 0xff, 0xfe, 0, 10]).unwrap();
                set("f10k.bin", "user.empty", b"").unwrap();
                set("sub", "user.on-a-dir", b"directory attribute").unwrap();
                set("hl-a.txt", "user.linked", b"on a hard-linked file").unwrap();
                set("f1m.bin", "user.big", &random_bytes(9, 2000)).unwrap();
                info.xattrs = true;
            }
            Err(e) => eprintln!("note: user xattrs not supported here ({e}); not testing them"),
        }
    }

    // Sparse file: 3 GiB, data at the start, in the middle (unaligned) and at the very end.
    if opts.sparse {
        let f = fs::File::create(root.join("sparse.img")).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        f.write_all_at(&random_bytes(1, 4096), 0).unwrap();
        f.write_all_at(&random_bytes(2, 10_000), (1 << 30) + 12_345)
            .unwrap();
        f.write_all_at(&random_bytes(3, 4096), SPARSE_SIZE - 4096)
            .unwrap();
    }

    // Modes of files, then of directories (read-only directory last).
    chmod(&root.join("secret.txt"), 0o600);
    chmod(&root.join("script.sh"), 0o755);
    chmod(&root.join("readonly.txt"), 0o444);
    chmod(&root.join("suid.bin"), 0o4755);
    chmod(&root.join("setgid-dir"), 0o2755);
    chmod(&root.join("sticky-dir"), 0o1777);
    chmod(&root.join("ro-dir/ro-subdir"), 0o500);
    chmod(&root.join("ro-dir"), 0o555);

    set_tree_times(root);
    info
}

/// Gives every entry below and including `root` a distinct mtime with a nanosecond part (children
/// before their directory, so the directories keep theirs).
pub fn set_tree_times(root: &Path) {
    fn walk(p: &Path, rel: &[u8]) {
        let md = fs::symlink_metadata(p).unwrap();
        if md.is_dir() {
            let mut names: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                let mut r = rel.to_vec();
                r.push(b'/');
                r.extend_from_slice(n.as_bytes());
                walk(&p.join(&n), &r);
            }
        }
        let h = Sha256::digest(rel);
        let x = u64::from_le_bytes(h[..8].try_into().unwrap());
        let secs = 1_500_000_000 + (x % 200_000_000) as i64;
        let nanos = ((x >> 32) % 1_000_000_000) as u32 | 1;
        set_mtime(p, secs, nanos);
    }
    walk(root, b".");
}

// ---------------------------------------------------------------------------------------------------
// Snapshots and comparison
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

/// One entry of a tree, as lstat and friends see it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    pub size: u64,
    /// SHA-256 of the content (regular files).
    pub sha256: Option<String>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    pub rdev: u64,
    /// `user.*` xattrs.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For a regular file with other names in the same tree: the smallest of those paths.
    pub link_group: Option<Vec<u8>>,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
}

/// A tree: relative path (bytes; `.` for the root) to entry.
pub type Snapshot = BTreeMap<Vec<u8>, Entry>;

/// Takes a snapshot of the tree at `root` (lstat; symlinks are not followed).
pub fn snapshot(root: &Path) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    fn walk(
        p: &Path,
        rel: Vec<u8>,
        snap: &mut Snapshot,
        inodes: &mut HashMap<(u64, u64), Vec<Vec<u8>>>,
    ) {
        let md = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else {
            Kind::Socket
        };
        let mut xattrs = BTreeMap::new();
        if kind != Kind::Symlink {
            if let Ok(names) = xattr::list(p) {
                for n in names {
                    if n.as_bytes().starts_with(b"user.") {
                        if let Ok(Some(v)) = xattr::get(p, &n) {
                            xattrs.insert(n.as_bytes().to_vec(), v);
                        }
                    }
                }
            }
        }
        let sha256 = (kind == Kind::File).then(|| {
            if md.mode() & 0o400 == 0 && !is_root() {
                // Unreadable for us; compare everything but the content.
                "unreadable".to_string()
            } else {
                sha256_file(p)
            }
        });
        let target =
            (kind == Kind::Symlink).then(|| fs::read_link(p).unwrap().into_os_string().into_vec());
        if kind == Kind::File {
            inodes
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.clone());
        }
        snap.insert(
            rel.clone(),
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                size: if kind == Kind::File { md.size() } else { 0 },
                sha256,
                target,
                rdev: if matches!(kind, Kind::Char | Kind::Block) {
                    md.rdev()
                } else {
                    0
                },
                xattrs,
                link_group: None,
                blocks: md.blocks(),
            },
        );
        if kind == Kind::Dir {
            for e in fs::read_dir(p).unwrap_or_else(|e| panic!("readdir {}: {e}", p.display())) {
                let e = e.unwrap();
                let mut r = if rel == b"." {
                    Vec::new()
                } else {
                    let mut r = rel.clone();
                    r.push(b'/');
                    r
                };
                r.extend_from_slice(e.file_name().as_bytes());
                walk(&e.path(), r, snap, inodes);
            }
        }
    }
    walk(root, b".".to_vec(), &mut snap, &mut inodes);
    for (_, paths) in inodes {
        if paths.len() > 1 {
            let rep = paths.iter().min().unwrap().clone();
            for p in paths {
                snap.get_mut(&p).unwrap().link_group = Some(rep.clone());
            }
        }
    }
    snap
}

/// What [`diff_snapshots`] compares besides types, content and symlink targets.
#[derive(Clone, Copy, Debug)]
pub struct Compare {
    pub modes: bool,
    pub owners: bool,
    pub mtimes: bool,
    pub xattrs: bool,
    pub hardlinks: bool,
    /// Compare the root directory's own metadata (mode, owner, mtime, xattrs).
    pub root_meta: bool,
    /// Entries only in the actual tree are fine.
    pub allow_extra: bool,
}

impl Compare {
    /// Everything a restore must preserve; owners only when running as root.
    pub fn full() -> Compare {
        Compare {
            modes: true,
            owners: is_root(),
            mtimes: true,
            xattrs: true,
            hardlinks: true,
            root_meta: true,
            allow_extra: false,
        }
    }

    /// Types, content and symlink targets only.
    pub fn content() -> Compare {
        Compare {
            modes: false,
            owners: false,
            mtimes: false,
            xattrs: false,
            hardlinks: false,
            root_meta: false,
            allow_extra: false,
        }
    }
}

/// Printable form of a relative path.
pub fn show(rel: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(rel))
}

fn fmt_ns(ns: i128) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

/// Differences between an expected and an actual tree, one line each.
pub fn diff_snapshots(expected: &Snapshot, actual: &Snapshot, c: Compare) -> Vec<String> {
    let mut d = Vec::new();
    for (rel, e) in expected {
        let Some(a) = actual.get(rel) else {
            d.push(format!("{}: missing ({:?})", show(rel), e.kind));
            continue;
        };
        let p = show(rel);
        if e.kind != a.kind {
            d.push(format!(
                "{p}: type {:?} expected, found {:?}",
                e.kind, a.kind
            ));
            continue;
        }
        if e.sha256 != a.sha256 {
            d.push(format!(
                "{p}: content differs (size {} expected, found {})",
                e.size, a.size
            ));
        }
        if e.target != a.target {
            d.push(format!(
                "{p}: symlink target {} expected, found {}",
                show(e.target.as_deref().unwrap_or_default()),
                show(a.target.as_deref().unwrap_or_default())
            ));
        }
        if e.rdev != a.rdev {
            d.push(format!(
                "{p}: device {:#x} expected, found {:#x}",
                e.rdev, a.rdev
            ));
        }
        let is_root = rel.as_slice() == b".";
        if is_root && !c.root_meta {
            continue;
        }
        // Symlink permission bits are always 0777 on Linux and cannot be set.
        if c.modes && e.kind != Kind::Symlink && e.mode != a.mode {
            d.push(format!(
                "{p}: mode {:04o} expected, found {:04o}",
                e.mode, a.mode
            ));
        }
        if c.owners && (e.uid, e.gid) != (a.uid, a.gid) {
            d.push(format!(
                "{p}: owner {}:{} expected, found {}:{}",
                e.uid, e.gid, a.uid, a.gid
            ));
        }
        if c.mtimes && e.mtime_ns != a.mtime_ns {
            d.push(format!(
                "{p}: mtime {} expected, found {}",
                fmt_ns(e.mtime_ns),
                fmt_ns(a.mtime_ns)
            ));
        }
        if c.xattrs && e.xattrs != a.xattrs {
            d.push(format!(
                "{p}: xattrs {:?} expected, found {:?}",
                e.xattrs.keys().map(|k| show(k)).collect::<Vec<_>>(),
                a.xattrs.keys().map(|k| show(k)).collect::<Vec<_>>()
            ));
        }
        if c.hardlinks && e.link_group != a.link_group {
            d.push(format!(
                "{p}: hard-link group {} expected, found {}",
                e.link_group
                    .as_deref()
                    .map(show)
                    .unwrap_or_else(|| "none".into()),
                a.link_group
                    .as_deref()
                    .map(show)
                    .unwrap_or_else(|| "none".into())
            ));
        }
    }
    if !c.allow_extra {
        for (rel, a) in actual {
            if !expected.contains_key(rel) {
                d.push(format!("{}: unexpected {:?}", show(rel), a.kind));
            }
        }
    }
    d
}

/// Panics with every difference unless the tree at `actual` matches `expected`.
#[track_caller]
pub fn assert_tree(expected: &Snapshot, actual: &Path, c: Compare) {
    let d = diff_snapshots(expected, &snapshot(actual), c);
    assert!(
        d.is_empty(),
        "tree {} differs from what was backed up ({} differences):\n  {}",
        actual.display(),
        d.len(),
        d.iter().take(60).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// Compares two trees fully (see [`Compare::full`]); panics with the differences.
#[track_caller]
pub fn compare_trees(expected: &Path, actual: &Path) {
    assert_tree(&snapshot(expected), actual, Compare::full());
}

/// Regular files in `actual` whose content differs from the same path in `expected` (a partial
/// restore must not leave wrong content behind).
pub fn wrong_files(expected: &Snapshot, actual: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    if !actual.exists() {
        return bad;
    }
    for (rel, a) in snapshot(actual) {
        if a.kind != Kind::File {
            continue;
        }
        match expected.get(&rel) {
            Some(e) if e.kind == Kind::File && e.sha256 == a.sha256 => {}
            Some(e) => bad.push(format!(
                "{}: size {} (expected {} bytes, other content)",
                show(&rel),
                a.size,
                e.size
            )),
            None => bad.push(format!("{}: not in the source", show(&rel))),
        }
    }
    bad
}

/// Whether a directory is absent or empty.
pub fn absent_or_empty(p: &Path) -> bool {
    match fs::read_dir(p) {
        Ok(mut rd) => rd.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// A fingerprint of everything below `root` (path, type, size, content hash, mode): to prove that a
/// command wrote nothing.
pub fn fingerprint(root: &Path) -> BTreeMap<Vec<u8>, String> {
    snapshot(root)
        .into_iter()
        .map(|(k, e)| {
            let v = format!(
                "{:?} {} {:?} {:?} {:o}",
                e.kind, e.size, e.sha256, e.target, e.mode
            );
            (k, v)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// Backups on disk (worker/FORMAT.md)
// ---------------------------------------------------------------------------------------------------

/// The backup directory from a `backup --json` summary.
pub fn backup_dir(summary: &Value) -> PathBuf {
    PathBuf::from(
        summary["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"path\" in {summary}")),
    )
}

pub fn read_manifest(backup_dir: &Path) -> Value {
    let p = backup_dir.join("manifest.json");
    let bytes = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

pub fn write_manifest(backup_dir: &Path, m: &Value) {
    fs::write(
        backup_dir.join("manifest.json"),
        serde_json::to_vec_pretty(m).unwrap(),
    )
    .unwrap();
}

/// The segment files `data/NNNNNNNN` in order.
pub fn segment_paths(backup_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(backup_dir.join("data"))
        .unwrap_or_else(|e| panic!("read {}/data: {e}", backup_dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// All segments concatenated (`cat data/*`).
pub fn concat_segments(backup_dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for p in segment_paths(backup_dir) {
        out.extend(fs::read(p).unwrap());
    }
    out
}

/// Canonical JSON of FORMAT.md: keys sorted at every depth, no whitespace, non-ASCII as UTF-8.
pub fn canonical_json(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    s
}

fn write_canonical(v: &Value, s: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            s.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&serde_json::to_string(k).unwrap());
                s.push(':');
                write_canonical(&m[k.as_str()], s);
            }
            s.push('}');
        }
        Value::Array(a) => {
            s.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_canonical(x, s);
            }
            s.push(']');
        }
        other => s.push_str(&serde_json::to_string(other).unwrap()),
    }
}

/// The canonical bytes that `manifest_tag` covers: the manifest without `manifest_tag`.
pub fn manifest_tag_input(m: &Value) -> String {
    let mut m = m.clone();
    m.as_object_mut()
        .expect("manifest is an object")
        .remove("manifest_tag");
    canonical_json(&m)
}

/// Recomputes `manifest_tag` of an unencrypted manifest (SHA-256 of the canonical JSON).
pub fn retag_unencrypted_manifest(m: &mut Value) {
    let tag = sha256_hex(manifest_tag_input(m).as_bytes());
    m["manifest_tag"] = Value::String(tag);
}

/// Decodes the index of an unencrypted backup: the header line and the entries.
pub fn read_unencrypted_index(backup_dir: &Path) -> (Value, Vec<Value>) {
    let raw = fs::read(backup_dir.join("index")).unwrap();
    let text = zstd::decode_all(&raw[..]).expect("index is zstd");
    let mut lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let header: Value = serde_json::from_slice(lines.next().expect("index header")).unwrap();
    let entries = lines.map(|l| serde_json::from_slice(l).unwrap()).collect();
    (header, entries)
}

/// Every `manifest.json` below `root`.
pub fn find_manifests(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(&e.path(), out);
            } else if e.file_name() == "manifest.json" {
                out.push(e.path());
            }
        }
    }
    walk(root, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------------

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Parses a backup id `YYYYMMDDTHHMMSS.ffffffZ` into (seconds since the epoch, microseconds).
pub fn parse_backup_id(id: &str) -> (i64, u32) {
    let b = id.as_bytes();
    assert!(
        b.len() == 23 && b[8] == b'T' && b[15] == b'.' && b[22] == b'Z',
        "backup id {id:?} is not YYYYMMDDTHHMMSS.ffffffZ"
    );
    let n = |r: std::ops::Range<usize>| -> i64 {
        id[r]
            .parse()
            .unwrap_or_else(|_| panic!("bad backup id {id:?}"))
    };
    let days = days_from_civil(n(0..4), n(4..6) as u32, n(6..8) as u32);
    let secs = days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15);
    (secs, n(16..22) as u32)
}

/// `YYYY-MM-DDThh:mm:ss` (UTC) of `secs` since the epoch.
pub fn format_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A `--restore-from-date` that selects the backup `id`: the first whole second after it. Together
/// with [`wait_for_next_backup`] it is correct whether the engine reads the date as an instant or as
/// a whole second.
pub fn restore_date_for(id: &str) -> String {
    format_date(parse_backup_id(id).0 + 1)
}

/// Sleeps until the next backup's id will be at least two whole seconds after `id`'s second, so that
/// [`restore_date_for`] separates them.
pub fn wait_for_next_backup(id: &str) {
    let target =
        Duration::from_secs((parse_backup_id(id).0 + 2) as u64) + Duration::from_millis(50);
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now >= target {
            return;
        }
        std::thread::sleep(target - now);
    }
}

/// Sleeps until the wall clock is at least `seconds` whole seconds after the second backup `id` falls
/// in (plus a small margin): with `seconds = 1` the next backup lands in a second of its own, so that
/// [`date_of_backup`] selects it; with 2 or more, the seconds in between hold no backup.
pub fn wait_for_second_after(id: &str, seconds: u64) {
    let target =
        Duration::from_secs(parse_backup_id(id).0 as u64 + seconds) + Duration::from_millis(20);
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now >= target {
            return;
        }
        std::thread::sleep(target - now);
    }
}

/// `YYYY-MM-DDThh:mm:ss` of the second backup `id` was taken in: as `--restore-from-date` (inclusive of
/// its whole second) it selects `id` when no later backup shares that second.
pub fn date_of_backup(id: &str) -> String {
    format_date(parse_backup_id(id).0)
}

/// The backup id (`YYYYMMDDTHHMMSS.ffffffZ`) of `secs` since the epoch and `micros`.
pub fn format_backup_id(secs: i64, micros: u32) -> String {
    let d = format_date(secs).replace(['-', ':'], "");
    format!("{d}.{micros:06}Z")
}

/// The manifest time form (`YYYY-MM-DDThh:mm:ss.ffffffZ`) of `secs` and `micros`.
pub fn format_rfc3339_micros(secs: i64, micros: u32) -> String {
    format!("{}.{micros:06}Z", format_date(secs))
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Sets the mtime of every file and directory below (and including) `root` to `secs_ago` seconds
/// before now, without following symlinks: makes debris look old.
pub fn age_tree(root: &Path, secs_ago: i64) {
    let t = now_micros() / 1_000_000 - secs_ago;
    fn walk(p: &Path, t: i64) {
        let md = fs::symlink_metadata(p).unwrap();
        if md.is_dir() {
            for e in fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), t);
            }
        }
        set_mtime(p, t, 0);
    }
    walk(root, t);
}

/// `cp -a from to`: a copy with modes, owners, times, links and xattrs.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Total size of the regular files below `root` (0 when it does not exist).
pub fn tree_bytes(root: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(root) else {
        return 0;
    };
    if md.is_dir() {
        fs::read_dir(root)
            .unwrap()
            .map(|e| tree_bytes(&e.unwrap().path()))
            .sum()
    } else if md.is_file() {
        md.len()
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------------------------------

/// A tmpfs mounted for a test, unmounted on drop.
pub struct TmpfsMount {
    pub dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (e.g. "8m") at `dir` (created); `None` when not root or mounting fails.
    pub fn new(dir: &Path, size: &str) -> Option<TmpfsMount> {
        if !is_root() {
            return None;
        }
        fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .ok()?;
        st.success().then(|| TmpfsMount {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Running as another user (root only)
// ---------------------------------------------------------------------------------------------------

/// `cmd` run as user nobody (65534) through `setpriv`.
pub fn as_nobody(cmd: &Command) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.stdin(Stdio::null());
    c
}

pub fn chown_tree(root: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid)).unwrap();
    if fs::symlink_metadata(root).unwrap().is_dir() {
        for e in fs::read_dir(root).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

/// Whether, as root, the worker can be run as nobody (setpriv present, binary reachable).
pub fn can_run_as_nobody() -> bool {
    if !is_root() {
        return false;
    }
    let mut c = Command::new(worker_bin());
    c.arg("--help");
    match as_nobody(&c)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(st) => st.success(),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------------
// Self-tests: the comparison catches every kind of difference the e2e tests rely on.
// ---------------------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_of_identical_copy_matches_and_every_change_is_caught() {
        let tmp = TestDir::new();
        let a = tmp.path().join("a");
        let info = make_tree(&a, &TreeOpts::full());
        let b = tmp.path().join("b");
        copy_tree(&a, &b);
        let sa = snapshot(&a);
        assert!(sa.len() > 50, "the tree has many entries");
        assert!(sa.values().any(|e| e.link_group.is_some()));
        assert!(sa.values().any(|e| e.kind == Kind::Fifo));
        let d = diff_snapshots(&sa, &snapshot(&b), Compare::full());
        assert!(d.is_empty(), "cp -a copy differs: {d:?}");

        type Mutation = Box<dyn Fn(&Path)>;
        let mutations: Vec<(&str, Mutation)> = vec![
            (
                "content differs",
                Box::new(|b: &Path| {
                    let p = b.join("f10k.bin");
                    let md = fs::symlink_metadata(&p).unwrap();
                    flip_byte(&p, 5000);
                    set_mtime(&p, md.mtime(), md.mtime_nsec() as u32);
                }),
            ),
            (
                "mtime",
                Box::new(|b: &Path| {
                    let md = fs::symlink_metadata(b.join("sub/file.txt")).unwrap();
                    set_mtime(
                        &b.join("sub/file.txt"),
                        md.mtime(),
                        md.mtime_nsec() as u32 + 1,
                    );
                }),
            ),
            (
                "mtime",
                Box::new(|b: &Path| set_mtime(&b.join("rel-link"), 1_000_000_000, 5)),
            ),
            ("mtime", Box::new(|b: &Path| set_mtime(b, 1_000_000_000, 5))),
            (
                "mode",
                Box::new(|b: &Path| chmod(&b.join("secret.txt"), 0o640)),
            ),
            (
                "mode",
                Box::new(|b: &Path| chmod(&b.join("setgid-dir"), 0o755)),
            ),
            (
                "symlink target",
                Box::new(|b: &Path| {
                    fs::remove_file(b.join("rel-link")).unwrap();
                    std::os::unix::fs::symlink("sub/other", b.join("rel-link")).unwrap();
                }),
            ),
            (
                "hard-link group",
                Box::new(|b: &Path| {
                    let p = b.join("hl-c.txt");
                    let data = fs::read(&p).unwrap();
                    fs::remove_file(&p).unwrap();
                    fs::write(&p, data).unwrap();
                }),
            ),
            (
                "missing",
                Box::new(|b: &Path| fs::remove_dir(b.join("empty-dir")).unwrap()),
            ),
            (
                "unexpected",
                Box::new(|b: &Path| fs::write(b.join("extra"), b"").unwrap()),
            ),
            (
                "type",
                Box::new(|b: &Path| {
                    fs::remove_file(b.join("fifo")).unwrap();
                    fs::write(b.join("fifo"), b"").unwrap();
                }),
            ),
        ];
        for (i, (what, mutate)) in mutations.iter().enumerate() {
            let c = tmp.path().join(format!("c{i}"));
            copy_tree(&a, &c);
            mutate(&c);
            let d = diff_snapshots(&sa, &snapshot(&c), Compare::full());
            assert!(
                d.iter().any(|l| l.contains(what)),
                "mutation {i} ({what}) not caught: {d:?}"
            );
        }
        if info.xattrs {
            let c = tmp.path().join("cx");
            copy_tree(&a, &c);
            xattr::set(c.join("sub"), "user.on-a-dir", b"changed").unwrap();
            let d = diff_snapshots(&sa, &snapshot(&c), Compare::full());
            assert!(
                d.iter().any(|l| l.contains("xattrs")),
                "xattr change not caught: {d:?}"
            );
        }
        if info.owners {
            let c = tmp.path().join("co");
            copy_tree(&a, &c);
            std::os::unix::fs::chown(c.join("owned.txt"), Some(1), Some(1)).unwrap();
            let d = diff_snapshots(&sa, &snapshot(&c), Compare::full());
            assert!(
                d.iter().any(|l| l.contains("owner")),
                "owner change not caught: {d:?}"
            );
        }
    }

    #[test]
    fn dates_round_trip() {
        let (s, us) = parse_backup_id("20261125T135256.123456Z");
        assert_eq!(us, 123_456);
        assert_eq!(format_backup_id(s, us), "20261125T135256.123456Z");
        assert_eq!(format_rfc3339_micros(s, 7), "2026-11-25T13:52:56.000007Z");
        assert_eq!(
            date_of_backup("20261125T135256.123456Z"),
            "2026-11-25T13:52:56"
        );
        assert_eq!(format_date(s), "2026-11-25T13:52:56");
        assert_eq!(
            restore_date_for("20261231T235959.999999Z"),
            "2027-01-01T00:00:00"
        );
        assert_eq!(format_date(0), "1970-01-01T00:00:00");
        assert_eq!(parse_backup_id("20000229T000000.000000Z").0, 951_782_400);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":"é"}],"c":null}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[{"y":"é","z":1}]},"b":1}"#
        );
    }
}
