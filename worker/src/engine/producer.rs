//! Turns walked entries into index entries and the tar stream: decides per entry whether it
//! changed since the parent backup, and streams changed file content into the pipeline.

use super::pipeline::ChunkSink;
use super::tarfmt;
use super::walk::{Dereference, Item, Stat, Walked};
use crate::error::{Error, Result};
use crate::index::{nanos, BytePath, Entry, EntryType, IndexWriter};
use crate::progress::Counters;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// State of one backup's walk.
pub struct Producer<'a> {
    sink: &'a mut ChunkSink,
    /// `--path-to-backup`, and whether it is a directory (else a single file).
    root: (PathBuf, bool),
    backup_id: Arc<str>,
    parent: HashMap<Vec<u8>, Entry>,
    deref: Dereference,
    counters: &'a Counters,
    /// The new index, encoded as the walk goes.
    pub index: IndexWriter,
    /// (dev, ino) of multiply-linked files already seen → (path, stored in this archive).
    links: HashMap<(u64, u64), (Vec<u8>, bool)>,
    names: NameCache,
    /// Problems that did not stop the backup (unreadable or changing files).
    pub warnings: Vec<String>,
    /// Files that could not be read.
    pub unreadable: u64,
}

#[derive(Default)]
struct NameCache {
    users: HashMap<u32, Option<Arc<str>>>,
    groups: HashMap<u32, Option<Arc<str>>>,
}

impl NameCache {
    fn user(&mut self, uid: u32) -> Option<Arc<str>> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                users::get_user_by_uid(uid).map(|u| Arc::from(u.name().to_string_lossy()))
            })
            .clone()
    }
    fn group(&mut self, gid: u32) -> Option<Arc<str>> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                users::get_group_by_gid(gid).map(|g| Arc::from(g.name().to_string_lossy()))
            })
            .clone()
    }
}

/// Archive name of an entry: `./` for the root, the relative path otherwise.
fn archive_name(entry: &Entry) -> Vec<u8> {
    match entry.kind {
        EntryType::Dir if entry.path.0 == b"." => b"./".to_vec(),
        EntryType::Dir => [entry.path.0.as_slice(), b"/"].concat(),
        _ => entry.path.0.clone(),
    }
}

impl<'a> Producer<'a> {
    /// Starts a walk for backup `backup_id` against the parent's index entries.
    pub fn new(
        sink: &'a mut ChunkSink,
        root: (PathBuf, bool),
        backup_id: String,
        parent: Vec<Entry>,
        deref: Dereference,
        counters: &'a Counters,
    ) -> Self {
        Producer {
            sink,
            root,
            backup_id: backup_id.as_str().into(),
            // Keyed by path; the path moves into the key and what change detection does not
            // compare is dropped, so the parent index costs little memory.
            parent: parent
                .into_iter()
                .map(|mut e| {
                    let path = std::mem::take(&mut e.path.0);
                    e.xattrs = Vec::new();
                    e.user = None;
                    e.group = None;
                    (path, e)
                })
                .collect(),
            deref,
            counters,
            index: IndexWriter::spawn(backup_id.to_string()),
            links: HashMap::new(),
            names: NameCache::default(),
            warnings: Vec::new(),
            unreadable: 0,
        }
    }

    fn entry_from(&mut self, rel: &[u8], meta: &Stat) -> Option<Entry> {
        let kind = EntryType::from_mode(meta.mode)?;
        Some(Entry {
            path: BytePath(rel.to_vec()),
            kind,
            size: if kind == EntryType::File {
                meta.size
            } else {
                0
            },
            mode: meta.mode & 0o7777,
            uid: meta.uid,
            gid: meta.gid,
            user: self.names.user(meta.uid),
            group: self.names.group(meta.gid),
            mtime_ns: nanos(meta.mtime.0, meta.mtime.1),
            ctime_ns: nanos(meta.ctime.0, meta.ctime.1),
            ino: meta.ino,
            dev: meta.dev,
            nlink: meta.nlink,
            link: None,
            rdev: matches!(kind, EntryType::Char | EntryType::Block).then_some(meta.rdev),
            xattrs: Vec::new(),
            stored_in: None,
            incomplete: false,
        })
    }

    fn warn(&mut self, msg: String) {
        tracing::warn!("{msg}");
        self.warnings.push(msg);
    }

