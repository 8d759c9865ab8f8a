//! Walks the source tree depth-first in name order, applying `--exclude` and
//! `--dereference-symlink`, and hands each entry to a visitor. Unreadable directories are reported,
//! not fatal.

use crate::error::{Error, Result};
use crate::index::BytePath;
use crossbeam_channel::{bounded, Receiver, Sender};
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `--dereference-symlink`: what the walk follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dereference {
    /// Store symlinks as symlinks and hard links as links (the default).
    #[default]
    None,
    /// Follow symlinks: store what they point to.
    Soft,
    /// Store every hard-linked name as a separate file.
    Hard,
    /// Both.
    All,
}

impl Dereference {
    /// Whether symlinks are followed.
    pub fn follows_symlinks(self) -> bool {
        matches!(self, Dereference::Soft | Dereference::All)
    }
    /// Whether hard links are stored as separate files.
    pub fn splits_hardlinks(self) -> bool {
        matches!(self, Dereference::Hard | Dereference::All)
    }
}

/// Compiled `--exclude` patterns: a pattern without `/` matches any name, one with `/` matches
/// the path relative to `--path-to-backup`.
#[derive(Debug, Clone)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
}

impl Excludes {
    /// Compiles the patterns; an invalid glob is a usage error.
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let glob = Glob::new(p.trim_end_matches('/'))
                .map_err(|e| Error::usage(format!("invalid --exclude pattern {p:?}: {e}")))?;
            if p.trim_end_matches('/').contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::usage(e.to_string()));
        Ok(Excludes {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Whether the entry at relative path `rel` is excluded.
    pub fn excludes(&self, rel: &[u8]) -> bool {
        let rel_path = Path::new(std::ffi::OsStr::from_bytes(rel));
        let name = rel_path.file_name().map(Path::new).unwrap_or(rel_path);
        self.names.is_match(name) || self.paths.is_match(rel_path)
    }
}

/// One entry found by the walk.
pub struct Found<'a> {
    /// Path relative to the root (`.` for the root directory itself).
    pub rel: &'a [u8],
    /// Absolute path.
    pub abs: &'a Path,
    /// lstat (or stat, when following symlinks) of the entry.
    pub meta: Metadata,
}

/// What the walk reports besides entries.
pub trait Visitor {
    /// Called for every entry, parents before children.
    fn visit(&mut self, found: Found<'_>) -> Result<()>;
    /// Called when an entry or directory could not be read; the walk goes on.
    fn unreadable(&mut self, abs: &Path, err: std::io::Error);
}

fn stat(path: &Path, deref: Dereference) -> std::io::Result<Metadata> {
    if deref.follows_symlinks() {
        std::fs::metadata(path).or_else(|_| std::fs::symlink_metadata(path))
    } else {
        std::fs::symlink_metadata(path)
    }
}

/// Walks `root` (a directory or a single file).
pub fn walk(
    root: &Path,
    deref: Dereference,
    excludes: &Excludes,
    v: &mut dyn Visitor,
) -> Result<()> {
    walk_skipping(root, deref, excludes, &[], v)
}

/// Walks `root`, never entering the directories of `skip` (the containers, when they lie inside
/// the source: a backup must not archive itself).
pub fn walk_skipping(
    root: &Path,
    deref: Dereference,
    excludes: &Excludes,
    skip: &[PathBuf],
    v: &mut dyn Visitor,
) -> Result<()> {
    // The root itself is always followed, as `cd PATH && tar .` does: a --path-to-backup that is
    // a symlink to a directory backs up the directory.
    let meta = std::fs::metadata(root).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!(
                "--path-to-backup {} does not exist",
                root.display()
            ))
        } else {
            Error::io(root.display(), e)
        }
    })?;
    if !meta.is_dir() {
        let name = root
            .file_name()
            .ok_or_else(|| Error::usage(format!("{} has no file name", root.display())))?;
        return v.visit(Found {
            rel: name.as_bytes(),
            abs: root,
            meta,
        });
    }
    v.visit(Found {
        rel: b".",
        abs: root,
        meta,
    })?;
    let mut abs = root.to_path_buf();
    walk_dir(&mut abs, &mut Vec::new(), deref, excludes, skip, v)
}

