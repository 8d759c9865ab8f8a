//! Snapshots of trees: every entry's type, content hash, mode, owner, mtime in ns, link target,
//! xattrs and hard-link grouping, as lstat and friends see them.

use crate::{is_root, sha256_file};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The type of a tree entry.
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
    /// The entry's type.
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Size in bytes of a regular file; 0 for the rest.
    pub size: u64,
    /// SHA-256 of the content (regular files).
    pub sha256: Option<String>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Device number of a character or block device; 0 for the rest.
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
