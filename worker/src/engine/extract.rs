//! Writing a restore into its target directory without ever leaving it: every parent directory
//! is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, final names are created with
//! `O_NOFOLLOW`/`O_EXCL`, and index paths with `..`, absolute paths or empty parts are refused.

use crate::error::{Error, Result};
use crate::index::{Entry, EntryType};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Checks that an index path is a plain relative path (or `.`).
pub fn validate_path(p: &[u8]) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::integrity(format!(
            "refusing index entry {:?}: {why}",
            String::from_utf8_lossy(p)
        )))
    };
    if p == b"." {
        return Ok(());
    }
    if p.is_empty() || p.contains(&0) {
        return bad("empty or contains NUL");
    }
    if p[0] == b'/' {
        return bad("absolute path");
    }
    for comp in p.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => return bad("empty or '.' component"),
            b".." => return bad("'..' component"),
            _ => {}
        }
    }
    Ok(())
}

fn os(p: &[u8]) -> &OsStr {
    OsStr::from_bytes(p)
}

/// The restore target: a directory handle all writes are relative to.
pub struct Target {
    root: Arc<OwnedFd>,
    root_path: PathBuf,
    overwrite: bool,
    privileged: bool,
    cache: Option<(Vec<u8>, Arc<OwnedFd>)>,
    /// Metadata that could not be applied (e.g. ownership as non-root, xattrs refused).
    pub warnings: Vec<String>,
}

fn ts(ns: i128) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000) as i64,
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