fn walk_dir(
    abs: &mut PathBuf,
    rel: &mut Vec<u8>,
    deref: Dereference,
    excludes: &Excludes,
    skip: &[PathBuf],
    v: &mut dyn Visitor,
) -> Result<()> {
    let mut dirents: Vec<(std::ffi::OsString, std::fs::DirEntry)> = match std::fs::read_dir(&*abs) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| (e.file_name(), e)))
            .collect(),
        Err(e) => {
            v.unreadable(abs, e);
            return Ok(());
        }
    };
    dirents.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, dirent) in dirents {
        let base = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        abs.push(&name);
        let result = if excludes.excludes(rel) || skip.iter().any(|s| s == abs) {
            Ok(())
        } else {
            // DirEntry::metadata is an fstatat relative to the directory: no full path lookup.
            let meta = if deref.follows_symlinks() {
                stat(abs, deref)
            } else {
                dirent.metadata()
            };
            match meta {
                Ok(meta) => {
                    let is_dir = meta.is_dir();
                    v.visit(Found { rel, abs, meta })?;
                    if is_dir {
                        walk_dir(abs, rel, deref, excludes, skip, v)
                    } else {
                        Ok(())
                    }
                }
                Err(e) => {
                    v.unreadable(abs, e);
                    Ok(())
                }
            }
        };
        abs.pop();
        rel.truncate(base);
        result?;
    }
    Ok(())
}

/// The fields of a stat that the index keeps: a compact copy, so that walked entries waiting in
/// the channel cost little memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size.
    pub size: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Change time, seconds and nanoseconds.
    pub ctime: (i64, i64),
    /// Inode.
    pub ino: u64,
    /// Device.
    pub dev: u64,
    /// Link count.
    pub nlink: u64,
    /// Device number of device files.
    pub rdev: u64,
}

impl From<&Metadata> for Stat {
    fn from(m: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
            rdev: m.rdev(),
        }
    }
}

/// One walked entry with everything the backup needs from the filesystem except file content.
pub struct Item {
    /// Path relative to the root (`.` for the root directory itself, the file name for a
    /// single-file backup).
    pub rel: Vec<u8>,
    /// lstat (or stat) of the entry.
    pub stat: Stat,
    /// Extended attributes (name, hex value), sorted.
    pub xattrs: Vec<(BytePath, String)>,
    /// Symlink target, for symlinks.
    pub link: Option<std::io::Result<PathBuf>>,
}

/// What the walk thread sends, in walk order.
pub enum Walked {
    /// An entry.
    Entry(Box<Item>),
    /// An entry or directory that could not be read.
    Unreadable(PathBuf, std::io::Error),
}

fn read_xattrs(abs: &Path) -> Vec<(BytePath, String)> {
    let Ok(names) = xattr::list(abs) else {
        return Vec::new();
    };
    let mut out: Vec<(BytePath, String)> = names
        .filter_map(|n| {
            let v = xattr::get(abs, &n).ok().flatten()?;
            Some((BytePath(n.as_bytes().to_vec()), hex::encode(v)))
        })
        .collect();
    out.sort();
    out
}

struct Sending(Sender<Walked>);

impl Visitor for Sending {
    fn visit(&mut self, found: Found<'_>) -> Result<()> {
        let link = found
            .meta
            .file_type()
            .is_symlink()
            .then(|| std::fs::read_link(found.abs));
        let item = Item {
            rel: found.rel.to_vec(),
            xattrs: read_xattrs(found.abs),
            stat: Stat::from(&found.meta),
            link,
        };
        self.0
            .send(Walked::Entry(Box::new(item)))
            .map_err(|_| Error::failure("walk stopped"))
    }
    fn unreadable(&mut self, abs: &Path, err: std::io::Error) {
        let _ = self.0.send(Walked::Unreadable(abs.to_path_buf(), err));
    }
}

/// Walks `root` on its own thread, so stat calls overlap with key derivation and the parent
/// index load; the channel bounds how far it runs ahead.
pub fn spawn(
    root: PathBuf,
    deref: Dereference,
    excludes: Excludes,
    skip: Vec<PathBuf>,
) -> (Receiver<Walked>, std::thread::JoinHandle<Result<()>>) {
    let (tx, rx) = bounded(32_768);
    let handle = std::thread::Builder::new()
        .name("walk".into())
        .spawn(move || {
            let t = std::time::Instant::now();
            let r = walk_skipping(&root, deref, &excludes, &skip, &mut Sending(tx));
            tracing::debug!(took = ?t.elapsed(), "walk finished");
            r
        });
    let handle = handle.expect("a thread can be spawned");
    (rx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_by_name_or_relative_path() {
        let ex = Excludes::new(&["*.log".into(), "cache/tmp*".into()]).unwrap();
        assert!(ex.excludes(b"a/b/x.log"));
        assert!(ex.excludes(b"cache/tmp1"));
        assert!(!ex.excludes(b"other/cache/tmp1"));
        assert!(!ex.excludes(b"a/b/x.txt"));
        assert!(Excludes::new(&["[".into()]).is_err());
    }
}