    fn store_file(&mut self, mut entry: Entry, abs: &Path) -> Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        // A single-file --path-to-backup is followed like a root directory is.
        if !self.deref.follows_symlinks() && self.root.1 {
            opts.custom_flags(libc_o_nofollow());
        }
        let mut file = match opts.open(abs) {
            Ok(f) => f,
            Err(e) => {
                self.unreadable(abs, e);
                return Ok(());
            }
        };
        // Describe the file we actually opened, not what lstat saw a moment earlier.
        if let Ok(meta) = file.metadata() {
            if let Some(fresh) = self.entry_from(&entry.path.0, &Stat::from(&meta)) {
                if fresh.kind != EntryType::File {
                    self.warn(format!(
                        "{}: changed type while being read; skipped",
                        abs.display()
                    ));
                    self.unreadable += 1;
                    return Ok(());
                }
                let xattrs = std::mem::take(&mut entry.xattrs);
                entry = Entry { xattrs, ..fresh };
            }
        }
        entry.stored_in = Some(self.backup_id.clone());
        let size = entry.size;
        let mut header = Vec::with_capacity(1536);
        tarfmt::append_header(&mut header, &entry, &archive_name(&entry), size);
        self.sink.write(&header)?;
        let (got, read_error) = self.sink.read_from(&mut file, size)?;
        if let Some(e) = read_error {
            self.warn(format!(
                "{}: read error after {got} bytes: {e}",
                abs.display()
            ));
        }
        self.counters.bytes_read.fetch_add(got, Ordering::Relaxed);
        if got < size {
            self.sink.zeros((size - got) as usize)?;
            self.warn(format!(
                "{}: file shrank by {} bytes while being read; padded with zeros, stored again next time",
                abs.display(),
                size - got
            ));
            entry.incomplete = true;
            self.unreadable += 1;
        } else if let Ok(after) = file.metadata() {
            let changed = nanos(after.mtime(), after.mtime_nsec()) != entry.mtime_ns
                || nanos(after.ctime(), after.ctime_nsec()) != entry.ctime_ns
                || after.size() != size;
            if changed {
                self.warn(format!(
                    "{}: file changed while being read; stored again next time",
                    abs.display()
                ));
                entry.incomplete = true;
            }
        }
        self.sink.zeros(tarfmt::data_padding(size))?;
        self.counters.files_stored.fetch_add(1, Ordering::Relaxed);
        if entry.nlink > 1 && !self.deref.splits_hardlinks() {
            self.links
                .insert((entry.dev, entry.ino), (entry.path.0.clone(), true));
        }
        self.index.push(entry)?;
        Ok(())
    }

    /// Ends the archive.
    pub fn finish(&mut self) -> Result<()> {
        self.sink.write(&tarfmt::END_OF_ARCHIVE)
    }
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

impl Producer<'_> {
    /// Absolute path of a walked entry.
    fn abs_of(&self, rel: &[u8]) -> PathBuf {
        let (root, is_dir) = &self.root;
        if !*is_dir || rel == b"." {
            root.clone()
        } else {
            root.join(std::ffi::OsStr::from_bytes(rel))
        }
    }

    /// Adds the next walked entry: to the index, and to the archive when it changed.
    pub fn add(&mut self, walked: Walked) -> Result<()> {
        if self.sink.is_cancelled() {
            return Err(Error::interrupted());
        }
        let found = match walked {
            Walked::Entry(item) => *item,
            Walked::Unreadable(abs, err) => {
                self.unreadable(&abs, err);
                return Ok(());
            }
        };
        let Item {
            rel,
            stat,
            xattrs,
            link,
        } = found;
        let abs = self.abs_of(&rel);
        let Some(mut entry) = self.entry_from(&rel, &stat) else {
            return Ok(());
        };
        self.counters.entries.fetch_add(1, Ordering::Relaxed);
        entry.xattrs = xattrs;
        if entry.kind == EntryType::Symlink {
            match link {
                Some(Ok(t)) => entry.link = Some(BytePath(t.as_os_str().as_bytes().to_vec())),
                Some(Err(e)) => {
                    self.unreadable(&abs, e);
                    return Ok(());
                }
                None => {}
            }
        }
        if entry.kind == EntryType::File && entry.nlink > 1 && !self.deref.splits_hardlinks() {
            if let Some((first, stored_here)) = self.links.get(&(entry.dev, entry.ino)).cloned() {
                entry.kind = EntryType::Hardlink;
                entry.link = Some(BytePath(first));
                entry.size = 0;
                if stored_here {
                    let mut header = Vec::with_capacity(1024);
                    tarfmt::append_header(&mut header, &entry, &archive_name(&entry), 0);
                    self.sink.write(&header)?;
                }
                self.index.push(entry)?;
                return Ok(());
            }
        }
        let unchanged = self
            .parent
            .get(&rel)
            .filter(|old| entry.unchanged_since(old))
            .map(|old| old.stored_in.clone());
        match entry.kind {
            EntryType::File => match unchanged {
                Some(stored_in) => {
                    entry.stored_in = stored_in;
                    if entry.nlink > 1 && !self.deref.splits_hardlinks() {
                        self.links
                            .insert((entry.dev, entry.ino), (entry.path.0.clone(), false));
                    }
                    self.index.push(entry)?;
                }
                None => self.store_file(entry, &abs)?,
            },
            _ => {
                // Directories, symlinks and special files are small: every level carries them,
                // so restoring levels in order with plain tar gives the right tree.
                let mut header = Vec::with_capacity(1024);
                tarfmt::append_header(&mut header, &entry, &archive_name(&entry), 0);
                self.sink.write(&header)?;
                self.index.push(entry)?;
            }
        }
        Ok(())
    }

    /// Records an entry that could not be read.
    fn unreadable(&mut self, abs: &Path, err: std::io::Error) {
        self.unreadable += 1;
        self.warn(format!("cannot read {}: {err}", abs.display()));
    }
}

/// Whether a source path is a directory (decides the index root form).
pub fn source_kind(meta: &Metadata) -> &'static str {
    if meta.is_dir() {
        "dir"
    } else {
        "file"
    }
}