impl Target {
    /// Opens (creating it if needed) the target directory; refuses a non-empty one unless
    /// `overwrite`.
    pub fn open(path: &Path, overwrite: bool) -> Result<Target> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path.display(), e))?;
        let non_empty = std::fs::read_dir(path)
            .map_err(|e| Error::io(path.display(), e))?
            .next()
            .is_some();
        if non_empty && !overwrite {
            return Err(Error::failure(format!(
                "restore target {} is not empty: choose an empty directory or pass --overwrite",
                path.display()
            )));
        }
        let fd = rfs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(path.display(), e.into()))?;
        Ok(Target {
            root: Arc::new(fd),
            root_path: path.to_path_buf(),
            overwrite,
            privileged: rustix::process::geteuid().is_root(),
            cache: None,
            warnings: Vec::new(),
        })
    }

    fn show(&self, rel: &[u8]) -> String {
        self.root_path.join(os(rel)).display().to_string()
    }

    fn io(&self, rel: &[u8], e: rustix::io::Errno) -> Error {
        if e == rustix::io::Errno::XDEV
            || e == rustix::io::Errno::LOOP
            || e == rustix::io::Errno::NOTDIR
        {
            return Error::integrity(format!(
                "refusing to write {}: a path component is a symlink, not a directory, or leaves the target",
                self.show(rel)
            ));
        }
        Error::io(self.show(rel), e.into())
    }

    /// The directory holding `rel` and `rel`'s last component.
    fn parent<'p>(&mut self, rel: &'p [u8]) -> Result<(Arc<OwnedFd>, &'p [u8])> {
        validate_path(rel)?;
        let (dir, name) = match rel.iter().rposition(|b| *b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], rel),
        };
        if dir.is_empty() {
            return Ok((self.root.clone(), name));
        }
        if let Some((cached, fd)) = &self.cache {
            if cached == dir {
                return Ok((fd.clone(), name));
            }
        }
        let fd = rfs::openat2(
            self.root.as_fd(),
            os(dir),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| self.io(dir, e))?;
        let fd = Arc::new(fd);
        self.cache = Some((dir.to_vec(), fd.clone()));
        Ok((fd, name))
    }

    /// Removes whatever non-directory is at `name` (with `--overwrite`); refuses otherwise.
    fn clear(&self, dir: &OwnedFd, name: &[u8], rel: &[u8], keep_dir: bool) -> Result<bool> {
        match rfs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(self.io(rel, e)),
            Ok(st) => {
                let is_dir = rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory;
                if is_dir && keep_dir {
                    return Ok(true);
                }
                if !self.overwrite {
                    return Err(Error::failure(format!("{} already exists", self.show(rel))));
                }
                let flags = if is_dir {
                    AtFlags::REMOVEDIR
                } else {
                    AtFlags::empty()
                };
                rfs::unlinkat(dir, os(name), flags).map_err(|e| self.io(rel, e))?;
                Ok(false)
            }
        }
    }

    /// Creates directory `rel` (owner-only until its metadata is applied at the end).
    pub fn mkdir(&mut self, rel: &[u8]) -> Result<()> {
        if rel == b"." {
            return Ok(());
        }
        let (dir, name) = self.parent(rel)?;
        if !self.clear(&dir, name, rel, true)? {
            rfs::mkdirat(&*dir, os(name), Mode::from_raw_mode(0o700))
                .map_err(|e| self.io(rel, e))?;
        }
        Ok(())
    }

    /// Creates regular file `rel` for writing.
    pub fn create_file(&mut self, rel: &[u8]) -> Result<File> {
        let (dir, name) = self.parent(rel)?;
        self.clear(&dir, name, rel, false)?;
        let fd = rfs::openat(
            &*dir,
            os(name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io(rel, e))?;
        Ok(File::from(fd))
    }

    /// Removes a file left half-written by a failed restore.
    pub fn remove(&mut self, rel: &[u8]) {
        if let Ok((dir, name)) = self.parent(rel) {
            let _ = rfs::unlinkat(&*dir, os(name), AtFlags::empty());
        }
    }

    /// Creates symlink `rel` pointing at `target` (the target is not followed or checked).
    pub fn symlink(&mut self, rel: &[u8], target: &[u8]) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        self.clear(&dir, name, rel, false)?;
        rfs::symlinkat(os(target), &*dir, os(name)).map_err(|e| self.io(rel, e))
    }

    /// Creates `rel` as a hard link to the already restored `existing`.
    pub fn hardlink(&mut self, rel: &[u8], existing: &[u8]) -> Result<()> {
        let (src_dir, src_name) = self.parent(existing)?;
        let (dir, name) = self.parent(rel)?;
        self.clear(&dir, name, rel, false)?;
        rfs::linkat(&*src_dir, os(src_name), &*dir, os(name), AtFlags::empty())
            .map_err(|e| self.io(rel, e))
    }

    /// Creates a fifo or device node.
    pub fn special(&mut self, e: &Entry) -> Result<()> {
        let rel = &e.path.0;
        let (dir, name) = self.parent(rel)?;
        self.clear(&dir, name, rel, false)?;
        let ft = match e.kind {
            EntryType::Fifo => rfs::FileType::Fifo,
            EntryType::Char => rfs::FileType::CharacterDevice,
            _ => rfs::FileType::BlockDevice,
        };
        match rfs::mknodat(
            &*dir,
            os(name),
            ft,
            Mode::from_raw_mode(0o600),
            e.rdev.unwrap_or(0),
        ) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::PERM) if e.kind != EntryType::Fifo => {
                self.warnings.push(format!(
                    "{}: cannot create a device node without privileges",
                    self.show(rel)
                ));
                Ok(())
            }
            Err(err) => Err(self.io(rel, err)),
        }
    }

    fn owner(&self, e: &Entry) -> (u32, u32) {
        // Names win over numbers when they exist here, as tar does.
        let uid = e
            .user
            .as_deref()
            .and_then(users::get_user_by_name)
            .map_or(e.uid, |u| u.uid());
        let gid = e
            .group
            .as_deref()
            .and_then(users::get_group_by_name)
            .map_or(e.gid, |g| g.gid());
        (uid, gid)
    }

    fn times(e: &Entry) -> Timestamps {
        Timestamps {
            last_access: ts(e.mtime_ns),
            last_modification: ts(e.mtime_ns),
        }
    }

    /// Applies owner, mode, xattrs and times through an open descriptor (files, directories).
    pub fn apply_fd(&mut self, fd: &File, e: &Entry) {
        if self.privileged {
            let (uid, gid) = self.owner(e);
            if let Err(err) = rfs::fchown(
                fd,
                Some(rfs::Uid::from_raw(uid)),
                Some(rfs::Gid::from_raw(gid)),
            ) {
                self.warnings
                    .push(format!("{}: chown: {err}", self.show(&e.path.0)));
            }
        }
        if let Err(err) = rfs::fchmod(fd, Mode::from_raw_mode(e.mode & 0o7777)) {
            self.warnings
                .push(format!("{}: chmod: {err}", self.show(&e.path.0)));
        }
        for (name, value) in e.xattr_pairs() {
            if let Err(err) = xattr::FileExt::set_xattr(fd, os(&name), &value) {
                self.warnings.push(format!(
                    "{}: xattr {}: {err}",
                    self.show(&e.path.0),
                    String::from_utf8_lossy(&name)
                ));
            }
        }
        if let Err(err) = rfs::futimens(fd, &Self::times(e)) {
            self.warnings
                .push(format!("{}: times: {err}", self.show(&e.path.0)));
        }
    }

    /// Applies metadata to a directory (at the end, deepest first, so times stick).
    pub fn apply_dir(&mut self, e: &Entry) -> Result<()> {
        let fd = if e.path.0 == b"." {
            rfs::openat(
                &*self.root,
                ".",
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        } else {
            rfs::openat2(
                self.root.as_fd(),
                os(&e.path.0),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )
        }
        .map_err(|err| self.io(&e.path.0, err))?;
        self.apply_fd(&File::from(fd), e);
        Ok(())
    }

    /// Applies owner and times to a symlink or special file, without following it.
    pub fn apply_at(&mut self, e: &Entry) -> Result<()> {
        let (dir, name) = self.parent(&e.path.0)?;
        if self.privileged {
            let (uid, gid) = self.owner(e);
            if let Err(err) = rfs::chownat(
                &*dir,
                os(name),
                Some(rfs::Uid::from_raw(uid)),
                Some(rfs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                self.warnings
                    .push(format!("{}: chown: {err}", self.show(&e.path.0)));
            }
        }
        if e.kind != EntryType::Symlink {
            let _ = rfs::chmodat(
                &*dir,
                os(name),
                Mode::from_raw_mode(e.mode & 0o7777),
                AtFlags::empty(),
            );
        }
        if let Err(err) =
            rfs::utimensat(&*dir, os(name), &Self::times(e), AtFlags::SYMLINK_NOFOLLOW)
        {
            self.warnings
                .push(format!("{}: times: {err}", self.show(&e.path.0)));
        }
        Ok(())
    }
}

/// Writes file content, leaving runs of zeros as holes so sparse files stay sparse.
pub struct SparseWriter<'f> {
    file: &'f File,
    pos: u64,
}

