//! Local filesystem storage (also NFS and GlusterFS mounts): objects are files under a directory,
//! written to a temporary name, fsynced and renamed so a half-written object is never visible.

use super::{ObjectInfo, Storage};
use crate::error::{Error, Result};
use std::fs;
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A container that is a directory on a mounted filesystem.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Opens (without creating) the container directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage { root: root.into() }
    }

    /// The container directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir.display(), e)),
        };
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(dir.display(), e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let key = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let ft = ent
                .file_type()
                .map_err(|e| Error::io(ent.path().display(), e))?;
            if ft.is_dir() {
                self.walk(&ent.path(), &key, out)?;
            } else if ft.is_file() {
                let meta = ent
                    .metadata()
                    .map_err(|e| Error::io(ent.path().display(), e))?;
                let modified = meta.modified().ok().and_then(|m| {
                    let d = m.duration_since(std::time::UNIX_EPOCH).ok()?;
                    Some(crate::timestamp::Timestamp {
                        micros: d.as_micros() as i64,
                    })
                });
                out.push(ObjectInfo {
                    key,
                    size: meta.len(),
                    modified,
                });
            }
        }
        Ok(())
    }
}

/// Syncs a directory so renames in it are durable (best effort: some filesystems refuse).
fn sync_dir(dir: &Path) {
    // Best effort: the rename is durable once the directory is synced; some filesystems refuse.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Storage for LocalStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = dir.join(format!(".tmp.{name}.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            // Start write-back now, without waiting, so the fsync before the manifest is short.
            // SAFETY: plain syscall on an open descriptor; failure only means no head start.
            unsafe {
                libc::sync_file_range(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    0,
                    0,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(path.display(), e));
        }
        Ok(())
    }

    fn sync(&self, keys: &[String]) -> Result<()> {
        // One fsync per object once they are all written lets the kernel write them back
        // together instead of stalling the pipeline after every segment.
        let mut dirs = std::collections::BTreeSet::new();
        for key in keys {
            let path = self.path(key);
            let f = fs::File::open(&path).map_err(|e| Error::io(path.display(), e))?;
            f.sync_all().map_err(|e| Error::io(path.display(), e))?;
            if let Some(d) = path.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in dirs {
            sync_dir(&d);
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key);
        fs::read(&path).map_err(|e| match e.kind() {
            IoKind::NotFound => Error::not_found(format!("{} is missing", path.display())),
            _ => Error::io(path.display(), e),
        })
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path(key);
        let read = || -> std::io::Result<Vec<u8>> {
            let mut f = fs::File::open(&path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(len as usize);
            f.take(len).read_to_end(&mut buf)?;
            Ok(buf)
        };
        read().map_err(|e| match e.kind() {
            IoKind::NotFound => Error::not_found(format!("{} is missing", path.display())),
            _ => Error::io(path.display(), e),
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        // Walk only the deepest directory the prefix names, then filter by the rest.
        let (dir_rel, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut out = Vec::new();
        self.walk(&self.path(dir_rel), dir_rel, &mut out)?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(Error::io(path.display(), e)),
        }
        // Remove directories left empty, up to the container.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn prepare(&self) -> Result<()> {
        fs::create_dir_all(&self.root).map_err(|e| Error::io(self.root.display(), e))
    }

    fn check_container(&self) -> Result<()> {
        if self.root.is_dir() {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "container {} does not exist",
                self.root.display()
            )))
        }
    }

    fn lock_name(&self, name_prefix: &str) -> Result<crate::lock::NameLock> {
        crate::lock::NameLock::acquire(&self.root, name_prefix)
    }

    fn local_dirs(&self) -> Vec<PathBuf> {
        std::path::absolute(&self.root).into_iter().collect()
    }

    fn tidy(&self, prefix: &str) -> Result<()> {
        fn prune_empty(dir: &Path) -> bool {
            let Ok(rd) = fs::read_dir(dir) else {
                return false;
            };
            let mut empty = true;
            for ent in rd.flatten() {
                let is_dir = ent.file_type().is_ok_and(|t| t.is_dir());
                if !(is_dir && prune_empty(&ent.path()) && fs::remove_dir(ent.path()).is_ok()) {
                    empty = false;
                }
            }
            empty
        }
        let dir = self.path(prefix.trim_end_matches('/'));
        if dir != self.root && dir.is_dir() {
            prune_empty(&dir);
        }
        Ok(())
    }

    fn describe(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        s.put("a/b/c", b"hello").unwrap();
        s.put("a/b/d", b"x").unwrap();
        s.put("a/e", b"").unwrap();
        assert_eq!(s.get("a/b/c").unwrap(), b"hello");
        assert_eq!(s.get_range("a/b/c", 1, 3).unwrap(), b"ell");
        assert_eq!(s.get_range("a/b/c", 3, 10).unwrap(), b"lo");
        let keys: Vec<_> = s.list("a/b/").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, vec!["a/b/c", "a/b/d"]);
        assert_eq!(s.list("a/").unwrap().len(), 3);
        s.delete("a/b/c").unwrap();
        s.delete("a/b/d").unwrap();
        assert!(!dir.path().join("a/b").exists());
        assert!(s.get("a/b/c").is_err());
        s.delete("missing").unwrap();
    }
}
