//! Running the binaries under test: finding `freezer-worker` and `freezer-dispatcher`, giving them
//! a clean environment, and running a command to completion with a timeout so that a hung engine
//! fails its test instead of the whole suite.

use serde_json::Value;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one run of the worker may take before the test fails as hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// KDF iterations the tests ask for (`FREEZER_KDF_ITERATIONS`), for speed.
pub const TEST_KDF_ITERATIONS: u32 = 1000;

/// Path of the `freezer-worker` binary: `$FREEZER_WORKER_BIN`, else `<target>/debug/freezer-worker`
/// next to the `deps/` directory holding the running test binary.
pub fn worker_bin() -> PathBuf {
    find_binary("freezer-worker", "FREEZER_WORKER_BIN")
}

/// Path of the `freezer-dispatcher` binary: `$FREEZER_DISPATCHER_BIN`, else
/// `<target>/debug/freezer-dispatcher` next to the `deps/` directory holding the test binary.
pub fn dispatcher_bin() -> PathBuf {
    find_binary("freezer-dispatcher", "FREEZER_DISPATCHER_BIN")
}

/// The binary `name` of this workspace: the path in `$env` when set (it must exist), else `name`
/// in the target directory above or beside the `deps/` directory holding the test binary.
fn find_binary(name: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env}={} does not exist", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent directory");
    let mut tried = Vec::new();
    for dir in [deps.parent(), Some(deps)].into_iter().flatten() {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
        tried.push(candidate);
    }
    panic!(
        "{name} binary not found (looked at {tried:?}): run `cargo build --workspace --bins` first"
    );
}

/// A `Command` for `program` with no inherited `FREEZER_*` settings, no colours and stdin closed.
fn clean_command(program: PathBuf) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"FREEZER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd.stdin(Stdio::null());
    cmd
}

/// A `Command` for the dispatcher with no inherited `FREEZER_*` settings and stdin closed.
pub fn dispatcher() -> Command {
    clean_command(dispatcher_bin())
}

/// A `Command` for the worker with a clean, deterministic environment: no inherited `FREEZER_*`
/// settings, fast key derivation, no colours, stdin closed.
pub fn worker() -> Command {
    let mut cmd = clean_command(worker_bin());
    cmd.env("FREEZER_KDF_ITERATIONS", TEST_KDF_ITERATIONS.to_string());
    cmd.env("RUST_BACKTRACE", "1");
    cmd
}

/// What a finished process did.
#[derive(Debug, Clone)]
pub struct Out {
    /// The command line, for messages.
    pub cmd: String,
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    /// Everything the process wrote to stdout.
    pub stdout: String,
    /// Everything the process wrote to stderr.
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
