//! What only root can do: telling whether the tests run as root, mounting a small tmpfs, and
//! running the worker as another user.

use crate::worker_bin;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether the tests run as root (owners can be set and are compared then).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs mounted for a test, unmounted on drop.
pub struct TmpfsMount {
    /// The mount point.
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

/// `chown -hR uid:gid root`: gives a whole tree (symlinks themselves included) to another user.
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
