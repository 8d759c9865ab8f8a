//! Source trees on disk: the primitives to make special files and set modes and times, the tree
//! with every kind of entry a backup must preserve ([`make_tree`]), and copying, ageing and
//! measuring trees.

use crate::{is_root, now_micros, random_bytes};
use sha2::{Digest, Sha256};
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `mkfifo -m mode p`.
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

/// `mknod -m mode p c major minor` (root only).
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

/// `chmod mode p`, panicking with the path on failure.
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
    /// `user.*` xattrs were set.
    pub xattrs: bool,
    /// Foreign owners were set (running as root).
    pub owners: bool,
    /// A character device was made (running as root).
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