impl<'f> SparseWriter<'f> {
    /// Starts at offset 0 of a new, empty file.
    pub fn new(file: &'f File) -> Self {
        SparseWriter { file, pos: 0 }
    }

    /// Writes the next piece of content: runs of data in one `pwrite` each, skipping whole
    /// 4 KiB blocks of zeros.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        const HOLE: usize = 4096;
        let mut run_start = 0;
        let mut i = 0;
        while i < data.len() {
            // Blocks are aligned to the file offset, as the filesystem's are.
            let to_boundary = HOLE - ((self.pos + i as u64) % HOLE as u64) as usize;
            let end = (i + to_boundary).min(data.len());
            let block = &data[i..end];
            if block.len() == HOLE && block.iter().all(|b| *b == 0) {
                if run_start < i {
                    self.file
                        .write_all_at(&data[run_start..i], self.pos + run_start as u64)?;
                }
                run_start = end;
            }
            i = end;
        }
        if run_start < data.len() {
            self.file
                .write_all_at(&data[run_start..], self.pos + run_start as u64)?;
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Sets the final length (covers a trailing hole).
    pub fn finish(self) -> std::io::Result<u64> {
        self.file.set_len(self.pos)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_writer_keeps_content_and_makes_holes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut data = vec![0u8; 1 << 20];
        data[5000..5003].copy_from_slice(b"abc");
        data[(1 << 20) - 1] = 7;
        let mut w = SparseWriter::new(&file);
        for piece in data.chunks(70_000) {
            w.write(piece).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 1 << 20);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(
            file.metadata().unwrap().blocks() * 512 < (1 << 19),
            "holes were made"
        );
    }

    #[test]
    fn validate_path_refuses_escapes() {
        for bad in [
            &b"../x"[..],
            b"/etc/passwd",
            b"a/../../x",
            b"a//b",
            b"",
            b"a/./b",
            b"x\0y",
        ] {
            assert!(
                validate_path(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for good in [&b"."[..], b"a", b"a/b c/d", b"..x/y..", b"\xff"] {
            assert!(validate_path(good).is_ok());
        }
    }

    #[test]
    fn writes_through_a_symlinked_directory_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target::open(dir.path(), false).unwrap();
        t.symlink(b"link", outside.path().as_os_str().as_bytes())
            .unwrap();
        let err = t.create_file(b"link/pwned").unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::Integrity, "{err}");
        assert!(!outside.path().join("pwned").exists());
        t.symlink(b"up", b"..").unwrap();
        assert!(t.mkdir(b"up/x").is_err());
    }
}
